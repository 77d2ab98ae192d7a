"""Readers of xMIND, PENS, EB-NeRD and Adressa: hand-written fixtures in each published format, prepared end to
end, each error naming its file, line (or Parquet row) and field, and one training step on each dataset."""

from __future__ import annotations

import gzip
import json
import logging
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write_mind

from oncerec.config.loader import build_config
from oncerec.data.dataset import Dataset
from oncerec.data.formats.mind import parse_time
from oncerec.data.prepare import prepare
from oncerec.data.tokenize import words
from oncerec.errors import ConfigError, DataError
from oncerec.training.pipeline import train


def _prepare(raw: Path, out: Path, fmt: str, *overrides: str) -> Dataset:
    cfg = build_config([f"data.format={fmt}", f"data.source={raw}", "data.name=t", *overrides]).data
    prepare(raw, cfg, out, progress=False)
    return Dataset(out)


def _impressions(ds: Dataset, split: str) -> list[tuple[int, str, list[str], dict[str, int]]]:
    """(impression id, user, history ids, {candidate id: label}) per impression."""
    ids = ds.items_table.column("id").to_pylist()
    users = ds.vocab("user")
    hist, lengths, _ = ds.histories
    s = ds.split(split)
    out = []
    for j in range(s.num_impressions):
        rows = slice(s.offsets[j], s.offsets[j + 1])
        h = s.history[j]
        cands = {ids[i]: int(y) for i, y in zip(s.item[rows], s.label[rows], strict=True)}
        out.append((int(s.imp_id[j]), users[s.user[j]], [ids[i] for i in hist[h, : lengths[h]]], cands))
    return out


def _item(ds: Dataset, item_id: str) -> dict:
    return next(r for r in ds.items_table.to_pylist() if r["id"] == item_id)


def _nothing_written(tmp_path: Path, name: str = "ds") -> bool:
    return not (tmp_path / name).exists() and not list(tmp_path.glob(f".{name}.tmp-*"))


# ---------------------------------------------------------------------------------------------------- xMIND


def write_xmind(root: Path, **files: list[str]) -> Path:
    """One language's folder as xMIND's download script lays it out; N5 (a dev news) is left untranslated."""
    files = {
        "xMINDsmall_train": [
            "N1\tLakers câștigă meciul „mare”\tO aruncare târzie decide.",
            "N2\tAcțiunile cresc pe măsură ce ratele scad\t",
            "N3\tCremă de zahăr ars în 10 minute\tSfaturi ușoare",
            "N4\tUnited remizează acasă\tFanii sunt nemulțumiți.",
        ],
        "xMINDsmall_dev": ["N2\tAcțiunile cresc pe măsură ce ratele scad\t", "N4\tUnited remizează acasă\t"],
    } | files
    for folder, lines in files.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / "news.tsv").write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")
    return root


def test_xmind_replaces_the_text_and_keeps_mind_impressions(tmp_path: Path, caplog):
    mind = write_mind(tmp_path / "mind")
    lang = write_xmind(tmp_path / "xMIND" / "ron")
    ds = _prepare(mind, tmp_path / "ds", "xmind", f"data.translations={lang}")
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    english = _prepare(mind, tmp_path / "en", "mind")
    # same users, impressions, labels, histories as MIND itself
    for split in ("train", "valid", "test"):
        assert _impressions(ds, split) == _impressions(english, split)
    n1 = _item(ds, "N1")
    assert (n1["title"], n1["abstract"]) == ("Lakers câștigă meciul „mare”", "O aruncare târzie decide.")
    assert (n1["category"], n1["subcategory"], n1["url"]) == ("sports", "basketball_nba", "https://x/N1")
    assert _item(ds, "N5")["title"] == "Ten beaches to visit"  # untranslated: MIND's English kept ...
    assert ds.stats["xmind"]["translated"] == 4
    assert ds.stats["xmind"]["untranslated_examples"] == ["N5"]  # ... counted, and reported
    assert any("1 news have no translation" in line for line in logged)
    # the word tokenizer reads the translated text (Unicode words, lowercased)
    vocab = ds.vocab("word")
    ids, lens = ds.tokens("word", "title")
    assert [vocab[t] for t in ids[1, : lens[1]]][:3] == ["lakers", "câștigă", "meciul"]
    with pytest.raises(DataError, match=r"dev/news.tsv: news id N5 has no translation in .*ron"):
        _prepare(mind, tmp_path / "strict", "xmind", f"data.translations={lang}", "data.strict=true")


