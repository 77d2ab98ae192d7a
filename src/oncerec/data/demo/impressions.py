"""Histories and impressions of one chunk of users, with their labels.

* Histories are a snapshot before the split, as in MIND: clicks drawn in proportion to p (set A) among the
  items of the two weeks before train. Dev histories append the user's train-period clicks (generate.py).
  Every 33rd user has no pre-period history (cold start).
* Impressions show items live at that hour (users.Users.sample_items). Labels are Bernoulli(p), redrawn
  until at least one click (then one click forced, chosen in proportion to p), which keeps ranking by p
  optimal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from oncerec.data.demo.arrays import csr_starts, first_occurrence, rank_within
from oncerec.data.demo.catalogue import Catalogue, Pools
from oncerec.data.demo.scales import MAX_CANDIDATES, MIN_CANDIDATES
from oncerec.data.demo.timeline import DEV_END, PRE_SLOT, SLOT_SECONDS, TRAIN_START
from oncerec.data.demo.users import Users

COLD_EVERY = 33  # every COLD_EVERY-th user has an empty pre-period history
HISTORY_MEAN, HISTORY_DISPERSION, MAX_HISTORY = 23, 3, 60
HISTORY_OVERSAMPLE = 3  # history clicks are picked among this many draws per click, in proportion to p
# negative binomial shape of (candidates - MIN_CANDIDATES): small impressions dominate
CANDIDATE_DISPERSION = 1.5
MAX_LABEL_REDRAWS = 50


@dataclass(frozen=True)
class Impressions:
    """One chunk's impressions of a split, CSR: impression j's candidates are rows start[j]:start[j+1]."""

    user: np.ndarray  # position in the chunk
    time: np.ndarray
    start: np.ndarray
    item: np.ndarray
    prob: np.ndarray
    label: np.ndarray


def draw_histories(
    rng: np.random.Generator, cat: Catalogue, pools: Pools, users: Users
) -> tuple[np.ndarray, np.ndarray]:
    """Pre-period clicks per user, oldest first, as CSR (start, items): picked ∝ p among a few draws each."""
    n = len(users.bias)
    length = np.minimum(
        MAX_HISTORY,
        rng.negative_binomial(
            HISTORY_DISPERSION, HISTORY_DISPERSION / (HISTORY_DISPERSION + HISTORY_MEAN), n
        ),
    )
    length[(users.first + np.arange(n)) % COLD_EVERY == 0] = 0
    owner = np.repeat(np.arange(n), HISTORY_OVERSAMPLE * length)
    zeros = np.zeros(len(owner))
    items = users.sample_items(rng, pools, owner, np.full(len(owner), PRE_SLOT), zeros)
    key = np.log(users.click_prob(cat, owner, items, zeros)) + rng.gumbel(size=len(owner))
    first = first_occurrence(owner, items)
    owner, items, key = owner[first], items[first], key[first]
    order = np.lexsort((-key, owner))  # Gumbel-top-k: a weighted draw without replacement
    owner, items = owner[order], items[order]
    keep = rank_within(owner) < length[owner]
    owner, items = owner[keep], items[keep]
    order = np.lexsort((items, owner))  # item numbers are in publish order
    return csr_starts(owner[order], n), items[order]


def draw_impressions(
    rng: np.random.Generator,
    cat: Catalogue,
    pools: Pools,
    users: Users,
    per_user: np.ndarray,
    period: tuple[int, int],
    mean_candidates: float,
) -> Impressions:
    user = np.repeat(np.arange(len(per_user)), per_user)
    t = rng.integers(*period, len(user))
    extra_mean = mean_candidates - MIN_CANDIDATES
    size = MIN_CANDIDATES + rng.negative_binomial(
        CANDIDATE_DISPERSION, CANDIDATE_DISPERSION / (CANDIDATE_DISPERSION + extra_mean), len(user)
    )
    size = np.minimum(size, MAX_CANDIDATES)
    # draw with replacement, then keep the first `size` distinct items: oversample to make up for repeats
    imp = np.repeat(np.arange(len(user)), size + size // 2 + 3)
    alpha = (t - TRAIN_START) / (DEV_END - TRAIN_START)
    item = users.sample_items(rng, pools, user[imp], (t[imp] - TRAIN_START) // SLOT_SECONDS, alpha[imp])
    first = first_occurrence(imp, item)
    imp, item = imp[first], item[first]
    keep = rank_within(imp) < size[imp]
    imp, item = imp[keep], item[keep]
    # a tiny catalogue can leave too few distinct items: such an impression is dropped
    n_cand = np.bincount(imp, minlength=len(user))
    ok = n_cand >= MIN_CANDIDATES
    rows = ok[imp]
    renumber = np.cumsum(ok) - 1
    imp, item, user, t, alpha = renumber[imp[rows]], item[rows], user[ok], t[ok], alpha[ok]
    prob = users.click_prob(cat, user[imp], item, alpha[imp])
    return Impressions(user, t, csr_starts(imp, len(user)), item, prob, _labels(rng, imp, prob, len(user)))


def _labels(rng: np.random.Generator, imp: np.ndarray, prob: np.ndarray, n_imp: int) -> np.ndarray:
    """Bernoulli(p) labels with at least one click per impression (rejection, then one click forced ∝ p)."""
    label = rng.random(len(prob)) < prob
    for _ in range(MAX_LABEL_REDRAWS):
        none = np.bincount(imp, weights=label, minlength=n_imp) == 0
        if not none.any():
            return label
        redo = none[imp]
        label[redo] = rng.random(int(redo.sum())) < prob[redo]
    rows = np.flatnonzero((np.bincount(imp, weights=label, minlength=n_imp) == 0)[imp])
    key = np.log(prob[rows]) + rng.gumbel(size=len(rows))
    order = np.lexsort((-key, imp[rows]))
    label[rows[order[rank_within(imp[rows][order]) == 0]]] = True
    return label
