"""The ONCE protocol for datasets of (user, item, label, time) interactions without impressions (Goodreads,
the generic format): filter, cut each user's history, split each user's remaining interactions by time.

1. Iterative filtering until nothing changes: items with `item_min_interactions`..`item_max_interactions`
   interactions, users with at least `user_min_positives` positives.
2. History: each user's first positives in time order: `cold_history` (a range, inclusive) of them for a
   `cold_user_share` of users drawn with the seed, `warm_history` for the others.
3. The user's remaining interactions (positives and negatives), in time order, split by `split_ratios` into
   train / valid / test. With group ids (e.g. impressions) whole groups move together.

Each (user, split) — or each group — becomes one "impression" of the prepared dataset, so the evaluation
groups by user (or by group) with the same metrics and code as MIND.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from oncerec.config.schema import DataConfig
from oncerec.errors import DataError, OncerecError

SPLITS = ("train", "valid", "test")
TIME_LIMIT = 2**63  # times are stored as int64


def time_value(value: int, path: Path, line: int, field: str) -> int:
    """An interaction's time as read (an integer), or a DataError naming where: it must fit int64."""
    if not -TIME_LIMIT <= value < TIME_LIMIT:
        shown = str(value) if len(str(value)) <= 30 else f"{str(value)[:20]}... ({len(str(value))} digits)"
        raise DataError(
            path,
            f"time {shown} is out of range: expected seconds since 1970 (at most 19 digits)",
            line,
            field,
        )
    return value


@dataclass
class Interactions:
    """Parallel arrays, one row per interaction; `user` and `item` are dense indices into `user_ids` and
    `item_ids` (the raw ids)."""

    user: np.ndarray
    item: np.ndarray
    label: np.ndarray  # 1 positive, 0 negative
    time: np.ndarray  # int64 seconds (or any increasing order key)
    group: np.ndarray | None  # group id per row, or None: one group per (user, split)
    user_ids: list[str]
    item_ids: list[str]

    @classmethod
    def from_lists(cls, user, item, label, time, group, user_ids, item_ids) -> Interactions:
        """From the Python lists a reader grows (group None: no group ids) and its id -> index dicts."""
        return cls(
            np.array(user, np.int64),
            np.array(item, np.int64),
            np.array(label, np.int8),
            np.array(time, np.int64),
            None if group is None else np.array(group, np.int64),
            list(user_ids),
            list(item_ids),
        )


def drop_repeated(x: Interactions) -> tuple[Interactions, int]:
    """The earliest interaction of each (user, item) — of each (user, group, item) with group ids — (ties: the
    first in the file), and how many repeats were dropped. A repeated positive would otherwise land in two
    splits (train and valid: the answer in the training data) or twice in one group."""
    n = len(x.user)
    keys = (x.user, x.item) if x.group is None else (x.user, x.group, x.item)
    order = np.lexsort((np.arange(n), x.time, *reversed(keys)))
    same = np.ones(n, bool)
    for k in keys:
        sorted_k = k[order]
        same[1:] &= sorted_k[1:] == sorted_k[:-1]
    same[:1] = False
    if not same.any():
        return x, 0
    kept = np.sort(order[~same])  # in file order, as read
    group = None if x.group is None else x.group[kept]
    first = Interactions(
        x.user[kept], x.item[kept], x.label[kept], x.time[kept], group, x.user_ids, x.item_ids
    )
    return first, int(same.sum())


@dataclass
class Group:
    user: int
    time: int
    history: list[int]  # item indices, oldest first
    items: list[int]
    labels: list[int]


def filter_interactions(x: Interactions, cfg: DataConfig) -> np.ndarray:
    """Mask of the rows that survive the iterative item / user filtering."""
    keep = np.ones(len(x.user), bool)
    while True:
        items = np.bincount(x.item[keep], minlength=len(x.item_ids))
        ok_item = (items >= cfg.item_min_interactions) & (items <= cfg.item_max_interactions)
        positives = np.bincount(x.user[keep], weights=x.label[keep], minlength=len(x.user_ids))
        ok_user = positives >= cfg.user_min_positives
        new = keep & ok_item[x.item] & ok_user[x.user]
        if new.sum() == keep.sum():
            return new
        keep = new


