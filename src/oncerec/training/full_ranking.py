"""Full-ranking evaluation (`exp.full_ranking`): each user's held-out items ranked among every item of the
catalogue, as retrieval systems are judged (the impression metrics rank a few shown candidates only).

- A user is one user id of the split; the user is encoded once, from the history of their earliest
  impression of the split (MIND repeats that history on every impression of the user; on time-ordered data
  it holds nothing of the split).
- Held out: the user's clicked candidates over all their impressions of the split, each item once, those
  in that history left out (they cannot be ranked: see next). A user with none is not ranked.
- Ranked: every item of the catalogue (every item of the dataset, of every split) except the items of that
  history, as usual in retrieval: recommending what the user has read says nothing.
- Scores: the model's own, ranked by `oncerec.inference.top_every_item` (as `recommend` ranks). An
  inner-product predictor (`dot`) scores a block of users against every item in one matrix product; any other predictor (MINER's target-aware one, the CTR heads, DIN) is run on every
  (user, item) pair of the block, a slice of items at a time. That is exact, the same scores as the
  impression evaluation, but costs a head evaluation per pair (users x items) instead of a dot product;
  refusing would leave half the models without the numbers, and a GPU makes the cost bearable.
- Per block of users only the scores of that block are held ([block, items]), and only its top K kept
  (torch.topk): users x items is never materialised. The metrics of the top K are computed by
  `oncerec.eval.metrics.evaluate_top_k` (the impression formulas, a user being a group).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from oncerec.data.dataset import Dataset, Split
from oncerec.eval.metrics import FULL_PREFIX, evaluate_top_k, full_ranking_names, parse_metric
from oncerec.inference import encode_history_rows, encode_items, top_every_item, user_inputs
from oncerec.models.recommender import Recommender


def held_out(dataset: Dataset, split: Split) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], int]:
    """(users, their history rows, their held-out item indices, how many users have none) of the split, the
    users in id order: see the module docstring."""
    user_of_imp = np.asarray(split.user)
    # each user's earliest impression (the first of equal times): sorted by (user, time, position)
    order = np.lexsort((np.arange(split.num_impressions), np.asarray(split.time), user_of_imp))
    first = order[np.r_[True, user_of_imp[order][1:] != user_of_imp[order][:-1]]]
    users, history = user_of_imp[first], np.asarray(split.history)[first]

    # (user, item) of every click, each pair once, sorted by user
    clicked = np.flatnonzero(np.asarray(split.label) == 1)
    user, item = np.unique(
        np.stack([user_of_imp[split.row_impression[clicked]], np.asarray(split.item)[clicked]]), axis=1
    )
    slot = np.searchsorted(users, user)
    items, lengths, _ = dataset.histories
    rows = history[slot]
    held = np.arange(items.shape[1]) < np.asarray(lengths)[rows][:, None]
    new = ~((np.asarray(items[rows]) == item[:, None]) & held).any(axis=1)  # not in the user's history
    counts = np.bincount(slot[new], minlength=len(users))
    per_user = np.split(item[new], np.cumsum(counts)[:-1])
    kept = counts > 0
    return (
        users[kept],
        history[kept],
        [t for t, k in zip(per_user, kept, strict=True) if k],
        int((~kept).sum()),
    )


@torch.no_grad()
def rank_vectors(
    model: Recommender,
    reps: torch.Tensor,
    vectors: torch.Tensor,
    history: np.ndarray,
    targets: list[np.ndarray],
    k: int,
    batch_size: int,
    progress: bool = False,
) -> np.ndarray:
    """`found` [U, k]: whether each of a user's top k items is one of their `targets` (held-out item indices),
    users `reps` scored against every item vector (row 0: padding, never ranked) by the model's predictor,
    `batch_size` users at a time, their `history` items [U, L] (padded with 0) not ranked."""
    k = min(k, len(vectors) - 1)
    found = np.zeros((len(reps), k), dtype=bool)
    for start in tqdm(range(0, len(reps), batch_size), "full ranking", disable=not progress, leave=False):
        end = min(start + batch_size, len(reps))
        hist = torch.from_numpy(history[start:end].astype(np.int64))
        scores, items = top_every_item(model, reps[start:end], vectors, hist, k)
        block = targets[start:end]
        target = torch.zeros((end - start, len(vectors)), dtype=torch.bool, device=items.device)
        rows = np.repeat(np.arange(len(block)), [len(t) for t in block])
        cols = torch.from_numpy(np.concatenate(block).astype(np.int64))
        target[torch.from_numpy(rows).to(target.device), cols.to(target.device)] = True
        # a user with fewer rankable items than k gets excluded ones (-inf) at the end: never held out
        hit = target.gather(1, items) & torch.isfinite(scores)
        found[start:end] = hit.cpu().numpy()
    return found


@torch.no_grad()
def rank_catalogue(
    model: Recommender,
    dataset: Dataset,
    split: Split,
    k: int,
    batch_size: int,
    device,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """`found` [U, min(k, items)] (see `rank_vectors`) and `held` [U] (held-out items per user) over the split's
    users with a held-out item, and the sizes: `items` ranked, `skipped` users."""
    model.eval()
    vectors = encode_items(model, batch_size, device, progress)
    k = min(k, len(vectors) - 1)  # a K beyond the catalogue ranks all of it
    users, history, targets, skipped = held_out(dataset, split)
    sizes = {"items": len(vectors) - 1, "skipped": skipped}
    if not len(users):  # no click in the split
        return np.zeros((0, k), dtype=bool), np.zeros(0, dtype=np.int64), sizes
    reps = encode_history_rows(
        model, dataset, history, user_inputs(model, vectors), batch_size, device, progress
    )
    clicked = np.asarray(dataset.histories[0])[history]
    found = rank_vectors(model, reps, vectors, clicked, targets, k, batch_size, progress)
    held = np.array([len(t) for t in targets], dtype=np.int64)
    return found, held, sizes


def full_ranking_metrics(
    model: Recommender,
    dataset: Dataset,
    split: Split,
    metrics: list[str],
    batch_size: int,
    device,
    progress: bool = False,
) -> dict:
    """The `metrics` (recall@K, ndcg@K, hit@K) of the full ranking under `full/<name>`, with `full/users`
    (averaged over), `full/skipped` (users of the split without a held-out item) and `full/items` (the
    catalogue's size)."""
    names = full_ranking_names(metrics)
    if not names:
        return {}
    k = max(parse_metric(n)[1] for n in names)
    found, held, sizes = rank_catalogue(model, dataset, split, k, batch_size, device, progress)
    # a catalogue smaller than K: every item is ranked, and a deeper cut-off reads the same as the catalogue's
    # size (computed at that size, reported under the name asked for)
    at = {n: _at_most(n, found.shape[1]) for n in names}
    computed = list(dict.fromkeys(at.values()))
    m = (
        evaluate_top_k(found, held, computed)
        if len(held)
        else {**dict.fromkeys(computed, float("nan")), "users": 0}
    )
    named = {name: m[at[name]] for name in names} | {"users": m["users"], **sizes}
    return {f"{FULL_PREFIX}{key}": value for key, value in named.items()}


def _at_most(name: str, depth: int) -> str:
    """The metric `name` with its cut-off K at most `depth`."""
    kind, k = parse_metric(name)
    return name if k <= depth else f"{kind}@{max(depth, 1)}"
