"""A pretrained transformer cut at layer k: the bottom (layers 0..k-1, frozen, run once into the DIRE cache)
and the top (layers k..L-1 and the final norm, run in training).

Two families are supported, told apart by their module layout rather than by class name, so every model of a
family works (BERT, RoBERTa, MiniLM, ...; LLaMA, Mistral, Qwen2, SmolLM, ...):

- `encoder`: `embeddings` + `encoder.layer` (BERT-like). The embedding module adds position and type
  embeddings to its input, so the top is run with that module replaced by a pass-through.
- `decoder`: `embed_tokens` + `layers` + `norm` (LLaMA-like). Positions are rotary, inside attention, so
  the top is the same model fed `inputs_embeds`.

Both parts go through the model's own public `forward` (its own attention masks and positions); the bottom's
states are taken by forward pre-hooks on layer k, and the forward stops there.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor, nn

from oncerec.errors import ConfigError
from oncerec.lm.packaged import resolve_model_path
from oncerec.paths import cache_root, sha256_file, write_text_atomic

DEFAULT_LORA_TARGETS = {"encoder": ["query", "value"], "decoder": ["q_proj", "v_proj"]}


def lm_dtype(name: str) -> torch.dtype:
    """`model.lm_dtype` as a torch type; `auto`: bfloat16 on a GPU (half the memory of float32, and the type
    large models are trained in), float32 on CPU (where bfloat16 matmuls are slow on most processors)."""
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return getattr(torch, name)


def load_lm(name: str, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The base model (no task head) of a local or packaged Hugging Face model, in eval mode."""
    model = load_base_model(name, dtype)
    family(model)  # refuse unsupported layouts at load time
    return model.eval()


def load_base_model(name: str, dtype: torch.dtype = torch.float32, auto: str = "AutoModel") -> nn.Module:
    """`<auto>.from_pretrained` (a transformers auto class: the base model by default) from local files only,
    without transformers' per-tensor progress bar (a local load takes a fraction of a second, and the bar
    would break `--quiet` output)."""
    import transformers
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return getattr(transformers, auto).from_pretrained(
            str(resolve_model_path(name)), local_files_only=True, dtype=dtype
        )
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def family(model: nn.Module) -> str:
    if hasattr(model, "embeddings") and hasattr(getattr(model, "encoder", None), "layer"):
        return "encoder"
    if all(hasattr(model, a) for a in ("embed_tokens", "layers", "norm")):
        return "decoder"
    raise ConfigError(
        f"unsupported language model {type(model).__name__}: oncerec runs BERT-like models (embeddings + "
        "encoder.layer) and LLaMA-like models (embed_tokens + layers + norm)"
    )


def blocks(model: nn.Module) -> nn.ModuleList:
    return model.encoder.layer if family(model) == "encoder" else model.layers


def fingerprint(name: str) -> str:
    """Identifies a model's weights by their content: its config plus the name and sha256 of each weight
    file (two folders of the same name and file sizes but other weights differ)."""
    path = resolve_model_path(name)
    h = hashlib.sha256((path / "config.json").read_bytes())
    for f in sorted(path.iterdir()):
        if f.suffix in (".safetensors", ".bin"):
            h.update(f"{f.name}:{file_sha256(f)}".encode())
    return h.hexdigest()[:16]


def file_sha256(path: Path) -> str:
    """sha256 of a file, memoised by its resolved path, size and mtime in `$ONCEREC_CACHE/file-hashes.json`:
    a 7B model's 14+ GB are read once, not on every run, and a rewritten file is hashed again."""
    path = path.resolve()
    st = path.stat()
    key, stamp = str(path), [st.st_size, st.st_mtime_ns]
    memo_file = cache_root() / "file-hashes.json"
    found = _load_memo(memo_file).get(key, {})
    if found.get("stamp") == stamp:
        return found["sha256"]
    digest = sha256_file(path)
    memo = _load_memo(memo_file)  # again: another process may have added entries while this one hashed
    memo[key] = {"stamp": stamp, "sha256": digest}
    # atomic replace: a concurrent writer may drop our entry (a re-hash later), never corrupt the file
    memo_file.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(memo_file, json.dumps(memo, indent=1))
    return digest


def _load_memo(memo_file: Path) -> dict:
    try:
        return json.loads(memo_file.read_text())
    except (OSError, ValueError):  # none yet, or unreadable: start over (it is only a memo)
        return {}


class _Stop(Exception):
    pass


@torch.no_grad()
def bottom_states(model: nn.Module, ids: Tensor, mask: Tensor, layers: list[int]) -> dict[int, Tensor]:
    """Hidden states entering each of `layers` ([B, L, D] each); layers above the highest one do not run.
    Layer n (the model's number of layers) is the model's output: the final token states, after the final norm
    of a LLaMA-like model (every layer frozen: DIRE's frozen-LLM features)."""
    found: dict[int, Tensor] = {}
    stack = blocks(model)
    n = len(stack)
    hooked = sorted(set(layers) - {n})
    last = None if n in layers else max(hooked)

    def hook(k: int):
        def grab(module, args, kwargs):
            found[k] = args[0] if args else kwargs["hidden_states"]
            if k == last:
                raise _Stop

        return grab

    handles = [stack[k].register_forward_pre_hook(hook(k), with_kwargs=True) for k in hooked]
    try:
        found[n] = run_top(model, ids, mask, from_states=False)  # reached only when layer n is asked for
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    return found


