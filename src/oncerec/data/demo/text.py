"""An item's title and abstract: generic templates filled with a synonym of its concept, drawn per use.

So one latent topic shows up under several surface words, and a model that reads text beats one that
memorises word ids. Part of an item's quality shows in its headline, as appeal does in real news: the title
opens with a lead word ("Brief:" ... "Stunning:") of the item's tone (see catalogue.py), so text reveals some
of the quality and ids the rest. Each item draws from its own row of uniforms, so its text depends only on
the seed and the item's number.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from oncerec.data.demo.vocabulary import (
    ABSTRACT_SENTENCES,
    AUDIENCE_WORDS,
    FIRST_NAMES,
    LAST_NAMES,
    PLACES,
    SUB_FIRST_CONCEPT,
    SUB_N_CONCEPTS,
    TITLE_TEMPLATES,
    TONE_PREFIXES,
)

TITLE_WORDS = (6, 16)
EMPTY_ABSTRACT_SHARE = 0.1
# the most one item can use: four title tries of up to 8 draws, then 2 + 2 * 7 for the abstract
DRAWS_PER_ITEM = 48
_SLOT = re.compile(r"\{(\w+)\}")


class Draws:
    """Hands out one item's pre-drawn uniforms in order, so text generation is per-item deterministic."""

    def __init__(self, row: np.ndarray):
        self.u = row.tolist()
        self.next = 0

    def uniform(self) -> float:
        u = self.u[self.next]
        self.next += 1
        return u

    def pick(self, options: tuple[str, ...] | list[str]) -> str:
        return options[int(self.uniform() * len(options))]


def news_text(
    draw: Draws, category: str, sub: int, concept: int, tone: int, synonyms: list[tuple[str, ...]]
) -> tuple[str, str, list[tuple[int, int, int]]]:
    """(title, abstract, the title's concept mentions as (concept, start, end) character spans: its entities)."""
    others = [
        c for c in range(SUB_FIRST_CONCEPT[sub], SUB_FIRST_CONCEPT[sub] + SUB_N_CONCEPTS[sub]) if c != concept
    ]
    # each filler gives (text, the concept it names or None); the draws are the same as without the concept
    fillers: dict[str, Callable[[], tuple[str, int | None]]] = {
        "c": lambda: (draw.pick(synonyms[concept]), concept),
        "c2": lambda: (lambda o: (draw.pick(synonyms[o]), o))(others[int(draw.uniform() * len(others))]),
        "who": lambda: (draw.pick(AUDIENCE_WORDS[category]), None),
        "person": lambda: (f"{draw.pick(FIRST_NAMES)} {draw.pick(LAST_NAMES)}", None),
        "place": lambda: (draw.pick(PLACES), None),
        "num": lambda: (str(3 + int(draw.uniform() * 23)), None),
    }

    def fill(template: str, offset: int = 0) -> tuple[str, list[tuple[int, int, int]]]:
        parts, spans, at, length = [], [], 0, offset
        for m in _SLOT.finditer(template):
            text, named = fillers[m.group(1)]()
            parts += [template[at : m.start()], text]
            length += m.start() - at
            if named is not None:
                spans.append((named, length, length + len(text)))
            length += len(text)
            at = m.end()
        # capitalising keeps every length, so the spans hold
        return _capitalise("".join(parts) + template[at:]), spans

    # retry templates until the title has a MIND-like length; four tries suffice in practice
    for _ in range(4):
        prefix = draw.pick(TONE_PREFIXES[tone])
        body, mentions = fill(draw.pick(TITLE_TEMPLATES), len(prefix))
        title = prefix + body
        if TITLE_WORDS[0] <= len(title.split()) <= TITLE_WORDS[1]:
            break
    if draw.uniform() < EMPTY_ABSTRACT_SHARE:
        return title, "", mentions
    n_sentences = 1 + (draw.uniform() < 0.5)
    return title, " ".join(fill(draw.pick(ABSTRACT_SENTENCES))[0] for _ in range(n_sentences)), mentions


def _capitalise(text: str) -> str:
    # leave brand-style words ("iPhones", "eBay") alone
    if len(text) > 1 and text[1].isupper():
        return text
    return text[:1].upper() + text[1:]
