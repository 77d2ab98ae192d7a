"""Metrics of scored candidates, vectorised: the one implementation in oncerec.

Rows are candidates with a 0/1 label and a score (a logit), each in a group (an impression). The names are the
keys of metrics.json and the values of `exp.metrics`:

| name       | what                                                                  | grouping       |
|------------|-----------------------------------------------------------------------|----------------|
| auc        | ROC-AUC of each impression, averaged over impressions (MIND's AUC)    | per impression |
| gauc       | ROC-AUC of each user, their impressions pooled, averaged over users   | per user       |
| global_auc | ROC-AUC of all rows together                                          | pooled         |
| mrr        | mean reciprocal rank of every click (MIND's MRR)                      | per impression |
| ndcg@K     | nDCG at K with MIND's gains                                           | per impression |
| hit@K      | 1 when a click is among the top K                                     | per impression |
| recall@K   | share of the impression's clicks among the top K                      | per impression |
| lrap       | label ranking average precision (average precision of the ranking)    | per impression |
| f1@T       | F1 of the prediction sigmoid(score) >= T                              | pooled         |
| logloss    | binary cross-entropy of sigmoid(score)                                | pooled         |

A per-group metric averages over the groups (impressions, or users for gauc) that have both a positive and a
negative; the others are skipped and counted.

Ties, the `ties` argument. `position` (default, MIND's official scorer): equal scores are ranked by row order,
the earlier row first, so every metric reads one strict ranking and `prediction.txt` reproduces it.
`average`: every order of the tied rows is equally likely and each metric is its expected value over them (for
AUC a tied pair counts one half, as sklearn's roc_auc_score). One set of formulas serves both: a metric is
written over tie blocks (the rows of one group that the rule leaves tied; a single row each under `position`),
with each row's label replaced by its block's mean label where the metric is linear in the labels (AUC, MRR,
nDCG, recall) and an exact expectation for hit@K and lrap. global_auc gives ties average ranks under either
rule: rows of different impressions have no order to break them by.

Everything is one sort and segment sums over the sorted rows, no Python loop over groups: 1M rows take a
fraction of a second.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from oncerec.errors import DataError

DEFAULT_METRICS = ("auc", "mrr", "ndcg@5", "ndcg@10", "global_auc", "logloss")
# The columns of a table with the default choice, as before `exp.metrics`: the pooled global_auc and logloss
# are in metrics.json only (logloss means little for matching models, whose scores are not probabilities).
DEFAULT_TABLE = ("auc", "mrr", "ndcg@5", "ndcg@10")
TIES = ("position", "average")

_PLAIN = ("auc", "gauc", "global_auc", "mrr", "lrap", "logloss")
_AT_K = ("ndcg", "hit", "recall")
_POOLED = ("global_auc", "logloss", "f1")
SYNTAX = (
    "auc, gauc, global_auc, mrr, lrap, logloss, ndcg@K, hit@K, recall@K (K a whole number >= 1), "
    "f1@T (T from 0 to 1: a threshold on the sigmoid of the score)"
)
_LABELS = {
    "auc": "AUC per impression",
    "gauc": "GAUC per user",
    "global_auc": "AUC pooled",
    "mrr": "MRR",
    "lrap": "LRAP",
    "logloss": "logloss",
    "ndcg": "nDCG",
    "hit": "hit",
    "recall": "recall",
    "f1": "F1",
}


def parse_metric(name: str) -> tuple[str, int | float | None]:
    """(kind, parameter) of a metric name: `ndcg@5` -> ("ndcg", 5), `f1@0.5` -> ("f1", 0.5), `mrr` ->
    ("mrr", None). A name that is none of `SYNTAX` is a ValueError listing them."""
    kind, at, arg = str(name).strip().lower().partition("@")
    if not at and kind in _PLAIN:
        return kind, None
    if at and kind in _AT_K and arg.isdigit() and int(arg) >= 1:
        return kind, int(arg)
    if at and kind == "f1":
        try:
            threshold = float(arg)
        except ValueError:
            threshold = math.nan
        if 0.0 <= threshold <= 1.0:  # NaN fails this too
            return kind, threshold
    raise ValueError(f"unknown metric `{name}`; valid: {SYNTAX}")


def metric_name(name: str) -> str:
    """The canonical spelling of a metric name (lower case, `ndcg@05` -> `ndcg@5`, `f1@0.50` -> `f1@0.5`)."""
    kind, param = parse_metric(name)
    if param is None:
        return kind
    if isinstance(param, float):
        return f"{kind}@{np.format_float_positional(param, trim='-')}"
    return f"{kind}@{param}"


def metric_names(names: Iterable[str]) -> list[str]:
    """Canonical names, in order; ValueError for an unknown one, a repeated one or none at all."""
    out: list[str] = []
    for name in names:
        canonical = metric_name(name)
        if canonical in out:
            raise ValueError(f"metric `{name}` is listed twice")
        out.append(canonical)
    if not out:
        raise ValueError(f"no metric chosen; valid: {SYNTAX}")
    return out


def lower_is_better(name: str) -> bool:
    return parse_metric(name)[0] == "logloss"


def metric_label(name: str) -> str:
    """A table header that says how the metric is grouped where that is not obvious (every AUC)."""
    kind, param = parse_metric(name)
    label = _LABELS[kind]
    return label if param is None else f"{label}@{metric_name(name).partition('@')[2]}"


def table_metrics(names: Sequence[str]) -> list[str]:
    """The metrics a table shows for a run that reported `names` (its `exp.metrics`): all of them, except that
    the default choice keeps the four columns tables had before the choice existed."""
    names = metric_names(names)
    return list(DEFAULT_TABLE) if tuple(names) == DEFAULT_METRICS else names


# Full-ranking evaluation (`exp.full_ranking`): each user's held-out items ranked among every item of the
# catalogue. Only metrics of the top K can be read off torch.topk without a rank for every item, so only these.
FULL_RANKING_KINDS = ("recall", "ndcg", "hit")
FULL_RANKING_DEFAULT = ("recall@10", "recall@50", "ndcg@10", "hit@10")
FULL_PREFIX = "full/"  # metrics.json keys of the full-ranking metrics: full/recall@10, full/users, ...


def full_ranking_names(names: Iterable[str]) -> list[str]:
    """Canonical full-ranking metric names (none: off); ValueError for a name that is not a top-K metric."""
    names = list(names)
    if not names:
        return []
    out = metric_names(names)
    bad = [n for n in out if parse_metric(n)[0] not in FULL_RANKING_KINDS]
    if bad:
        raise ValueError(
            f"full ranking reports recall@K, ndcg@K and hit@K only (what the top K of the catalogue tells); "
            f"not {', '.join(bad)}"
        )
    return out


def evaluate_top_k(found, held_out, metrics: Sequence[str]) -> dict[str, float | int]:
    """Full-ranking `metrics` of users whose ranking of the whole catalogue is known only as far as its top K:
    `found` [U, K] (True where the item at that rank is one of the user's held-out items), `held_out` [U] (how
    many the user has, >= 1). Every metric of `FULL_RANKING_KINDS` at k <= K is exact from this.

    The per-group formulas of `evaluate_groups` compute them, a user being a group: the K ranked rows, then the
    held-out items outside the top K (ranked below it: their exact ranks do not matter at k <= K) and one
    unclicked row standing for the rest of the catalogue (a user whose top K holds only held-out items is
    still averaged over). Returns the metrics and `users` (averaged over)."""
    names = full_ranking_names(metrics)
    found, held_out = np.asarray(found, dtype=bool), np.asarray(held_out, dtype=np.int64)
    if found.ndim != 2 or held_out.shape != (len(found),):
        raise ValueError("found must be [users, K] and held_out [users]")
    users, k = found.shape
    missed = held_out - found.sum(axis=1)
    if (held_out < 1).any() or (missed < 0).any():
        raise ValueError("every user needs a held-out item, and at least as many as found in the top K")
    too_deep = [n for n in names if parse_metric(n)[1] > k]
    if too_deep:
        raise ValueError(f"{', '.join(too_deep)}: the top {k} was ranked, not deeper")
    user = np.arange(users)
    labels = np.concatenate([found.ravel(), np.ones(missed.sum()), np.zeros(users)])
    scores = np.concatenate(
        [
            np.tile(-np.arange(k, dtype=np.float64), users),
            np.full(missed.sum(), -k - 1.0),
            np.full(users, -k - 2.0),
        ]
    )
    groups = np.concatenate([np.repeat(user, k), np.repeat(user, missed), user])
    result = evaluate_groups(labels, scores, groups, names)
    return {**{n: result[n] for n in names}, "users": result["groups"]}


def _check_inputs(labels, scores, groups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    groups = np.asarray(groups)
    if not (labels.ndim == scores.ndim == groups.ndim == 1):
        raise ValueError("labels, scores and groups must be 1-D arrays")
    if not (len(labels) == len(scores) == len(groups)):
        raise ValueError(
            f"labels, scores and groups differ in length: {len(labels)}, {len(scores)}, {len(groups)}"
        )
    labels = labels.astype(np.float64)
    if not ((labels == 0) | (labels == 1)).all():
        raise ValueError("labels must be 0/1")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite (no NaN or inf)")
    return labels, scores, groups


def _sort_within_groups(scores: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order rows by (group, score descending, row index).

    Returns ``order`` (row indices in sorted order), ``segment`` (0-based group number of each sorted
    row) and ``position`` (0-based position of each sorted row inside its group).
    """
    # Two stable passes are faster than np.lexsort here, and stability is what breaks score ties by
    # row order (documented for kind="stable", unlike lexsort).
    order = np.argsort(-scores, kind="stable")
    order = order[np.argsort(groups[order], kind="stable")]
    sorted_groups = groups[order]
    is_start = np.empty(len(order), dtype=bool)
    is_start[:1] = True
    np.not_equal(sorted_groups[1:], sorted_groups[:-1], out=is_start[1:])
    segment = np.cumsum(is_start) - 1
    starts = np.flatnonzero(is_start)
    position = np.arange(len(order)) - starts[segment]
    return order, segment, position


