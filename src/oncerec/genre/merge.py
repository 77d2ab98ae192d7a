"""`oncerec genre merge`: a new dataset directory = the source dataset + the generated data of a store.

The source is never modified: the new directory starts as hard links to the source's files (copies where
links are impossible), and every file that changes is written as a new file (the link removed first), in a
temporary directory renamed into place at the end, so an interrupted merge leaves nothing half-written.

What goes in (each part only when the store holds answers of that task):

- summaries -> the text field `summary` (items.parquet column, tokenized with every tokenizer of the dataset;
  the `word` tokenizer keeps the dataset's vocabulary so ids stay compatible: unknown words become <unk>).
  Fallback for an item without a valid summary (invalid answer, request error, not asked): its title (books:
  its description, else its title). The domain is the one the summaries were asked or imported for
  (`--domain`; a news summary is a title, a book's a description), else the dataset's.
- profiles -> user attributes `users/<name>.npy` (int32 [users, K] value ids, 0 = none, most relevant first)
  and `users/<name>.weight.npy` (float32 [users, K], 1 / rank), vocabularies `vocab/<name>.json`, listed in
  dataset.json `user_attributes` (news: `topic`, `region`; books: `interest`). Fallback for a user without
  a profile: no attributes (the plugin then leaves the user vector as the clicks make it).
- generated items -> new item rows after the existing ones (id `<user>#<k>`, `synthetic` true in
  items.parquet and items/synthetic.npy; news: the generated category, subcategory empty; books: the shelf as
  subcategory, no author as category), placed before the real clicks (as older ones)
  in every history row of their user, so that the real most recent clicks are kept when the history is
  full. Fallback for a user without one: nothing added. Duplicate titles of a user are kept once.
- `--prompt TEMPLATE` -> the `prompt` field (what DIRE reads) of every item rendered again, with {summary}
  among its fields: `book title: {title} description: {summary}`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import string
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from oncerec.config.schema import CATEGORICAL
from oncerec.data.dataset import Dataset
from oncerec.data.prepare import DEFAULT_MAX_LEN, _percentiles, prompt_text, tokenizer_dir
from oncerec.data.tokenize import UNK, HFTokenizer, WordTokenizer, pack, tokenize_field
from oncerec.errors import OncerecError
from oncerec.genre.options import STORE_NAME, TaskOptions
from oncerec.genre.parsing import normalize
from oncerec.genre.store import Record, Store
from oncerec.genre.tasks import SUMMARY_KEY, dataset_domain
from oncerec.paths import check_new_dir

logger = logging.getLogger(__name__)

SUMMARY_FIELD = "summary"
ATTRIBUTES = {"topics": "topic", "regions": "region", "interests": "interest"}  # answer key -> attribute


def merge(
    data: str | Path,
    store_path: str | Path | None,
    out: str | Path,
    model: str | None = None,
    tasks: tuple[str, ...] = ("summarize", "profile", "generate"),
    prompt: str | None = None,
) -> dict:
    """Write the merged dataset to `out`; returns what was merged (also in dataset.json `genre`).
    `store_path` None: the source dataset's own store; `prompt` a template to render every item's `prompt`
    field again from (it may name {summary})."""
    from oncerec.genre.runner import open_dataset

    source = open_dataset(str(data), progress=False)
    out = Path(out).resolve()
    if out == source.root.resolve():
        raise OncerecError("--out must be a new directory: the source dataset is never modified")
    check_new_dir(out, "--out")
    store = Store(store_path or source.root / STORE_NAME, readonly=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        _link_tree(source.root, tmp)
        report = _Merge(source, store, tmp, model).run(tasks, prompt)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info(f"merged dataset: {out}")
    return report


def _link_tree(src: Path, dst: Path) -> None:
    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:  # another file system, or links not allowed
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link, ignore=shutil.ignore_patterns(f"{STORE_NAME}*", ".*.tmp-*"))


def _fresh(path: Path) -> Path:
    """The path, with any hard link to the source removed, ready for a new file (never write through it)."""
    path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _save(path: Path, array: np.ndarray) -> None:
    np.save(_fresh(path), array)


def _write_json(path: Path, obj) -> None:
    _fresh(path).write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


class _Merge:
    def __init__(self, source: Dataset, store: Store, root: Path, model: str | None):
        self.source, self.store, self.root, self.model = source, store, root, model
        self.manifest = dict(source.manifest)
        self.stats = json.loads((source.root / "stats.json").read_text())
        self.config = self.manifest.get("data_config", {})
        self.table = pq.read_table(source.root / "items.parquet")
        self.n_source = self.table.num_rows
        self.report: dict = {
            "source": str(source.root.resolve()),
            "store": str(store.path.resolve()),
            "model": model or "any",
        }

    def run(self, tasks: tuple[str, ...], prompt: str | None = None) -> dict:
        if "generate" in tasks:
            self._generated_items()
        if "summarize" in tasks:
            self._summaries()
        if "profile" in tasks:
            self._profiles()
        if prompt:
            self._prompt(prompt)
        self._write_items()
        self.manifest["genre"] = self.report
        self.stats["genre"] = self.report
        self.stats["items"] = self.table.num_rows - 1
        _write_json(self.root / "dataset.json", self.manifest)
        _write_json(self.root / "stats.json", self.stats)
        Dataset(self.root)  # the result opens like any prepared dataset
        return self.report

    # -- generated items ----------------------------------------------------------------------------
    def _generated_items(self) -> None:
        done, failed = self.store.latest("generate", self.model)
        users = self.source.vocab("user")
        user_index = {u: i for i, u in enumerate(users)}
        per_user: dict[int, list[tuple[str, dict]]] = {}
        unmatched = duplicates = 0
        for target, record in sorted(done.items()):
            user = target.rsplit("#", 1)[0]
            u = user_index.get(user)
            if u is None or u == 0:
                unmatched += 1
                continue
            titles = {normalize(o["title"]) for _, o in per_user.get(u, [])}
            if normalize(record.output["title"]) in titles:
                duplicates += 1
                continue
            per_user.setdefault(u, []).append((target, record.output))
        rows = [(target, out) for u in sorted(per_user) for target, out in per_user[u]]
        self.report["generate"] = {
            "users": len(per_user),
            "items": len(rows),
            "duplicates_dropped": duplicates,
            "not_in_dataset": unmatched,
            "failed_targets": failed,
        }
        if not rows:
            return
        first = self.table.num_rows
        new_index = {target: first + k for k, (target, _) in enumerate(rows)}
        self._append_rows(rows)
        self._extend_item_arrays(rows, first)
        self._extend_histories({u: [new_index[t] for t, _ in per_user[u]] for u in per_user})
        self.report["generate"]["first_item"] = first
        logger.info(
            f"generated items: {len(rows)} for {len(per_user)} users (rows {first}..{first + len(rows) - 1})"
        )

    def _append_rows(self, rows: list[tuple[str, dict]]) -> None:
        names = self.table.column_names
        if "synthetic" not in names:
            self.table = self.table.append_column("synthetic", pa.array([False] * self.table.num_rows))
            names = self.table.column_names
        new = {name: [] for name in names}
        for target, out in rows:
            fields = {
                "title": out["title"],
                "abstract": out.get("abstract", ""),
                "category": out.get("category", ""),  # news; a generated book has no author
                "subcategory": out.get("subcategory", ""),  # books: the shelf
            }
            values = {
                "id": target,
                **fields,
                "synthetic": True,
                SUMMARY_FIELD: out["title"],  # a generated title is already what a summary would be
            }
            if "prompt" in names:
                values["prompt"] = prompt_text(self.config.get("prompt", "{title}"), fields)
            for name in names:
                # columns this merge knows nothing about: empty text, or null for other types
                empty = "" if pa.types.is_string(self.table.schema.field(name).type) else None
                new[name].append(values.get(name, empty))
        appended = pa.table({n: pa.array(new[n], type=self.table.schema.field(n).type) for n in names})
        self.table = pa.concat_tables([self.table, appended])

    def _extend_item_arrays(self, rows: list[tuple[str, dict]], first: int) -> None:
        """Every per-item array grows by the new rows: categories, token ids of every text field."""
        handled = set()
        for field in CATEGORICAL:
            index = {c: i for i, c in enumerate(self.source.vocab(field))}
            path = self.root / "items" / f"{field}.npy"
            old = np.load(path)
            added = [index.get(out.get(field, ""), 0) for _, out in rows]
            _save(path, np.concatenate([old, np.asarray(added, old.dtype)]))
            handled.add(path)
        synthetic = np.zeros(first + len(rows), np.int8)
        old_flags = self.root / "items" / "synthetic.npy"
        if old_flags.is_file():
            synthetic[:first] = np.load(old_flags)
        synthetic[first:] = 1
        _save(old_flags, synthetic)
        handled.add(old_flags)
        texts = {
            name: self.table.column(name).to_pylist()[first:]
            for name in self.source.text_fields
            if name in self.table.column_names
        }
        for tok_name in self.source.tokenizers:
            tok = self._tokenizer(tok_name)
            folder = self.root / "items" / tokenizer_dir(tok_name)
            for field in self.source.text_fields:
                ids_path, len_path = folder / f"{field}.npy", folder / f"{field}.len.npy"
                old_ids, old_len = np.load(ids_path), np.load(len_path)
                ids, kept, _ = tokenize_field(tok, texts[field], old_ids.shape[1])
                _save(ids_path, np.concatenate([old_ids, ids.astype(old_ids.dtype)]))
                _save(len_path, np.concatenate([old_len, kept.astype(old_len.dtype)]))
                handled |= {ids_path, len_path}
                entities = folder / f"{field}.entities.npy"
                if entities.is_file():  # the title words' entities (DKN): generated items name none
                    old_ent = np.load(entities)
                    _save(
                        entities,
                        np.concatenate([old_ent, np.zeros((len(rows), old_ent.shape[1]), old_ent.dtype)]),
                    )
                    handled.add(entities)
        # Refuse to leave an item array behind (one added by a newer `prepare`): it would be shorter.
        for path in (self.root / "items").rglob("*.npy"):
            if path not in handled and np.load(path, mmap_mode="r").shape[:1] == (first,):
                raise OncerecError(f"merge cannot extend {path.relative_to(self.root)} with generated items")

    def _extend_histories(self, added: dict[int, list[int]]) -> None:
        folder = self.root / "histories"
        items, lengths, users = (np.load(folder / f"{k}.npy") for k in ("items", "length", "user"))
        width = items.shape[1]
        for row in np.flatnonzero(np.isin(users, list(added))):
            merged = added[int(users[row])] + items[row, : lengths[row]].tolist()
            merged = merged[-width:]  # the most recent (real) clicks are kept
            items[row] = 0
            items[row, : len(merged)] = merged
            lengths[row] = len(merged)
        _save(folder / "items.npy", items)
        _save(folder / "length.npy", lengths)
        self.report["generate"]["history_rows"] = int(np.isin(users, list(added)).sum())

    # -- summaries ----------------------------------------------------------------------------------
    def _summaries(self) -> None:
        done, failed = self.store.latest("summarize", self.model)
        ids = self.table.column("id").to_pylist()
        titles = self.table.column("title").to_pylist()
        names = self.table.column_names
        synthetic = self.table.column("synthetic").to_pylist() if "synthetic" in names else [False] * len(ids)
        old = self.table.column(SUMMARY_FIELD).to_pylist() if SUMMARY_FIELD in names else None
        key = SUMMARY_KEY[self._summary_domain(done)]
        # The fallback is the original text the summary stands for: the title (news), the description
        # (books, kept as `abstract`) or, without one, the title.
        fallback = titles
        if key == "description" and "abstract" in names:
            fallback = [
                a or t for a, t in zip(self.table.column("abstract").to_pylist(), titles, strict=True)
            ]
        summaries, used = [], 0
        for i, item in enumerate(ids):
            record = done.get(item) if i else None
            if record is not None and not synthetic[i]:
                summaries.append(record.output[key])
                used += 1
            elif synthetic[i] and old is not None and old[i]:
                summaries.append(old[i])
            else:
                summaries.append(fallback[i] or "")
        real = sum(1 for i in range(1, len(ids)) if not synthetic[i])
        self.report["summarize"] = {
            "items": real,
            "generated": used,
            "fallback": real - used,
            "fallback_is": "the original title"
            if key == "title"
            else "the original description, else the title",
            "failed_targets": failed,
            "not_in_dataset": len(set(done) - set(ids)),
        }
        if not used:
            logger.info("summaries: none in the store: no `summary` field added")
            return
        column = pa.array(summaries, pa.string())
        if SUMMARY_FIELD in names:
            self.table = self.table.set_column(names.index(SUMMARY_FIELD), SUMMARY_FIELD, column)
        else:
            self.table = self.table.append_column(SUMMARY_FIELD, column)
        if SUMMARY_FIELD not in self.manifest["text_fields"]:
            self.manifest["text_fields"] = [*self.manifest["text_fields"], SUMMARY_FIELD]
        lengths = self.config.get("max_lengths", {})
        # as long as the field it stands for: a title (news) or a description (books, kept as `abstract`)
        like = "title" if key == "title" else "abstract"
        max_len = lengths.get(SUMMARY_FIELD, lengths.get(like, DEFAULT_MAX_LEN))
        tokens = self._tokenize(SUMMARY_FIELD, summaries, max_len)
        if "word" in tokens:
            n = sum(len(t) for t in tokens["word"])
            unk = sum(t.count(UNK) for t in tokens["word"])
            # Words the dataset's vocabulary lacks map to <unk>: this says how much of the summaries is lost.
            self.report["summarize"]["word_unk_share"] = round(unk / max(n, 1), 4)
        logger.info(
            f"summaries: {used} items, {real - used} fall back to {self.report['summarize']['fallback_is']}"
            + (f" ({', '.join(f'{v} {k}' for k, v in failed.items())})" if failed else "")
        )

    # -- profiles -----------------------------------------------------------------------------------
    def _profiles(self) -> None:
        done, failed = self.store.latest("profile", self.model)
        users = self.source.vocab("user")
        index = {u: i for i, u in enumerate(users)}
        profiles = {index[t]: r.output for t, r in done.items() if t in index and index[t]}
        self.report["profile"] = {
            "users": len(users) - 1,
            "with_profile": len(profiles),
            "without_profile": len(users) - 1 - len(profiles),
            "failed_targets": failed,
            "not_in_dataset": len(done) - len(profiles),
        }
        if not profiles:
            logger.info("profiles: none in the store: no user attributes added")
            return
        names = list(self.manifest.get("user_attributes", []))
        for answer_key, name in ATTRIBUTES.items():
            lists = {u: p.get(answer_key, []) for u, p in profiles.items() if p.get(answer_key)}
            if not lists:
                continue
            vocab = ["<pad>", *sorted({v for values in lists.values() for v in values})]
            position = {v: i for i, v in enumerate(vocab)}
            width = max(len(v) for v in lists.values())
            ids = np.zeros((len(users), width), np.int32)
            weights = np.zeros((len(users), width), np.float32)
            for u, values in lists.items():
                ids[u, : len(values)] = [position[v] for v in values]
                weights[u, : len(values)] = 1.0 / np.arange(1, len(values) + 1)  # most relevant first
            _save(self.root / "users" / f"{name}.npy", ids)
            _save(self.root / "users" / f"{name}.weight.npy", weights)
            _write_json(self.root / "vocab" / f"{name}.json", vocab)
            self.stats.setdefault("vocab", {})[name] = len(vocab)
            self.report["profile"][f"{name}_values"] = len(vocab) - 1
            if name not in names:
                names.append(name)
        self.manifest["user_attributes"] = names
        logger.info(
            f"profiles: {len(profiles)} of {len(users) - 1} users -> user attributes {', '.join(names)}"
        )

    # -- the language-model prompt --------------------------------------------------------------------
    def _prompt(self, template: str) -> None:
        """Every item's `prompt` field rendered again from `template`, which may name the summary (e.g.
        `book title: {title} description: {summary}`), so that DIRE reads the generated text too."""
        if "prompt" not in self.manifest["text_fields"]:
            raise OncerecError(
                f"--prompt: {self.source.root} has no `prompt` text field to render; prepare it with "
                "data.text_fields including prompt (model.item=lm adds it) and the language model's tokenizer"
            )
        names = self.table.column_names
        known = [n for n in ("title", "abstract", "category", "subcategory", SUMMARY_FIELD) if n in names]
        try:
            fields = string.Formatter().parse(template)
            bad = [f for _, f, _, _ in fields if f is not None and f not in known]
        except ValueError as e:
            raise OncerecError(f"--prompt `{template}`: {e}") from None
        if bad:
            raise OncerecError(
                f"--prompt `{template}`: unknown field {{{bad[0]}}}; this dataset has "
                + ", ".join("{" + f + "}" for f in known)
            )
        columns = {n: self.table.column(n).to_pylist() for n in known}
        texts = [
            "" if i == 0 else prompt_text(template, {n: columns[n][i] or "" for n in known})
            for i in range(self.table.num_rows)
        ]
        self.table = self.table.set_column(names.index("prompt"), "prompt", pa.array(texts, pa.string()))
        max_len = self.config.get("max_lengths", {}).get("prompt", DEFAULT_MAX_LEN)
        self._tokenize("prompt", texts, max_len)
        self.config = {**self.config, "prompt": template}
        self.manifest["data_config"] = self.config
        self.report["prompt"] = template
        logger.info(f"prompt: every item's `prompt` rendered from `{template}`")

    # -- shared -------------------------------------------------------------------------------------
    def _tokenize(self, field: str, texts: list[str], max_len: int) -> dict[str, list[list[int]]]:
        """A text field's token ids and lengths with every tokenizer of the dataset (row 0 stays empty)."""
        out = {}
        for tok_name in self.source.tokenizers:
            tok = self._tokenizer(tok_name)
            folder = self.root / "items" / tokenizer_dir(tok_name)
            tokens = out[tok_name] = tok.encode(texts)
            ids_, kept, full = pack(tokens, max_len)
            kept[0] = 0
            _save(folder / f"{field}.npy", ids_)
            _save(folder / f"{field}.len.npy", kept)
            self.stats.setdefault("token_lengths", {}).setdefault(tok_name, {})[field] = _percentiles(
                full[1:], max_len
            )
        return out

    def _write_items(self) -> None:
        pq.write_table(self.table, _fresh(self.root / "items.parquet"))

    def _tokenizer(self, name: str):
        if name == "word":
            # The dataset's own vocabulary: ids stay those of the source, unknown words become <unk>.
            return WordTokenizer(self.source.vocab("word"), self.config.get("lowercase", True))
        return HFTokenizer(name)

    def _summary_domain(self, done: dict[str, Record]) -> str:
        """The domain the summaries were asked or imported for (`--domain`), which their one key tells (a news
        title, a book description); without any, the dataset's."""
        found = {domain for r in done.values() for domain, key in SUMMARY_KEY.items() if key in r.output}
        if len(found) > 1:
            raise OncerecError(
                f"{self.store.path}: the summaries are of both domains (news titles and book descriptions): "
                "merge those of one model (--model), or keep a store per domain"
            )
        return found.pop() if found else dataset_domain(self.source, TaskOptions())
