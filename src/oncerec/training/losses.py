"""Training losses over a batch of clicks, each with its negatives (the click is column 0 of the candidates); a
model's own regularisation terms (`Recommender.regularization`) are added to them by the trainer."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from oncerec.data.batching import Batch
from oncerec.models.interfaces import Predictor


def loss_kind(name: str, predictor: Predictor) -> str:
    """exp.loss, with `auto` resolved: bce for pointwise (CTR) predictors, softmax for matching ones."""
    if name != "auto":
        return name
    return "bce" if predictor.pointwise else "softmax"


def training_loss(scores: Tensor, batch: Batch, kind: str) -> Tensor:
    """`softmax`: cross-entropy of the click among its sample's candidates (negative sampling, listwise).
    `bce`: every valid candidate scored on its own, label 1 for the click and 0 for the negatives."""
    scores = scores.float()
    if kind == "softmax":
        return F.cross_entropy(scores, torch.zeros(len(scores), dtype=torch.long, device=scores.device))
    if kind != "bce":
        raise ValueError(f"unknown loss {kind!r}")
    target = torch.zeros_like(scores)
    target[:, 0] = 1
    valid = batch.candidate_mask.to(scores.dtype)
    losses = F.binary_cross_entropy_with_logits(scores, target, reduction="none")
    return (losses * valid).sum() / valid.sum().clamp(min=1)


def batch_loss(model: nn.Module, scores: Tensor, batch: Batch, loss: str) -> Tensor:
    """The objective of one training batch: `exp.loss` over its clicks (`auto` resolved for the model's
    predictor) plus the model's own regularisation (`Recommender.regularization`)."""
    kind = loss_kind(loss, model.predictor)
    return training_loss(scores, batch, kind) + model.regularization().to(scores.device)
