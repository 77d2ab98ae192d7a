"""Faults a new user or an attacker gives each surface (the service, `genre import`, the readers, experiments,
evaluation, resume): the key never leaks, no answer is silently wrong, nothing done is lost, and bad input ends
in one line naming the option or file and the fix (a 4xx / 503 with the reason over HTTP). The list of cases is
the test: each case is a function registered with `@case(...)`, and each fails on the code before its fix."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import SMALL, assert_one_line_error

from oncerec.cli import main
from oncerec.config.loader import build_config
from oncerec.data.dataset import resolve_dataset
from oncerec.train.trainer import train

QUIET = {"progress": False, "log": lambda *_: None}


@dataclass
class Context:
    tmp: Path
    run: Path  # a trained NAML run on demo-tiny (two steps)
    tiny: Path  # demo-tiny's prepared dataset
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture

    def copy(self, path: Path, name: str | None = None) -> Path:
        out = self.tmp / (name or path.name)
        shutil.copytree(path, out)
        return out

    def file(self, name: str, text: str = "x\n") -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def error(self, argv: list[str], needle: str, absent: tuple[str, ...] = ()) -> str:
        """Runs the command; it must end in one line `error: ...` holding `needle`, exit 2, and write none of
        `absent` (names under tmp). Returns the line."""
        self.capsys.readouterr()
        code = main(argv)
        line = assert_one_line_error(code, self.capsys.readouterr().err, needle)
        for name in absent:
            assert not (self.tmp / name).exists(), f"{name} was written"
        return line


CASES: dict[str, Callable[[Context], None]] = {}


def case(name: str) -> Callable[[Callable[[Context], None]], Callable[[Context], None]]:
    def add(fn: Callable[[Context], None]) -> Callable[[Context], None]:
        assert name not in CASES, name
        CASES[name] = fn
        return fn

    return add


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = build_config(
        ["data=demo-tiny", "model=naml", "exp=quick", "exp.max_steps=2", f"exp.out_dir={out}"], shared=SMALL
    )
    train(cfg, **QUIET)
    return out, resolve_dataset(cfg.data, **QUIET)


# ------------------------------------------------------------------------------------------------ secrets


# -------------------------------------------------------------------------------------- serving and export


# ---------------------------------------------------------------------------------------- GENRE import


# ------------------------------------------------------------------------------------ readers and datasets


def _data_prepare(ctx: Context, raw: Path, fmt: str, *overrides: str) -> list[str]:
    """`oncerec prepare` of `raw` into tmp/ds (an argv for ctx.error or main)."""
    return ["prepare", str(raw), "--out", str(ctx.tmp / "ds"), "--format", fmt, "--quiet", *overrides]


def _data_train(ctx: Context, dataset: Path) -> list[str]:
    """One training step of NAML on a prepared dataset (the run goes to tmp/run)."""
    from conftest import SHARED

    return ["train", f"data={dataset}", "model=naml", "exp=quick", "exp.max_steps=1",
            f"exp.out_dir={ctx.tmp / 'run'}", "--quiet", *SHARED]  # fmt: skip


def _data_tiny(ctx: Context, edit: Callable[[Path], None]) -> Path:
    """A copy of demo-tiny's prepared dataset, edited as a user might after `prepare`."""
    ds = ctx.copy(ctx.tiny, "edited")
    edit(ds)
    return ds


def _data_save(path: Path, change: Callable) -> None:
    """Rewrite an array of a dataset with `change` applied."""
    import numpy as np

    np.save(path, change(np.load(path)))


@case("data: generic data.columns naming a column the items file lacks")
def data_generic_missing_column(ctx: Context) -> None:
    from test_goodreads_generic import COLUMNS, LOOSE, _write_generic

    raw = _write_generic(ctx.tmp / "raw", "csv")
    line = ctx.error(
        _data_prepare(ctx, raw, "generic", *LOOSE, COLUMNS[0].replace("title: name", "title: nope")),
        "items.csv (field nope): no column `nope` for title (data.columns.title)",
        absent=("ds",),
    )
    assert "the file's columns: movie_id, name, plot, genre" in line