def user_groups(x: Interactions, cfg: DataConfig, seed: int) -> dict[str, list[Group]]:
    """Apply the protocol: {split: groups}, users in index order, groups in time order."""
    keep = filter_interactions(x, cfg)
    if not keep.any():
        raise OncerecError(
            "no interaction survives the filtering (data.item_min_interactions, data.item_max_interactions, "
            "data.user_min_positives): loosen them for a small dataset"
        )
    rows = np.flatnonzero(keep)
    # per user, in time order (ties: file order)
    rows = rows[np.lexsort((rows, x.time[rows], x.user[rows]))]
    starts = np.flatnonzero(np.r_[True, x.user[rows][1:] != x.user[rows][:-1]])
    bounds = np.r_[starts, len(rows)]
    rng = np.random.default_rng(seed)
    n_users = len(starts)
    cold = rng.random(n_users) < cfg.cold_user_share
    lo = np.where(cold, cfg.cold_history[0], cfg.warm_history[0])
    hi = np.where(cold, cfg.cold_history[1], cfg.warm_history[1])
    n_hist = rng.integers(lo, hi + 1)
    out: dict[str, list[Group]] = {s: [] for s in SPLITS}
    ratios = np.cumsum(cfg.split_ratios) / sum(cfg.split_ratios)
    for u in range(n_users):
        r = rows[bounds[u] : bounds[u + 1]]
        pos = r[x.label[r] == 1]
        history = pos[: n_hist[u]]
        rest = np.setdiff1d(r, history, assume_unique=True)
        rest = rest[np.lexsort((rest, x.time[rest]))]
        if x.group is None:
            units = [rest[i : i + 1] for i in range(len(rest))]
        else:
            # whole groups, ordered by their first interaction
            g = x.group[rest]
            _, first, inverse = np.unique(g, return_index=True, return_inverse=True)
            units = [rest[inverse == k] for k in np.argsort(first, kind="stable")]
        cut = np.round(ratios * len(units)).astype(int)
        parts = {"train": units[: cut[0]], "valid": units[cut[0] : cut[1]], "test": units[cut[1] :]}
        user = int(x.user[r[0]])
        hist = x.item[history].tolist()
        for split, chosen in parts.items():
            if not chosen:
                continue
            groups = chosen if x.group is not None else [np.concatenate(chosen)]
            for g_rows in groups:
                out[split].append(
                    Group(
                        user,
                        int(x.time[g_rows].min()),
                        hist,
                        x.item[g_rows].tolist(),
                        x.label[g_rows].astype(int).tolist(),
                    )
                )
    return out


def add_random_negatives(
    groups: list[Group], n_items: int, count: int, seen: dict[int, set], seed: int
) -> None:
    """Add `count` random items the user never interacted with to each group, as negatives (implicit data)."""
    if count <= 0:
        return
    rng = np.random.default_rng(seed)
    for g in groups:
        interacted = seen[g.user]
        chosen: set[int] = set()
        while len(chosen) < min(count, n_items - len(interacted)):
            i = int(rng.integers(n_items))
            if i not in interacted and i not in chosen:
                chosen.add(i)
                g.items.append(i)
                g.labels.append(0)


def shuffle_candidates(groups: list[Group], seed: int) -> None:
    """Put each group's candidates in a seeded random order. The protocol lists them positives-first in
    places (time order, then sampled negatives appended), and ranking metrics break score ties by position:
    unshuffled, every tie (an empty history, a missing item, a constant score) would rank the positives first
    and inflate AUC and MRR. MIND's impressions come shuffled already and keep their order."""
    rng = np.random.default_rng([seed, 7])
    for g in groups:
        order = rng.permutation(len(g.items))
        g.items = [g.items[i] for i in order]
        g.labels = [g.labels[i] for i in order]
