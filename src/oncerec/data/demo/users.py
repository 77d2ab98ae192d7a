"""Users: their interests, how those drift, and the click model.

* Users like 2-4 subcategories (often siblings in one category), each with a weight and a favourite concept.
  Interests drift: set A holds before the train period, set B (one interest swapped for a fifth of the users,
  weights perturbed) at the end of dev; at time t the click model blends them with alpha(t) going 0 -> 1.
* Clicks: p = sigmoid(BIAS + user bias + AFFINITY * affinity + QUALITY * q). The affinity sums the user's
  interest weights (the largest is 1) over a matching subcategory (x (1 + CONCEPT_BONUS) on the favourite
  concept) and CATEGORY_SHARE of the weight over a matching category only.
* What a user is shown: a PERSONAL_SHARE of personalised picks (from the user's current interests), and
  otherwise popularity-weighted picks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from oncerec.data.demo.catalogue import Catalogue, Pools
from oncerec.data.demo.vocabulary import SUB_CAT, SUB_FIRST_CONCEPT, SUB_N_CONCEPTS

MIN_INTERESTS, MAX_INTERESTS = 2, 4
# a further interest is this much likelier (in log-odds) in the first one's category
SIBLING_BOOST = math.log(4.0)
INTEREST_CONCENTRATION = 1.5  # Dirichlet over a user's interests
DRIFT_SHARE = 0.2  # users whose set B swaps one interest
DRIFT_WEIGHT_SD = 0.5
USER_BIAS_SD = 0.3
ACTIVITY_SHAPE = 1.0  # impressions per user scale with activity ~ Gamma(shape, 1 / shape): mean 1, skewed

# Click model.
BIAS = -4.5
AFFINITY = 2.4
QUALITY = 0.7
CONCEPT_BONUS = 0.6
CATEGORY_SHARE = 0.3

PERSONAL_SHARE = 0.2  # of the items shown: picked from the user's interests, the rest by popularity


@dataclass(frozen=True)
class Interests:
    """Per user, MAX_INTERESTS slots; unused slots have sub = concept = cat = -1 and weight 0."""

    sub: np.ndarray
    concept: np.ndarray
    cat: np.ndarray
    weight: np.ndarray  # the largest is 1


def draw_interests(rng: np.random.Generator, sub_pop: np.ndarray, n: int) -> Interests:
    """Interest set A: an anchor subcategory drawn by popularity, the others likelier among its siblings."""
    k = rng.integers(MIN_INTERESTS, MAX_INTERESTS + 1, n)
    anchor = rng.choice(len(sub_pop), n, p=sub_pop)
    score = _gumbel_scores(rng, sub_pop, SUB_CAT[anchor])
    score[np.arange(n), anchor] = np.inf
    top = np.argsort(-score, axis=1, kind="stable")[:, :MAX_INTERESTS]
    used = np.arange(MAX_INTERESTS) < k[:, None]
    weight = rng.gamma(INTEREST_CONCENTRATION, size=(n, MAX_INTERESTS)) * used
    return _make_interests(rng, np.where(used, top, -1), weight)


def drift(rng: np.random.Generator, a: Interests, sub_pop: np.ndarray) -> Interests:
    """Interest set B: for DRIFT_SHARE of users one interest moves (often to a sibling); weights wobble."""
    n = len(a.sub)
    used = a.sub >= 0
    slot = (rng.random(n) * used.sum(1)).astype(np.int64)
    rows = np.arange(n)
    score = _gumbel_scores(rng, sub_pop, a.cat[rows, slot])
    np.put_along_axis(score, np.where(used, a.sub, a.sub[:, :1]), -np.inf, axis=1)
    moved = rng.random(n) < DRIFT_SHARE
    sub = a.sub.copy()
    sub[rows[moved], slot[moved]] = score.argmax(1)[moved]
    weight = a.weight * np.exp(rng.normal(0.0, DRIFT_WEIGHT_SD, a.weight.shape))
    b = _make_interests(rng, sub, weight)
    # unmoved interests keep their favourite concept
    return Interests(b.sub, np.where(sub == a.sub, a.concept, b.concept), b.cat, b.weight)


def _gumbel_scores(rng: np.random.Generator, sub_pop: np.ndarray, near_cat: np.ndarray) -> np.ndarray:
    """Gumbel-perturbed log-popularity of each subcategory per row, boosted in category `near_cat`."""
    sibling = SUB_CAT[None, :] == near_cat[:, None]
    return np.log(sub_pop)[None, :] + SIBLING_BOOST * sibling + rng.gumbel(size=(len(near_cat), len(sub_pop)))


def _make_interests(rng: np.random.Generator, sub: np.ndarray, weight: np.ndarray) -> Interests:
    used = sub >= 0
    s = np.where(used, sub, 0)
    concept = SUB_FIRST_CONCEPT[s] + (rng.random(sub.shape) * SUB_N_CONCEPTS[s]).astype(np.int64)
    return Interests(
        sub,
        np.where(used, concept, -1),
        np.where(used, SUB_CAT[s], -1),
        weight / weight.max(1, keepdims=True),
    )


def _affinity(it: Interests, users: np.ndarray, items: np.ndarray, cat: Catalogue) -> np.ndarray:
    same_sub = it.sub[users] == cat.sub[items][:, None]
    same_concept = it.concept[users] == cat.concept[items][:, None]
    same_cat = it.cat[users] == SUB_CAT[cat.sub[items]][:, None]
    match = np.where(same_sub, 1.0 + CONCEPT_BONUS * same_concept, CATEGORY_SHARE * same_cat)
    return (it.weight[users] * match).sum(1)


@dataclass(frozen=True)
class Users:
    """One chunk of users; arrays are indexed by the user's position in the chunk."""

    first: int  # global index of the chunk's first user
    bias: np.ndarray
    a: Interests
    b: Interests

    def click_prob(
        self, cat: Catalogue, users: np.ndarray, items: np.ndarray, alpha: np.ndarray
    ) -> np.ndarray:
        aff = (1.0 - alpha) * _affinity(self.a, users, items, cat) + alpha * _affinity(
            self.b, users, items, cat
        )
        logit = BIAS + self.bias[users] + AFFINITY * aff + QUALITY * cat.quality[items]
        return 1.0 / (1.0 + np.exp(-logit))

    def sample_items(
        self, rng: np.random.Generator, pools: Pools, users: np.ndarray, slots: np.ndarray, alpha: np.ndarray
    ) -> np.ndarray:
        """One item per row: personalised (an interest of set A or B, by alpha) or popularity-weighted."""
        n = len(users)
        use_b = (rng.random(n) < alpha)[:, None]
        weight = np.where(use_b, self.b.weight[users], self.a.weight[users])
        cum = weight.cumsum(1)
        pick = (cum < (rng.random(n) * cum[:, -1])[:, None]).sum(1)
        sub = np.where(use_b[:, 0], self.b.sub[users, pick], self.a.sub[users, pick])
        lo, hi = pools.bounds[slots, sub], pools.bounds[slots, sub + 1]
        general = (rng.random(n) >= PERSONAL_SHARE) | (lo == hi)
        lo = np.where(general, pools.bounds[slots, 0], lo)
        hi = np.where(general, pools.bounds[slots, -1], hi)
        return pools.draw(lo, hi, rng.random(n))
