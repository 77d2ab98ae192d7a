"""DIRE measured: training from the cache vs running the whole language model, building the cache vs a bare
forward pass of the same layers, disk per item, and memory while training from a memory-mapped cache.

Both sides of each ratio run in this process on the same batches, taking turns step by step.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from oncerec.config.loader import build_config
from oncerec.data.batching import TrainSampler
from oncerec.data.dataset import Dataset, resolve_dataset
from oncerec.dire.cache import build_cache, cache_dir
from oncerec.lm.backbone import blocks, bottom_states, load_lm
from oncerec.lm.packaged import resolve_model_path
from oncerec.models.recommender import Recommender
from oncerec.train.evaluate import encode_all_items

STEP_TARGET = 10.0  # cached top vs whole model, when 2 of 30 layers run (the limit is 30 / 2 = 15x)
BUILD_TARGET = 0.9  # cache build throughput / bare forward throughput


@dataclass(frozen=True)
class DireSizes:
    scale: str
    model: str
    layer: int
    prompt_len: int
    batch_size: int  # training samples per step (history + 1 + NEG candidates each)
    history_len: int
    steps: int  # timed steps per side, after one untimed


DIRE_QUICK = DireSizes("tiny", "smollm2-135m", 28, 16, 2, 5, 2)
DIRE_FULL = DireSizes("small", "smollm2-135m", 28, 32, 8, 20, 5)


def resolve_models(sizes: DireSizes) -> str:
    """The model folder, resolved before the benchmark's private cache (a GGUF conversion is kept)."""
    return str(resolve_model_path(sizes.model))


def bench_dire(sizes: DireSizes, model_path: str, log: Callable = print) -> dict:
    overrides = [
        f"data=demo-{sizes.scale}",
        "data.prompt=news article: title: {title} category: {category}",
        f"data.max_lengths.prompt={sizes.prompt_len}",
        f"data.history_len={sizes.history_len}",
        "model=llm-naml",
        f"model.item_lm={model_path}",
    ]
    cfg = build_config([*overrides, f"model.layer={sizes.layer}"])
    dataset = Dataset(resolve_dataset(cfg.data, progress=False, log=_quiet))
    result = {"sizes": asdict(sizes), "items": dataset.num_items - 1}
    result["build"] = _build_vs_bare(dataset, cfg, log)
    result["step"] = _cached_vs_whole(dataset, overrides, sizes, log)
    result["memory"] = _memory(dataset, cfg, log)
    return result


def _build_vs_bare(dataset: Dataset, cfg, log) -> dict:
    """Items/s of `build_cache` (forward + writing the states) vs the same forward passes writing nothing."""
    k = cfg.model.layer
    model = load_lm(cfg.model.item_lm)
    ids, lengths = dataset.tokens(cfg.model.item_lm, "prompt")
    order = np.argsort(np.asarray(lengths), kind="stable")
    log(f"  dire: bare forward of layers 0..{k - 1} over {len(order):,} items")
    start = time.perf_counter()
    for b in range(0, len(order), 64):
        rows = np.sort(order[b : b + 64])
        width = max(int(lengths[rows].max()), 1)
        x = torch.from_numpy(np.asarray(ids[rows, :width], dtype=np.int64))
        mask = torch.arange(width) < torch.from_numpy(np.asarray(lengths[rows], dtype=np.int64)).unsqueeze(1)
        bottom_states(model, x, mask, [k])
    bare = len(order) / (time.perf_counter() - start)
    log("  dire: building the cache")
    start = time.perf_counter()
    cache = build_cache(dataset, cfg.model, progress=False, log=_quiet)
    built = len(order) / (time.perf_counter() - start)
    disk = (cache.folder / f"layer-{k}.npy").stat().st_size
    return {
        "layer": k,
        "num_layers": len(blocks(model)),
        "bare_items_per_s": bare,
        "build_items_per_s": built,
        "ratio": built / bare,
        "target": BUILD_TARGET,
        "bytes_per_item": disk / dataset.num_items,
        "cache_mb": disk / 2**20,
        "dtype": cache.manifest["dtype"],
    }


