"""MIND's leaderboard files (`prediction.txt`, `truth.txt`: one line per impression, `ImpressionID [v1,v2,...]`)
and `score_files`, which scores them the way the official evaluate.py does.

The official scorer scores each candidate as 1/rank; the ranks oncerec writes are `group_ranks`' strict ranking
(ties: the earlier candidate first), so scoring its prediction files reproduces its per-impression metrics.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np

from oncerec.data.formats.mind import BOM, IMPRESSION_ID
from oncerec.errors import DataError
from oncerec.eval.metrics import DEFAULT_TABLE, evaluate_groups

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
    and the result is `evaluate_groups`' dict of auc, mrr, ndcg@5 and ndcg@10 (with the counts): ranks from
    different impressions are not comparable, so pooled metrics of 1/rank mean nothing, and the files name no
    user (no gauc).
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
    return evaluate_groups(row_labels, scores, pred_ids[impression_of_row], metrics=DEFAULT_TABLE)
