from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import f1_score, label_ranking_average_precision_score, log_loss, roc_auc_score

from oncerec.config.loader import build_config
from oncerec.errors import ConfigError, DataError
from oncerec.eval.leaderboard import read_leaderboard, score_files, write_predictions, write_truth
from oncerec.eval.metrics import (
    DEFAULT_METRICS,
    TIES,
    evaluate_groups,
    group_ranks,
    metric_label,
    metric_names,
    table_metrics,
)

LABELS_A = [0, 1, 0, 1, 0, 0]
SCORES_A = [0.1, 0.9, 0.8, 0.3, 0.2, 0.05]
LABELS_B = [1, 0, 0]
SCORES_B = [0.2, 0.5, 0.1]


# Straightforward per-impression references, written like the official MIND evaluate.py.
def ref_mrr(y: np.ndarray, s: np.ndarray) -> float:
    y_sorted = y[np.argsort(s)[::-1]]
    return float(np.sum(y_sorted / (np.arange(len(y)) + 1)) / np.sum(y))


def ref_dcg(y: np.ndarray, s: np.ndarray, k: int) -> float:
    y_sorted = y[np.argsort(s)[::-1][:k]]
    return float(np.sum((2**y_sorted - 1) / np.log2(np.arange(len(y_sorted)) + 2)))


def ref_ndcg(y: np.ndarray, s: np.ndarray, k: int) -> float:
    return ref_dcg(y, s, k) / ref_dcg(y, y, k)


def ref_rank(s: np.ndarray) -> np.ndarray:
    """Strict 1-based rank, earlier candidate first among ties, by plain Python."""
    order = sorted(range(len(s)), key=lambda i: (-s[i], i))
    rank = np.empty(len(s), dtype=np.int64)
    for r, i in enumerate(order, start=1):
        rank[i] = r
    return rank


def reference(labels, scores, groups) -> dict[str, float | int]:
    per = {"auc": [], "mrr": [], "ndcg@5": [], "ndcg@10": []}
    skipped = 0
    for g in np.unique(groups):
        mask = groups == g
        y = labels[mask].astype(np.float64)
        s = 1.0 / ref_rank(scores[mask])
        if y.sum() in (0, len(y)):
            skipped += 1
            continue
        per["auc"].append(roc_auc_score(y, s))
        per["mrr"].append(ref_mrr(y, s))
        per["ndcg@5"].append(ref_ndcg(y, s, 5))
        per["ndcg@10"].append(ref_ndcg(y, s, 10))
    out: dict[str, float | int] = {k: float(np.mean(v)) for k, v in per.items()}
    out["groups"] = len(per["auc"])
    out["skipped"] = skipped
    return out


def random_data(seed: int = 0, n_groups: int = 300):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 41, n_groups)
    # Large, unsorted impression ids.
    groups = np.repeat(rng.choice(10**12, n_groups, replace=False), sizes)
    rate = np.repeat(rng.uniform(0, 0.6, n_groups), sizes)
    labels = (rng.random(len(groups)) < rate).astype(np.int64)
    # Make sure both kinds of degenerate groups occur.
    labels[: sizes[0]] = 0
    labels[sizes[0] : sizes[0] + sizes[1]] = 1
    scores = np.round(rng.normal(size=len(groups)), 1)  # heavy ties
    return labels, scores, groups, sizes


def test_check_vectors_per_group_and_mean():
    a = evaluate_groups(LABELS_A, SCORES_A, [7] * 6)
    assert a["auc"] == pytest.approx(0.875, abs=1e-4)
    assert a["mrr"] == pytest.approx(0.6667, abs=1e-4)
    assert a["ndcg@5"] == pytest.approx(0.9197, abs=1e-4)
    assert a["ndcg@10"] == pytest.approx(0.9197, abs=1e-4)
    b = evaluate_groups(LABELS_B, SCORES_B, [3] * 3)
    assert b["auc"] == pytest.approx(0.5, abs=1e-4)
    assert b["mrr"] == pytest.approx(0.5, abs=1e-4)
    assert b["ndcg@5"] == pytest.approx(0.6309, abs=1e-4)
    both = evaluate_groups(LABELS_A + LABELS_B, SCORES_A + SCORES_B, [7] * 6 + [3] * 3)
    assert both["auc"] == pytest.approx(0.6875, abs=1e-4)
    assert both["mrr"] == pytest.approx(0.5833, abs=1e-4)
    assert both["ndcg@5"] == pytest.approx(0.7753, abs=1e-4)
    assert both["ndcg@10"] == pytest.approx(0.7753, abs=1e-4)
    assert (both["groups"], both["skipped"], both["rows"]) == (2, 0, 9)


