"""The main job (`oncerec demo`): a model trained on the built-in demo data, compared on its test split with
popularity and with the oracle (the true click probabilities the demo data was drawn from)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from oncerec.config.loader import build_config
from oncerec.data.dataset import Dataset
from oncerec.eval.metrics import table_metrics
from oncerec.eval.slices import split_metrics
from oncerec.eval.tables import Table, named_table
from oncerec.training.baselines import oracle_scores, popularity_scores
from oncerec.training.pipeline import train
from oncerec.training.session import Run

ORACLE = "oracle (true click probability)"
POPULARITY = "popularity (train clicks)"

# Compact sizes so that the main job trains in a few minutes on 2 CPU cores: model-wide sizes, which every
# component that has such a size reads (a model without attention heads, NAML, has no use for num_heads).
COMPACT = [
    "model.hidden_size=64",
    "model.num_heads=4",
    "model.attention_hidden=64",
    "model.category_dim=32",
    "embed.dim=64",
]


@dataclass
class DemoResult:
    run: Run  # the trained run (its best weights)
    table: Table  # the model, the oracle and popularity on the test split
    impressions: int  # of the test split
    oracle_gap: float | None  # the share of the AUC gap between random (0.5) and the oracle the model closes


def demo(
    scale: str = "small", model: str = "nrms", overrides: Sequence[str] = (), progress: bool = True
) -> DemoResult:
    """Trains `model` on `demo-<scale>` (the `demo` exp preset, compact sizes) and compares it on the test
    split with the oracle and popularity."""
    cfg = build_config([f"data=demo-{scale}", f"model={model}", "exp=demo", *COMPACT, *overrides])
    run, metrics = train(cfg, progress=progress)
    test = run.dataset.split("test")
    rows = {ORACLE: oracle_scores(run.dataset, test), POPULARITY: popularity_scores(run.dataset, test)}
    runs = {cfg.model.name: metrics["test"]}
    runs.update({name: split_metrics(test, s, exp=cfg.exp) for name, s in rows.items() if s is not None})
    table = named_table("model", runs, cfg.exp.metrics)
    gap = None
    if ORACLE in runs and "auc" in table_metrics(cfg.exp.metrics):
        gap = (metrics["test"]["auc"] - 0.5) / (runs[ORACLE]["auc"] - 0.5)
    return DemoResult(run, table, test.num_impressions, gap)


def example_user(ds: Dataset) -> tuple[str, list[str]]:
    """A user of the test split with clicks in their history, and those clicks' item ids: an example whose
    recommendations mean something ("" and [] when there is none)."""
    test = ds.split("test")
    items, lengths, _ = ds.histories
    rows = np.flatnonzero(lengths[np.asarray(test.history)] > 0)
    if not len(rows):
        return "", []
    row = int(test.history[rows[0]])
    return ds.vocab("user")[int(test.user[rows[0]])], [ds.item_ids[i] for i in items[row, : lengths[row]]]


def next_steps(run_dir: Path, user: str, history: list[str]) -> list[str]:
    """The commands to try after the demo, on its run (`user`, `history`: `example_user`'s)."""
    run, export = str(run_dir), f"exports/{Path(run_dir).name}"
    body = json.dumps({"history": history[-3:], "k": 5})
    lines = [
        f"oncerec evaluate {run} --split valid test",
        f"oncerec recommend {run} --user {user} --top-k 5" if user else "",
        f"oncerec export {run} --out {export}",
        f"oncerec serve {export} --port 8000 &",
        f"curl -s localhost:8000/recommend -d '{body}'",
        "oncerec presets model   # then e.g. oncerec demo --model naml",
    ]
    return [line for line in lines if line]
