"""The model schema: each component owns a typed config, so that a key the chosen component does not have is an
error of the schema itself, naming the component and its keys; presets, experiment specs and old run folders
(the flat layout) all validate; a new component is one module and a preset (the Development page's example)."""

from __future__ import annotations

import importlib.util
import logging
import re
import sys
from importlib import resources
from pathlib import Path

import pytest
from conftest import SMALL
from pydantic import BaseModel

from oncerec.cli import main
from oncerec.config.catalog import preset_names
from oncerec.config.loader import build_config, dump_config, load_saved_config
from oncerec.config.reference import markdown_reference
from oncerec.config.schema import ModelConfig
from oncerec.errors import ConfigError
from oncerec.experiment import PRESETS, Spec, load_spec, run_experiment
from oncerec.models.interfaces import ComponentConfig
from oncerec.models.registry import KINDS, REGISTRY
from oncerec.training.pipeline import train
from oncerec.training.trainer import run_diff

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
QUIET = {"progress": False}


def test_a_key_the_chosen_component_lacks_is_an_error_naming_it_and_its_keys(tmp_path: Path, capsys):
    message = (
        "`model.user.gru_mode`: not a key of user encoder `self_attention` (its keys: attention_residual); "
        "a key of user encoder `gru`"
    )
    with pytest.raises(ConfigError) as error:
        build_config(["data=demo-tiny", "model=nrms", "model.user.gru_mode=con"])
    assert str(error.value) == f"invalid configuration: {message}"
    # on the command line: one line, before the data is prepared or a folder made
    argv = [
        "train",
        "data=demo-tiny",
        "model=nrms",
        "model.user.gru_mode=con",
        f"exp.out_dir={tmp_path / 'r'}",
    ]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == f"error: invalid configuration: {message}"
    assert not (tmp_path / "r").exists()
    # a component without keys, a model-wide key under a component, a key of no component
    with pytest.raises(ConfigError, match=r"not a key of predictor `dot` \(it has no keys of its own\)"):
        build_config(["model=nrms", "model.predictor.mlp_layers=[8]"])
    with pytest.raises(ConfigError, match="it is a model-wide key: model.hidden_size"):
        build_config(["model=nrms", "model.item.hidden_size=8"])
    with pytest.raises(
        ConfigError, match=r"`model.item.colour`: not a key of item encoder `cnn` \(its keys: kernel"
    ):
        build_config(["model=naml", "model.item.colour=1"])
    # the flat layout's knobs are not model keys any more: the schema lists the model-wide ones
    with pytest.raises(
        ConfigError, match="unknown key `model.gru_mode`; valid keys: name, item, user, predictor"
    ):
        build_config(["model=lstur", "model.gru_mode=con"])
    # a key of the user's own file, and one of a component given as a mapping
    (tmp_path / "m.yaml").write_text("item: cnn\nuser: {name: attention, num_interests: 3}\n")
    with pytest.raises(
        ConfigError, match="`model.user.num_interests`: not a key of user encoder `attention`"
    ):
        build_config([f"model={tmp_path / 'm.yaml'}"])
    with pytest.raises(ConfigError, match=r"`model.item.lm`: item encoder `lm` needs it"):
        build_config(["model=naml", "model.item=lm"])


def test_a_component_is_chosen_by_name_and_its_keys_set_beneath_it():
    cfg = build_config(["model=lstur", "model.user.gru_mode=con"])
    assert (cfg.model.user.name, cfg.model.user.gru_mode, cfg.model.user.user_id_dropout) == (
        "gru",
        "con",
        0.5,
    )
    # a choice comes before the keys, whatever their order; it replaces the preset's component and its keys
    assert (
        build_config(["model=nrms", "model.user.gru_mode=con", "model.user=gru"]).model.user.gru_mode == "con"
    )
    assert build_config(["model=lstur", "model.user=attention"]).model.user.name == "attention"
    # a key without a choice is one of the preset's (or the default) component
    assert build_config(["model=naml", "model.item.kernel_size=5"]).model.item.kernel_size == 5
    assert build_config(["model.item.attention_residual=true"]).model.item.attention_residual
    # in Python: a name, a mapping, or a config; an assignment is validated as a whole
    model = ModelConfig(user="gru", item={"name": "cnn", "kernel_size": 5})
    assert model.model_dump()["user"] == {"name": "gru", "gru_mode": "ini", "user_id_dropout": 0.5}
    with pytest.raises(ValueError, match="model.item=cnn with model.user=npa"):
        model.user = "npa"
    with pytest.raises(ValueError, match="frozen"):
        model.user.name = "attention"