def test_group_ranks_break_ties_by_row_order():
    scores = np.array([0.5, 0.9, 0.5, 0.1, 0.5, 0.9, 0.2])
    groups = np.array([1, 1, 2, 1, 1, 2, 2])
    assert group_ranks(scores, groups).tolist() == [2, 1, 2, 4, 3, 1, 3]
    rng = np.random.default_rng(1)
    s = np.round(rng.normal(size=50), 0)
    assert np.array_equal(group_ranks(s, np.zeros(50, dtype=int)), ref_rank(s))


def test_ties_use_strict_ranking():
    # All scores equal: the first candidate is ranked first, as the official scorer sees it via 1/rank.
    m = evaluate_groups([1, 0, 0], [0.0, 0.0, 0.0], [1, 1, 1])
    assert (m["auc"], m["mrr"], m["ndcg@5"]) == (1.0, 1.0, 1.0)
    m = evaluate_groups([0, 0, 1], [0.0, 0.0, 0.0], [1, 1, 1])
    assert m["auc"] == 0.0
    assert m["mrr"] == pytest.approx(1 / 3)


def test_random_groups_match_reference():
    labels, scores, groups, sizes = random_data()
    got = evaluate_groups(labels, scores, groups)
    want = reference(labels, scores, groups)
    for key in ("auc", "mrr", "ndcg@5", "ndcg@10"):
        assert got[key] == pytest.approx(want[key], abs=1e-9), key
    assert got["skipped"] == want["skipped"] >= 2
    assert got["groups"] + got["skipped"] == len(sizes)
    assert got["rows"] == len(labels)


def test_label_dtypes_are_equivalent():
    labels, scores, groups, _ = random_data(seed=2, n_groups=40)
    base = evaluate_groups(labels, scores, groups)
    assert evaluate_groups(labels.astype(bool), scores, groups) == base
    assert evaluate_groups(labels.astype(np.float32), scores, groups) == base