def test_xmind_errors(tmp_path: Path):
    mind = write_mind(tmp_path / "mind")
    with pytest.raises(ConfigError, match=r"data.format=xmind needs data.translations"):
        _prepare(mind, tmp_path / "a", "xmind")
    bad = write_xmind(tmp_path / "bad", xMINDsmall_dev=["N2\tonly a title"])
    with pytest.raises(DataError, match=r"xMINDsmall_dev/news.tsv:1: expected 3 tab-separated columns"):
        _prepare(mind, tmp_path / "b", "xmind", f"data.translations={bad}")
    twice = write_xmind(tmp_path / "twice", xMINDsmall_dev=["N2\ta\t", "N2\tb\t"])
    with pytest.raises(DataError, match=r"xMINDsmall_dev/news.tsv:2 \(field nid\): news id N2 appears twice"):
        _prepare(mind, tmp_path / "c", "xmind", f"data.translations={twice}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no xMIND news: expected xMINDsmall_train/news.tsv"):
        _prepare(mind, tmp_path / "d", "xmind", f"data.translations={tmp_path / 'empty'}")
    assert _nothing_written(tmp_path, "b") and _nothing_written(tmp_path, "c")


def test_word_tokenizer_does_not_segment_unspaced_scripts():
    # why the README points Chinese, Japanese and Thai xMIND at a subword (language-model) tokenizer
    assert words("Aceste rețete sunt perfecte") == ["aceste", "rețete", "sunt", "perfecte"]
    assert words("北京今天下雨") == ["北京今天下雨"]


# ----------------------------------------------------------------------------------------------------- PENS

PENS_NEWS = [
    "News ID\tCategory\tTopic\tHeadline\tNews body\tTitle entity\tEntity content",
    "N1\tsports\tsoccer\tAtlanta United's lineup\tOnly five internationals allowed.\t{'Atlanta United': 'Q1'}\t{}",
    "N2\tnews\tpolitics\tSenate votes on the bill\tThe vote is close.\t{}\t{}",
    "N3\tlifestyle\thome\tTen tips for a tidy kitchen\tStart with the sink.\t{}\t{}",
    "N4\tsports\tbasketball\tFinals go to game seven\t\t{}\t{}",
    "N5\tfinance\tmarkets\tStocks rally\tRates fall.\t{}\t{}",
]
PENS_HEADER = "UserID\tClicknewsID\tdwelltime\texposure_time\tpos\tneg\tstart\tend\tdwelltime_pos"
PENS_TRAIN = [
    PENS_HEADER,
    "U1\tN1 N2\t30 12\t6/19/2019 5:10:01 AM#TAB#6/19/2019 5:12:00 AM\tN3\tN4 N5\t"
    "7/3/2019 6:43:49 AM\t7/3/2019 7:06:06 AM\t34",
    "U2\t\t\t\tN4 N5\tN1\t7/3/2019 8:00:00 AM\t7/3/2019 8:10:00 AM\t10 20",
    "U1\tN1 N2\t30 12\t6/19/2019 5:10:01 AM#TAB#6/19/2019 5:12:00 AM\tN5\tN2 N3 N4\t"
    "7/3/2019 9:00:00 PM\t7/3/2019 9:05:00 PM\t5",
]
PENS_VALID = [
    PENS_HEADER,
    "U3\tN2\t8\t6/20/2019 1:00:00 PM\tN1\tN3 N5\t7/4/2019 1:00:00 PM\t7/4/2019 1:01:00 PM\t9",
]


