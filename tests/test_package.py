"""The distribution: `python -m build` makes an sdist and, from it, a wheel that holds the library (its presets,
prompts and data files) and nothing of the tests or benchmarks; the wheel installs into a fresh environment and
`oncerec --version` runs there."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import oncerec

# builds the sdist and the wheel, installs one in a fresh environment
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("dist")
    # without isolation: no download of the build backend (the environment has setuptools)
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def _wheel(dist: Path) -> Path:
    (wheel,) = dist.glob("oncerec-*.whl")
    return wheel


def test_the_wheel_holds_the_library_and_no_tests_or_benchmarks(dist: Path):
    assert len(list(dist.glob("oncerec-*.tar.gz"))) == 1
    names = zipfile.ZipFile(_wheel(dist)).namelist()
    assert "oncerec/config/presets/model/nrms.yaml" in names
    assert "oncerec/config/presets/experiment/once-demo.yaml" in names
    assert any(n.startswith("oncerec/genre/prompts/") and n.endswith(".txt") for n in names)
    assert any(n.startswith("oncerec/data/") and n.endswith(".json") for n in names)
    for unwanted in ("tests/", "benchmarks/", "oncerec/bench/", "fake_openai", "fake_server", "conftest"):
        assert not [n for n in names if unwanted in n], unwanted


def test_core_requirements_leave_the_optional_parts_to_extras(dist: Path):
    with zipfile.ZipFile(_wheel(dist)) as z:
        meta = Parser().parsestr(z.read(f"oncerec-{oncerec.__version__}.dist-info/METADATA").decode())
    requires = meta.get_all("Requires-Dist")
    core = [r for r in requires if "extra ==" not in r]
    for optional in ("openai", "gguf", "matplotlib", "faiss", "fastapi", "wandb", "tensorboard"):
        assert not [r for r in core if r.startswith(optional)], optional
        assert [r for r in requires if r.startswith(optional)], f"{optional} is in no extra"
    assert {"serve", "genre", "gguf", "plots", "all", "dev"} <= set(meta.get_all("Provides-Extra"))
    pinned = [r for r in requires if "==" in r.split(";")[0]]
    assert not pinned, "extras give ranges; exact pins live in constraints.txt"


def test_the_wheel_installs_in_a_fresh_environment_and_runs(dist: Path, tmp_path: Path):
    env = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    # nothing of this checkout on the path: with src/ on PYTHONPATH, pip would take its egg-info for an
    # installed oncerec and install nothing
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # --no-deps: the packaging is under test here, not the resolver (the dependencies are the heavy ones)
    subprocess.run(
        [env / "bin" / "pip", "install", "-q", "--no-deps", "--no-index", str(_wheel(dist))],
        check=True,
        capture_output=True,
        env=clean,
    )
    done = subprocess.run([env / "bin" / "oncerec", "--version"], capture_output=True, text=True, env=clean)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"oncerec {oncerec.__version__}"
