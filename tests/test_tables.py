"""The one renderer of tables of metrics (eval/tables.py): its columns, cells, Markdown, and that the commands
that print or write such tables go through it."""

from __future__ import annotations

import math
from pathlib import Path

from oncerec.eval.metrics import DEFAULT_METRICS
from oncerec.eval.tables import metric_columns, metric_table

SRC = Path(__file__).resolve().parents[1] / "src" / "oncerec"

BASE = {"auc": 0.6, "mrr": 0.3, "ndcg@5": 0.4, "ndcg@10": 0.45, "impressions": 1234, "groups": 1200}


def test_columns_are_the_union_of_the_choices_then_slices_then_full_ranking():
    a = BASE | {"cold_users": {"auc": 0.5, "groups": 300, "max_history": 2}}
    b = {"gauc": 0.7, "hit@5": 0.8, "impressions": 1234, "full/recall@10": 0.2, "full/users": 90}
    cols = metric_columns([DEFAULT_METRICS, ["gauc", "hit@5"]], [a, b])
    assert [c.key for c in cols] == [
        *("auc", "mrr", "ndcg@5", "ndcg@10", "gauc", "hit@5", "impressions"),
        *("cold_users.auc", "cold_users.groups", "full/recall@10", "full/users"),
    ]
    assert [c.header for c in cols][-4:] == [
        "AUC per impression on cold users",
        "their impressions",
        "recall@10 of all items",
        "users ranked",
    ]
    assert [c.count for c in cols] == [False] * 6 + [True, False, True, False, True]


def test_cells_one_run_seeds_sizes_and_undefined():
    one, _ = metric_table(["split"], [(["test"], [BASE | {"mrr": None}])], [DEFAULT_METRICS])
    assert one.rows == [["test", "0.6000", "—", "0.4000", "0.4500", "1,234"]]
    seeds = [BASE, BASE | {"auc": 0.8, "mrr": math.nan, "impressions": 1300}]
    table, _ = metric_table(["run", "seeds"], [(["r", "2"], seeds)], [DEFAULT_METRICS], seeds=True)
    # mean ± sample std over the seeds where the metric is defined (one defined value: no spread to show); a
    # size that differs over seeds: its range
    assert table.rows == [
        ["r", "2", "0.7000 ± 0.1414", "0.3000", "0.4000 ± 0.0000", "0.4500 ± 0.0000", "1,234–1,300"]
    ]


def test_markdown_aligns_labels_left_and_numbers_right():
    rows = [(["valid"], [BASE]), (["test"], [BASE | {"impressions": 99}])]
    table, _ = metric_table(["split"], rows, [DEFAULT_METRICS])
    plain = table.markdown().splitlines()
    assert plain[0] == "| split | AUC per impression | MRR | nDCG@5 | nDCG@10 | impressions |"
    assert plain[1] == "|---|---:|---:|---:|---:|---:|"
    assert plain[3] == "| test | 0.6000 | 0.3000 | 0.4000 | 0.4500 | 99 |"
    padded = table.markdown(pad=True).splitlines()
    assert len({len(line) for line in padded}) == 1  # every column straight
    assert padded[3].startswith("| test  |") and padded[3].endswith("|          99 |")


def test_the_notes_say_what_the_slice_and_full_ranking_columns_hold():
    m = BASE | {
        "cold_users": {"auc": 0.5, "groups": 3, "max_history": 2},
        "full/hit@10": 0.1,
        "full/items": 500,
    }
    table, _ = metric_table(["split"], [(["test"], [m])], [DEFAULT_METRICS])
    assert table.notes == [
        "Cold users: impressions whose history has at most 2 clicks.",
        "Of all items: each user's clicked items of the split ranked among all 500 items, the user's history "
        "excluded.",
    ]
    assert table.markdown().endswith("\n\n" + "\n".join(table.notes))


def test_no_command_renders_a_table_of_metrics_by_hand():
    """`train`'s table (cli/train.py), the demo's, compare's, experiment.py and training/report.py go through
    metric_table (or named_table, its one-row-per-name form): none of them, and no command, writes a Markdown
    rule or joins cells itself."""
    tables = [
        SRC / "cli" / "train.py",
        SRC / "training" / "demo.py",
        SRC / "eval" / "compare.py",
        SRC / "experiment.py",
        SRC / "training" / "report.py",
    ]
    for path in [*tables, *(SRC / "cli").glob("*.py")]:
        text = path.read_text()
        assert "|---" not in text and '" | ".join' not in text, path
    for path in tables:
        assert "metric_table(" in path.read_text() or "named_table(" in path.read_text(), path
