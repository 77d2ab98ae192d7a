"""The one-way order of imports: a module imports its own package and packages of lower layers, never a
higher layer or another package of its own layer. Lazy imports (inside functions) count: they are
dependencies all the same. The docs' Development page draws the same map."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first. A module belongs to the longest prefix that names it: `oncerec.eval.metrics` (the ranking
# formulas, numpy only) sits below the configs that name its metrics, the rest of `oncerec.eval` (slices,
# leaderboard files, tables) above the data it reads.
LAYERS: list[tuple[str, ...]] = [
    ("oncerec.errors",),
    # the cache folder, atomic writes; optional packages; where messages go
    ("oncerec.paths", "oncerec.extras", "oncerec.logs", "oncerec.sqlite"),
    ("oncerec.eval.metrics",),
    # the raw data formats: each one's keys (the data group's schema), files and reader
    ("oncerec.data.formats",),
    ("oncerec.lm",),  # language-model files and backbones
    # recommenders: sizes and tensors in, scores out (no file, no dataset); each component with its config
    ("oncerec.models",),
    ("oncerec.config",),  # the run's configuration groups (the model group is the models package's)
    ("oncerec.data",),  # readers, prepare, datasets, batches, the demo data
    # the cache of a language model's frozen layers; LLM generation (which knows no recommender)
    ("oncerec.dire", "oncerec.genre"),
    ("oncerec.eval",),
    # encoding items and users, ranking: the one inference path of evaluation, recommend and serving
    ("oncerec.inference",),
    ("oncerec.training",),
    # export and serving; grids of training runs (each a CLI subprocess: no import of the CLI)
    ("oncerec.serve", "oncerec.experiment"),
    ("oncerec.run",),  # a trained run as the API hands it out (export needs serving)
    ("oncerec.api",),  # one function per job
    ("oncerec.cli",),  # the commands, a module per group: each calls the library and prints
]


def _unit(module: str) -> tuple[int, str]:
    """(layer, the prefix it matched) of a module name."""
    best = max(
        (
            (n, p)
            for n, layer in enumerate(LAYERS)
            for p in layer
            if module == p or module.startswith(p + ".")
        ),
        key=lambda x: len(x[1]),
        default=None,
    )
    assert best is not None, (
        f"{module} is in no layer: add it to LAYERS (and to the map on docs/development.md)"
    )
    return best


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every oncerec import of a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("oncerec.")]
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").startswith("oncerec.")
        ):
            # `from oncerec.eval import metrics` imports the module oncerec.eval.metrics
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(name: str) -> str:
    """`oncerec.x.y.NAME` -> the module it comes from (the longest prefix that is a file or a package)."""
    parts = name.split(".")
    while parts:
        base = SRC.joinpath(*parts)
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return ".".join(parts)
        parts.pop()
    raise AssertionError(f"{name} is not an oncerec module")


def test_no_module_imports_a_higher_layer_or_a_sibling():
    wrong = []
    for path in sorted((SRC / "oncerec").rglob("*.py")):
        me = _module_name(path)
        if me == "oncerec":
            continue
        layer, unit = _unit(me)
        for line, name in _imports(path):
            other_layer, other_unit = _unit(_resolve(name))
            if other_unit != unit and other_layer >= layer:
                wrong.append(f"{path.relative_to(SRC)}:{line}: {me} ({unit}) imports {name} ({other_unit})")
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_the_rule_catches_an_upward_import(tmp_path: Path):
    """The check itself: a model importing the trainer is refused."""
    assert _unit("oncerec.models.lstur") < _unit("oncerec.training.trainer")
    assert (
        _unit("oncerec.eval.metrics")[0] < _unit("oncerec.config.schema")[0] < _unit("oncerec.eval.slices")[0]
    )
    assert _unit("oncerec.models.config")[0] < _unit("oncerec.config.schema")[0]
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from oncerec.training.trainer import Trainer\n")
    assert _imports(f) == [(2, "oncerec.training.trainer.Trainer")]
    assert _resolve("oncerec.training.trainer.Trainer") == "oncerec.training.trainer"