def _cached_vs_whole(dataset: Dataset, overrides: list[str], sizes: DireSizes, log) -> dict:
    """One training step (forward, backward, AdamW) with layer=k from the cache vs layer=0 (every layer runs
    and gets LoRA adapters), on the same batches."""
    models, optimizers = {}, {}
    for name, layer in (("cached", sizes.layer), ("whole", 0)):
        cfg = build_config([*overrides, f"model.layer={layer}"])
        torch.manual_seed(0)
        models[name] = Recommender(cfg.model, cfg.embed, dataset, log=_quiet).train()
        optimizers[name] = torch.optim.AdamW(models[name].param_groups(1e-4, 1e-4, 0.0, 0.0))
    sampler = TrainSampler(dataset, dataset.split("train"), sizes.batch_size, 4, seed=0)
    order = sampler.order(0)
    seconds: dict[str, list[float]] = {n: [] for n in models}
    for i in range(1 + sizes.steps):
        batch = sampler.batch(0, i, order)
        for name, model in models.items():
            start = time.perf_counter()
            scores = model(batch)
            loss = torch.nn.functional.cross_entropy(scores, torch.zeros(len(scores), dtype=torch.long))
            loss.backward()
            optimizers[name].step()
            optimizers[name].zero_grad(set_to_none=True)
            if i:
                seconds[name].append(time.perf_counter() - start)
        log(f"  dire: train step {i + 1}/{1 + sizes.steps}" + ("" if i else " (warm-up)"))
    cached, whole = (statistics.median(seconds[n]) for n in ("cached", "whole"))
    n_layers = len(blocks(models["whole"].item_encoder.lm))
    return {
        "cached_step_s": cached,
        "whole_step_s": whole,
        "speedup": whole / cached,
        "layers_run": n_layers - sizes.layer,
        "num_layers": n_layers,
        "limit": n_layers / (n_layers - sizes.layer),
        "target": STEP_TARGET,
        "trainable_parameters": sum(p.numel() for p in models["cached"].parameters() if p.requires_grad),
    }


def _memory(dataset: Dataset, cfg, log) -> dict:
    """Anonymous memory (what the process owns, unlike the page cache a memory map uses) before and after
    encoding every item from the cache, against the cache's size."""
    model = Recommender(cfg.model, cfg.embed, dataset, log=_quiet).eval()
    before = peak = _anon_mb()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.01):
            peak = max(peak, _anon_mb())

    thread = threading.Thread(target=sample, daemon=True)
    log("  dire: encoding every item from the cache")
    thread.start()
    with torch.no_grad():
        encode_all_items(model, 256, "cpu")
    done.set()
    thread.join()
    size = sum(f.stat().st_size for f in Path(cache_dir(dataset, cfg.model)).glob("layer-*.npy"))
    return {"cache_mb": size / 2**20, "anon_mb_before": before, "anon_mb_peak": max(peak, _anon_mb())}


def _anon_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:")) / 1024


def dire_rows(d: dict) -> list[str]:
    s, b, m = d["step"], d["build"], d["memory"]
    z = d["sizes"]
    return [
        f"| DIRE train step, layer={z['layer']} from cache vs whole model ({z['model']}, demo-{z['scale']}, "
        f"batch {z['batch_size']}) | {s['speedup']:.1f}x | whole ÷ cached step time (target ≥{s['target']:.0f}x, "
        f"limit {s['limit']:.0f}x: {s['layers_run']} of {s['num_layers']} layers run: "
        f"{'met' if s['speedup'] >= s['target'] else 'MISSED'}) | cached {s['cached_step_s']:.2f} s, whole "
        f"{s['whole_step_s']:.2f} s | |",
        f"| DIRE cache build (layers 0..{b['layer'] - 1}, {d['items']:,} items) | {b['ratio']:.2f}x | build ÷ bare "
        f"forward items/s (target ≥{b['target']:.2f}: {'met' if b['ratio'] >= b['target'] else 'MISSED'}) "
        f"| {b['build_items_per_s']:.1f} vs {b['bare_items_per_s']:.1f} items/s; {b['bytes_per_item'] / 1024:.1f} "
        f"KiB/item on disk ({b['dtype']}) | |",
        f"| DIRE memory, every item encoded from a {m['cache_mb']:.0f} MB cache | "
        f"{(m['anon_mb_peak'] - m['anon_mb_before']) / max(m['cache_mb'], 1e-9):.2f}x | peak anonymous memory "
        f"growth ÷ cache size | {m['anon_mb_before']:.0f} → {m['anon_mb_peak']:.0f} MB anonymous | |",
    ]


def _quiet(*_: object) -> None:
    pass
