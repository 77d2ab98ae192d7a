"""Scoring a split (its metrics: `oncerec.eval.slices.split_metrics`).

Fast path (default): encode every item once, every distinct (user, history) once (`oncerec.inference`, the path
`recommend` and the service take too), then score each impression by lookup. Slow path: run the whole model per
impression batch. Both give the same scores (tested).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from oncerec.data.batching import impression_batch, padded_candidates
from oncerec.data.dataset import Dataset, Split
from oncerec.eval.leaderboard import write_predictions
from oncerec.eval.metrics import group_ranks
from oncerec.inference import chunks, encode_history_rows, encode_items, user_inputs
from oncerec.models.recommender import Recommender


@torch.no_grad()
def predict_fast(
    model: Recommender, dataset: Dataset, split: Split, batch_size: int, device, progress: bool = False
) -> np.ndarray:
    """One score per candidate row of the split."""
    model.eval()
    items = encode_items(model, batch_size, device, progress)
    history = np.asarray(split.history)
    rows = np.unique(history)
    users = encode_history_rows(model, dataset, rows, user_inputs(model, items), batch_size, device, progress)
    user_of = torch.from_numpy(np.searchsorted(rows, history)).to(device)
    scores = np.empty(len(split.item), dtype=np.float32)
    for c in tqdm(
        list(chunks(split.num_impressions, batch_size)), "score", disable=not progress, leave=False
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
        list(chunks(split.num_impressions, batch_size)), "impressions", disable=not progress, leave=False
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