def write_pens(root: Path, **files: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    files = {"news": PENS_NEWS, "train": PENS_TRAIN, "valid": PENS_VALID} | files
    for name, lines in files.items():
        (root / f"{name}.tsv").write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")
    return root


def test_pens_impressions_news_and_shuffled_candidates(tmp_path: Path):
    ds = _prepare(write_pens(tmp_path / "pens"), tmp_path / "ds", "pens")
    assert ds.split_names == ["train", "valid"]
    train = _impressions(ds, "train")
    # impression id = line number (the header is line 1)
    assert [t[:3] for t in train] == [(2, "U1", ["N1", "N2"]), (3, "U2", []), (4, "U1", ["N1", "N2"])]
    assert train[0][3] == {"N3": 1, "N4": 0, "N5": 0}
    assert train[1][3] == {"N4": 1, "N5": 1, "N1": 0}
    assert ds.split("train").time[0] == parse_time("7/3/2019 6:43:49 AM")  # `start`
    assert _impressions(ds, "valid") == [(2, "U3", ["N2"], {"N1": 1, "N3": 0, "N5": 0})]
    n1 = _item(ds, "N1")
    assert (n1["category"], n1["subcategory"], n1["title"], n1["abstract"]) == (
        "sports",
        "soccer",
        "Atlanta United's lineup",
        "Only five internationals allowed.",
    )
    # PENS lists positives first: prepare shuffles each impression, deterministically
    s = ds.split("train")
    orders = [list(s.label[s.offsets[j] : s.offsets[j + 1]]) for j in range(s.num_impressions)]
    assert orders != [sorted(o, reverse=True) for o in orders]
    again = _prepare(write_pens(tmp_path / "pens"), tmp_path / "ds2", "pens")
    assert (again.split("train").item == s.item).all()
    # files without their header lines read the same
    plain = write_pens(tmp_path / "plain", news=PENS_NEWS[1:], train=PENS_TRAIN[1:], valid=PENS_VALID[1:])
    assert [t[3] for t in _impressions(_prepare(plain, tmp_path / "ds3", "pens"), "train")] == [
        t[3] for t in train
    ]
    # a header spelled otherwise (`NewsID`, `news_id`) is still a header
    spelled = write_pens(tmp_path / "spelled", news=["NewsID\tc\tt\th\tb\te\tx", *PENS_NEWS[1:]])
    assert "NewsID" not in _prepare(spelled, tmp_path / "ds5", "pens").items_table.column("id").to_pylist()
    # data.split=once halves valid.tsv into valid and test
    once = _prepare(write_pens(tmp_path / "pens"), tmp_path / "ds4", "pens", "data.split=once")
    assert once.split_names == ["train", "valid", "test"]


def _pens_line(**fields: str) -> str:
    cols = dict(zip(PENS_HEADER.split("\t"), PENS_TRAIN[2].split("\t"), strict=True)) | fields
    return "\t".join(cols.values())


@pytest.mark.parametrize(
    "files,message",
    [
        ({"train": [PENS_HEADER, "U1\tN1\tN2"]}, r"train.tsv:2: expected 9 tab-separated columns"),
        (
            {"train": [PENS_HEADER, _pens_line(start="2019-07-03 06:43")]},
            r"train.tsv:2 \(field start\): bad time",
        ),
        ({"valid": [PENS_HEADER, _pens_line(UserID="")]}, r"valid.tsv:2 \(field UserID\): empty user id"),
        ({"train": [PENS_HEADER, _pens_line(pos="", neg="")]}, r"train.tsv:2 \(field pos\): no candidates"),
        ({"news": [*PENS_NEWS, PENS_NEWS[2]]}, r"news.tsv:7 \(field News ID\): news id N2 appears twice"),
        (
            {"news": [PENS_NEWS[0], "N1\tsports\tsoccer\ttitle"]},
            r"news.tsv:2: expected 7 tab-separated columns",
        ),
    ],
)
def test_pens_errors_name_file_line_and_field(tmp_path: Path, files: dict, message: str):
    with pytest.raises(DataError, match=message):
        _prepare(write_pens(tmp_path / "pens", **files), tmp_path / "ds", "pens")
    assert _nothing_written(tmp_path)


def test_pens_missing_file_and_missing_ids(tmp_path: Path):
    raw = write_pens(tmp_path / "pens")
    (raw / "valid.tsv").unlink()
    with pytest.raises(DataError, match=r"valid.tsv: missing PENS file"):
        _prepare(raw, tmp_path / "a", "pens")
    raw = write_pens(tmp_path / "p2", train=[PENS_HEADER, _pens_line(ClicknewsID="N404 N1")])
    ds = _prepare(raw, tmp_path / "b", "pens")
    assert ds.stats["missing"]["history"]["examples"] == ["N404"]
    with pytest.raises(
        DataError, match=r"train.tsv:2 \(field ClicknewsID\): news id N404 is not in news.tsv"
    ):
        _prepare(raw, tmp_path / "c", "pens", "data.strict=true")


# -------------------------------------------------------------------------------------------------- EB-NeRD

T0 = datetime(2023, 5, 21, 21, 6, 50)


def _articles(**replace) -> pa.Table:
    cols = {
        "article_id": pa.array([3037230, 3044020, 3057622, 3073151, 3193383], pa.int32()),
        "title": ["Ishockey-spiller: Jeg troede jeg skulle dø", "Prins Harry tvunget til dna-test",
                  "Rådden kørsel på blå plader", "Mærsk-arvinger i livsfare", "Skød svigersøn gennem babydyne"],
        "subtitle": ["ISHOCKEY: Sebastian Harts", "Hoffet tvang Prins Harry", None, "FANGET I FLODBØLGEN", ""],
        "body": ["...", "...", "...", "...", "..."],
        "category_str": ["sport", "underholdning", "nyheder", "nyheder", "krimi"],
        "subcategory": pa.array([[196, 271], [], None, [198], [140]], pa.list_(pa.int16())),
        "url": [f"https://ekstrabladet.dk/{a}" for a in (3037230, 3044020, 3057622, 3073151, 3193383)],
        "published_time": pa.array([T0] * 5, pa.timestamp("us")),
    }  # fmt: skip
    return pa.table(cols | replace)


def _behaviors(rows: list[tuple], clicked: bool = True, **replace) -> pa.Table:
    """rows: (impression_id, user_id, seconds after T0, inview, clicked)."""
    from datetime import timedelta

    cols = {
        "impression_id": pa.array([r[0] for r in rows], pa.uint32()),
        "article_id": pa.array([None] * len(rows), pa.int32()),
        "impression_time": pa.array([T0 + timedelta(seconds=r[2]) for r in rows], pa.timestamp("us")),
        "read_time": pa.array([21.0] * len(rows), pa.float32()),
        "article_ids_inview": pa.array([r[3] for r in rows], pa.list_(pa.int32())),
        "user_id": pa.array([r[1] for r in rows], pa.uint32()),
    }
    if clicked:
        cols["article_ids_clicked"] = pa.array([r[4] for r in rows], pa.list_(pa.int32()))
    return pa.table(cols | replace)


def _history(users: dict[int, list[int]], **replace) -> pa.Table:
    cols = {
        "user_id": pa.array(list(users), pa.uint32()),
        "impression_time_fixed": pa.array(
            [[T0] * len(h) for h in users.values()], pa.list_(pa.timestamp("us"))
        ),
        "article_id_fixed": pa.array(list(users.values()), pa.list_(pa.int32())),
    }
    return pa.table(cols | replace)


A1, A2, A3, A4, A5 = 3037230, 3044020, 3057622, 3073151, 3193383
EB_TRAIN = [(48401, 13538, 0, [A3, A1, A2], [A1]), (48402, 58608, 60, [A4, A5], [A5]),
            (48403, 13538, 3600, [A5, A2, A4], [A2, A4])]  # fmt: skip
EB_VALID = [(152513, 13538, 86_400, [A1, A4, A3], [A3]), (152514, 95507, 86_500, [A2, A5], [A2])]


def write_ebnerd(root: Path, test: bool = False, **tables: pa.Table) -> Path:
    tables = {
        "articles": _articles(),
        "train/behaviors": _behaviors(EB_TRAIN),
        "train/history": _history({13538: [A1, A2], 58608: [A3]}),
        "validation/behaviors": _behaviors(EB_VALID),
        "validation/history": _history({13538: [A1, A2, A5], 95507: []}),
    } | tables
    if test:
        beyond = _behaviors(
            [(0, 1, 0, [A1, A2], []), (7, 13538, 90_000, [A4, A1], []), (0, 2, 0, [A5], [])], False
        )
        tables["test/behaviors"] = beyond.append_column("is_beyond_accuracy", pa.array([True, False, True]))
        tables["test/history"] = _history({13538: [A1]})
    for name, table in tables.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, root / f"{name}.parquet")
    return root


