"""The `adressa` format, Adressa (Adresseavisen's news portal, NTNU SmartMedia;
https://reclab.idi.ntnu.no/dataset/): a folder (`one_week/`, `three_month/`) of event logs, one JSON-lines
file per day named `YYYYMMDD` (plain or `.gz`; `*.json` / `*.jsonl` are read too). One line is one page view:

    userId, time (epoch seconds), id (the article's hash; absent on the front page and other non-article pages),
    title, category1 (e.g. `nyheter|trondheim`), url / canonicalUrl, activeTime, eventId, keywords, profile, ...

Adressa has no impressions and no negatives: an article event is a click (a positive). A user's repeated views
of an article are one click (the first); events without `id` are skipped and counted. Items: the article's
first non-empty title, `category1` split at `|` into category and subcategory, the canonical URL; Adressa has no
abstract. The clicks then go through the ONCE protocol (protocol.py) with random negatives, as the goodreads
and generic formats do.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from oncerec.data.formats.goodreads import json_field, json_lines
from oncerec.data.formats.mind import News
from oncerec.data.formats.protocol import GroupSource, Interactions, ProtocolConfig, grouped, time_value
from oncerec.data.formats.registry import Format, register
from oncerec.errors import ConfigError, DataError

_DAY_FILE = re.compile(r"\d{8}(\.gz)?|.+\.jsonl?(\.gz)?")
SHAPE = '{"userId": ..., "id": ..., "time": ..., "title": ...}'


class AdressaConfig(ProtocolConfig):
    """Adressa has no keys of its own beyond the protocol's; it needs `negatives` (clicks only)."""

    format: Literal["adressa"] = "adressa"


def adressa_files(root: Path, cfg: AdressaConfig | None = None) -> list[Path]:
    if not root.is_dir():
        raise DataError(root, "Adressa folder not found")
    files = sorted(p for p in root.iterdir() if p.is_file() and _DAY_FILE.fullmatch(p.name))
    if not files:
        raise DataError(
            root, "no Adressa event files (one JSON-lines file per day named YYYYMMDD, or *.jsonl)"
        )
    return files


def read_events(files: list[Path], progress: bool = False) -> tuple[Interactions, dict[str, News], dict]:
    """(clicks, items by article id, counts for stats.json)."""
    users: dict[str, int] = {}
    items: dict[str, int] = {}
    news: dict[str, News] = {}
    clicked: set[tuple[int, int]] = set()
    u, i, t = [], [], []
    counts = {"events": 0, "events_without_article": 0, "repeated_views": 0}
    for path in files:
        for n, obj in json_lines(path, progress, gzipped=path.suffix == ".gz", shape=SHAPE):
            counts["events"] += 1
            if obj.get("id") is None:  # front page, section pages, ...: nothing to recommend
                counts["events_without_article"] += 1
                continue
            article = json_field(obj, "id", path, n)
            if not article:
                raise DataError(path, "empty article id", n, "id")
            user = json_field(obj, "userId", path, n)
            if not user:
                raise DataError(path, "empty user id", n, "userId")
            when = time_value(json_field(obj, "time", path, n, int), path, n, "time")
            category = obj.get("category1") or ""
            if not isinstance(category, str):
                raise DataError(path, f"expected str, got {type(category).__name__}", n, "category1")
            title = obj.get("title") or ""
            if not isinstance(title, str):
                raise DataError(path, f"expected str, got {type(title).__name__}", n, "title")
            known = news.get(article)
            if known is None or not known.title:
                main, _, sub = category.partition("|")
                url = str(obj.get("canonicalUrl") or obj.get("url") or "")
                news[article] = News(article, main, sub, title, "", url)
            key = (users.setdefault(user, len(users)), items.setdefault(article, len(items)))
            if key in clicked:
                counts["repeated_views"] += 1
                continue
            clicked.add(key)
            u.append(key[0])
            i.append(key[1])
            t.append(when)
    if not u:
        raise DataError(files[0].parent, "no article event (no line has an `id`)")
    counts["clicks"] = len(u)
    x = Interactions.from_lists(u, i, [1] * len(u), t, None, users, items)
    return x, news, counts


def open_adressa(root: Path, cfg: AdressaConfig, progress: bool = False) -> GroupSource:
    """The clicks through the protocol, with random negatives (required: Adressa has none)."""
    if cfg.negatives <= 0:
        raise ConfigError(
            "data.format=adressa has clicks only: set data.negatives (random unclicked articles per group), "
            "or start from the data preset `adressa`"
        )
    files = adressa_files(root)
    x, items, counts = read_events(files, progress)
    return grouped(x, items, cfg, files, root, counts, "adressa")


register(
    Format(
        "adressa",
        AdressaConfig,
        adressa_files,
        open_adressa,
        about="the event files (one_week/ or three_month/)",
        preset="adressa",
    )
)
