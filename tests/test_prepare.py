from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path

import numpy as np
import pytest
from conftest import write_mind

from oncerec.config.loader import build_config
from oncerec.data.dataset import Dataset, resolve_dataset
from oncerec.data.formats.mind import parse_time
from oncerec.data.prepare import prepare
from oncerec.errors import DataError, OncerecError


def _prepare(raw: Path, out: Path, *overrides: str) -> Dataset:
    cfg = build_config([f"data.source={raw}", *overrides]).data
    prepare(raw, cfg, out, progress=False)
    return Dataset(out)


def _ids(ds: Dataset, split: str) -> list[list[str]]:
    s = ds.split(split)
    names = ds.items_table.column("id").to_pylist()
    return [[names[i] for i in s.item[s.offsets[j] : s.offsets[j + 1]]] for j in range(s.num_impressions)]


def test_reader_hand_written_lines(mind_dir: Path, tmp_path: Path):
    ds = _prepare(mind_dir, tmp_path / "ds")
    assert ds.split_names == ["train", "valid", "test"]
    items = ds.items_table.to_pydict()
    assert items["id"][:6] == ["<pad>", "N1", "N2", "N3", "N4", "N5"]
    assert items["title"][3] == "Cr\u00e8me br\u00fbl\u00e9e in 10 minutes \U0001f370"  # unicode kept
    assert items["abstract"][2] == ""  # empty abstract
    assert items["category"][5] == "travel"  # news only in dev is merged in

    train = ds.split("train")
    assert list(train.imp_id) == [1, 2, 3]
    assert _ids(ds, "train") == [["N2", "N4", "N5"], ["N1", "N2"], ["N5", "N2", "N3"]]
    assert list(train.label) == [0, 1, 0, 1, 0, 1, 0, 0]
    assert train.time[0] == parse_time("11/11/2019 9:05:12 AM")
    hist, length, user = ds.histories
    assert length[train.history[1]] == 0  # U2's empty history
    assert train.history[0] == train.history[2]  # U1's history is stored once
    assert list(hist[train.history[0], :2]) == [1, 3]

    test = ds.split("test")
    assert not test.labelled and list(test.label) == [-1, -1, -1]
    assert ds.split("valid").labelled

    words = ds.vocab("word")
    ids, lens = ds.tokens("word", "title")
    assert [words[t] for t in ids[1, : lens[1]]] == [
        "lakers",
        "win",
        "the",
        "\u201c",
        "big",
        "\u201d",
        "game",
    ]
    assert lens[0] == 0 and ids.dtype == np.int32
    # "Ten beaches to visit" is dev-only: unknown words map to <unk> (=1), vocabulary is built on train
    assert ids[5, 0] == 1
    stats = json.loads((tmp_path / "ds" / "stats.json").read_text())
    assert stats["splits"]["train"]["clicks"] == 3
    assert stats["token_lengths"]["word"]["title"]["max"] == 7
    assert stats["missing"]["candidates"]["occurrences"] == 0


def test_parse_time_matches_strptime():
    from datetime import datetime

    for s in [
        "11/15/2019 10:22:32 AM",
        "11/15/2019 12:00:01 AM",
        "11/15/2019 12:30:00 PM",
        "1/2/2020 11:59:59 PM",
    ]:
        expected = datetime.strptime(s, "%m/%d/%Y %I:%M:%S %p").replace(tzinfo=UTC).timestamp()
        assert parse_time(s) == expected


def test_crlf_gives_same_dataset(tmp_path: Path):
    a = _prepare(write_mind(tmp_path / "lf"), tmp_path / "a")
    b = _prepare(write_mind(tmp_path / "crlf", crlf=True), tmp_path / "b")
    assert a.items_table.to_pydict()["url"] == b.items_table.to_pydict()["url"]
    for split in a.split_names:
        assert np.array_equal(a.split(split).item, b.split(split).item)


def test_once_split_halves_dev(tmp_path: Path):
    raw = write_mind(tmp_path / "raw", test=False)
    ds = _prepare(raw, tmp_path / "ds", "data.split=once", "data.split_seed=7")
    valid, test = ds.split("valid"), ds.split("test")
    assert valid.num_impressions == 2 and test.num_impressions == 2
    assert sorted([*valid.imp_id, *test.imp_id]) == [10, 11, 12, 13]
    # each impression keeps its own candidates and labels
    by_id = {10: ["N2", "N5"], 11: ["N4", "N2", "N5"], 12: ["N2", "N4"], 13: ["N5", "N4"]}
    for name in ("valid", "test"):
        for imp, cands in zip(ds.split(name).imp_id, _ids(ds, name), strict=True):
            assert by_id[int(imp)] == cands
    again = _prepare(raw, tmp_path / "ds2", "data.split=once", "data.split_seed=7")
    assert list(again.split("valid").imp_id) == list(valid.imp_id)


