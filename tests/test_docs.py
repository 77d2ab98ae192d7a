"""The documentation: the MkDocs site builds without a warning, its reference pages are generated from the
schema and the presets, the README's quickstart runs as written, and the README stays one screen whose headline
figures are the results page's."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from oncerec.config.reference import markdown_presets, markdown_reference
from oncerec.config.schema import Config
from oncerec.data.formats import FORMATS
from oncerec.models.interfaces import ComponentConfig
from oncerec.models.registry import REGISTRY

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_the_docs_site_builds_strictly(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (it comes with the dev extra)")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "index.html").is_file()


def _schema_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every key under `model` as a dotted name (a component's under the component: `model.item.cnn.kernel_size`),
    walked here independently of the generator."""
    keys = []
    for name, field in model.model_fields.items():
        dotted = f"{prefix}.{name}" if prefix else name
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, ComponentConfig):
            keys.append(dotted)  # the choice, then each component's own keys
            for component, cls in REGISTRY[name].items():
                keys += [f"{dotted}.{component}.{k}" for k in cls.config_class.model_fields if k != "name"]
        elif isinstance(sub, type) and issubclass(sub, BaseModel):
            keys += _schema_keys(sub, dotted)
        else:
            keys.append(dotted)
    return keys


def _reference_rows(markdown: str) -> dict[str, str]:
    """key -> its table row, from the generated reference (keyed by the row's anchor, unique where two components
    have a key of one name)."""
    return {m.group(1): m.group(0) for m in re.finditer(r"^\| `[\w.]+`\{#([\w.]+)\} \|.*$", markdown, re.M)}


def test_the_configuration_reference_lists_every_key_of_the_schema() -> None:
    rows = _reference_rows(markdown_reference())
    # the data group's keys are the shared ones and each format's own
    keys = set(_schema_keys(Config)) | {f"data.{k}" for f in FORMATS.values() for k in f.config.model_fields}
    assert len(keys) > 100
    assert sorted(rows) == sorted(keys)
    # the type with its bounds, the default as written on the command line, the field's description
    assert rows["model.hidden_size"].startswith(
        "| `model.hidden_size`{#model.hidden_size} | int, ≥ 1 | `256` |"
    )
    assert (
        Config.model_fields["model"].annotation.model_fields["hidden_size"].description
        in rows["model.hidden_size"]
    )
    assert "one of `auto`, `softmax`, `bce`" in rows["exp.loss"]
    assert "`[title, abstract]`" in rows["data.text_fields"]
    assert "<" not in rows["data.min_word_count"].replace(
        "`", ""
    )  # <unk> is shown as text, not taken for HTML


def test_the_reference_walks_nested_models_as_sections_of_their_own() -> None:
    """A nested model (`model.item.cnn.kernel_size` here) is a section of its own."""

    class Cnn(BaseModel):
        kernel_size: int = Field(3, ge=1, description="CNN window.")

    class Item(BaseModel):
        name: str = Field("cnn", description="Item encoder.")
        cnn: Cnn = Field(default_factory=Cnn)

    class Model(BaseModel):
        item: Item = Field(default_factory=Item)
        fields: list[str] | None = Field(None, description="Fields.")

    class Root(BaseModel):
        model: Model = Field(default_factory=Model)

    text = markdown_reference(Root)
    assert re.findall(r"^## `([\w.=]+)`", text, re.M) == ["model", "model.item", "model.item.cnn"]
    rows = _reference_rows(text)
    assert sorted(rows) == ["model.fields", "model.item.cnn.kernel_size", "model.item.name"]
    assert "| list of str or none | `null` |" in rows["model.fields"]


def test_the_reference_has_a_section_per_component_with_its_keys() -> None:
    """A field that chooses a component is a key whose values are the registry's names, and each component of
    its kind has a section with its own keys (anchored by component: `cnn` and `npa` both have kernel_size)."""
    text = markdown_reference()
    for kind, table in REGISTRY.items():
        for name in table:
            assert f"\n## `model.{kind}={name}`\n" in text
    rows = _reference_rows(text)
    assert rows["model.user"].startswith(
        "| `model.user`{#model.user} | one of `attention`, `fastformer`, `gru`,"
    )
    assert rows["model.user.gru.gru_mode"].startswith(
        "| `model.user.gru_mode`{#model.user.gru.gru_mode} | one of `ini`, `con` | `ini` |"
    )
    assert rows["model.item.npa.kernel_size"].startswith(
        "| `model.item.kernel_size`{#model.item.npa.kernel_size}"
    )
    assert (
        "## `model.predictor=dot`\n\nThe inner product of the user vector and each candidate vector.\n\nNo keys"
        in text
    )


def test_the_preset_list_has_every_packaged_preset_with_its_comment_and_keys() -> None:
    text = markdown_presets()
    folder = ROOT / "src" / "oncerec" / "config" / "presets"
    for path in folder.glob("*/*.yaml"):
        group, name = path.parent.name, path.stem
        assert f"| `{name}`{{#{group}-{name}}} |" in text, path
    nrms = next(line for line in text.splitlines() if line.startswith("| `nrms`"))
    assert (
        "NRMS (Wu et al., 2019)" in nrms and "`item: attention`" in nrms and "`item_fields: [title]`" in nrms
    )


README = ROOT / "README.md"


