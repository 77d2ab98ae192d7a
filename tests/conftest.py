from __future__ import annotations

import os
from pathlib import Path

import pytest

# compact sizes for short test trainings (tests/test_train.py, tests/test_genre.py): model-wide keys, which fit
# every model (NAML has no use for num_heads)
SMALL = [
    "model.hidden_size=32",
    "model.num_heads=4",
    "model.attention_hidden=16",
    "model.category_dim=8",
    "embed.dim=24",
    "exp.batch_size=16",
    "exp.eval_batch_size=64",
]

NEWS_TRAIN = [
    "N1\tsports\tbasketball_nba\tLakers win the \u201cbig\u201d game\tA late shot seals it.\thttps://x/N1\t[]\t[]",
    "N2\tfinance\tmarkets\tStocks rally as rates fall\t\t\t[]\t[]",
    'N3\tfood\trecipes\tCr\u00e8me br\u00fbl\u00e9e in 10 minutes \U0001f370\tEasy "dessert" tips\thttps://x/N3\t'
    '[{"Label": "Cr\u00e8me br\u00fbl\u00e9e", "Type": "F", "WikidataId": "Q207185", "Confidence": 1.0, '
    '"OccurrenceOffsets": [0], "SurfaceForms": ["Cr\u00e8me br\u00fbl\u00e9e"]}]\t[]',
    "N4\tsports\tsoccer\tUnited draw at home\tFans unhappy.\thttps://x/N4\t[]\t[]",
]
NEWS_DEV = [
    "N2\tfinance\tmarkets\tStocks rally as rates fall\t\t\t[]\t[]",
    "N5\ttravel\tdestinations\tTen beaches to visit\tSun and sand.\thttps://x/N5\t[]\t[]",
    "N4\tsports\tsoccer\tUnited draw at home\tFans unhappy.\thttps://x/N4\t[]\t[]",
]
BEHAVIORS_TRAIN = [
    "1\tU1\t11/11/2019 9:05:12 AM\tN1 N3\tN2-0 N4-1 N5-0",
    "2\tU2\t11/11/2019 12:00:00 PM\t\tN1-1 N2-0",
    "3\tU1\t11/12/2019 11:59:59 PM\tN1 N3\tN5-1 N2-0 N3-0",
]
BEHAVIORS_DEV = [
    "10\tU1\t11/15/2019 10:22:32 AM\tN1 N3 N4\tN2-0 N5-1",
    "11\tU3\t11/15/2019 1:00:00 AM\t\tN4-1 N2-0 N5-0",
    "12\tU2\t11/15/2019 2:00:00 PM\tN1\tN2-1 N4-0",
    "13\tU4\t11/15/2019 3:00:00 PM\tN2\tN5-0 N4-1",
]
BEHAVIORS_TEST = ["20\tU1\t11/16/2019 8:00:00 AM\tN1 N3 N4\tN2 N5 N4"]


def write_mind(root: Path, crlf: bool = False, test: bool = True, **overrides: list[str]) -> Path:
    files = {
        "train/news.tsv": NEWS_TRAIN,
        "train/behaviors.tsv": BEHAVIORS_TRAIN,
        "dev/news.tsv": NEWS_DEV,
        "dev/behaviors.tsv": BEHAVIORS_DEV,
    }
    if test:
        files.update({"test/news.tsv": NEWS_DEV, "test/behaviors.tsv": BEHAVIORS_TEST})
    for name, lines in files.items():
        lines = overrides.get(name.replace("/", "_").replace(".tsv", ""), lines)
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        end = "\r\n" if crlf else "\n"
        path.write_bytes("".join(line + end for line in lines).encode("utf-8"))
    return root


def assert_one_line_error(code: int, err: str, needle: str) -> str:
    """A command's bad-input ending: exit 2, no traceback, and a last line `error: ...` holding `needle` (progress
    bars may come before it). Returns that line."""
    err = err.strip()
    assert code == 2, err
    last = err.replace("\r", "\n").splitlines()[-1] if err else ""
    assert last.startswith("error: ") and needle in last, err
    assert "Traceback" not in err and len(last) < 1000
    return last


@pytest.fixture
def mind_dir(tmp_path: Path) -> Path:
    return write_mind(tmp_path / "mind")


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """One oncerec cache for the test session (never the user's): demo data is generated and prepared once."""
    os.environ["ONCEREC_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy machine two spinning threads cost ~10x
    (a module takes it with `pytestmark = pytest.mark.usefixtures("one_thread")`)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny():
    """The prepared demo-tiny dataset, once per module (modules that need it otherwise define their own)."""
    from oncerec.config.loader import build_config
    from oncerec.data.dataset import Dataset, resolve_dataset

    return Dataset(resolve_dataset(build_config(["data=demo-tiny"]).data, progress=False))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A NAML run on demo-tiny (two steps: weights to evaluate, recommend and export) and demo-tiny's prepared
    dataset, once per module."""
    from oncerec.config.loader import build_config
    from oncerec.data.dataset import resolve_dataset
    from oncerec.training.pipeline import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = build_config(
        ["data=demo-tiny", "model=naml", "exp=quick", *SMALL, "exp.max_steps=2", f"exp.out_dir={out}"]
    )
    train(cfg, progress=False)
    return out, resolve_dataset(cfg.data, progress=False)
