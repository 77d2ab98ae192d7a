"""The three GENRE tasks: which requests a dataset needs, what a valid answer is, and what happens without one.

| task        | one request per                         | valid answer (news)                         | fallback at merge          |
|-------------|-----------------------------------------|---------------------------------------------|----------------------------|
| `summarize` | item with text (not synthetic)          | {"title": 1-30 words, one line}             | the original title         |
| `profile`   | user with at least one click            | {"topics": 1-5 from topics.txt, "regions"}  | no attributes (clicks only)|
| `generate`  | cold user (1..cold_max clicks) x k      | {"title", "abstract", "category" of data}   | no synthetic item          |

Books (`domain: books` in dataset.json): `summarize` answers {"description": ...} from the title, `profile`
{"interests": up to five interests of 1-3 words}, `generate` {"title", "description", "shelf" of the data's top
shelves} (stored as the item fields title, abstract and subcategory; the author, Goodreads' category, stays
unknown).

All tasks are in the one registry `TASKS`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from oncerec.data.dataset import Dataset
from oncerec.data.formats import FORMATS
from oncerec.data.formats.registry import saved_data_config
from oncerec.errors import OncerecError
from oncerec.genre.options import TaskOptions
from oncerec.genre.parsing import (
    InvalidAnswer,
    choose,
    exact_keys,
    extract_object,
    normalize,
    string_list,
    text_value,
)
from oncerec.genre.templates import Template, load_list, load_template

DOMAINS = ("news", "books")
SUMMARY_KEY = {"news": "title", "books": "description"}  # the one key of a summary, by domain
MAX_TOPICS = 5  # the profiler names one to five topics, most relevant first
MAX_REGIONS = 5
MAX_INTERESTS = 5
MAX_INTEREST_WORDS = 3  # `foul play`, `high-tech heists`: ONCE's profiler wrote short phrases (3% longer)


@dataclass
class Request:
    """One request to the model; `target` is an item id, a user id, or `user#k` for the k-th generated item."""

    task: str
    target: str
    messages: list[dict[str, str]]
    template: Template
    upstream: str = ""  # hash of another task's answer this request depends on (chain: the profile)
    user: str = ""  # generate: the user the item is for


@dataclass
class Plan:
    requests: list[Request]
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> targets left out (never silent)


class DatasetView:
    """What the tasks read from a prepared dataset, loaded once: item texts and each user's history."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        table = dataset.items_table
        names = table.column_names
        self.ids: list[str] = table.column("id").to_pylist()
        self.columns = {
            k: (table.column(k).to_pylist() if k in names else [""] * len(self.ids))
            for k in ("title", "abstract", "category", "subcategory")
        }
        self.synthetic = (
            np.asarray(table.column("synthetic").to_pylist(), bool)
            if "synthetic" in names
            else np.zeros(len(self.ids), bool)
        )
        self.users: list[str] = dataset.vocab("user")

    @cached_property
    def history_of(self) -> dict[int, list[int]]:
        """User index -> the user's longest history (the latest on ties), real clicks only, oldest first."""
        items, lengths, users = (np.asarray(a) for a in self.dataset.histories)
        order = np.lexsort((np.arange(len(users)), lengths, users))
        last = order[np.r_[users[order][1:] != users[order][:-1], True]]
        out = {}
        for row in last:
            u = int(users[row])
            if u == 0:
                continue
            clicked = [int(i) for i in items[row, : lengths[row]] if not self.synthetic[i]]
            out[u] = clicked
        return out

    def history_lines(self, clicked: list[int], limit: int, with_category: bool = True) -> str:
        """Numbered `(n) (category) title` lines of the most recent clicks (books: no category, which is an
        author id there)."""
        shown = clicked[-limit:]
        cat = self.columns["category"]
        title = self.columns["title"]
        if not with_category:
            return "\n".join(f"({n}) {title[i]}" for n, i in enumerate(shown, 1))
        return "\n".join(f"({n}) ({cat[i] or 'unknown'}) {title[i]}" for n, i in enumerate(shown, 1))

    @cached_property
    def categories(self) -> list[str]:
        return [c for c in self.dataset.vocab("category")[1:] if c]

    @cached_property
    def subcategories(self) -> list[str]:
        """Subcategories; a Goodreads book's top shelf."""
        return [c for c in self.dataset.vocab("subcategory")[1:] if c]


