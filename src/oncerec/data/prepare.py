"""Raw data folder (any registered format) -> dataset directory (memory-mappable arrays + Parquet + JSON).

Layout of a dataset directory (other tools rely on it):

    dataset.json                 manifest: format version, data config, source hash, fields, splits
    stats.json                   counts per split, vocabulary sizes, token-length percentiles, missing ids
    items.parquet                id, category, subcategory, title, abstract, url (row 0 is the padding item)
    items/<tokenizer>/<field>.npy       int32 [N, max_len] token ids, right-padded with 0, start of text kept
    items/<tokenizer>/<field>.len.npy   int32 [N] kept lengths (masks come from these, not from pad ids)
    items/category.npy, items/subcategory.npy   int32 [N] (0 = padding / unknown)
    items/word/title.entities.npy       int32 [N, max_len] the entity of each title word (0: none; DKN)
    items/entity_vectors.npy     float32 [E, D] the entities' vectors (entity_embedding.vec; row 0 and entities
                                 without a vector are zero), D = 0 when the raw data has no vectors
    vocab/<tokenizer>.json, vocab/category.json, vocab/subcategory.json, vocab/user.json, vocab/entity.json
    histories/items.npy          int32 [H, history_len] item indices, oldest first, right-padded with 0
    histories/length.npy, histories/user.npy    int32 [H]
    <split>/{imp_id,user,time,history,offsets,item,label}.npy   impressions in CSR form: impression j's
                                 candidates are rows offsets[j]:offsets[j+1]; label is -1 when unknown

Histories are stored once per distinct (user, history): MIND repeats a user's history on each impression.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from array import array
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from oncerec.config.schema import CATEGORICAL
from oncerec.data.formats import DataConfig, format_of
from oncerec.data.formats.mind import Behavior
from oncerec.data.formats.registry import PROMPT_FIELDS
from oncerec.data.formats.source import Source, files_digest
from oncerec.data.tokenize import make_tokenizer, tokenize_field, word_spans
from oncerec.errors import ConfigError, DataError, OncerecError
from oncerec.paths import check_new_dir, publish_dir

logger = logging.getLogger(__name__)

# 2: categories unseen in the training split map to 0 (unknown); 3: title entities and their vectors
FORMAT_VERSION = 3
DEFAULT_MAX_LEN = 64


class _Index:
    """String id -> dense int index; index 0 is reserved for padding / unknown."""

    def __init__(self, first: str = "<pad>"):
        self.ids = [first]
        self.index = {first: 0}

    def add(self, key: str) -> int:
        i = self.index.get(key)
        if i is None:
            i = self.index[key] = len(self.ids)
            self.ids.append(key)
        return i


class _SplitArrays:
    """Growable compact buffers for one split's impressions (no Python object per row is kept)."""

    def __init__(self):
        self.imp_id, self.time, self.offsets = array("q"), array("q"), array("q", [0])
        self.user, self.history, self.item = array("i"), array("i"), array("i")
        self.label = array("b")

    def to_numpy(self) -> dict[str, np.ndarray]:
        return {
            "imp_id": np.frombuffer(self.imp_id, np.int64).copy(),
            "user": np.frombuffer(self.user, np.int32).copy(),
            "time": np.frombuffer(self.time, np.int64).copy(),
            "history": np.frombuffer(self.history, np.int32).copy(),
            "offsets": np.frombuffer(self.offsets, np.int64).copy(),
            "item": np.frombuffer(self.item, np.int32).copy(),
            "label": np.frombuffer(self.label, np.int8).copy(),
        }


SPLIT_ARRAYS = ("imp_id", "user", "time", "history", "offsets", "item", "label")


