"""`data.split=once` with ONCE's published list (`data.split_list`), the packaged MIND-small list, and the
seeded halving without one; the list's errors name the id and the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_mind

from oncerec.config.loader import build_config
from oncerec.data.dataset import Dataset, _config_key
from oncerec.data.prepare import (
    once_split,
    once_valid_test,
    packaged_split_list,
    prepare,
    read_split_list,
)
from oncerec.errors import ConfigError, DataError


def _prepare(raw: Path, out: Path, *overrides: str) -> Dataset:
    cfg = build_config([f"data.source={raw}", "data.split=once", *overrides]).data
    prepare(raw, cfg, out, progress=False)
    return Dataset(out)


def _list(path: Path, ids) -> Path:
    path.write_text(json.dumps(ids))
    return path


def test_a_split_list_gives_its_first_half_to_valid_and_its_second_to_test(tmp_path: Path):
    raw = write_mind(tmp_path / "raw", test=False)  # dev impressions 10, 11, 12, 13
    ids = _list(tmp_path / "mind_imp_list.json", [12, 10, 13, 11])
    ds = _prepare(raw, tmp_path / "ds", f"data.split_list={ids}")
    assert list(ds.split("valid").imp_id) == [10, 12] and list(ds.split("test").imp_id) == [11, 13]
    how = ds.manifest["once_split"]
    assert how["list"] == str(ids) and how["impressions"] == 4 and len(how["sha256"]) == 64
    # without a list (these are not MIND-small's dev impressions): the seeded halving, as before
    seeded = _prepare(raw, tmp_path / "seeded", "data.split_seed=7")
    assert seeded.manifest["once_split"] == {"seed": 7}
    assert _prepare(raw, tmp_path / "none", "data.split_seed=7", "data.split_list=none").manifest[
        "once_split"
    ] == {"seed": 7}
    assert sorted([*seeded.split("valid").imp_id, *seeded.split("test").imp_id]) == [10, 11, 12, 13]


@pytest.mark.parametrize(
    ("ids", "where", "needle"),
    [
        ([12, 10, 13], "dev/behaviors.tsv", r"impression 11 is not in the split list .*list.json"),
        ([12, 10, 13, 11, 99], "list.json", r"impression 99 of the split list is not in .*dev/behaviors.tsv"),
        ([12, 10, 12, 11, 13], "list.json", r"impression 12 is listed twice"),
        ([12, "10", 13, 11], "list.json", r"impression id '10' is not a non-negative integer"),
        ({"valid": [10]}, "list.json", r"expected a non-empty JSON list"),
    ],
)
def test_split_list_errors_name_the_id_and_the_file(tmp_path: Path, ids, where: str, needle: str):
    raw = write_mind(tmp_path / "raw", test=False)
    path = _list(tmp_path / "list.json", ids)
    with pytest.raises(DataError, match=needle) as err:
        _prepare(raw, tmp_path / "ds", f"data.split_list={path}")
    assert err.value.path.endswith(where)
    assert not (tmp_path / "ds").exists()


def test_the_packaged_list_is_onces_split_of_mind_small(tmp_path: Path):
    path = packaged_split_list()
    ids = read_split_list(path)
    assert len(ids) == 73_152 and sorted(ids.tolist()) == list(range(1, 73_153))
    # MIND-small's dev impressions (ids 1..73152, one candidate each here): ONCE's split by default
    n = len(ids)
    dev = {
        "imp_id": np.arange(1, n + 1, dtype=np.int64),
        "user": np.zeros(n, np.int32),
        "time": np.zeros(n, np.int64),
        "history": np.zeros(n, np.int32),
        "offsets": np.arange(n + 1, dtype=np.int64),
        "item": np.arange(n, dtype=np.int32),
        "label": np.zeros(n, np.int8),
    }
    cfg = build_config(["data.split=once"]).data
    valid, test, how = once_valid_test(dev, cfg, Path("dev/behaviors.tsv"))
    assert how["list"] == "once_mind_imp_list.json" and how["impressions"] == n
    assert set(valid["imp_id"].tolist()) == set(ids[: n // 2].tolist())
    assert set(test["imp_id"].tolist()) == set(ids[n // 2 :].tolist())
    assert (valid["item"] == valid["imp_id"] - 1).all()  # each impression keeps its candidates
    # other dev data keeps the seeded halving by default, and is refused with the packaged list named
    small = {k: v[:4] for k, v in dev.items() if k != "offsets"} | {"offsets": dev["offsets"][:5]}
    valid, test, how = once_valid_test(small, cfg, Path("dev/behaviors.tsv"))
    assert how == {"seed": 2023}
    expected = once_split(small, 2023)
    assert valid["imp_id"].tolist() == expected[0]["imp_id"].tolist()
    with pytest.raises(DataError, match="impression .* of the split list is not in dev/behaviors.tsv"):
        once_valid_test(
            small, build_config(["data.split=once", "data.split_list=once"]).data, Path("dev/behaviors.tsv")
        )


def test_the_cache_key_follows_the_lists_content_and_the_list_needs_split_once(tmp_path: Path):
    path = _list(tmp_path / "list.json", [1, 2])
    cfg = build_config(["data.split=once", f"data.split_list={path}"]).data
    before = _config_key(cfg)
    _list(path, [2, 1])
    assert _config_key(cfg) != before
    assert _config_key(build_config(["data.split=once"]).data) != _config_key(
        build_config(["data.split=once", "data.split_list=none"]).data
    )
    with pytest.raises(ConfigError, match="needs data.split=once"):
        build_config([f"data.split_list={path}"])
    with pytest.raises(ConfigError, match="no such file"):
        _config_key(build_config(["data.split=once", f"data.split_list={tmp_path / 'missing.json'}"]).data)