@pytest.mark.parametrize(
    ("split_file", "line", "lineno", "needle"),
    [
        ("dev_behaviors", "10\tU1\t11/15/2019 10:22:32 AM\tN1", 1, "expected 5 tab-separated columns"),
        ("dev_behaviors", "10\tU1\t11/15/2019 10:22:32 AM\t\tN1-x N2-1", 1, "bad impression token 'N1-x'"),
        ("dev_behaviors", "10\tU1\t2019-11-15 10:22\t\tN1-0 N2-1", 1, "bad time"),
        ("dev_behaviors", "ten\tU1\t11/15/2019 10:22:32 AM\t\tN1-0 N2-1", 1, "not a non-negative integer"),
        # the rule of `oncerec score`: a negative id or one of 19+ digits is refused at prepare time
        ("dev_behaviors", "-5\tU1\t11/15/2019 10:22:32 AM\t\tN1-0 N2-1", 1, "at most 18 digits"),
        ("dev_behaviors", "1" * 19 + "\tU1\t11/15/2019 10:22:32 AM\t\tN1-0 N2-1", 1, "at most 18 digits"),
        ("dev_behaviors", "1" * 23 + "\tU1\t11/15/2019 10:22:32 AM\t\tN1-0 N2-1", 1, "at most 18 digits"),
        ("train_news", "N1\tsports\tbasketball\tonly four", 1, "expected 8 tab-separated columns"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, split_file, line, lineno, needle):
    raw = write_mind(tmp_path / "raw", **{split_file: [line]})
    out = tmp_path / "ds"
    with pytest.raises(DataError) as err:
        _prepare(raw, out)
    assert needle in str(err.value)
    assert err.value.line == lineno and err.value.path.endswith(split_file.replace("_", "/") + ".tsv")
    assert not out.exists() and not list(tmp_path.glob(".ds.tmp*"))  # nothing written


def test_bad_line_in_the_middle_reports_its_number(tmp_path: Path):
    from conftest import BEHAVIORS_TRAIN

    raw = write_mind(
        tmp_path / "raw", train_behaviors=[*BEHAVIORS_TRAIN, "9\tU9\t11/11/2019 9:05:12 AM\t\tN1-2"]
    )
    with pytest.raises(DataError, match=r"train/behaviors.tsv:4 \(field impressions\)"):
        _prepare(raw, tmp_path / "ds")


def test_non_utf8_empty_file_missing_split(tmp_path: Path):
    raw = write_mind(tmp_path / "raw")
    (raw / "dev" / "news.tsv").write_bytes(b"N9\tx\ty\tcaf\xe9\t\t\t[]\t[]\n")
    with pytest.raises(DataError, match=r"dev/news.tsv:1: not valid UTF-8"):
        _prepare(raw, tmp_path / "a")
    raw = write_mind(tmp_path / "raw2")
    (raw / "train" / "behaviors.tsv").write_bytes(b"")
    with pytest.raises(DataError, match="file is empty"):
        _prepare(raw, tmp_path / "b")
    raw = write_mind(tmp_path / "raw3")
    import shutil

    shutil.rmtree(raw / "dev")
    with pytest.raises(DataError, match="missing split folder `dev/`"):
        _prepare(raw, tmp_path / "c")


def test_missing_ids_counted_or_strict(tmp_path: Path):
    raw = write_mind(tmp_path / "raw", dev_behaviors=["10\tU1\t11/15/2019 10:22:32 AM\tN1 N404\tN2-0 N405-1"])
    ds = _prepare(raw, tmp_path / "ds")
    miss = ds.stats["missing"]
    assert miss["history"] == {"occurrences": 1, "distinct": 1, "examples": ["N404"]}
    assert miss["candidates"]["examples"] == ["N405"]
    assert ds.split("valid").item[1] == 0  # kept as a row with empty content
    with pytest.raises(DataError, match=r"dev/behaviors.tsv:1 \(field history\): news id N404"):
        _prepare(raw, tmp_path / "ds2", "data.strict=true")


def test_refuses_non_empty_out(tmp_path: Path, mind_dir: Path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OncerecError, match="not empty"):
        _prepare(mind_dir, out)
    assert (out / "keep.txt").read_text() == "mine"


def test_history_truncated_to_most_recent(tmp_path: Path, mind_dir: Path):
    ds = _prepare(mind_dir, tmp_path / "ds", "data.history_len=1")
    hist, length, _ = ds.histories
    v = ds.split("valid")
    assert hist.shape[1] == 1 and hist[v.history[0], 0] == 4  # U1's most recent click N4


def test_hf_tokenizer_field(tmp_path: Path, mind_dir: Path):
    pytest.importorskip("transformers")
    ds = _prepare(mind_dir, tmp_path / "ds", "data.tokenizers=[word,minilm]")
    ids, lens = ds.tokens("minilm", "title")
    from transformers import AutoTokenizer

    from oncerec.lm.packaged import resolve_model_path

    tok = AutoTokenizer.from_pretrained(str(resolve_model_path("minilm")))
    assert list(ids[1, : lens[1]]) == tok("Lakers win the \u201cbig\u201d game")["input_ids"]
    assert ds.stats["vocab"]["minilm"] == len(tok)


def test_resolve_caches_by_content(tmp_path: Path, mind_dir: Path):
    cfg = build_config([f"data={mind_dir}"]).data
    first = resolve_dataset(cfg, progress=False)
    assert resolve_dataset(cfg, progress=False) == first
    with open(mind_dir / "dev" / "behaviors.tsv", "a") as f:
        f.write("14\tU9\t11/15/2019 3:00:00 PM\t\tN5-1 N4-0\n")
    changed = resolve_dataset(cfg, progress=False)
    assert changed != first and Dataset(changed).split("valid").num_impressions == 5
    other = resolve_dataset(build_config([f"data={mind_dir}", "data.history_len=3"]).data, progress=False)
    assert other not in (first, changed)