def select_impressions(split: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays of a split (`SPLIT_ARRAYS`) cut to the given impressions, in the given order."""
    off = np.asarray(split["offsets"])
    lengths = off[rows + 1] - off[rows]
    new_off = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    cand = np.repeat(off[rows] - new_off[:-1], lengths) + np.arange(new_off[-1])
    out = {k: np.asarray(split[k])[rows] for k in ("imp_id", "user", "time", "history")}
    out["offsets"] = new_off
    out["item"], out["label"] = np.asarray(split["item"])[cand], np.asarray(split["label"])[cand]
    return out


def once_split(dev: dict[str, np.ndarray], seed: int) -> tuple[dict, dict]:
    """The ONCE protocol without its list: dev impressions shuffled by a fixed seed and halved into valid and
    test."""
    order = np.argsort(dev["imp_id"], kind="stable")
    np.random.default_rng(seed).shuffle(order)
    half = len(order) // 2
    return select_impressions(dev, np.sort(order[:half])), select_impressions(dev, np.sort(order[half:]))


PACKAGED_SPLIT_LIST = "once_mind_imp_list.json"  # ONCE's mind_imp_list.json: MIND-small's 73,152 dev ids


def packaged_split_list() -> Path:
    return Path(str(resources.files("oncerec.data") / PACKAGED_SPLIT_LIST))


def split_list_path(cfg: DataConfig) -> Path | None:
    """The file `data.split_list` names (empty or `once`: the packaged ONCE list; `none`: no list)."""
    if cfg.split_list == "none":
        return None
    path = packaged_split_list() if cfg.split_list in ("", "once") else Path(cfg.split_list)
    if not path.is_file():
        raise ConfigError(f"data.split_list: no such file {path}")
    return path


def read_split_list(path: Path) -> np.ndarray:
    """A split list: a JSON list of distinct impression ids (integers)."""
    try:
        ids = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(path, f"not a JSON list of impression ids ({e})") from None
    if not isinstance(ids, list) or not ids:
        raise DataError(path, "expected a non-empty JSON list of impression ids")
    bad = next((x for x in ids if isinstance(x, bool) or not isinstance(x, int) or x < 0), None)
    if bad is not None:
        raise DataError(path, f"impression id {bad!r} is not a non-negative integer")
    array_ = np.asarray(ids, np.int64)
    unique, first, counts = np.unique(array_, return_index=True, return_counts=True)
    if (counts > 1).any():
        repeated = unique[counts > 1][0]
        raise DataError(
            path,
            f"impression {repeated} is listed twice (positions {np.flatnonzero(array_ == repeated)[:2].tolist()})",
        )
    return array_


def once_split_by_list(
    dev: dict[str, np.ndarray], ids: np.ndarray, list_path: Path, dev_path: Path
) -> tuple[dict, dict]:
    """ONCE's split with its list: the first half of the listed impressions is valid, the second half test
    (each kept in the dev file's order). Every listed impression must be in dev and every dev impression
    listed."""
    imp = np.asarray(dev["imp_id"], np.int64)
    absent = ~np.isin(ids, imp)
    if absent.any():
        raise DataError(
            list_path,
            f"impression {ids[absent][0]} of the split list is not in {dev_path} "
            f"({int(absent.sum()):,} listed impressions are not)",
        )
    unlisted = ~np.isin(imp, ids)
    if unlisted.any():
        raise DataError(
            dev_path,
            f"impression {imp[unlisted][0]} is not in the split list {list_path} "
            f"({int(unlisted.sum()):,} dev impressions are not)",
        )
    order = np.argsort(imp)
    rows = order[np.searchsorted(imp, ids, sorter=order)]
    half = len(rows) // 2
    return select_impressions(dev, np.sort(rows[:half])), select_impressions(dev, np.sort(rows[half:]))


def once_valid_test(dev: dict[str, np.ndarray], cfg: DataConfig, dev_path: Path) -> tuple[dict, dict, dict]:
    """`data.split=once`: (valid, test, how) by `data.split_list`, see DataConfig. `how` goes into the
    manifest."""
    path = split_list_path(cfg)
    if path is not None:
        ids = read_split_list(path)
        packaged = cfg.split_list == ""
        # by default the packaged list is MIND-small's: other dev data keeps the seeded halving
        if not packaged or (len(ids) == len(dev["imp_id"]) and np.isin(dev["imp_id"], ids).all()):
            valid, test = once_split_by_list(dev, ids, path, dev_path)
            name = PACKAGED_SPLIT_LIST if cfg.split_list in ("", "once") else str(path)
            return valid, test, {"list": name, "sha256": split_list_digest(path), "impressions": len(ids)}
    valid, test = once_split(dev, cfg.split_seed)
    return valid, test, {"seed": cfg.split_seed}


def split_list_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _percentiles(full: np.ndarray, max_len: int) -> dict:
    if len(full) == 0:
        return {}
    p = np.percentile(full, [50, 90, 99])
    return {
        "p50": float(p[0]),
        "p90": float(p[1]),
        "p99": float(p[2]),
        "max": int(full.max()),
        "truncated": int((full > max_len).sum()),
        "max_len": max_len,
    }


def prepare(
    source: Path, cfg: DataConfig, out: Path, progress: bool = True, digest: str | None = None
) -> dict:
    """Prepare a raw folder (in the format `cfg.format` names) into `out`; nothing is written there unless
    everything succeeds. `digest`: the raw files' `files_digest` when the caller already has it (hashing
    MIND-large takes seconds). The stages, in order: items, impressions, splits, tokens (with the title
    entities and the categories), write, stats."""
    out = Path(out)
    check_new_dir(out, "--out")
    raw = format_of(cfg).open(Path(source), cfg, progress)
    started = time.perf_counter()
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        items = read_items(raw, cfg)
        logger.info(f"read {items.count - 1} items")
        for line in raw.warnings():
            logger.warning(line)
        impressions = read_impressions(raw, items, cfg)
        splits = name_splits(impressions, raw, cfg)
        tokens = tokenize(items, cfg)
        entities = link_entities(items, raw, cfg)
        categories = encode_categories(items, impressions, splits)
        write(tmp, items, impressions, splits, tokens, entities, categories)
        stats = dataset_stats(raw, cfg, items, impressions, splits, tokens, entities, categories)
        warning = missing_ids_warning(stats["missing"])
        if warning:
            logger.warning(warning)
        seconds = time.perf_counter() - started
        lines = sum(s["impressions"] for s in stats["splits"].values()) + stats["items"]
        stats["prepare"] = {
            "seconds": round(seconds, 2),
            "lines_per_s": round(lines / max(seconds, 1e-9)),
            "peak_rss_mb": round(_peak_rss_mb()),
        }
        _write_json(tmp / "stats.json", stats)
        _write_json(tmp / "dataset.json", manifest(source, cfg, raw, splits, digest))
        out.parent.mkdir(parents=True, exist_ok=True)
        publish_dir(tmp, out, "dataset.json")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return stats


def _peak_rss_mb() -> float:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except ImportError:  # pragma: no cover - not on Linux
        return psutil.Process().memory_info().rss / 2**20


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


@dataclass
class Items:
    """Every item of the raw data, in the order first listed (row 0: the padding item)."""

    index: _Index  # item id -> row
    columns: dict[str, list[str]]  # category, subcategory, title, abstract, url [, prompt]: a value per row
    title_entities: list[tuple]  # per row: the title's (entity id, start, end) spans
    train_rows: list[int]  # the rows the training split lists, repeats kept: the word vocabulary's texts

    @property
    def count(self) -> int:
        """Rows, the padding item's included."""
        return len(self.index.ids)


def read_items(source: Source, cfg: DataConfig) -> Items:
    """Stage 1, items: every split's items file in reading order, an item kept as first listed; the `prompt`
    column filled from `data.prompt` when it is a text field; an unknown text field refused."""
    index = _Index()
    columns: dict[str, list[str]] = {k: [""] for k in (*CATEGORICAL, "title", "abstract", "url")}
    title_entities: list[tuple] = [()]
    train_rows: list[int] = []
    for split in source.splits:
        for news in source.news(split):
            known = news.news_id in index.index
            i = index.add(news.news_id)
            if split == "train":
                train_rows.append(i)
            if not known:
                for k in columns:
                    columns[k].append(getattr(news, k))
                title_entities.append(news.title_entities)
    if "prompt" in cfg.text_fields:
        columns["prompt"] = [""] + [
            prompt_text(cfg.prompt, {k: columns[k][i] for k in PROMPT_FIELDS})
            for i in range(1, len(index.ids))
        ]
    for field in cfg.text_fields:
        if field not in columns:
            raise OncerecError(
                f"data.text_fields: unknown field `{field}`; MIND has title, abstract (and `prompt`, "
                "the data.prompt template filled in)"
            )
    return Items(index, columns, title_entities, train_rows)


@dataclass
class Impressions:
    """Every split's impressions as the raw data names its splits, with their users and histories."""

    users: _Index  # user id -> index (0: unknown)
    history_items: np.ndarray  # int32 [H, history_len]: item rows, oldest first, right-padded with 0
    history_length: np.ndarray  # int32 [H]
    history_user: np.ndarray  # int32 [H]
    splits: dict[str, dict[str, np.ndarray]]  # the source's split name -> its `SPLIT_ARRAYS`
    missing: dict[str, dict[str, int]]  # history / candidates: id no items file has -> occurrences


def read_impressions(source: Source, items: Items, cfg: DataConfig) -> Impressions:
    """Stage 2, impressions: each split's impressions in CSR form. A history is stored once per distinct (user,
    history), its ids cut to the last `data.history_len`; an id no items file has is counted (dropped from a
    history, kept as an empty candidate) or, with `data.strict`, refused; an impression showing a candidate
    twice, or a split file without impressions or clicks, is refused."""
    users = _Index("<unk>")
    hist_key: dict[tuple[int, int], int] = {}
    hist_items, hist_len, hist_user = array("i", [0] * cfg.history_len), array("i", [0]), array("i", [0])
    missing: dict[str, dict[str, int]] = {"history": {}, "candidates": {}}
    splits: dict[str, dict[str, np.ndarray]] = {}
    for split in source.splits:
        arrays = _SplitArrays()
        for b in source.behaviors(split):
            u = users.add(b.user_id)
            key = (u, hash(tuple(b.history)))
            h = hist_key.get(key)
            if h is None:
                row = []
                for nid in b.history:
                    i = items.index.index.get(nid)
                    if i is None:
                        _missing(missing, "history", nid, source, split, b.line, cfg.strict)
                    else:
                        row.append(i)
                row = row[-cfg.history_len :]
                h = hist_key[key] = len(hist_len)
                hist_items.extend(row)
                hist_items.extend([0] * (cfg.history_len - len(row)))
                hist_len.append(len(row))
                hist_user.append(u)
            _distinct_candidates(b, source, split)
            for nid in b.candidates:
                i = items.index.index.get(nid)
                if i is None:
                    _missing(missing, "candidates", nid, source, split, b.line, cfg.strict)
                    i = 0
                arrays.item.append(i)
            arrays.label.extend(b.labels if b.labels is not None else [-1] * len(b.candidates))
            arrays.offsets.append(len(arrays.item))
            arrays.imp_id.append(b.impression_id)
            arrays.user.append(u)
            arrays.time.append(b.time)
            arrays.history.append(h)
        splits[split] = arrays.to_numpy()
        if source.split_files:
            _check_labels(splits[split], source, split)
        logger.info(f"read {len(arrays.imp_id)} impressions of {split}")
    return Impressions(
        users,
        np.frombuffer(hist_items, np.int32).reshape(len(hist_len), cfg.history_len),
        np.frombuffer(hist_len, np.int32),
        np.frombuffer(hist_user, np.int32),
        splits,
        missing,
    )


@dataclass
class Splits:
    """The dataset's splits: train, valid [, test]."""

    arrays: dict[str, dict[str, np.ndarray]]  # split name -> its `SPLIT_ARRAYS`
    once_split: dict | None  # data.split=once: the list or the seed valid and test were made with


def name_splits(impressions: Impressions, source: Source, cfg: DataConfig) -> Splits:
    """Stage 3, splits: the raw splits named train / valid [/ test]. A protocol's splits already are (its data
    has no dev set); MIND's train / dev [/ test] are by `data.split`: `mind` keeps them (dev is valid), `once`
    halves dev into valid and test (`once_valid_test`)."""
    raw = impressions.splits
    if "valid" in raw:  # the protocol of a dataset without impressions made them
        if cfg.split_list not in ("", "none"):
            raise ConfigError(
                f"data.split_list lists MIND dev impressions; {cfg.format} data has no dev set (its valid and "
                "test splits come from the protocol)"
            )
        return Splits(raw, None)
    if cfg.split == "once":
        named = {"train": raw["train"]}
        named["valid"], named["test"], how = once_valid_test(raw["dev"], cfg, source.where("dev"))
        logger.info(
            f"ONCE split of dev by the list {how['list']}"
            if "list" in how
            else f"ONCE split of dev halved with seed {how['seed']}"
        )
        return Splits(named, how)
    named = {"train": raw["train"], "valid": raw["dev"]}
    if "test" in raw:
        named["test"] = raw["test"]
    return Splits(named, None)


@dataclass
class Tokens:
    """Each text field's token ids under each tokenizer."""

    # tokenizer -> field -> ([N, max_len] ids, [N] kept lengths, [N] full lengths)
    fields: dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]]
    sizes: dict[str, int]  # tokenizer -> vocabulary size
    words: list[str] | None  # the `word` tokenizer's vocabulary