@case("data: generic repeated interactions are dropped and counted")
def data_generic_repeated_interactions(ctx: Context) -> None:
    from test_goodreads_generic import COLUMNS, LOOSE, _groups, _interactions_rows, _write_generic

    from oncerec.data.dataset import Dataset

    rows = _interactions_rows()
    once = _write_generic(ctx.tmp / "once", "csv", rows)
    twice = _write_generic(ctx.tmp / "twice", "csv", [r for r in rows for _ in (0, 1)])  # every row twice
    assert main(["prepare", str(once), "--out", str(ctx.tmp / "a"), "--format", "generic", "--quiet",
                 *LOOSE, *COLUMNS]) == 0  # fmt: skip
    ctx.capsys.readouterr()
    assert main(_data_prepare(ctx, twice, "generic", *LOOSE, *COLUMNS)) == 0
    out = ctx.capsys.readouterr().out
    assert f"warning: {len(rows)} interactions in interactions.csv repeat an earlier one" in out
    a, b = Dataset(ctx.tmp / "a"), Dataset(ctx.tmp / "ds")
    assert b.stats["repeated_interactions"] == len(rows) and a.stats["repeated_interactions"] == 0
    for split in ("train", "valid", "test"):  # the same positive never lands in two splits
        assert _groups(a, split) == _groups(b, split)


@case("data: EB-NeRD training split without clicks")
def data_ebnerd_without_clicks(ctx: Context) -> None:
    from test_readers import EB_TRAIN, _behaviors, write_ebnerd

    unclicked = [(*r[:4], []) for r in EB_TRAIN]
    raw = write_ebnerd(ctx.tmp / "eb", **{"train/behaviors": _behaviors(unclicked)})
    ctx.error(
        _data_prepare(ctx, raw, "ebnerd"),
        "train/behaviors.parquet (field article_ids_clicked): no clicks: not one candidate of the 3 impressions",
        absent=("ds",),
    )
    raw = write_ebnerd(ctx.tmp / "eb2", **{"train/behaviors": _behaviors(EB_TRAIN, clicked=False)})
    ctx.error(_data_prepare(ctx, raw, "ebnerd"), "(field article_ids_clicked): no labels: the train split")


@case("data: PENS training file with only a header")
def data_pens_header_only(ctx: Context) -> None:
    from test_readers import PENS_HEADER, PENS_NEWS, write_pens

    raw = write_pens(ctx.tmp / "pens", train=[PENS_HEADER])
    ctx.error(
        _data_prepare(ctx, raw, "pens"), "train.tsv: no impressions: the train split is empty", absent=("ds",)
    )
    raw = write_pens(ctx.tmp / "pens2", news=PENS_NEWS[:1])
    ctx.error(_data_prepare(ctx, raw, "pens"), "news.tsv: no news", absent=("ds",))


@case("data: EB-NeRD with no article")
def data_ebnerd_no_article(ctx: Context) -> None:
    from test_readers import _articles, write_ebnerd

    raw = write_ebnerd(ctx.tmp / "eb", articles=_articles().slice(0, 0))
    ctx.error(_data_prepare(ctx, raw, "ebnerd"), "articles.parquet: no articles", absent=("ds",))


@case("data: PENS candidate twice in one impression")
def data_pens_candidate_twice(ctx: Context) -> None:
    from test_readers import PENS_HEADER, _pens_line, write_pens

    raw = write_pens(ctx.tmp / "pens", train=[PENS_HEADER, _pens_line(pos="N1", neg="N1 N3")])
    ctx.error(
        _data_prepare(ctx, raw, "pens"),
        "train.tsv:2 (field pos/neg): candidate N1 appears twice in one impression",
        absent=("ds",),
    )


@case("data: EB-NeRD candidate twice in one impression")
def data_ebnerd_candidate_twice(ctx: Context) -> None:
    from test_readers import A1, A3, EB_TRAIN, _behaviors, write_ebnerd

    rows = [*EB_TRAIN[:2], (48403, 13538, 3600, [A3, A1, A3], [A1])]
    raw = write_ebnerd(ctx.tmp / "eb", **{"train/behaviors": _behaviors(rows)})
    ctx.error(
        _data_prepare(ctx, raw, "ebnerd"),
        f"train/behaviors.parquet:row 3 (field article_ids_inview): candidate {A3} appears twice in one impression",
        absent=("ds",),
    )


