"""DIRE's item encoder (`model.item=lm`): a pretrained language model over the item's prompt text, pooled into
one vector.

With `model.item.layer=k > 0` the frozen layers 0..k-1 never run here: their output for every item is read from
the DIRE cache (see `oncerec.dire.cache`) and only layers k..L-1 run (LoRA-tuned or fully trained). With k=0
the whole model runs from token ids. With k=L every layer is frozen: the cache holds the model's final token
states and no language-model layer runs or stays in memory; only the pooling and projection train.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from oncerec.errors import ConfigError
from oncerec.lm.backbone import (
    add_lora,
    blocks,
    family,
    keep_top,
    output_size,
    run_top,
)
from oncerec.models.config import ModelConfig
from oncerec.models.interfaces import ComponentConfig, ItemEncoder, ModelSpec
from oncerec.models.layers import AdditiveAttention, masked_mean
from oncerec.models.registry import register


class LMConfig(ComponentConfig):
    """Item encoder `lm` (DIRE): a pretrained language model over the item text (the first of
    `model.item_fields`, usually `prompt`), its frozen bottom read from the DIRE cache."""

    lm: str = Field(
        min_length=1,
        description="The language model: a local Hugging Face folder (BERT-like or LLaMA-like) or a packaged "
        "name (`minilm`, `smollm2-135m`).",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="Type the language model is loaded and run in, for the DIRE cache build and training "
        "(`auto`: bfloat16 when a GPU is present, float32 otherwise, resolved at load time). Pooling and "
        "projection run in float32, LoRA adapters are kept in float32.",
    )
    layer: int = Field(
        0,
        ge=0,
        description="DIRE split point k: layers 0..k-1 are frozen and read from the DIRE cache (the hidden "
        "states entering layer k); layers k..L-1 (+ the final norm) run and train. 0: the whole model runs "
        "from token ids, no cache. L (the model's number of layers): every layer is frozen, the cache holds "
        "the final token states (after the final norm) and training runs no language-model layer: only the "
        "pooling and projection (frozen-LLM features; needs lora=false).",
    )
    cache_layers: list[int] = Field(
        default_factory=list,
        description="Layers whose entering hidden states `oncerec dire cache` stores (default: [layer]).",
    )
    cache_dtype: Literal["float16", "bfloat16", "float32"] = Field(
        "float16", description="Storage type of the DIRE cache."
    )
    dire_cache: str = Field(
        "",
        description="DIRE cache folder (default: "
        "$ONCEREC_CACHE/dire/<dataset>/<model>-<fingerprint>-<field>, the fingerprint hashing the weight "
        "files' content).",
    )
    pooling: Literal["attention", "mean", "last"] = Field(
        "attention",
        description="How the top layer's token states become one item vector: additive attention, masked "
        "mean, or the last token's state; then a projection to model.hidden_size.",
    )
    norm: Literal["auto", "none", "batch"] = Field(
        "auto",
        description="Normalisation of the pooled language-model vector before the projection: `batch` "
        "standardises each feature over the batch's items (BatchNorm; the average statistics of training at "
        "evaluation); `auto`: `batch` for LLaMA-like decoders, `none` for BERT-like encoders. A decoder's pooled "
        "states of different items are nearly parallel (mean cosine 0.95 for SmolLM2-135M on demo titles, "
        "0.24 for MiniLM), so a fresh projection maps every item to nearly the same vector and training "
        "starts from constant scores.",
    )
    lora: bool = Field(
        False, description="Train LoRA adapters (peft) on the running layers instead of all their weights."
    )
    lora_r: int = Field(32, ge=1, description="LoRA rank.")
    lora_alpha: float = Field(128.0, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the LoRA input.")
    lora_targets: list[str] = Field(
        default_factory=list,
        description="Module names that get adapters (default: the attention query and value projections, "
        "`q_proj, v_proj` in OPT, Phi and LLaMA-like models, `query, value` in BERT-like ones).",
    )


# `model.item.norm=auto`: a decoder's pooled token states of different items are nearly parallel (mean cosine
# 0.95 for SmolLM2-135M over demo titles; 0.24 for MiniLM), which leaves a fresh projection unable to tell
# items apart: its training loss stayed flat at ln(1 + K). Standardising each feature over the batch undoes it.
AUTO_NORM = {"decoder": "batch", "encoder": "none"}


def all_frozen(cfg: LMConfig, lm: nn.Module) -> bool:
    """Whether `model.item.layer` freezes every layer of `lm` (then the cache holds its final token states); an
    error with LoRA on, which would have nothing to adapt. Asked before a cache is built, and by the encoder
    (the schema cannot: it needs the model's depth)."""
    frozen = cfg.layer == len(blocks(lm))
    if frozen and cfg.lora:
        raise ConfigError(
            f"model.item.layer={cfg.layer} freezes every layer of {cfg.lm}: there is nothing for LoRA "
            "to adapt; set model.item.lora=false (or a lower model.item.layer)"
        )
    return frozen


@register("item", "lm")
class LMItemEncoder(ItemEncoder):
    config_class = LMConfig
    own_inputs = True  # reads token ids or cached states by item index, not the word-level item content
    language_model = True

    def __init__(self, cfg: LMConfig, model: ModelConfig, words: nn.Module | None, spec: ModelSpec):
        """`spec.lm`: the language model, whole (its frozen bottom is dropped here); `spec.item_inputs`: the
        inputs of layer `model.item.layer` by item index (token ids, or the DIRE cache's states checked against
        the model), both made by `training/build.py`."""
        super().__init__()
        if spec.lm is None or spec.item_inputs is None:
            raise ValueError("model.item=lm needs spec.lm and spec.item_inputs: see training/build.py")
        self.layer = cfg.layer
        self.inputs = spec.item_inputs
        dim = output_size(spec.lm)  # the top's output width (OPT-350m projects 1024 -> 512)
        self.norm_kind = cfg.norm if cfg.norm != "auto" else AUTO_NORM[family(spec.lm)]
        self.lm = None  # every layer frozen: the cache holds the final states and no layer runs
        if not all_frozen(cfg, spec.lm):
            self.lm = keep_top(spec.lm, self.layer)
            if cfg.lora:
                add_lora(self.lm, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
        self.pooling = cfg.pooling
        self.pool = AdditiveAttention(dim, model.attention_hidden) if self.pooling == "attention" else None
        # Evaluation uses a moving average of recent batches' statistics, not the average over all of them: the
        # pooled vectors' scale changes by orders of magnitude while the attention pooling learns to look past
        # the attention sink, and the whole-run average (momentum=None) then normalised evaluation wrongly
        # (SmolLM2 on ONCE's Goodreads titles: valid AUC 0.55 at a training loss below word embeddings').
        self.norm = nn.BatchNorm1d(dim) if self.norm_kind == "batch" else nn.Identity()
        self.proj = nn.Linear(dim, model.hidden_size)  # pooling and projection train at exp.lr

    def rate_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"item": [p for p in self.lm.parameters() if p.requires_grad]} if self.lm is not None else {}

    def forward(self, content: dict[str, Tensor]) -> Tensor:
        items = content["item"]
        x, mask = self.inputs(items.cpu().numpy())
        x, mask = x.to(items.device), mask.to(items.device)
        # the padding item (index 0) has no tokens: give it one masked-in position so attention is defined
        mask = mask.clone()
        mask[:, 0] |= ~mask.any(1)
        # pooled in float32 whatever the model's type: a half-precision softmax or mean loses range
        h = x.float() if self.lm is None else run_top(self.lm, x, mask, from_states=self.layer > 0).float()
        if self.pooling == "attention":
            v = self.pool(h, mask)
        elif self.pooling == "mean":
            v = masked_mean(h, mask)
        else:
            v = h[torch.arange(len(h), device=h.device), mask.sum(1) - 1]
        return self.proj(self.norm(v))
