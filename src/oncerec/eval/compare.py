"""`oncerec compare`: one table of the saved metrics of several runs (e.g. a model with and without DIRE)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from oncerec.config.loader import load_saved_config
from oncerec.errors import OncerecError
from oncerec.eval.metrics import read_metrics
from oncerec.eval.tables import Table, metric_table


def compare_runs(run_dirs: Sequence[str | Path], split: str = "test") -> Table:
    """A row per finished run (its folder's name, model, item encoder and DIRE layer) with its `split`'s
    metrics; the columns are those the runs chose."""
    rows, choices = [], []
    for run in map(Path, run_dirs):
        metrics_file, config_file = run / "metrics.json", run / "config.yaml"
        if not metrics_file.is_file() or not config_file.is_file():
            raise OncerecError(f"{run}: not a finished run (no metrics.json / config.yaml)")
        cfg = load_saved_config(config_file)
        m = read_metrics(metrics_file).get(split)
        if m is None:
            raise OncerecError(f"{metrics_file}: no `{split}` metrics (split without labels?)")
        model, lm = cfg.model, cfg.model.item.name == "lm"  # the language model and its layer, or a dash
        item = model.item.name + (f" ({model.item.lm})" if lm else "")
        rows.append(([run.name, model.name, item, str(model.item.layer) if lm else "—"], [m]))
        choices.append(cfg.exp.metrics)
    table, _ = metric_table(["run", "model", "item", "layer"], rows, choices)
    return table