class _PassThrough(nn.Module):
    """Stands in for a BERT-like embedding module: the top's input is already a hidden state."""

    def forward(self, inputs_embeds: Tensor, **_) -> Tensor:
        return inputs_embeds


def keep_top(model: nn.Module, k: int) -> nn.Module:
    """Drop layers 0..k-1 (and the input embeddings) in place; the model then takes hidden states entering
    layer k as `inputs_embeds`. k=0 keeps everything (the model takes token ids)."""
    if k == 0:
        return model
    n = len(blocks(model))
    if not 0 < k < n:
        raise ConfigError(f"model.layer={k}: the model has {n} layers; valid: 0..{n - 1}")
    top = nn.ModuleList(list(blocks(model))[k:])
    if family(model) == "encoder":
        model.encoder.layer = top
        model.embeddings = _PassThrough()
    else:
        model.layers = top
        model.embed_tokens = None
    return model


@contextmanager
def top_only(model: nn.Module, k: int):
    """`keep_top(model, k)`, undone on exit: the parity check runs the top of a model that keeps its
    bottom."""
    if family(model) == "encoder":
        points = [(model.encoder, "layer"), (model, "embeddings")]
    else:
        points = [(model, "layers"), (model, "embed_tokens")]
    saved = [(owner, name, getattr(owner, name)) for owner, name in points]
    keep_top(model, k)
    try:
        yield model
    finally:
        for owner, name, module in saved:
            setattr(owner, name, module)


# Relative difference allowed between the top run on cached states and the full forward pass, by the coarser
# of the model's and the cache's types: rounding the states to float16 / bfloat16 costs about 2e-4 / 2e-3
# (MiniLM, SmolLM2-135M); a model that transforms its inputs_embeds (Granite's embedding_multiplier: 3e-2 on a
# random tiny model whose final norm hides most of it) is caught in float32 with room to spare.
PARITY_TOL = {"float32": 1e-4, "float16": 5e-3, "bfloat16": 2e-2}


def parity_tol(model: nn.Module, cache_dtype: str) -> float:
    return max(PARITY_TOL[str(model.dtype).removeprefix("torch.")], PARITY_TOL[cache_dtype])


@torch.no_grad()
def check_parity(model: nn.Module, ids: Tensor, mask: Tensor, k: int, states: Tensor, tol: float) -> None:
    """Refuse a model whose layers k..L-1, fed the hidden states entering layer k (`states`), do not give its
    full forward pass over the token ids. The module layout alone does not prove it: a model's forward may
    transform `inputs_embeds` on the way in (Granite multiplies them by `embedding_multiplier`, ELECTRA
    projects them), and DIRE would silently train on something else than the model."""
    mask = mask.bool()
    name = type(model).__name__
    full = run_top(model, ids, mask, from_states=False).float()[mask]
    if k == len(blocks(model)):  # the final states themselves: the check is that they were kept faithfully
        diff = ((states.float().to(full.device)[mask] - full).norm() / full.norm().clamp_min(1e-12)).item()
        if not diff <= tol:
            raise ConfigError(
                f"{name}: the cached final states differ from its output ({diff:.2g} > {tol:g})"
            )
        return
    try:
        with top_only(model, k):
            top = run_top(model, states.to(model.device, model.dtype), mask, from_states=True).float()[mask]
    except Exception as e:  # e.g. ELECTRA's projection meets states of the wrong width
        raise ConfigError(f"{name} cannot run its layers {k}.. on cached states (DIRE): {e}") from e
    diff = ((top - full).norm() / full.norm().clamp_min(1e-12)).item()
    if not diff <= tol:  # also refuses NaN
        raise ConfigError(
            f"{name}: its layers {k}.. run on the cached states entering layer {k} do not give its full "
            f"forward pass (relative difference {diff:.2g}, allowed {tol:g}): its forward transforms its "
            "input embeddings (a multiplier, a projection), so DIRE cannot train it from a cache; use "
            "model.layer=0 or another model"
        )


def run_top(model: nn.Module, x: Tensor, mask: Tensor, from_states: bool) -> Tensor:
    """Top-layer token states [B, L, D] from token ids (k=0) or from hidden states entering layer k."""
    kwargs = {"inputs_embeds": x.to(model.dtype)} if from_states else {"input_ids": x}
    if family(model) == "decoder":
        kwargs["use_cache"] = False  # decoders default to building a KV cache: memory for nothing here
    return model(attention_mask=mask.long(), **kwargs).last_hidden_state


def add_lora(model: nn.Module, r: int, alpha: float, dropout: float, targets: list[str]) -> None:
    """LoRA adapters (peft) on `targets` of the model as it is now (after keep_top: the running layers only);
    every other weight is frozen."""
    from peft import LoraConfig, inject_adapter_in_model

    targets = targets or DEFAULT_LORA_TARGETS[family(model)]
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        raise ConfigError(
            f"model.lora_targets: no module named {missing[0]} in {type(model).__name__}; "
            f"linear layers there: {', '.join(sorted(_linear_names(model)))}"
        )
    for p in model.parameters():
        p.requires_grad_(False)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets)
    inject_adapter_in_model(config, model)
    # peft makes the adapters in the base weights' type; bfloat16 adapters would lose AdamW's small updates
    # (peft casts its inputs to the adapter's type and the result back)
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.data = p.data.float()


def _linear_names(model: nn.Module) -> set[str]:
    return {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)}
