"""`python -m benchmarks`: data preparation, training, evaluation and metrics measured side by side in one run.

Every comparison is run on the same machine at the same time and reported as a RATIO (fast path / slow path,
model / NAML, ...), because ratios carry over between machines while absolute times do not. Absolute numbers,
machine facts and the load average are kept beside them in `bench.json`, so a noisy run can be recognised.

The benchmark works in a private, temporary ONCEREC_CACHE: it neither reads nor fills the user's cache.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psutil
import torch

from benchmarks.dire import DIRE_FULL, DIRE_QUICK, DireSizes, bench_dire, dire_rows, resolve_models
from benchmarks.genre import bench_genre, genre_rows
from benchmarks.serve import SERVE_FULL, SERVE_QUICK, ServeSizes, bench_serve, serve_rows
from oncerec.config.loader import build_config
from oncerec.config.schema import ExpConfig
from oncerec.data.batching import Batch, TrainSampler
from oncerec.data.dataset import Dataset, demo_raw_folder, resolve_dataset
from oncerec.data.formats.mind import split_folders
from oncerec.errors import OncerecError
from oncerec.eval.metrics import DEFAULT_TABLE, evaluate_groups
from oncerec.models.recommender import Recommender
from oncerec.serve import missing_packages
from oncerec.training.build import build_recommender
from oncerec.training.evaluate import predict_fast, predict_slow
from oncerec.training.losses import batch_loss

logger = logging.getLogger(__name__)

PRESETS = ("naml", "nrms", "lstur", "fastformer", "miner")
REFERENCE_PRESET = "naml"
SEED = 2023
NEG_COUNT = 4
EVAL_BATCH = 512  # ExpConfig.eval_batch_size's default: what `oncerec train` evaluates with
EVAL_TARGET = 10.0  # fast / slow evaluation speed-up asked for on demo-medium
METRICS_TARGET = 50.0  # vectorised metrics vs the per-impression loop
RANKING_METRICS = DEFAULT_TABLE  # auc, mrr, ndcg@5, ndcg@10: what the naive oracle computes


@dataclass(frozen=True)
class Sizes:
    """How much work each section does."""

    prepare_scale: str
    train_scale: str
    batch_size: int
    train_warmup: int  # untimed steps per model (first-call allocations, lazy initialisation)
    train_steps: int  # timed steps per model
    eval_scale: str
    slow_impressions: int  # the slow path runs on this many impressions and is extrapolated to the split
    metric_rows: int
    metric_groups: int
    loop_groups: int  # the reference loop runs on this many groups and is extrapolated
    dire: DireSizes | None = None  # the DIRE section (None: skipped)
    genre: bool = False  # the GENRE client section
    serve: ServeSizes | None = None  # the serving section (None: skipped)


# Quick: about a minute on 2 idle CPU cores. Ten timed steps per model would take several minutes there (a
# Fastformer step alone takes seconds), so quick times five; full: ~10 minutes. The slow-path subsets are
# multiples of EVAL_BATCH so that they hold full batches only, like the rest of the split.
QUICK = Sizes(
    "small", "small", 64, 1, 5, "small", 2048, 200_000, 20_000, 1_000, DIRE_QUICK, True, SERVE_QUICK
)
FULL = Sizes(
    "medium", "small", 64, 2, 30, "medium", 5120, 1_000_000, 100_000, 5_000, DIRE_FULL, True, SERVE_FULL
)
SECTIONS = ("prepare", "train", "eval", "dire", "genre", "serve", "metrics")


def run_bench(
    quick: bool = False,
    out_dir: Path = Path("bench-out"),
    sizes: Sizes | None = None,
    threads: int | None = None,
    only: tuple[str, ...] = (),
) -> dict:
    """Run every section (`only`: these of SECTIONS), write `out_dir/bench.json` (all numbers) and
    `out_dir/bench.md` (the ratio table).

    `sizes` overrides QUICK / FULL (tests use tiny ones); `threads` sets torch's intra-op threads for the run
    (None: torch's default, one per core), e.g. 1 when other processes keep a core busy: torch's threads then
    wait on each other and every step slows down many times over, unevenly between models.
    """
    unknown = [name for name in only if name not in SECTIONS]
    if unknown:
        raise OncerecError(f"--only {','.join(unknown)}: not a section; sections: {', '.join(SECTIONS)}")
    sizes = sizes or (QUICK if quick else FULL)
    default_threads = torch.get_num_threads()
    torch.set_num_threads(threads or default_threads)
    try:
        sections = _run_sections(sizes, set(only or SECTIONS))
        results = {"mode": "quick" if quick else "full", "sizes": asdict(sizes), **sections}
    finally:
        torch.set_num_threads(default_threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / "bench.md").write_text(bench_table(results))
    logger.info(
        f"bench: done in {results['wall_s']:.0f} s; wrote {out_dir / 'bench.md'} and {out_dir / 'bench.json'}"
    )
    return results


def _run_sections(sizes: Sizes, wanted: set[str]) -> dict:
    started = time.perf_counter()
    results: dict = {"machine": machine_info()}
    # resolved before the private cache, so that a packaged GGUF model is converted once, not per run
    lm_sections = (sizes.dire and "dire" in wanted) or (sizes.genre and "genre" in wanted)
    model_path = resolve_models(sizes.dire or DIRE_QUICK) if lm_sections else None
    with _private_cache():
        if "prepare" in wanted:
            results["prepare"] = _section("prepare", lambda: bench_prepare(sizes.prepare_scale))
        if "train" in wanted:
            results["train"] = _section(
                "train",
                lambda: bench_train(
                    sizes.train_scale, sizes.batch_size, sizes.train_warmup, sizes.train_steps
                ),
            )
        if "eval" in wanted:
            results["eval"] = _section("eval", lambda: bench_eval(sizes.eval_scale, sizes.slow_impressions))
        if sizes.dire and "dire" in wanted:
            results["dire"] = _section("dire", lambda: bench_dire(sizes.dire, model_path))
        if sizes.genre and "genre" in wanted:
            quick = sizes is QUICK
            results["genre"] = _section("genre", lambda: bench_genre(quick, model_path=model_path))
        if sizes.serve and "serve" in wanted and missing_packages():
            logger.info(
                f"bench: serve skipped: it needs {', '.join(missing_packages())} (pip install 'oncerec[serve]')"
            )
            results["serve"] = {"skipped": f"{', '.join(missing_packages())} not installed"}
        elif sizes.serve and "serve" in wanted:
            results["serve"] = _section("serve", lambda: bench_serve(sizes.serve))
    if "metrics" in wanted and importlib.util.find_spec("sklearn") is None:
        logger.info(
            "bench: metrics skipped: the reference loop needs scikit-learn (pip install scikit-learn)"
        )
        results["metrics"] = {"skipped": "scikit-learn is not installed"}
    elif "metrics" in wanted:
        results["metrics"] = _section(
            "metrics",
            lambda: bench_metrics(sizes.metric_rows, sizes.metric_groups, sizes.loop_groups),
        )
    results["machine"]["loadavg_end"] = list(os.getloadavg())
    results["wall_s"] = time.perf_counter() - started
    return results


def machine_info() -> dict:
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        # Other processes' load skews absolute times; it is recorded so a noisy run can be told apart.
        "loadavg_start": list(os.getloadavg()),
    }


# --------------------------------------------------------------------------------------------- sections

# Runs in a fresh interpreter so that its peak RSS is preparation's alone, not this process's (torch, models).
# The peak is VmHWM, the new program's own high-water mark: ru_maxrss would start at this process's RSS, which
# Linux carries over from fork through exec.
_PREPARE_CHILD = """
import sys, time, json
from pathlib import Path
from oncerec.config.loader import build_config
from oncerec.config.schema import ExpConfig
from oncerec.data.prepare import prepare
def rss_mb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024
source, out, preset = sys.argv[1:]
cfg = build_config([f"data={preset}"]).data
imported = rss_mb("VmRSS")
start = time.perf_counter()
prepare(Path(source), cfg, Path(out), progress=False)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "import_rss_mb": imported, "peak_rss_mb": rss_mb("VmHWM")}))
"""


def bench_prepare(scale: str) -> dict:
    """Throughput and peak memory of `prepare` on raw demo data, in a child process."""
    logger.info(f"  generating raw demo-{scale} data")
    source = demo_raw_folder(scale, seed=0, progress=False)
    files = [
        folder / name for folder in split_folders(source).values() for name in ("news.tsv", "behaviors.tsv")
    ]
    lines = sum(f.read_bytes().count(b"\n") for f in files)
    raw_mb = sum(f.stat().st_size for f in files) / 2**20
    with tempfile.TemporaryDirectory(prefix="oncerec-bench-prepare-") as tmp:
        done = subprocess.run(
            [sys.executable, "-c", _PREPARE_CHILD, str(source), str(Path(tmp) / "out"), f"demo-{scale}"],
            capture_output=True,
            text=True,
        )
    if done.returncode:
        raise OncerecError(f"bench: preparing demo-{scale} failed:\n{done.stderr.strip()}")
    child = json.loads(done.stdout.strip().splitlines()[-1])
    seconds = child["seconds"]
    return {
        "scale": scale,
        "lines": lines,
        "raw_mb": raw_mb,
        "seconds": seconds,
        "lines_per_s": lines / seconds,
        "mb_per_s": raw_mb / seconds,
        "import_rss_mb": child["import_rss_mb"],
        "peak_rss_mb": child["peak_rss_mb"],
        # Memory that preparing adds on top of a bare interpreter with the imports, per MB of raw input.
        "rss_per_raw_mb": (child["peak_rss_mb"] - child["import_rss_mb"]) / raw_mb,
    }


def bench_train(scale: str, batch_size: int, warmup: int, steps: int) -> dict:
    """Training samples/s (forward, backward, clipping, AdamW) of every preset at its default sizes."""
    dataset = demo_dataset(scale)
    sampler = TrainSampler(dataset, dataset.split("train"), batch_size, NEG_COUNT, seed=SEED)
    start = time.perf_counter()
    # The same batches for every model, built before any timing: the step times are the models' own cost.
    order = sampler.order(0)
    batches = [sampler.batch(0, i, order) for i in range(warmup + steps)]
    sampler_rate = batch_size * len(batches) / (time.perf_counter() - start)

    models, optimizers, cfgs = {}, {}, {}
    for preset in PRESETS:
        cfg = cfgs[preset] = build_config([f"data=demo-{scale}", f"model={preset}"])
        torch.manual_seed(SEED)
        models[preset] = build_recommender(cfg.model, cfg.embed, dataset, seed=SEED).train()
        optimizers[preset] = torch.optim.AdamW(
            models[preset].param_groups(cfg.exp.lr, cfg.exp.item_lr, cfg.exp.embed_lr, cfg.exp.weight_decay)
        )
    step_seconds: dict[str, list[float]] = {p: [] for p in PRESETS}
    # Models take turns, one step each: a burst of load from another process slows all of them alike, so the
    # ratios survive a busy machine better than with one model after the other.
    for i, batch in enumerate(batches):
        for preset in PRESETS:
            seconds = _train_step(models[preset], optimizers[preset], batch, cfgs[preset].exp)
            if i >= warmup:
                step_seconds[preset].append(seconds)
        logger.info(f"  train step {i + 1}/{len(batches)}" + (" (warm-up)" if i < warmup else ""))

    # The median step resists the odd step slowed down by another process.
    rates = {p: batch_size / statistics.median(s) for p, s in step_seconds.items()}
    per_model = {
        p: {
            "samples_per_s": rates[p],
            "vs_" + REFERENCE_PRESET: rates[p] / rates[REFERENCE_PRESET],
            "median_step_s": statistics.median(step_seconds[p]),
            "step_seconds": step_seconds[p],
            "parameters": sum(t.numel() for t in models[p].parameters()),
        }
        for p in PRESETS
    }
    return {
        "scale": scale,
        "batch_size": batch_size,
        "neg_count": NEG_COUNT,
        "warmup_steps": warmup,
        "timed_steps": steps,
        "reference": REFERENCE_PRESET,
        "sampler_samples_per_s": sampler_rate,
        "models": per_model,
    }


def _train_step(model: Recommender, optimizer: torch.optim.Optimizer, batch: Batch, exp: ExpConfig) -> float:
    """One optimizer step as the trainer takes it: its loss (`batch_loss`), its clipping, AdamW."""
    start = time.perf_counter()
    batch_loss(model, model(batch), batch, exp.loss).backward()
    if exp.clip_norm:
        torch.nn.utils.clip_grad_norm_(model.parameters(), exp.clip_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def bench_eval(scale: str, slow_impressions: int) -> dict:
    """`predict_fast` on the whole valid split vs `predict_slow` on its first impressions, same NRMS model."""
    dataset = demo_dataset(scale)
    split = dataset.split("valid")
    cfg = build_config([f"data=demo-{scale}", "model=nrms"])
    torch.manual_seed(SEED)
    model = build_recommender(cfg.model, cfg.embed, dataset, seed=SEED)

    start = time.perf_counter()
    fast = predict_fast(model, dataset, split, EVAL_BATCH, "cpu")
    fast_s = time.perf_counter() - start
    logger.info(f"  fast path: {split.num_impressions} impressions in {fast_s:.1f} s")

    n = min(slow_impressions, split.num_impressions)
    subset = split.select(np.arange(n))
    start = time.perf_counter()
    slow = predict_slow(model, dataset, subset, EVAL_BATCH, "cpu")
    slow_subset_s = time.perf_counter() - start
    # The slow path's cost is the same per batch of impressions, so it grows linearly with their number.
    slow_s = slow_subset_s * split.num_impressions / n
    logger.info(f"  slow path: {n} impressions in {slow_subset_s:.1f} s")

    rows = len(subset.item)
    return {
        "scale": scale,
        "model": "nrms",
        "batch_size": EVAL_BATCH,
        "impressions": split.num_impressions,
        "rows": len(split.item),
        "fast_s": fast_s,
        "slow_impressions": n,
        "slow_subset_s": slow_subset_s,
        "slow_s": slow_s,
        "slow_extrapolated": n < split.num_impressions,
        "speedup": slow_s / fast_s,
        "target": EVAL_TARGET if scale == "medium" else None,
        "max_abs_diff": float(np.abs(fast[:rows] - slow).max()),
        # The tolerance of the test that the two paths agree (tests/test_train.py).
        "scores_agree": bool(np.allclose(fast[:rows], slow, rtol=1e-4, atol=1e-5)),
    }


def bench_metrics(rows: int, groups: int, loop_groups: int) -> dict:
    """`evaluate_groups` vs a per-impression loop written like MIND's official evaluate.py (sklearn AUC)."""
    labels, scores, group, offsets = random_ranking(rows, groups, seed=SEED)
    start = time.perf_counter()
    evaluate_groups(labels, scores, group)
    fast_s = time.perf_counter() - start

    k = min(loop_groups, groups)
    end = int(offsets[k])
    naive_reference_metrics(labels, scores, offsets[:2])  # untimed: the first call imports scikit-learn
    start = time.perf_counter()
    reference = naive_reference_metrics(labels[:end], scores[:end], offsets[: k + 1])
    loop_subset_s = time.perf_counter() - start
    loop_s = loop_subset_s * groups / k
    logger.info(
        f"  vectorised: {len(labels)} rows in {fast_s:.2f} s; loop: {k} groups in {loop_subset_s:.1f} s"
    )

    subset = evaluate_groups(labels[:end], scores[:end], group[:end])
    diffs = {m: abs(subset[m] - reference[m]) for m in RANKING_METRICS}
    return {
        "rows": len(labels),
        "groups": groups,
        "fast_s": fast_s,
        "loop_groups": k,
        "loop_subset_s": loop_subset_s,
        "loop_s": loop_s,
        "loop_extrapolated": k < groups,
        "speedup": loop_s / fast_s,
        "target": METRICS_TARGET,
        "max_abs_diff": diffs,
        "metrics_agree": all(d <= 1e-9 for d in diffs.values()),
    }


