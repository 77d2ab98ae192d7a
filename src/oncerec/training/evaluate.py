"""Scoring a split (its metrics: `oncerec.eval.slices.split_metrics`).

Fast path (default): encode every item once, every distinct (user, history) once, then score each impression
by lookup. Slow path: run the whole model per impression batch. Both give the same scores (tested).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from oncerec.data.batching import ItemContent, histories_for, impression_batch, padded_candidates
from oncerec.data.dataset import Dataset, Split
from oncerec.eval.leaderboard import write_predictions
from oncerec.eval.metrics import group_ranks
from oncerec.models.recommender import Recommender


def _chunks(n: int, size: int):
    for start in range(0, n, size):
        yield np.arange(start, min(start + size, n))


@torch.no_grad()
def encode_all_items(
    model: Recommender, batch_size: int, device, progress: bool = False, content: ItemContent | None = None
) -> torch.Tensor:
    """Every item's vector, in index order; `content`: other items than the model's (new items arriving at
    a service, encoded before they are added)."""
    content = content or model.content
    chunks = list(_chunks(content.num_items, batch_size))
    out = [
        model.item_encoder(content.gather(torch.from_numpy(c).to(device)))
        for c in tqdm(chunks, "items", disable=not progress, leave=False)
    ]
    return torch.cat(out)


def read_and_seen(clicked: list[int], history_len: int) -> tuple[list[int], list[int]]:
    """A given history (item indices, oldest first) as what the user encoder reads of it, its last
    `history_len` clicks as training reads them, and what a recommendation leaves out: every item given, once
    each (a click older than the encoder reads is still an item the user has seen)."""
    return clicked[-history_len:], sorted(set(clicked))


@torch.no_grad()
def top_items(
    model: Recommender, item_vectors: torch.Tensor, rep: torch.Tensor, exclude: list[int], k: int
) -> tuple[list[int], list[float]]:
    """The k items (indices) the model scores highest for one user representation, every item scored but the
    `exclude`d ones, and their scores."""
    device = item_vectors.device
    every = torch.arange(1, len(item_vectors), device=device).unsqueeze(0)
    scores = model.score(rep, item_vectors[every], every)[0]
    scores[torch.tensor(exclude, dtype=torch.long, device=device) - 1] = float("-inf")
    top = torch.topk(scores, min(k, len(scores) - len(set(exclude))))
    return (top.indices + 1).tolist(), top.values.tolist()


@torch.no_grad()
def encode_histories(
    model: Recommender,
    dataset: Dataset,
    rows: np.ndarray,
    item_vectors: torch.Tensor,
    batch_size: int,
    device,
    progress: bool = False,
) -> torch.Tensor:
    """User representations for the given history rows, in that order."""
    inputs = model.user_inputs(item_vectors)
    out = []
    for c in tqdm(list(_chunks(len(rows), batch_size)), "users", disable=not progress, leave=False):
        hist, mask, user = histories_for(dataset, rows[c])
        hist, mask, user = hist.to(device), mask.to(device), user.to(device)
        out.append(model.encode_users(inputs[hist], mask, user, hist))
    return torch.cat(out)


@torch.no_grad()
def encode_user(
    model: Recommender, user_inputs: torch.Tensor, clicked: list[int], user: int, device
) -> torch.Tensor:
    """One user's representation [1, ...] from every item's `user_inputs`, the clicked item indices, oldest
    first (none: an empty history, which the user encoder sees as one masked-out padding item), and the user
    index (0: unknown)."""
    hist = torch.tensor([clicked or [0]], device=device)
    mask = torch.tensor([[True] * len(clicked) or [False]], device=device)
    return model.encode_users(user_inputs[hist], mask, torch.tensor([user], device=device), hist)


@torch.no_grad()
def predict_fast(
    model: Recommender, dataset: Dataset, split: Split, batch_size: int, device, progress: bool = False
) -> np.ndarray:
    """One score per candidate row of the split."""
    model.eval()
    items = encode_all_items(model, batch_size, device, progress)
    history = np.asarray(split.history)
    rows = np.unique(history)
    users = encode_histories(model, dataset, rows, items, batch_size, device, progress)
    user_of = torch.from_numpy(np.searchsorted(rows, history)).to(device)
    scores = np.empty(len(split.item), dtype=np.float32)
    for c in tqdm(
        list(_chunks(split.num_impressions, batch_size)), "score", disable=not progress, leave=False
    ):
        cands, valid, _ = padded_candidates(split, c)
        cands = torch.from_numpy(cands).to(device)
        s = model.score(users[user_of[torch.from_numpy(c).to(device)]], items[cands], cands)
        scores[split.offsets[c[0]] : split.offsets[c[-1] + 1]] = s.float().cpu().numpy()[valid]
    return scores


@torch.no_grad()
def predict_slow(
    model: Recommender, dataset: Dataset, split: Split, batch_size: int, device, progress: bool = False
) -> np.ndarray:
    """The reference path: the full model on every impression batch, nothing shared between impressions."""
    model.eval()
    scores = np.empty(len(split.item), dtype=np.float32)
    for c in tqdm(
        list(_chunks(split.num_impressions, batch_size)), "impressions", disable=not progress, leave=False
    ):
        batch = impression_batch(dataset, split, c).to(device)
        s = model(batch)
        scores[split.offsets[c[0]] : split.offsets[c[-1] + 1]] = (
            s.float().cpu().numpy()[batch.candidate_mask.cpu().numpy()]
        )
    return scores


def write_split_predictions(path: Path, split: Split, scores: np.ndarray) -> None:
    ranks = group_ranks(scores, split.row_impression)
    write_predictions(path, np.asarray(split.imp_id), np.asarray(split.offsets), ranks)
