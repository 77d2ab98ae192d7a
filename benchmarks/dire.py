"""DIRE measured: training from the cache vs running the whole language model, building the cache vs a bare
forward pass of the same layers, disk per item, memory while training from a memory-mapped cache, and the
peak memory of loading the model and building its cache in float32 vs bfloat16.

Both sides of the speed ratios run in this process on the same batches, taking turns step by step; the two
memory peaks are measured in fresh child processes, one per type.
"""

from __future__ import annotations

import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psutil
import torch

from oncerec.config.loader import build_config
from oncerec.data.batching import TrainSampler, trimmed_rows
from oncerec.data.dataset import Dataset, resolve_dataset
from oncerec.dire.cache import DireCache, build_cache
from oncerec.errors import OncerecError
from oncerec.lm.backbone import blocks, bottom_states, lm_dtype, load_lm
from oncerec.lm.packaged import resolve_model_path
from oncerec.training.build import build_recommender, language_model

logger = logging.getLogger(__name__)

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


def bench_dire(sizes: DireSizes, model_path: str) -> dict:
    overrides = [
        f"data=demo-{sizes.scale}",
        "data.prompt=news article: title: {title} category: {category}",
        f"data.max_lengths.prompt={sizes.prompt_len}",
        f"data.history_len={sizes.history_len}",
        "model=llm-naml",
        f"model.item.lm={model_path}",
    ]
    with tempfile.TemporaryDirectory(prefix="oncerec-bench-dire-") as tmp:
        # a fresh cache folder: the build is timed, never found ready
        overrides.append(f"model.item.dire_cache={tmp}")
        cfg = build_config([*overrides, f"model.item.layer={sizes.layer}"])
        dataset = Dataset(resolve_dataset(cfg.data, progress=False))
        result = {"sizes": asdict(sizes), "items": dataset.num_items - 1}
        result["build"] = _build_vs_bare(dataset, cfg)
        result["step"] = _cached_vs_whole(dataset, overrides, sizes)
        result["frozen"] = _frozen_vs_top(
            dataset, overrides, sizes, result["step"]["num_layers"], Path(tmp) / "frozen"
        )
        result["load"] = _load_memory(overrides, Path(tmp))
    result["memory"] = _memory(sizes)
    return result


def _build_vs_bare(dataset: Dataset, cfg) -> dict:
    """Items/s of `build_cache` (forward + writing the states) vs the same forward passes writing nothing. The
    bare pass runs before and after the build and its faster run counts (warm-up and load favour neither)."""
    k = cfg.model.item.layer
    model = load_lm(cfg.model.item.lm, lm_dtype(cfg.model.item.dtype))
    ids, lengths = dataset.tokens(cfg.model.item.lm, "prompt")
    order = np.argsort(np.asarray(lengths), kind="stable")

    def bare() -> float:
        start = time.perf_counter()
        for b in range(0, len(order), 64):
            x, mask = trimmed_rows(ids, lengths, np.sort(order[b : b + 64]))
            bottom_states(model, x.long(), mask, [k])
        return len(order) / (time.perf_counter() - start)

    logger.info(f"  dire: bare forward of layers 0..{k - 1} over {len(order):,} items")
    first = bare()
    logger.info("  dire: building the cache")
    cache = build_cache(dataset, cfg.model, progress=False, model=model)
    # the build's own loop rate (forward + writing): loading the model and creating the files are a fixed
    # cost that a real dataset's size amortises, and that would dominate on the few items of a quick run
    built = cache.manifest["items_per_s"]
    logger.info("  dire: bare forward again")
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


def _step_seconds(dataset: Dataset, configs: dict[str, list[str]], sizes: DireSizes) -> tuple[dict, dict]:
    """Median seconds of one training step (forward, backward, AdamW) of each config on the same batches,
    taking turns step by step; and the models."""
    models, optimizers = {}, {}
    for name, overrides in configs.items():
        cfg = build_config(overrides)
        torch.manual_seed(0)
        lm = language_model(cfg.model, dataset, progress=False)  # and its cache, if absent
        models[name] = build_recommender(cfg.model, cfg.embed, dataset, lm=lm).train()
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
        logger.info(f"  dire: train step {i + 1}/{1 + sizes.steps}" + ("" if i else " (warm-up)"))
    return {n: statistics.median(v) for n, v in seconds.items()}, models


