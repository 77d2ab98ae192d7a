"""`oncerec genre evaluate RUN_DIR`: a run's metrics separately for users with and without generated content.

A user "has generated content" in an impression when the history the impression uses holds a synthetic item
(`oncerec genre merge` puts a cold user's generated items into every history row of that user).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from oncerec.data.dataset import Dataset, Split
from oncerec.errors import OncerecError

GROUPS = ("all", "with generated content", "without generated content")


def with_generated(dataset: Dataset, split: Split) -> np.ndarray:
    """[impressions] bool: the impression's history holds a synthetic item."""
    flags = dataset.root / "items" / "synthetic.npy"
    if not flags.is_file():
        raise OncerecError(f"{dataset.root} has no generated items (made by `oncerec genre merge`)")
    synthetic = np.load(flags).astype(bool)
    items, lengths, _ = (np.asarray(a) for a in dataset.histories)
    real = np.arange(items.shape[1])[None, :] < lengths[:, None]
    per_history = (synthetic[items] & real).any(axis=1)
    return per_history[np.asarray(split.history)]


def metrics_by_generated(run_dir: Path, split_name: str = "test", data: str | None = None) -> dict:
    """{group: metrics} for a saved run (its best weights, fast evaluation)."""
    from oncerec.train.evaluate import predict_fast, split_metrics
    from oncerec.train.session import load_run

    run = load_run(Path(run_dir), data=data)
    split = run.dataset.split(split_name)
    if not split.labelled:
        raise OncerecError(f"split `{split_name}` has no labels")
    scores = predict_fast(run.model, run.dataset, split, run.cfg.exp.eval_batch_size, run.device)
    has = with_generated(run.dataset, split)
    out = {}
    for group, keep in zip(GROUPS, (np.ones_like(has), has, ~has), strict=True):
        if not keep.any():
            out[group] = {"impressions": 0}
            continue
        sub = split.select(np.flatnonzero(keep))
        rows = np.repeat(keep, np.diff(np.asarray(split.offsets)))
        out[group] = split_metrics(sub, scores[rows])
    return out


def write_and_format(run_dir: Path, split_name: str, metrics: dict) -> str:
    from oncerec.train.metrics import metrics_json

    (Path(run_dir) / "genre_metrics.json").write_text(metrics_json({split_name: metrics}) + "\n")
    lines = [
        f"| {split_name} users | impressions | AUC | MRR | nDCG@5 | nDCG@10 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for group, m in metrics.items():
        if not m.get("impressions") or "auc" not in m:
            lines.append(f"| {group} | 0 | | | | |")
            continue
        lines.append(
            f"| {group} | {m['impressions']:,} | {m['auc']:.4f} | {m['mrr']:.4f} | {m['ndcg@5']:.4f} "
            f"| {m['ndcg@10']:.4f} |"
        )
    return "\n".join(lines)
