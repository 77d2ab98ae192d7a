from __future__ import annotations

import hashlib
import json
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path

import pytest

from oncerec.data.dataset import demo_raw_folder
from oncerec.data.demo import SCALES, write_demo_mind
from oncerec.data.formats.mind import read_behaviors, read_news, split_folders
from oncerec.errors import OncerecError
from oncerec.paths import publish_dir

TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo") / "tiny"
    return out, write_demo_mind(out, "tiny", seed=0)


def _lines(path: Path) -> list[list[str]]:
    text = path.read_bytes().decode("utf-8")
    assert text.endswith("\n") and "\r" not in text
    return [line.split("\t") for line in text[:-1].split("\n")]


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_tiny_is_raw_mind(tiny):
    out, _ = tiny
    assert {p.name for p in out.iterdir()} == {"train", "dev", "meta.json"}
    assert {p.name for p in (out / "train").iterdir()} == {
        "news.tsv",
        "behaviors.tsv",
        "entity_embedding.vec",
    }
    empty_history = empty_abstract = False
    days = {"train": {f"11/{d:02d}/2019" for d in range(9, 15)}, "dev": {"11/15/2019"}}
    for split in ("train", "dev"):
        news = _lines(out / split / "news.tsv")
        assert all(len(cols) == 8 for cols in news)
        news_ids = {cols[0] for cols in news}
        assert len(news_ids) == len(news)
        empty_abstract |= any(cols[4] == "" for cols in news)
        assert all(cols[7] == "[]" for cols in news)  # title entities: tests/test_models.py

        behaviors = _lines(out / split / "behaviors.tsv")
        assert all(len(cols) == 5 for cols in behaviors)
        assert [int(cols[0]) for cols in behaviors] == list(range(1, len(behaviors) + 1))
        for imp_id, user, when, history, impressions in behaviors:
            assert user.startswith("U")
            assert datetime.strptime(when, TIME_FORMAT).strftime("%m/%d/%Y") in days[split]
            candidates = [tok.rsplit("-", 1) for tok in impressions.split(" ")]
            assert 5 <= len(candidates) <= 50
            assert len({nid for nid, _ in candidates}) == len(candidates)
            assert {label for _, label in candidates} <= {"0", "1"}
            assert any(label == "1" for _, label in candidates), imp_id
            empty_history |= history == ""
            assert set(history.split()) | {nid for nid, _ in candidates} <= news_ids
    assert empty_history and empty_abstract


def test_histories_are_snapshots_per_split(tiny):
    out, _ = tiny
    for split in ("train", "dev"):
        seen: dict[str, str] = {}
        for cols in _lines(out / split / "behaviors.tsv"):
            assert seen.setdefault(cols[1], cols[3]) == cols[3]


def test_oracle_matches_dev_candidates(tiny):
    out, summary = tiny
    candidates = [
        (cols[0], tok.rsplit("-", 1)[0])
        for cols in _lines(out / "dev" / "behaviors.tsv")
        for tok in cols[4].split(" ")
    ]
    oracle = _lines(out / "dev" / "oracle.tsv")
    assert [(imp, nid) for imp, nid, _ in oracle] == candidates
    assert all(0.0 < float(p) < 1.0 and len(p.split(".")[1]) == 6 for _, _, p in oracle)
    assert summary["dev"]["candidates"] == len(candidates)


def test_real_reader_accepts_it(tiny):
    out, summary = tiny
    folders = split_folders(out)
    for split in ("train", "dev"):
        assert len(list(read_news(folders[split] / "news.tsv"))) == summary[split]["news"]
        assert len(list(read_behaviors(folders[split] / "behaviors.tsv"))) == summary[split]["impressions"]


def test_summary_and_signal(tiny):
    out, summary = tiny
    assert json.loads((out / "meta.json").read_text(encoding="utf-8")) == summary
    assert summary["scale"] == "tiny" and summary["seed"] == 0
    target = SCALES["tiny"]
    assert 0.7 * target.train_impressions < summary["train"]["impressions"] < 1.3 * target.train_impressions
    assert 0.7 * target.dev_impressions < summary["dev"]["impressions"] < 1.3 * target.dev_impressions
    for split in ("train", "dev"):
        assert 0.05 <= summary[split]["ctr"] <= 0.2
    assert 0.65 < summary["dev"]["oracle_auc"] < 0.9
    assert 0.5 < summary["dev"]["popularity_auc"] < summary["dev"]["oracle_auc"]


