"""`oncerec genre import`: answers made outside oncerec, read into the response store as if requested live.

`genre merge` then builds a dataset from them exactly as from the answers `genre run` stored: each imported
answer is turned into the answer text its task parses, validated by the task's own `parse()` (the schema,
topics from topics.txt, categories / shelves of the dataset), and stored as a `Record` like a live one.

Formats, `--format once` (the logs ONCE released with its paper: GPT-3.5-turbo's answers):

| task      | MIND (domain news)                               | Goodreads (domain books)                       |
|-----------|--------------------------------------------------|------------------------------------------------|
| summarize | `news_summarizer.log`: `nid<TAB>[newtitle] text`  | `book_summarizer.log`: `bid<TAB>[description] text` |
| profile   | `user_profiler.log`: `{"uid": 3, "interest": "[topics]\\n- a\\n- b\\n[region]\\n- NY"}` | `user_profiler.log`: `{"uid": 3, "interest": ["a", "b"]}` |
| generate  | `generator_v1/v2.log`, `chain_v5/v6.log`: `{"uid": 3, "news": "<JSON: title, abstract, category>"}` | `generator_v1/v2.log`: `{"uid": 3, "book": "<JSON: title, description>"}` |

They become the answers `{"title": text}` / `{"description": text}`, `{"topics": [...], "regions": [...]}` /
`{"interests": [...]}`, and the generator's JSON object as it is (a generated item's target is `<user>#0`).

`--format jsonl`: `{"id": ..., "task": ..., "output": {...}}` one a line (outputs made elsewhere, e.g. by a
provider's batch API); `output` is the answer object, or the answer text; `task` must be `--task`; a generated
item's id is `<user>#<k>`, or a user id (then `<user>#0`).

Ids: a JSON integer (and, with `--vocab`, an integer id of a summarizer log) is a 0-based line number of the
`--vocab` file (`tok.uid.dat`, `tok.nid.dat`, `tok.bid.dat`); text ids are taken as they are (Goodreads'
`book_summarizer.log` holds the Goodreads book ids themselves: no `--vocab` there).

Tolerated, and only these (the release's documented quirks): a repeated id (the later line wins; the earlier
ones count as duplicates), a missing `[newtitle]` / `[description]` tag, an answer inside a ``` code fence; and
a generated book without a shelf (ONCE's book generator was not asked for one: the book's subcategory is
unknown). Everything else goes through the live validation: an answer that fails it, and ONCE's placeholder
descriptions (`... is a book.`), are stored as `invalid` with the raw line and the reason, never dropped.
Ids not in the dataset are counted and not stored; when they are most of the log's ids, the import is refused
(the log is keyed by something else than the dataset's ids: line numbers without `--vocab`, the wrong
`--vocab`), unless `--allow-unknown-ids` (a log about a larger dataset). An import that would store no valid
answer is an error. A malformed line (bad JSON, a missing key, an id beyond the vocabulary) is a DataError
naming file:line, unless `--skip-bad` stores it as invalid and goes on. Lines end in \\n, \\r\\n or \\r.

The records: model `import:<--model>` (default `import:gpt-3.5-turbo`, so that `genre merge --model
gpt-3.5-turbo` selects them, and `--model import:gpt-3.5-turbo` only them), prompt version
`once-release:<file stem>` (jsonl: `import:<file stem>`), params `{"import": format, "file": name, "line": n}`
(the provenance), raw = the line. The key hashes the task, target, prompt version, model and
`{"import", "file"}`, as a live key hashes the generation parameters. One transaction per import: an
interrupted import stores nothing; importing a file again writes only the rows that changed (none for the
same file), so later live answers keep winning over it in merge, which takes the latest answer per target.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from oncerec.errors import DataError, OncerecError
from oncerec.genre.options import STORE_NAME, TaskOptions
from oncerec.genre.parsing import InvalidAnswer
from oncerec.genre.store import Record, Store, request_key
from oncerec.genre.tasks import SUMMARY_KEY, TASKS, DatasetView, Task, make_task

FORMATS = ("once", "jsonl")
DEFAULT_MODEL = "gpt-3.5-turbo"
MODEL_KIND = "import"  # model identity `import:<model>`, as a live one is `openai:<model>` or `local:<model>`
_TAGS = {"[newtitle]": "news", "[description]": "books"}  # summarizer tag -> domain
_ITEM_KEY = {"news": "news", "books": "book"}  # generator logs: the key holding the item, by domain
PLACEHOLDER = "is a book."
PLACEHOLDER_REASON = "placeholder answer (`... is a book.`: the release's stand-in for a missing description)"
_FENCE = re.compile(r"^\s*```[\w-]*[ \t]*\n?(.*?)\n?\s*```\s*$", re.S)
_SECTION = re.compile(r"^\[(\w+)\]\s*(.*)$")
_BULLET = re.compile(r"^(?:[-*\u2022]|\d+[.)])\s*")


@dataclass(frozen=True)
class ImportOptions:
    task: str
    log: str  # the file to import
    fmt: str = "once"
    vocab: str = ""  # integer ids are line numbers of this file
    domain: str = ""  # news | books; empty: the dataset's
    store: str = ""  # empty: <dataset>/genre.sqlite
    model: str = ""  # empty: gpt-3.5-turbo (the model of ONCE's release)
    skip_bad: bool = False  # malformed lines are stored as invalid instead of stopping the import
    allow_unknown_ids: bool = False  # import a log most of whose ids the dataset lacks (the known ones)


@dataclass
class ImportSummary:
    """Counts of one import: lines = imported + invalid + not_in_dataset + duplicates."""

    file: str
    task: str
    model: str
    prompt_version: str
    store: str = ""
    lines: int = 0  # non-blank lines read
    imported: int = 0  # valid answers, stored as `done`
    invalid: dict[str, int] = field(default_factory=dict)  # reason -> answers stored as `invalid`
    not_in_dataset: int = 0  # ids the dataset does not have (not stored)
    duplicates: int = 0  # lines of an id that appears again later (the later line wins)
    written: int = 0  # rows new or changed in the store
    unchanged: int = 0  # rows the store already held as they are (a re-import)

    @property
    def invalid_total(self) -> int:
        return sum(self.invalid.values())

    def report(self) -> list[str]:
        out = [
            f"{self.file} -> {self.task} ({self.model}, prompt {self.prompt_version}): {self.lines:,} lines read: "
            f"{self.imported:,} imported, {self.invalid_total:,} invalid, {self.not_in_dataset:,} ids not in "
            f"the dataset, {self.duplicates:,} duplicates (the later line won)"
        ]
        for reason, n in sorted(self.invalid.items(), key=lambda kv: (-kv[1], kv[0])):
            out.append(f"  invalid: {n:,} {reason}")
        out.append(
            f"store {self.store}: {self.written:,} rows written, {self.unchanged:,} already there unchanged"
        )
        return out


@dataclass
class _Entry:
    line: int
    raw: str
    target: str
    answer: str | None = None  # the text the task parses
    error: str | None = None  # known to be invalid before parsing (a placeholder, a malformed line)
    malformed: bool = False


class _Malformed(Exception):
    def __init__(self, message: str, field: str | None = None, target: str | None = None):
        super().__init__(message)
        self.message, self.field, self.target = message, field, target


def import_answers(data: str, opts: ImportOptions, progress: bool = True) -> ImportSummary:
    """Read `opts.log` into the response store of the dataset `data` (what `--data` accepts)."""
    from oncerec.genre.runner import open_dataset

    if opts.fmt not in FORMATS:
        raise OncerecError(f"--format {opts.fmt}: valid formats are {', '.join(FORMATS)}")
    if opts.task not in TASKS:
        raise OncerecError(f"--task {opts.task}: valid tasks are {', '.join(TASKS)}")
    path = Path(opts.log)
    if not path.is_file():
        raise OncerecError(f"--log {path}: no such file")
    vocab = read_vocab(Path(opts.vocab)) if opts.vocab else None
    dataset = open_dataset(data, progress)
    view = DatasetView(dataset)
    task = make_task(opts.task, view, TaskOptions(domain=opts.domain))
    model = f"{MODEL_KIND}:{opts.model or DEFAULT_MODEL}"
    version = f"{'once-release' if opts.fmt == 'once' else 'import'}:{path.stem}"
    store_path = Path(opts.store) if opts.store else dataset.root / STORE_NAME
    summary = ImportSummary(path.name, task.name, model, version, str(store_path))
    reader = _Reader(path, task, vocab, opts)

    entries: dict[str, _Entry] = {}
    for n, raw in _lines(path, progress):
        summary.lines += 1
        try:
            entry = reader.entry(n, raw)
        except _Malformed as e:
            if not opts.skip_bad:
                raise DataError(path, e.message, n, e.field) from None
            target = e.target or f"{path.name}:{n}"
            entry = _Entry(n, raw, target, error=f"malformed line: {e.message}", malformed=True)
        if entry.target in entries:
            summary.duplicates += 1
            del entries[entry.target]  # the later line wins, and takes its place in the order
        entries[entry.target] = entry
    reader.check_vocabulary_use()

    known = _known_targets(task, view)
    ids = [target for target, e in entries.items() if not e.malformed]
    unknown = {target for target in ids if not known(target)}
    _check_unknown_ids(path, ids, unknown, task, opts)
    params = {"import": opts.fmt, "file": path.name}
    records = []
    for target, e in entries.items():
        if target in unknown:
            summary.not_in_dataset += 1
            continue
        output, error = None, e.error
        if error is None:
            try:
                output = task.parse(e.answer, **reader.parse_options)
            except InvalidAnswer as x:
                error = str(x)
        if error is None:
            summary.imported += 1
        else:
            kind = reason_kind(error)
            summary.invalid[kind] = summary.invalid.get(kind, 0) + 1
        records.append(
            Record(
                key=request_key(task.name, target, version, model, params),
                task=task.name,
                target=target,
                prompt_version=version,
                prompt_digest="",
                model=model,
                params=json.dumps({**params, "line": e.line}, sort_keys=True),
                upstream="",
                status="done" if error is None else "invalid",
                output=output,
                raw=e.raw,
                error=error,
            )
        )

    if not summary.imported:
        raise OncerecError(f"{path}: no answer could be imported: " + "; ".join(summary.report()[:-1]))
    store = Store(store_path)
    try:
        stored = store.get_many([r.key for r in records])
        changed = [r for r in records if not _same(stored.get(r.key), r)]
        now = time.time()
        for r in changed:
            r.created_at = now
        store.put_many(changed)  # one transaction
    finally:
        store.close()
    summary.written, summary.unchanged = len(changed), len(records) - len(changed)
    return summary


def read_vocab(path: Path) -> list[str]:
    """A vocabulary file: line i (0-based) is the id whose index is i (lines end in \\n, \\r\\n or \\r)."""
    if not path.is_file():
        raise OncerecError(f"--vocab {path}: no such file")
    try:
        with open(path, encoding="utf-8-sig", newline=None) as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise _not_a_vocabulary(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    if "\0" in text:
        raise _not_a_vocabulary(path, "a binary file: it holds NUL bytes")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _not_a_vocabulary(path: Path, what: str) -> OncerecError:
    return OncerecError(
        f"--vocab {path}: {what}; give the vocabulary of the log's integer ids, one id a line (tok.uid.dat, "
        "tok.nid.dat, tok.bid.dat)"
    )


def _check_unknown_ids(
    path: Path, ids: list[str], unknown: set[str], task: Task, opts: ImportOptions
) -> None:
    """Refuse a log most of whose ids the dataset lacks: keyed by something else than the dataset's ids (line
    numbers without --vocab, another --vocab than the ids'), the few ids that happen to exist would get the
    answers about other items or users. A log about a larger dataset is the one case to allow, explicitly."""
    if not unknown:
        return
    examples = ", ".join(f"`{t}`" for t in [t for t in ids if t in unknown][:3])
    head = f"{path}: {len(unknown):,} of its {len(ids):,} ids are not in the dataset (e.g. {examples})"
    if len(unknown) == len(ids):
        raise OncerecError(f"{head}: nothing to import; {_unknown_cause(unknown, task, opts)}")
    if 2 * len(unknown) > len(ids) and not opts.allow_unknown_ids:
        raise OncerecError(
            f"{head}: likely {_unknown_cause(unknown, task, opts)}; if the log is about a larger dataset, "
            f"--allow-unknown-ids imports the answers of the {len(ids) - len(unknown):,} known ids"
        )


def _unknown_cause(unknown: set[str], task: Task, opts: ImportOptions) -> str:
    vocab = "tok.nid.dat or tok.bid.dat" if task.name == "summarize" else "tok.uid.dat"
    if opts.vocab:
        return (
            f"the ids were read as line numbers of --vocab {opts.vocab}: give the vocabulary of these ids "
            f"({vocab})"
        )
    ids = [t.rpartition("#")[0] if task.name == "generate" else t for t in unknown]
    numbers = sorted(int(t) for t in ids if t.isdigit() and len(t) < 19)
    if len(numbers) == len(ids) and numbers[-1] < 2 * len(numbers):
        return (
            f"the ids are the integers {numbers[0]}..{numbers[-1]}, as line numbers of a vocabulary are: "
            f"give it with --vocab ({vocab})"
        )
    return "the log is about another dataset"


def reason_kind(error: str) -> str:
    """An invalid answer's reason without its particulars, to count reasons: "topic `cooking` is not one of
    the allowed values: a, b" -> "topic `…` is not one of the allowed values"."""
    kind = re.sub(r"`[^`]*`", "`…`", error)
    kind = re.sub(r" is not one of the allowed values:.*$", " is not one of the allowed values", kind)
    kind = re.sub(r", it (has|holds) \d+$", "", kind)
    kind = re.sub(r" \(character \d+\)$", "", kind)
    return kind


