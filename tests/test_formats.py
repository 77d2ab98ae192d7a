"""The table of data formats: each format's own keys (a key of another format is an error naming it), old run
configs with every format's keys at once, and the Development page's worked example of adding a format."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import oncerec
from oncerec.cli import build_parser
from oncerec.config.loader import build_config, load_saved_config
from oncerec.config.reference import markdown_reference
from oncerec.data.formats import FORMATS, DataConfig
from oncerec.data.formats.registry import saved_data_config
from oncerec.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _prepare_choices() -> list[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return list(next(a for a in sub.choices["prepare"]._actions if a.dest == "format").choices)


def test_the_command_line_and_the_reference_list_the_registered_formats():
    assert list(FORMATS)[:1] == ["mind"]
    assert _prepare_choices() == [f.name for f in FORMATS.values() if not f.generated]
    assert "demo" not in _prepare_choices()  # generated into the cache, not a folder to prepare
    reference = markdown_reference()
    for fmt in FORMATS.values():
        assert f"| `{fmt.name}` | " in reference
    assert "## `data` keys of `generic`" in reference and "{#data.columns}" in reference
    # the Data page describes every format
    manual = (ROOT / "docs" / "data.md").read_text(encoding="utf-8")
    assert [f.name for f in FORMATS.values() if f"`{f.name}`" not in manual] == []


def test_the_parser_reads_the_table_only_for_prepare():
    """`oncerec --version` and `--help` import none of the readers' libraries (nor pydantic)."""
    code = "import sys, oncerec.cli; oncerec.cli.build_parser(); print(sorted({'numpy', 'pydantic'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip() == "[]", done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["data.format=mind", "data.columns={title: name}"],
            r"unknown key `data.columns` for data.format=mind; valid keys: name, source, format, .*strict "
            r"\(`columns` is a key of data.format=generic\)",
        ),
        (
            ["data=demo-tiny", "data.user_min_positives=3"],
            r"unknown key `data.user_min_positives` for data.format=demo; .*demo_fresh "
            r"\(`user_min_positives` is a key of data.format=goodreads, adressa, generic, demo-goodreads\)",
        ),
        (["data.format=generic", "data.translations=x"], r"`translations` is a key of data.format=xmind\)"),
        (
            ["data.format=xmind", "data.nonsense=1"],
            r"unknown key `data.nonsense` for data.format=xmind; valid ",
        ),
        (["data.format=movies"], r"`data.format`: unknown format `movies`; formats: mind, xmind, pens, "),
    ],
)
def test_a_key_of_another_format_is_an_error_naming_the_format_and_its_keys(args: list[str], message: str):
    with pytest.raises(ConfigError, match=message):
        build_config(args)


def test_each_format_gets_its_own_config_and_dumps_its_own_keys():
    cfg = build_config(["data.format=generic", "data.columns={id: movie_id}", "data.negatives=2"]).data
    assert type(cfg).__name__ == "GenericConfig" and cfg.columns == {"id": "movie_id"}
    assert "columns" in cfg.model_dump() and "translations" not in cfg.model_dump()
    mind = build_config([]).data
    assert mind.format == "mind" and "negatives" not in mind.model_dump()
    assert DataConfig.model_validate({"format": "pens"}).format == "pens"
    with pytest.raises(TypeError, match="DataConfig.model_validate"):
        DataConfig()


# A data config as an older oncerec saved it in a run's config.yaml: one DataConfig with every format's keys.
FLAT = {
    "name": "demo-goodreads", "source": "", "format": "demo", "translations": "", "demo_format": "goodreads",
    "demo_scale": "tiny", "demo_seed": 0, "demo_fresh": 0.0, "split": "mind", "split_seed": 2023,
    "split_list": "", "text_fields": ["title", "abstract"], "max_lengths": {"title": 30, "abstract": 60},
    "tokenizers": ["word"], "lowercase": True, "min_word_count": 1,
    "prompt": "news article: title: {title} abstract: {abstract} category: {category}", "history_len": 50,
    "rating_positive_above": 3, "rating_negative_below": 3, "item_min_interactions": 5,
    "item_max_interactions": 10000, "user_min_positives": 5, "cold_user_share": 0.1, "cold_history": [1, 5],
    "warm_history": [5, 9], "split_ratios": [0.8, 0.1, 0.1], "negatives": 0, "eval_negatives": -1,
    "columns": {}, "strict": False,
}  # fmt: skip


