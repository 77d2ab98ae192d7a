"""DIRE measured: training from the cache vs running the whole language model, building the cache vs a bare
forward pass of the same layers, disk per item, and memory while training from a memory-mapped cache.

Both sides of each ratio run in this process on the same batches, taking turns step by step.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psutil
import torch

from oncerec.config.loader import build_config
from oncerec.data.batching import TrainSampler, trimmed_rows
from oncerec.data.dataset import Dataset, resolve_dataset
from oncerec.dire.cache import DireCache, build_cache
from oncerec.lm.backbone import blocks, bottom_states, load_lm
from oncerec.lm.packaged import resolve_model_path
from oncerec.models.recommender import Recommender

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
    memory_gb: float = 32.0  # size of the (sparse) cache the memory check reads from
    memory_batches: int = 50


DIRE_QUICK = DireSizes("tiny", "smollm2-135m", 28, 16, 2, 5, 2, memory_batches=20)
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
    with tempfile.TemporaryDirectory(prefix="oncerec-bench-dire-") as tmp:
        # a fresh cache folder: the build is timed, never found ready
        overrides.append(f"model.dire_cache={tmp}")
        cfg = build_config([*overrides, f"model.layer={sizes.layer}"])
        dataset = Dataset(resolve_dataset(cfg.data, progress=False, log=_quiet))
        result = {"sizes": asdict(sizes), "items": dataset.num_items - 1}
        result["build"] = _build_vs_bare(dataset, cfg, log)
        result["step"] = _cached_vs_whole(dataset, overrides, sizes, log)
    result["memory"] = _memory(sizes, log)
    return result


def _build_vs_bare(dataset: Dataset, cfg, log) -> dict:
    """Items/s of `build_cache` (forward + writing the states) vs the same forward passes writing nothing. The
    bare pass runs before and after the build and its faster run counts (warm-up and load favour neither)."""
    k = cfg.model.layer
    model = load_lm(cfg.model.item_lm)
    ids, lengths = dataset.tokens(cfg.model.item_lm, "prompt")
    order = np.argsort(np.asarray(lengths), kind="stable")

    def bare() -> float:
        start = time.perf_counter()
        for b in range(0, len(order), 64):
            x, mask = trimmed_rows(ids, lengths, np.sort(order[b : b + 64]))
            bottom_states(model, x.long(), mask, [k])
        return len(order) / (time.perf_counter() - start)

    log(f"  dire: bare forward of layers 0..{k - 1} over {len(order):,} items")
    first = bare()
    log("  dire: building the cache")
    cache = build_cache(dataset, cfg.model, progress=False, log=_quiet)
    # the build's own loop rate (forward + writing): loading the model and creating the files are a fixed
    # cost that a real dataset's size amortises, and that would dominate on the few items of a quick run
    built = cache.manifest["items_per_s"]
    log("  dire: bare forward again")
    fastest = max(first, bare())
    disk = (cache.folder / f"layer-{k}.npy").stat().st_size
    return {
        "layer": k,
        "num_layers": len(blocks(model)),
        "bare_items_per_s": fastest,
        "build_items_per_s": built,
        "ratio": built / fastest,
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


def _memory(sizes: DireSizes, log) -> dict:
    """Peak anonymous memory (what the process owns; a memory map's pages are the kernel's page cache) while
    gathering training batches from a cache larger than this machine's RAM: a sparse file of `memory_gb`
    GiB in SmolLM2's shape, read through the same `DireCache.gather` as training."""
    width, dim = 64, 576
    n = int(sizes.memory_gb * 2**30 // (width * dim * 2))
    with tempfile.TemporaryDirectory(prefix="oncerec-bench-dire-") as tmp:
        folder = Path(tmp)
        np.save(folder / "lengths.npy", np.full(n, width, np.int32))
        np.lib.format.open_memmap(
            folder / "layer-1.npy", "w+", np.float16, (n, width, dim)
        )  # sparse: no disk
        cache = DireCache(folder, {"layers": [1], "dtype": "float16"})
        rng = np.random.default_rng(0)
        before = peak = _anon_mb()
        log(f"  dire: {sizes.memory_batches} batches of 512 random items from a {sizes.memory_gb} GiB cache")
        for _ in range(sizes.memory_batches):
            states, _mask = cache.gather(1, np.sort(rng.choice(n, 512, replace=False)))
            peak = max(peak, _anon_mb())
            del states
        return {
            "cache_gb": n * width * dim * 2 / 2**30,
            "ram_gb": psutil.virtual_memory().total / 2**30,
            "batches": sizes.memory_batches,
            "anon_mb_before": before,
            "anon_mb_peak": peak,
        }


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
        f"| DIRE memory: {m['batches']} batches of 512 items from a {m['cache_gb']:.0f} GiB cache "
        f"({m['ram_gb']:.0f} GiB RAM) | {(m['anon_mb_peak'] - m['anon_mb_before']) / (m['cache_gb'] * 1024):.4f}x "
        f"| peak anonymous memory growth ÷ cache size | {m['anon_mb_before']:.0f} → {m['anon_mb_peak']:.0f} MB "
        f"anonymous | |",
    ]


def _quiet(*_: object) -> None:
    pass
