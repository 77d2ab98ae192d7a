"""Each component owns its knobs: it declares the ModelConfig fields it reads (`reads`), and a key given
explicitly that none of the chosen components reads is an error naming those that do (`check_knobs`)."""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import sys
import textwrap
from importlib import resources
from pathlib import Path

import pytest

from oncerec.cli import build_parser
from oncerec.config.catalog import preset_names
from oncerec.config.loader import build_config, dump_config, load_saved_config
from oncerec.config.schema import ModelConfig
from oncerec.errors import ConfigError
from oncerec.experiment import PRESETS, Spec, load_spec, run_experiment
from oncerec.models.recommender import Recommender, check_knobs, chosen_parts, knobs_read
from oncerec.models.registry import REGISTRY
from oncerec.models.user.attributes import UserAttributes
from oncerec.training.build import build_recommender, language_model, language_model_inputs
from oncerec.training.pipeline import train
from oncerec.training.trainer import run_diff

# What check_knobs consults on its own; any other class a part hands the config to belongs to that part.
PARTS = {Recommender, UserAttributes, *(cls for table in REGISTRY.values() for cls in table.values())}
# Every class of the models package that declares what it reads (the registry imports every component).
DECLARING = sorted(
    (
        cls
        for name, module in list(sys.modules.items())
        if name.startswith("oncerec.models.")
        for cls in vars(module).values()
        if inspect.isclass(cls) and cls.__module__ == name and "reads" in vars(cls)
    ),
    key=lambda cls: cls.__qualname__,
)


def _config_params(fn) -> frozenset[str]:
    return frozenset(p for p, a in fn.__annotations__.items() if "ModelConfig" in str(a))


def _is_config(node: ast.AST, names: frozenset[str]) -> bool:
    """`cfg` (a name holding the config) or `self.cfg`."""
    if isinstance(node, ast.Name):
        return node.id in names
    return isinstance(node, ast.Attribute) and node.attr == "cfg" and ast.unparse(node.value) == "self"


@functools.cache
def _function_reads(fn, names: frozenset[str], owner: type) -> frozenset[str]:
    """The config fields `fn` reads from the config it holds as `names`, following every call it hands the
    config to (`owner`: the class whose `self` it runs on)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    imported = {
        alias.asname or alias.name: (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assigned = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_config(node.value, names):
            found.add(node.attr)
        if not isinstance(node, ast.Call):
            continue
        positions = [i for i, a in enumerate(node.args) if _is_config(a, names)]
        keywords = [k.arg for k in node.keywords if _is_config(k.value, names)]
        if not positions and not keywords:
            continue
        func, shift = node.func, 0
        if isinstance(func, ast.Attribute) and ast.unparse(func.value) == "super()":
            continue  # a base class's method: read with the class's own
        if isinstance(func, ast.Attribute) and ast.unparse(func.value) == "self":
            if not hasattr(owner, func.attr):
                continue  # set by each subclass (FieldItemEncoder.text_encoder), which is checked on its own
            target, shift = getattr(owner, func.attr), 1
        elif isinstance(func, ast.Name) and func.id in imported:
            module, name = imported[func.id]
            target = getattr(importlib.import_module(module), name)
        elif isinstance(func, ast.Name) and func.id in fn.__globals__:
            target = fn.__globals__[func.id]
        elif isinstance(func, ast.Name) and func.id in assigned:
            continue  # a component looked up by name (the Recommender's): checked as a part
        else:
            raise AssertionError(f"{fn.__qualname__}: cannot follow the config into `{ast.unparse(func)}`")
        if inspect.isclass(target):
            if target not in PARTS:
                found |= _class_reads(target)
            continue
        params = list(inspect.signature(target).parameters)
        given = frozenset({params[i + shift] for i in positions} | set(keywords))
        found |= _function_reads(target, given, owner)
    return frozenset(found)


def _class_reads(cls: type) -> frozenset[str]:
    """What the methods of `cls` and of its oncerec bases read from the config."""
    found: set[str] = set()
    for klass in cls.__mro__:
        if klass.__module__.startswith("oncerec."):
            for fn in vars(klass).values():
                if inspect.isfunction(fn):
                    found |= _function_reads(fn, _config_params(fn), cls)
    return frozenset(found)


@pytest.mark.parametrize("cls", DECLARING, ids=lambda c: c.__qualname__)
def test_every_config_field_a_component_reads_is_in_its_reads(cls: type):
    missing = _class_reads(cls) - cls.reads
    assert not missing, f"{cls.__qualname__} reads {sorted(missing)} without declaring them in `reads`"
    assert cls.reads <= set(ModelConfig.model_fields), f"{cls.__qualname__}: not ModelConfig fields"


def test_the_analysis_sees_delegated_reads():
    """It follows the config into text encoders and the DIRE cache's functions (what `reads` must cover)."""
    assert {"kernel_size", "dropout"} <= _class_reads(REGISTRY["item"]["cnn"])
    dire = _dire_reads()
    assert {"cache_dtype", "dire_cache", "cache_layers", "lm_dtype"} <= dire
    assert len(DECLARING) > len(PARTS)  # the text encoders too


def test_what_the_builder_reads_for_the_model_its_parts_declare():
    """`train/build.py` reads the data for the Recommender and for DIRE's encoder (its language model and
    cache): knobs of theirs, which check_knobs must count as read when they are chosen."""
    lm = REGISTRY["item"]["lm"]
    assert _dire_reads() <= lm.reads | {"item"}  # `item`: whether the step has a language model to load
    wiring = _function_reads(build_recommender, frozenset({"cfg"}), Recommender)
    assert wiring - _dire_reads() <= Recommender.reads


