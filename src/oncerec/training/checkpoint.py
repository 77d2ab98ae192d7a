"""Checkpoints that survive a kill at any moment and load without unpickling code.

`checkpoints/step-XXXXXXXX/` holds `model.safetensors` (weights), `state.pt` (optimizer, scheduler, RNG and
position; loaded with `weights_only=True`) and `meta.json` with their SHA-256, written last. A folder is
written under a temporary name and renamed, so it is either whole or absent; a checksum mismatch (disk
corruption, truncation by hand) is reported and the previous checkpoint is used.

Only folders that are checkpoints count, for pruning and for resuming: named as `save_checkpoint` names them,
complete (meta.json lists exactly its files) and, to resume from, of the step their name says. Anything else
under checkpoints/ (a folder of the user's, a copy under another name) is left alone, with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from oncerec.errors import CheckpointError
from oncerec.paths import sha256_file

logger = logging.getLogger(__name__)

CHECKPOINT_FILES = ("model.safetensors", "state.pt")
_STEP = re.compile(r"step-(\d{8,})")


def _atomic_dir(final: Path, write) -> None:
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    files = sorted(p.name for p in tmp.iterdir())
    (tmp / "meta.json").write_text(json.dumps({f: sha256_file(tmp / f) for f in files}, indent=1))
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _verify(folder: Path) -> None:
    meta = folder / "meta.json"
    if not meta.is_file():
        raise CheckpointError(f"{folder}: no meta.json (incomplete checkpoint)")
    for name, digest in json.loads(meta.read_text()).items():
        if not (folder / name).is_file() or sha256_file(folder / name) != digest:
            raise CheckpointError(f"{folder / name}: checksum mismatch (corrupt or truncated)")


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def _step_of(folder: Path) -> int | None:
    """The step in a folder name as `save_checkpoint` writes it (`step-` and the step in 8+ digits), else None."""
    match = _STEP.fullmatch(folder.name)
    return int(match[1]) if match and folder.name == f"step-{int(match[1]):08d}" else None


def _checkpoints(root: Path) -> list[tuple[int, Path]]:
    """(step, folder) of the checkpoints under `root`, oldest first: folders named by `save_checkpoint` whose
    meta.json lists exactly a checkpoint's files, all present (cheap: nothing is hashed here)."""
    found = []
    for folder in root.iterdir() if root.is_dir() else ():
        step = _step_of(folder)
        try:
            listed = json.loads((folder / "meta.json").read_text()) if step is not None else None
        except (OSError, ValueError):
            continue
        whole = isinstance(listed, dict) and sorted(listed) == sorted(CHECKPOINT_FILES)
        if whole and all((folder / name).is_file() for name in listed):
            found.append((step, folder))
    return sorted(found)


def checkpoints_root(run_dir: Path) -> Path:
    """The run's checkpoints/ folder; a file in its place is an error (checkpoints could not be written)."""
    root = Path(run_dir) / "checkpoints"
    if root.exists() and not root.is_dir():
        raise CheckpointError(
            f"{root} is a file, not the run's checkpoints folder; move it away (checkpoints are written there)"
        )
    return root


def save_checkpoint(run_dir: Path, step: int, model_state: dict, train_state: dict, keep: int = 2) -> Path:
    """Writes checkpoints/step-N and deletes this run's older checkpoints but the newest `keep` - 1: never a
    folder that is not a checkpoint, nor one of a later step (not this run's: the one written now is its
    newest)."""
    root = checkpoints_root(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    found = _checkpoints(root)
    if final.exists() and final not in {folder for _, folder in found}:
        raise CheckpointError(
            f"{final} is in the way and is not a checkpoint; move it away and resume the run"
        )

    def write(tmp: Path) -> None:
        save_file(_contiguous(model_state), tmp / "model.safetensors")
        torch.save({**train_state, "step": step}, tmp / "state.pt")

    _atomic_dir(final, write)
    older = [folder for s, folder in found if s < step]
    for old in older[: max(0, len(older) - (keep - 1))]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_latest(run_dir: Path) -> tuple[dict, dict, Path] | None:
    """(model state, train state, folder) of the newest checkpoint that verifies, or None. Folders under
    checkpoints/ that are not checkpoints are named in a warning and left alone."""
    root = checkpoints_root(run_dir)
    found = _checkpoints(root)
    known = {folder for _, folder in found}
    for other in sorted(root.iterdir()) if root.is_dir() else ():
        if other not in known and not other.name.startswith("."):  # .step-N.tmp-PID: a save cut short
            logger.warning(
                f"{other} is not a checkpoint of oncerec's (left alone; remove it if it is not yours)"
            )
    for step, folder in reversed(found):
        try:
            _verify(folder)
            state = torch.load(folder / "state.pt", weights_only=True)
            if state.get("step", step) != step:  # a checkpoint from before the step was stored: its name
                raise CheckpointError(f"it holds step {state['step']}: a copy, not this run's step {step}")
            return load_file(folder / "model.safetensors"), state, folder
        except Exception as e:  # any load failure means this one is unusable; fall back to the previous one
            logger.warning(f"skipping checkpoint {folder}: {e}")
    return None


def save_weights(folder: Path, model_state: dict, info: dict | None = None) -> None:
    """The best model: weights (+ a small JSON of where it came from)."""

    def write(tmp: Path) -> None:
        save_file(_contiguous(model_state), tmp / "model.safetensors")
        (tmp / "info.json").write_text(json.dumps(info or {}, indent=1))

    _atomic_dir(Path(folder), write)


def load_weights(folder: Path) -> dict:
    folder = Path(folder)
    try:
        _verify(folder)
        return load_file(folder / "model.safetensors")
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f"{folder}: cannot load weights: {e}") from e