def dataset_domain(dataset: Dataset, opts: TaskOptions) -> str:
    """news or books: `--domain`, else dataset.json's `domain`, else its data format's (a dataset prepared before
    dataset.json said), else news."""
    fmt = FORMATS.get(saved_data_config(dataset.manifest.get("data_config", {})).get("format", "mind"))
    domain = opts.domain or dataset.manifest.get("domain") or (fmt.domain if fmt else "news")
    if domain not in DOMAINS:
        raise OncerecError(f"domain `{domain}`: valid domains are {', '.join(DOMAINS)}")
    return domain


class Task:
    name = ""
    max_tokens = 64  # default generation length; answers are short JSON objects

    def __init__(self, view: DatasetView, opts: TaskOptions, domain: str):
        self.view, self.opts, self.domain = view, opts, domain
        self.template = load_template(self.template_name, opts.prompts or None)

    @property
    def template_name(self) -> str:
        return f"{self.name}-{self.domain}"

    def plan(self, limit: int = 0) -> Plan:
        raise NotImplementedError

    def parse(self, text: str, **options) -> dict:
        """The validated answer, or InvalidAnswer. `options`: see the task's `validate`."""
        obj = extract_object(text)
        if not isinstance(obj, dict):
            raise InvalidAnswer("the answer must be a JSON object")
        return self.validate(obj, **options)

    def validate(self, obj: dict) -> dict:
        raise NotImplementedError


class Summarize(Task):
    """A clear, neutral, informative new title of a news item (MIND); a short description of a book."""

    name = "summarize"

    @property
    def max_tokens(self) -> int:
        return 48 if self.domain == "news" else 96

    def plan(self, limit: int = 0) -> Plan:
        c = self.view.columns
        requests, skipped = [], {"synthetic item": 0, "no text": 0}
        for i in range(1, len(self.view.ids)):
            if self.view.synthetic[i]:
                skipped["synthetic item"] += 1
                continue
            if not (c["title"][i] or c["abstract"][i]):
                skipped["no text"] += 1
                continue
            values = {k: c[k][i] for k in ("title", "abstract", "category", "subcategory")}
            if self.domain == "books":
                values = {"title": values["title"]}
            requests.append(
                Request(self.name, self.view.ids[i], self.template.messages(values), self.template)
            )
        return _limited(requests, skipped, limit)

    def validate(self, obj: dict) -> dict:
        key = SUMMARY_KEY[self.domain]
        exact_keys(obj, (key,))
        if self.domain == "books":
            return {key: text_value(obj, key, 3, 120, one_line=False)}
        return {key: text_value(obj, key, 1, 30)}


class Profile(Task):
    """The user's interests: topics from a fixed list and regions (news); interests of one to three words (books)."""

    name = "profile"

    @cached_property
    def topics(self) -> list[str]:
        return load_list("topics.txt", self.opts.prompts or None)

    def plan(self, limit: int = 0, users: list[int] | None = None) -> Plan:
        history = self.view.history_of
        skipped = {"no clicks": 0}
        requests = []
        for u in users if users is not None else range(1, len(self.view.users)):
            clicked = history.get(u, [])
            if not clicked:
                skipped["no clicks"] += 1
                continue
            values = {
                "history": self.view.history_lines(clicked, self.opts.history_titles, self.domain == "news")
            }
            if self.domain == "news":
                values["topics"] = "\n".join(f"- {t}" for t in self.topics)
            requests.append(
                Request(self.name, self.view.users[u], self.template.messages(values), self.template)
            )
        return _limited(requests, skipped, limit)

    def validate(self, obj: dict) -> dict:
        if self.domain == "books":
            exact_keys(obj, ("interests",))
            interests = string_list(obj, "interests", 1, MAX_INTERESTS)
            for phrase in interests:
                if len(phrase.split()) > MAX_INTEREST_WORDS:
                    raise InvalidAnswer(
                        f"interest `{phrase}` has more than {MAX_INTEREST_WORDS} words: name it shorter"
                    )
            return {"interests": [w.lower() for w in interests]}
        exact_keys(obj, ("topics",), ("regions",))
        options = {normalize(t): t for t in self.topics}
        topics = [choose(t, options, "topic") for t in string_list(obj, "topics", 1, MAX_TOPICS)]
        regions = string_list(obj, "regions", 0, MAX_REGIONS) if "regions" in obj else []
        return {"topics": list(dict.fromkeys(topics)), "regions": regions}


