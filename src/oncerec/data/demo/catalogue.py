"""The catalogue: each item's latent attributes, and samplers over the items live at each hour.

Each item is about one concept of one subcategory (of a category, see vocabulary.TOPICS). It has a latent
quality q ~ N(0, 1), a tone (the quintile of q + noise: the register of its title's lead word, see text.py),
a publish time and a lifetime: it is shown in impressions while live.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from oncerec.data.demo.scales import MAX_CANDIDATES
from oncerec.data.demo.timeline import (
    DAY,
    DEV_END,
    HISTORY_DAYS,
    N_SLOTS,
    PRE_SLOT,
    SLOT_SECONDS,
    TRAIN_START,
)
from oncerec.data.demo.vocabulary import SUB_FIRST_CONCEPT, SUB_N_CONCEPTS, SUBCATEGORIES

PRE_PERIOD_SHARE = 0.4  # of items, published in the history window; the rest during train+dev
LIFETIME_DAYS = (1.0, 4.0)
SUBCATEGORY_CONCENTRATION = 3.0  # Dirichlet over subcategories: how uneven topic sizes are
# An item's tone is the quintile of q + N(0, TONE_NOISE^2): a text model can learn E[q | tone], which recovers
# nearly 90% of what quality adds to the AUC of an affinity-only ranking (the rest needs item ids or popularity).
TONE_NOISE = 0.25
_TONE_EDGES = math.sqrt(1.0 + TONE_NOISE**2) * np.array([-0.8416, -0.2533, 0.2533, 0.8416])
EXPOSURE = 0.5  # popularity-weighted picks are proportional to exp(EXPOSURE * q)


@dataclass(frozen=True)
class Catalogue:
    """Latent item attributes; items are numbered in publish order."""

    sub: np.ndarray
    concept: np.ndarray  # index into CONCEPT_SYNONYMS
    quality: np.ndarray
    tone: np.ndarray  # index into TONE_PREFIXES
    publish: np.ndarray  # epoch seconds
    expire: np.ndarray
    ids: np.ndarray  # object array of "N12345"; random, so that ids carry no hint of time or topic
    sub_popularity: np.ndarray  # share of items (and of user interests) per subcategory


def draw_catalogue(rng: np.random.Generator, n: int) -> Catalogue:
    sub_pop = rng.dirichlet(np.full(len(SUBCATEGORIES), SUBCATEGORY_CONCENTRATION))
    n_pre = round(PRE_PERIOD_SHARE * n)
    publish = np.sort(
        np.concatenate(
            [
                rng.integers(TRAIN_START - HISTORY_DAYS * DAY, TRAIN_START, n_pre),
                rng.integers(TRAIN_START, DEV_END, n - n_pre),
            ]
        )
    )
    sub = rng.choice(len(sub_pop), n, p=sub_pop)
    concept = SUB_FIRST_CONCEPT[sub] + (rng.random(n) * SUB_N_CONCEPTS[sub]).astype(np.int64)
    quality = rng.standard_normal(n)
    expire = publish + (rng.uniform(*LIFETIME_DAYS, n) * DAY).astype(np.int64)
    ids = np.array([f"N{10_000 + k}" for k in rng.permutation(n)], dtype=object)
    tone = np.searchsorted(_TONE_EDGES, quality + rng.normal(0.0, TONE_NOISE, n))
    return Catalogue(sub, concept, quality, tone, publish, expire, ids, sub_pop)


class Pools:
    """Weighted samplers over the items of each slot (live ones; all pre-period ones for PRE_SLOT).

    One slot's items are a contiguous run sorted by subcategory, and one cumulative weight array spans all
    runs, so a draw from any (slot, subcategory) or whole slot is one vectorised searchsorted.
    """

    def __init__(self, cat: Catalogue):
        n_sub = len(SUBCATEGORIES)
        runs, self.bounds, start = [], np.zeros((N_SLOTS + 1, n_sub + 1), np.int64), 0
        for slot in range(N_SLOTS + 1):
            if slot == PRE_SLOT:
                items = np.flatnonzero(cat.publish < TRAIN_START)
            else:
                t = TRAIN_START + slot * SLOT_SECONDS
                items = np.flatnonzero((cat.publish <= t) & (cat.expire > t))
                # a small catalogue may have too few live items for a full impression: add the latest ones
                n_published = int(np.searchsorted(cat.publish, t, side="right"))
                if len(items) < MAX_CANDIDATES:
                    items = np.union1d(items, np.arange(max(0, n_published - MAX_CANDIDATES), n_published))
            items = items[np.argsort(cat.sub[items], kind="stable")]
            self.bounds[slot] = start + np.concatenate(
                [[0], np.cumsum(np.bincount(cat.sub[items], minlength=n_sub))]
            )
            runs.append(items)
            start += len(items)
        self.items = np.concatenate(runs)
        self.cum = np.concatenate([[0.0], np.cumsum(np.exp(EXPOSURE * cat.quality[self.items]))])

    def draw(self, lo: np.ndarray, hi: np.ndarray, u: np.ndarray) -> np.ndarray:
        """One item per row, from run [lo, hi) in proportion to its exposure weight; u ~ U[0, 1)."""
        target = self.cum[lo] + u * (self.cum[hi] - self.cum[lo])
        pos = np.searchsorted(self.cum, target, side="right") - 1
        return self.items[np.clip(pos, lo, hi - 1)]
