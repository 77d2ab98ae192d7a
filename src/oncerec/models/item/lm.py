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
from oncerec.data.batching import trimmed_rows
from oncerec.errors import ConfigError
from oncerec.lm.backbone import (
    add_lora,
    blocks,
    family,
    keep_top,
    lm_dtype,
    load_lm,
    output_size,
    run_top,
)
from oncerec.models.interfaces import ItemEncoder
from oncerec.models.layers import AdditiveAttention, masked_mean
from oncerec.models.registry import register

# `model.lm_norm=auto`: a decoder's pooled token states of different items are nearly parallel (mean cosine
# 0.95 for SmolLM2-135M over demo titles; 0.24 for MiniLM), which leaves a fresh projection unable to tell
# items apart: its training loss stayed flat at ln(1 + K). Standardising each feature over the batch undoes it.
AUTO_NORM = {"decoder": "batch", "encoder": "none"}


@register("item", "lm")
class LMItemEncoder(ItemEncoder):
    own_inputs = True  # reads token ids or cached states by item index, not the word-level item content
    reads: ClassVar[frozenset[str]] = frozenset(
        {"item_lm", "item_fields", "lm_dtype", "layer", "lm_norm", "lm_pooling", "attention_hidden"}
        | {"hidden_size", "lora", "lora_r", "lora_alpha", "lora_dropout", "lora_targets"}
        | {"dire_cache", "cache_layers", "cache_dtype"}  # read by the DIRE cache it opens or builds
    )

    def __init__(self, cfg: ModelConfig, words: nn.Module | None, spec: dict):
        super().__init__()
        if not cfg.item_lm:
            raise ConfigError(
                "model.item=lm needs model.item_lm=<local model folder | minilm | smollm2-135m>"
            )
        from oncerec.dire.cache import build_cache, check_cache, open_cache

        dataset = spec["dataset"]
        self.layer = cfg.layer
        self.lm = load_lm(cfg.item_lm, lm_dtype(cfg.lm_dtype))
        dim = output_size(self.lm)  # the top's output width (OPT-350m projects 1024 -> 512)
        self.norm_kind = cfg.lm_norm if cfg.lm_norm != "auto" else AUTO_NORM[family(self.lm)]
        frozen = self.layer == len(blocks(self.lm))  # every layer: the cache holds the final states
        if frozen and cfg.lora:
            raise ConfigError(
                f"model.layer={self.layer} freezes every layer of {cfg.item_lm}: there is nothing for LoRA "
                "to adapt; set model.lora=false (or a lower model.layer)"
            )
        if self.layer:
            # Built on first use (resumable), from this model before its bottom is dropped: loaded once. A
            # cache of another model or data is refused, and one without this layer is an error listing its
            # layers: rebuilding would silently drop them.
            self.cache = open_cache(dataset, cfg) or build_cache(
                dataset, cfg, log=spec.get("log", print), model=self.lm
            )
            self.cache.states(self.layer)
            # the model (bottom still loaded) over a few items must match its top from their cached states
            check_cache(self.lm, self.cache, dataset, cfg)
        else:
            self.ids, self.lengths = dataset.tokens(cfg.item_lm, cfg.item_fields[0])
        if frozen:
            self.lm = None  # nothing of the model is needed any more: training runs no layer of it
            self._head(cfg, dim)
            return
        keep_top(self.lm, self.layer)
        if cfg.lora:
            add_lora(self.lm, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
        for p in self.lm.parameters():
            p.lr_group = "item"  # exp.item_lr
        self._head(cfg, dim)

    def _head(self, cfg: ModelConfig, dim: int) -> None:
        """Pooling of the token states and projection to hidden_size (trained at exp.lr)."""
        self.pooling = cfg.lm_pooling
        self.pool = AdditiveAttention(dim, cfg.attention_hidden) if self.pooling == "attention" else None
        # Evaluation uses a moving average of recent batches' statistics, not the average over all of them: the
        # pooled vectors' scale changes by orders of magnitude while the attention pooling learns to look past
        # the attention sink, and the whole-run average (momentum=None) then normalised evaluation wrongly
        # (SmolLM2 on ONCE's Goodreads titles: valid AUC 0.55 at a training loss below word embeddings').
        self.norm = nn.BatchNorm1d(dim) if self.norm_kind == "batch" else nn.Identity()
        self.proj = nn.Linear(dim, cfg.hidden_size)

    def _inputs(self, items: Tensor) -> tuple[Tensor, Tensor]:
        rows = items.cpu().numpy()
        if self.layer:
            x, mask = self.cache.gather(self.layer, rows)
        else:
            x, mask = trimmed_rows(self.ids, self.lengths, rows)
            x = x.long()
        return x.to(items.device), mask.to(items.device)

    def forward(self, content: dict[str, Tensor]) -> Tensor:
        x, mask = self._inputs(content["item"])
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
