"""The DIRE cache: the frozen bottom of a language model run once over every item, its hidden states kept on
disk and read through memory maps while the top layers train.

Layout of a cache folder:

    manifest.json       written last: what the cache was built from (model, tokenizer, data, max length,
                        dtype, shape, layers); a folder without it is incomplete
    lengths.npy         int32 [N] token counts (the attention mask is arange(L) < length)
    layer-<k>.npy       [N, L, D] hidden states entering layer k (float16 / float32; bfloat16 as uint16 bits)
    plan.json           the build in progress (same keys as the manifest); a resumed build must match it
    done/<shard>        finished shards (1,024 items by default), so a killed build resumes where it stopped

Several processes (`accelerate launch`) split the shards between them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from oncerec.config.schema import ModelConfig
from oncerec.data.batching import trimmed_rows
from oncerec.data.dataset import Dataset
from oncerec.errors import ConfigError, OncerecError
from oncerec.lm.backbone import (
    blocks,
    bottom_states,
    check_parity,
    fingerprint,
    lm_dtype,
    load_lm,
    parity_tol,
    state_size,
)
from oncerec.lm.packaged import resolve_model_path
from oncerec.paths import cache_root

logger = logging.getLogger(__name__)

FORMAT = 1
SHARD = 1024
_NUMPY = {"float16": np.float16, "float32": np.float32, "bfloat16": np.uint16}
_TORCH = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}


def cache_dir(dataset: Dataset, cfg: ModelConfig) -> Path:
    if cfg.item.dire_cache:
        return Path(cfg.item.dire_cache)
    model = cfg.item.lm if not Path(cfg.item.lm).is_dir() else Path(cfg.item.lm).resolve().name
    # keyed by the weights' content, not only the folder's name: two models named alike never share a cache
    folder = f"{model}-{fingerprint(cfg.item.lm)}-{cfg.item_fields[0]}"
    # and by the dataset's place, not only its folder's name: every experiment has its own `{dir}/data`
    root = dataset.root.resolve()
    place = hashlib.blake2b(str(root).encode(), digest_size=4).hexdigest()
    return cache_root() / "dire" / f"{root.name}-{place}" / folder


def cached_layers(cfg: ModelConfig) -> list[int]:
    return sorted(set(cfg.item.cache_layers or [cfg.item.layer]))


def _tokenizer_hash(name: str) -> str:
    path = resolve_model_path(name)
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.name.startswith("tokenizer") or f.name in ("vocab.txt", "vocab.json", "merges.txt"):
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def expected_manifest(dataset: Dataset, cfg: ModelConfig) -> dict:
    """What a cache for this dataset and model must have been built from (everything but the layers)."""
    text_field = cfg.item_fields[0]
    ids, lengths = dataset.tokens(cfg.item.lm, text_field)
    tokens = hashlib.sha256(np.ascontiguousarray(ids).tobytes())
    tokens.update(np.ascontiguousarray(lengths).tobytes())
    return {
        "format": FORMAT,
        "model": cfg.item.lm,
        "model_fingerprint": fingerprint(cfg.item.lm),
        "tokenizer": _tokenizer_hash(cfg.item.lm),
        "dataset": dataset.manifest["source_hash"][:16],
        "field": text_field,
        "max_len": int(ids.shape[1]),
        "items": int(ids.shape[0]),
        "token_ids": tokens.hexdigest()[:16],
        "dtype": cfg.item.cache_dtype,
    }


def _differences(found: dict, wanted: dict) -> list[str]:
    return [
        f"{k}: cache has {found.get(k)!r}, config wants {v!r}" for k, v in wanted.items() if found.get(k) != v
    ]


@dataclass
class DireCache:
    folder: Path
    manifest: dict
    _maps: dict = field(default_factory=dict, repr=False)

    @property
    def layers(self) -> list[int]:
        return self.manifest["layers"]

    @property
    def bytes_per_item(self) -> float:
        """Disk taken per item, every cached layer together."""
        return (
            sum((self.folder / f"layer-{k}.npy").stat().st_size for k in self.layers)
            / self.manifest["shape"][0]
        )

    @cached_property
    def lengths(self) -> np.ndarray:
        return np.load(self.folder / "lengths.npy", mmap_mode="r")

    def states(self, k: int) -> np.ndarray:
        """[N, L, D] memory map of the states entering layer k (uint16 bits when the dtype is bfloat16)."""
        if k not in self.layers:
            raise ConfigError(
                f"model.item.layer={k} was not cached in {self.folder}; cached layers: "
                f"{', '.join(map(str, self.layers))} (run `oncerec dire cache ... model.item.cache_layers=[{k}]`)"
            )
        if k not in self._maps:
            self._maps[k] = np.load(self.folder / f"layer-{k}.npy", mmap_mode="r")
        return self._maps[k]

    def gather(self, k: int, items: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(states [B, W, D] as float32, mask [B, W]) of some items, W = their longest text."""
        raw, mask = trimmed_rows(self.states(k), self.lengths, items)
        if self.manifest["dtype"] == "bfloat16":
            raw = raw.view(torch.bfloat16)
        return raw.float(), mask


