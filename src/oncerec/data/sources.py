"""What `prepare` reads: a raw dataset seen as splits of items and impressions, whatever its format.

- `mind` (and the demo data): MIND's own folders train/ dev/ [test/], streamed line by line.
- `goodreads`, `generic`: interactions without impressions; the ONCE protocol (`data/protocol.py`) turns each
  user's (or group's) interactions in a split into one impression, so evaluation groups by user (or group).
- `once-goodreads`: ONCE's released Goodreads histories; leave-last-out (`data/once_goodreads.py`): one
  group per held-out book.
- `xmind`: a MIND folder whose news text is replaced by one language's xMIND translation (`data/xmind.py`).
- `pens`, `ebnerd`: impressions of their own (`data/pens.py`, `data/ebnerd.py`), seen as MIND's train / dev
  [/ test] splits, so `data.split=mind|once` apply as for MIND.
- `adressa`: page-view events, clicks only: the ONCE protocol with random negatives (`data/adressa.py`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from oncerec.config.schema import DataConfig
from oncerec.data import adressa, ebnerd, generic, goodreads, once_goodreads, pens, xmind
from oncerec.data.mind import (
    ENTITY_FILE,
    Behavior,
    News,
    read_behaviors,
    read_entity_vectors,
    read_news,
    split_folders,
)
from oncerec.data.protocol import (
    Group,
    Interactions,
    add_random_negatives,
    drop_repeated,
    shuffle_candidates,
    user_groups,
)
from oncerec.errors import ConfigError, DataError


class Source:
    splits: list[str]  # in reading order; train first
    files: list[Path]  # what the content hash covers
    protocol: dict | None = None  # what stats.json records about the format or protocol, if anything
    protocol_key = "protocol"  # ... under this key
    items_file = "any split's news.tsv"  # where an id missing from every items file was looked for
    # the columns messages about the history, the candidates and their labels name
    fields = {"history": "history", "candidates": "impressions", "labels": "impressions"}
    rows = False  # Behavior.line is a table's row (Parquet), not a text line
    repeated: int | None = None  # interactions dropped as repeats (formats without impressions)
    # each split is a file of impressions, refused when empty or without a click (`prepare`); the protocol's
    # splits (GroupSource) may be empty on small data
    split_files = True

    def warnings(self) -> list[str]:
        """Lines for the preparation log once everything is read (what was counted, not refused)."""
        return []

    def news(self, split: str) -> Iterator[News]:
        raise NotImplementedError

    def behaviors(self, split: str) -> Iterator[Behavior]:
        raise NotImplementedError

    def where(self, split: str) -> Path:
        """The file named in messages about this split's impressions."""
        raise NotImplementedError

    def entity_vectors(self, wanted: set[str]) -> dict[str, np.ndarray]:
        """Vectors of the wanted entities (MIND's entity_embedding.vec files); none by default."""
        return {}


def files_digest(files: list[Path]) -> str:
    """Content hash of raw files (so a changed file invalidates the cache)."""
    h = hashlib.blake2b(digest_size=16)
    for path in files:
        h.update(f"{path.parent.name}/{path.name}\0".encode())
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def raw_format(cfg: DataConfig) -> str:
    return cfg.demo_format if cfg.format == "demo" else cfg.format


# dataset.json's `domain` (what the GENRE tasks read) by raw format; absent: news
BOOK_FORMATS = ("goodreads", "once-goodreads")


def format_domain(cfg: DataConfig) -> str | None:
    return "books" if raw_format(cfg) in BOOK_FORMATS else None


def raw_files(root: Path, cfg: DataConfig) -> list[Path]:
    """The files preparation reads, found (and checked present) without reading them."""
    fmt = raw_format(cfg)
    if fmt == "mind":
        folders = split_folders(Path(root))
        files = [folders[s] / n for s in sorted(folders) for n in ("news.tsv", "behaviors.tsv")]
        return files + entity_files(folders)
    if fmt == "goodreads":
        return list(goodreads.goodreads_files(Path(root)))
    if fmt == "once-goodreads":
        return list(once_goodreads.once_goodreads_files(Path(root)))
    if fmt == "xmind":
        return raw_files(root, DataConfig()) + xmind.xmind_files(_translations(cfg))
    if fmt == "pens":
        return list(pens.pens_files(Path(root)).values())
    if fmt == "ebnerd":
        return [p for files in ebnerd.ebnerd_files(Path(root)).values() for p in files.values()]
    if fmt == "adressa":
        return adressa.adressa_files(Path(root))
    return list(generic.generic_files(Path(root)))


def _translations(cfg: DataConfig) -> Path:
    if not cfg.translations:
        raise ConfigError(
            "data.format=xmind needs data.translations: the xMIND folder of one language (e.g. xMIND/ron); "
            "data.source stays the MIND folder"
        )
    return Path(cfg.translations)


def entity_files(folders: dict[str, Path]) -> list[Path]:
    """The split folders' entity_embedding.vec files, where present (MIND ships one per split)."""
    return [folders[s] / ENTITY_FILE for s in sorted(folders) if (folders[s] / ENTITY_FILE).is_file()]


