"""Full-ranking evaluation (`exp.full_ranking`): the top-K metrics against hand-computed values, the whole
path against a brute-force ranking of every item for every user (one user at a time, textbook formulas), the
history's exclusion, block sizes, and end to end on the demo data (train, report.md, evaluate, compare)."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SMALL

from oncerec import inference
from oncerec.config.loader import build_config
from oncerec.data.dataset import Dataset, resolve_dataset
from oncerec.errors import ConfigError
from oncerec.eval.metrics import evaluate_top_k
from oncerec.models.recommender import Recommender
from oncerec.training.build import build_recommender
from oncerec.training.full_ranking import full_ranking_metrics, held_out

NAMES = ["recall@1", "recall@10", "ndcg@5", "ndcg@20", "hit@3"]


@pytest.fixture(scope="module")
def tiny() -> Dataset:
    return Dataset(resolve_dataset(build_config(["data=demo-tiny"]).data, progress=False))


def test_top_k_metrics_by_hand():
    # user 0: 2 held-out items, at ranks 1 and 3; user 1: 3 held out, none in the top 3
    found = [[True, False, True], [False, False, False]]
    m = evaluate_top_k(found, [2, 3], ["recall@2", "recall@3", "ndcg@3", "hit@1", "hit@3"])
    assert m["recall@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["recall@3"] == pytest.approx((2 / 2 + 0) / 2)
    ideal = 1 + 1 / math.log2(3)  # two held-out items: the first two ranks
    assert m["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4)) / ideal / 2)
    assert m["hit@1"] == pytest.approx(0.5) and m["hit@3"] == pytest.approx(0.5)
    assert m["users"] == 2
    # a top K of held-out items only is still a user averaged over (the rest of the catalogue is not)
    assert evaluate_top_k([[True, True]], [2], ["recall@2", "ndcg@2"]) == {
        "recall@2": 1.0,
        "ndcg@2": 1.0,
        "users": 1,
    }
    with pytest.raises(ValueError, match="not deeper"):
        evaluate_top_k(found, [2, 3], ["recall@5"])
    with pytest.raises(ValueError, match="at least as many"):
        evaluate_top_k(found, [1, 3], ["recall@2"])


def test_only_top_k_metrics_are_accepted():
    assert build_config(["exp.full_ranking=[Recall@10,ndcg@05]"]).exp.full_ranking == ["recall@10", "ndcg@5"]
    assert build_config([]).exp.full_ranking == []
    with pytest.raises(ConfigError, match="recall@K, ndcg@K and hit@K only"):
        build_config(["exp.full_ranking=[recall@10,auc]"])
    with pytest.raises(ConfigError, match="unknown metric"):
        build_config(["exp.full_ranking=[recall@x]"])


def _model(ds: Dataset, preset: str) -> Recommender:
    cfg = build_config([f"model={preset}", *SMALL])
    torch.manual_seed(0)
    return build_recommender(cfg.model, cfg.embed, ds).eval()


@torch.no_grad()
def brute_force(model: Recommender, ds: Dataset, split, names: list[str]) -> dict:
    """Every user alone: the history of their earliest impression, every item scored through model.score,
    the history's items dropped, a full sort, the textbook recall / nDCG / hit."""
    vectors = inference.encode_items(model, 64, "cpu")
    items, lengths, users_of_row = ds.histories
    user_of_imp = np.asarray(split.user)
    per_user = {name: [] for name in names}
    for user in np.unique(user_of_imp):
        imps = np.flatnonzero(user_of_imp == user)
        first = min(imps, key=lambda i: (split.time[i], i))
        row = split.history[first]
        hist = [int(x) for x in items[row, : lengths[row]]]
        clicked = {
            int(split.item[r])
            for i in imps
            for r in range(split.offsets[i], split.offsets[i + 1])
            if split.label[r] == 1
        }
        targets = clicked - set(hist)
        if not targets:
            continue
        h = torch.tensor([hist or [0]])
        rep = model.encode_users(
            model.user_inputs(vectors[h]), h > 0, torch.tensor([int(users_of_row[row])]), h
        )
        every = torch.arange(1, len(vectors)).unsqueeze(0)
        scores = model.score(rep, vectors[every], every)[0].numpy()
        ranked = [i + 1 for i in np.argsort(-scores, kind="stable") if i + 1 not in hist]
        for name in names:
            kind, k = name.split("@")
            k = int(k)
            top = [item in targets for item in ranked[:k]]
            if kind == "recall":
                per_user[name].append(sum(top) / len(targets))
            elif kind == "hit":
                per_user[name].append(float(any(top)))
            else:
                dcg = sum(1 / math.log2(r + 2) for r, t in enumerate(top) if t)
                ideal = sum(1 / math.log2(r + 2) for r in range(min(len(targets), k)))
                per_user[name].append(dcg / ideal)
    return {name: float(np.mean(v)) for name, v in per_user.items()} | {"users": len(per_user[names[0]])}


