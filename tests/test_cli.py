from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SMALL

from oncerec.cli import main


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "oncerec.cli", *args], capture_output=True, text=True)


def test_prepare_prints_statistics_and_writes_dataset(mind_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "ds"
    assert main(["prepare", str(mind_dir), "--out", str(out), "--quiet", "data.history_len=5"]) == 0
    text = capsys.readouterr().out
    assert "impressions" in text and "lines/s" in text and "peak memory" in text
    stats = json.loads((out / "stats.json").read_text())
    assert stats["splits"]["train"]["impressions"] == 3
    assert json.loads((out / "dataset.json").read_text())["history_len"] == 5


@pytest.mark.integration
def test_bad_input_is_one_clear_line_and_exit_code_2(tmp_path: Path):
    raw = tmp_path / "raw"
    (raw / "train").mkdir(parents=True)
    done = _run("prepare", str(raw), "--quiet")
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: ") and "missing split folder `dev/`" in done.stderr
    assert "Traceback" not in done.stderr
    done = _run("train", "model=nrms", "exp.lr=fast")
    assert done.returncode == 2 and "`exp.lr`" in done.stderr and "Traceback" not in done.stderr


def test_demo_data_command_is_deterministic(tmp_path: Path):
    for name in ("a", "b"):
        assert main(["demo-data", str(tmp_path / name), "--scale", "tiny", "--seed", "5", "--quiet"]) == 0
    for f in ("train/behaviors.tsv", "dev/news.tsv", "dev/oracle.tsv"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_score_command_reads_leaderboard_files(tmp_path: Path):
    (tmp_path / "prediction.txt").write_text("1 [2,1,3]\n2 [1,2]\n")
    (tmp_path / "truth.txt").write_text("1 [0,1,0]\n2 [0,1]\n")
    done = _run("score", str(tmp_path / "prediction.txt"), str(tmp_path / "truth.txt"))
    result = json.loads(done.stdout)
    assert result["auc"] == 0.5 and result["groups"] == 2
    (tmp_path / "prediction.txt").write_text("1 [2,1,3]\n2 [1 2]\n")
    done = _run("score", str(tmp_path / "prediction.txt"), str(tmp_path / "truth.txt"))
    assert done.returncode == 2 and "prediction.txt:2" in done.stderr


@pytest.mark.integration
def test_train_reports_the_chosen_metrics_and_compare_tables_them(tmp_path: Path, capsys):
    common = ["data=demo-tiny", "model=naml", "exp=quick", *SMALL, "exp.max_steps=1", "--quiet"]
    chosen = ["exp.metrics=[gauc,mrr,hit@3,f1@0.5,logloss]", "exp.metric=gauc"]
    assert main(["train", *common, f"exp.out_dir={tmp_path / 'a'}"]) == 0
    capsys.readouterr()
    assert main(["train", *common, *chosen, f"exp.out_dir={tmp_path / 'b'}"]) == 0
    printed = capsys.readouterr().out.splitlines()
    header = next(line for line in printed if line.startswith("| split "))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        *("split", "GAUC per user", "MRR", "hit@3", "F1@0.5", "logloss", "impressions"),
        *(
            "GAUC per user on new items",
            "their impressions",
            "GAUC per user on cold users",
            "their impressions",
        ),
    ]
    assert printed[printed.index(header) + 2].startswith("| valid ")  # padded Markdown: aligned columns
    assert len({len(line) for line in printed[printed.index(header) :][:4]}) == 1
    saved = json.loads((tmp_path / "b" / "metrics.json").read_text())
    test = saved["test"]
    assert list(test)[:5] == ["gauc", "mrr", "hit@3", "f1@0.5", "logloss"] and "auc" not in test
    assert test["users"] > 0 and {"gauc", "hit@3", "impressions", "rows", "max_history"} <= set(
        test["cold_users"]
    )
    report = (tmp_path / "b" / "report.md").read_text()
    assert "| split | GAUC per user | MRR | hit@3 | F1@0.5 | logloss | impressions |" in report
    assert "Cold users: impressions whose history has at most" in report
    # a saved run evaluates again to the same numbers, slices included
    assert main(["evaluate", str(tmp_path / "b"), "--split", "valid", "test"]) == 0
    assert json.loads(capsys.readouterr().out) == saved

    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "`test` split of 2 runs"
    assert lines[2] == (
        "| run | model | item | layer | AUC per impression | MRR | nDCG@5 | nDCG@10 | GAUC per user | hit@3 "
        "| F1@0.5 | logloss | impressions | AUC per impression on new items | their impressions "
        "| AUC per impression on cold users | their impressions |"
    )
    a, b = (line.strip("| ").split(" | ") for line in lines[4:6])
    assert lines[7].startswith("Cold users:")  # the notes under the table
    assert a[0] == "a" and a[8] == "—" and a[4] != "—"  # run a: no gauc; run b: no per-impression AUC
    assert b[0] == "b" and b[4] == "—" and b[5] != "—" and b[8] != "—"
    assert a[12] == b[12] and a[14] == b[14]  # the same impressions and slices
