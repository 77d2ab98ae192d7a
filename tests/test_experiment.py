"""The experiment runner: a grid of runs, skipping finished ones, and the results table."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from oncerec.errors import ConfigError
from oncerec.train.experiment import load_spec, run_experiment

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


def test_grid_runs_once_and_tabulates_mean_std_and_relative_change(tmp_path: Path):
    spec_file = tmp_path / "grid.yaml"
    spec_file.write_text(SPEC)
    spec = load_spec(str(spec_file))
    assert [r for r, _ in spec.rows] == ["pool/softmax", "pool/bce"]
    lines: list[str] = []
    table = run_experiment(load_spec(str(spec_file)), tmp_path / "out", [], log=lines.append)
    assert sum("->" in line for line in lines) == 4  # 2 rows x 2 seeds
    assert sum(line.startswith("setup:") for line in lines) == 1
    assert (tmp_path / "out" / "grid" / "raw" / "meta.json").is_file()  # {dir} is the experiment folder
    text = table.read_text()
    assert "| pool/softmax | 2 |" in text and "+0.00%" in text and "AUC vs pool/softmax" in text
    with open(table.parent / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == ["pool/softmax", "pool/bce"]
    assert 0 <= float(rows[1]["auc_mean"]) <= 1 and float(rows[0]["auc_std"]) >= 0
    lines.clear()
    run_experiment(load_spec(str(spec_file)), tmp_path / "out", [], log=lines.append)
    assert sum("skipped" in line for line in lines) == 4
    assert not any(line.startswith("setup:") for line in lines)  # its output exists: not run again


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
        run_experiment(spec, tmp_path / "out", [], log=lambda _: None)
    with pytest.raises(ConfigError, match="--source .*: no such folder"):
        run_experiment(spec, tmp_path / "out", [], log=lambda _: None, source=tmp_path / "absent")
    (tmp_path / "data").mkdir()
    # the setup ran with {source} filled in; the row's bad key fails before anything trains
    with pytest.raises(ConfigError, match="no_such_key"):
        run_experiment(spec, tmp_path / "out", [], log=lambda _: None, source=tmp_path / "data")
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
        run_experiment(spec, tmp_path / "out", ["exp.no_such_key=1"], log=lambda _: None, source=release)
    home = tmp_path / "out" / "once-goodreads"
    summ = Dataset(home / "genre" / "summ")
    prompt = summ.items_table.column("prompt").to_pylist()[1]
    assert prompt == "book title: Book number 0 description: A story about the number 0 and its friends."
    assert Dataset(home / "genre" / "profile").manifest["user_attributes"] == ["interest"]
    generated = Dataset(home / "genre" / "generate")
    assert generated.manifest["genre"]["generate"]["items"] == len(cold) - 1  # uid 0 has one book: no user
    assert len(UIDS) == len(HISTORIES) + 1