def test_deterministic_per_seed(tiny, tmp_path):
    out, _ = tiny
    write_demo_mind(tmp_path / "again", "tiny", seed=0)
    write_demo_mind(tmp_path / "other", "tiny", seed=1)
    assert _digests(tmp_path / "again") == _digests(out)
    other = _digests(tmp_path / "other")
    assert other.keys() == _digests(out).keys()
    assert all(other[name] != digest for name, digest in _digests(out).items())


def test_empty_out_dir_is_used(tmp_path):
    (tmp_path / "out").mkdir()
    write_demo_mind(tmp_path / "out", "tiny", seed=2)
    assert (tmp_path / "out" / "dev" / "oracle.tsv").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary directory left behind


def test_refuses_non_empty_out(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(OncerecError, match="already exists"):
        write_demo_mind(tmp_path / "out", "tiny")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def test_unknown_scale(tmp_path):
    with pytest.raises(OncerecError, match="tiny, small, medium, large"):
        write_demo_mind(tmp_path / "out", "huge")
    assert not (tmp_path / "out").exists()


@pytest.mark.integration
def test_concurrent_first_runs_both_succeed(tiny, tmp_path, monkeypatch):
    """Two processes asking for the same demo data at once (two first runs): both get the whole folder."""
    out, _ = tiny
    monkeypatch.setenv("ONCEREC_CACHE", str(tmp_path))
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        folders = [pool.submit(demo_raw_folder, "tiny", 0, False) for _ in range(2)]
        folders = [f.result() for f in folders]
    assert folders[0] == folders[1] and _digests(folders[0]) == _digests(out)
    assert [p.name for p in folders[0].parent.iterdir()] == [folders[0].name]  # no temporary folder left


def test_publish_dir_keeps_a_finished_folder(tmp_path):
    done, mine = tmp_path / "out", tmp_path / "mine"
    done.mkdir()
    (done / "meta.json").write_text("theirs")
    mine.mkdir()
    (mine / "meta.json").write_text("mine")
    publish_dir(mine, done, "meta.json")
    assert (done / "meta.json").read_text() == "theirs" and not mine.exists()
    (done / "meta.json").unlink()
    (done / "half.txt").write_text("")
    mine.mkdir()
    with pytest.raises(OSError):
        publish_dir(mine, done, "meta.json")  # an unfinished folder is not taken for a finished one


def test_fresh_words_reach_only_the_dev_days_new_items(tiny, tmp_path):
    """demo_fresh: the same clicks; the new items of the dev day use concept words no earlier item uses."""
    import re

    from oncerec.data.demo import vocabulary as v

    root, _ = tiny
    out = tmp_path / "fresh"
    summary = write_demo_mind(out, "tiny", seed=0, fresh=1.0)
    assert summary["fresh"]["items"] == summary["fresh"]["dev_day_items"] > 0
    for split in ("train", "dev"):  # users, impressions and labels are those of the data without the option
        assert (out / split / "behaviors.tsv").read_bytes() == (root / split / "behaviors.tsv").read_bytes()
    # words written only by a fresh synonym (not by an earlier synonym, a template, an audience, a name)
    everything_else = " ".join(
        [
            *(w for s in v.SEEN_WORDS for w in s),
            *v.TITLE_TEMPLATES,
            *v.ABSTRACT_SENTENCES,
            *(p for tone in v.TONE_PREFIXES for p in tone),
            *v.AUDIENCES.values(),
            *v.FIRST_NAMES,
            *v.LAST_NAMES,
            *v.PLACES,
        ]
    )
    known = set(re.findall(r"[\w']+", everything_else.lower()))
    fresh_only = {w for s in v.FRESH_WORDS for w in re.findall(r"[\w']+", " ".join(s).lower())} - known

    def words(rows) -> set[str]:
        return {w for r in rows for w in re.findall(r"[\w']+", f"{r[3]} {r[4]}".lower())}

    train = _lines(out / "train" / "news.tsv")
    train_ids = {r[0] for r in train}
    new = [r for r in _lines(out / "dev" / "news.tsv") if r[0] not in train_ids]
    assert fresh_only and not words(train) & fresh_only
    assert len(words(new) & fresh_only) > 20  # and the new items do use them
    with pytest.raises(OncerecError, match=r"fresh share must be in \[0, 1\]"):
        write_demo_mind(tmp_path / "bad", "tiny", fresh=1.5)
