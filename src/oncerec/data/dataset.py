"""A prepared dataset directory, opened with memory maps (see `prepare.py` for the layout), and the cache that
turns `data=<raw folder | demo preset>` into such a directory on first use."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from oncerec.data.formats import DataConfig, format_of
from oncerec.data.formats.demo import DemoKeys
from oncerec.data.formats.source import files_digest
from oncerec.data.prepare import (
    CATEGORICAL,
    FORMAT_VERSION,
    SPLIT_ARRAYS,
    prepare,
    select_impressions,
    split_list_digest,
    split_list_path,
    tokenizer_dir,
)
from oncerec.errors import OncerecError
from oncerec.paths import cache_root

logger = logging.getLogger(__name__)


@dataclass
class Split:
    """Impressions in CSR form; every array is a read-only memory map."""

    name: str
    imp_id: np.ndarray
    user: np.ndarray
    time: np.ndarray
    history: np.ndarray
    offsets: np.ndarray
    item: np.ndarray
    label: np.ndarray

    @property
    def num_impressions(self) -> int:
        return len(self.imp_id)

    @cached_property
    def labelled(self) -> bool:
        return bool(len(self.label)) and bool((np.asarray(self.label) >= 0).all())

    def select(self, rows: np.ndarray) -> Split:
        """The impressions `rows` (positions, in that order) as a split of their own."""
        arrays = select_impressions({k: getattr(self, k) for k in SPLIT_ARRAYS}, np.asarray(rows))
        return Split(self.name, **arrays)

    @cached_property
    def row_impression(self) -> np.ndarray:
        """Impression position of each candidate row."""
        return np.repeat(np.arange(self.num_impressions), np.diff(self.offsets))


# what every error about a prepared file ends with: the file no longer is what `prepare` wrote
CHANGED = "the file was changed or damaged after `oncerec prepare`: prepare the dataset again"


class Dataset:
    """Every array is checked, when first loaded, against the counts `prepare` recorded in stats.json (its
    length, and its ids within their vocabulary): a file cut short or edited afterwards is an error naming it,
    not a silent wrong result or an IndexError in training. The checks are a min / max pass over the memory
    map (tens of milliseconds for MIND-large's largest array)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        manifest = self.root / "dataset.json"
        if not manifest.is_file():
            raise OncerecError(
                f"{self.root} is not a prepared dataset (no dataset.json); run `oncerec prepare`"
            )
        self.manifest = _read_json(manifest, dict)
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise OncerecError(
                f"{self.root}: dataset format {self.manifest.get('format_version')}, "
                f"this oncerec reads {FORMAT_VERSION}; prepare it again"
            )
        missing = [
            k for k in ("text_fields", "tokenizers", "history_len", "splits") if k not in self.manifest
        ]
        if missing:
            raise OncerecError(f"{manifest}: no `{missing[0]}`; {CHANGED}")
        self.text_fields: list[str] = self.manifest["text_fields"]
        self.tokenizers: list[str] = self.manifest["tokenizers"]
        self.history_len: int = self.manifest["history_len"]
        self.split_names: list[str] = self.manifest["splits"]
        self._arrays: dict[tuple[str, ...], np.ndarray] = {}

    def _load(
        self,
        *parts: str,
        rows: int | None = None,
        width: int | None = None,
        below: int | None = None,
        low: int = 0,
        bounds: int | None = None,
    ) -> np.ndarray:
        """A memory-mapped array of the dataset, checked once: `rows` long (None: any), `width` wide, its
        values in low..below - 1 (below None: any); `bounds`: CSR offsets into that many rows."""
        if parts in self._arrays:
            return self._arrays[parts]
        path = self.root.joinpath(*parts)
        try:
            array = np.load(path, mmap_mode="r")
        except FileNotFoundError:
            raise OncerecError(f"{path}: missing from the dataset; prepare it again") from None
        except (ValueError, OSError) as e:  # a truncated or overwritten array
            raise OncerecError(f"{path}: not a readable array ({e}); prepare the dataset again") from None
        if rows is not None and (array.ndim == 0 or len(array) != rows):
            found = "a scalar" if array.ndim == 0 else f"{len(array)} rows"
            raise OncerecError(f"{path}: {found}, the dataset's stats.json says {rows}; {CHANGED}")
        if width is not None and array.shape[1:] != (width,):
            raise OncerecError(f"{path}: shape {array.shape}, expected {width} columns; {CHANGED}")
        if below is not None and array.size:
            lo, hi = array.min(), array.max()
            if lo < low or hi >= below:
                raise OncerecError(
                    f"{path}: holds {lo if lo < low else hi}, outside {low}..{below - 1} (the ids stats.json "
                    f"counts); {CHANGED}"
                )
        if bounds is not None and (
            not len(array) or array[0] != 0 or array[-1] != bounds or (np.diff(array) < 0).any()
        ):
            raise OncerecError(
                f"{path}: not offsets increasing from 0 to the {bounds} candidate rows; {CHANGED}"
            )
        self._arrays[parts] = array
        return array

    @cached_property
    def stats(self) -> dict:
        return _read_json(self.root / "stats.json", dict)

    def _count(self, *keys: str) -> int | None:
        """A count stats.json records (None where it has none: an export's data folder keeps the vocabularies
        only)."""
        value = self.stats
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise OncerecError(
                f"{self.root / 'stats.json'}: {'.'.join(keys)} is {value!r}, not a count; {CHANGED}"
            )
        return value

    @cached_property
    def num_items(self) -> int:
        """Including the padding item 0."""
        items = self._count("items")
        if items is None:
            return len(self._load("items", f"{CATEGORICAL[0]}.npy"))
        return items + 1

    @cached_property
    def num_users(self) -> int:
        return self.vocab_size("user")

    @cached_property
    def train_users(self) -> np.ndarray:
        """[num_users] bool: the users with an impression in the training split. The user index spans every
        split, so a model's per-user parameters (LSTUR's user embedding) have trained for these users only."""
        seen = np.zeros(self.num_users, dtype=bool)
        if "train" in self.split_names:
            seen[np.asarray(self.split("train").user)] = True
        seen[0] = False  # the unknown user
        return seen

    @cached_property
    def train_items(self) -> np.ndarray:
        """[num_items] bool: the items the training split shows, as a candidate or in the history of a
        training impression. The others are new to a model (the `cold_items` slice of the metrics): only
        their content can rank them."""
        seen = np.zeros(self.num_items, dtype=bool)
        if "train" in self.split_names:
            train = self.split("train")
            seen[np.asarray(train.item)] = True
            items, _, _ = self.histories
            seen[items[np.unique(np.asarray(train.history))].ravel()] = True
        seen[0] = False  # the padding item
        return seen

    @cached_property
    def generated_items(self) -> np.ndarray | None:
        """[num_items] bool: the items GENRE generated for cold users (`oncerec genre merge` writes the flags
        when it adds any); None for a dataset without them."""
        flags = self.root / "items" / "synthetic.npy"
        return np.load(flags).astype(bool) if flags.is_file() else None

    def vocab(self, name: str) -> list[str]:
        path = self.root / "vocab" / f"{name}.json"
        words = _read_json(path, list)
        expected = self._count("vocab", name)
        if expected is not None and len(words) != expected:
            raise OncerecError(
                f"{path}: {len(words)} entries, the dataset's stats.json says {expected}; {CHANGED}"
            )
        return words

    def vocab_digests(self) -> dict[str, str]:
        """A hash of each vocabulary file: two datasets with equal ones give ids (words, categories, users,
        attributes) the same meaning, so a model trained on one can be evaluated on the other."""
        return {
            p.stem: hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            for p in sorted((self.root / "vocab").glob("*.json"))
        }

    def vocab_size(self, name: str) -> int:
        size = self._count("vocab", name)
        if size is None:
            raise OncerecError(f"{self.root / 'stats.json'}: no vocabulary size of `{name}`; {CHANGED}")
        return size

    def tokens(self, tokenizer: str, field: str) -> tuple[np.ndarray, np.ndarray]:
        """([N, L] token ids, [N] lengths) of one text field."""
        if tokenizer not in self.tokenizers:
            raise OncerecError(
                f"tokenizer `{tokenizer}` was not prepared; prepared: {', '.join(self.tokenizers)} "
                f"(add it to data.tokenizers)"
            )
        if field not in self.text_fields:
            raise OncerecError(
                f"text field `{field}` was not prepared; prepared: {', '.join(self.text_fields)}"
            )
        folder = tokenizer_dir(tokenizer)
        ids = self._load(
            "items", folder, f"{field}.npy", rows=self.num_items, below=self.vocab_size(tokenizer)
        )
        if ids.ndim != 2:
            path = self.root / "items" / folder / f"{field}.npy"
            raise OncerecError(f"{path}: shape {ids.shape}, not [items, tokens]; {CHANGED}")
        lengths = self._load("items", folder, f"{field}.len.npy", rows=self.num_items, below=ids.shape[1] + 1)
        return ids, lengths

    def token_entities(self, tokenizer: str, field: str) -> np.ndarray:
        """[N, L] the entity index of each token of a text field (0: none), aligned with `tokens`: prepared
        for the `word` tokens of the title."""
        if (tokenizer, field) != ("word", "title"):
            raise OncerecError(
                f"entities are aligned with the `word` tokens of the title; got tokenizer `{tokenizer}`, "
                f"field `{field}`"
            )
        width = self.tokens(tokenizer, field)[0].shape[1]
        return self._load(
            "items",
            tokenizer_dir(tokenizer),
            f"{field}.entities.npy",
            rows=self.num_items,
            width=width,
            below=self._count("vocab", "entity"),
        )

    def user_attributes(self) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
        """GENRE user profiles (`oncerec genre merge`): attribute name -> ([U, K] value ids, most relevant
        first; [U, K] weights, 1 / rank; the number of values)."""
        return {
            name: (
                np.load(self.root / "users" / f"{name}.npy"),
                np.load(self.root / "users" / f"{name}.weight.npy"),
                len(self.vocab(name)),
            )
            for name in self.manifest.get("user_attributes", [])
        }

    def entity_vectors(self) -> np.ndarray:
        """[E, D] float32: row e is entity e's vector (zero for row 0 and entities without one)."""
        return np.array(self._load("items", "entity_vectors.npy", rows=self._count("vocab", "entity")))

    def categorical(self, field: str) -> np.ndarray:
        return self._load("items", f"{field}.npy", rows=self.num_items, below=self.vocab_size(field))

    @cached_property
    def histories(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """([H, history_len] item indices oldest first, [H] lengths, [H] user index)."""
        histories = self._count("histories")
        rows = None if histories is None else histories + 1
        return (
            self._load("histories", "items.npy", rows=rows, width=self.history_len, below=self.num_items),
            self._load("histories", "length.npy", rows=rows, below=self.history_len + 1),
            self._load("histories", "user.npy", rows=rows, below=self.num_users),
        )

    def split(self, name: str) -> Split:
        if name not in self.split_names:
            raise OncerecError(f"split `{name}` not in {self.root}; splits: {', '.join(self.split_names)}")
        n, rows = self._count("splits", name, "impressions"), self._count("splits", name, "rows")
        item = self._load(name, "item.npy", rows=rows, below=self.num_items)
        return Split(
            name,
            imp_id=self._load(name, "imp_id.npy", rows=n),
            user=self._load(name, "user.npy", rows=n, below=self.num_users),
            time=self._load(name, "time.npy", rows=n),
            history=self._load(name, "history.npy", rows=n, below=len(self.histories[1])),
            offsets=self._load(name, "offsets.npy", rows=None if n is None else n + 1, bounds=len(item)),
            item=item,
            label=self._load(name, "label.npy", rows=rows, low=-1, below=2),
        )

    @cached_property
    def items_table(self):
        import pyarrow.parquet as pq

        path = self.root / "items.parquet"
        try:
            table = pq.read_table(path)
        except FileNotFoundError:
            raise OncerecError(f"{path}: missing from the dataset; prepare it again") from None
        except Exception as e:  # pyarrow's errors for a file that is not Parquet, or cut short
            raise OncerecError(f"{path}: not a readable Parquet table ({e}); {CHANGED}") from None
        if "id" not in table.column_names:
            raise OncerecError(f"{path}: no `id` column; {CHANGED}")
        if table.num_rows != self.num_items:
            raise OncerecError(
                f"{path}: {table.num_rows} rows, the dataset's stats.json says {self.num_items} (with the "
                f"padding row); {CHANGED}"
            )
        return table

    @cached_property
    def item_ids(self) -> list[str]:
        """Each item's id, by index (row 0: the padding item)."""
        return self.items_table.column("id").to_pylist()

    @cached_property
    def item_index(self) -> dict[str, int]:
        """Item id -> index, for every item (the padding row is none)."""
        return {x: i for i, x in enumerate(self.item_ids) if i}


def _read_json(path: Path, kind: type):
    """A JSON file of the dataset holding a `kind` (dict, list), or an error naming it and the fix."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OncerecError(f"{path}: missing from the dataset; prepare it again") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise OncerecError(f"{path}: not valid JSON ({e}); prepare the dataset again") from None
    if not isinstance(value, kind):
        raise OncerecError(f"{path}: expected a JSON {kind.__name__}, got {type(value).__name__}; {CHANGED}")
    return value


def _config_key(cfg: DataConfig) -> str:
    # the format version too: a dataset cached by an older `prepare` is prepared again, not refused
    # (the raw files' digest covers the content of `source` and `translations`, wherever they are)
    relevant = cfg.model_dump(exclude={"name", "source", "translations", "strict", "split_list"}) | {
        "format_version": FORMAT_VERSION
    }
    if cfg.split == "once":  # the list's content, not only its name (keys of other splits are as before)
        path = split_list_path(cfg)
        relevant["split_list"] = [cfg.split_list, split_list_digest(path) if path else None]
    return hashlib.blake2b(json.dumps(relevant, sort_keys=True).encode(), digest_size=8).hexdigest()


def demo_raw_folder(
    scale: str, seed: int, progress: bool = True, fmt: str = "mind", fresh: float = 0.0
) -> Path:
    from oncerec.data.demo import GENERATOR_VERSION, write_demo_mind
    from oncerec.data.formats.goodreads import write_demo_goodreads

    # the version in the name: a newer generator must not reuse data an older one cached
    folder = (
        cache_root()
        / "raw"
        / f"demo-v{GENERATOR_VERSION}-{scale}-{seed}{f'-fresh{fresh:g}' if fresh else ''}"
    )
    _build_once(
        folder,
        "meta.json",
        lambda: write_demo_mind(folder, scale=scale, seed=seed, progress=progress, fresh=fresh),
    )
    if fmt == "goodreads":
        books = folder.with_name(f"{folder.name}-goodreads")
        _build_once(books, "meta.json", lambda: write_demo_goodreads(books, folder, seed))
        return books
    return folder


def _build_once(folder: Path, marker: str, build) -> None:
    """Build a cache folder unless it is there (`marker` written last). Another process may build the same
    folder at the same time (two first runs): whichever finishes first, its result is as good."""
    if (folder / marker).is_file():
        return
    try:
        build()
    except (OncerecError, OSError):
        if not (folder / marker).is_file():
            raise


def resolve_dataset(cfg: DataConfig, progress: bool = True) -> Path:
    """The prepared dataset directory for a data config, preparing it into the cache on first use.

    The cache key covers the raw files' content and every data option that changes the prepared result.
    """
    if isinstance(cfg, DemoKeys):
        source = demo_raw_folder(cfg.demo_scale, cfg.demo_seed, progress, cfg.writes, cfg.demo_fresh)
    elif not cfg.source:
        raise OncerecError(
            "data.source is empty: give a MIND folder, a prepared dataset, or use a demo preset"
        )
    else:
        source = Path(cfg.source)
    if (source / "dataset.json").is_file():
        return source
    digest = files_digest(format_of(cfg).files(source, cfg))
    key = f"{digest[:16]}-{_config_key(cfg)}"
    out = cache_root() / "datasets" / f"{cfg.name}-{key}"
    if not (out / "dataset.json").is_file():
        logger.info(f"preparing {source} -> {out}")
        _build_once(out, "dataset.json", lambda: prepare(source, cfg, out, progress=progress, digest=digest))
    return out
