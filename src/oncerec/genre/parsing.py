"""Strict parsing of model answers.

An answer must hold one JSON object (a ```json fence and text around the object are tolerated, because
small models add them; whatever surrounds it is kept in the raw answer). The object must then match the
task's schema exactly: the required keys, no others, the right types and bounds. Anything else raises
`InvalidAnswer`, whose message is shown to the model when the request is retried, so it says plainly what
was wrong.
"""

from __future__ import annotations

import json
import re


class InvalidAnswer(ValueError):
    """An answer that cannot be used; the message is written for the model (it sees it in the retry)."""


def json_object_span(text: str) -> tuple[int, int] | None:
    """(start, end) of the first complete top-level `{...}` in text, braces inside strings ignored; None
    when no object has been closed yet (also used to stop local generation as soon as the object closes)."""
    start = text.find("{")
    if start < 0:
        return None
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(text)):
        c = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return start, i + 1
    return None


def extract_object(text: str) -> dict:
    """The first JSON object of an answer."""
    span = json_object_span(text)
    if span is None:
        if "{" in text:
            raise InvalidAnswer("the JSON object is not closed (missing `}`)")
        raise InvalidAnswer("the answer holds no JSON object")
    if _PLACEHOLDER.search(text[span[0] : span[1]]):
        raise InvalidAnswer(
            "the answer repeats the placeholders of the format (such as <title>): write actual values instead"
        )
    try:
        value = json.loads(text[span[0] : span[1]])
    except json.JSONDecodeError as e:
        raise InvalidAnswer(f"the JSON object does not parse: {e.msg} (character {e.pos})") from None
    return value


def exact_keys(obj: dict, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    missing = [k for k in required if k not in obj]
    extra = [k for k in obj if k not in required and k not in optional]
    if missing or extra:
        allowed = ", ".join(f'"{k}"' for k in (*required, *optional))
        problems = []
        if missing:
            problems.append("missing " + ", ".join(f'"{k}"' for k in missing))
        if extra:
            problems.append("unexpected " + ", ".join(f'"{k}"' for k in extra))
        raise InvalidAnswer(f"{'; '.join(problems)} (the object must have exactly the keys {allowed})")


def text_value(obj: dict, key: str, min_words: int, max_words: int, one_line: bool = True) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise InvalidAnswer(f'"{key}" must be a string, got {type(value).__name__}')
    value = value.strip()
    if one_line and "\n" in value:
        raise InvalidAnswer(f'"{key}" must be one line')
    n = len(value.split())
    if n < min_words or n > max_words:
        raise InvalidAnswer(f'"{key}" must have {min_words} to {max_words} words, it has {n}')
    if _PLACEHOLDER.search(value):
        raise InvalidAnswer(f'"{key}" still holds a placeholder such as <title>: write the actual text')
    return value


def string_list(obj: dict, key: str, min_len: int, max_len: int) -> list[str]:
    value = obj[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidAnswer(f'"{key}" must be a list of strings')
    out: list[str] = []
    for v in value:
        v = " ".join(v.split())
        if _PLACEHOLDER.search(v):
            raise InvalidAnswer(f'"{key}" still holds a placeholder such as <topic>: write actual values')
        if v and v.lower() not in (x.lower() for x in out):
            out.append(v)
    if len(out) < min_len or len(out) > max_len:
        raise InvalidAnswer(f'"{key}" must hold {min_len} to {max_len} distinct entries, it holds {len(out)}')
    return out


def choose(value: str, options: dict[str, str], what: str) -> str:
    """The canonical option matching `value` (case and spacing ignored)."""
    canonical = options.get(normalize(value))
    if canonical is None:
        shown = ", ".join(list(options.values())[:40])
        raise InvalidAnswer(f"{what} `{value}` is not one of the allowed values: {shown}")
    return canonical


def normalize(value: str) -> str:
    return " ".join(value.lower().replace("_", " ").split())


_PLACEHOLDER = re.compile(r"<[a-z ]+>")
