from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
