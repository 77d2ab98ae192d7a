"""The `xmind` format, xMIND (https://github.com/andreeaiana/xMIND): MIND's news machine-translated (NLLB
3.3B) into 14 languages. xMIND ships only the translated text; users, impressions, categories and URLs stay
MIND's. So `data.source` is the MIND folder and `data.translations` one language's xMIND folder, laid out as
xMIND's download script writes it:

    <lang>/xMINDsmall_train/news.tsv, <lang>/xMINDsmall_dev/news.tsv, <lang>/xMINDlarge_{train,dev,test}/...
    (or <lang>/{train,dev,test}/news.tsv)

each news.tsv with 3 tab-separated columns (nid, title, abstract) and no header. Every translation file found
is read and merged (small and large translate the same MIND ids); each MIND news item then takes its translated
title and abstract. MIND news without a translation keep their English text, counted in stats.json (`xmind`)
and reported, and so does a field whose translation is empty while MIND's text is not (`english_kept`);
`--strict` makes either an error.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import Field

from oncerec.data.formats.mind import SPLITS, MindSource, News, mind_files, read_news
from oncerec.data.formats.registry import DataConfig, Format, register
from oncerec.errors import ConfigError, DataError

COLUMNS = ("nid", "title", "abstract")
_FOLDER = re.compile(rf"(xMIND(small|large)_)?({'|'.join(SPLITS)})")


def xmind_files(folder: Path) -> list[Path]:
    """The translation files under one language's folder, in name order."""
    if not folder.is_dir():
        raise DataError(
            folder, "xMIND folder not found (data.translations: one language's folder, e.g. xMIND/ron)"
        )
    files = sorted(p / "news.tsv" for p in folder.iterdir() if _FOLDER.fullmatch(p.name) and p.is_dir())
    missing = [p for p in files if not p.is_file()]
    if missing:
        raise DataError(missing[0], "missing xMIND news file")
    if not files:
        raise DataError(
            folder,
            "no xMIND news: expected xMINDsmall_train/news.tsv, xMINDlarge_dev/news.tsv, ... "
            "(or train/news.tsv, dev/news.tsv) in this language's folder",
        )
    return files


def read_translations(files: list[Path], progress: bool = False) -> dict[str, tuple[str, str]]:
    """nid -> (title, abstract), merged over the files: each field from the first file that gives it
    non-empty."""
    out: dict[str, tuple[str, str]] = {}
    for path in files:
        for nid, title, abstract in read_news(path, progress, COLUMNS, tuple):
            first = out.get(nid, ("", ""))
            out[nid] = (first[0] or title, first[1] or abstract)
    return out


class Translator:
    """MIND news with the translated title and abstract; counts what stays untranslated."""

    def __init__(self, translations: dict[str, tuple[str, str]], folder: Path, strict: bool):
        self.translations = translations
        self.folder = folder
        self.strict = strict
        self.translated: set[str] = set()
        self.untranslated: set[str] = set()
        self.english_kept: dict[str, set[str]] = {"title": set(), "abstract": set()}

    def __call__(self, news: Iterator[News], path: Path) -> Iterator[News]:
        for item in news:
            text = self.translations.get(item.news_id)
            if text is None:
                if self.strict:
                    raise DataError(path, f"news id {item.news_id} has no translation in {self.folder}")
                self.untranslated.add(item.news_id)
                yield item
            else:
                self.translated.add(item.news_id)
                yield dataclasses.replace(item, **self._fields(item, text, path))

    def _fields(self, item: News, text: tuple[str, str], path: Path) -> dict[str, str]:
        """The translated title and abstract. An empty translation of a non-empty English text is a failed
        one: the English is kept (counted; an error with --strict)."""
        out = {}
        for field, translated in zip(("title", "abstract"), text, strict=True):
            english = getattr(item, field)
            if english and not translated:
                if self.strict:
                    raise DataError(
                        path, f"news id {item.news_id}: its {field} translation in {self.folder} is empty"
                    )
                self.english_kept[field].add(item.news_id)
            out[field] = translated or english
        return out

    def stats(self) -> dict:
        return {
            "translations": str(self.folder),
            "translated": len(self.translated),
            "untranslated": len(self.untranslated - self.translated),
            "untranslated_examples": sorted(self.untranslated - self.translated)[:10],
            # translated news whose translation of that field is empty: MIND's English is kept
            "english_kept": {f: len(ids) for f, ids in self.english_kept.items()},
        }


class XmindConfig(DataConfig):
    """xMIND's key: the translations to read MIND with."""

    format: Literal["xmind"] = "xmind"
    translations: str = Field(
        "",
        description="One language's xMIND folder (e.g. xMIND/ron, holding xMINDsmall_train/news.tsv, ...); its "
        "titles and abstracts replace the MIND news text of `source`.",
    )


def _translations(cfg: XmindConfig) -> Path:
    if not cfg.translations:
        raise ConfigError(
            "data.format=xmind needs data.translations: the xMIND folder of one language (e.g. xMIND/ron); "
            "data.source stays the MIND folder"
        )
    return Path(cfg.translations)


def files(root: Path, cfg: XmindConfig) -> list[Path]:
    return mind_files(root) + xmind_files(_translations(cfg))


class XmindSource(MindSource):
    """MIND's users and impressions, with the news text of one xMIND language."""

    protocol_key = "xmind"

    def __init__(self, root: Path, cfg: XmindConfig, progress: bool = False):
        super().__init__(root, cfg, progress)
        folder = _translations(cfg)
        files = xmind_files(folder)
        self.files = self.files + files
        self.translate = Translator(read_translations(files, progress), folder, cfg.strict)

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


register(
    Format(
        "xmind",
        XmindConfig,
        files,
        XmindSource,
        about="the MIND folder, with data.translations=<one xMIND language's folder>",
    )
)
