"""DIN (Zhou et al., 2018): target attention over the clicked items (predictor `din`, over the `sequence` user
encoder's clicks), then the DNN head."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from oncerec.models.config import ModelConfig
from oncerec.models.ctr import CTRConfig, DNNPredictor
from oncerec.models.interfaces import SEQUENCE, ModelSpec
from oncerec.models.packing import unpack_sequence
from oncerec.models.registry import register


@register("predictor", "din")
class DINPredictor(DNNPredictor):
    """For each candidate, an activation unit (an MLP over [h, c, h - c, h * c], hidden width
    `model.attention_hidden`, PReLU) weighs every clicked item h; the weighted sum (not softmax-normalised, as
    in the paper: it keeps the intensity of an interest) is that candidate's user vector, and the DNN head
    scores [v, c, v * c]. Needs `model.user=sequence` (the clicked items, not a pooled vector). Costs
    B x K x H x d per scoring batch: lower exp.eval_batch_size for long impressions."""

    takes = SEQUENCE

    def __init__(self, cfg: CTRConfig, model: ModelConfig, spec: ModelSpec):
        super().__init__(cfg, model, spec)
        d, a = self.dim, model.attention_hidden
        # One linear layer over [h, c, h - c, h * c], split by input so the [B, K, H, 4d] concatenation is
        # never built: W [h, c, h - c, h * c] = (W_1 + W_3) h + (W_2 - W_3) c + W_4 (h * c).
        self.att_hist = nn.Linear(d, a)
        self.att_cand = nn.Linear(d, a, bias=False)
        self.att_prod = nn.Linear(d, a, bias=False)
        self.att_out = nn.Sequential(nn.PReLU(), nn.Linear(a, 1))

    def forward(self, user: Tensor, candidates: Tensor) -> Tensor:
        hist, mask = unpack_sequence(user)  # [B, H, d], [B, H]
        hidden = (
            self.att_hist(hist).unsqueeze(1)
            + self.att_cand(candidates).unsqueeze(2)
            + self.att_prod(hist.unsqueeze(1) * candidates.unsqueeze(2))
        )  # [B, K, H, a]
        weights = self.att_out(hidden).squeeze(-1) * mask.unsqueeze(1).to(hidden.dtype)
        interest = torch.einsum("bkh,bhd->bkd", weights, hist)
        return self.logits(self.fields(interest, candidates))
