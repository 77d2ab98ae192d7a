"""The documentation: the MkDocs site builds without a warning, and its reference pages are generated from the
schema and the presets."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from oncerec.config.reference import markdown_presets, markdown_reference
from oncerec.config.schema import Config

ROOT = Path(__file__).resolve().parents[1]


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
    """Every key under `model` as a dotted name, walked here independently of the generator."""
    keys = []
    for name, field in model.model_fields.items():
        dotted = f"{prefix}.{name}" if prefix else name
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            keys += _schema_keys(sub, dotted)
        else:
            keys.append(dotted)
    return keys


def _reference_rows(markdown: str) -> dict[str, str]:
    """key -> its table row, from the generated reference."""
    return {m.group(1): m.group(0) for m in re.finditer(r"^\| `([\w.]+)`\{#[\w.]+\} \|.*$", markdown, re.M)}


def test_the_configuration_reference_lists_every_key_of_the_schema() -> None:
    rows = _reference_rows(markdown_reference())
    keys = _schema_keys(Config)
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
    """A later schema may nest per-component configs (`model.item.cnn.kernel_size`): each is a section."""

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
    assert re.findall(r"^## `([\w.]+)`", text, re.M) == ["model", "model.item", "model.item.cnn"]
    rows = _reference_rows(text)
    assert sorted(rows) == ["model.fields", "model.item.cnn.kernel_size", "model.item.name"]
    assert "| list of str or none | `null` |" in rows["model.fields"]


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