def test_an_old_run_config_with_every_formats_keys_loads_as_its_format(tmp_path: Path):
    books = saved_data_config(FLAT)
    assert books["format"] == "demo-goodreads" and "demo_format" not in books and "columns" not in books
    news = saved_data_config(FLAT | {"format": "xmind", "demo_format": "mind", "translations": "xMIND/ron"})
    assert news["translations"] == "xMIND/ron" and "negatives" not in news and "demo_scale" not in news
    assert saved_data_config(build_config([]).data.model_dump()) == build_config([]).data.model_dump()

    cfg = build_config(["data=demo-goodreads", "data.demo_scale=tiny", "data.user_min_positives=5"])
    saved = cfg.model_dump(mode="json")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved | {"data": FLAT}))
    loaded = load_saved_config(tmp_path / "config.yaml")
    assert loaded.data == cfg.data and loaded.model == cfg.model
    # a key no format has is still an error, naming the file
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved | {"data": FLAT | {"colums": {}}}))
    with pytest.raises(ConfigError, match=r"config.yaml: invalid configuration: unknown key `data.colums`"):
        load_saved_config(tmp_path / "config.yaml")


def _docs_module() -> str:
    """The Python block of the Development page's "Adding a data format"."""
    page = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    section = page.split("\n## Adding a data format\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _write_movielens(root: Path) -> Path:
    """12 users who each rate 8 of 10 movies (the ratings 5 4 2 5 4 1 5 4 over time): 6 positives each."""
    root.mkdir()
    genres = ["Comedy", "Drama|Romance", "Action|Thriller"]
    movies = ["movieId,title,genres"] + [f"{m},Movie {m} ({1990 + m}),{genres[m % 3]}" for m in range(1, 11)]
    (root / "movies.csv").write_text("\n".join(movies) + "\n")
    ratings = ["userId,movieId,rating,timestamp"]
    for u in range(1, 13):
        for k, rating in enumerate([5.0, 4.0, 2.0, 5.0, 4.5, 1.0, 5.0, 4.0]):
            ratings.append(f"{u},{(u + k) % 10 + 1},{rating},{1_000_000 + 1000 * u + k}")
    (root / "ratings.csv").write_text("\n".join(ratings) + "\n")
    return root


LOOSE = {
    "data.item_min_interactions": 2,
    "data.user_min_positives": 3,
    "data.cold_user_share": 0,
    "data.warm_history": [2, 2],
    "data.split_ratios": [0.5, 0.25, 0.25],
    "data.negatives": 2,
    "data.text_fields": ["title"],
}


def test_adding_a_data_format_is_the_one_module_of_the_development_page(tmp_path: Path, monkeypatch):
    """The module the page shows, as a file of its own: registered by its import, it prepares a folder (the
    command line offers it, the reference lists its key) and a model trains on it."""
    (tmp_path / "movielens_format.py").write_text(_docs_module(), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        importlib.import_module("movielens_format")
        assert "movielens" in _prepare_choices()
        assert "{#data.positive_from}" in markdown_reference()
        raw = _write_movielens(tmp_path / "ml")
        ds = oncerec.prepare(raw, format="movielens", overrides=LOOSE, progress=False)
        assert ds.split_names == ["train", "valid", "test"] and ds.stats["users"] == 12
        assert ds.manifest["data_config"]["positive_from"] == 4.0
        titles = ds.items_table.column("title").to_pylist()
        assert "Movie 3 (1993)" in titles and "Action" in ds.vocab("category")
        with pytest.raises(ConfigError, match=r"unknown key `data.columns` for data.format=movielens"):
            build_config(["data.format=movielens", "data.columns={}"])
        run = oncerec.train(
            data=str(raw),
            model="nrms",
            exp="quick",
            overrides={
                "data.format": "movielens",
                **LOOSE,
                "exp.max_steps": 1,
                "exp.batch_size": 8,
                "model.hidden_size": 16,
            },
            out_dir=tmp_path / "run",
            progress=False,
        )
        assert set(run.metrics) == {"valid", "test"} and 0 <= run.metrics["test"]["auc"] <= 1
    finally:
        FORMATS.pop("movielens", None)
        sys.modules.pop("movielens_format", None)
