"""The one inference path: every item encoded once, users encoded in batches from their histories, items ranked
for them. Evaluation (`training/evaluate.py`, `training/full_ranking.py`), `recommend` (`training/session.py`)
and the service (`serve/ranking.py`) all go through here, so that they give the same answers: the tests hold
the service to `recommend` (scores to 1e-5), a batch of requests to each request alone, and the fast evaluation
to the whole model run per impression.

- Items: `encode_items` gives every item's vector (row 0: the padding item), `user_inputs` what the user encoder
  reads of each item as a click (its `per_item`: NRMS's attention projections), both once per set of weights.
- Users: `encode_users` from clicked item indices, right-padded into one batch as training batches them (an
  empty history is one masked-out padding item); `encode_history_rows` for a dataset's stored histories.
- Ranking: `top_every_item` scores every item (a matrix product for an inner-product model, the model's head a
  slice of items at a time otherwise), an excluded history left out; `top_among` scores given candidates, the
  second stage of a head served over an index's candidates, whose first stage searches by `linearised` vectors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from oncerec.data.batching import ItemContent, histories_for
from oncerec.data.dataset import Dataset
from oncerec.models.recommender import Recommender

# (user, item) pairs one call of a non-inner-product predictor scores: bounds its [pairs, fields, d] inputs.
HEAD_PAIRS = 1 << 15
# items per call of the user encoder's `per_item`: bounds its output's intermediate tensors on large catalogues
USER_INPUT_ROWS = 16384


def chunks(n: int, size: int):
    """Index arrays of consecutive blocks of at most `size` of range(n)."""
    for start in range(0, n, size):
        yield np.arange(start, min(start + size, n))


def inner_product(model: Recommender) -> bool:
    """Whether the model's score is the inner product of one user vector and the item vector (predictor `dot`),
    so that a matrix product, or an inner-product index, ranks exactly as the model does."""
    return model.cfg.predictor.name == "dot"


@torch.no_grad()
def encode_items(
    model: Recommender, batch_size: int, device, progress: bool = False, content: ItemContent | None = None
) -> Tensor:
    """Every item's vector, in index order; `content`: other items than the model's (new items arriving at a
    service, encoded before they are added)."""
    content = content or model.content
    out = [
        model.item_encoder(content.gather(torch.from_numpy(c).to(device)))
        for c in tqdm(list(chunks(content.num_items, batch_size)), "items", disable=not progress, leave=False)
    ]
    return torch.cat(out)


@torch.no_grad()
def user_inputs(model: Recommender, vectors: Tensor) -> Tensor:
    """What the user encoder reads of each of these item vectors as a click, computed once for every item and
    gathered by index, rather than for every click of every user."""
    return torch.cat([model.user_inputs(block) for block in vectors.split(USER_INPUT_ROWS)])


def read_and_seen(clicked: list[int], history_len: int) -> tuple[list[int], list[int]]:
    """A given history (item indices, oldest first) as what the user encoder reads of it, its last
    `history_len` clicks as training reads them, and what a recommendation leaves out: every item given, once
    each (a click older than the encoder reads is still an item the user has seen)."""
    return clicked[-history_len:], sorted(set(clicked))


def padded(rows: Sequence[Sequence[int]], device=None) -> Tensor:
    """Lists of item indices as one batch [B, W], right-padded with 0 (the padding item), W the longest list
    and at least 1."""
    out = np.zeros((len(rows), max(1, *map(len, rows))), dtype=np.int64)
    for row, items in zip(out, rows, strict=True):
        row[: len(items)] = items
    return torch.from_numpy(out).to(device)


@torch.no_grad()
def encode_users(
    model: Recommender, inputs: Tensor, clicked: Sequence[Sequence[int]], users: Sequence[int]
) -> Tensor:
    """User representations [B, ...] from every item's `inputs`, each user's clicked item indices, oldest first
    (none: an empty history, which the user encoder sees as one masked-out padding item), and user indices
    (0: unknown)."""
    hist = padded(clicked, inputs.device)
    return model.encode_users(inputs[hist], hist > 0, torch.tensor(users, device=inputs.device), hist)


@torch.no_grad()
def encode_history_rows(
    model: Recommender,
    dataset: Dataset,
    rows: np.ndarray,
    inputs: Tensor,
    batch_size: int,
    device,
    progress: bool = False,
) -> Tensor:
    """User representations for a dataset's stored history rows, in that order, `batch_size` at a time."""
    out = []
    for c in tqdm(list(chunks(len(rows), batch_size)), "users", disable=not progress, leave=False):
        hist, mask, user = histories_for(dataset, rows[c])
        hist, mask, user = hist.to(device), mask.to(device), user.to(device)
        out.append(model.encode_users(inputs[hist], mask, user, hist))
    return torch.cat(out)