def unfence(text: str) -> str:
    """The answer inside a ``` code fence (with or without a language name), else the text as it is."""
    m = _FENCE.match(text)
    return m.group(1) if m else text


def profile_object(text: str) -> dict:
    """ONCE's raw MIND profile `[topics]\\n- a\\n- b\\n[region]\\n- NY` -> {"topics": [...], "regions": [...]}
    (the region section is optional; a section the profiler was not asked for is kept, so that the task's
    schema rejects it)."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in unfence(text).splitlines():
        line = line.strip()
        if not line:
            continue
        m = _SECTION.match(line)
        if m:
            name = m.group(1).lower()
            current = {"topic": "topics", "region": "regions"}.get(name.rstrip("s"), name)
            sections.setdefault(current, [])
            line = m.group(2).strip()
            if not line:
                continue
        if current is None:
            raise InvalidAnswer("the profile must start with a [topics] section")
        sections[current].append(_BULLET.sub("", line).strip())
    return sections


class _Reader:
    """One line of the file -> an _Entry (target, answer text), or _Malformed."""

    def __init__(self, path: Path, task: Task, vocab: list[str] | None, opts: ImportOptions):
        self.path, self.task, self.vocab, self.opts = path, task, vocab, opts
        self.domain = task.domain
        self.vocab_values = set(vocab) if vocab else set()
        self.tsv_ids = self.tsv_ids_in_vocab = 0
        self.example: tuple[str, int] | None = None
        # ONCE's book generator gave no shelf
        self.parse_options = (
            {"shelf_optional": True} if opts.fmt == "once" and task.name == "generate" else {}
        )

    def entry(self, n: int, raw: str) -> _Entry:
        if self.opts.fmt == "jsonl":
            return self._jsonl(n, raw)
        if self.task.name == "summarize":
            return self._summary(n, raw)
        obj = self._json(raw)
        target = self._id(obj, "uid", n)
        if self.task.name == "profile":
            return self._profile(n, raw, obj, target)
        return self._generated(n, raw, obj, target)

    # -- ids --------------------------------------------------------------------------------------------
    def _id(self, obj: dict, key: str, n: int) -> str:
        if key not in obj:
            raise _Malformed("missing key", key)
        value = obj[key]
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise _Malformed(f"expected an integer or a string id, got {type(value).__name__}", key)
        if isinstance(value, str):
            if not value.strip():
                raise _Malformed("empty id", key)
            return value.strip()
        return self._line_of_vocab(value, n, key)

    def _line_of_vocab(self, index: int, n: int, key: str) -> str:
        if self.vocab is None:
            raise DataError(
                self.path,
                f"{key} {index} is a line number of a vocabulary: give it with --vocab "
                f"({'tok.uid.dat' if key == 'uid' else 'the id vocabulary, e.g. tok.nid.dat'})",
                n,
                key,
            )
        if not 0 <= index < len(self.vocab):
            raise _Malformed(
                f"{index} is beyond the {len(self.vocab):,} lines of --vocab {self.opts.vocab}", key
            )
        return self.vocab[index]

    def check_vocabulary_use(self, now: bool = False) -> None:
        """Refuse a summarizer log read through --vocab whose ids are the vocabulary's ids themselves
        (Goodreads' book_summarizer.log with tok.bid.dat): each would be read as another item's line. `now`:
        an id that is a value of the vocabulary and beyond its lines (refused at once)."""
        if now or self.tsv_ids and self.tsv_ids_in_vocab * 2 > self.tsv_ids:
            value, line = self.example
            share = "" if now else f"{self.tsv_ids_in_vocab:,} of {self.tsv_ids:,}, "
            raise OncerecError(
                f"{self.path}: its ids are already ids of --vocab {self.opts.vocab} ({share}e.g. `{value}` on "
                f"line {line}, not a line number there): import it without --vocab"
            )

    # -- once -------------------------------------------------------------------------------------------
    def _summary(self, n: int, raw: str) -> _Entry:
        if "\t" not in raw:
            raise _Malformed("expected `id<TAB>answer`: no tab")
        ident, text = raw.split("\t", 1)
        ident = ident.strip()
        if not ident:
            raise _Malformed("empty id", "id")
        target = ident
        if self.vocab is not None and re.fullmatch(r"\d+", ident):
            self.tsv_ids += 1
            if ident in self.vocab_values:
                self.tsv_ids_in_vocab += 1
                self.example = self.example or (ident, n)
                if int(ident) >= len(self.vocab):
                    self.check_vocabulary_use(now=True)
            target = self._line_of_vocab(int(ident), n, "id")
        text = unfence(text.strip()).strip()
        for tag, domain in _TAGS.items():
            if text.lower().startswith(tag):
                if domain != self.domain:
                    raise OncerecError(
                        f"{self.path}:{n}: {tag} answers are {domain} summaries, but the dataset's domain is "
                        f"{self.domain} (--domain {domain}?)"
                    )
                text = text[len(tag) :].strip()
                break
        entry = _Entry(n, raw, target, json.dumps({SUMMARY_KEY[self.domain]: text}, ensure_ascii=False))
        if self.domain == "books" and text.endswith(PLACEHOLDER):
            entry.error = PLACEHOLDER_REASON
        return entry

    def _profile(self, n: int, raw: str, obj: dict, target: str) -> _Entry:
        if "interest" not in obj:
            raise _Malformed("missing key", "interest", target)
        value = obj["interest"]
        if self.domain == "news":
            if isinstance(value, list):
                raise OncerecError(
                    f"{self.path}:{n}: a list of interests is the Goodreads profiler's format, but the "
                    "dataset's domain is news (--domain books?)"
                )
            if not isinstance(value, str):
                raise _Malformed(
                    f"expected the profiler's text, got {type(value).__name__}", "interest", target
                )
            try:
                answer = profile_object(value)
            except InvalidAnswer as e:
                return _Entry(n, raw, target, error=str(e))
            return _Entry(n, raw, target, json.dumps(answer, ensure_ascii=False))
        if isinstance(value, str):
            raise OncerecError(
                f"{self.path}:{n}: the profiler's raw text is MIND's format, but the dataset's domain is "
                "books (--domain news?)"
            )
        if not isinstance(value, list):
            raise _Malformed(f"expected a list of interests, got {type(value).__name__}", "interest", target)
        return _Entry(n, raw, target, json.dumps({"interests": value}, ensure_ascii=False))

    def _generated(self, n: int, raw: str, obj: dict, user: str) -> _Entry:
        key = _ITEM_KEY[self.domain]
        other = next(k for d, k in _ITEM_KEY.items() if d != self.domain)
        target = f"{user}#0"
        if key not in obj:
            if other in obj:
                domain = "books" if other == "book" else "news"
                raise OncerecError(
                    f"{self.path}:{n}: `{other}` answers are {domain} items, but the dataset's domain is "
                    f"{self.domain} (--domain {domain}?)"
                )
            raise _Malformed("missing key", key, target)
        value = obj[key]
        if isinstance(value, dict):
            value = json.dumps(value, ensure_ascii=False)
        if not isinstance(value, str):
            raise _Malformed(f"expected the generator's JSON text, got {type(value).__name__}", key, target)
        return _Entry(n, raw, target, unfence(value))

    # -- jsonl ------------------------------------------------------------------------------------------
    def _jsonl(self, n: int, raw: str) -> _Entry:
        obj = self._json(raw)
        target = self._id(obj, "id", n)
        if self.task.name == "generate":
            user, _, k = target.rpartition("#")
            if not (user and k.isdigit()):
                target = f"{target}#0"
        if "task" not in obj:
            raise _Malformed("missing key", "task", target)
        if obj["task"] != self.task.name:
            raise _Malformed(f"task `{obj['task']}`, but --task is {self.task.name}", "task", target)
        if "output" not in obj:
            raise _Malformed("missing key", "output", target)
        output = obj["output"]
        if isinstance(output, dict):
            output = json.dumps(output, ensure_ascii=False)
        if not isinstance(output, str):
            raise _Malformed(f"expected an object or the answer text, got {type(output).__name__}", "output")
        return _Entry(n, raw, target, output)

    @staticmethod
    def _json(raw: str) -> dict:
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise _Malformed(f"not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise _Malformed(f"expected a JSON object, got {type(obj).__name__}")
        return obj


def _lines(path: Path, progress: bool) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) of the non-blank lines (a byte-order mark dropped). Lines end in \\n, \\r\\n
    or a lone \\r (old Mac files): answers are one line each, so a lone \\r is never inside one."""
    try:
        with open(path, encoding="utf-8-sig", newline=None) as f:
            bar = tqdm(f, desc=path.name, unit=" lines", disable=not progress, leave=False)
            for n, line in enumerate(bar, 1):
                line = line.rstrip("\n")
                if line.strip():
                    yield n, line
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None


def _known_targets(task: Task, view: DatasetView):
    if task.name == "summarize":
        items = {view.ids[i] for i in range(1, len(view.ids)) if not view.synthetic[i]}
        return items.__contains__
    users = set(view.users[1:])
    if task.name == "profile":
        return users.__contains__

    def generated(target: str) -> bool:
        user, _, k = target.rpartition("#")
        return user in users and k.isdigit()

    return generated


def _same(old: Record | None, new: Record) -> bool:
    return old is not None and (old.status, old.output, old.raw, old.error, old.params) == (
        new.status,
        new.output,
        new.raw,
        new.error,
        new.params,
    )