def random_ranking(
    rows: int, groups: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Labels, tied scores, group ids and group offsets of about `rows` rows in `groups` contiguous groups."""
    rng = np.random.default_rng(seed)
    mean = max(rows // groups, 2)
    sizes = rng.integers(2, 2 * mean - 1, groups)  # mean size `mean`, at least a positive and a negative fit
    group = np.repeat(np.arange(groups), sizes)
    click_rate = np.repeat(rng.uniform(0.05, 0.4, groups), sizes)
    labels = (rng.random(len(group)) < click_rate).astype(np.int8)
    scores = np.round(rng.normal(size=len(group)), 1)  # one decimal: many ties, which the ranking must break
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    return labels, scores, group, offsets


def naive_reference_metrics(labels: np.ndarray, scores: np.ndarray, offsets: np.ndarray) -> dict[str, float]:
    """The metrics benchmark's oracle, naive on purpose: mean per-group AUC/MRR/nDCG one group at a time,
    written like MIND's official evaluate.py (sklearn's AUC), each candidate scoring 1/rank (strict rank,
    ties to the earlier row) as in the official scorer; groups with one label class only are skipped. No
    reported metric comes from it: it is what `evaluate_groups` is timed and checked against."""
    from sklearn.metrics import roc_auc_score

    per: dict[str, list[float]] = {m: [] for m in RANKING_METRICS}
    for lo, hi in zip(offsets[:-1], offsets[1:], strict=True):
        y = labels[lo:hi].astype(np.float64)
        if y.sum() in (0, len(y)):
            continue
        rank = np.empty(len(y))
        rank[np.argsort(-scores[lo:hi], kind="stable")] = np.arange(1, len(y) + 1)
        s = 1.0 / rank
        y_sorted = y[np.argsort(s)[::-1]]
        per["auc"].append(roc_auc_score(y, s))
        per["mrr"].append(float(np.sum(y_sorted / np.arange(1, len(y) + 1)) / np.sum(y)))
        for k in (5, 10):
            per[f"ndcg@{k}"].append(_dcg(y_sorted, k) / _dcg(np.sort(y)[::-1], k))
    return {m: float(np.mean(v)) for m, v in per.items()}


def _dcg(y_sorted: np.ndarray, k: int) -> float:
    top = y_sorted[:k]
    return float(np.sum((2**top - 1) / np.log2(np.arange(len(top)) + 2)))


# ------------------------------------------------------------------------------------------------ table


def bench_table(results: dict) -> str:
    """Markdown summary: the ratio first, absolute numbers after (they depend on the machine and its load)."""
    m = results["machine"]
    lines = [
        f"# oncerec bench ({results['mode']})",
        "",
        f"{m['cpus_usable']} CPUs usable of {m['cpu_count']}, torch {m['torch']} on {m['torch_threads']} threads, "
        f"load average {m['loadavg_start'][0]:.1f} at start and {m['loadavg_end'][0]:.1f} at end; "
        f"{results['wall_s']:.0f} s in all.",
        "",
        "| benchmark | ratio | the ratio is | absolute | peak RSS |",
        "|---|---:|---|---|---:|",
    ]
    if "prepare" in results:
        p = results["prepare"]
        lines.append(
            f"| prepare demo-{p['scale']} | {p['rss_per_raw_mb']:.1f}x | memory added ÷ raw input size "
            f"| {p['seconds']:.2f} s, {p['lines_per_s']:,.0f} lines/s, {p['mb_per_s']:.1f} MB/s of {p['raw_mb']:.0f} MB "
            f"| {p['peak_rss_mb']:.0f} MB (+{p['peak_rss_mb'] - p['import_rss_mb']:.0f}), child |"
        )
    if "train" in results:
        t = results["train"]
        ref = "vs_" + t["reference"]
        for i, (name, r) in enumerate(t["models"].items()):
            lines.append(
                f"| train {name} (demo-{t['scale']}, batch {t['batch_size']}) | {r[ref]:.2f}x "
                f"| samples/s ÷ {t['reference']}'s | {r['samples_per_s']:.1f} samples/s, {r['median_step_s']:.2f} s/step "
                f"| {'' if i else _rss(t)} |"
            )
    if "eval" in results:
        e = results["eval"]
        slow = f"slow {e['slow_s']:.1f} s" + (
            f" (extrapolated from {e['slow_impressions']:,} of {e['impressions']:,} impressions)"
            if e["slow_extrapolated"]
            else ""
        )
        lines.append(
            f"| eval fast vs slow (nrms, demo-{e['scale']}) | {e['speedup']:.1f}x | slow ÷ fast time"
            f"{_target(e)} | fast {e['fast_s']:.1f} s, {slow}; max score diff {e['max_abs_diff']:.1e} "
            f"({'agree' if e['scores_agree'] else 'DISAGREE'}) | {_rss(e)} |"
        )
    x = results.get("metrics")
    if x is not None and "skipped" in x:
        lines.append(f"| metrics | | skipped: {x['skipped']} | | |")
    elif x is not None:
        loop = f"loop {x['loop_s']:.1f} s" + (
            f" (extrapolated from {x['loop_groups']:,} of {x['groups']:,} groups)"
            if x["loop_extrapolated"]
            else ""
        )
        lines.append(
            f"| metrics {x['rows']:,} rows / {x['groups']:,} groups | {x['speedup']:.0f}x | loop ÷ vectorised "
            f"time{_target(x)} | vectorised {x['fast_s']:.2f} s, {loop}; max metric diff "
            f"{max(x['max_abs_diff'].values()):.1e} ({'agree' if x['metrics_agree'] else 'DISAGREE'}) "
            f"| {_rss(x)} |"
        )
    if "dire" in results:
        lines += dire_rows(results["dire"])
    if "genre" in results:
        lines += genre_rows(results["genre"])
    if "serve" in results:
        lines += serve_rows(results["serve"])
    lines += [
        "",
        "Peak RSS: of this process during the section (+ its growth in the section); the models train in one "
        "section, taking turns; preparation runs in a child process (+ over its imports). Ratios compare runs "
        "made side by side; absolute numbers depend on the machine and on its load.",
    ]
    return "\n".join(lines) + "\n"


def _target(r: dict) -> str:
    if r["target"] is None:
        return f" (target ≥{EVAL_TARGET:.0f}x applies to demo-medium)"
    return f" (target ≥{r['target']:.0f}x: {'met' if r['speedup'] >= r['target'] else 'MISSED'})"


def _rss(r: dict) -> str:
    rss = r["rss_mb"]
    return f"{rss['peak']:.0f} MB (+{rss['peak'] - rss['start']:.0f})"


# ------------------------------------------------------------------------------------------------ helpers


def demo_dataset(scale: str) -> Dataset:
    return Dataset(resolve_dataset(build_config([f"data=demo-{scale}"]).data, progress=False))


def _section(name: str, run: Callable[[], dict]) -> dict:
    """Run one section, adding its wall time and this process's RSS (at the start, and the peak) to its result."""
    logger.info(f"bench: {name} ...")
    start = time.perf_counter()
    with _PeakRss() as rss:
        result = run()
    result["wall_s"] = time.perf_counter() - start
    result["rss_mb"] = {"start": rss.start_mb, "peak": rss.peak_mb}
    logger.info(f"bench: {name} done in {result['wall_s']:.1f} s")
    return result


class _PeakRss:
    """Peak resident memory of this process while a block runs, sampled every 10 ms by a thread
    (ru_maxrss is the peak of the whole process so far, so it cannot tell one section from the next)."""

    def __enter__(self) -> _PeakRss:
        self._process = psutil.Process()
        self.start_mb = self.peak_mb = self._rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _rss_mb(self) -> float:
        return self._process.memory_info().rss / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak_mb = max(self.peak_mb, self._rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._rss_mb())


@contextmanager
def _private_cache() -> Iterator[Path]:
    """Point ONCEREC_CACHE at a temporary folder (demo data is generated and prepared there), then restore it."""
    old = os.environ.get("ONCEREC_CACHE")
    with tempfile.TemporaryDirectory(prefix="oncerec-bench-") as tmp:
        os.environ["ONCEREC_CACHE"] = tmp
        try:
            yield Path(tmp)
        finally:
            if old is None:
                os.environ.pop("ONCEREC_CACHE", None)
            else:
                os.environ["ONCEREC_CACHE"] = old
