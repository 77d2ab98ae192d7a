"""MIND ranking metrics (AUC, MRR, nDCG@5/10), vectorised, plus the leaderboard file format.

The per-impression metrics follow the official MIND ``evaluate.py``. Scores are first turned into a strict
1-based rank per impression (equal scores: the earlier candidate ranks higher) and every per-impression
metric is computed from that ranking. The official scorer reads ``prediction.txt`` ranks and scores each
candidate as ``1/rank``, so it reproduces these numbers exactly.

Everything is done with one sort and segment sums over the sorted rows; there is no Python loop over
impressions, so 1M+ rows evaluate in a fraction of a second.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from oncerec.data.mind import BOM, IMPRESSION_ID
from oncerec.errors import DataError

NDCG_CUTOFFS = (5, 10)


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


def _ranking_metrics(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> dict[str, float | int]:
    """Per-group AUC/MRR/nDCG averaged over groups that have both a positive and a negative."""
    rows = len(labels)
    order, segment, position = _sort_within_groups(scores, groups)
    y = labels[order]
    n_groups = int(segment[-1]) + 1 if rows else 0
    size = np.bincount(segment, minlength=n_groups).astype(np.float64)
    pos = np.bincount(segment, weights=y, minlength=n_groups)
    neg = size - pos
    valid = (pos > 0) & (neg > 0)

    # With a strict ranking, the negatives ranked above the positives number
    # sum(position of each positive) - P(P-1)/2, so AUC needs one segment sum and no pair counting.
    pos_positions = np.bincount(segment, weights=y * position, minlength=n_groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = 1.0 - (pos_positions - pos * (pos - 1) / 2) / (pos * neg)
        mrr = np.bincount(segment, weights=y / (position + 1), minlength=n_groups) / pos

    result: dict[str, float | int] = {}
    auc_mean = float(auc[valid].mean()) if valid.any() else float("nan")
    result["auc"] = auc_mean
    result["gauc"] = auc_mean
    result["mrr"] = float(mrr[valid].mean()) if valid.any() else float("nan")

    # Binary labels make the gain 2^y - 1 equal to y, and the ideal DCG@k is the sum of the first
    # min(P, k) discounts.
    discount = 1.0 / np.log2(np.arange(max(NDCG_CUTOFFS)) + 2.0)
    ideal_prefix = np.concatenate([[0.0], np.cumsum(discount)])
    for k in NDCG_CUTOFFS:
        in_top = position < k
        gain = np.zeros(rows)
        gain[in_top] = y[in_top] * discount[position[in_top]]
        dcg = np.bincount(segment, weights=gain, minlength=n_groups)
        ideal = ideal_prefix[np.minimum(pos, k).astype(np.int64)]
        with np.errstate(divide="ignore", invalid="ignore"):
            ndcg = dcg / ideal
        result[f"ndcg@{k}"] = float(ndcg[valid].mean()) if valid.any() else float("nan")

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


def evaluate_groups(labels, scores, groups) -> dict[str, float | int]:
    """MIND metrics of `scores` (logits) against 0/1 `labels`, one group per impression id in `groups`.

    Returns {"auc", "gauc", "mrr", "ndcg@5", "ndcg@10", "global_auc", "logloss", "groups", "skipped", "rows"}:
    - "auc" = "gauc": mean per-group AUC (MIND's "AUC" is per impression; Legommenders calls it GAUC);
    - "mrr", "ndcg@5", "ndcg@10": means over the same groups; all per-group metrics use the strict
      ranking of `group_ranks` (ties: earlier row ranks higher);
    - "global_auc": ROC-AUC over all rows pooled, ties get average ranks (as sklearn);
    - "logloss": binary cross-entropy of sigmoid(scores) over all rows;
    - "groups": groups averaged over; "skipped": groups with all-0 or all-1 labels (no AUC, so left
      out of every per-group metric); "rows": number of rows.
    Means over zero groups are NaN.
    """
    labels, scores, groups = _check_inputs(labels, scores, groups)
    result = _ranking_metrics(labels, scores, groups)
    result["global_auc"] = _global_auc(labels, scores) if len(labels) else float("nan")
    result["logloss"] = _logloss(labels, scores) if len(labels) else float("nan")
    return result


# --- leaderboard files: one line per impression, `ImpressionID [v1,v2,...]` ---------------------------

# Ids and values as `prepare` accepts impression ids (at most 18 digits: every value fits int64).
_NUM = IMPRESSION_ID.pattern
_LINE = re.compile(rf"({_NUM}) \[({_NUM}(?:,{_NUM})*)\]")


def _check_csr(impression_ids: np.ndarray, offsets: np.ndarray, values: np.ndarray) -> None:
    if offsets.ndim != 1 or len(offsets) != len(impression_ids) + 1:
        raise ValueError(f"offsets must have len(impression_ids) + 1 = {len(impression_ids) + 1} entries")
    if offsets[0] != 0 or offsets[-1] != len(values):
        raise ValueError(f"offsets must run from 0 to len(values) = {len(values)}")
    # The reader rejects `[]`, so an empty impression would write a file that cannot be read back.
    if (np.diff(offsets) <= 0).any():
        raise ValueError("offsets must be strictly increasing (every impression needs a candidate)")


def _write_leaderboard(path, impression_ids, offsets, values) -> None:
    path = Path(path)
    impression_ids = np.asarray(impression_ids, dtype=np.int64)
    offsets = np.asarray(offsets, dtype=np.int64)
    values = np.asarray(values, dtype=np.int64)
    _check_csr(impression_ids, offsets, values)
    # Converting every value once and joining slices keeps 100k impressions well under a second.
    text_values = list(map(str, values.tolist()))
    bounds = offsets.tolist()
    lines = [
        f"{iid} [{','.join(text_values[start:end])}]"
        for iid, start, end in zip(impression_ids.tolist(), bounds[:-1], bounds[1:], strict=True)
    ]
    # Write beside the target and rename, so a crash never leaves a truncated file that looks complete.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with open(fd, "w", encoding="ascii", newline="\n") as f:
            f.write("\n".join(lines))
            if lines:
                f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_predictions(path, impression_ids: np.ndarray, offsets: np.ndarray, ranks: np.ndarray) -> None:
    """Write MIND `prediction.txt`: impression j's candidates are rows offsets[j]:offsets[j+1] of
    `ranks` (output of `group_ranks`), in impression order. Atomic (temp file + os.replace)."""
    ranks = np.asarray(ranks)
    if len(ranks) and ranks.min() < 1:
        raise ValueError("ranks must be >= 1")
    _write_leaderboard(path, impression_ids, offsets, ranks)


def write_truth(path, impression_ids: np.ndarray, offsets: np.ndarray, labels: np.ndarray) -> None:
    """Write MIND `truth.txt` (0/1 labels, same layout as `write_predictions`). Atomic."""
    labels = np.asarray(labels)
    if not ((labels == 0) | (labels == 1)).all():
        raise ValueError("labels must be 0/1")
    _write_leaderboard(path, impression_ids, offsets, labels.astype(np.int64))


def read_leaderboard(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse a prediction or truth file into (impression_ids, offsets, values), all int64.

    Line j+1 of the file is impression j. Malformed lines raise DataError with the 1-based line number.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "is a folder, not a file" if path.is_dir() else "file not found")
    try:
        text = path.read_text(encoding="utf-8").removeprefix(BOM)
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text ({e})") from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    ids: list[int] = []
    bodies: list[str] = []
    counts: list[int] = []
    for number, line in enumerate(lines, start=1):
        match = _LINE.fullmatch(line.removesuffix("\r"))
        if match is None:
            shown = line if len(line) <= 80 else line[:77] + "..."
            raise DataError(
                path,
                f"expected 'ImpressionID [v1,v2,...]' (non-negative integers, one space, no spaces "
                f"inside the brackets), got {shown!r}",
                line=number,
            )
        ids.append(int(match[1]))
        body = match[2]
        bodies.append(body)
        counts.append(body.count(",") + 1)
    offsets = np.zeros(len(lines) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    tokens = ",".join(bodies).split(",") if bodies else []
    values = np.array(tokens, dtype=np.int64) if tokens else np.zeros(0, dtype=np.int64)
    return np.array(ids, dtype=np.int64), offsets, values


def _check_unique(path: Path, ids: np.ndarray) -> None:
    order = np.argsort(ids, kind="stable")
    repeated = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if repeated.size:
        # Stable sort puts the later occurrence second, so this is the first line that repeats an id.
        row = int(order[repeated + 1].min())
        raise DataError(path, f"impression {ids[row]} appears more than once", line=row + 1)


def _line_of_row(offsets: np.ndarray, row: int) -> int:
    return int(np.searchsorted(offsets, row, side="right"))


def _check_permutations(path: Path, offsets: np.ndarray, ranks: np.ndarray) -> None:
    """Each line's ranks must be 1..n in some order: tied ranks (`[1,1,1]`) would let the scorer's own order
    break the ties, which is not the model's ranking."""
    counts = np.diff(offsets)
    line = np.repeat(np.arange(len(counts)), counts)
    order = np.lexsort((ranks, line))
    position = np.arange(len(ranks)) - offsets[:-1][line]
    bad = np.flatnonzero(ranks[order] != position + 1)
    if bad.size:
        j = int(line[order[bad[0]]])
        shown = ranks[offsets[j] : offsets[j + 1]][:10].tolist()
        raise DataError(
            path,
            f"ranks {shown}{'...' if counts[j] > 10 else ''} are not a permutation of 1..{counts[j]}",
            line=j + 1,
        )


def score_files(prediction_path, truth_path) -> dict[str, float | int]:
    """Score a MIND `prediction.txt` against `truth.txt` the way the official evaluate.py does.

    Impressions are joined on ImpressionID (line order may differ), each candidate's score is 1/rank,
    and the result is `evaluate_groups`' dict WITHOUT "logloss" and "global_auc": ranks from different
    impressions are not comparable, so pooled metrics of 1/rank mean nothing.
    Mismatched impression ids or candidate counts raise DataError naming the impression.
    """
    prediction_path, truth_path = Path(prediction_path), Path(truth_path)
    pred_ids, pred_offsets, ranks = read_leaderboard(prediction_path)
    truth_ids, truth_offsets, labels = read_leaderboard(truth_path)
    if len(truth_ids) == 0:
        raise DataError(truth_path, "no impressions")
    _check_unique(prediction_path, pred_ids)
    _check_unique(truth_path, truth_ids)

    _check_permutations(prediction_path, pred_offsets, ranks)
    # The parser admits no negative numbers, so only labels above 1 can be wrong.
    bad = np.flatnonzero(labels > 1)
    if bad.size:
        row = int(bad[0])
        raise DataError(truth_path, f"label {labels[row]} is not 0/1", line=_line_of_row(truth_offsets, row))

    truth_order = np.argsort(truth_ids, kind="stable")
    found_at = np.searchsorted(truth_ids[truth_order], pred_ids)
    found_at = np.minimum(found_at, len(truth_ids) - 1)
    match = truth_order[found_at]
    missing = np.flatnonzero(truth_ids[match] != pred_ids)
    if missing.size:
        j = int(missing[0])
        raise DataError(
            prediction_path, f"impression {pred_ids[j]} is not in the truth file {truth_path}", line=j + 1
        )
    if len(pred_ids) < len(truth_ids):
        covered = np.zeros(len(truth_ids), dtype=bool)
        covered[match] = True
        k = int(np.flatnonzero(~covered)[0])
        raise DataError(
            prediction_path,
            f"impression {truth_ids[k]} (line {k + 1} of truth file {truth_path}) has no prediction",
        )

    pred_counts = np.diff(pred_offsets)
    truth_counts = np.diff(truth_offsets)[match]
    wrong = np.flatnonzero(pred_counts != truth_counts)
    if wrong.size:
        j = int(wrong[0])
        raise DataError(
            prediction_path,
            f"impression {pred_ids[j]} has {pred_counts[j]} ranks but the truth file has "
            f"{truth_counts[j]} labels",
            line=j + 1,
        )

    # Gather each prediction row's label: same position inside the matching truth impression.
    impression_of_row = np.repeat(np.arange(len(pred_ids)), pred_counts)
    position = np.arange(len(ranks)) - pred_offsets[:-1][impression_of_row]
    row_labels = labels[truth_offsets[:-1][match][impression_of_row] + position].astype(np.float64)
    scores = 1.0 / ranks.astype(np.float64)
    return _ranking_metrics(row_labels, scores, pred_ids[impression_of_row])
