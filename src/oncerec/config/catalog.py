"""The packaged presets as files: their names and the comment at the top of each. Plain file reading (no
schema), so that the command line can list them in its help at no cost."""

from __future__ import annotations

from importlib import resources

# the preset folders: the four configuration groups, and the specs of `oncerec experiment`
PRESET_GROUPS = ("data", "model", "embed", "exp", "experiment")


def preset_names(group: str) -> list[str]:
    folder = resources.files("oncerec.config") / "presets" / group
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def preset_description(group: str, name: str) -> str:
    """A packaged preset's leading comment, as one line (every preset file starts with one)."""
    path = resources.files("oncerec.config") / "presets" / group / f"{name}.yaml"
    return leading_comment(path.read_text(encoding="utf-8"))


def leading_comment(text: str) -> str:
    """The comment block at the top of a YAML file, as one paragraph."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(part for part in lines if part)


def first_sentence(text: str) -> str:
    """Up to the first full stop outside brackets (`(the user, e.g. U1. ...)` does not end it)."""
    depth = 0
    for i, ch in enumerate(text):
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(ch, 0)
        if ch == "." and depth == 0 and text[i + 1 : i + 2] in ("", " "):
            return text[:i]
    return text