def test_every_component_config_is_strict_and_describes_every_key():
    for kind in KINDS:
        for name, cls in REGISTRY[kind].items():
            config = cls.config_class
            assert issubclass(config, ComponentConfig), name
            assert config.model_config["extra"] == "forbid", name
            for key, field in config.model_fields.items():
                assert field.description, f"{kind} {name}: {key} has no description"
            assert set(config.model_fields).isdisjoint(set(ModelConfig.model_fields) - {"name"}), name


@pytest.mark.parametrize("preset", preset_names("model"))
def test_every_model_preset_validates_in_the_new_layout(preset: str):
    """Given as a file too (every key the user's own): no key of another component."""
    path = resources.files("oncerec.config") / "presets" / "model" / f"{preset}.yaml"
    by_file, by_name = build_config([f"model={path}"]).model, build_config([f"model={preset}"]).model
    assert by_file.model_dump() | {"name": preset} == by_name.model_dump()


@pytest.mark.parametrize("name", sorted(p.stem for p in PRESETS.glob("*.yaml")))
def test_every_row_of_every_experiment_spec_validates(name: str):
    """The common block, then the row's own keys (the data, made by setup steps, does not matter here)."""
    spec = load_spec(name)
    for row, overrides in spec.rows:
        cfg = build_config([a for a in [*spec.common, *overrides] if not a.startswith("data=")])
        assert cfg.model.item_fields, row


def test_an_experiment_checks_every_row_before_the_first_run(tmp_path: Path):
    rows = {"nrms": ["model=nrms"], "naml": ["model=naml"]}
    bad = Spec(
        name="k", seeds=[1], common=["data=demo-tiny"], axes={"m": {**rows, "x": ["model.user.gru_mode=con"]}}
    )
    with pytest.raises(
        ConfigError, match="experiment row `x`: .*`model.user.gru_mode`: not a key of user encoder"
    ):
        run_experiment(bad, tmp_path, [])
    # a common key (or one after the spec name) that one row's component lacks names that row
    spec = Spec(name="k", seeds=[1], common=["data=demo-tiny", "model.num_heads=4"], axes={"m": rows})
    with pytest.raises(ConfigError, match="experiment row `naml`: .*not a key of item encoder `cnn`"):
        run_experiment(spec, tmp_path, ["model.item.attention_residual=true"])
    assert not (tmp_path / "k").exists()


def test_run_diff_names_nested_keys():
    saved = build_config(["model=naml"])
    # a model-wide size counts whether or not the chosen components have a use for it
    assert run_diff(saved, build_config(["model=naml", "model.num_heads=4"])) == ["model.num_heads: 8 -> 4"]
    assert run_diff(saved, build_config(["model=naml", "model.item.kernel_size=5"])) == [
        "model.item.kernel_size: 3 -> 5"
    ]
    assert run_diff(saved, build_config(["model=naml", "model.item=pool"])) == [
        "model.item.name: 'cnn' -> 'pool'",
        "model.item.kernel_size: 3 -> —",
    ]


@pytest.mark.parametrize(
    "fixture, same_as",
    [
        # written by the flat schema (git show c90ff0e: `oncerec train` with these arguments, its config.yaml)
        (
            "flat-lstur.yaml",
            ["model=lstur", "model.user.gru_mode=con", "model.hidden_size=64", "model.num_heads=4"],
        ),
        (
            "flat-llm-naml.yaml",
            ["model=llm-naml", "model.item.layer=30", "model.item.lora=false", "model.item.pooling=mean"],
        ),
    ],
)
def test_a_run_saved_in_the_flat_layout_loads_in_the_new_one(
    fixture: str, same_as: list[str], tmp_path: Path
):
    saved = load_saved_config(FIXTURES / fixture)
    cfg = build_config(["data=demo-tiny", "exp=quick", *same_as])
    assert saved.model == cfg.model
    assert run_diff(saved, cfg, {"exp.out_dir", "data.tokenizers"}) == []
    # and a config saved now reads back as itself
    (tmp_path / "config.yaml").write_text(dump_config(saved))
    assert load_saved_config(tmp_path / "config.yaml") == saved


