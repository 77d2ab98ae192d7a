"""The ONCE protocol for datasets of (user, item, label, time) interactions without impressions (Goodreads,
the generic format, Adressa): filter, cut each user's history, split each user's remaining interactions by
time. Its keys (`ProtocolConfig`) and those of random negatives (`NegativesConfig`, which once-goodreads' own
protocol shares) are the configs those formats build on; `grouped` runs it and gives the `GroupSource` they
prepare from.

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

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field

from oncerec.data.formats.mind import Behavior, News
from oncerec.data.formats.registry import DataConfig
from oncerec.data.formats.source import Source
from oncerec.errors import DataError, OncerecError

SPLITS = ("train", "valid", "test")
TIME_LIMIT = 2**63  # times are stored as int64


class NegativesConfig(DataConfig):
    """Random negatives, for implicit feedback without them (the ONCE protocol's formats, once-goodreads)."""

    negatives: int = Field(
        0,
        ge=0,
        description="Random items a user never interacted with added as negatives to each of the user's "
        "groups (implicit-feedback data without negatives); with `eval_negatives` set, to training groups only.",
    )
    eval_negatives: int = Field(
        -1,
        ge=-1,
        description="Such negatives per valid / test group; -1: as many as `negatives`.",
    )


class ProtocolConfig(NegativesConfig):
    """The ONCE protocol for interactions without impressions (goodreads, generic, adressa): filtering, each
    user's history, the split by time (see data/formats/protocol.py)."""

    item_min_interactions: int = Field(
        5, ge=0, description="Filtering: items need at least this many interactions."
    )
    item_max_interactions: int = Field(10_000, ge=1, description="Filtering: items with more are dropped.")
    user_min_positives: int = Field(
        10, ge=0, description="Filtering: users need at least this many positives."
    )
    cold_user_share: float = Field(0.1, ge=0, le=1, description="Share of users whose history is cut short.")
    cold_history: tuple[int, int] = Field(
        (1, 5), description="History length range of cold users (inclusive)."
    )
    warm_history: tuple[int, int] = Field((5, 9), description="History length range of the other users.")
    split_ratios: tuple[float, float, float] = Field(
        (0.8, 0.1, 0.1),
        description="Train / valid / test shares of each user's remaining interactions, by time.",
    )


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


def filter_interactions(x: Interactions, cfg: ProtocolConfig) -> np.ndarray:
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


def user_groups(x: Interactions, cfg: ProtocolConfig, seed: int) -> dict[str, list[Group]]:
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


@dataclass
class GroupSource(Source):
    """Items and protocol groups held in memory (the protocol needs every user's interactions at once)."""

    items: dict[str, News]
    groups: dict[str, list[Group]]
    item_ids: list[str]
    user_ids: list[str]
    interactions_file: Path
    files: list[Path]
    protocol: dict | None = None
    protocol_key: str = "once_goodreads"
    fields = {"history": "history", "candidates": "items", "labels": "label"}
    split_files = False
    repeated: int | None = None  # repeated (user, item) interactions dropped (drop_repeated), where counted

    def __post_init__(self):
        self.splits = list(self.groups)

    def warnings(self) -> list[str]:
        if not self.repeated:
            return []
        return [
            f"{self.repeated} interactions in {self.interactions_file.name} repeat an earlier one (the same "
            "user and item, and group where given) and were dropped, the earliest kept; see stats.json "
            "(repeated_interactions)"
        ]

    def news(self, split: str) -> Iterator[News]:
        # items belong to no split here: list them once, with train (the word vocabulary is built on them)
        return iter(self.items.values()) if split == "train" else iter(())

    def behaviors(self, split: str) -> Iterator[Behavior]:
        first = 1 + sum(len(self.groups[s]) for s in self.splits[: self.splits.index(split)])
        for k, g in enumerate(self.groups[split]):
            yield Behavior(
                line=0,
                impression_id=first + k,
                user_id=self.user_ids[g.user],
                time=g.time,
                history=[self.item_ids[i] for i in g.history],
                candidates=[self.item_ids[i] for i in g.items],
                labels=g.labels,
            )

    def where(self, split: str) -> Path:
        return self.interactions_file


def sample_negatives(
    groups: dict[str, list[Group]], n_items: int, seen: dict[int, set], cfg: NegativesConfig
) -> None:
    """Random negatives the user never interacted with (`data.negatives` per training group, `data.eval_negatives`
    per valid / test group, -1: as many), then the candidates shuffled; split k draws with `split_seed + k`."""
    for k, split in enumerate(groups):
        count = cfg.negatives if split == "train" or cfg.eval_negatives < 0 else cfg.eval_negatives
        add_random_negatives(groups[split], n_items, count, seen, cfg.split_seed + k)
        shuffle_candidates(groups[split], cfg.split_seed + k)


def grouped(
    x: Interactions,
    items: dict[str, News],
    cfg: ProtocolConfig,
    files: list[Path],
    where: Path,
    protocol: dict | None = None,
    key: str = "protocol",
) -> GroupSource:
    """Interactions through the protocol: repeats dropped, the users' groups, random negatives; the items the
    kept groups use (`where`: the file messages about the groups name)."""
    x, repeated = drop_repeated(x)
    groups = user_groups(x, cfg, cfg.split_seed)
    seen: dict[int, set] = {}
    for i, u in zip(x.item.tolist(), x.user.tolist(), strict=True):
        seen.setdefault(u, set()).add(i)
    sample_negatives(groups, len(x.item_ids), seen, cfg)
    # only the items the kept groups use (filtering drops the rest)
    used = {i for gs in groups.values() for g in gs for i in (*g.history, *g.items)}
    kept = {x.item_ids[i]: items[x.item_ids[i]] for i in sorted(used)}
    return GroupSource(kept, groups, x.item_ids, x.user_ids, where, files, protocol, key, repeated)