def profile_text(profile: dict | None) -> str:
    """A profile as the chain generator reads it."""
    if not profile:
        return "unknown"
    if "interests" in profile:
        return ", ".join(profile["interests"])
    text = "topics: " + ", ".join(profile.get("topics", []))
    if profile.get("regions"):
        text += "; regions: " + ", ".join(profile["regions"])
    return text


class Generate(Task):
    """Synthetic items in a cold user's taste; with `chain`, the user's profile is given to the generator."""

    name = "generate"

    @property
    def max_tokens(self) -> int:
        return 96 if self.domain == "news" else 160  # a book's description runs to 60 words

    @property
    def template_name(self) -> str:
        return f"generate-chain-{self.domain}" if self.opts.chain else f"generate-{self.domain}"

    def cold_users(self, limit: int = 0) -> tuple[list[int], dict[str, int]]:
        """Users with 1..cold_max clicks, in user-index order; `limit` keeps the first ones."""
        history = self.view.history_of
        cold, skipped = [], {"no clicks": 0, f"not cold (more than {self.opts.cold_max} clicks)": 0}
        for u in range(1, len(self.view.users)):
            n = len(history.get(u, []))
            if n == 0:
                skipped["no clicks"] += 1
            elif n > self.opts.cold_max:
                skipped[f"not cold (more than {self.opts.cold_max} clicks)"] += 1
            else:
                cold.append(u)
        if limit and len(cold) > limit:
            skipped["beyond --limit"] = len(cold) - limit
            cold = cold[:limit]
        return cold, skipped

    def plan(self, limit: int = 0, profiles: dict[str, dict | None] | None = None) -> Plan:
        """`profiles` (chain): user id -> the profiler's answer (None when it has none)."""
        users, skipped = self.cold_users(limit)
        news = self.domain == "news"
        options = "\n".join(f"- {c}" for c in (self.view.categories if news else self.view.subcategories))
        requests = []
        for u in users:
            user = self.view.users[u]
            values = {
                "history": self.view.history_lines(self.view.history_of[u], self.opts.history_titles, news),
                "categories" if news else "shelves": options,
            }
            upstream = ""
            if self.opts.chain:
                profile = (profiles or {}).get(user)
                values["profile"] = profile_text(profile)
                upstream = _digest(profile) if profile else "no-profile"
            messages = self.template.messages(values)
            for k in range(self.opts.items_per_user):
                requests.append(Request(self.name, f"{user}#{k}", messages, self.template, upstream, user))
        return Plan(requests, {k: v for k, v in skipped.items() if v})

    def validate(self, obj: dict, shelf_optional: bool = False) -> dict:
        """The answer in the dataset's item fields (a book's description is its abstract, its shelf its
        subcategory). `shelf_optional`: a book without a shelf is valid, with an unknown subcategory (ONCE's
        released generator was not asked for one; see importer.py)."""
        text, label, field, choices = (
            ("abstract", "category", "category", self.view.categories)
            if self.domain == "news"
            else ("description", "shelf", "subcategory", self.view.subcategories)
        )
        if shelf_optional and self.domain == "books" and label not in obj:
            exact_keys(obj, ("title", text))
            return {"title": text_value(obj, "title", 1, 30), "abstract": text_value(obj, text, 0, 120)}
        exact_keys(obj, ("title", text, label))
        if not isinstance(obj[label], str):
            raise InvalidAnswer(f'"{label}" must be a string')
        return {
            "title": text_value(obj, "title", 1, 30),
            "abstract": text_value(obj, text, 0, 120),
            field: choose(obj[label], {normalize(c): c for c in choices}, label),
        }


TASKS: dict[str, type[Task]] = {"summarize": Summarize, "profile": Profile, "generate": Generate}


def make_task(name: str, view: DatasetView, opts: TaskOptions) -> Task:
    if name not in TASKS:
        raise OncerecError(f"unknown GENRE task `{name}`; valid: {', '.join(TASKS)}")
    return TASKS[name](view, opts, dataset_domain(view.dataset, opts))


def _limited(requests: list[Request], skipped: dict[str, int], limit: int) -> Plan:
    if limit and len(requests) > limit:
        skipped["beyond --limit"] = len(requests) - limit
        requests = requests[:limit]
    return Plan(requests, {k: v for k, v in skipped.items() if v})


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