def tokenize(items: Items, cfg: DataConfig) -> Tokens:
    """Stage 4, tokens: every text field of every item under each of `data.tokenizers`, packed to the field's
    `data.max_lengths` (the start kept). The `word` vocabulary is built on the training split's items."""
    fields: dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    sizes: dict[str, int] = {}
    words = None
    for name in cfg.tokenizers:
        train_texts = (items.columns[f][i] for f in cfg.text_fields for i in items.train_rows)
        tok = make_tokenizer(name, train_texts, cfg.min_word_count, cfg.lowercase)
        fields[name] = {}
        for field in cfg.text_fields:
            ids, kept, full = tokenize_field(tok, items.columns[field], _max_len(cfg, field))
            kept[0] = 0
            fields[name][field] = (ids, kept, full)
        if name == "word":
            words = tok.vocab
            sizes[name] = len(tok.vocab)
        else:
            sizes[name] = tok.vocab_size
    return Tokens(fields, sizes, words)


def _max_len(cfg: DataConfig, field: str) -> int:
    return cfg.max_lengths.get(field, DEFAULT_MAX_LEN)


@dataclass
class Entities:
    """The entity of each title word and the entities' vectors."""

    aligned: np.ndarray  # int32 [N, title max_len]: each `word` token's entity (0: none)
    ids: list[str]  # entity index -> id (0: <none>)
    vectors: np.ndarray  # float32 [E, D]; zero for row 0 and entities without a vector
    stats: dict


