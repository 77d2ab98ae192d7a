"""A pretrained transformer cut at layer k: the bottom (layers 0..k-1, frozen, run once into the DIRE cache)
and the top (layers k..L-1 and the final norm, run in training).

Models are told apart by their module layout rather than by class name, so every model of a layout works.
Each layout is one row of `LAYOUTS` (data, not a code path): where the layer stack is, the final norm, and
the modules of the forward's input step (token ids -> the states entering layer 0), each with what stands in
for it in the top, which is fed the cached states as `inputs_embeds`:

- `bert`: `embeddings` + `encoder.layer` (BERT, RoBERTa, MiniLM, ...). The embedding module adds position
  and type embeddings to whatever it is given: a pass-through in the top.
- `opt`: `decoder.embed_tokens` + `decoder.layers` + `decoder.final_layer_norm` (OPT). The decoder's forward
  projects `inputs_embeds` (`project_in`, OPT-350m) and adds learned positions to them: the top has neither
  (the cached states already hold both). A `project_out` after the final norm runs in the top and sets the
  output width (`output_size`). The final norm may be absent (OPT-350m normalises after each layer).
- `phi`: `embed_tokens` + `layers` + `final_layernorm` (Phi-1, Phi-1.5, Phi-2; partial rotary positions,
  inside attention). The forward drops out `inputs_embeds` (`embd_pdrop`): an identity in the top, so that
  training does not drop out the cached states.
- `llama`: `embed_tokens` + `layers` + `norm` (LLaMA, Mistral, Qwen2, GLM, Gemma, SmolLM, ...). Positions are
  rotary, inside attention, so the top is the same model fed `inputs_embeds`. Gemma scales its embeddings by
  sqrt(hidden_size) in its embedding module (transformers 5: `GemmaTextScaledWordEmbedding`), which is in
  the bottom: the cached states are scaled once and the top does not scale them again. transformers 4's
  `GemmaModel.forward` scaled `inputs_embeds` itself; its top would scale twice, and `check_parity` refuses
  it (as it refuses Granite's `embedding_multiplier`).

Both parts go through the model's own public `forward` (its own attention masks and positions); the bottom's
states are taken by forward pre-hooks on layer k, and the forward stops there. The layout alone does not prove
that the top reproduces the model: `check_parity` runs both before a cache is built or read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from oncerec.errors import ConfigError
from oncerec.lm.packaged import resolve_model_path
from oncerec.paths import cache_root, sha256_file, write_text_atomic


class _PassThrough(nn.Module):
    """Stands in for a BERT-like embedding module: the top's input is already a hidden state."""

    def forward(self, inputs_embeds: Tensor, **_) -> Tensor:
        return inputs_embeds


class _NoPositions(nn.Module):
    """Stands in for OPT's learned position embeddings: the cached states already have them added."""

    def forward(self, *_, **__) -> Tensor:
        return torch.zeros(())  # a 0-d tensor adds nothing and keeps the states' type


@dataclass(frozen=True)
class Layout:
    """Where one family of models keeps its parts, as dotted attribute paths from the base model."""

    name: str
    kind: str  # "encoder" (BERT-like) or "decoder" (causal: run without a KV cache, lm_norm=auto)
    models: str  # examples, for messages
    blocks: str  # the layer stack (an nn.ModuleList)
    final_norm: str | None  # the norm after the last layer (runs in the top); the attribute may hold None
    # the forward's steps from token ids to the states entering layer 0, with what stands in for each in the
    # top (None: dropped, e.g. the token embeddings: the forward skips them when given inputs_embeds, and
    # a large vocabulary's matrix is memory for nothing)
    input_step: Mapping[str, Callable[[], nn.Module] | None]
    output_proj: str | None = None  # a projection after the final norm: the output width is its out_features
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")  # the attention query and value projections

    @property
    def paths(self) -> list[str]:
        """The attributes a model must have to be of this layout (their values may be None)."""
        first = next(iter(self.input_step))
        rest = [p for p in (self.final_norm, self.output_proj, *self.input_step) if p and p != first]
        return [first, self.blocks, *rest]

    def describe(self) -> str:
        shown = [next(iter(self.input_step)), self.blocks] + ([self.final_norm] if self.final_norm else [])
        return f"{self.name}: {' + '.join(shown)} ({self.models})"