@torch.no_grad()
def score_every_item(model: Recommender, reps: Tensor, vectors: Tensor) -> Tensor:
    """Scores [B, N] of user representations against every item vector: one matrix product for an
    inner-product model; any other predictor is run on every (user, item) pair, a slice of items at a time."""
    if inner_product(model):
        return reps @ vectors.T
    n, width = len(vectors), max(1, HEAD_PAIRS // len(reps))
    out = []
    for start in range(0, n, width):
        idx = torch.arange(start, min(start + width, n), device=vectors.device).expand(len(reps), -1)
        out.append(model.score(reps, vectors[idx], idx))
    return torch.cat(out, dim=1)


@torch.no_grad()
def top_every_item(
    model: Recommender, reps: Tensor, vectors: Tensor, exclude: Tensor, k: int
) -> tuple[Tensor, Tensor]:
    """Each user's top min(k, N - 1) items of every item vector (row 0, the padding item, never ranked), the
    items `exclude` [B, L] (indices, padded with 0) left out: (scores, items) [B, min(k, N - 1)], best first.
    A user with fewer items left than that gets left-out ones (score -inf) at the end."""
    scores = score_every_item(model, reps, vectors).float()
    scores[:, 0] = float("-inf")
    scores.scatter_(1, exclude.to(scores.device), float("-inf"))
    top = torch.topk(scores, min(k, len(vectors) - 1), dim=1)
    return top.values, top.indices


@torch.no_grad()
def top_items(
    model: Recommender, reps: Tensor, vectors: Tensor, exclude: Sequence[Sequence[int]], ks: Sequence[int]
) -> list[tuple[list[int], list[float]]]:
    """`top_every_item` as lists: each user's top k (`ks`, one per user) items and their scores, best first,
    fewer when fewer items are left once their `exclude`d ones are."""
    scores, items = top_every_item(model, reps, vectors, padded(exclude, reps.device), max(ks))
    out = []
    for row_scores, row_items, k in zip(scores.tolist(), items.tolist(), ks, strict=True):
        n = min(k, int(np.isfinite(row_scores).sum()))
        out.append((row_items[:n], row_scores[:n]))
    return out


@torch.no_grad()
def top_among(
    model: Recommender, reps: Tensor, vectors: Tensor, candidates: Tensor, ks: Sequence[int]
) -> list[tuple[list[int], list[float]]]:
    """Each user's top k (`ks`: one per user) of their candidates [B, C] (item indices, padded with 0) by the
    model's score, all users in one call: (items, scores), best first."""
    scores = model.score(reps, vectors[candidates], candidates).masked_fill(candidates == 0, float("-inf"))
    out = []
    for row, score, k in zip(candidates, scores, ks, strict=True):
        top = torch.topk(score, min(k, int((row > 0).sum())))
        out.append((row[top.indices].tolist(), top.values.tolist()))
    return out


def linearised(model: Recommender, reps: Tensor, at: Tensor) -> np.ndarray:
    """For each user, the vector whose inner product with an item vector follows the model's score of that
    item, to first order: the gradient of the score with respect to the candidate vector at the item vector `at`
    (the mean item; for an inner-product model, the user vector itself). On demo-small it found the whole top 10
    of DNN, DeepFM and DIN among 200 candidates, where the mean of the clicked items' vectors found 0-30% of it.
    A head that reads the candidate's category sees the padding item's (none) here. Rows are scored apart, so
    one backward pass gives every user's gradient."""
    x = at.expand(len(reps), 1, -1).clone().requires_grad_(True)
    with torch.enable_grad():
        score = model.score(reps, x, torch.zeros((len(reps), 1), dtype=torch.long, device=reps.device))
        (grad,) = torch.autograd.grad(score.sum(), x)  # not into the weights: requests run side by side
    return grad[:, 0].cpu().numpy()