def link_entities(items: Items, source: Source, cfg: DataConfig) -> Entities | None:
    """Stage 4, title entities (with the `word` tokens of the title; None without them): the entity of each
    title word [N, max_len] (0: none), aligned with the `word` tokenizer's tokens (a word belongs to the entity
    whose occurrence holds its first character), and the entities' vectors. Only entities of a word kept in
    some title are indexed."""
    if "word" not in cfg.tokenizers or "title" not in cfg.text_fields:
        return None
    max_len = _max_len(cfg, "title")
    titles, spans = items.columns["title"], items.title_entities
    index = _Index("<none>")
    aligned = np.zeros((len(titles), max_len), np.int32)
    tagged = 0
    for i, (title, occurrences) in enumerate(zip(titles, spans, strict=True)):
        if not occurrences:
            continue
        for k, (start, _) in enumerate(word_spans(title)[:max_len]):
            entity = next((e for e, a, b in occurrences if a <= start < b), None)
            if entity is not None:
                aligned[i, k] = index.add(entity)
                tagged += 1
    vectors = source.entity_vectors(set(index.ids[1:]))
    dim = len(next(iter(vectors.values()))) if vectors else 0
    table = np.zeros((len(index.ids), dim), np.float32)
    for e, v in vectors.items():
        table[index.index[e]] = v
    stats = {"entities": len(index.ids) - 1, "with_vector": len(vectors), "dim": dim, "words": tagged}
    return Entities(aligned, index.ids, table, stats)