def test_an_experiment_reuses_a_run_saved_in_the_flat_layout(tmp_path: Path, caplog):
    """A finished run of an older oncerec in an experiment's folder counts as the same config, or names what
    differs in the new layout."""
    rows = {"lstur": ["model=lstur", "model.user.gru_mode=con"]}
    common = ["data=demo-tiny", "exp=quick", "model.hidden_size=64", "model.num_heads=4"]
    spec = Spec(name="old", seeds=[2023], common=common, axes={"m": rows})
    folder = tmp_path / "old" / "lstur" / "seed-2023"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text((FIXTURES / "flat-lstur.yaml").read_text())
    (folder / "metrics.json").write_text('{"valid": {"auc": 0.61}, "test": {"auc": 0.62}}')
    caplog.set_level(logging.INFO, logger="oncerec")
    table = run_experiment(spec, tmp_path, [])
    assert "finished, skipped" in caplog.messages[-1] and "| lstur | 1 | 0.6200 |" in table.read_text()
    with pytest.raises(ConfigError, match=r"another config .*\(model.user.gru_mode: 'con' -> 'ini'\)"):
        run_experiment(spec, tmp_path, ["model.user.gru_mode=ini"])


def test_a_flat_config_with_an_unknown_component_is_refused_naming_the_file(tmp_path: Path):
    text = (FIXTURES / "flat-lstur.yaml").read_text().replace("  user: gru\n", "  user: lstm\n")
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(
        ConfigError, match=r"config.yaml: invalid configuration: model.user=lstm: unknown user encoder"
    ):
        load_saved_config(tmp_path / "config.yaml")


# ---------------------------------------------------------------------------------- adding a model (the docs)


def _blocks(language: str) -> list[str]:
    """The ```language blocks of the Development page's section on adding a model."""
    page = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    section = page.split("\n## Adding a model\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


@pytest.fixture
def bilinear(tmp_path: Path):
    """The page's component module, imported from a file of its own (registered while the test runs)."""
    path = tmp_path / "bilinear.py"
    path.write_text(_blocks("python")[0])
    spec = importlib.util.spec_from_file_location("bilinear", path)
    module = importlib.util.module_from_spec(spec)
    before = {kind: dict(table) for kind, table in REGISTRY.items()}
    spec.loader.exec_module(module)
    yield module
    for kind, table in REGISTRY.items():
        table.clear()
        table.update(before[kind])
    sys.modules.pop("bilinear", None)


@pytest.mark.integration
def test_the_development_pages_new_model_is_one_module_and_a_preset_and_trains(
    bilinear, tiny, tmp_path: Path
):
    assert REGISTRY["predictor"]["bilinear"] is bilinear.BilinearPredictor
    preset = tmp_path / "bilinear-nrms.yaml"
    preset.write_text(_blocks("yaml")[0])
    args = ["data=demo-tiny", f"model={preset}", "exp=quick", *SMALL, "exp.max_steps=1"]
    cfg = build_config([*args, "model.predictor.rank=8", f"exp.out_dir={tmp_path / 'run'}"])
    assert isinstance(cfg.model.predictor, bilinear.BilinearConfig) and cfg.model.predictor.rank == 8
    _, metrics = train(cfg, **QUIET)
    assert 0 <= metrics["test"]["auc"] <= 1
    assert (tmp_path / "run" / "config.yaml").read_text().count("name: bilinear") == 1
    # its key is checked like any other, and the reference shows it
    with pytest.raises(ConfigError, match=r"not a key of predictor `bilinear` \(its keys: rank\)"):
        build_config([*args, "model.predictor.mlp_layers=[8]"])
    assert (
        "| `model.predictor.rank`{#model.predictor.bilinear.rank} | int, ≥ 1 | `16` |" in markdown_reference()
    )


def test_a_component_must_subclass_its_kind_and_name_a_component_config():
    from oncerec.models.registry import register

    class Loose(BaseModel):
        pass

    with pytest.raises(TypeError, match="subclass Predictor"):
        register("predictor", "loose")(Loose)
    assert "loose" not in REGISTRY["predictor"]
