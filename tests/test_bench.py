from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.suite import (
    PRESETS,
    RANKING_METRICS,
    Sizes,
    bench_metrics,
    bench_table,
    naive_reference_metrics,
    random_ranking,
    run_bench,
)
from oncerec.eval.metrics import evaluate_groups

# Every section on the tiny demo data and a small metrics problem: seconds, not minutes.
TINY = Sizes(
    prepare_scale="tiny",
    train_scale="tiny",
    batch_size=8,
    train_warmup=1,
    train_steps=2,
    eval_scale="tiny",
    slow_impressions=64,
    metric_rows=2_000,
    metric_groups=200,
    loop_groups=50,
)


def _positive(x: float) -> bool:
    return np.isfinite(x) and x > 0


@pytest.mark.integration
def test_run_bench_writes_json_and_table(tmp_path: Path, caplog):
    cache_before, threads_before = os.environ["ONCEREC_CACHE"], torch.get_num_threads()
    caplog.set_level(logging.INFO, logger="benchmarks")
    # One torch thread: this test measures nothing, and two threads crawl when another process holds a core.
    results = run_bench(out_dir=tmp_path / "out", sizes=TINY, threads=1)
    assert results["machine"]["torch_threads"] == 1

    assert os.environ["ONCEREC_CACHE"] == cache_before  # the private cache is undone
    assert torch.get_num_threads() == threads_before
    assert any("train" in line for line in caplog.messages)
    saved = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert {"mode", "sizes", "machine", "prepare", "train", "eval", "metrics", "wall_s"} <= set(saved)
    assert {"cpu_count", "torch", "torch_threads", "loadavg_start", "loadavg_end"} <= set(saved["machine"])
    for section in ("prepare", "train", "eval", "metrics"):
        assert saved[section]["rss_mb"]["peak"] >= saved[section]["rss_mb"]["start"] > 0

    p = saved["prepare"]
    assert p["lines"] > 0 and p["raw_mb"] > 0
    assert all(
        _positive(p[k]) for k in ("seconds", "lines_per_s", "mb_per_s", "peak_rss_mb", "rss_per_raw_mb")
    )

    t = saved["train"]
    assert set(t["models"]) == set(PRESETS)
    for r in t["models"].values():
        assert len(r["step_seconds"]) == TINY.train_steps
        assert _positive(r["samples_per_s"]) and _positive(r["vs_naml"])
    assert t["models"]["naml"]["vs_naml"] == 1.0

    e = saved["eval"]
    assert e["scores_agree"] and e["max_abs_diff"] < 1e-4
    assert e["slow_impressions"] == 64 < e["impressions"] and e["slow_extrapolated"]
    assert _positive(e["speedup"]) and e["target"] is None  # the 10x target is for demo-medium

    m = saved["metrics"]
    assert m["metrics_agree"] and m["loop_groups"] == 50 and m["loop_extrapolated"]
    assert _positive(m["speedup"])

    table = (tmp_path / "out" / "bench.md").read_text()
    assert table == bench_table(saved)  # the JSON holds everything the table shows
    header = "| benchmark | ratio | the ratio is | absolute | peak RSS |"
    rows = table[table.index(header) :].split("\n\n")[0].splitlines()
    assert len(rows) == 2 + 1 + len(PRESETS) + 2  # header, rule, prepare, models, eval, metrics
    assert all(row.startswith("| ") and row.endswith(" |") for row in rows[2:])


def test_naive_reference_metrics_matches_evaluate_groups_with_ties():
    labels, scores, group, offsets = random_ranking(5_000, 400, seed=1)
    assert len(np.unique(scores)) < len(scores) // 10  # heavy ties
    assert offsets[-1] == len(labels) and len(np.unique(group)) == 400
    reference = naive_reference_metrics(labels, scores, offsets)
    fast = evaluate_groups(labels, scores, group)
    for m in RANKING_METRICS:
        assert abs(reference[m] - fast[m]) <= 1e-9, m


def test_metrics_section_extrapolates_the_loop():
    r = bench_metrics(rows=1_000, groups=100, loop_groups=100)
    assert not r["loop_extrapolated"] and r["loop_s"] == r["loop_subset_s"]
    assert r["metrics_agree"] and set(r["max_abs_diff"]) == set(RANKING_METRICS)


@pytest.mark.integration
def test_dire_bench_measures_both_sides_of_each_ratio(tmp_path: Path):
    from benchmarks.dire import DireSizes, bench_dire, dire_rows, resolve_models

    sizes = DireSizes("tiny", "minilm", 4, 16, 2, 5, 1, memory_gb=1.0, memory_batches=3)
    d = bench_dire(sizes, resolve_models(sizes))
    assert d["step"]["num_layers"] == 6 and d["step"]["layers_run"] == 2
    assert _positive(d["step"]["cached_step_s"]) and _positive(d["step"]["whole_step_s"])
    assert _positive(d["build"]["ratio"]) and d["build"]["bytes_per_item"] > 0
    assert d["memory"]["cache_gb"] > 0 and d["memory"]["anon_mb_peak"] >= d["memory"]["anon_mb_before"]
    load = d["load"]  # loading + caching in float32 vs bfloat16, each in its own child process
    for dtype in ("float32", "bfloat16"):
        assert load[dtype]["peak_rss_mb"] >= load[dtype]["held_rss_mb"] > load[dtype]["import_rss_mb"] > 0
    assert _positive(load["ratio"]) and _positive(load["peak_ratio"])
    frozen = d["frozen"]  # layer=L (no layer runs) vs layer=k vs word-embedding NAML, same batches
    assert frozen["num_layers"] == 6 and frozen["layer"] == 4
    assert all(_positive(frozen[k]) for k in ("frozen_step_s", "top_step_s", "word_step_s"))
    rows = dire_rows(d)
    assert len(rows) == 5 and "frozen LLM, layer=6" in rows[1] and "bfloat16 vs float32" in rows[4]