def encode_categories(
    items: Items, impressions: Impressions, splits: Splits
) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Stage 4, categories: each categorical field as int32 [N] codes and its vocabulary. A category no
    training item has would get an embedding that never trains (a random vector at evaluation): it maps to 0,
    the unknown id, as the reference implementations do."""
    seen = _items_in_training(splits.arrays["train"], impressions.history_items, items.count)
    out = {}
    for field in CATEGORICAL:
        index = _Index()
        for i in np.flatnonzero(seen):
            index.add(items.columns[field][i])
        codes = [0] + [index.index.get(c, 0) for c in items.columns[field][1:]]
        out[field] = (np.array(codes, np.int32), index.ids)
    return out


def write(
    tmp: Path,
    items: Items,
    impressions: Impressions,
    splits: Splits,
    tokens: Tokens,
    entities: Entities | None,
    categories: dict[str, tuple[np.ndarray, list[str]]],
) -> None:
    """Stage 5, write: every array, vocabulary and the items table into the dataset folder `tmp` (the layout
    at the top of this module); stats.json and dataset.json come last, from `prepare`."""
    (tmp / "items").mkdir()
    (tmp / "vocab").mkdir()
    for name, fields in tokens.fields.items():
        folder = tmp / "items" / tokenizer_dir(name)
        folder.mkdir()
        for field, (ids, kept, _) in fields.items():
            np.save(folder / f"{field}.npy", ids)
            np.save(folder / f"{field}.len.npy", kept)
    if entities is not None:
        np.save(tmp / "items" / "word" / "title.entities.npy", entities.aligned)
        np.save(tmp / "items" / "entity_vectors.npy", entities.vectors)
        _write_json(tmp / "vocab" / "entity.json", entities.ids)
    if tokens.words is not None:
        _write_json(tmp / "vocab" / "word.json", tokens.words)
    for field, (codes, ids) in categories.items():
        np.save(tmp / "items" / f"{field}.npy", codes)
        _write_json(tmp / "vocab" / f"{field}.json", ids)
    _write_json(tmp / "vocab" / "user.json", impressions.users.ids)
    pq.write_table(pa.table({"id": items.index.ids, **items.columns}), tmp / "items.parquet")
    (tmp / "histories").mkdir()
    np.save(tmp / "histories" / "items.npy", impressions.history_items)
    np.save(tmp / "histories" / "length.npy", impressions.history_length)
    np.save(tmp / "histories" / "user.npy", impressions.history_user)
    for name, arrays in splits.arrays.items():
        (tmp / name).mkdir()
        for k, v in arrays.items():
            np.save(tmp / name / f"{k}.npy", v)


def dataset_stats(
    source: Source,
    cfg: DataConfig,
    items: Items,
    impressions: Impressions,
    splits: Splits,
    tokens: Tokens,
    entities: Entities | None,
    categories: dict[str, tuple[np.ndarray, list[str]]],
) -> dict:
    """Stage 6, stats: what stats.json records (the counts `Dataset` checks every array against when it loads
    it, token-length percentiles, missing ids, and what the format or protocol reports)."""
    vocab = {}
    for name in cfg.tokenizers:
        if name == "word" and entities is not None:
            vocab["entity"] = len(entities.ids)
        vocab[name] = tokens.sizes[name]
    vocab |= {field: len(ids) for field, (_, ids) in categories.items()}
    vocab["user"] = len(impressions.users.ids)
    token_lengths = {
        name: {field: _percentiles(full[1:], _max_len(cfg, field)) for field, (_, _, full) in fields.items()}
        for name, fields in tokens.fields.items()
    }
    lengths = impressions.history_length
    split_stats = {}
    for name, arrays in splits.arrays.items():
        labelled = bool(len(arrays["label"])) and bool((arrays["label"] >= 0).all())
        split_stats[name] = {
            "impressions": len(arrays["imp_id"]),
            "rows": len(arrays["item"]),
            "clicks": int((arrays["label"] == 1).sum()),
            "labelled": labelled,
            "users": len(np.unique(arrays["user"])),
            "histories": len(np.unique(arrays["history"])),
            "empty_histories": int((lengths[arrays["history"]] == 0).sum()),
        }
    missing = {
        k: {"occurrences": sum(v.values()), "distinct": len(v), "examples": sorted(v)[:10]}
        for k, v in impressions.missing.items()
    }
    return {
        "items": items.count - 1,
        "users": len(impressions.users.ids) - 1,
        "histories": len(lengths) - 1,
        "splits": split_stats,
        "vocab": vocab,
        "token_lengths": token_lengths,
        "missing": missing,
        **({"title_entities": entities.stats} if entities is not None else {}),
        **({"once_split": splits.once_split} if splits.once_split is not None else {}),
        **({source.protocol_key: source.protocol} if source.protocol else {}),
        **({"repeated_interactions": source.repeated} if source.repeated is not None else {}),
    }


def missing_ids_warning(missing: dict) -> str | None:
    """The preparation log's line about ids no items file has (None: there are none)."""
    if not any(m["occurrences"] for m in missing.values()):
        return None
    h, c = missing["history"], missing["candidates"]
    return (
        f"ids missing from every news file: {h['distinct']} in histories ({h['occurrences']} clicks dropped), "
        f"{c['distinct']} among candidates ({c['occurrences']} rows kept with empty content); see stats.json, "
        "or --strict"
    )


