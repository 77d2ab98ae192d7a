"""MIND's files: each split's behaviors.tsv (and dev's oracle.tsv) as chunks of users come, news.tsv at the
end (only the items a split's lines name)."""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from typing import TextIO

import numpy as np
from tqdm import tqdm

from oncerec.data.demo.catalogue import Catalogue
from oncerec.data.demo.entities import ENTITY_FILE, title_entities, write_entity_vectors
from oncerec.data.demo.impressions import Impressions
from oncerec.data.demo.text import DRAWS_PER_ITEM, Draws, news_text
from oncerec.data.demo.vocabulary import SUBCATEGORIES


def _format_time(t: int) -> str:
    """MIND's `11/15/2019 8:24:51 AM` (hour not zero-padded), UTC."""
    tm = time.gmtime(t)
    h = tm.tm_hour
    return (
        f"{tm.tm_mon:02d}/{tm.tm_mday:02d}/{tm.tm_year} {h % 12 or 12}:{tm.tm_min:02d}:{tm.tm_sec:02d} "
        f"{'PM' if h >= 12 else 'AM'}"
    )


def format_date(t: int) -> str:
    return time.strftime("%m/%d/%Y", time.gmtime(t))


class SplitWriter:
    """Streams one split's behaviors.tsv (and oracle.tsv), numbering impressions from 1; keeps its stats."""

    def __init__(self, files: ExitStack, folder: Path, ids: np.ndarray, oracle: bool):
        folder.mkdir()
        self.ids = ids
        self.tokens = (
            np.array([f"{i}-0" for i in ids], dtype=object),
            np.array([f"{i}-1" for i in ids], dtype=object),
        )
        self.behaviors = files.enter_context(_open_tsv(folder / "behaviors.tsv"))
        self.oracle = files.enter_context(_open_tsv(folder / "oracle.tsv")) if oracle else None
        self.used = np.zeros(len(ids), bool)
        self.next_id = 1
        self.users = self.candidates = self.clicks = self.empty_histories = 0
        # dev rows are kept (a few bytes each) to score the oracle and the popularity baseline at the end
        self.kept: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def write(
        self, rng: np.random.Generator, imps: Impressions, histories: list[str], first_user: int
    ) -> None:
        n_imp = len(imps.user)
        size = np.diff(imps.start)
        order = rng.permutation(n_imp)  # interleave the chunk's users, as MIND's files do
        tokens = np.where(imps.label, self.tokens[1][imps.item], self.tokens[0][imps.item]).tolist()
        lines = []
        for k, j in enumerate(order.tolist()):
            a, b = imps.start[j], imps.start[j + 1]
            u = int(imps.user[j])
            lines.append(
                f"{self.next_id + k}\tU{first_user + u + 1}\t{_format_time(int(imps.time[j]))}\t{histories[u]}\t"
                f"{' '.join(tokens[a:b])}\n"
            )
        self.behaviors.write("".join(lines))
        if self.oracle is not None:
            # candidate rows of the impressions in written order
            before = np.cumsum(size[order]) - size[order]
            rows = np.repeat(imps.start[:-1][order] - before, size[order]) + np.arange(len(imps.item))
            imp_ids = np.repeat(np.arange(self.next_id, self.next_id + n_imp), size[order])
            self.oracle.write(
                "".join(
                    f"{i}\t{n}\t{p:.6f}\n"
                    for i, n, p in zip(
                        imp_ids.tolist(),
                        self.ids[imps.item[rows]].tolist(),
                        imps.prob[rows].tolist(),
                        strict=True,
                    )
                )
            )
            self.kept.append((imps.item[rows], imps.label[rows], imps.prob[rows], size[order]))
        self.next_id += n_imp
        self.used[imps.item] = True
        self.users += len(np.unique(imps.user))
        self.candidates += len(imps.item)
        self.clicks += int(imps.label.sum())
        self.empty_histories += sum(1 for u in imps.user.tolist() if not histories[u])

    def stats(self) -> dict:
        n_imp = self.next_id - 1
        return {
            "impressions": n_imp,
            "users": self.users,
            "news": int(self.used.sum()),
            "candidates": self.candidates,
            "clicks": self.clicks,
            "ctr": round(self.clicks / max(1, self.candidates), 4),
            "mean_candidates": round(self.candidates / max(1, n_imp), 2),
            "impressions_with_empty_history": self.empty_histories,
        }


def write_news(
    folder: Path,
    cat: Catalogue,
    rng: np.random.Generator,
    used: tuple[np.ndarray, ...],
    progress: bool,
    fresh: np.ndarray,
    words: tuple[list[tuple[str, ...]], list[tuple[str, ...]]],
    vectors: np.ndarray,
) -> None:
    """news.tsv of each split in catalogue order; an item's text depends only on the seed and its number.
    `words`: the synonyms of every concept for most items and for the `fresh` ones. Each split's
    entity_embedding.vec: the `vectors` of the concepts its titles name (see entities.py)."""
    named: tuple[set[int], set[int]] = (set(), set())
    block = 10_000
    with _open_tsv(folder / "train" / "news.tsv") as train, _open_tsv(folder / "dev" / "news.tsv") as dev:
        files = (train, dev)
        for lo in tqdm(range(0, len(cat.sub), block), desc="demo news", disable=not progress):
            draws = rng.random((min(block, len(cat.sub) - lo), DRAWS_PER_ITEM))
            lines: list[list[str]] = [[] for _ in files]
            for k, row in enumerate(draws):
                i = lo + k
                wanted = [u[i] for u in used]
                if not any(wanted):
                    continue
                category, sub = SUBCATEGORIES[cat.sub[i]]
                title, abstract, mentions = news_text(
                    Draws(row),
                    category,
                    int(cat.sub[i]),
                    int(cat.concept[i]),
                    int(cat.tone[i]),
                    words[int(fresh[i])],
                )
                nid = cat.ids[i]
                url = f"https://example.org/demo/{nid}.html"
                entities = title_entities(title, mentions)
                line = f"{nid}\t{category}\t{sub}\t{title}\t{abstract}\t{url}\t{entities}\t[]\n"
                for w, ls, concepts in zip(wanted, lines, named, strict=True):
                    if w:
                        ls.append(line)
                        concepts.update(c for c, _, _ in mentions)
            for f, ls in zip(files, lines, strict=True):
                f.write("".join(ls))
    for split, concepts in zip(("train", "dev"), named, strict=True):
        write_entity_vectors(folder / split / ENTITY_FILE, vectors, concepts)


def _open_tsv(path: Path) -> TextIO:
    # newline="\n": MIND's line ends on every platform
    return open(path, "w", encoding="utf-8", newline="\n")
