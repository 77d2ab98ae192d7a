"""What `oncerec serve` answers, without HTTP: an export loaded once, ranking items for a history and taking
new items by their content.

Ranking. An inner-product model (predictor `dot`) searches the index with the user vector: with the exact
index, the order `oncerec recommend` gives. Any other predictor (the CTR heads, MINER) is served in two stages:
the index's `candidates` items of highest inner product with the user's linearised vector (see `_linearised`),
re-ranked by the model; `candidates=0` scores every item with the model, as `recommend` does.
A user the model knows nothing about (an empty history, no GENRE profile, no trained user embedding) gets the
items with the most training clicks (`source: popularity`).

New items are tokenized as `prepare` tokenizes, encoded by the model's item encoder and put in the index; an
id that is there already is replaced. With `persist`, each request's items are written to the added-items
folder (one folder per request, written under a temporary name and renamed: a kill mid-write leaves no half
item) before they are answered as added. Every process serving the same export reads the folders it has not
applied yet, so several processes (or workers) see the same items.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from oncerec.config.schema import CATEGORICAL
from oncerec.data.batching import ItemContent, grown
from oncerec.data.formats.registry import PROMPT_FIELDS
from oncerec.data.prepare import prompt_text
from oncerec.data.tokenize import pack
from oncerec.errors import OncerecError, shown
from oncerec.paths import check_writable, existing_folder
from oncerec.serve.export import load_export
from oncerec.training.evaluate import encode_all_items, read_and_seen, top_items

DEFAULT_CANDIDATES = 200
_WORD = re.compile(r"\w")  # a letter or a digit: a text with one holds a word
LAST = "LAST"  # in the added-items folder: the name of the newest request folder


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
        """`added_dir`: where persisted items are kept (default: the export's `added/`); `adding`: why this
        process must not add items ("" when it may)."""
        if candidates < 0:
            raise OncerecError(f"--candidates {candidates}: give 0 (every item) or more")
        ex = load_export(export_dir)
        self.export, self.model, self.index = ex, ex.model, ex.index
        self.manifest = ex.manifest
        self.two_stage = ex.manifest["ranking"] == "two_stage"
        self.candidates = candidates
        self.history_len = ex.data.history_len
        self.num_items = len(ex.vectors)
        self.vectors = torch.from_numpy(ex.vectors)
        self.mean_item = self.vectors[1:].mean(0)  # where two-stage models are linearised
        # what the user encoder reads of each item, computed once here rather than for every click of every
        # request (NRMS: its attention projections; the largest part of a request's model time)
        self.user_table = self._user_inputs(self.vectors)
        self.popularity = ex.popularity
        self.ids: list[str] = list(ex.data.ids)
        self.index_of = {x: i for i, x in enumerate(self.ids) if i}  # row 0 is the padding item
        self.users = {u: i for i, u in enumerate(ex.data.vocab("user")) if i}  # 0: the unknown user
        self.persist = persist
        self.added_dir = Path(added_dir) if added_dir else ex.root / "added"
        self._check_added_dir(given=bool(added_dir))
        self.adding = adding or (
            ""
            if ex.manifest["adds_items"]
            else f"model.item={ex.cfg.model.item} encodes no content of new items"
        )
        if not self.adding:  # what adding items reads: refused now if missing, not at each request
            _ = self._tokenizer, self._categories
        self._lock = _ReadWriteLock()
        self._applied = ""  # the newest request folder applied
        self._popular: np.ndarray | None = None
        self.sync()

    # ------------------------------------------------------------------------------------------- ranking

    def recommend(self, history: list[str], user: str | None, k: int, exclude_history: bool = True) -> Answer:
        answer = self.recommend_many([Query(history, user, k, exclude_history)])[0]
        if isinstance(answer, RequestError):
            raise answer
        return answer

    @torch.no_grad()
    def recommend_many(self, queries: list[Query]) -> list[Answer | RequestError]:
        """An answer to each query (or what is wrong with it), the model run once for all of them: the app
        batches the requests that arrive while a batch is computed, so that under load the fixed cost of a
        model call and an index search is paid once per batch instead of once per request."""
        self._sync_if_changed()
        with self._lock.read():
            answers: list[Answer | RequestError | None] = [None] * len(queries)
            ranked = []  # (position, clicked items, user index, items left out)
            for n, q in enumerate(queries):
                unknown = [h for h in q.history if h not in self.index_of]
                if unknown:
                    answers[n] = RequestError(
                        "history",
                        f"{len(unknown):,} unknown item ids: {shown(unknown)}",
                        unknown=[shown([x]) for x in unknown[:100]],
                        unknown_count=len(unknown),
                    )
                    continue
                clicked, seen = read_and_seen([self.index_of[h] for h in q.history], self.history_len)
                u = self.users.get(q.user or "", 0)
                if not clicked and not self._knows(u):
                    top = self.popular[: q.k]
                    items = [(self.ids[i], float(self.popularity[i])) for i in top]
                    answers[n] = Answer(items, "popularity", self._note(len(items), q.k))
                    continue
                ranked.append((n, clicked, u, seen if q.exclude_history else []))
            if ranked:
                positions, clicked, users, left_out = zip(*ranked, strict=True)
                reps = self._encode_users(list(clicked), list(users))
                excludes = [np.array(e, dtype=np.int64) for e in left_out]
                found = self._rank(reps, excludes, [queries[n].k for n in positions])
                for n, (items, scores), e in zip(positions, found, excludes, strict=True):
                    note = self._note(len(items), queries[n].k, self.index.held(e))
                    answers[n] = Answer(
                        [(self.ids[i], float(x)) for i, x in zip(items, scores, strict=True)], "model", note
                    )
            return answers

    def _note(self, found: int, k: int, left_out: int = 0) -> str:
        """Why an answer holds fewer than k items: the service holds fewer, once the `left_out` items of the
        history are left out."""
        if found >= k:
            return ""
        why = f", {left_out} of them in the history and left out (exclude_history)" if left_out else ""
        return f"{found} items, not k={k}: the service holds {len(self.index)} items{why}"

    def _encode_users(self, clicked: list[list[int]], users: list[int]) -> torch.Tensor:
        """User representations [B, ...] of histories right-padded into one batch, as training batches them
        (an empty history is one masked-out padding item, as `encode_user` has it)."""
        padded = np.zeros((len(clicked), max(1, *map(len, clicked))), dtype=np.int64)
        for row, c in zip(padded, clicked, strict=True):
            row[: len(c)] = c
        hist = torch.from_numpy(padded)
        return self.model.encode_users(self.user_table[hist], hist > 0, torch.tensor(users), hist)

    @torch.no_grad()
    def _user_inputs(self, vectors: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.model.user_inputs(chunk) for chunk in vectors.split(16384)])

    def _rank(self, reps: torch.Tensor, exclude: list[np.ndarray], ks: list[int]) -> list[tuple]:
        """Each user's top k: (item indices, scores)."""
        if not self.two_stage:
            found = self.index.search(reps.numpy(), max(ks), exclude)
            return [(items[:k], scores[:k]) for (items, scores), k in zip(found, ks, strict=True)]
        if self.candidates == 0:
            every = self.vectors[: self.num_items]
            pairs = enumerate(zip(exclude, ks, strict=True))
            return [top_items(self.model, every, reps[n : n + 1], e.tolist(), k) for n, (e, k) in pairs]
        return self._rerank(reps, exclude, ks)

    def _rerank(self, reps: torch.Tensor, exclude: list[np.ndarray], ks: list[int]) -> list[tuple]:
        """Two stages: the index's candidates for each linearised user vector, scored by the model (all users'
        candidates in one call, padded to the longest list). At least k candidates: the model ranks k items
        when more than `candidates` are asked for. One search for the batch's largest number, each query's
        cut to its own: a query gets the answer it gets alone."""
        wanted = [max(self.candidates, k) for k in ks]
        found = self.index.search(self._linearised(reps), max(wanted), exclude)
        found = [(items[:n], scores[:n]) for (items, scores), n in zip(found, wanted, strict=True)]
        rows = torch.zeros((len(found), max(len(f[0]) for f in found)), dtype=torch.long)
        for row, (items, _) in zip(rows, found, strict=True):
            row[: len(items)] = torch.from_numpy(items)
        scores = self.model.score(reps, self.vectors[rows], rows).masked_fill(rows == 0, float("-inf"))
        out = []
        for row, score, (items, _), k in zip(rows, scores, found, ks, strict=True):
            top = torch.topk(score, min(k, len(items)))
            out.append((row[top.indices].tolist(), top.values.tolist()))
        return out

    def _linearised(self, reps: torch.Tensor) -> np.ndarray:
        """For each user, the vector whose inner product with an item vector follows the model's score of that
        item, to first order: the gradient of the score with respect to the candidate vector at the mean item
        (for an inner-product model, the user vector itself). On demo-small it found the whole top 10 of DNN,
        DeepFM and DIN among 200 candidates, where the mean of the clicked items' vectors found 0-30% of it. A
        head that reads the candidate's category sees the padding item's (none) here. Rows are scored apart,
        so one backward pass gives every user's gradient."""
        x = self.mean_item.expand(len(reps), 1, -1).clone().requires_grad_(True)
        with torch.enable_grad():
            score = self.model.score(reps, x, torch.zeros((len(reps), 1), dtype=torch.long))
            (grad,) = torch.autograd.grad(score.sum(), x)  # not into the weights: requests run side by side
        return grad[:, 0].numpy()

    def _knows(self, user: int) -> bool:
        """Whether the model has something of this user besides clicks: a GENRE profile, or a user embedding
        that trained (LSTUR's)."""
        if not user:
            return False
        attributes = self.model.user_attributes
        if attributes is not None and bool(attributes.profile(torch.tensor([user]))[1][0]):
            return True
        return self.model.user_encoder.knows(user)

    @property
    def popular(self) -> np.ndarray:
        """Item indices by training clicks, most first (ties: earlier items first)."""
        if self._popular is None:
            self._popular = np.argsort(-self.popularity[1 : self.num_items], kind="stable") + 1
        return self._popular

    # ---------------------------------------------------------------------------------------- new items

    def add_items(self, raw: list[dict]) -> dict:
        """Add or replace items from their content fields: {"added": n, "replaced": n, "items": index size}."""
        if self.adding:
            raise RequestError("items", f"this service does not add items: {self.adding}", status=409)
        items = self._validate(raw)
        content = self._content(items)
        batch = self.export.cfg.exp.eval_batch_size
        encoded = encode_all_items(
            self.model, batch, "cpu", content=ItemContent.of(self.model.content.fields, content)
        )
        # stored as the export stores its vectors (float16 rounds), so that a restart serves the same values
        vectors = encoded.numpy().astype(self.manifest["dtype"]).astype(np.float32)
        with self._lock.write():
            if not self.persist:
                return self._apply(items, content, vectors)
            self.added_dir.mkdir(parents=True, exist_ok=True)
            with self._folder_lock():
                self._sync_locked()
                name = self._write_request(items, vectors)
                counts = self._apply(items, content, vectors)
                self._applied = name
            return counts

    def _validate(self, raw: list) -> list[dict[str, str]]:
        if not isinstance(raw, list) or not raw:
            raise RequestError("items", "give a non-empty list of items")
        allowed = {"id", *self.export.data.text_fields, *CATEGORICAL, *PROMPT_FIELDS}
        read = list(self.export.cfg.model.item_fields)
        if "prompt" in read:  # filled from the template's fields when not given
            read += [f for f in PROMPT_FIELDS if f not in read]
        seen: set[str] = set()
        items = []
        for n, item in enumerate(raw):
            where = f"items[{n}]"
            if not isinstance(item, dict):
                raise RequestError(where, "an item is an object of content fields")
            for key, value in item.items():
                if key not in allowed:
                    raise RequestError(
                        f"{where}.{key}", f"not an item field; fields: {', '.join(sorted(allowed))}"
                    )
                if not isinstance(value, str):
                    raise RequestError(f"{where}.{key}", "give a string")
            if not item.get("id", "").strip():
                raise RequestError(f"{where}.id", "every item needs a non-empty id")
            if item["id"] in seen:
                raise RequestError(f"{where}.id", f"{item['id']!r} appears twice in this request")
            if not self._reads_content(item, read):
                raise RequestError(
                    where,
                    f"nothing the model reads in {', '.join(read)}: give a text with words (spaces and "
                    "punctuation alone are no content) or a category the model trained on",
                )
            seen.add(item["id"])
            items.append(dict(item))
        return items

    @cached_property
    def _tokenizer(self):
        from oncerec.data.tokenize import HFTokenizer, WordTokenizer

        cfg = self.export.cfg
        if cfg.embed.tokenizer == "word":
            return WordTokenizer(self.export.data.vocab("word"), cfg.data.lowercase)
        return HFTokenizer(str(self.export.root / "tokenizer"))

    def _reads_content(self, item: dict[str, str], read: list[str]) -> bool:
        """Whether the item holds a token the model reads: a word in a text field (one outside the vocabulary
        is read as its unknown word, which trained), or a category it trained on. A text of spaces or
        punctuation alone carries nothing the model can rank by, and a CTR head ranked such an item near the
        top for every user."""
        for field in read:
            if field in CATEGORICAL:
                if self._categories[field].get(item.get(field, ""), 0):
                    return True
            elif _WORD.search(item.get(field, "")):
                return True
        return False

    @cached_property
    def _categories(self) -> dict[str, dict[str, int]]:
        return {f: {c: i for i, c in enumerate(self.export.data.vocab(f))} for f in CATEGORICAL}

    def _content(self, items: list[dict[str, str]]) -> dict[str, torch.Tensor]:
        """The items' content as the model's tensors: token ids cut to the prepared widths (the start kept),
        categories by their training vocabulary (one training never saw is 0, as in `prepare`)."""
        out = {}
        for key, table in self.model.content.tensors.items():
            if key in CATEGORICAL:
                codes = [self._categories[key].get(item.get(key, ""), 0) for item in items]
                out[key] = torch.tensor(codes, dtype=table.dtype)
            elif not key.endswith("_len"):
                texts = [self._text(item, key) for item in items]
                ids, kept, _ = pack(self._tokenizer.encode(texts), table.shape[1])
                out[key] = torch.from_numpy(ids).to(table.dtype)
                out[f"{key}_len"] = torch.from_numpy(kept).to(table.dtype)
        return out

    def _text(self, item: dict[str, str], field: str) -> str:
        if field == "prompt" and "prompt" not in item:  # as `prepare` fills it from the data's template
            return prompt_text(self.export.cfg.data.prompt, {k: item.get(k, "") for k in PROMPT_FIELDS})
        return item.get(field, "")

    def _apply(
        self, items: list[dict[str, str]], content: dict[str, torch.Tensor], vectors: np.ndarray
    ) -> dict:
        """Put items in the tables and the index (under the write lock)."""
        rows, added = [], 0
        for item in items:
            i = self.index_of.get(item["id"])
            if i is None:
                i = self.index_of[item["id"]] = self.num_items + added
                self.ids.append(item["id"])
                added += 1
            rows.append(i)
        index = torch.tensor(rows, dtype=torch.long)
        self.model.content.put(index, content)
        self.num_items += added
        self.vectors = grown(self.vectors, self.num_items)
        self.vectors[index] = torch.from_numpy(vectors)
        self.user_table = grown(self.user_table, self.num_items)
        self.user_table[index] = self._user_inputs(self.vectors[index])
        self.popularity = np.concatenate([self.popularity, np.zeros(added, self.popularity.dtype)])
        self._popular = None
        self.index.put(np.array(rows), vectors)
        return {"added": added, "replaced": len(items) - added, "items": len(self.index)}

    # ------------------------------------------------------------------------------ the added-items folder

    @contextmanager
    def _folder_lock(self) -> Iterator[None]:
        """One writer at a time across processes: request folders are numbered in the order they are written,
        which is the order every process applies them in."""
        with open(self.added_dir / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _write_request(self, items: list[dict[str, str]], vectors: np.ndarray) -> str:
        """One request's items as a numbered folder (under the folder lock); durable when this returns."""
        for stale in self.added_dir.glob(".tmp-*"):  # a writer killed mid-write (none can be writing now)
            shutil.rmtree(stale, ignore_errors=True)
        name = f"{int(self._applied or 0) + 1:08d}"
        tmp = self.added_dir / f".tmp-{name}"
        tmp.mkdir()
        (tmp / "items.json").write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
        np.save(tmp / "vectors.npy", vectors)
        for f in (tmp / "items.json", tmp / "vectors.npy", tmp):
            _fsync(f)
        os.replace(tmp, self.added_dir / name)
        last = self.added_dir / f".{LAST}.tmp"
        last.write_text(name)
        _fsync(last)
        os.replace(last, self.added_dir / LAST)
        _fsync(self.added_dir)
        return name

    def _sync_if_changed(self) -> None:
        if self._last_written() != self._applied:
            self.sync()

    def _last_written(self) -> str:
        try:
            return (self.added_dir / LAST).read_text().strip()
        except FileNotFoundError:
            return ""

    def _check_added_dir(self, given: bool) -> None:
        """Refuses at start an added-items folder this service cannot use, rather than failing every request:
        one that is or lies under a file, or one `--persist` cannot write in."""
        what = f"--added-dir {self.added_dir}" if given else f"the added-items folder {self.added_dir}"
        if self.persist:
            check_writable(self.added_dir, f"--persist: {what}", "give --added-dir DIR on a writable disk")
        else:
            existing_folder(self.added_dir, what)

    def sync(self) -> None:
        """Apply the request folders written since this process last looked (by itself or by others)."""
        with self._lock.write():
            self._sync_locked()

    def _sync_locked(self) -> None:
        if not self.added_dir.is_dir():
            return
        names = sorted(
            p.name for p in self.added_dir.iterdir() if p.name.isdigit() and p.name > self._applied
        )
        for name in names:
            items, vectors = self._read_request(self.added_dir / name)
            self._apply(items, self._content(items), vectors)
            self._applied = name

    def _read_request(self, folder: Path) -> tuple[list[dict[str, str]], np.ndarray]:
        """One request folder's items and their vectors, refused in one line when damaged."""
        try:
            items = json.loads((folder / "items.json").read_text(encoding="utf-8"))
            vectors = np.load(folder / "vectors.npy")
        except (OSError, ValueError) as e:
            why = str(e)
        else:
            listed = isinstance(items, list) and all(
                isinstance(item, dict)
                and isinstance(item.get("id"), str)
                and all(isinstance(v, str) for v in item.values())
                for item in items
            )
            why = "" if listed else "items.json is not a list of items, objects of strings with an id"
            if listed and vectors.shape != (len(items), self.vectors.shape[1]):
                why = (
                    f"vectors.npy of shape {vectors.shape} for {len(items)} items of {self.vectors.shape[1]}"
                )
        if why:
            raise OncerecError(
                f"{folder}: damaged added items ({why}); restore the folder, or remove it (its items are lost)"
            )
        return items, vectors

    def item_count(self) -> int:
        """Items served, those other processes (workers) added included: their folders are applied first."""
        self._sync_if_changed()
        with self._lock.read():
            return len(self.index)

    def health(self) -> dict:
        return {
            "status": "ok",
            "model": self.manifest["model"]["name"],
            "ranking": self.manifest["ranking"],
            "index": self.index.kind,
            "items": self.item_count(),
            "adds_items": not self.adding,
            "persist": self.persist,
            "pid": os.getpid(),  # which process answered: each of `--workers N` is one
        }


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