def group_ranks(scores: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """1-based strict rank of each row within its group (1 = highest score), ties broken by row order
    (earlier row ranks higher). `groups` is an int array; rows of a group need NOT be contiguous.
    Returns int64 array, same order as input."""
    scores = np.asarray(scores, dtype=np.float64)
    groups = np.asarray(groups)
    if scores.shape != groups.shape or scores.ndim != 1:
        raise ValueError("scores and groups must be 1-D arrays of the same length")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    order, _, position = _sort_within_groups(scores, groups)
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = position + 1
    return ranks


def _ranking_metrics(
    labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, names: Sequence[str], ties: str
) -> dict[str, float | int]:
    """The per-group metrics `names` (auc: per group), averaged over groups with a positive and a negative,
    and the counts `groups`, `skipped`, `rows`."""
    rows = len(labels)
    order, segment, position = _sort_within_groups(scores, groups)
    y = labels[order]
    n_groups = int(segment[-1]) + 1 if rows else 0
    size = np.bincount(segment, minlength=n_groups).astype(np.float64)
    pos = np.bincount(segment, weights=y, minlength=n_groups)
    neg = size - pos
    valid = (pos > 0) & (neg > 0)

    # Each sorted row's tie block: its first position in the group (`start`), its number of rows (`width`),
    # its positives (`block_pos`) and their mean (`y_mean`, a click's chance to sit on that row).
    if ties == "position":
        start, width, block_pos, y_mean = position, np.ones(rows), y, y
    else:
        new = np.empty(rows, dtype=bool)
        new[:1] = True
        sorted_scores = scores[order]
        new[1:] = (segment[1:] != segment[:-1]) | (sorted_scores[1:] != sorted_scores[:-1])
        block = np.cumsum(new) - 1
        block_width = np.bincount(block).astype(np.float64)
        block_clicks = np.bincount(block, weights=y)
        start = position[np.flatnonzero(new)][block]
        width, block_pos = block_width[block], block_clicks[block]
        y_mean = (block_clicks / block_width)[block]

    def per_group(weights: np.ndarray) -> np.ndarray:
        return np.bincount(segment, weights=weights, minlength=n_groups)

    def mean(values: np.ndarray) -> float:
        return float(values[valid].mean()) if valid.any() else float("nan")

    max_k = max([p for k, p in map(parse_metric, names) if k == "ndcg"], default=0)
    # Positions beyond the largest group never count, so the discounts stop there.
    discount = 1.0 / np.log2(np.arange(min(max_k, int(size.max(initial=0)))) + 2.0)
    ideal_prefix = np.concatenate([[0.0], np.cumsum(discount)])
    result: dict[str, float | int] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for name in names:
            kind, k = parse_metric(name)
            if kind == "auc":
                # Negatives ranked above the positives number sum(position of each positive) - P(P-1)/2 in a
                # strict ranking; with tie blocks, that sum over mean labels counts a tied pair one half.
                result[name] = mean(1.0 - (per_group(y_mean * position) - pos * (pos - 1) / 2) / (pos * neg))
            elif kind == "mrr":
                result[name] = mean(per_group(y_mean / (position + 1)) / pos)
            elif kind == "ndcg":
                # Binary labels make the gain 2^y - 1 equal to y, and the ideal DCG@k is the sum of the first
                # min(P, k) discounts.
                in_top = position < k
                gain = np.zeros(rows)
                gain[in_top] = y_mean[in_top] * discount[position[in_top]]
                result[name] = mean(per_group(gain) / ideal_prefix[np.minimum(pos, k).astype(np.int64)])
            elif kind == "recall":
                result[name] = mean(per_group(y_mean * (position < k)) / pos)
            elif kind == "hit":
                # A click for sure when a whole block inside the top k holds one; else the block cut by k (at
                # most one per group) misses when its first k - start rows drawn are all non-clicks.
                sure = per_group(block_pos * (start + width <= k)) > 0
                cut = (position < k) & (start + width > k)
                drawn = position - start
                miss = np.maximum((width - block_pos - drawn) / (width - drawn), 0.0)
                p_miss = np.exp(per_group(np.where(cut, np.log(miss), 0.0)))
                result[name] = mean(np.where(sure, 1.0, 1.0 - p_miss))
            elif kind == "lrap":
                # Average precision: each click at 1-based rank r adds (clicks ranked <= r) / r. In a block,
                # the expected clicks up to a row are the block's earlier-ranked clicks (before it) plus the
                # row's own chance plus, for each earlier row of the block, the chance both are clicks.
                before = np.cumsum(y) - y
                first_of_group = np.arange(rows) - position
                before_block = before[first_of_group + start] - before[first_of_group]
                offset = position - start
                both = np.where(width > 1, block_pos * (block_pos - 1) / (width * (width - 1)), 0.0)
                hits = y_mean * (before_block + 1) + offset * both
                result[name] = mean(per_group(hits / (position + 1)) / pos)
            else:
                raise ValueError(f"`{name}` is not a per-group ranking metric")

    n_valid = int(valid.sum())
    result["groups"] = n_valid
    result["skipped"] = n_groups - n_valid
    result["rows"] = rows
    return result


def _global_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Pooled ROC-AUC via the Mann-Whitney statistic with average ranks for ties (matches sklearn)."""
    n_pos = labels.sum()
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    is_start = np.empty(len(order), dtype=bool)
    is_start[0] = True
    np.not_equal(sorted_scores[1:], sorted_scores[:-1], out=is_start[1:])
    starts = np.flatnonzero(is_start)
    ends = np.append(starts[1:], len(order))
    # 1-based average rank of a tie block [start, end) is (start + 1 + end) / 2.
    block_rank = (starts + 1 + ends) / 2.0
    avg_rank = np.repeat(block_rank, ends - starts)
    rank_sum = float(avg_rank @ labels[order])
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _logloss(labels: np.ndarray, logits: np.ndarray) -> float:
    # -log sigmoid(x) = softplus(-x), written to avoid overflow for large |x|.
    softplus = np.maximum(logits, 0.0) + np.log1p(np.exp(-np.abs(logits)))
    return float(np.mean(softplus - labels * logits))


def _f1(labels: np.ndarray, logits: np.ndarray, threshold: float) -> float:
    """F1 of predicting a click where sigmoid(logit) >= threshold; NaN when there is no click to find and none
    predicted (sklearn's zero_division case)."""
    predicted = np.exp(-np.logaddexp(0.0, -logits)) >= threshold  # sigmoid without overflow
    true_pos = float(labels @ predicted)
    denominator = 2 * true_pos + (predicted.sum() - true_pos) + (labels.sum() - true_pos)
    return 2 * true_pos / denominator if denominator else float("nan")


def evaluate_groups(
    labels,
    scores,
    groups,
    metrics: Sequence[str] = DEFAULT_METRICS,
    users=None,
    ties: str = "position",
) -> dict[str, float | int]:
    """The `metrics` (names, see the module docstring) of `scores` (logits) against 0/1 `labels`, one group
    per impression id in `groups`; `users` (the user of each row) for gauc.

    Returns the metrics in the order asked, then "groups" (impressions averaged over), "skipped" (impressions
    with all-0 or all-1 labels, left out of every per-impression metric), "rows", and with gauc "users" (users
    averaged over). `ties`: "position" (earlier row ranks higher, as `group_ranks`) or "average" (expected
    value over the orders of tied rows). Means over zero groups, and F1 without clicks or predicted clicks,
    are NaN.
    """
    names = metric_names(metrics)
    if ties not in TIES:
        raise ValueError(f"ties `{ties}`: valid: {', '.join(TIES)}")
    labels, scores, groups = _check_inputs(labels, scores, groups)
    kinds = {name: parse_metric(name) for name in names}
    per_impression = [n for n in names if kinds[n][0] not in (*_POOLED, "gauc")]
    ranked = _ranking_metrics(labels, scores, groups, per_impression, ties)
    by_user = None
    if "gauc" in names:
        if users is None:
            raise ValueError("gauc groups rows by user: give the user of each row (`users`)")
        users = np.asarray(users)
        if users.shape != groups.shape:
            raise ValueError(f"users must be a 1-D array of {len(groups)} entries, one per row")
        by_user = _ranking_metrics(labels, scores, users, ["auc"], ties)

    result: dict[str, float | int] = {}
    empty = len(labels) == 0
    for name in names:
        kind, param = kinds[name]
        if kind == "gauc":
            result[name] = by_user["auc"]
        elif kind == "global_auc":
            result[name] = float("nan") if empty else _global_auc(labels, scores)
        elif kind == "logloss":
            result[name] = float("nan") if empty else _logloss(labels, scores)
        elif kind == "f1":
            result[name] = _f1(labels, scores, param)
        else:
            result[name] = ranked[name]
    result.update(groups=ranked["groups"], skipped=ranked["skipped"], rows=ranked["rows"])
    if by_user is not None:
        result["users"] = by_user["groups"]
    return result


def json_safe(obj):
    """`obj` with every NaN or infinite float replaced by None: metrics of zero groups are NaN, which JSON
    cannot hold (`json.dumps` would write a bare `NaN` that strict readers refuse); `skipped` says why."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def metrics_json(obj, indent: int | None = 2) -> str:
    """Metrics as strict JSON (null where a metric is undefined)."""
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False)


def read_metrics(path: Path) -> dict:
    """A run's metrics.json ({split: {metric: value or null}}); a damaged file is an error naming it."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "file not found (the run has not finished)") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(path, f"not valid JSON ({e}): re-run `oncerec evaluate RUN_DIR --write`") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise DataError(path, "expected {split: {metric: value}}")
    return data
