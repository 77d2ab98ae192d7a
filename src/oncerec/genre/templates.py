"""Prompt templates: editable text files, one per task and domain (`<task>-<domain>.txt`), each with a version.

File format:

    version: summarize-news-v1        <- first line; part of every stored answer's key
    # comment lines
    [system]
    ...                               <- the system message
    [user]
    Title: $title                     <- the user message; $name / ${name} are filled in ($$ is a dollar)
    [prefix]
    {"title": "                       <- optional: the local backend starts its answer with this text
    [retry]
    ... $error ...                    <- optional: the message sent after an unusable answer

The version names the prompt's meaning: bump it whenever you change a template, so answers to the old
prompt are not reused for the new one (a changed file with the same version is reported as a warning).
`--prompts DIR` reads the templates from DIR instead (copy `oncerec/genre/prompts/` and edit it).
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from oncerec.errors import OncerecError

SECTIONS = ("system", "user", "prefix", "retry")
DEFAULT_RETRY = (
    "Your previous answer could not be used: $error. Answer again with only the JSON object described "
    "above, and nothing else."
)


@dataclass(frozen=True)
class Template:
    name: str
    version: str
    system: str
    user: str
    prefix: str
    retry: str
    digest: str  # hash of the file's text: tells an edited template apart from the packaged one

    def messages(self, values: dict[str, str]) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": _fill(self.system, values, self.name)},
            {"role": "user", "content": _fill(self.user, values, self.name)},
        ]

    def retry_message(self, error: str) -> dict[str, str]:
        return {"role": "user", "content": string.Template(self.retry).safe_substitute(error=error)}


def _fill(text: str, values: dict[str, str], name: str) -> str:
    try:
        return string.Template(text).substitute(values)
    except KeyError as e:
        raise OncerecError(
            f"prompt template {name}: unknown variable ${e.args[0]}; this task fills "
            f"{', '.join('$' + k for k in values)}"
        ) from None


def packaged_dir():
    return resources.files("oncerec.genre") / "prompts"


def load_template(name: str, folder: str | Path | None = None) -> Template:
    """The template `<name>.txt` from `folder` if given and present there, else the packaged one."""
    path = Path(folder) / f"{name}.txt" if folder else None
    source = path if path is not None and path.is_file() else packaged_dir() / f"{name}.txt"
    try:
        text = source.read_text(encoding="utf-8-sig")  # -sig: an editor's byte-order mark is dropped
    except FileNotFoundError:
        raise OncerecError(f"no prompt template `{name}.txt` (packaged or in {folder})") from None
    return parse_template(name, text)


def parse_template(name: str, text: str) -> Template:
    lines = text.splitlines()
    if not lines or not lines[0].startswith("version:") or not lines[0].split(":", 1)[1].strip():
        raise OncerecError(f"prompt template {name}: the first line must be `version: <name-of-version>`")
    version = lines[0].split(":", 1)[1].strip()
    parts: dict[str, list[str]] = {}
    current = None
    for line in lines[1:]:
        header = line.strip()
        if header.startswith("[") and header.endswith("]") and header[1:-1] in SECTIONS:
            current = header[1:-1]
            parts[current] = []
        elif current is not None:
            parts[current].append(line)
        elif header and not header.startswith("#"):
            raise OncerecError(f"prompt template {name}: text before the first [section]: {line!r}")
    for needed in ("system", "user"):
        if needed not in parts:
            raise OncerecError(f"prompt template {name}: no [{needed}] section")
    body = {k: "\n".join(v).strip("\n") for k, v in parts.items()}
    return Template(
        name=name,
        version=version,
        system=body["system"],
        user=body["user"],
        prefix=body.get("prefix", ""),
        retry=body.get("retry") or DEFAULT_RETRY,
        digest=hashlib.sha256(text.encode()).hexdigest()[:16],
    )


def load_list(name: str, folder: str | Path | None = None) -> list[str]:
    """A list file (one entry a line, `#` comments), e.g. `topics.txt`: packaged, or from `folder`."""
    path = Path(folder) / name if folder else None
    source = path if path is not None and path.is_file() else packaged_dir() / name
    entries = [ln.strip() for ln in source.read_text(encoding="utf-8-sig").splitlines()]
    return [e for e in entries if e and not e.startswith("#")]
