"""`oncerec export`: a trained run as a folder that a service loads without the training data.

```
export.json        manifest, written last: model, ranking (inner product or two stages), index, sizes, weights digest
config.yaml        the run's resolved config
model.safetensors  every weight the service runs (with the word table, so no GloVe file or model is read)
vectors.npy        [N, d] float32 or float16: every item's vector (row 0: the padding item)
index.faiss        the FAISS index over items 1..N-1
popularity.npy     [N] training clicks per item: the ranking for a user the model knows nothing about
data/              what building the model reads: vocabularies, the item content its encoder reads, user
                   tables (GENRE profiles), which users trained (a dataset folder without impressions)
tokenizer/         a Hugging Face tokenizer's files, when items are tokenized by one
added/             items added to the running service (`serve --persist`): items.sqlite (`added.py`)
```

The folder is written under a temporary name and renamed, so it is whole or absent. Nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from oncerec.config.loader import dump_config, load_saved_config
from oncerec.config.schema import CATEGORICAL, Config
from oncerec.data.dataset import Dataset
from oncerec.data.prepare import tokenizer_dir
from oncerec.errors import ConfigError, OncerecError
from oncerec.inference import inner_product
from oncerec.models.recommender import Recommender
from oncerec.paths import check_new_dir, check_writable, publish_dir
from oncerec.serve.index import SEARCH_KEYS, ItemIndex
from oncerec.serve.options import DTYPES, KINDS
from oncerec.training.baselines import train_clicks
from oncerec.training.build import build_recommender
from oncerec.training.session import Run

logger = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "export.json"
# the state-dict key of a text item encoder's word table (`FieldItemEncoder.words`)
WORD_TABLE = "item_encoder.words.table.weight"
AGAIN = "export the run again (`oncerec export RUN_DIR --out DIR`)"


def adds_items(cfg: Config) -> bool:
    """Whether new items can be encoded from their content: not for item-id embeddings (no content) nor for
    DIRE's language-model encoder (it reads the training data's cache of its frozen layers)."""
    return not cfg.model.component("item").own_inputs


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """A hash of a set of weights (names, types, shapes, values): an export names the weights it came from."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def export_run(
    run: Run,
    out: Path,
    index: str = "flat",
    dtype: str = "float32",
    search: dict | None = None,
    source: str = "",
) -> dict:
    """Write the export of a loaded run to `out` (a new or empty folder) and return its manifest. `search`:
    `ef_search` (hnsw) or `nprobe` (ivf) instead of the defaults."""
    if index not in KINDS:
        raise OncerecError(f"--index {index}: choose one of {', '.join(KINDS)}")
    if dtype not in DTYPES:
        raise OncerecError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    for key in search or {}:
        if key not in SEARCH_KEYS[index]:
            kind = next(k for k, keys in SEARCH_KEYS.items() if key in keys)
            raise OncerecError(f"--{key.replace('_', '-')} is for the {kind} index, not {index}")
    out = Path(out)
    check_new_dir(out, "--out")
    cfg, model = run.cfg, run.model
    addable = adds_items(cfg)
    logger.info(f"export: encoding {model.content.num_items - 1:,} items")
    stored = run.item_vectors.float().cpu().numpy().astype(dtype)
    vectors = stored.astype(np.float32)  # what the index holds: the stored values, also in float16
    items = np.arange(1, len(vectors))
    logger.info(f"export: building the {index} index")
    built = ItemIndex.build(vectors[1:], items, index, dtype, search)
    state = {k: v for k, v in model.state_dict().items() if addable or not k.startswith("item_encoder.")}
    manifest = {
        "format": FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source,
        "model": {"name": cfg.model.name}
        | {k: getattr(cfg.model, k).name for k in ("item", "user", "predictor")},
        # the index ranks exactly as an inner-product model does; other predictors are served in two stages
        "ranking": "inner_product" if inner_product(model) else "two_stage",
        "adds_items": addable,
        "items": len(vectors) - 1,
        "dim": int(vectors.shape[1]),
        "dtype": dtype,
        "index": {"kind": index, "search": built.search_params},
        "weights_sha256": state_digest(model.checkpoint_state()),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        (tmp / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, tmp / "model.safetensors")
        # safetensors writes its file private (0600); an export is read by every serving process and user
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp / "model.safetensors", 0o666 & ~umask)
        np.save(tmp / "vectors.npy", stored)
        built.save(tmp / "index.faiss")
        np.save(tmp / "popularity.npy", train_clicks(run.dataset))
        _write_data(run.dataset, cfg, tmp / "data", addable)
        if addable and cfg.embed.tokenizer != "word":
            from oncerec.data.tokenize import HFTokenizer

            HFTokenizer(cfg.embed.tokenizer).tok.save_pretrained(str(tmp / "tokenizer"))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        publish_dir(tmp, out, MANIFEST)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _write_data(dataset: Dataset, cfg: Config, out: Path, addable: bool) -> None:
    """The dataset's folder layout, holding only what building the served model and encoding new items read."""
    (out / "items").mkdir(parents=True)
    shutil.copytree(dataset.root / "vocab", out / "vocab")
    if (dataset.root / "users").is_dir():  # GENRE user profiles
        shutil.copytree(dataset.root / "users", out / "users")
    for field in CATEGORICAL:
        np.save(out / "items" / f"{field}.npy", np.asarray(dataset.categorical(field)))
    if addable:
        tok = cfg.embed.tokenizer
        (out / "items" / tokenizer_dir(tok)).mkdir()
        for field in cfg.model.text_item_fields:
            ids, lengths = dataset.tokens(tok, field)
            np.save(out / "items" / tokenizer_dir(tok) / f"{field}.npy", np.asarray(ids))
            np.save(out / "items" / tokenizer_dir(tok) / f"{field}.len.npy", np.asarray(lengths))
    np.save(out / "train_users.npy", dataset.train_users)
    (out / "ids.json").write_text(json.dumps(dataset.item_ids, ensure_ascii=False))
    (out / "stats.json").write_text(json.dumps({"vocab": dataset.stats["vocab"]}))
    (out / "dataset.json").write_text(json.dumps(dataset.manifest | {"splits": []}, indent=1))


