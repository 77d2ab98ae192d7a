"""BST (Chen et al., 2019): a Transformer over the clicked items and the candidate, then an MLP (predictor
`bst`, over the `sequence` user encoder's clicks)."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

from oncerec.models.config import ModelConfig
from oncerec.models.ctr import MLP, CTRConfig, CTRPredictor
from oncerec.models.interfaces import SEQUENCE, ModelSpec
from oncerec.models.packing import unpack_sequence
from oncerec.models.registry import register


class BSTConfig(CTRConfig):
    """Predictor `bst`: `model.num_heads` heads over `model.hidden_size`; the MLP reads every position."""

    num_layers: int = Field(2, ge=1, description="Transformer layers.")

    def check(self, model: ModelConfig) -> None:
        model.check_heads("BST's transformer")


@register("predictor", "bst")
class BSTPredictor(CTRPredictor):
    """For each candidate the sequence [h_1 .. h_H, c] gets position embeddings (the paper's position is the
    time from the click to the target; here the recency rank: the candidate 0, the last click 1, ...), goes
    through `num_layers` Transformer layers (`model.num_heads` heads; post-norm, LeakyReLU feed-forward, as in
    the paper: S' = LN(S + Dropout(MH(S))), F = LN(S' + Dropout(LeakyReLU(S' W_1 + b_1) W_2 + b_2))), and the
    outputs of every position, concatenated, feed an MLP (`mlp_layers`, LeakyReLU). Needs
    `model.user=sequence`. Padded clicks are masked in the attention and their outputs zeroed, so a score does
    not depend on the batch."""

    config_class = BSTConfig
    takes = SEQUENCE
    chunk = 2048  # sequences per Transformer call: bounds the [B * K, H + 1, 4d] feed-forward activations

    def __init__(self, cfg: BSTConfig, model: ModelConfig, spec: ModelSpec):
        super().__init__(cfg, model, spec)
        d, length = self.dim, spec.history_len + 1
        self.pos = nn.Embedding(length, d)
        layer = nn.TransformerEncoderLayer(
            d, model.num_heads, 4 * d, model.dropout, activation=F.leaky_relu, batch_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, cfg.num_layers, enable_nested_tensor=False)
        self.mlp = MLP(length * d, cfg.mlp_layers, model.dropout, act=nn.LeakyReLU)

    def sequences(self, user: Tensor, candidates: Tensor) -> tuple[Tensor, Tensor]:
        """The packed history [B, H, d + 1] and candidates [B, K, d] -> sequences [B, K, H + 1, d] (positions
        added) and their mask."""
        hist, mask = unpack_sequence(user)
        (b, h, d), k = hist.shape, candidates.shape[1]
        seq = torch.cat([hist.unsqueeze(1).expand(b, k, h, d), candidates.unsqueeze(2)], dim=2)
        recency = (mask.sum(1, keepdim=True) - torch.arange(h, device=mask.device)).clamp(min=0)
        pos = torch.cat([recency * mask, recency.new_zeros(b, 1)], dim=1)  # [B, H + 1]
        full = torch.cat([mask, mask.new_ones(b, 1)], dim=1)
        return seq + self.pos(pos).unsqueeze(1), full.unsqueeze(1).expand(b, k, h + 1)

    def forward(self, user: Tensor, candidates: Tensor) -> Tensor:
        seq, mask = self.sequences(user, candidates)
        b, k = candidates.shape[:2]
        flat, flat_mask = seq.flatten(0, 1), mask.flatten(0, 1)
        out = torch.cat(
            [
                self.transformer(s, src_key_padding_mask=~m)
                for s, m in zip(flat.split(self.chunk), flat_mask.split(self.chunk), strict=True)
            ]
        )
        out = out * flat_mask.unsqueeze(-1).to(out.dtype)
        return self.mlp(out.flatten(1)).view(b, k)
