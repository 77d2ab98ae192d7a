"""MkDocs hook: the configuration reference and the list of presets are generated from the package when the
site is built (no hand-kept copy). The generators live in `oncerec.config.reference`."""

from __future__ import annotations

import sys
from pathlib import Path

from mkdocs.structure.files import File, Files

# Document the source tree being built, whichever oncerec the environment has installed.
SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from oncerec.config.reference import markdown_presets, markdown_reference  # noqa: E402

REFERENCE = """# Configuration reference

Every key of the configuration groups, generated from the typed schema (`oncerec/config/schema.py`; the `model`
group from `oncerec/models/config.py` and each component's config class). Set a key with `group.key=value` on
the command line (the value is parsed as YAML: `model.item_fields=[title,abstract]`) or in a YAML file of the
group; an unknown key or a wrong type is an error that names the key. A component is chosen by name
(`model.user=gru`) and its keys are set beneath it (`model.user.gru_mode=con`): the sections `model.item=...`,
`model.user=...` and `model.predictor=...` below list each component's keys. See
[Training](../training.md#configuration) for how presets, files and keys combine, and [Presets](presets.md) for
the packaged values.

"""

PRESETS = """# Presets

The packaged presets of each configuration group (`group=NAME`) and the packaged experiment specs
(`oncerec experiment NAME`), generated from their YAML files (`oncerec/config/presets/<group>/`): the comment at
the top of each file and the keys it sets. A key a preset does not set keeps its default (see the
[configuration reference](configuration.md)).

"""


def on_files(files: Files, config) -> Files:
    for uri, text in (
        ("reference/configuration.md", REFERENCE + markdown_reference()),
        ("reference/presets.md", PRESETS + markdown_presets()),
    ):
        files.append(File.generated(config, uri, content=text))
    return files