def test_ebnerd_behaviors_history_and_articles(tmp_path: Path):
    ds = _prepare(write_ebnerd(tmp_path / "eb", test=True), tmp_path / "ds", "ebnerd")
    assert ds.split_names == ["train", "valid", "test"]
    train = _impressions(ds, "train")
    a = [str(x) for x in (A1, A2, A3, A4, A5)]
    assert train == [
        (48401, "13538", [a[0], a[1]], {a[2]: 0, a[0]: 1, a[1]: 0}),
        (48402, "58608", [a[2]], {a[3]: 0, a[4]: 1}),
        (48403, "13538", [a[0], a[1]], {a[4]: 0, a[1]: 1, a[3]: 1}),
    ]
    # in-view order kept (Ekstra Bladet shuffled it); the time is epoch seconds (UTC)
    s = ds.split("train")
    assert list(s.item[s.offsets[0] : s.offsets[1]]) == [ds.items_table.column("id").to_pylist().index(x)
                                                         for x in (a[2], a[0], a[1])]  # fmt: skip
    valid = _impressions(ds, "valid")
    assert valid[0][2] == [a[0], a[1], a[4]] and valid[1][2] == []  # the validation split's own history
    test = ds.split("test")
    assert not test.labelled and list(test.imp_id) == [7]  # beyond-accuracy rows skipped ...
    assert ds.stats["ebnerd"]["test"] == {"beyond_accuracy_rows_skipped": 2}  # ... and counted
    item = _item(ds, a[0])
    assert (item["title"], item["abstract"], item["category"], item["subcategory"], item["url"]) == (
        "Ishockey-spiller: Jeg troede jeg skulle dø",
        "ISHOCKEY: Sebastian Harts",
        "sport",
        "196",
        f"https://ekstrabladet.dk/{A1}",
    )
    assert _item(ds, a[2])["abstract"] == "" and _item(ds, a[2])["subcategory"] == ""  # nulls: empty


