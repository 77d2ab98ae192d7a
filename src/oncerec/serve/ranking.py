"""How a service ranks, on the one inference path (`oncerec.inference`) over the export's stored item vectors.

An inner-product model (predictor `dot`) searches the index with the user vector: with the exact index, the order
`oncerec recommend` gives. Any other predictor (the CTR heads, MINER) is served in two stages: the index's
`candidates` items of highest inner product with the user's linearised vector (`inference.linearised`), re-ranked
by the model (`inference.top_among`); `candidates=0` scores every item with the model, as `recommend` does. A user
the model knows nothing about (an empty history, no GENRE profile, no trained user embedding) gets the items with
the most training clicks.
"""

from __future__ import annotations

import numpy as np
import torch

from oncerec.data.batching import grown
from oncerec.inference import encode_users, linearised, padded, top_among, top_items, user_inputs
from oncerec.serve.export import Export
from oncerec.serve.options import DEFAULT_CANDIDATES


class Ranker:
    """The served model with every item's vector, what its user encoder reads of each (computed once here, not
    for every click of every request: NRMS's attention projections, the largest part of a request's model
    time), the index over the vectors and the items' training clicks. Not thread-safe for `put` during a
    ranking: the service locks."""

    def __init__(self, export: Export, candidates: int = DEFAULT_CANDIDATES):
        self.model, self.index, self.candidates = export.model, export.index, candidates
        self.two_stage = export.manifest["ranking"] == "two_stage"
        self.count = len(export.vectors)  # rows in use: the tables below grow ahead of them
        self.vectors = torch.from_numpy(export.vectors)
        self.mean_item = self.vectors[1:].mean(0)  # where two-stage models are linearised
        self.inputs = user_inputs(self.model, self.vectors)
        self.popularity = export.popularity
        self._popular: np.ndarray | None = None

    def rank(
        self, clicked: list[list[int]], users: list[int], exclude: list[np.ndarray], ks: list[int]
    ) -> list[tuple]:
        """Each user's top k (`ks`) items but their `exclude`d ones: (item indices, scores), best first; one
        user encoder call and one index search for them all."""
        reps = encode_users(self.model, self.inputs, clicked, users)
        if not self.two_stage:
            found = self.index.search(reps.numpy(), max(ks), exclude)
            return [(items[:k], scores[:k]) for (items, scores), k in zip(found, ks, strict=True)]
        if self.candidates == 0:  # each user alone, exactly as `recommend` ranks one user
            every = self.vectors[: self.count]
            return [
                top_items(self.model, reps[n : n + 1], every, [e.tolist()], [k])[0]
                for n, (e, k) in enumerate(zip(exclude, ks, strict=True))
            ]
        # Two stages. At least k candidates: the model ranks k items when more than `candidates` are asked for.
        # One search for the batch's largest number, each query's cut to its own: a query gets the answer it
        # gets alone.
        wanted = [max(self.candidates, k) for k in ks]
        found = self.index.search(linearised(self.model, reps, self.mean_item), max(wanted), exclude)
        candidates = padded([items[:n].tolist() for (items, _), n in zip(found, wanted, strict=True)])
        return top_among(self.model, reps, self.vectors, candidates, ks)

    def knows(self, user: int) -> bool:
        """Whether the model has something of this user besides clicks: a GENRE profile, or a user embedding
        that trained (LSTUR's)."""
        if not user:
            return False
        attributes = self.model.user_attributes
        if attributes is not None and bool(attributes.profile(torch.tensor([user]))[1][0]):
            return True
        return self.model.user_encoder.knows(user)

    def popular(self, k: int) -> list[tuple[int, float]]:
        """The k items with the most training clicks (ties: earlier items first) and their clicks."""
        if self._popular is None:
            self._popular = np.argsort(-self.popularity[1 : self.count], kind="stable") + 1
        return [(int(i), float(self.popularity[i])) for i in self._popular[:k]]

    def put(self, rows: torch.Tensor, vectors: np.ndarray, count: int) -> None:
        """Items `rows` get their vectors, new ones (up to `count` rows in use, the padding item included) no
        training clicks; the index serves them from now on."""
        added = count - self.count
        self.count = count
        self.vectors = grown(self.vectors, count)
        self.vectors[rows] = torch.from_numpy(vectors)
        self.inputs = grown(self.inputs, count)
        self.inputs[rows] = user_inputs(self.model, self.vectors[rows])
        self.popularity = np.concatenate([self.popularity, np.zeros(added, self.popularity.dtype)])
        self._popular = None
        self.index.put(rows.numpy(), vectors)