class ExportData(Dataset):
    """An export's `data/` folder: a dataset without impressions or histories. Which users trained (LSTUR's
    user embedding serves those only) is stored, as there is no training split to read it from. Opened for
    `rows` items (the padding item included): every table of the items must hold as many rows, and which
    users trained one row per user."""

    def __init__(self, root: Path, rows: int):
        super().__init__(root)
        self.stats = read_json(self.root / "stats.json")
        self.ids: list[str] = read_json(self.root / "ids.json")
        if not isinstance(self.ids, list) or not all(isinstance(x, str) for x in self.ids):
            raise OncerecError(f"{self.root / 'ids.json'}: not a list of item ids; {AGAIN}")
        if len(self.ids) != rows:
            raise OncerecError(
                f"{self.root / 'ids.json'}: {len(self.ids)} ids, the manifest has {rows}; {AGAIN}"
            )
        for path in sorted((self.root / "items").rglob("*.npy")):
            load_array(path, (rows, ...), mmap=True)
        self.train_users = load_array(self.root / "train_users.npy", (len(self.vocab("user")),))

    def vocab(self, name: str) -> list[str]:
        return read_json(self.root / "vocab" / f"{name}.json")


def read_json(path: Path):
    """A JSON file of the export, or one line saying what is wrong with it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OncerecError(f"{path}: missing from the export; {AGAIN}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise OncerecError(f"{path}: not valid JSON ({e}); {AGAIN}") from None


def load_array(path: Path, shape: tuple, mmap: bool = False) -> np.ndarray:
    """An array file of the export, refused when missing, unreadable, or of another shape than `shape`, what
    the manifest says (ending in `...`: any further axes): a truncated or replaced file is refused when the
    export opens, never served (a short popularity.npy served scores of 0)."""
    try:
        array = np.load(path, mmap_mode="r" if mmap else None)
    except FileNotFoundError:
        raise OncerecError(f"{path}: missing from the export; {AGAIN}") from None
    except (ValueError, OSError, EOFError) as e:  # truncated, or not an array
        raise OncerecError(f"{path}: not a readable array ({e}); {AGAIN}") from None
    free = shape[-1] is ...
    known = shape[:-1] if free else shape
    if array.shape[: len(known)] != known or (not free and array.ndim != len(known)):
        expected = ", ".join("..." if x is ... else str(x) for x in shape) + ("," if len(shape) == 1 else "")
        raise OncerecError(f"{path}: shape {array.shape} where the export needs ({expected}); {AGAIN}")
    return array


@dataclass
class Export:
    """An export loaded for serving (on the CPU)."""

    root: Path
    manifest: dict
    cfg: Config
    data: ExportData
    model: Recommender
    vectors: np.ndarray  # float32 [N, d]
    index: ItemIndex
    popularity: np.ndarray


def is_export(path: Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def read_manifest(root: Path) -> dict:
    """The export's manifest, every key the service reads checked: a damaged one is refused in one line."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise OncerecError(f"{root} is not an export (no {MANIFEST}); make one with `oncerec export RUN_DIR`")
    manifest = read_json(path)
    if not isinstance(manifest, dict):
        raise OncerecError(f"{path}: not a JSON object; {AGAIN}")
    if manifest.get("format") != FORMAT:
        raise OncerecError(f"{path}: export format {manifest.get('format')}, this oncerec reads {FORMAT}")
    bad = [key for key, valid in _MANIFEST_KEYS.items() if not valid(manifest.get(key))]
    if bad:
        keys = ", ".join(f"`{key}`" for key in bad)
        raise OncerecError(f"{path}: {keys} missing or not valid; {AGAIN}")
    return manifest