def _dire_reads() -> frozenset[str]:
    """What the DIRE step (the language model and its cache) and the model's DIRE inputs read."""
    return _function_reads(language_model, frozenset({"cfg"}), Recommender) | _function_reads(
        language_model_inputs, frozenset({"cfg"}), Recommender
    )


def test_every_knob_is_read_by_some_component():
    read = frozenset().union(*(part.reads for part in PARTS))
    assert set(ModelConfig.model_fields) <= read, sorted(set(ModelConfig.model_fields) - read)


def test_an_explicit_key_no_chosen_component_reads_is_an_error_naming_its_readers(tmp_path: Path):
    cfg = build_config(
        ["data=demo-tiny", "model=nrms", "model.gru_mode=con", f"exp.out_dir={tmp_path / 'r'}"]
    )
    message = (
        "model.gru_mode: read by user encoder `gru` only; the chosen components (item=attention, "
        "user=self_attention, predictor=dot) do not read it"
    )
    with pytest.raises(ConfigError) as error:
        train(cfg, progress=False, log=lambda *_: None)  # before the data is prepared or a folder made
    assert str(error.value) == message and not (tmp_path / "r").exists()
    with pytest.raises(
        ConfigError, match=r"model.num_heads: read by item encoders `attention`, `fastformer`; "
    ):
        check_knobs(build_config(["model=naml", "model.num_heads=4"]))
    # a key of the user's own file is as explicit as one on the command line
    (tmp_path / "m.yaml").write_text("item: cnn\nuser: attention\nnum_interests: 3\n")
    with pytest.raises(ConfigError, match="model.num_interests: read by user encoder `poly`; predictor"):
        check_knobs(build_config([f"model={tmp_path / 'm.yaml'}"]))
    # the user-attribute plugin reads its own
    check_knobs(build_config(["model=dnn", "model.user_attributes=true", "model.attention_hidden=8"]))
    assert UserAttributes in chosen_parts(build_config(["model.user_attributes=true"]).model)


def test_preset_and_shared_keys_are_not_errors():
    # a preset's keys serve its own components: another user encoder just does not read gru_mode
    check_knobs(build_config(["model=lstur", "model.user=attention"]))
    cfg = build_config(
        ["model=naml", "model.hidden_size=8"], shared=["model.num_heads=4", "model.hidden_size=4"]
    )
    check_knobs(cfg)
    assert (cfg.model.num_heads, cfg.model.hidden_size) == (4, 8)  # the run's own key wins
    assert cfg.explicit == {"model.hidden_size"}
    # on the command line (`main` takes the overrides after an option too)
    argv = ["train", "model=naml", "--shared", "model.num_heads=4", "exp.lr=0.1"]
    args, later = build_parser().parse_known_args(argv)
    assert args.shared == ["model.num_heads=4"] and [*args.overrides, *later] == ["model=naml", "exp.lr=0.1"]


@pytest.mark.parametrize("preset", preset_names("model"))
def test_model_presets_set_only_keys_their_components_read(preset: str):
    # given as a file, every key of the preset is explicit
    path = resources.files("oncerec.config") / "presets" / "model" / f"{preset}.yaml"
    check_knobs(build_config([f"model={path}"]))


@pytest.mark.parametrize("name", sorted(p.stem for p in PRESETS.glob("*.yaml")))
def test_experiment_specs_pass_the_knob_checks(name: str):
    """Every row's own keys are read by its components, and every common key by some row (the data, made by
    setup steps, does not matter here)."""
    spec = load_spec(name)
    keep = [a for a in spec.common if not a.startswith("data=")]
    configs = [
        build_config([a for a in row if not a.startswith("data=")], shared=keep) for _, row in spec.rows
    ]
    for cfg in configs:
        check_knobs(cfg)
    read = frozenset().union(*(knobs_read(cfg.model) for cfg in configs))
    unread = [a for a in keep if a.startswith("model.") and a.split("=")[0].split(".")[1] not in read]
    assert not unread, f"{name}: common keys no run reads: {unread}"


def test_experiments_check_every_run_before_the_first_one(tmp_path: Path):
    rows = {"nrms": ["model=nrms"], "naml": ["model=naml"]}
    spec = Spec(name="k", seeds=[1], common=["data=demo-tiny", "model.num_heads=4"], axes={"m": rows})
    bad = Spec(
        name="k", seeds=[1], common=["data=demo-tiny"], axes={"m": {**rows, "x": ["model.gru_mode=con"]}}
    )
    with pytest.raises(ConfigError, match="model.gru_mode: read by user encoder `gru` only"):
        run_experiment(bad, tmp_path, [], log=lambda _: None)
    # a shared key some run reads is fine (nrms reads attention_residual), one no run reads is an error
    with pytest.raises(ConfigError, match="model.gru_mode: given to every run of the experiment, but no run"):
        run_experiment(
            spec, tmp_path, ["model.attention_residual=true", "model.gru_mode=con"], log=lambda _: None
        )
    assert not (tmp_path / "k").exists()


def test_run_diff_ignores_knobs_no_component_reads(tmp_path: Path):
    (tmp_path / "config.yaml").write_text(dump_config(build_config(["model=naml"])))
    saved = load_saved_config(tmp_path / "config.yaml")
    assert run_diff(saved, build_config(["model=naml", "model.num_heads=4"])) == []
    assert run_diff(saved, build_config(["model=naml", "model.kernel_size=5"])) == [
        "model.kernel_size: 3 -> 5"
    ]
