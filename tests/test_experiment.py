"""The experiment runner: a grid of runs, skipping finished ones, and the results table."""

from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path

import pytest

from oncerec.config.loader import build_config, dump_config
from oncerec.errors import ConfigError
from oncerec.eval.metrics import metric_label
from oncerec.experiment import load_spec, run_dir, run_experiment, write_table

SPEC = """
name: grid
seeds: [1, 2]
common: [data=demo-tiny, exp=quick, model.hidden_size=16, model.attention_hidden=8, model.category_dim=8,
         embed.dim=16, exp.batch_size=32, exp.max_steps=2, exp.eval_batch_size=64]
axes:
  model: {pool: [model.item=pool, model.user=pool, "model.item_fields=[title,category]"]}
  loss: {softmax: [exp.loss=softmax], bce: [exp.loss=bce]}
baseline: pool/softmax
setup:
  - creates: raw/meta.json
    commands: [[demo-data, "{dir}/raw", --scale, tiny, --quiet]]
"""


@pytest.mark.integration
def test_grid_runs_once_and_tabulates_mean_std_and_relative_change(tmp_path: Path, caplog):
    spec_file = tmp_path / "grid.yaml"
    spec_file.write_text(SPEC)
    spec = load_spec(str(spec_file))
    assert [r for r, _ in spec.rows] == ["pool/softmax", "pool/bce"]
    caplog.set_level(logging.INFO, logger="oncerec")
    table = run_experiment(load_spec(str(spec_file)), tmp_path / "out", [])
    lines = caplog.messages
    # one progress line per run (2 rows x 2 seeds): row, seed, its time, its metric, elapsed, ETA
    progress = r"\[\d/4\] pool/(softmax|bce) seed [12]: \d+s, test auc 0\.\d{4} \| elapsed \d+(m\d\d)?s, ETA \d+(m\d\d)?s"
    assert sum(bool(re.fullmatch(progress, line)) for line in lines) == 4, lines
    assert sum(line.startswith("setup:") for line in lines) == 1
    assert (tmp_path / "out" / "grid" / "raw" / "meta.json").is_file()  # {dir} is the experiment folder
    text = table.read_text()
    assert (
        "| pool/softmax | 2 |" in text and "+0.00%" in text and "AUC per impression vs pool/softmax" in text
    )
    header = text.splitlines()[2]
    assert header.startswith("| run | seeds | AUC per impression | MRR | nDCG@5 | nDCG@10 | impressions |")
    assert (
        "| AUC per impression on new items | their impressions | AUC per impression on cold users "
        "| their impressions |" in header
    )
    with open(table.parent / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == ["pool/softmax", "pool/bce"]
    assert 0 <= float(rows[1]["auc_mean"]) <= 1 and float(rows[0]["auc_std"]) >= 0
    assert {"cold_items.auc_mean", "cold_users.auc_std", "auc_rel_change"} <= set(rows[0])
    caplog.clear()
    run_experiment(load_spec(str(spec_file)), tmp_path / "out", [])
    lines = caplog.messages
    assert sum("skipped" in line for line in lines) == 4
    assert not any(line.startswith("setup:") for line in lines)  # its output exists: not run again
    # a subset (`--rows`, `--seeds`): its table has its runs only, and one seed shows no spread
    one = run_experiment(load_spec(str(spec_file)).subset("*/bce", seeds=1), tmp_path / "out", [])
    text = one.read_text()
    assert text.startswith("# grid: test metrics, seed 1\n") and "±" not in text
    assert "| pool/bce | 1 |" in text and "pool/softmax" not in text and " vs " not in text
    with pytest.raises(
        ConfigError, match=r"--rows x/\*: no row matches; the rows are pool/softmax, pool/bce"
    ):
        load_spec(str(spec_file)).subset("x/*")
    with pytest.raises(ConfigError, match=r"--seeds 3: give 1 to 2"):
        load_spec(str(spec_file)).subset(seeds=3)


def test_bad_specs_are_refused(tmp_path: Path):
    with pytest.raises(ConfigError, match="not a packaged spec"):
        load_spec("no-such-spec")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\naxes: {a: {b: []}}\nbaselin: a\n")
    with pytest.raises(ConfigError, match="unknown key.*baselin"):
        load_spec(str(bad))
    bad.write_text("name: x\naxes: {a: {b: []}}\nbaseline: c\n")
    with pytest.raises(ConfigError, match="baseline `c` is not a row; rows: b"):
        load_spec(str(bad))


def test_a_spec_that_reads_your_data_takes_it_as_source(tmp_path: Path):
    spec_file = tmp_path / "mine.yaml"
    spec_file.write_text(
        "name: mine\nsource: a folder to write demo data into\n"
        "setup: [{creates: never, commands: [[demo-data, '{source}/raw', --scale, tiny, --quiet]]}]\n"
        "axes: {a: {b: ['data={source}/raw', exp.no_such_key=1]}}\n"
    )
    spec = load_spec(str(spec_file))
    with pytest.raises(ConfigError, match="give --source DIR, a folder to write demo data into"):
        run_experiment(spec, tmp_path / "out", [])
    with pytest.raises(ConfigError, match="--source .*: no such folder"):
        run_experiment(spec, tmp_path / "out", [], source=tmp_path / "absent")
    (tmp_path / "data").mkdir()
    # the setup ran with {source} filled in; the row's bad key fails before anything trains
    with pytest.raises(ConfigError, match="no_such_key"):
        run_experiment(spec, tmp_path / "out", [], source=tmp_path / "data")
    assert (tmp_path / "data" / "raw" / "meta.json").is_file()


@pytest.mark.parametrize("name", ["once-demo", "once-goodreads", "once-mind", "dire-fresh"])
def test_every_packaged_spec_resolves_its_rows(name: str, tmp_path: Path):
    from oncerec.config.loader import build_config

    spec = load_spec(name)
    for folder in ("data", "genre/merged", "genre/summ", "genre/profile", "genre/generate"):
        (tmp_path / folder).mkdir(parents=True)
    for row, overrides in spec.rows:
        cfg = build_config([*spec.common, *(o.replace("{dir}", str(tmp_path)) for o in overrides)])
        assert cfg.model.item_fields, row


@pytest.mark.integration
def test_the_once_goodreads_setup_imports_and_merges_the_release(tmp_path: Path):
    """`oncerec experiment once-goodreads --source R`: its setup on a small release in the real formats."""
    import json

    from test_once_goodreads import BIDS, HISTORIES, UIDS, write_release

    from oncerec.data.dataset import Dataset

    release = write_release(tmp_path / "release")
    (release / "book_summarizer.log").write_text(
        "".join(
            f"{b}\t[description] A story about the number {k} and its friends.\n" for k, b in enumerate(BIDS)
        )
    )
    profiles = [{"uid": u, "interest": ["numbers", "foul play"]} for u in HISTORIES]
    (release / "user_profiler.log").write_text("".join(json.dumps(p) + "\n" for p in profiles))
    book = json.dumps({"title": "More numbers", "description": "A sequel about numbers."})
    cold = [u for u, h in HISTORIES.items() if len(h) <= 5]
    (release / "generator_v1.log").write_text(
        "".join(json.dumps({"uid": u, "book": book}) + "\n" for u in cold)
    )
    spec = load_spec("once-goodreads")
    with pytest.raises(ConfigError, match="no_such_key"):  # the setup runs; the runs stop before training
        run_experiment(spec, tmp_path / "out", ["exp.no_such_key=1"], source=release)
    home = tmp_path / "out" / "once-goodreads"
    summ = Dataset(home / "genre" / "summ")
    prompt = summ.items_table.column("prompt").to_pylist()[1]
    assert prompt == "book title: Book number 0 description: A story about the number 0 and its friends."
    assert Dataset(home / "genre" / "profile").manifest["user_attributes"] == ["interest"]
    generated = Dataset(home / "genre" / "generate")
    assert generated.manifest["genre"]["generate"]["items"] == len(cold) - 1  # uid 0 has one book: no user
    assert len(UIDS) == len(HISTORIES) + 1


def test_the_table_has_the_metrics_and_slices_the_runs_chose(tmp_path: Path):
    """Columns: every metric any row chose (a dash where a row did not), then the first one over every slice."""
    spec_file = tmp_path / "choice.yaml"
    spec_file.write_text(
        "name: choice\nseeds: [1]\ncommon: [data=demo-tiny]\n"
        "axes: {metrics: {plain: [], chosen: ['exp.metrics=[auc,gauc,hit@5,f1@0.5]']}}\nbaseline: plain\n"
    )
    spec = load_spec(str(spec_file))
    base = {"groups": 10, "skipped": 0, "rows": 50, "impressions": 10}
    chosen = {"auc": 0.6, "gauc": 0.55, "hit@5": 0.7, "f1@0.5": 0.65, **base, "users": 4}
    for row, overrides, metrics in [
        ("plain", [], {"auc": 0.5, "mrr": 0.3, "ndcg@5": 0.4, "ndcg@10": 0.45, **base}),
        ("chosen", spec.rows[1][1], chosen | {"generated_users": {"auc": 0.8, **base}}),
    ]:
        folder = run_dir(tmp_path, spec, row, 1)
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text(dump_config(build_config([*spec.common, *overrides])))
        (folder / "metrics.json").write_text(
            json.dumps({"test": metrics | {"cold_users": {"auc": 0.4, **base}}})
        )
    lines = write_table(spec, tmp_path).read_text().splitlines()
    assert lines[2] == (
        f"| run | seeds | AUC per impression | MRR | nDCG@5 | nDCG@10 | GAUC per user | hit@5 | {metric_label('f1@0.5')} "
        "| impressions | AUC per impression on cold users | their impressions "
        "| AUC per impression on users with generated items | their impressions | AUC per impression vs plain |"
    )
    assert lines[4] == (
        "| plain | 1 | 0.5000 | 0.3000 | 0.4000 | 0.4500 | — | — | — | 10 | 0.4000 | 10 | — | — | +0.00% |"
    )
    # a metric whose name holds a dot (f1@0.5) is found, not taken for a slice
    assert lines[5].startswith("| chosen | 1 | 0.6000 | — | — | — | 0.5500 | 0.7000 | 0.6500 |")
    assert lines[5].endswith("| 0.8000 | 10 | +20.00% |")