class MindSource(Source):
    def __init__(self, root: Path, progress: bool = False):
        self.folders = split_folders(root)
        self.splits = list(self.folders)
        self.files = raw_files(root, DataConfig())
        self.progress = progress

    def news(self, split: str) -> Iterator[News]:
        return read_news(self.folders[split] / "news.tsv", self.progress)

    def behaviors(self, split: str) -> Iterator[Behavior]:
        return read_behaviors(self.folders[split] / "behaviors.tsv", self.progress)

    def where(self, split: str) -> Path:
        return self.folders[split] / "behaviors.tsv"

    def entity_vectors(self, wanted: set[str]) -> dict[str, np.ndarray]:
        """Every split's file, merged: the same entity has the same vector in each (the first one is kept)."""
        vectors: dict[str, np.ndarray] = {}
        for path in entity_files(self.folders):
            for key, v in read_entity_vectors(path, wanted - vectors.keys()).items():
                if vectors and len(v) != len(next(iter(vectors.values()))):
                    raise DataError(
                        path, f"entity {key}: {len(v)} numbers, the other files have another width"
                    )
                vectors[key] = v
        return vectors


class XmindSource(MindSource):
    """MIND's users and impressions, with the news text of one xMIND language."""

    protocol_key = "xmind"

    def __init__(self, root: Path, cfg: DataConfig, progress: bool = False):
        super().__init__(root, progress)
        folder = _translations(cfg)
        files = xmind.xmind_files(folder)
        self.files = self.files + files
        self.translate = xmind.Translator(xmind.read_translations(files, progress), folder, cfg.strict)

    def news(self, split: str) -> Iterator[News]:
        path = self.folders[split] / "news.tsv"
        return self.translate(super().news(split), path)

    @property
    def protocol(self) -> dict:  # read after every news file went through
        return self.translate.stats()

    def warnings(self) -> list[str]:
        s = self.translate.stats()
        lines = []
        if s["untranslated"]:
            lines.append(
                f"{s['untranslated']} news have no translation in {s['translations']} and keep MIND's English "
                f"text (e.g. {', '.join(s['untranslated_examples'][:3])}); see stats.json (xmind), or --strict"
            )
        kept = {f: n for f, n in s["english_kept"].items() if n}
        if kept:
            lines.append(
                f"empty translations in {s['translations']} keep MIND's English text: "
                f"{', '.join(f'{n} {f}s' for f, n in kept.items())}; see stats.json (xmind english_kept), "
                "or --strict"
            )
        return lines


class PensSource(Source):
    """PENS: one news file, train.tsv and valid.tsv as MIND's train and dev."""

    items_file = "news.tsv"
    fields = {"history": "ClicknewsID", "candidates": "pos/neg", "labels": "pos"}

    def __init__(self, root: Path, cfg: DataConfig, progress: bool = False):
        self.paths = pens.pens_files(root)
        self.files = list(self.paths.values())
        self.splits = ["train", "dev"]
        self.seed = cfg.split_seed
        self.progress = progress

    def news(self, split: str) -> Iterator[News]:
        # the news belong to no split: listed once, with train (the word vocabulary is built on them)
        return pens.read_pens_news(self.paths["news"], self.progress) if split == "train" else iter(())

    def behaviors(self, split: str) -> Iterator[Behavior]:
        # split k's candidate order is drawn with split_seed + k, as the protocol's groups are
        return pens.read_impressions(self.paths[split], self.seed + self.splits.index(split), self.progress)

    def where(self, split: str) -> Path:
        return self.paths[split]


class EbnerdSource(Source):
    """EB-NeRD: one articles file; train / validation [/ test] as MIND's train / dev [/ test]."""

    protocol_key = "ebnerd"
    items_file = ebnerd.ARTICLES
    fields = {
        "history": "article_id_fixed",
        "candidates": "article_ids_inview",
        "labels": "article_ids_clicked",
    }
    rows = True

    def __init__(self, root: Path, cfg: DataConfig):
        self.paths = ebnerd.ebnerd_files(root)
        self.history_len = cfg.history_len
        self.files = [p for files in self.paths.values() for p in files.values()]
        self.splits = [s for s in ebnerd.FOLDERS if s in self.paths]
        self.protocol = {}  # counts of what was skipped

    def news(self, split: str) -> Iterator[News]:
        return ebnerd.read_articles(self.paths["articles"]["articles"]) if split == "train" else iter(())

    def behaviors(self, split: str) -> Iterator[Behavior]:
        history = ebnerd.Histories(self.paths[split]["history"], self.history_len)
        counts = self.protocol.setdefault(split, {})
        return ebnerd.read_behaviors(self.paths[split]["behaviors"], history, counts)

    def where(self, split: str) -> Path:
        return self.paths[split]["behaviors"]