@case("data: MIND candidate twice in one impression (as PENS and EB-NeRD)")
def data_mind_candidate_twice(ctx: Context) -> None:
    from conftest import BEHAVIORS_DEV, write_mind

    raw = write_mind(
        ctx.tmp / "mind", dev_behaviors=[*BEHAVIORS_DEV[:3], "13\tU4\t11/15/2019 3:00:00 PM\tN2\tN4-0 N4-1"]
    )
    ctx.error(
        _data_prepare(ctx, raw, "mind"),
        "dev/behaviors.tsv:4 (field impressions): candidate N4 appears twice in one impression",
        absent=("ds",),
    )


@case("data: an empty xMIND translation keeps MIND's English text")
def data_xmind_empty_translation(ctx: Context) -> None:
    from conftest import write_mind
    from test_readers import write_xmind

    from oncerec.data.dataset import Dataset

    lang = write_xmind(
        ctx.tmp / "ron",
        xMINDsmall_train=["N1\t\tO aruncare târzie decide.", "N3\tCremă de zahăr ars\t", "N4\t\t"],
        xMINDsmall_dev=["N2\tAcțiunile cresc\t"],
    )
    argv = _data_prepare(ctx, write_mind(ctx.tmp / "mind"), "xmind", f"data.translations={lang}")
    ctx.capsys.readouterr()
    assert main(argv) == 0
    assert "empty translations in" in ctx.capsys.readouterr().out
    ds = Dataset(ctx.tmp / "ds")
    titles = {r["id"]: (r["title"], r["abstract"]) for r in ds.items_table.to_pylist()}
    assert titles["N1"] == ("Lakers win the \u201cbig\u201d game", "O aruncare târzie decide.")
    assert titles["N3"] == ("Cremă de zahăr ars", 'Easy "dessert" tips')
    assert titles["N4"] == ("United draw at home", "Fans unhappy.")
    assert ds.stats["xmind"]["english_kept"] == {"title": 2, "abstract": 2}
    shutil.rmtree(ctx.tmp / "ds")
    ctx.error([*argv, "--strict"], "train/news.tsv: news id N1: its title translation in", absent=("ds",))


@case("data: a Parquet list column is read as its elements, or refused where one value is needed")
def data_parquet_list_column(ctx: Context) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from test_goodreads_generic import COLUMNS, ITEMS, LOOSE, _write_generic

    from oncerec.data.dataset import Dataset

    raw = _write_generic(ctx.tmp / "raw", "parquet")
    listed = [r | {"name": ["Movie", r["movie_id"]]} for r in ITEMS]
    pq.write_table(pa.Table.from_pylist(listed), raw / "items.parquet")
    assert main(_data_prepare(ctx, raw, "generic", *LOOSE, *COLUMNS)) == 0
    titles = Dataset(ctx.tmp / "ds").items_table.column("title").to_pylist()
    assert titles[1:4] == ["Movie a", "Movie b", "Movie c"]
    shutil.rmtree(ctx.tmp / "ds")
    pq.write_table(
        pa.Table.from_pylist([r | {"genre": [r["genre"], "0"]} for r in ITEMS]), raw / "items.parquet"
    )
    ctx.error(
        _data_prepare(ctx, raw, "generic", *LOOSE, *COLUMNS),
        "items.parquet (field genre): a list column (list<element: string>): oncerec reads one value per row",
        absent=("ds",),
    )


