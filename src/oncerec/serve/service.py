"""What `oncerec serve` answers, without HTTP: an export loaded once, ranking items for histories
(`ranking.py`) and taking new items by their content (`catalogue.py`), kept across restarts and shared between
processes by the added-items store (`added.py`).

New items are tokenized as `prepare` tokenizes, encoded by the model's item encoder and put in the index; an id
that is there already is replaced. With `persist`, each request's items are committed to the store before they
are answered as added. Every process serving the same export applies the requests it has not applied yet before
it answers, so several processes (or workers) serve the same items.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from oncerec.errors import OncerecError, shown
from oncerec.inference import read_and_seen
from oncerec.serve.added import AddedItems
from oncerec.serve.catalogue import Catalogue, ItemError
from oncerec.serve.export import load_export
from oncerec.serve.options import DEFAULT_CANDIDATES
from oncerec.serve.ranking import Ranker


class RequestError(OncerecError):
    """A request the service cannot answer: the HTTP status, the field at fault and what is wrong with it."""

    def __init__(self, field: str, message: str, status: int = 422, **detail: object):
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.status, self.detail = field, message, status, detail


@dataclass(frozen=True)
class Query:
    history: list[str]  # item ids, oldest first
    user: str | None
    k: int
    exclude_history: bool = True


@dataclass
class Answer:
    items: list[tuple[str, float]]  # (id, score), best first
    source: str  # "model" or "popularity"
    note: str = ""  # why there are fewer items than asked for ("" when there are not)


class _ReadWriteLock:
    """Many searches at a time, or one change of the index and tables (FAISS must not change under a search).
    A waiting writer holds new readers back, so a steady stream of requests cannot starve it."""

    def __init__(self):
        self._cond = threading.Condition()
        self._readers = self._waiting = 0
        self._writing = False

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._writing and not self._waiting)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            self._cond.wait_for(lambda: not self._writing and not self._readers)
            self._waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class Service:
    def __init__(
        self,
        export_dir: Path,
        persist: bool = False,
        candidates: int = DEFAULT_CANDIDATES,
        added_dir: Path | None = None,
        adding: str = "",
    ):
        """`added_dir`: the added-items folder (default: the export's `added/`); `adding`: why this process must
        not add items ("" when it may)."""
        if candidates < 0:
            raise OncerecError(f"--candidates {candidates}: give 0 (every item) or more")
        ex = load_export(export_dir)
        self.export, self.manifest = ex, ex.manifest
        self.history_len = ex.data.history_len
        self.catalogue = Catalogue(ex)
        self.ranker = Ranker(ex, candidates)
        self.persist = persist
        self.adding = adding or (
            ""
            if ex.manifest["adds_items"]
            else f"model.item={ex.cfg.model.item.name} encodes no content of new items"
        )
        if not self.adding:
            self.catalogue.check_adding()
        folder = Path(added_dir) if added_dir else ex.root / "added"
        what = f"--added-dir {folder}" if added_dir else f"the added-items folder {folder}"
        self.added = AddedItems(folder, ex.vectors.shape[1], ex.manifest["weights_sha256"], persist, what)
        self._lock = _ReadWriteLock()
        self._applied = 0  # the newest request of the store applied
        self.sync()

    # ------------------------------------------------------------------------------------------- ranking

    def recommend(self, history: list[str], user: str | None, k: int, exclude_history: bool = True) -> Answer:
        answer = self.recommend_many([Query(history, user, k, exclude_history)])[0]
        if isinstance(answer, RequestError):
            raise answer
        return answer

    def recommend_many(self, queries: list[Query]) -> list[Answer | RequestError]:
        """An answer to each query (or what is wrong with it), the model run once for all of them: the app
        batches the requests that arrive while a batch is computed, so that under load the fixed cost of a
        model call and an index search is paid once per batch instead of once per request."""
        self._sync_if_changed()
        with self._lock.read():
            answers: list[Answer | RequestError | None] = [None] * len(queries)
            ranked = []  # (position, clicked items, user index, items left out)
            index_of, users = self.catalogue.index_of, self.catalogue.users
            for n, q in enumerate(queries):
                unknown = [h for h in q.history if h not in index_of]
                if unknown:
                    answers[n] = RequestError(
                        "history",
                        f"{len(unknown):,} unknown item ids: {shown(unknown)}",
                        unknown=[shown([x]) for x in unknown[:100]],
                        unknown_count=len(unknown),
                    )
                    continue
                clicked, seen = read_and_seen([index_of[h] for h in q.history], self.history_len)
                u = users.get(q.user or "", 0)
                if not clicked and not self.ranker.knows(u):
                    items = [(self.catalogue.ids[i], clicks) for i, clicks in self.ranker.popular(q.k)]
                    answers[n] = Answer(items, "popularity", self._note(len(items), q.k))
                    continue
                ranked.append((n, clicked, u, seen if q.exclude_history else []))
            if ranked:
                positions, clicked, user, left_out = zip(*ranked, strict=True)
                excludes = [np.array(e, dtype=np.int64) for e in left_out]
                ks = [queries[n].k for n in positions]
                found = self.ranker.rank(list(clicked), list(user), excludes, ks)
                for n, (items, scores), e in zip(positions, found, excludes, strict=True):
                    note = self._note(len(items), queries[n].k, self.ranker.index.held(e))
                    answers[n] = Answer(
                        [(self.catalogue.ids[i], float(x)) for i, x in zip(items, scores, strict=True)],
                        "model",
                        note,
                    )
            return answers

    def _note(self, found: int, k: int, left_out: int = 0) -> str:
        """Why an answer holds fewer than k items: the service holds fewer, once the `left_out` items of the
        history are left out."""
        if found >= k:
            return ""
        why = f", {left_out} of them in the history and left out (exclude_history)" if left_out else ""
        return f"{found} items, not k={k}: the service holds {len(self.ranker.index)} items{why}"

    # ---------------------------------------------------------------------------------------- new items

    def add_items(self, raw: list[dict]) -> dict:
        """Add or replace items from their content fields: {"added": n, "replaced": n, "items": index size}."""
        if self.adding:
            raise RequestError("items", f"this service does not add items: {self.adding}", status=409)
        try:
            items = self.catalogue.validate(raw)
        except ItemError as e:
            raise RequestError(e.field, e.message) from None
        content = self.catalogue.content(items)
        vectors = self.catalogue.encode(content)
        with self._lock.write():
            if not self.persist:
                return self._apply(items, content, vectors)
            self._sync_locked()  # first: a damaged request in the store refuses this one, written nowhere
            seq = self.added.append(items, vectors)  # durable from here
            self._sync_locked(before=seq)  # requests other processes committed meanwhile, in order
            counts = self._apply(items, content, vectors)
            self._applied = seq
            return counts

    def _apply(
        self, items: list[dict[str, str]], content: dict[str, torch.Tensor], vectors: np.ndarray
    ) -> dict:
        """Put items in the catalogue, the ranking tables and the index (under the write lock)."""
        rows, added = self.catalogue.put(items, content)
        self.ranker.put(rows, vectors, len(self.catalogue))
        return {"added": added, "replaced": len(items) - added, "items": len(self.ranker.index)}

    # -------------------------------------------------------------------------- the added-items store

    def _sync_if_changed(self) -> None:
        if self.added.last() != self._applied:
            self.sync()

    def sync(self) -> None:
        """Apply the requests committed since this process last looked (by itself or by others)."""
        with self._lock.write():
            self._sync_locked()

    def _sync_locked(self, before: int | None = None) -> None:
        for seq, items, vectors in self.added.rows(self._applied, before):
            self._apply(items, self.catalogue.content(items), vectors)
            self._applied = seq

    def item_count(self) -> int:
        """Items served, those other processes (workers) added included: their requests are applied first."""
        self._sync_if_changed()
        with self._lock.read():
            return len(self.ranker.index)

    def health(self) -> dict:
        return {
            "status": "ok",
            "model": self.manifest["model"]["name"],
            "ranking": self.manifest["ranking"],
            "index": self.ranker.index.kind,
            "items": self.item_count(),
            "adds_items": not self.adding,
            "persist": self.persist,
            "pid": os.getpid(),  # which process answered: each of `--workers N` is one
        }
