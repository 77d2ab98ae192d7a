"""exp.tracker: what log.jsonl records, sent through TensorBoard's and W&B's own libraries (W&B offline)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from conftest import SMALL

from oncerec.config.loader import build_config
from oncerec.errors import ConfigError
from oncerec.training.pipeline import train
from oncerec.training.tracking import scalars

QUIET = {"progress": False}


def _train(out: Path, *overrides: str) -> list[dict]:
    base = ["data=demo-tiny", "model=nrms", "exp=quick", *SMALL, "exp.log_every=1", f"exp.out_dir={out}"]
    train(build_config([*base, *overrides]), **QUIET)
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_scalars_are_named_by_split_and_metric():
    record = {"type": "eval", "split": "valid", "step": 4, "epoch": 0.5, "auc": 0.61, "gauc": None}
    record["cold_items"] = {"auc": 0.55, "impressions": 12}
    assert scalars(record) == {
        "valid/epoch": 0.5,
        "valid/auc": 0.61,
        "valid/cold_items.auc": 0.55,
        "valid/cold_items.impressions": 12.0,
    }
    assert scalars({"type": "train", "step": 2, "loss": 1.5}) == {"train/loss": 1.5}


def test_tensorboard_gets_what_the_log_gets_and_a_resume_does_not_repeat_it(tmp_path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    _train(out, "exp.max_steps=2", "exp.tracker=tensorboard")
    log = _train(out, "exp.max_steps=4", "exp.tracker=tensorboard", "exp.resume=true")
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    expected: dict[str, list[tuple[int, float]]] = {}
    for record in log:
        for name, value in scalars(record).items():
            expected.setdefault(name, []).append((record["step"], value))
    assert {"train/loss", "train/lr", "valid/auc", "valid/mrr"} <= set(expected)
    for name, points in expected.items():
        got = [(e.step, e.value) for e in events.Scalars(name)]
        assert [s for s, _ in got] == [s for s, _ in points], name  # each step once, in order
        assert [v for _, v in got] == pytest.approx([v for _, v in points], rel=1e-6), name


@pytest.mark.integration
def test_wandb_offline_run_holds_what_the_log_holds(tmp_path: Path, monkeypatch):
    """W&B's offline run file (its transaction log, protobuf records) holds every logged name and value as
    the JSON the library encoded it to; the run id is the one kept in the run folder."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    log = _train(out, "exp.max_steps=2", "exp.tracker=wandb")
    run_id = (out / "wandb_id").read_text().strip()
    (written,) = (out / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")
    data = written.read_bytes()
    logged = {name: value for record in log for name, value in scalars(record).items()}
    assert {"train/loss", "valid/auc"} <= set(logged)
    for record in log:
        for name, value in scalars(record).items():
            assert name.encode() in data and json.dumps(value).encode() in data, name


def test_no_tracker_by_default_and_a_missing_library_is_named(tmp_path: Path, monkeypatch):
    out = tmp_path / "run"
    _train(out, "exp.max_steps=1")
    assert not (out / "tensorboard").exists() and not (out / "wandb").exists()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(
        ConfigError, match=r"exp.tracker=wandb needs the wandb package: pip install 'oncerec\[wandb\]'"
    ):
        _train(tmp_path / "other", "exp.tracker=wandb")