def _cached_vs_whole(dataset: Dataset, overrides: list[str], sizes: DireSizes) -> dict:
    """One training step with layer=k from the cache vs layer=0 (every layer runs and gets LoRA adapters)."""
    steps, models = _step_seconds(
        dataset,
        {
            "cached": [*overrides, f"model.item.layer={sizes.layer}"],
            "whole": [*overrides, "model.item.layer=0"],
        },
        sizes,
    )
    n_layers = len(blocks(models["whole"].item_encoder.lm))
    return {
        "cached_step_s": steps["cached"],
        "whole_step_s": steps["whole"],
        "speedup": steps["whole"] / steps["cached"],
        "layers_run": n_layers - sizes.layer,
        "num_layers": n_layers,
        "limit": n_layers / (n_layers - sizes.layer),
        "target": STEP_TARGET,
        "trainable_parameters": sum(p.numel() for p in models["cached"].parameters() if p.requires_grad),
    }


def _frozen_vs_top(
    dataset: Dataset, overrides: list[str], sizes: DireSizes, n_layers: int, tmp: Path
) -> dict:
    """Frozen-LLM features (layer=L: no language-model layer runs, only pooling + projection train) vs the
    top layers from the cache (layer=k, LoRA) vs NAML over word embeddings, one training step each on the same
    data and batches: the frozen model should train at about a word-embedding model's speed."""
    steps, _ = _step_seconds(
        dataset,
        {
            "frozen": [
                *overrides,
                f"model.item.layer={n_layers}",
                "model.item.lora=false",
                f"model.item.dire_cache={tmp}",
            ],
            "top": [*overrides, f"model.item.layer={sizes.layer}"],
            # the data keys alone: NAML's item encoder has none of the language model's keys
            "word": [*(o for o in overrides if not o.startswith("model")), "model=naml"],
        },
        sizes,
    )
    return {
        "num_layers": n_layers,
        "layer": sizes.layer,
        "frozen_step_s": steps["frozen"],
        "top_step_s": steps["top"],
        "word_step_s": steps["word"],
        "top_over_frozen": steps["top"] / steps["frozen"],
        "frozen_over_word": steps["frozen"] / steps["word"],
    }


# A fresh interpreter per type, so that each peak is its own. VmHWM is the new program's high-water mark
# (ru_maxrss would start at the parent's RSS, which Linux carries over from fork through exec). The build runs
# as training's first use does: one load of the model (held to the end), its parity check (a full forward:
# every weight is touched) and its bottom over every item, up to layer 1: the memory is the weights', the
# states take MBs.
_LOAD_CHILD = """
import json, sys, time
from oncerec.config.loader import build_config
from oncerec.data.dataset import Dataset, resolve_dataset
from oncerec.dire.cache import build_cache
from oncerec.lm.backbone import lm_dtype, load_lm
def rss_mb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024
cfg = build_config(json.loads(sys.argv[1]))
dataset = Dataset(resolve_dataset(cfg.data, progress=False))
imported = rss_mb("VmRSS")
start = time.perf_counter()
model = load_lm(cfg.model.item.lm, lm_dtype(cfg.model.item.dtype))
build_cache(dataset, cfg.model, progress=False, model=model)
seconds = time.perf_counter() - start
weights = sum(t.numel() * t.element_size() for t in model.parameters()) / 2**20
print(json.dumps({"seconds": seconds, "import_rss_mb": imported, "peak_rss_mb": rss_mb("VmHWM"),
                  "held_rss_mb": rss_mb("VmRSS"), "weights_mb": weights}))
"""


def _load_memory(overrides: list[str], tmp: Path) -> dict:
    """Memory of loading the model and building a cache with `model.item.dtype` float32 vs bfloat16, each in a
    fresh child process: the peak (VmHWM) and what is held after the build (VmRSS, the model still loaded),
    both over the child's RSS after its imports (so both include the loader's own ~0.1 GB: transformers'
    modelling code), and the weights' own size."""
    result = {}
    for dtype in ("float32", "bfloat16"):
        logger.info(f"  dire: loading + caching in {dtype} (child process)")
        args = [
            *overrides,
            "model.item.layer=1",
            f"model.item.dtype={dtype}",
            f"model.item.dire_cache={tmp / dtype}",
        ]
        done = subprocess.run(
            [sys.executable, "-c", _LOAD_CHILD, json.dumps(args)], capture_output=True, text=True
        )
        if done.returncode:
            raise OncerecError(f"bench: DIRE load + cache in {dtype} failed:\n{done.stderr.strip()[-3000:]}")
        child = json.loads(done.stdout.strip().splitlines()[-1])
        result[dtype] = child | {
            "peak_added_mb": child["peak_rss_mb"] - child["import_rss_mb"],
            "held_added_mb": child["held_rss_mb"] - child["import_rss_mb"],
        }
    f32, b16 = result["float32"], result["bfloat16"]
    result["ratio"] = b16["held_added_mb"] / f32["held_added_mb"]
    result["peak_ratio"] = b16["peak_added_mb"] / f32["peak_added_mb"]
    return result