def manifest(source: Path, cfg: DataConfig, raw: Source, splits: Splits, digest: str | None) -> dict:
    """dataset.json: what the dataset was prepared from and with."""
    out = {
        "format_version": FORMAT_VERSION,
        "data_config": cfg.model_dump(),
        "source": str(source),
        "source_hash": digest or files_digest(raw.files),
        "text_fields": cfg.text_fields,
        "tokenizers": cfg.tokenizers,
        "categorical": list(CATEGORICAL),
        "splits": list(splits.arrays),
        "history_len": cfg.history_len,
    }
    if splits.once_split is not None:
        out["once_split"] = splits.once_split
    domain = format_of(cfg).domain
    if domain != "news":  # what the GENRE tasks read (absent: news)
        out["domain"] = domain
    return out


def _items_in_training(train: dict[str, np.ndarray], history_items: np.ndarray, n: int) -> np.ndarray:
    """[n] bool: the item is a candidate or a click of the training split (never the padding item)."""
    seen = np.zeros(n, bool)
    seen[train["item"]] = True
    seen[history_items[np.unique(train["history"])].ravel()] = True
    seen[0] = False
    return seen


def _distinct_candidates(b: Behavior, source: Source, split: str) -> None:
    """An impression shows each candidate once: a repeat (with one label or two) would be scored twice."""
    if len(set(b.candidates)) == len(b.candidates):
        return
    seen: set[str] = set()
    for nid in b.candidates:
        if nid in seen:
            raise DataError(
                source.where(split),
                f"candidate {nid} appears twice in one impression",
                field=source.fields["candidates"],
                **_at(source, b.line),
            )
        seen.add(nid)