@case("data: a short train/item.npy does not train")
def data_short_item_array(ctx: Context) -> None:
    from oncerec.data.dataset import Dataset

    ds = _data_tiny(ctx, lambda d: _data_save(d / "train" / "item.npy", lambda a: a[: len(a) // 2]))
    rows = Dataset(ctx.tiny).stats["splits"]["train"]["rows"]
    ctx.error(
        _data_train(ctx, ds),
        f"train/item.npy: {rows // 2} rows, the dataset's stats.json says {rows}; the file was changed or "
        "damaged after `oncerec prepare`: prepare the dataset again",
        absent=("run",),
    )


@case("data: a short vocab/word.json does not train")
def data_short_word_vocab(ctx: Context) -> None:
    import json

    from oncerec.data.dataset import Dataset

    def cut(d: Path) -> None:
        words = json.loads((d / "vocab" / "word.json").read_text())
        (d / "vocab" / "word.json").write_text(json.dumps(words[:10]))

    size = Dataset(ctx.tiny).stats["vocab"]["word"]
    ctx.error(
        _data_train(ctx, _data_tiny(ctx, cut)),
        f"vocab/word.json: 10 entries, the dataset's stats.json says {size}; the file was changed",
        absent=("run",),
    )


@case("data: Adressa time beyond 64 bits")
def data_adressa_huge_time(ctx: Context) -> None:
    from test_readers import ADRESSA_DAY1, LOOSE, _event, write_adressa

    raw = write_adressa(ctx.tmp / "adressa", day1=[*ADRESSA_DAY1[:3], _event("u2", "b", 4, time=10**30)])
    ctx.error(
        _data_prepare(ctx, raw, "adressa", *LOOSE),
        "20170101:4 (field time): time 10000000000000000000... (31 digits) is out of range",
        absent=("ds",),
    )


@case("data: generic time of 20 digits")
def data_generic_huge_time(ctx: Context) -> None:
    from test_goodreads_generic import COLUMNS, _interactions_rows, _write_generic

    rows = _interactions_rows()
    rows[2]["ts"] = "12345678901234567890"
    ctx.error(
        _data_prepare(ctx, _write_generic(ctx.tmp / "raw", "csv", rows), "generic", *COLUMNS),
        "interactions.csv:4 (field ts): time 12345678901234567890 is out of range",
        absent=("ds",),
    )


@case("data: a dataset edited after prepare: an item id beyond the items")
def data_item_id_out_of_range(ctx: Context) -> None:
    import numpy as np

    from oncerec.data.dataset import Dataset

    n = Dataset(ctx.tiny).num_items
    ds = _data_tiny(
        ctx, lambda d: _data_save(d / "valid" / "item.npy", lambda a: np.where(a == a[0], n + 5, a))
    )
    ctx.error(_data_train(ctx, ds), f"valid/item.npy: holds {n + 5}, outside 0..{n - 1}", absent=("run",))
    ds = ctx.copy(ctx.tiny, "edited2")
    _data_save(ds / "histories" / "items.npy", lambda a: np.where(a == a.max(), -3, a))
    ctx.error(_data_train(ctx, ds), f"histories/items.npy: holds -3, outside 0..{n - 1}")


@case("data: a dataset edited after prepare: a token id beyond the vocabulary")
def data_token_id_out_of_range(ctx: Context) -> None:
    from oncerec.data.dataset import Dataset

    words = Dataset(ctx.tiny).stats["vocab"]["word"]

    def beyond(ids):
        ids[3, 0] = words + 7  # an id the vocabulary does not have
        return ids

    ds = _data_tiny(ctx, lambda d: _data_save(d / "items" / "word" / "title.npy", beyond))
    ctx.error(
        _data_train(ctx, ds),
        f"items/word/title.npy: holds {words + 7}, outside 0..{words - 1}",
        absent=("run",),
    )


@case("data: a dataset edited after prepare: garbage items.parquet")
def data_garbage_items_table(ctx: Context) -> None:
    ds = _data_tiny(ctx, lambda d: (d / "items.parquet").write_bytes(b"PAR1 not a table"))
    ctx.error(
        ["recommend", str(ctx.run), "--data", str(ds), "--history", "N1"],
        "items.parquet: not a readable Parquet table",
    )


@case("data: a dataset edited after prepare: offsets out of order")
def data_bad_offsets(ctx: Context) -> None:
    ds = _data_tiny(ctx, lambda d: _data_save(d / "train" / "offsets.npy", lambda a: a[::-1].copy()))
    ctx.error(_data_train(ctx, ds), "train/offsets.npy: not offsets increasing from 0 to the")


# ------------------------------------------------------------------------ experiments, evaluation, resume


# ----------------------------------------------------------------------------------------------- the test


@pytest.mark.parametrize("name", list(CASES))
def test_fault(name: str, trained, tmp_path, monkeypatch, capsys):
    run, tiny = trained
    CASES[name](Context(tmp_path, run, tiny, monkeypatch, capsys))