def test_ebnerd_time_in_utc_seconds_history_cut_to_history_len(tmp_path: Path):
    ds = _prepare(write_ebnerd(tmp_path / "eb"), tmp_path / "ds", "ebnerd", "data.history_len=2")
    utc = int((T0 - datetime(1970, 1, 1)).total_seconds())
    assert list(ds.split("train").time) == [utc, utc + 60, utc + 3600]
    assert _impressions(ds, "valid")[0][2] == [str(A2), str(A5)]  # the most recent clicks


EB_BAD = [
    ("missing column", {"train/behaviors": _behaviors(EB_TRAIN).drop(["user_id"])},
     r"train/behaviors.parquet \(field user_id\): missing column"),
    ("wrong type", {"articles": _articles(article_id=["a", "b", "c", "d", "e"])},
     r"articles.parquet \(field article_id\): expected integers, got string"),
    ("inview not a list", {"validation/behaviors": _behaviors(EB_VALID, article_ids_inview=pa.array([1, 2]))},
     r"validation/behaviors.parquet \(field article_ids_inview\): expected lists of integers"),
    ("null in a list", {"train/behaviors": _behaviors(EB_TRAIN, article_ids_inview=pa.array(
        [[A1], [A2], [A3, None]], pa.list_(pa.int32())))},
     r"train/behaviors.parquet:row 3 \(field article_ids_inview\): null article id"),
    ("null list", {"train/history": _history({1: [A1], 2: [A2]}, article_id_fixed=pa.array(
        [[A1], None], pa.list_(pa.int32())))},
     r"train/history.parquet:row 2 \(field article_id_fixed\): empty list"),
    ("empty inview", {"train/behaviors": _behaviors([EB_TRAIN[0], (9, 1, 0, [], [])])},
     r"train/behaviors.parquet:row 2 \(field article_ids_inview\): no candidates"),
    ("impression twice", {"validation/behaviors": _behaviors([EB_VALID[0], EB_VALID[0]])},
     r"validation/behaviors.parquet:row 2 \(field impression_id\): impression id 152513 appears twice"),
    ("null user", {"train/behaviors": _behaviors(EB_TRAIN, user_id=pa.array([1, None, 2], pa.uint32()))},
     r"train/behaviors.parquet:row 2 \(field user_id\): empty value"),
    ("article twice", {"articles": _articles(article_id=pa.array([1, 2, 3, 2, 5], pa.int32()))},
     r"articles.parquet:row 4 \(field article_id\): article 2 appears twice"),
    ("user twice", {"train/history": pa.concat_tables([_history({1: [A1]}), _history({1: [A2]})])},
     r"train/history.parquet:row 2 \(field user_id\): user 1 has two history rows"),
]  # fmt: skip