def open_cache(dataset: Dataset, cfg: ModelConfig, expected: dict | None = None) -> DireCache | None:
    """The finished cache for this dataset and model config, None if there is none; a cache built from
    anything else is refused with what differs. `expected`: `expected_manifest` when the caller has it."""
    folder = cache_dir(dataset, cfg)
    path = folder / "manifest.json"
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text())
    diff = _differences(manifest, expected or expected_manifest(dataset, cfg))
    if diff:
        raise OncerecError(
            f"DIRE cache {folder} was built for something else:\n  " + "\n  ".join(diff) + "\n"
            "remove it, or set model.item.dire_cache to another folder"
        )
    return DireCache(folder, manifest)


def build_cache(
    dataset: Dataset,
    cfg: ModelConfig,
    batch_size: int = 64,
    progress: bool = True,
    shard_size: int = SHARD,
    model: torch.nn.Module | None = None,
) -> DireCache:
    """Run the frozen layers once over every item into the cache (resuming a killed build); returns it.

    Items are written in shards of `shard_size`; a killed build keeps its finished shards. `model`: the
    language model already loaded (whole, in `model.item.dtype`), so that a 7B model is not loaded twice."""
    from accelerate import PartialState

    # cpu=True is what lets several CPU processes (torchrun / accelerate launch --cpu) form a group
    state = PartialState(cpu=not torch.cuda.is_available())
    folder = cache_dir(dataset, cfg)
    layers = cached_layers(cfg)
    expected = expected_manifest(dataset, cfg)
    existing = open_cache(dataset, cfg, expected)
    if existing:
        if set(layers) <= set(existing.layers):
            return existing
        layers = sorted(set(layers) | set(existing.layers))  # one cache holds every layer asked for so far
    dtype = lm_dtype(cfg.item.dtype)
    # the type the states were computed in: a resumed build must not mix shards of two types
    plan = expected | {
        "layers": layers,
        "shard_size": shard_size,
        "lm_dtype": str(dtype).removeprefix("torch."),
    }
    model = (model if model is not None else load_lm(cfg.item.lm, dtype)).to(state.device, dtype)
    n_layers = len(blocks(model))
    bad = [k for k in layers if not 0 <= k <= n_layers]
    if bad:
        raise ConfigError(
            f"model.item.cache_layers: layer {bad[0]} out of range; the model has layers 0..{n_layers - 1} "
            f"({n_layers}: its final states)"
        )
    # one width for every cached layer (the manifest has one shape): OPT-350m's output (project_out: 512) is
    # narrower than the states entering its layers (1024), so its final states go in a cache of their own
    dims = {k: state_size(model, k) for k in layers}
    if len(set(dims.values())) > 1:
        raise ConfigError(
            f"model.item.cache_layers {layers}: {type(model).__name__}'s states differ in width between these "
            f"layers ({', '.join(f'layer {k}: {d}' for k, d in dims.items())}); cache its final states "
            f"(layer {n_layers}) in another model.item.dire_cache folder"
        )
    ids, lengths = dataset.tokens(cfg.item.lm, cfg.item_fields[0])
    # before hours of work: the top must reproduce the full forward from states rounded as the cache will be
    x, mask = (t.to(state.device) for t in trimmed_rows(ids, lengths, _probe_rows(lengths)))
    bottom = bottom_states(model, x.long(), mask, layers)
    for k in layers:
        check_parity(
            model,
            x.long(),
            mask,
            k,
            bottom[k].to(_TORCH[cfg.item.cache_dtype]),
            parity_tol(model, cfg.item.cache_dtype),
        )
    n, width, dim = ids.shape[0], ids.shape[1], dims[layers[0]]
    plan["shape"] = [n, width, dim]
    if state.is_main_process:
        _start(folder, plan, lengths, layers)
    state.wait_for_everyone()
    arrays = {k: np.load(folder / f"layer-{k}.npy", mmap_mode="r+") for k in layers}
    shards = [s for s in range(-(-n // shard_size)) if not (folder / "done" / f"{s:06d}").exists()]
    mine = shards[state.process_index :: state.num_processes]
    todo = sum(min(shard_size, n - s * shard_size) for s in mine)
    started = time.perf_counter()
    with tqdm(
        total=todo, unit="item", desc="DIRE cache", disable=not (progress and state.is_main_process)
    ) as bar:
        for s in mine:
            lo, hi = s * shard_size, min(n, (s + 1) * shard_size)
            # batches of similar length: padding would otherwise cost more than the texts
            order = lo + np.argsort(np.asarray(lengths[lo:hi]), kind="stable")
            for b in range(0, len(order), batch_size):
                rows = np.sort(order[b : b + batch_size])
                _encode(model, ids, lengths, rows, layers, arrays, cfg.item.cache_dtype, state.device)
                bar.update(len(rows))
            for a in arrays.values():
                a.flush()
            (folder / "done" / f"{s:06d}").touch()
    seconds = time.perf_counter() - started
    state.wait_for_everyone()
    if state.is_main_process:
        manifest = plan | {
            "num_layers": n_layers,
            "build_seconds": round(seconds, 2),
            "items_per_s": todo / max(seconds, 1e-9),
        }
        tmp = folder / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, folder / "manifest.json")
        shutil.rmtree(folder / "done", ignore_errors=True)
        logger.info(
            f"DIRE cache: {folder} (layers {layers}, {n:,} items, {todo / max(seconds, 1e-9):,.0f} items/s)"
        )
    state.wait_for_everyone()
    return open_cache(dataset, cfg, expected)


def check_cache(model: torch.nn.Module, cache: DireCache, dataset: Dataset, cfg: ModelConfig) -> None:
    """Before training reads a cache: the whole `model` over a few items' token ids must equal its top layers
    run on their cached states (refused naming the model class otherwise; see `check_parity`)."""
    ids, lengths = dataset.tokens(cfg.item.lm, cfg.item_fields[0])
    rows = _probe_rows(lengths)
    x, mask = trimmed_rows(ids, lengths, rows)
    states, _ = cache.gather(cfg.item.layer, rows)
    check_parity(
        model,
        x.long().to(model.device),
        mask.to(model.device),
        cfg.item.layer,
        states,
        parity_tol(model, cfg.item.cache_dtype),
    )


def _probe_rows(lengths: np.ndarray, n: int = 4) -> np.ndarray:
    """The items the parity check runs on: the first few with text (item 0 is the padding item)."""
    return np.flatnonzero(np.asarray(lengths) > 0)[:n]


def _start(folder: Path, plan: dict, lengths: np.ndarray, layers: list[int]) -> None:
    """Create the cache files, or keep a partial build of the same plan (and its finished shards)."""
    plan_file = folder / "plan.json"
    if plan_file.is_file() and json.loads(plan_file.read_text()) == plan:
        return
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "done").mkdir(parents=True)
    np.save(folder / "lengths.npy", np.asarray(lengths, dtype=np.int32))
    for k in layers:
        # open_memmap makes a sparse file: no disk is used until shards are written
        np.lib.format.open_memmap(
            folder / f"layer-{k}.npy", "w+", _NUMPY[plan["dtype"]], tuple(plan["shape"])
        )
    plan_file.write_text(json.dumps(plan, indent=1))


@torch.no_grad()
def _encode(model, ids, lengths, rows, layers, arrays, dtype: str, device) -> None:
    x, mask = trimmed_rows(ids, lengths, rows)
    x, mask = x.long().to(device), mask.to(device)
    width = x.shape[1]
    states = bottom_states(model, x, mask, layers)
    for k in layers:
        h = (states[k] * mask.unsqueeze(-1)).to(_TORCH[dtype]).cpu()
        if dtype == "bfloat16":
            h = h.view(torch.uint16)
        arrays[k][rows, :width] = h.numpy()
