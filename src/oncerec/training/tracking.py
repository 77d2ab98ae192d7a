"""Experiment trackers (`exp.tracker`): what `log.jsonl` records, also sent to TensorBoard or to Weights &
Biases through their own libraries, by the main process only. `none` (the default) needs neither; each is an
extra (`pip install 'oncerec[tensorboard]'`, `'oncerec[wandb]'`).

A record becomes scalars named by where they come from and what they are: `train/loss`, `train/lr`,
`valid/auc`, `valid/cold_items.auc` (a slice's metric), at the record's optimizer step. A resumed run purges
TensorBoard events after the checkpoint's step, as `log.jsonl` drops its lines; W&B continues the same run (its
id is kept in the run folder) and ignores steps it already has. W&B reads its own settings from the environment
(`WANDB_API_KEY`, `WANDB_MODE=offline`, `WANDB_ENTITY`; `WANDB_PROJECT`, default `oncerec`): no key is passed
or written by oncerec.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Protocol

from oncerec.errors import ConfigError
from oncerec.extras import missing
from oncerec.paths import write_text_atomic

TRACKERS = ("none", "tensorboard", "wandb")
_NOT_SCALARS = {"type", "split", "step"}


class Tracker(Protocol):
    def log(self, step: int, values: dict[str, float]) -> None: ...

    def close(self) -> None: ...


def scalars(record: dict) -> dict[str, float]:
    """A `log.jsonl` record as tracker scalars (nested slices flattened; null metrics and text left out)."""
    prefix = record.get("split") or record.get("type", "log")
    out: dict[str, float] = {}

    def walk(values: dict, name: str) -> None:
        for key, value in values.items():
            if isinstance(value, dict):
                walk(value, f"{name}{key}.")
            elif isinstance(value, int | float) and not isinstance(value, bool):
                out[f"{prefix}/{name}{key}"] = value  # counts stay ints: W&B shows them as such

    walk({k: v for k, v in record.items() if k not in _NOT_SCALARS}, "")
    return out


class TensorBoardTracker:
    def __init__(self, run_dir: Path, resume_step: int | None):
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: events at or after it, written by the interrupted process, are dropped on resume
        purge = None if resume_step is None else resume_step + 1
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=purge)

    def log(self, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()  # a run killed later keeps what was logged

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    def __init__(self, run_dir: Path, config: dict, resume: bool):
        import wandb

        id_file = run_dir / "wandb_id"
        run_id = id_file.read_text().strip() if resume and id_file.is_file() else secrets.token_hex(6)
        write_text_atomic(id_file, run_id + "\n")
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "oncerec"),
            dir=str(run_dir),
            id=run_id,
            name=run_dir.name,
            config=config,
            resume="allow",
        )

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


def require_tracker(kind: str) -> None:
    """Refuse a tracker whose library is not installed (before a run reads any data)."""
    if kind not in TRACKERS:
        raise ConfigError(f"exp.tracker={kind}: valid: {', '.join(TRACKERS)}")
    if kind != "none" and missing(kind):
        raise ConfigError(f"exp.tracker={kind} needs the {kind} package: pip install 'oncerec[{kind}]'")


def open_tracker(kind: str, run_dir: Path, config: dict, resume_step: int | None) -> Tracker | None:
    """The tracker of `exp.tracker` for a run (None for `none`); `resume_step`: the checkpoint's step when
    the run resumes."""
    require_tracker(kind)
    if kind == "none":
        return None
    if kind == "tensorboard":
        return TensorBoardTracker(run_dir, resume_step)
    return WandbTracker(run_dir, config, resume_step is not None)