@dataclass
class GroupSource(Source):
    """Items and protocol groups held in memory (the protocol needs every user's interactions at once)."""

    items: dict[str, News]
    groups: dict[str, list[Group]]
    item_ids: list[str]
    user_ids: list[str]
    interactions_file: Path
    files: list[Path]
    protocol: dict | None = None
    protocol_key: str = "once_goodreads"
    fields = {"history": "history", "candidates": "items", "labels": "label"}
    split_files = False
    repeated: int | None = None  # repeated (user, item) interactions dropped (drop_repeated), where counted

    def __post_init__(self):
        self.splits = list(self.groups)

    def warnings(self) -> list[str]:
        if not self.repeated:
            return []
        return [
            f"{self.repeated} interactions in {self.interactions_file.name} repeat an earlier one (the same "
            "user and item, and group where given) and were dropped, the earliest kept; see stats.json "
            "(repeated_interactions)"
        ]

    def news(self, split: str) -> Iterator[News]:
        # items belong to no split here: list them once, with train (the word vocabulary is built on them)
        return iter(self.items.values()) if split == "train" else iter(())

    def behaviors(self, split: str) -> Iterator[Behavior]:
        first = 1 + sum(len(self.groups[s]) for s in self.splits[: self.splits.index(split)])
        for k, g in enumerate(self.groups[split]):
            yield Behavior(
                line=0,
                impression_id=first + k,
                user_id=self.user_ids[g.user],
                time=g.time,
                history=[self.item_ids[i] for i in g.history],
                candidates=[self.item_ids[i] for i in g.items],
                labels=g.labels,
            )

    def where(self, split: str) -> Path:
        return self.interactions_file


def sample_negatives(
    groups: dict[str, list[Group]], n_items: int, seen: dict[int, set], cfg: DataConfig
) -> None:
    """Random negatives the user never interacted with (`data.negatives` per training group, `data.eval_negatives`
    per valid / test group, -1: as many), then the candidates shuffled; split k draws with `split_seed + k`."""
    for k, split in enumerate(groups):
        count = cfg.negatives if split == "train" or cfg.eval_negatives < 0 else cfg.eval_negatives
        add_random_negatives(groups[split], n_items, count, seen, cfg.split_seed + k)
        shuffle_candidates(groups[split], cfg.split_seed + k)


def _grouped(
    x: Interactions,
    items: dict[str, News],
    cfg: DataConfig,
    files: list[Path],
    where: Path,
    protocol: dict | None = None,
    key: str = "protocol",
) -> GroupSource:
    x, repeated = drop_repeated(x)
    groups = user_groups(x, cfg, cfg.split_seed)
    seen: dict[int, set] = {}
    for i, u in zip(x.item.tolist(), x.user.tolist(), strict=True):
        seen.setdefault(u, set()).add(i)
    sample_negatives(groups, len(x.item_ids), seen, cfg)
    # only the items the kept groups use (filtering drops the rest)
    used = {i for gs in groups.values() for g in gs for i in (*g.history, *g.items)}
    kept = {x.item_ids[i]: items[x.item_ids[i]] for i in sorted(used)}
    return GroupSource(kept, groups, x.item_ids, x.user_ids, where, files, protocol, key, repeated)


def open_source(root: Path, cfg: DataConfig, progress: bool = False) -> Source:
    fmt = raw_format(cfg)
    root = Path(root)
    if fmt == "mind":
        return MindSource(root, progress)
    if fmt == "xmind":
        return XmindSource(root, cfg, progress)
    if fmt == "pens":
        return PensSource(root, cfg, progress)
    if fmt == "ebnerd":
        return EbnerdSource(root, cfg)
    if fmt == "adressa":
        if cfg.negatives <= 0:
            raise ConfigError(
                "data.format=adressa has clicks only: set data.negatives (random unclicked articles per group), "
                "or start from the data preset `adressa`"
            )
        files = adressa.adressa_files(root)
        x, items, counts = adressa.read_events(files, progress)
        return _grouped(x, items, cfg, files, root, counts, "adressa")
    if fmt == "goodreads":
        books, interactions = goodreads.goodreads_files(root)
        x = goodreads.read_interactions(interactions, cfg, progress)
        wanted = {x.item_ids[i] for i in set(x.item.tolist())}
        items = goodreads.read_books(books, wanted, progress)
        # interactions with books the books file lacks keep empty content, as MIND's missing ids do
        for book in wanted - items.keys():
            items[book] = News(book, "", "", "", "", "")
        return _grouped(x, items, cfg, [books, interactions], interactions)
    if fmt == "once-goodreads":
        r = once_goodreads.read_release(root, cfg)
        groups = once_goodreads.leave_last_out(r.histories)
        seen = {u: set(h) for u, h in r.histories.items()}
        sample_negatives(groups, len(r.book_ids), seen, cfg)
        # every book stays an item (the catalogue negatives are drawn from), in tok.bid.dat order
        protocol = once_goodreads.protocol_stats(r.histories, len(r.user_ids))
        return GroupSource(r.items, groups, r.book_ids, r.user_ids, r.histories_file, r.files, protocol)
    items_file, interactions_file = generic.generic_files(root)
    items = generic.read_items(items_file, cfg)
    x = generic.read_interactions(interactions_file, cfg, items)
    return _grouped(x, items, cfg, [items_file, interactions_file], interactions_file)