# Tried in order; the first whose attributes a model has is its layout. Granite and ELECTRA match `llama`
# and `bert` but transform inputs_embeds in their forward: `check_parity` refuses them.
LAYOUTS: tuple[Layout, ...] = (
    Layout(
        "bert",
        "encoder",
        "BERT, RoBERTa, MiniLM, ...",
        blocks="encoder.layer",
        final_norm=None,  # post-norm layers: each layer ends with its own norm
        input_step={"embeddings": _PassThrough},
        lora_targets=("query", "value"),
    ),
    Layout(
        "opt",
        "decoder",
        "OPT",
        blocks="decoder.layers",
        final_norm="decoder.final_layer_norm",  # None in OPT-350m (do_layer_norm_before=False)
        input_step={
            "decoder.embed_tokens": None,
            # OPT-350m's 512-wide embeddings -> 1024; None is what OPT itself holds when there is none
            "decoder.project_in": None,
            "decoder.embed_positions": _NoPositions,
        },
        output_proj="decoder.project_out",
    ),
    Layout(
        "phi",
        "decoder",
        "Phi-1, Phi-1.5, Phi-2",
        blocks="layers",
        final_norm="final_layernorm",
        input_step={"embed_tokens": None, "embed_dropout": nn.Identity},
    ),
    Layout(
        "llama",
        "decoder",
        "LLaMA, Mistral, Qwen2, GLM, Gemma, SmolLM, ...",
        blocks="layers",
        final_norm="norm",
        input_step={"embed_tokens": None},
    ),
)

# by layout name (`model.item.lora_targets` empty: these)
DEFAULT_LORA_TARGETS = {row.name: list(row.lora_targets) for row in LAYOUTS}


def lm_dtype(name: str) -> torch.dtype:
    """`model.item.dtype` as a torch type; `auto`: bfloat16 on a GPU (half the memory of float32, and the type
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


def _has(obj: object, path: str) -> bool:
    for name in path.split("."):
        if not hasattr(obj, name):
            return False
        obj = getattr(obj, name)
    return True


def _get(obj: object, path: str):
    for name in path.split("."):
        obj = getattr(obj, name)
    return obj


def _set(obj: object, path: str, value: nn.Module | None) -> None:
    owner, _, name = path.rpartition(".")
    setattr(_get(obj, owner) if owner else obj, name, value)


def layout(model: nn.Module) -> Layout:
    """The model's row of `LAYOUTS`; a ConfigError naming every supported layout if it has none."""
    for candidate in LAYOUTS:
        if all(_has(model, p) for p in candidate.paths):
            return candidate
    raise ConfigError(
        f"unsupported language model {type(model).__name__}: oncerec runs models of these module layouts: "
        + "; ".join(candidate.describe() for candidate in LAYOUTS)
    )


def family(model: nn.Module) -> str:
    """`encoder` (BERT-like) or `decoder` (causal: OPT, Phi, LLaMA-like)."""
    return layout(model).kind


def blocks(model: nn.Module) -> nn.ModuleList:
    return _get(model, layout(model).blocks)


def output_size(model: nn.Module) -> int:
    """Width of the model's output token states: hidden_size, unless a projection follows the final norm
    (OPT-350m: 1024 -> 512)."""
    path = layout(model).output_proj
    proj = _get(model, path) if path else None
    return proj.out_features if proj is not None else model.config.hidden_size


def state_size(model: nn.Module, k: int) -> int:
    """Width of the states entering layer k (k = the number of layers: the model's output)."""
    return output_size(model) if k == len(blocks(model)) else model.config.hidden_size


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
    of a decoder (every layer frozen: DIRE's frozen-LLM features)."""
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


def keep_top(model: nn.Module, k: int) -> nn.Module:
    """Drop layers 0..k-1 in place and put the layout's stand-ins for its input step (embeddings, positions,
    projections, dropout) in; the model then takes hidden states entering layer k as `inputs_embeds`. k=0
    keeps everything (the model takes token ids)."""
    if k == 0:
        return model
    n = len(blocks(model))
    if not 0 < k < n:
        # k = n (every layer frozen) never gets here: no layer runs, the encoder keeps no language model
        raise ConfigError(
            f"model.item.layer={k}: the model has {n} layers; valid: 0..{n} ({n}: every layer frozen)"
        )
    found = layout(model)
    _set(model, found.blocks, nn.ModuleList(list(blocks(model))[k:]))
    for path, stand_in in found.input_step.items():
        _set(model, path, stand_in() if stand_in else None)
    return model


@contextmanager
def top_only(model: nn.Module, k: int):
    """`keep_top(model, k)`, undone on exit: the parity check runs the top of a model that keeps its
    bottom."""
    found = layout(model)
    saved = {path: _get(model, path) for path in (found.blocks, *found.input_step)}
    keep_top(model, k)
    try:
        yield model
    finally:
        for path, module in saved.items():
            _set(model, path, module)


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
            "model.item.layer=0 or another model"
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

    targets = targets or list(layout(model).lora_targets)
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        raise ConfigError(
            f"model.item.lora_targets: no module named {missing[0]} in {type(model).__name__}; "
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