def test_global_auc_and_logloss_match_sklearn():
    labels, scores, groups, _ = random_data(seed=3)
    got = evaluate_groups(labels, scores, groups)
    assert got["global_auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    probs = 1.0 / (1.0 + np.exp(-scores))
    assert got["logloss"] == pytest.approx(log_loss(labels, probs), abs=1e-9)


def test_logloss_is_stable_for_extreme_logits():
    m = evaluate_groups([1, 0, 1, 0], [800.0, -800.0, -800.0, 800.0], [1, 1, 2, 2])
    # Two rows are right with near-zero loss, two are wrong by 800 nats each.
    assert m["logloss"] == pytest.approx(400.0)


def interleave(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A row order that mixes the groups but keeps each group's rows (candidates) in their order."""
    slots = np.argsort(groups[rng.permutation(len(groups))], kind="stable")
    order = np.empty(len(groups), dtype=np.int64)
    order[slots] = np.argsort(groups, kind="stable")
    return order


def test_interleaved_rows_give_same_result():
    labels, scores, groups, _ = random_data(seed=4)
    order = interleave(groups, np.random.default_rng(5))
    assert (np.diff(groups[order]) != 0).sum() > 10 * len(np.unique(groups))
    contiguous = evaluate_groups(labels, scores, groups)
    interleaved = evaluate_groups(labels[order], scores[order], groups[order])
    # Per-group metrics see identical sorted rows; pooled sums may round differently in another order.
    for key in ("auc", "mrr", "ndcg@5", "ndcg@10", "groups", "skipped", "rows"):
        assert interleaved[key] == contiguous[key], key
    for key in ("global_auc", "logloss"):
        assert interleaved[key] == pytest.approx(contiguous[key], abs=1e-12), key
    assert np.array_equal(group_ranks(scores[order], groups[order]), group_ranks(scores, groups)[order])


def csr(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Impression ids and offsets of contiguous groups."""
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    return groups[starts], np.r_[starts, len(groups)]


def test_leaderboard_round_trip_reproduces_metrics(tmp_path):
    labels, scores, groups, _ = random_data(seed=8)
    ids, offsets = csr(groups)
    ranks = group_ranks(scores, groups)
    write_predictions(tmp_path / "prediction.txt", ids, offsets, ranks)
    write_truth(tmp_path / "truth.txt", ids, offsets, labels.astype(bool))

    first = (tmp_path / "prediction.txt").read_text().split("\n")[0]
    n0 = offsets[1]
    assert first == f"{ids[0]} [{','.join(map(str, ranks[:n0]))}]"
    got_ids, got_offsets, got_ranks = read_leaderboard(tmp_path / "prediction.txt")
    assert np.array_equal(got_ids, ids) and np.array_equal(got_offsets, offsets)
    assert np.array_equal(got_ranks, ranks)
    assert sorted(tmp_path.iterdir()) == [tmp_path / "prediction.txt", tmp_path / "truth.txt"]

    want = evaluate_groups(labels, scores, groups)
    got = score_files(tmp_path / "prediction.txt", tmp_path / "truth.txt")
    assert "logloss" not in got and "global_auc" not in got
    for key in ("auc", "mrr", "ndcg@5", "ndcg@10", "groups", "skipped", "rows"):
        assert got[key] == want[key], key


def test_score_files_joins_on_impression_id(tmp_path):
    labels, scores, groups, _ = random_data(seed=9, n_groups=30)
    ids, offsets = csr(groups)
    write_truth(tmp_path / "truth.txt", ids, offsets, labels)
    # Predictions listed in reverse impression order.
    ranks = group_ranks(scores, groups)
    rev = np.arange(len(ids))[::-1]
    rev_ranks = np.concatenate([ranks[offsets[j] : offsets[j + 1]] for j in rev])
    rev_offsets = np.r_[0, np.cumsum(np.diff(offsets)[rev])]
    write_predictions(tmp_path / "prediction.txt", ids[rev], rev_offsets, rev_ranks)
    got = score_files(tmp_path / "prediction.txt", tmp_path / "truth.txt")
    want = evaluate_groups(labels, scores, groups)
    for key in ("auc", "mrr", "ndcg@5", "ndcg@10"):
        assert got[key] == pytest.approx(want[key], abs=1e-12)


def write_pair(tmp_path, prediction: str, truth: str = "5 [1,0,0]\n9 [0,1]\n"):
    (tmp_path / "prediction.txt").write_text(prediction)
    (tmp_path / "truth.txt").write_text(truth)
    return tmp_path / "prediction.txt", tmp_path / "truth.txt"


@pytest.mark.parametrize(
    "bad_line",
    ["9 [1, 2]", "9 [1,2", "9\t[1,2]", "x9 [1,2]", "9 []", "9 [1,,2]", "", "9 [-1,2]", "9 [1,2] extra"],
)
def test_malformed_prediction_line_names_file_and_line(tmp_path, bad_line):
    pred, truth = write_pair(tmp_path, f"5 [1,2,3]\n{bad_line}\n")
    with pytest.raises(DataError) as err:
        score_files(pred, truth)
    assert err.value.line == 2
    assert err.value.path == str(pred)
    assert f"{pred}:2" in str(err.value)


def test_crlf_lines_are_read(tmp_path):
    pred, truth = write_pair(tmp_path, "5 [1,2,3]\r\n9 [2,1]\r\n")
    assert score_files(pred, truth)["auc"] == 1.0


@pytest.mark.parametrize(
    ("prediction", "where", "line", "names"),
    [
        ("5 [1,2,3]\n9 [2,1,3]\n", "prediction", 2, "impression 9"),
        ("5 [1,2,3]\n7 [2,1]\n", "prediction", 2, "impression 7"),
        ("5 [1,2,3]\n", "prediction", None, "impression 9"),
        ("5 [1,2,3]\n5 [1,2,3]\n", "prediction", 2, "impression 5"),
        ("5 [1,0,3]\n9 [2,1]\n", "prediction", 1, "ranks [1, 0, 3] are not a permutation of 1..3"),
        # tied ranks would let the scorer's order break the ties: only a permutation of 1..n is a ranking
        ("5 [1,1,1]\n9 [2,1]\n", "prediction", 1, "ranks [1, 1, 1] are not a permutation of 1..3"),
        ("5 [1,2,3]\n9 [1,3]\n", "prediction", 2, "ranks [1, 3] are not a permutation of 1..2"),
    ],
)
def test_mismatched_predictions_raise(tmp_path, prediction, where, line, names):
    pred, truth = write_pair(tmp_path, prediction)
    with pytest.raises(DataError) as err:
        score_files(pred, truth)
    assert err.value.path == str(pred if where == "prediction" else truth)
    assert err.value.line == line
    assert names in str(err.value)


def test_bad_truth_label_raises(tmp_path):
    pred, truth = write_pair(tmp_path, "5 [1,2,3]\n9 [2,1]\n", truth="5 [1,0,0]\n9 [0,2]\n")
    with pytest.raises(DataError, match="label 2") as err:
        score_files(pred, truth)
    assert (err.value.path, err.value.line) == (str(truth), 2)


def test_writers_reject_inconsistent_offsets(tmp_path):
    with pytest.raises(ValueError):
        write_predictions(tmp_path / "p.txt", np.array([1, 2]), np.array([0, 2, 5]), np.arange(1, 5))
    with pytest.raises(ValueError):
        write_predictions(tmp_path / "p.txt", np.array([1, 2]), np.array([0, 0, 2]), np.arange(1, 3))
    with pytest.raises(ValueError):
        write_truth(tmp_path / "t.txt", np.array([1]), np.array([0, 2]), np.array([0, 2]))
    assert list(tmp_path.iterdir()) == []


def test_skipped_groups_and_empty_input():
    m = evaluate_groups([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], [1, 1, 2, 2])
    assert (m["groups"], m["skipped"], m["rows"]) == (0, 2, 4)
    assert np.isnan(m["auc"]) and np.isnan(m["mrr"])
    assert m["global_auc"] == 1.0
    m = evaluate_groups(np.zeros(0), np.zeros(0), np.zeros(0, dtype=int))
    assert (m["groups"], m["skipped"], m["rows"]) == (0, 0, 0)
    every = ["auc", "gauc", "global_auc", "mrr", "lrap", "logloss", "ndcg@3", "hit@3", "recall@3", "f1@0.5"]
    for ties in TIES:
        m = evaluate_groups(np.zeros(0), np.zeros(0), np.zeros(0, int), every, np.zeros(0, int), ties)
        assert all(np.isnan(m[name]) for name in every) and m["users"] == 0


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="0/1"):
        evaluate_groups([0, 2], [0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="finite"):
        evaluate_groups([0, 1], [0.1, np.nan], [1, 1])
    with pytest.raises(ValueError, match="length"):
        evaluate_groups([0, 1], [0.1], [1, 1])


# --- every metric of `exp.metrics`, against per-group references ------------------------------------------

CHOSEN = [
    "auc",
    "gauc",
    "mrr",
    "lrap",
    "ndcg@1",
    "ndcg@3",
    "ndcg@10",
    "hit@1",
    "hit@3",
    "recall@2",
    "recall@10",
]


def strict_metrics(y_ranked: np.ndarray) -> dict[str, float]:
    """Every per-group metric of one group whose labels are listed best-ranked first, by the textbook formulas
    (sklearn where it has them: AUC and LRAP on strictly decreasing scores)."""
    n = len(y_ranked)
    scores = -np.arange(n, dtype=np.float64)
    out = {
        "auc": roc_auc_score(y_ranked, scores),
        "mrr": ref_mrr(y_ranked, scores),
        "lrap": label_ranking_average_precision_score([y_ranked], [scores]),
    }
    for k in (1, 3, 10):
        out[f"ndcg@{k}"] = ref_ndcg(y_ranked, scores, k)
        out[f"hit@{k}"] = float(y_ranked[:k].any())
    for k in (2, 10):
        out[f"recall@{k}"] = float(y_ranked[:k].sum() / y_ranked.sum())
    return out


def per_group_mean(labels, scores, groups, reduce) -> dict[str, float]:
    """Mean over the groups with both labels of reduce(y, s) (a dict of metrics), one group at a time."""
    per: dict[str, list[float]] = {}
    for g in np.unique(groups):
        y, s = labels[groups == g].astype(np.float64), scores[groups == g]
        if 0 < y.sum() < len(y):
            for name, value in reduce(y, s).items():
                per.setdefault(name, []).append(value)
    return {name: float(np.mean(v)) for name, v in per.items()}


def by_position(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    return strict_metrics(y[np.argsort(ref_rank(s))])


def over_tied_orders(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    """The mean of the strict metrics over every order of the tied rows (each order equally likely)."""
    blocks = [np.flatnonzero(s == v) for v in np.unique(s)[::-1]]
    results = [
        strict_metrics(y[np.concatenate(order)])
        for order in itertools.product(*(itertools.permutations(b) for b in blocks))
    ]
    return {name: float(np.mean([r[name] for r in results])) for name in results[0]}


def users_of(groups: np.ndarray, seed: int) -> np.ndarray:
    """A user for every group (several groups each), repeated on the group's rows."""
    ids, inverse = np.unique(groups, return_inverse=True)
    return np.random.default_rng(seed).integers(0, max(len(ids) // 3, 1), len(ids))[inverse]


def test_every_metric_matches_the_reference_with_position_ties():
    labels, scores, groups, _ = random_data(seed=11)
    users = users_of(groups, seed=12)
    got = evaluate_groups(labels, scores, groups, CHOSEN, users)
    want = per_group_mean(labels, scores, groups, by_position)
    for name in CHOSEN[2:]:
        assert got[name] == pytest.approx(want[name], abs=1e-12), name
    assert got["auc"] == pytest.approx(want["auc"], abs=1e-12)
    # gauc: the user's impressions pooled, ties broken by row order within the pool, averaged over users
    assert got["gauc"] == pytest.approx(per_group_mean(labels, scores, users, by_position)["auc"], abs=1e-12)
    assert got["users"] == sum(0 < labels[users == u].sum() < (users == u).sum() for u in np.unique(users))
    assert list(got) == [*CHOSEN, "groups", "skipped", "rows", "users"]


def test_average_ties_are_the_expected_metrics_over_tied_orders():
    rng = np.random.default_rng(13)
    sizes = rng.integers(2, 7, 150)
    groups = np.repeat(np.arange(150), sizes)
    labels = (rng.random(len(groups)) < 0.4).astype(np.int64)
    scores = rng.integers(0, 3, len(groups)).astype(np.float64)  # three values: nearly every row tied
    users = users_of(groups, seed=14)
    got = evaluate_groups(labels, scores, groups, CHOSEN, users, ties="average")
    want = per_group_mean(labels, scores, groups, over_tied_orders)
    for name in CHOSEN[2:]:
        assert got[name] == pytest.approx(want[name], abs=1e-12), name
    # for AUC that expectation is sklearn's: a tied pair counts one half
    sklearn_auc = per_group_mean(labels, scores, groups, lambda y, s: {"auc": roc_auc_score(y, s)})
    assert got["auc"] == pytest.approx(want["auc"], abs=1e-12)
    assert got["auc"] == pytest.approx(sklearn_auc["auc"], abs=1e-12)
    by_user = per_group_mean(labels, scores, users, lambda y, s: {"auc": roc_auc_score(y, s)})
    assert got["gauc"] == pytest.approx(by_user["auc"], abs=1e-12)
    # the position rule differs on these ties; without ties both rules agree
    assert evaluate_groups(labels, scores, groups, ["auc"])["auc"] != pytest.approx(got["auc"])
    distinct = rng.permutation(len(groups)).astype(np.float64)
    position = evaluate_groups(labels, distinct, groups, CHOSEN, users)
    average = evaluate_groups(labels, distinct, groups, CHOSEN, users, ties="average")
    for name in CHOSEN:
        assert average[name] == pytest.approx(position[name], abs=1e-12), name


def test_f1_thresholds_the_sigmoid_of_the_score():
    labels, scores, groups, _ = random_data(seed=15)
    for threshold in (0.0, 0.3, 0.5, 0.9):
        got = evaluate_groups(labels, scores, groups, [f"f1@{threshold}"])[f"f1@{threshold:g}"]
        predicted = 1.0 / (1.0 + np.exp(-scores)) >= threshold
        assert got == pytest.approx(f1_score(labels, predicted), abs=1e-12), threshold
    # no click and none predicted: undefined (null in metrics.json), not sklearn's 0
    assert np.isnan(evaluate_groups([0, 0], [-5.0, -6.0], [1, 1], ["f1@0.5"])["f1@0.5"])


def test_the_default_metrics_are_the_ones_reported_before_the_choice():
    labels, scores, groups, _ = random_data(seed=16)
    m = evaluate_groups(labels, scores, groups)
    assert list(m) == [*DEFAULT_METRICS, "groups", "skipped", "rows"]
    assert build_config([]).exp.metrics == list(DEFAULT_METRICS)
    assert table_metrics(DEFAULT_METRICS) == ["auc", "mrr", "ndcg@5", "ndcg@10"]
    assert table_metrics(["gauc", "logloss"]) == ["gauc", "logloss"]


def test_metric_names_are_checked_and_spelled_one_way():
    assert metric_names(["AUC", "nDCG@05", "f1@0.50", "hit@1"]) == ["auc", "ndcg@5", "f1@0.5", "hit@1"]
    assert [metric_label(n) for n in ("auc", "gauc", "global_auc", "ndcg@5")] == [
        "AUC per impression",
        "GAUC per user",
        "AUC pooled",
        "nDCG@5",
    ]
    for bad in ("bleu", "ndcg", "ndcg@0", "hit@x", "f1@2", "f1@nan", "mrr@3"):
        with pytest.raises(ValueError, match=r"valid: auc, gauc, .*ndcg@K.*f1@T"):
            metric_names([bad])
    with pytest.raises(ValueError, match="listed twice"):
        metric_names(["ndcg@5", "NDCG@5"])
    with pytest.raises(ValueError, match="gauc groups rows by user"):
        evaluate_groups([0, 1], [0.1, 0.2], [1, 1], ["gauc"])
    with pytest.raises(ValueError, match="ties"):
        evaluate_groups([0, 1], [0.1, 0.2], [1, 1], ties="random")


def test_an_unknown_metric_is_a_config_error_listing_the_valid_ones():
    with pytest.raises(ConfigError, match=r"exp.metrics.*unknown metric `bleu`.*recall@K.*f1@T"):
        build_config(["exp.metrics=[auc,bleu]"])
    with pytest.raises(ConfigError, match=r"exp.metric `auc` selects the best checkpoint.*exp.metrics"):
        build_config(["exp.metrics=[gauc,mrr]"])
    cfg = build_config(["exp.metrics=[auc,gauc,mrr,ndcg@3,hit@5,recall@10,lrap]", "exp.metric=ndcg@3"])
    assert cfg.exp.metrics == ["auc", "gauc", "mrr", "ndcg@3", "hit@5", "recall@10", "lrap"]
