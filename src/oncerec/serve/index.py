"""The item index: FAISS over the item vectors, by inner product. `flat` is exact; `hnsw` (a graph) and `ivf`
(inverted lists over k-means cells) are approximate and much faster on many items. float16 vectors are stored
as FAISS's fp16 scalar quantizer, so the index holds exactly the vectors the export holds.

FAISS rows are never removed (HNSW cannot remove any): an item that is replaced gets a new row and its old row
is left out of every search, as are the rows of the items a query excludes (its history).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from oncerec.errors import OncerecError
from oncerec.serve.options import DEFAULT_EF_SEARCH

SEARCH_KEYS = {"flat": (), "hnsw": ("ef_search",), "ivf": ("nprobe",)}  # what each kind's search may be given
HNSW_M = 32  # links per node: FAISS's usual choice for recall above 0.95
HNSW_EF_CONSTRUCTION = 80
IVF_TRAIN_PER_LIST = 40  # k-means points per cell: FAISS warns under 39


def ivf_lists(n: int) -> int:
    """Cells of an IVF index over n items: about sqrt(n), FAISS's rule of thumb (400 for 160k items)."""
    return max(1, round(math.sqrt(n)))


def default_nprobe(lists: int) -> int:
    """Cells searched per query: a sixth of them (recall@10 0.98 against `flat` on demo-small; an eighth gave
    0.89)."""
    return max(1, lists // 6)


def factory_string(kind: str, dtype: str, n: int) -> str:
    storage = "SQfp16" if dtype == "float16" else "Flat"
    if kind == "flat":
        return storage
    if kind == "hnsw":
        return f"HNSW{HNSW_M},{storage}"
    return f"IVF{ivf_lists(n)},{storage}"


class ItemIndex:
    """FAISS rows -> item indices (`item_of_row`), the current row of each item (`row_of`, -1: none) and the
    rows left out of every search (`dead`). Not thread-safe for `put` during `search`: the service locks."""

    def __init__(self, index, kind: str, search: dict, items: np.ndarray):
        import faiss

        self.faiss = faiss
        self.index, self.kind, self.search_params = index, kind, search
        self.item_of_row = np.asarray(items, dtype=np.int64)
        self.row_of = np.full(int(self.item_of_row.max(initial=0)) + 1, -1, dtype=np.int64)
        self.row_of[self.item_of_row] = np.arange(len(self.item_of_row))
        self.dead = np.zeros(0, dtype=np.int64)

    @classmethod
    def build(
        cls, vectors: np.ndarray, items: np.ndarray, kind: str, dtype: str, search: dict | None = None
    ) -> ItemIndex:
        """An index over `vectors` [n, d] (float32) of the item indices `items` [n]."""
        import faiss

        index = faiss.index_factory(
            vectors.shape[1], factory_string(kind, dtype, len(vectors)), faiss.METRIC_INNER_PRODUCT
        )
        params = dict(search or {})
        if kind == "hnsw":
            faiss.downcast_index(index).hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            params.setdefault("ef_search", DEFAULT_EF_SEARCH)
        if kind == "ivf":
            lists = ivf_lists(len(vectors))
            params.setdefault("nprobe", default_nprobe(lists))
            # a sample trains the cells as well as every item would, in a fraction of the time
            sample = np.random.default_rng(0).permutation(len(vectors))[: lists * IVF_TRAIN_PER_LIST]
            index.train(vectors[np.sort(sample)])
        elif not index.is_trained:  # the fp16 quantizer has nothing to learn, but FAISS asks for a pass
            index.train(vectors[:1])
        index.add(vectors)
        return cls(index, kind, params, items)

    def save(self, path: Path) -> None:
        self.faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, kind: str, search: dict, items: np.ndarray) -> ItemIndex:
        import faiss

        try:
            index = faiss.read_index(str(path))
        except RuntimeError as e:
            raise OncerecError(
                f"{path}: not a readable FAISS index ({str(e).splitlines()[0]}); export again"
            ) from None
        if index.ntotal != len(items):
            raise OncerecError(f"{path}: {index.ntotal} vectors for {len(items)} items; export again")
        return cls(index, kind, search, items)

    def __len__(self) -> int:
        """Items searchable now (replaced items count once)."""
        return len(self.item_of_row) - len(self.dead)

    def put(self, items: np.ndarray, vectors: np.ndarray) -> None:
        """Add items, or replace those already in the index (their old rows are left out from now on)."""
        items = np.asarray(items, dtype=np.int64)
        if items.max() >= len(self.row_of):
            self.row_of = np.concatenate([self.row_of, np.full(items.max() + 1 - len(self.row_of), -1)])
        old = self.row_of[items]
        self.dead = np.concatenate([self.dead, old[old >= 0]])
        self.row_of[items] = len(self.item_of_row) + np.arange(len(items))
        self.item_of_row = np.concatenate([self.item_of_row, items])
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(
        self, queries: np.ndarray, k: int, exclude: list[np.ndarray]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each query [B, d], the k items of highest inner product but its `exclude`d items (item
        indices): (items, scores), best first; fewer only when the index holds fewer (`at_most`).

        One FAISS search for the whole batch (a selector would be one for all queries): the replaced items'
        rows are left out by a selector, and each query's own exclusions by asking for as many more results
        as the longest list of them holds, then dropping them. Every live item has one row, so what is left
        is the query's top k. An approximate index can come up short: HNSW's walk reaches only part of a
        graph whose vectors are nearly alike (270 of 293 items for k=1000 on an export of 298 items, whatever
        efSearch), IVF's cells searched may hold fewer than k. The queries left short are searched again
        exactly, so a large k gets every item it asks for."""
        # both selectors stay referenced here while FAISS reads them (SWIG does not keep the inner one alive)
        batch = self.faiss.IDSelectorBatch(self.dead) if len(self.dead) else None
        selector = self.faiss.IDSelectorNot(batch) if batch is not None else None
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        out = self._search(self.index, self._params(selector), queries, k, exclude)
        short = [n for n, (items, _) in enumerate(out) if len(items) < self.at_most(k, exclude[n])]
        if short and self.kind != "flat":
            index, params = self._exact(selector)
            again = self._search(index, params, queries[short], k, [exclude[n] for n in short])
            for n, found in zip(short, again, strict=True):
                out[n] = found
        return out

    def at_most(self, k: int, exclude: np.ndarray) -> int:
        """How many items a search for k items that leaves out `exclude` can find: k, or every item the index
        holds but the excluded ones."""
        return min(k, len(self) - self.held(exclude))

    def held(self, items: np.ndarray) -> int:
        """How many of these items (indices, repeats counted once) the index holds."""
        items = np.unique(items[items < len(self.row_of)])
        return int(np.count_nonzero(self.row_of[items] >= 0))

    def _search(
        self, index, params, queries: np.ndarray, k: int, exclude: list[np.ndarray]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        scores, found = index.search(queries, k + max(len(e) for e in exclude), params=params)
        out = []
        for rows, row_scores, left_out in zip(found, scores, exclude, strict=True):
            valid = rows >= 0
            items, left = self.item_of_row[rows[valid]], set(left_out.tolist())
            keep = [n for n, item in enumerate(items.tolist()) if item not in left][:k]
            out.append((items[keep], row_scores[valid][keep]))
        return out

    def _exact(self, selector) -> tuple:
        """The index and search parameters of an exact search over the same rows: HNSW's stored vectors
        scanned without the graph, IVF with every cell probed."""
        faiss = self.faiss
        if self.kind == "hnsw":
            return faiss.downcast_index(self.index).storage, faiss.SearchParameters(sel=selector)
        nlist = faiss.extract_index_ivf(self.index).nlist
        return self.index, faiss.SearchParametersIVF(sel=selector, nprobe=nlist)

    def _params(self, selector):
        faiss = self.faiss
        if self.kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=selector, efSearch=self.search_params["ef_search"])
        if self.kind == "ivf":
            return faiss.SearchParametersIVF(sel=selector, nprobe=self.search_params["nprobe"])
        return faiss.SearchParameters(sel=selector) if selector is not None else None