def _fenced_block_under(markdown: str, heading: str) -> list[str]:
    """The non-empty lines of the first ```bash block after `## heading`."""
    section = markdown.split(f"\n## {heading}\n", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, f"no bash block under ## {heading}"
    return [line for line in block.group(1).splitlines() if line.strip()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.integration
def test_the_readme_quickstart_runs_as_written(tmp_path: Path) -> None:
    """Each line of the README's quickstart, in a fresh folder, through a shell: `oncerec` is this checkout's CLI,
    the `serve ... &` line runs in the background on a free port, and the curl gets recommendations."""
    httpx = pytest.importorskip("httpx", reason="the quickstart's server is checked over HTTP")
    lines = _fenced_block_under(README.read_text(encoding="utf-8"), "Quickstart")
    assert [line.split()[:2] for line in lines[:5]] == [
        ["oncerec", "train"],
        ["oncerec", "evaluate"],
        ["oncerec", "recommend"],
        ["oncerec", "export"],
        ["oncerec", "serve"],
    ]
    assert lines[4].endswith("&") and lines[5].startswith("curl ")
    # the manual's copy of the quickstart is the same block
    assert (
        _fenced_block_under((ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8"), "Quickstart")
        == lines
    )

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "oncerec"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m oncerec.cli "$@"\n')
    shim.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT / "src"),
    }
    work = tmp_path / "work"
    work.mkdir()

    def run(line: str) -> str:
        done = subprocess.run(
            ["bash", "-c", line], cwd=work, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    run(lines[0])
    assert (work / "runs" / "quick" / "metrics.json").is_file()
    assert "auc" in json.loads(run(lines[1]))["test"]
    ranked = [line for line in run(lines[2]).splitlines() if re.match(r"\s*\d+\.\s", line)]
    assert len(ranked) == 10, ranked
    run(lines[3])
    assert (work / "exports" / "quick" / "export.json").is_file()

    port = _free_port()
    serve, curl = (line.replace("8000", str(port)) for line in lines[4:6])
    assert serve != lines[4] and curl != lines[5], "the quickstart's port is 8000"
    log = tmp_path / "serve.log"
    server = subprocess.Popen(
        ["bash", "-c", f"exec {serve.removesuffix('&').strip()} >{log} 2>&1"],
        cwd=work,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not answer /health"
            time.sleep(0.5)
        words = shlex.split(curl)
        body = json.loads(words[words.index("-d") + 1])
        if shutil.which("curl"):
            answer = json.loads(run(curl))  # an error answer would be {"error": ...}, not items
        else:  # the same request without curl
            response = httpx.post(f"http://127.0.0.1:{port}/recommend", json=body, timeout=30)
            assert response.status_code == 200, response.text
            answer = response.json()
        assert answer["source"] == "model"
        assert len(answer["items"]) == body["k"] and all({"id", "score"} <= set(i) for i in answer["items"])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _user_pages() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def test_the_readme_is_one_screen_and_the_pages_hold_no_workspace_notes() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) < 260
    for page in _user_pages():
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"\bissues? #?\d+", text, re.I), f"{page.name}: an internal issue number"
        assert "/work/" not in text and "../shared" not in text, f"{page.name}: a path of one machine"


def test_the_readme_headline_figures_are_those_of_the_results_page() -> None:
    readme = README.read_text(encoding="utf-8")
    results = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    figures = re.findall(r"\d\.\d{4} ± \d\.\d{4}", readme)
    assert len(figures) == 12
    assert [f for f in figures if f not in results] == []


def test_the_readme_links_into_the_docs_resolve() -> None:
    """README links are relative (docs/x.md#anchor) so that they work on GitHub: each file exists and each
    anchor is the slug of one of its headings."""
    slugify = pytest.importorskip("markdown.extensions.toc", reason="markdown comes with mkdocs").slugify
    links = re.findall(r"\]\((docs/[^)#]+)(?:#([^)]+))?\)", README.read_text(encoding="utf-8"))
    assert len(links) > 10
    for path, anchor in links:
        target = ROOT / path
        assert target.is_file(), path
        if anchor:
            headings = re.findall(r"^#+ (.+)$", target.read_text(encoding="utf-8"), re.M)
            assert anchor in {slugify(h.replace("`", ""), "-") for h in headings}, f"{path}#{anchor}"


@pytest.mark.integration
def test_the_python_api_page_runs_as_written(tmp_path: Path, monkeypatch) -> None:
    """The page's walk-through, block after block in one namespace as a notebook runs it."""
    pytest.importorskip("faiss", reason="the walk-through exports the run (the serve extra)")
    import torch

    page = (ROOT / "docs" / "python-api.md").read_text(encoding="utf-8")
    section = page.split("\n## A session, step by step\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 4
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: intra-op threads only contend with the rest of the machine
    try:
        namespace: dict = {}
        for block in blocks:
            exec(compile(block, "python-api.md", "exec"), namespace)
    finally:
        torch.set_num_threads(threads)
    run = namespace["run"]
    assert (tmp_path / "runs" / "nb-nrms" / "metrics.json").is_file()
    assert run.cfg.model.item_fields == ["title", "category"] and run.cfg.model.hidden_size == 64
    assert len(run.recommend(history=["N10003", "N10027"], k=5)) == 5
    assert namespace["manifest"]["index"]["kind"] == "hnsw"
    assert (tmp_path / "exports" / "nb-nrms" / "export.json").is_file()