def _count(value, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _index_entry(value) -> bool:
    """{"kind": a kind of index, "search": its search parameters, each a count}."""
    if (
        not isinstance(value, dict)
        or value.get("kind") not in KINDS
        or not isinstance(value.get("search"), dict)
    ):
        return False
    search = value["search"]
    return set(search) == set(SEARCH_KEYS[value["kind"]]) and all(_count(v, 1) for v in search.values())


_MANIFEST_KEYS = {
    "model": lambda v: isinstance(v, dict) and isinstance(v.get("name"), str),
    "ranking": lambda v: v in ("inner_product", "two_stage"),
    "adds_items": lambda v: isinstance(v, bool),
    "items": lambda v: _count(v, 1),
    "dim": lambda v: _count(v, 1),
    "dtype": lambda v: v in DTYPES,
    "index": _index_entry,
    "weights_sha256": lambda v: isinstance(v, str),  # the added items' store names it
}


def load_export(root: Path) -> Export:
    """An export loaded for serving, each file checked against the manifest: a damaged or missing one is
    refused in one line naming it."""
    root = Path(root)
    manifest = read_manifest(root)
    try:
        cfg = load_saved_config(root / "config.yaml")
    except ConfigError as e:  # YAML's messages span lines
        raise OncerecError(f"{' '.join(str(e).split())}; {AGAIN}") from None
    rows = manifest["items"] + 1  # the padding item
    data = ExportData(root / "data", rows)
    vectors = load_array(root / "vectors.npy", (rows, manifest["dim"])).astype(np.float32)
    popularity = load_array(root / "popularity.npy", (rows,))
    try:
        state = load_file(root / "model.safetensors")
    except FileNotFoundError:
        raise OncerecError(f"{root / 'model.safetensors'}: missing from the export; {AGAIN}") from None
    except (SafetensorError, OSError) as e:
        raise OncerecError(f"{root / 'model.safetensors'}: not readable weights ({e}); {AGAIN}") from None
    model = build_recommender(
        cfg.model,
        cfg.embed,
        data,
        seed=cfg.exp.seed,
        word_weights=state.get(WORD_TABLE),
        item_encoder=manifest["adds_items"],
    )
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise OncerecError(
            f"{root / 'model.safetensors'}: does not fit the model of config.yaml ({e})"
        ) from None
    model.eval()
    index = ItemIndex.load(
        root / "index.faiss",
        manifest["index"]["kind"],
        manifest["index"]["search"],
        np.arange(1, len(vectors)),
    )
    return Export(root, manifest, cfg, data, model, vectors, index, popularity)


def export_for(path: Path) -> Path:
    """The export to serve for `serve PATH`: PATH itself, or for a run directory its `export/` folder, made
    on first use (exact index, float32) and refused once the run's weights have changed since."""
    from oncerec.training.session import load_run, run_weights

    path = Path(path)
    if is_export(path):
        return path
    if not (path / "config.yaml").is_file():
        raise OncerecError(f"{path}: neither an export ({MANIFEST}) nor a run directory (config.yaml)")
    out = path / "export"
    digest = state_digest(run_weights(path))
    if is_export(out):
        made_from = read_manifest(out).get("weights_sha256")
        if made_from != digest:
            raise OncerecError(
                f"{out} was exported from other weights than {path} holds now (trained further?); remove it, "
                f"or export the run elsewhere (`oncerec export {path} --out DIR`) and serve that"
            )
        return out
    check_writable(
        path,
        f"serve {path} exports the run to {out} on first use",
        f"export it elsewhere (`oncerec export {path} --out DIR`) and serve DIR",
    )
    logger.info(f"serve: exporting {path} to {out} (exact index, float32)")
    export_run(load_run(path), out, source=str(path))
    return out