@pytest.mark.parametrize("tables,message", [b[1:] for b in EB_BAD], ids=[b[0] for b in EB_BAD])
def test_ebnerd_errors_name_file_row_and_column(tmp_path: Path, tables: dict, message: str):
    with pytest.raises(DataError, match=message):
        _prepare(write_ebnerd(tmp_path / "eb", **tables), tmp_path / "ds", "ebnerd")
    assert _nothing_written(tmp_path)


def test_ebnerd_missing_folder_unreadable_file_missing_ids(tmp_path: Path):
    import shutil

    raw = write_ebnerd(tmp_path / "eb")
    shutil.rmtree(raw / "validation")
    with pytest.raises(DataError, match=r"missing split folder `validation/`"):
        _prepare(raw, tmp_path / "a", "ebnerd")
    raw = write_ebnerd(tmp_path / "eb2")
    (raw / "train" / "history.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match=r"train/history.parquet: cannot read Parquet"):
        _prepare(raw, tmp_path / "b", "ebnerd")
    raw = write_ebnerd(tmp_path / "eb3", **{"train/behaviors": _behaviors([(1, 1, 0, [A1, 404], [A1])])})
    assert _prepare(raw, tmp_path / "c", "ebnerd").stats["missing"]["candidates"]["examples"] == ["404"]
    with pytest.raises(
        DataError, match=r"train/behaviors.parquet:row 1 \(field article_ids_inview\): news id 404 is not in"
    ):
        _prepare(raw, tmp_path / "d", "ebnerd", "data.strict=true")


# -------------------------------------------------------------------------------------------------- Adressa

DAY = 1483225200  # 2017-01-01 00:00 (Oslo)


def _event(user: str, article: str | None, minute: int, **extra) -> dict:
    e = {"eventId": minute, "userId": user, "time": DAY + 60 * minute, "url": "http://adressa.no",
         "activeTime": 20, "deviceType": "Mobile"}  # fmt: skip
    if article:
        e |= {"id": article, "title": f"Sak {article}", "category1": f"nyheter|{article[0]}",
              "canonicalUrl": f"http://www.adressa.no/{article}.ece"}  # fmt: skip
    return e | extra


# u1 reads a b c d e f (and re-reads a), u2 b a c d e f, u3 a b g h (filtered: fewer than 5 clicks)
ADRESSA_DAY1 = [
    _event("u1", "a", 1),
    _event("u1", None, 2),
    _event("u1", "b", 3),
    _event("u2", "b", 4),
    _event("u1", "a", 5),
    _event("u2", "a", 6),
    _event("u1", "c", 7),
    _event("u3", "a", 8),
]
ADRESSA_DAY2 = [_event("u1", "d", 1500), _event("u2", "c", 1501), _event("u2", "d", 1502),
                _event("u1", "e", 1503), _event("u2", "e", 1504), _event("u1", "f", 1505, title=""),
                _event("u3", "b", 1506), _event("u2", "f", 1507), _event("u3", "g", 1508),
                _event("u3", "h", 1509)]  # fmt: skip
LOOSE = [
    "data.item_min_interactions=1",
    "data.user_min_positives=5",
    "data.cold_user_share=0",
    "data.warm_history=[2,2]",
    "data.split_ratios=[0.5,0.25,0.25]",
    "data.negatives=2",
    "data.eval_negatives=1",
]


def write_adressa(root: Path, day1: list | None = None, day2: list | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = lambda events: "".join((e if isinstance(e, str) else json.dumps(e)) + "\n" for e in events)  # noqa: E731
    (root / "20170101").write_text(lines(ADRESSA_DAY1 if day1 is None else day1), encoding="utf-8")
    with gzip.open(root / "20170102.gz", "wt", encoding="utf-8") as f:  # gzipped days are read too
        f.write(lines(ADRESSA_DAY2 if day2 is None else day2))
    (root / "README.txt").write_text("not an event file\n")
    return root


def test_adressa_clicks_protocol_and_items(tmp_path: Path):
    ds = _prepare(write_adressa(tmp_path / "adressa"), tmp_path / "ds", "adressa", *LOOSE)
    assert ds.split_names == ["train", "valid", "test"]
    assert sorted(ds.vocab("user")[1:]) == ["u1", "u2"]  # u3 filtered (2 clicks)
    groups = {s: {u: (h, c) for _, u, h, c in _impressions(ds, s)} for s in ds.split_names}
    # history: the first 2 clicks (the re-read of `a` is no second click); the rest 50/25/25 by time
    assert groups["train"]["u1"][0] == ["a", "b"]
    assert {k for k, y in groups["train"]["u1"][1].items() if y} == {"c", "d"}
    assert {k for k, y in groups["valid"]["u1"][1].items() if y} == {"e"}
    assert {k for k, y in groups["test"]["u1"][1].items() if y} == {"f"}
    assert groups["train"]["u2"][0] == ["b", "a"]
    # random negatives from the whole catalogue, never an article the user clicked: only g and h (read by u3
    # alone) are left, 2 per training group, 1 per valid / test group
    for split, count in (("train", 2), ("valid", 1), ("test", 1)):
        for _, cands in groups[split].values():
            negatives = {k for k, y in cands.items() if y == 0}
            assert len(negatives) == count and negatives <= {"g", "h"}
    item = _item(ds, "a")
    assert (item["title"], item["category"], item["subcategory"], item["abstract"], item["url"]) == (
        "Sak a",
        "nyheter",
        "a",
        "",
        "http://www.adressa.no/a.ece",
    )
    assert _item(ds, "f")["title"] == "Sak f"  # u1's view had no title: the first non-empty one
    assert ds.stats["adressa"] == {
        "events": 18,
        "events_without_article": 1,
        "repeated_views": 1,
        "clicks": 16,
    }


BAD_ADRESSA = [
    ("bad json", ["{not json"], r"20170101:1: not valid JSON"),
    ("time not int", [_event("u1", "a", 1, time="2017-01-01")], r"20170101:1 \(field time\): expected int"),
    ("no user", [{"id": "a", "time": DAY}], r"20170101:1 \(field userId\): missing field"),
    ("empty id", [_event("u1", None, 1, id="")], r"20170101:1 \(field id\): empty article id"),
    ("not an object", ["[1, 2]"], r"20170101:1: expected a JSON object"),
]


@pytest.mark.parametrize("day1,message", [b[1:] for b in BAD_ADRESSA], ids=[b[0] for b in BAD_ADRESSA])
def test_adressa_errors_name_file_line_and_field(tmp_path: Path, day1: list, message: str):
    with pytest.raises(DataError, match=message):
        _prepare(write_adressa(tmp_path / "adressa", day1=day1), tmp_path / "ds", "adressa", *LOOSE)
    assert _nothing_written(tmp_path)


def test_adressa_needs_negatives_and_event_files(tmp_path: Path):
    raw = write_adressa(tmp_path / "adressa")
    with pytest.raises(ConfigError, match=r"data.format=adressa has clicks only: set data.negatives"):
        _prepare(raw, tmp_path / "a", "adressa", *LOOSE, "data.negatives=0")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no Adressa event files"):
        _prepare(tmp_path / "empty", tmp_path / "b", "adressa", *LOOSE)
    # the data preset: negatives and titles only
    cfg = build_config(["data=adressa"]).data
    assert (cfg.format, cfg.negatives, cfg.text_fields) == ("adressa", 4, ["title"])


# ------------------------------------------------------------------------------------------ one training step


@pytest.fixture
def prepared(tmp_path: Path, request) -> Path:
    fmt = request.param
    out = tmp_path / "ds"
    if fmt == "xmind":
        _prepare(
            write_mind(tmp_path / "mind"), out, fmt, f"data.translations={write_xmind(tmp_path / 'ron')}"
        )
    elif fmt == "pens":
        _prepare(write_pens(tmp_path / "pens"), out, fmt)
    elif fmt == "ebnerd":
        _prepare(write_ebnerd(tmp_path / "eb"), out, fmt)
    else:
        _prepare(write_adressa(tmp_path / "adressa"), out, fmt, *LOOSE)
    return out


@pytest.mark.parametrize("prepared", ["xmind", "pens", "ebnerd", "adressa"], indirect=True)
def test_a_model_trains_one_step(prepared: Path, tmp_path: Path):
    cfg = build_config(
        [
            f"data={prepared}",
            "model=dnn",
            "model.hidden_size=16",
            "embed.dim=16",
            "exp=quick",
            "exp.batch_size=2",  # the smallest fixture has 3 training clicks
            "exp.max_steps=1",
            f"exp.out_dir={tmp_path / 'run'}",
        ]
    )
    _, metrics = train(cfg, progress=False)
    assert metrics["valid"]["impressions"] == Dataset(prepared).split("valid").num_impressions


def test_cli_prepares_each_format(tmp_path: Path, capsys):
    from oncerec.cli import main

    assert main(["prepare", str(write_pens(tmp_path / "pens")), "--out", str(tmp_path / "p"), "--format", "pens",
                 "--quiet"]) == 0  # fmt: skip
    assert Dataset(tmp_path / "p").manifest["data_config"]["format"] == "pens"
    # adressa starts from its data preset (4 negatives) unless a data group is given
    raw = write_adressa(tmp_path / "adressa")
    loose = [o for o in LOOSE if "negatives" not in o]
    assert (
        main(["prepare", str(raw), "--out", str(tmp_path / "a"), "--format", "adressa", "--quiet", *loose])
        == 0
    )
    assert Dataset(tmp_path / "a").manifest["data_config"]["negatives"] == 4
