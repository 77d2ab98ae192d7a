"""Checkpoints that survive a kill at any moment and load without unpickling code.

`checkpoints/step-XXXXXXXX/` holds `model.safetensors` (weights), `state.pt` (optimizer, scheduler, RNG and
position; loaded with `weights_only=True`) and `meta.json` with their SHA-256, written last. A folder is
written under a temporary name and renamed, so it is either whole or absent; a checksum mismatch (disk
corruption, truncation by hand) is reported and the previous checkpoint is used.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from oncerec.errors import CheckpointError
from oncerec.paths import sha256_file


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


def save_checkpoint(run_dir: Path, step: int, model_state: dict, train_state: dict, keep: int = 2) -> Path:
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"

    def write(tmp: Path) -> None:
        save_file(_contiguous(model_state), tmp / "model.safetensors")
        torch.save(train_state, tmp / "state.pt")

    _atomic_dir(final, write)
    for old in sorted(root.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_latest(run_dir: Path, log=print) -> tuple[dict, dict, Path] | None:
    """(model state, train state, folder) of the newest checkpoint that verifies, or None."""
    for folder in sorted((Path(run_dir) / "checkpoints").glob("step-*"), reverse=True):
        try:
            _verify(folder)
            return (
                load_file(folder / "model.safetensors"),
                torch.load(folder / "state.pt", weights_only=True),
                folder,
            )
        except Exception as e:  # any load failure means this one is unusable; fall back to the previous one
            log(f"warning: skipping checkpoint {folder}: {e}")
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