def _check_labels(arrays: dict[str, np.ndarray], source: Source, split: str) -> None:
    """A split file has impressions, and a labelled one a click; train and dev must be labelled (only test
    may come without labels): nothing could train on or be scored against the others."""
    path, label = source.where(split), arrays["label"]
    if not len(arrays["imp_id"]):
        raise DataError(path, f"no impressions: the {split} split is empty")
    if split in ("train", "dev", "valid") and (label < 0).any():
        raise DataError(
            path,
            f"no labels: the {split} split must say which candidates were clicked (only test may have none)",
            field=source.fields["labels"],
        )
    if (label >= 0).all() and not (label == 1).any():
        raise DataError(
            path,
            f"no clicks: not one candidate of the {len(arrays['imp_id'])} impressions of the {split} "
            "split is clicked",
            field=source.fields["labels"],
        )


def _at(source: Source, line: int) -> dict[str, int]:
    """Where a behaviour was read: a text line, or a table's row (Parquet)."""
    return {"row": line} if source.rows else {"line": line}


def _missing(
    missing: dict, which: str, nid: str, source: Source, split: str, line: int, strict: bool
) -> None:
    """Count an id of a history (`which`: history) or of the candidates (candidates) that no items file has;
    with --strict, refuse it where it was read."""
    if strict:
        raise DataError(
            source.where(split),
            f"news id {nid} is not in {source.items_file}",
            field=source.fields[which],
            **_at(source, line),
        )
    missing[which][nid] = missing[which].get(nid, 0) + 1


def prompt_text(template: str, fields: dict[str, str]) -> str:
    return template.format(**fields).strip()


def tokenizer_dir(name: str) -> str:
    """Folder name for a tokenizer given by name or path."""
    if name.replace("-", "").replace("_", "").isalnum():
        return name
    return f"{Path(name).name}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
