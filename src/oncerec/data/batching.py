"""From memory-mapped dataset arrays to model inputs: item content, training batches, evaluation batches.

Nothing here builds one Python object per impression: batches are gathered from the CSR arrays.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from oncerec.config.schema import CATEGORICAL
from oncerec.data.dataset import Dataset, Split
from oncerec.models.interfaces import Batch


class ItemContent:
    """The content of every item as tensors (token ids per text field, lengths, categories), gathered by index.

    Kept outside the nn.Module on purpose: it is data, not state, and must not be broadcast by DDP or saved.
    """

    def __init__(
        self,
        dataset: Dataset,
        fields: list[str],
        tokenizer: str,
        lookups: tuple[str, ...] = (),
        entities: bool = False,
    ):
        """`fields` are gathered for the item encoder; `lookups`, categorical fields read by other components
        (MINER's category bias), are only kept for `lookup`; `entities`: each text field's token entities too,
        as `<field>_entities` (DKN)."""
        self.fields = fields
        self.tensors: dict[str, Tensor] = {}
        for f in dict.fromkeys([*fields, *lookups]):
            if f in CATEGORICAL:
                self.tensors[f] = torch.from_numpy(np.asarray(dataset.categorical(f), dtype=np.int64))
            else:
                ids, lengths = dataset.tokens(tokenizer, f)
                self.tensors[f] = torch.from_numpy(np.asarray(ids, dtype=np.int64))
                self.tensors[f"{f}_len"] = torch.from_numpy(np.asarray(lengths, dtype=np.int64))
                if entities:
                    found = np.asarray(dataset.token_entities(tokenizer, f), dtype=np.int64)
                    self.tensors[f"{f}_entities"] = torch.from_numpy(found)
        self.num_items = dataset.num_items

    @classmethod
    def of(cls, fields: list[str], tensors: dict[str, Tensor]) -> ItemContent:
        """Content given as tensors, not read from a dataset: items that arrive at a running service."""
        content = object.__new__(cls)
        content.fields, content.tensors = fields, tensors
        content.num_items = len(next(iter(tensors.values()))) if tensors else 0
        return content

    def put(self, rows: Tensor, values: dict[str, Tensor]) -> None:
        """Set the content of the items `rows` (every tensor of theirs, text right-padded to this content's
        widths); an index at or past `num_items` adds items."""
        needed = int(rows.max()) + 1
        self.tensors = {k: grown(v, needed) for k, v in self.tensors.items()}
        for k, v in values.items():
            self.tensors[k][rows] = v.to(self.tensors[k].device)
        self.num_items = max(self.num_items, needed)

    def to(self, device: torch.device | str) -> ItemContent:
        self.tensors = {k: v.to(device) for k, v in self.tensors.items()}
        return self

    def lookup(self, field: str, items: Tensor) -> Tensor:
        """One categorical field of the given items, any shape of indices."""
        return self.tensors[field][items]

    def gather(self, items: Tensor) -> dict[str, Tensor]:
        out = {"item": items}
        for f in self.fields:
            if f in CATEGORICAL:
                out[f] = self.tensors[f][items]
                continue
            lengths = self.tensors[f"{f}_len"][items]
            # Trim to the longest text in this batch: most titles are far shorter than max_len.
            width = max(int(lengths.max()) if len(lengths) else 1, 1)
            out[f] = self.tensors[f][items, :width]
            if f"{f}_entities" in self.tensors:
                out[f"{f}_entities"] = self.tensors[f"{f}_entities"][items, :width]
            out[f"{f}_mask"] = torch.arange(width, device=items.device) < lengths.unsqueeze(1)
        return out


def grown(t: Tensor, rows: int) -> Tensor:
    """`t` with at least `rows` rows (new ones zero). It grows by a quarter at least, so that adding items one
    request at a time does not copy every item each time."""
    if rows <= len(t):
        return t
    size = max(rows, len(t) + len(t) // 4)
    return torch.cat([t, t.new_zeros((size - len(t), *t.shape[1:]))])


def trimmed_rows(array: np.ndarray, lengths: np.ndarray, rows: np.ndarray) -> tuple[Tensor, Tensor]:
    """Some rows of a right-padded [N, L, ...] array, cut to the longest of them (at least 1 wide), and their
    mask [B, W]: padding beyond a batch's longest text costs compute and nothing else."""
    n = torch.from_numpy(np.asarray(lengths[rows], dtype=np.int64))
    width = max(int(n.max()) if len(n) else 1, 1)
    return torch.from_numpy(np.ascontiguousarray(array[rows, :width])), torch.arange(width) < n.unsqueeze(1)


def histories_for(dataset: Dataset, history_rows: np.ndarray) -> tuple[Tensor, Tensor, Tensor]:
    """History item indices [B, H] trimmed to the longest history in the batch, mask, user index."""
    items, lengths, users = dataset.histories
    lens = np.asarray(lengths[history_rows])
    width = max(int(lens.max()) if len(lens) else 1, 1)
    hist = torch.from_numpy(np.asarray(items[history_rows, :width], dtype=np.int64))
    mask = torch.arange(width) < torch.from_numpy(lens.astype(np.int64)).unsqueeze(1)
    return hist, mask, torch.from_numpy(np.asarray(users[history_rows], dtype=np.int64))


class TrainSampler:
    """One sample per click in the training split: the clicked candidate and `neg_count` negatives from the
    same impression (without replacement; topped up with random items when the impression has too few).

    Batch b of epoch e depends only on (seed, e, b), so any batch can be rebuilt exactly after a resume and
    several processes can each take their share of the batches.
    """

    def __init__(self, dataset: Dataset, split: Split, batch_size: int, neg_count: int, seed: int):
        self.dataset, self.split = dataset, split
        self.batch_size, self.neg_count, self.seed = batch_size, neg_count, seed
        label = np.asarray(split.label)
        self.pos_rows = np.flatnonzero(label == 1)
        self.pos_imp = split.row_impression[self.pos_rows]
        self.neg_rows = np.flatnonzero(label == 0)
        # Negatives of impression j are neg_rows[neg_start[j]:neg_start[j+1]] (rows are grouped by impression).
        self.neg_start = np.searchsorted(self.neg_rows, np.asarray(split.offsets))
        self.num_items = dataset.num_items

    def __len__(self) -> int:
        return len(self.pos_rows) // self.batch_size

    def order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.pos_rows))

    def batch(self, epoch: int, index: int, order: np.ndarray | None = None) -> Batch:
        order = self.order(epoch) if order is None else order
        samples = order[index * self.batch_size : (index + 1) * self.batch_size]
        rng = np.random.default_rng([self.seed, epoch, index, 1])
        k = self.neg_count
        cands = np.empty((len(samples), 1 + k), dtype=np.int64)
        items = np.asarray(self.split.item)
        for r, s in enumerate(samples):
            j = self.pos_imp[s]
            negs = self.neg_rows[self.neg_start[j] : self.neg_start[j + 1]]
            if len(negs) >= k:
                chosen = items[rng.choice(negs, k, replace=False)]
            else:
                chosen = np.concatenate([items[negs], rng.integers(1, self.num_items, k - len(negs))])
            cands[r, 0] = items[self.pos_rows[s]]
            cands[r, 1:] = chosen
        history_rows = np.asarray(self.split.history)[self.pos_imp[samples]]
        hist, hmask, user = histories_for(self.dataset, history_rows)
        labels = torch.zeros(cands.shape, dtype=torch.float32)
        labels[:, 0] = 1
        cand = torch.from_numpy(cands)
        return Batch(hist, hmask, user, cand, torch.ones_like(cand, dtype=torch.bool), labels)


def padded_candidates(split: Split, impressions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate item indices [B, K] of whole impressions padded to the longest, valid mask, row positions."""
    off = np.asarray(split.offsets)
    starts, lengths = off[impressions], off[impressions + 1] - off[impressions]
    width = int(lengths.max())
    valid = np.arange(width)[None, :] < lengths[:, None]
    pos = np.where(valid, starts[:, None] + np.arange(width)[None, :], 0)
    return np.where(valid, np.asarray(split.item)[pos], 0), valid, pos


def impression_batch(dataset: Dataset, split: Split, impressions: np.ndarray) -> Batch:
    """Whole impressions, candidates padded to the longest in the batch (the slow evaluation path)."""
    cands, valid, pos = padded_candidates(split, impressions)
    labels = torch.from_numpy(np.where(valid, np.asarray(split.label)[pos], -1).astype(np.float32))
    hist, hmask, user = histories_for(dataset, np.asarray(split.history)[impressions])
    return Batch(hist, hmask, user, torch.from_numpy(cands.astype(np.int64)), torch.from_numpy(valid), labels)