def _memory(sizes: DireSizes) -> dict:
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
        logger.info(
            f"  dire: {sizes.memory_batches} batches of 512 random items from a {sizes.memory_gb} GiB cache"
        )
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
    s, b, m, load, fr = d["step"], d["build"], d["memory"], d["load"], d["frozen"]
    f32, b16 = load["float32"], load["bfloat16"]
    z = d["sizes"]
    return [
        f"| DIRE train step, layer={z['layer']} from cache vs whole model ({z['model']}, demo-{z['scale']}, "
        f"batch {z['batch_size']}) | {s['speedup']:.1f}x | whole ÷ cached step time (target ≥{s['target']:.0f}x, "
        f"limit {s['limit']:.0f}x: {s['layers_run']} of {s['num_layers']} layers run: "
        f"{'met' if s['speedup'] >= s['target'] else 'MISSED'}) | cached {s['cached_step_s']:.2f} s, whole "
        f"{s['whole_step_s']:.2f} s | |",
        f"| DIRE frozen LLM, layer={fr['num_layers']} (no layer runs) vs layer={fr['layer']} vs word-embedding NAML "
        f"({z['model']}, demo-{z['scale']}, batch {z['batch_size']}) | {fr['frozen_over_word']:.2f}x | frozen ÷ "
        f"word NAML step time (layer={fr['layer']} ÷ frozen: {fr['top_over_frozen']:.1f}x) | frozen "
        f"{fr['frozen_step_s'] * 1000:.0f} ms, layer={fr['layer']} {fr['top_step_s'] * 1000:.0f} ms, word NAML "
        f"{fr['word_step_s'] * 1000:.0f} ms | |",
        f"| DIRE cache build (layers 0..{b['layer'] - 1}, {d['items']:,} items) | {b['ratio']:.2f}x | build ÷ bare "
        f"forward items/s (target ≥{b['target']:.2f}: {'met' if b['ratio'] >= b['target'] else 'MISSED'}) "
        f"| {b['build_items_per_s']:.1f} vs {b['bare_items_per_s']:.1f} items/s; {b['bytes_per_item'] / 1024:.1f} "
        f"KiB/item on disk ({b['dtype']}) | |",
        f"| DIRE memory: {m['batches']} batches of 512 items from a {m['cache_gb']:.0f} GiB cache "
        f"({m['ram_gb']:.0f} GiB RAM) | {(m['anon_mb_peak'] - m['anon_mb_before']) / (m['cache_gb'] * 1024):.4f}x "
        f"| peak anonymous memory growth ÷ cache size | {m['anon_mb_before']:.0f} → {m['anon_mb_peak']:.0f} MB "
        f"anonymous | |",
        f"| DIRE load + cache build, model.item.dtype bfloat16 vs float32 ({z['model']}, demo-{z['scale']}) "
        f"| {load['ratio']:.2f}x | bfloat16 ÷ float32 memory held after loading and caching (RSS over the "
        f"imports); peak {load['peak_ratio']:.2f}x | float32 {f32['seconds']:.1f} s, bfloat16 "
        f"{b16['seconds']:.1f} s | float32 {f32['peak_rss_mb']:.0f} MB peak, {f32['held_rss_mb']:.0f} held "
        f"(+{f32['held_added_mb']:.0f}); bfloat16 {b16['peak_rss_mb']:.0f} MB peak, {b16['held_rss_mb']:.0f} "
        f"held (+{b16['held_added_mb']:.0f}); weights {f32['weights_mb']:.0f} vs {b16['weights_mb']:.0f} MB; "
        "children |",
    ]