@pytest.mark.integration
@pytest.mark.parametrize("preset", ["nrms", "dnn", "miner", "din"])
def test_matches_brute_force_ranking_of_every_item(tiny: Dataset, preset: str, monkeypatch):
    """The inner product (nrms) and the predictors scored pair by pair (a CTR head, MINER's several interest
    vectors, DIN's attention over the clicks), with block sizes that change nothing."""
    model = _model(tiny, preset)
    split = tiny.split("valid")
    want = brute_force(model, tiny, split, NAMES)
    got = full_ranking_metrics(model, tiny, split, NAMES, 64, "cpu")
    assert {k: got[f"full/{k}"] for k in want} == pytest.approx(want, abs=1e-12)
    assert got["full/items"] == tiny.num_items - 1 and got["full/users"] == want["users"] > 20
    assert want["recall@10"] > 0  # something to compare
    monkeypatch.setattr(inference, "HEAD_PAIRS", 7)  # a predictor call: a few items at a time
    for batch in (1, 5):  # users per block
        assert full_ranking_metrics(model, tiny, split, NAMES, batch, "cpu") == got


def test_held_out_items_and_history_exclusion(tiny: Dataset, monkeypatch):
    """Scores that put the user's history first, their held-out items next: excluded from the ranking, the
    history leaves the held-out items on top (recall and nDCG 1 wherever the top K has room for them)."""
    split = tiny.split("valid")
    users, history, targets, skipped = held_out(tiny, split)
    assert len(users) + skipped == len(np.unique(split.user)) and skipped > 0
    items, lengths, _ = tiny.histories
    for h, t in zip(history, targets, strict=True):
        assert len(t) and not set(t) & set(items[h, : lengths[h]].tolist())
    assert max(lengths[history]) > 5  # histories that would fill a top 5

    order = iter(range(len(users)))

    def scores(model, reps, vectors):
        out = torch.rand(len(reps), len(vectors))
        for row in range(len(reps)):
            u = next(order)
            out[row, torch.from_numpy(targets[u].astype(np.int64))] = 5.0
            out[row, torch.from_numpy(items[history[u], : lengths[history[u]]].astype(np.int64))] = 10.0
        return out

    monkeypatch.setattr(inference, "score_every_item", scores)
    got = full_ranking_metrics(_model(tiny, "nrms"), tiny, split, ["recall@5", "ndcg@5"], 16, "cpu")
    assert got["full/ndcg@5"] == pytest.approx(1.0)
    assert got["full/recall@5"] == pytest.approx(np.mean([min(len(t), 5) / len(t) for t in targets]))


def test_a_split_without_clicks_ranks_nobody(tiny: Dataset):
    split = tiny.split("valid")
    unclicked = dataclasses.replace(split, label=np.zeros_like(split.label))
    got = full_ranking_metrics(_model(tiny, "nrms"), tiny, unclicked, ["recall@10"], 64, "cpu")
    assert math.isnan(got["full/recall@10"]) and got["full/users"] == 0
    assert got["full/skipped"] == len(np.unique(split.user))


def _cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "oncerec.cli", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.integration
def test_end_to_end_on_demo_small(tmp_path: Path):
    run = tmp_path / "run"
    _cli(
        "train",
        "data=demo-small",
        "model=nrms",
        "exp=quick",
        *SMALL,
        "exp.max_steps=2",
        "exp.full_ranking=[recall@10,ndcg@10]",
        f"exp.out_dir={run}",
        "--quiet",
    )
    metrics = json.loads((run / "metrics.json").read_text())
    for split in ("valid", "test"):
        full = {k: v for k, v in metrics[split].items() if k.startswith("full/")}
        assert list(full) == ["full/recall@10", "full/ndcg@10", "full/users", "full/items", "full/skipped"]
        assert 0 <= full["full/recall@10"] <= 1 and full["full/users"] > 100
    report = (run / "report.md").read_text()
    assert "recall@10 of all items" in report and "users ranked" in report
    # evaluate recomputes them (the run's choice), or the ones asked for
    again = json.loads(_cli("evaluate", str(run)))["test"]
    assert {k: again[k] for k in again if k.startswith("full/")} == {
        k: v for k, v in metrics["test"].items() if k.startswith("full/")
    }
    asked = json.loads(_cli("evaluate", str(run), "--full-ranking", "hit@100"))["test"]
    assert [k for k in asked if k.startswith("full/")] == [
        "full/hit@100",
        "full/users",
        "full/items",
        "full/skipped",
    ]
    table = _cli("compare", str(run))
    assert "nDCG@10 of all items" in table.splitlines()[2]


def test_experiment_table_has_the_full_ranking_columns(tmp_path: Path):
    from oncerec.config.loader import dump_config
    from oncerec.experiment import load_spec, run_dir, write_table

    spec_file = tmp_path / "full.yaml"
    spec_file.write_text("name: full\nseeds: [1]\ncommon: [data=demo-tiny]\naxes: {run: {a: [], b: []}}\n")
    spec = load_spec(str(spec_file))
    base = {"auc": 0.5, "mrr": 0.3, "ndcg@5": 0.4, "ndcg@10": 0.45, "groups": 10, "skipped": 0, "rows": 50}
    full = {"full/recall@10": 0.25, "full/users": 8, "full/items": 300, "full/skipped": 1}
    for row, metrics in [("a", base | full), ("b", base)]:  # b: evaluated without full ranking
        folder = run_dir(tmp_path, spec, row, 1)
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text(dump_config(build_config(spec.common)))
        (folder / "metrics.json").write_text(json.dumps({"test": metrics | {"impressions": 10}}))
    lines = write_table(spec, tmp_path).read_text().splitlines()
    assert lines[2].endswith("| nDCG@10 | impressions | recall@10 of all items | users ranked |")
    assert lines[4].endswith("| 10 | 0.2500 | 8 |") and lines[5].endswith("| 10 | — | — |")
