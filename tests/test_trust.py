"""Defects that silently changed results or touched a user's files, each held here (issue "Results you can
trust"). Every test fails on the code before its fix."""

from __future__ import annotations

import gzip
import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import NEWS_DEV, SMALL, write_mind

from oncerec.config.loader import build_config
from oncerec.data.dataset import Dataset, resolve_dataset
from oncerec.data.formats.goodreads import json_lines
from oncerec.data.prepare import prepare
from oncerec.data.word_vectors import read_glove
from oncerec.errors import ConfigError, OncerecError
from oncerec.eval.leaderboard import score_files
from oncerec.eval.metrics import evaluate_groups, metrics_json
from oncerec.experiment import Spec, load_spec, run_experiment
from oncerec.training.pipeline import train
from oncerec.training.session import load_run

QUIET = {"progress": False}


def _prepare(raw: Path, out: Path, *overrides: str) -> Dataset:
    cfg = build_config([f"data.source={raw}", "data.name=t", *overrides]).data
    prepare(raw, cfg, out, **QUIET)
    return Dataset(out)


@pytest.fixture(scope="module")
def tiny_run(trained) -> Path:
    """A trained run on demo-tiny (two steps): enough weights for evaluate / recommend."""
    return trained[0]


# --- silently wrong results ------------------------------------------------------------------------------


def test_key_overrides_apply_after_group_presets_whatever_their_order():
    before = build_config(["data=demo-tiny", "model.hidden_size=64", "model=naml", "exp.lr=0.01", "exp=demo"])
    after = build_config(["data=demo-tiny", "model=naml", "exp=demo", "model.hidden_size=64", "exp.lr=0.01"])
    assert before.model.hidden_size == after.model.hidden_size == 64
    assert before.model.item.name == "cnn" and before.exp.lr == 0.01
    assert before.model_dump() == after.model_dump()
    # the packaged once-demo spec: every row picks its own `model=` preset; its common sizes reach the runs
    spec = load_spec("once-demo")
    common = build_config(spec.common)
    for row, overrides in spec.rows:
        resolved = build_config(
            [*spec.common, *(o.replace("{dir}", "/x") for o in overrides if "{dir}" not in o)]
        )
        assert resolved.model.hidden_size == common.model.hidden_size, row


def test_a_text_key_is_taken_as_written_not_parsed_as_yaml():
    # `book title: {title}` is a YAML mapping; `123` a YAML number: both are strings to a text field
    cfg = build_config(["data.prompt=book title: {title}", "data.name=123", "exp.lr=1e-4"])
    assert cfg.data.prompt == "book title: {title}" and cfg.data.name == "123"
    assert cfg.exp.lr == 1e-4  # other keys are still parsed


@pytest.mark.integration
def test_experiment_reuses_a_finished_run_only_with_the_same_config(tmp_path: Path, caplog):
    spec = Spec(
        name="reuse",
        seeds=[1],
        common=["data=demo-tiny", "exp=quick", *SMALL, "exp.max_steps=1"],
        axes={"model": {"pool": ["model.item=pool", "model.user=pool"]}},
    )
    caplog.set_level(logging.INFO, logger="oncerec")
    run_experiment(spec, tmp_path, [])
    run_experiment(spec, tmp_path, [])
    assert "finished, skipped" in caplog.messages[-1]
    with pytest.raises(ConfigError, match=r"exp\.lr: 0\.001 -> 0\.05") as err:
        run_experiment(spec, tmp_path, ["exp.lr=0.05"])
    assert "remove that folder" in str(err.value)
    # a bad override is found before anything trains
    with pytest.raises(ConfigError, match="exp.nope"):
        run_experiment(spec, tmp_path / "other", ["exp.nope=1"])
    assert not (tmp_path / "other" / "reuse" / "pool").exists()


def test_categories_unseen_in_training_map_to_the_unknown_id(tmp_path: Path):
    # N6 (category weather) is only in dev: its category embedding would never train
    raw = write_mind(
        tmp_path / "raw",
        dev_news=[*NEWS_DEV, "N6\tweather\tstorms\tRain all week\t\t\t[]\t[]"],
        dev_behaviors=["10\tU1\t11/15/2019 10:22:32 AM\tN1 N3\tN6-1 N2-0"],
    )
    ds = _prepare(raw, tmp_path / "ds")
    ids = ds.items_table.column("id").to_pylist()
    category, vocab = np.asarray(ds.categorical("category")), ds.vocab("category")
    assert (
        category[ids.index("N6")] == 0 and "weather" not in vocab and "storms" not in ds.vocab("subcategory")
    )
    assert vocab[category[ids.index("N1")]] == "sports"  # seen in train: its own id
    assert ds.items_table.column("category").to_pylist()[ids.index("N6")] == "weather"  # text kept


def test_metrics_json_is_strict_json_with_null_for_undefined_metrics():
    m = evaluate_groups(np.array([1, 1, 1]), np.array([0.1, 0.2, 0.3]), np.array([0, 0, 0]))
    assert math.isnan(m["auc"]) and m["skipped"] == 1
    text = metrics_json({"test": m})
    parsed = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert parsed["test"]["auc"] is None and parsed["test"]["skipped"] == 1


# --- data lost or leaked ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stray", ["notes.txt", "log.jsonl"])
def test_a_folder_that_is_not_a_run_is_never_written_into(tmp_path: Path, stray: str):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / stray).write_text("the user's own file\n")
    cfg = build_config(["data=demo-tiny", "model=naml", "exp=quick", *SMALL, f"exp.out_dir={folder}"])
    with pytest.raises(OncerecError, match="is not empty and is not an oncerec run"):
        train(cfg, **QUIET)
    assert sorted(p.name for p in folder.iterdir()) == [stray]
    assert (folder / stray).read_text() == "the user's own file\n"


