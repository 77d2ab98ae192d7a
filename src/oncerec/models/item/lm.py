"""DIRE's item encoder: a pretrained language model over the item's prompt text, pooled into one vector.

With `model.layer=k > 0` the frozen layers 0..k-1 never run here: their output for every item is read from
the DIRE cache (see `oncerec.dire.cache`) and only layers k..L-1 run (LoRA-tuned or fully trained). With k=0
the whole model runs from token ids. With k=L every layer is frozen: the cache holds the model's final token
states and no language-model layer runs or stays in memory; only the pooling and projection train.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from oncerec.config.schema import ModelConfig
from oncerec.errors import ConfigError
from oncerec.lm.backbone import (
    add_lora,
    blocks,
    family,
    keep_top,
    output_size,
    run_top,
)
from oncerec.models.interfaces import ItemEncoder, ModelSpec
from oncerec.models.layers import AdditiveAttention, masked_mean
from oncerec.models.registry import register

# `model.lm_norm=auto`: a decoder's pooled token states of different items are nearly parallel (mean cosine
# 0.95 for SmolLM2-135M over demo titles; 0.24 for MiniLM), which leaves a fresh projection unable to tell
# items apart: its training loss stayed flat at ln(1 + K). Standardising each feature over the batch undoes it.
AUTO_NORM = {"decoder": "batch", "encoder": "none"}


def all_frozen(cfg: ModelConfig, lm: nn.Module) -> bool:
    """Whether `model.layer` freezes every layer of `lm` (then the cache holds its final token states); an
    error with LoRA on, which would have nothing to adapt. Asked before a cache is built, and by the encoder."""
    frozen = cfg.layer == len(blocks(lm))
    if frozen and cfg.lora:
        raise ConfigError(
            f"model.layer={cfg.layer} freezes every layer of {cfg.item_lm}: there is nothing for LoRA "
            "to adapt; set model.lora=false (or a lower model.layer)"
        )
    return frozen


@register("item", "lm")
class LMItemEncoder(ItemEncoder):
    own_inputs = True  # reads token ids or cached states by item index, not the word-level item content
    language_model = True
    reads: ClassVar[frozenset[str]] = frozenset(
        {"item_lm", "item_fields", "lm_dtype", "layer", "lm_norm", "lm_pooling", "attention_hidden"}
        | {"hidden_size", "lora", "lora_r", "lora_alpha", "lora_dropout", "lora_targets"}
        | {"dire_cache", "cache_layers", "cache_dtype"}  # read by the DIRE cache it is given (train/build.py)
    )

    def __init__(self, cfg: ModelConfig, words: nn.Module | None, spec: ModelSpec):
        """`spec.lm`: the language model, whole (its frozen bottom is dropped here); `spec.item_inputs`: the
        inputs of layer `model.layer` by item index (token ids, or the DIRE cache's states checked against
        the model), both made by `train/build.py`."""
        super().__init__()
        if spec.lm is None or spec.item_inputs is None:
            raise ValueError("model.item=lm needs spec.lm and spec.item_inputs: see train/build.py")
        self.layer = cfg.layer
        self.inputs = spec.item_inputs
        dim = output_size(spec.lm)  # the top's output width (OPT-350m projects 1024 -> 512)
        self.norm_kind = cfg.lm_norm if cfg.lm_norm != "auto" else AUTO_NORM[family(spec.lm)]
        self.lm = None  # every layer frozen: the cache holds the final states and no layer runs
        if not all_frozen(cfg, spec.lm):
            self.lm = keep_top(spec.lm, self.layer)
            if cfg.lora:
                add_lora(self.lm, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
        self.pooling = cfg.lm_pooling
        self.pool = AdditiveAttention(dim, cfg.attention_hidden) if self.pooling == "attention" else None
        # Evaluation uses a moving average of recent batches' statistics, not the average over all of them: the
        # pooled vectors' scale changes by orders of magnitude while the attention pooling learns to look past
        # the attention sink, and the whole-run average (momentum=None) then normalised evaluation wrongly
        # (SmolLM2 on ONCE's Goodreads titles: valid AUC 0.55 at a training loss below word embeddings').
        self.norm = nn.BatchNorm1d(dim) if self.norm_kind == "batch" else nn.Identity()
        self.proj = nn.Linear(dim, cfg.hidden_size)  # pooling and projection train at exp.lr

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