def test_a_byte_order_mark_is_stripped_from_mind_and_csv_files(tmp_path: Path):
    raw = write_mind(tmp_path / "raw")
    news = raw / "train" / "news.tsv"
    news.write_bytes(b"\xef\xbb\xbf" + news.read_bytes())
    ds = _prepare(raw, tmp_path / "ds")
    ids = ds.items_table.column("id").to_pylist()
    assert "N1" in ids and not any(i.startswith("\ufeff") for i in ids)
    assert ds.num_items == _prepare(write_mind(tmp_path / "plain"), tmp_path / "ds2").num_items

    generic = tmp_path / "g"
    generic.mkdir()
    (generic / "items.csv").write_bytes("\ufeffid,title\na,A\nb,B\nc,C\n".encode())
    rows = "".join(f"u{u},{i},{t}\n" for u in range(3) for t, i in enumerate("abc"))
    (generic / "interactions.csv").write_bytes(("\ufeffuser,item,time\n" + rows).encode())
    loose = ["data.user_min_positives=1", "data.item_min_interactions=1", "data.warm_history=[1,1]"]
    ds = _prepare(generic, tmp_path / "gds", "data.format=generic", *loose)
    assert sorted(ds.items_table.column("id").to_pylist()[1:]) == ["a", "b", "c"]


def test_a_byte_order_mark_is_stripped_from_glove_goodreads_and_leaderboard_files(tmp_path: Path):
    glove = tmp_path / "glove.txt"
    glove.write_bytes("\ufeffthe 0.5 0.25\nnews 1 2\n".encode())
    table, found = read_glove(glove, ["<pad>", "<unk>", "the", "news"], np.random.default_rng(0))
    assert found == 2 and table[2].tolist() == [0.5, 0.25]
    lines = tmp_path / "interactions.json.gz"
    with gzip.open(lines, "wt", encoding="utf-8") as f:
        f.write('\ufeff{"user_id": "u1"}\n{"user_id": "u2"}\n')
    assert [obj["user_id"] for _, obj in json_lines(lines, progress=False)] == ["u1", "u2"]
    (tmp_path / "prediction.txt").write_bytes("\ufeff1 [2,1]\n".encode())
    (tmp_path / "truth.txt").write_text("1 [0,1]\n")
    assert score_files(tmp_path / "prediction.txt", tmp_path / "truth.txt")["auc"] == 1.0


def test_evaluate_on_other_data_refuses_another_vocabulary_of_the_same_size(tiny_run: Path, tmp_path: Path):
    tiny = resolve_dataset(build_config(["data=demo-tiny"]).data, **QUIET)
    other = tmp_path / "renamed"
    shutil.copytree(tiny, other)
    words = json.loads((other / "vocab" / "word.json").read_text())
    words[5] = "zzzz"  # same size, another word behind id 5
    (other / "vocab" / "word.json").write_text(json.dumps(words))
    with pytest.raises(OncerecError, match="its word vocabulary differs"):
        load_run(tiny_run, data=str(other))
    assert load_run(tiny_run, data=str(tiny)).dataset.root == tiny  # the same vocabularies are fine


def test_new_items_are_scored_as_their_own_slice(tiny_run: Path):
    """metrics.json `cold_items`: the metrics over the candidates the training split never showed."""
    from oncerec.eval.slices import split_metrics

    metrics = json.loads((tiny_run / "metrics.json").read_text())
    ds = Dataset(resolve_dataset(build_config(["data=demo-tiny"]).data, **QUIET))
    train, test = ds.split("train"), ds.split("test")
    items, lengths, _ = ds.histories
    seen = set(np.asarray(train.item).tolist())
    for h in set(np.asarray(train.history).tolist()):
        seen |= set(items[h, : lengths[h]].tolist())
    cold = np.array([i not in seen for i in np.asarray(test.item)])
    assert 0 < cold.sum() < len(cold)
    assert ds.train_items.sum() == len(seen - {0})
    scores = np.random.default_rng(0).standard_normal(len(cold))
    labels = np.asarray(test.label)
    expected = evaluate_groups(labels[cold], scores[cold], test.row_impression[cold])
    impressions = len(np.unique(test.row_impression[cold]))  # with a new candidate
    assert split_metrics(test, scores, ds)["cold_items"] == expected | {"impressions": impressions}
    assert metrics["test"]["cold_items"]["rows"] == int(cold.sum())  # every run reports it


def test_cold_users_are_the_impressions_with_short_histories(tiny_run: Path):
    """metrics.json `cold_users`: the impressions whose history holds at most exp.cold_user_history clicks."""
    from oncerec.eval.slices import split_metrics

    ds = Dataset(resolve_dataset(build_config(["data=demo-tiny"]).data, **QUIET))
    test = ds.split("test")
    _, lengths, _ = ds.histories
    clicks = np.array([lengths[h] for h in np.asarray(test.history)])
    scores = np.random.default_rng(1).standard_normal(len(test.item))
    labels = np.asarray(test.label)
    for most in (8, 12):
        cold = clicks <= most
        assert 0 < cold.sum() < len(cold)
        rows = np.repeat(cold, np.diff(np.asarray(test.offsets)))
        want = evaluate_groups(labels[rows], scores[rows], test.row_impression[rows])
        exp = build_config([f"exp.cold_user_history={most}"]).exp
        got = split_metrics(test, scores, ds, exp)["cold_users"]
        assert got == want | {"impressions": int(cold.sum()), "max_history": most}
    saved = json.loads((tiny_run / "metrics.json").read_text())["test"]["cold_users"]
    assert saved["max_history"] == 5 and saved["impressions"] == int((clicks <= 5).sum())
