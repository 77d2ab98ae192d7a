"""The table of raw data formats, and the `data` group's keys: those every format shares (`DataConfig`) and,
per format, its own (a subclass of it, which `data.format` picks).

A format is one module of this package that defines its config, finds its files, reads them as a `Source`, and
registers the three with `register(Format(...))`; the package's `__init__` imports each module. `prepare`, the
dataset cache, the command line (`prepare --format`), the schema's check of `data.format` and the
configuration reference read this table and nothing else.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

if TYPE_CHECKING:
    from oncerec.data.formats.source import Source

# item columns a data.prompt template may name
PROMPT_FIELDS = ("title", "abstract", "category", "subcategory")


class DataConfig(BaseModel):
    """The keys every data format has. `data.format` picks the format, whose config adds its own keys (the
    sections below); a key of another format is an error naming the format and its keys."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str = Field("data", description="Short name used in run directory names.")
    source: str = Field(
        "",
        description="Raw data folder (in the format `format` names) or prepared dataset directory. Empty with "
        "a demo format: the demo data is generated into the cache.",
    )
    format: str = Field(
        "mind",
        description="Raw format of `source`: one of the registered data formats (listed with what each reads in "
        "the configuration reference's Data formats; see the Data page), which brings its own keys.",
    )
    split: Literal["mind", "once"] = Field(
        "mind",
        description="`mind`: MIND's own train/dev/test folders are train/valid/test. `once`: the official dev "
        "impressions are split 50/50 into valid and test, by ONCE's published list (`split_list`) or, "
        "without one, shuffled with `split_seed`.",
    )
    split_seed: int = Field(2023, description="Seed of the ONCE valid/test split when it has no list.")
    split_list: str = Field(
        "",
        description="`split=once`: a JSON list of the dev impression ids in ONCE's order (ONCE's "
        "`mind_imp_list.json`): the first half is valid, the second half test; every dev impression must be "
        "listed and every listed one in dev. Empty: ONCE's own list of MIND-small, shipped with oncerec, when "
        "the dev impressions are exactly its ids (real MIND-small), else the halving by `split_seed`. `once`: "
        "that packaged list, required to match. `none`: the halving by `split_seed` always. Else: a file.",
    )
    text_fields: list[str] = Field(
        default_factory=lambda: ["title", "abstract"], description="Item text fields to tokenize."
    )
    max_lengths: dict[str, int] = Field(
        default_factory=lambda: {"title": 30, "abstract": 60},
        description="Max tokens kept per text field (the start is kept). Fields not listed use 64.",
    )
    tokenizers: list[str] = Field(
        default_factory=lambda: ["word"],
        description="Tokenizers to store token ids for: `word` (vocabulary built on the training split), "
        "or a local Hugging Face tokenizer folder / packaged model name (e.g. `minilm`).",
    )
    lowercase: bool = Field(True, description="Lowercase words before the word tokenizer.")
    min_word_count: int = Field(1, ge=1, description="Words seen fewer times in training items map to <unk>.")
    prompt: str = Field(
        "news article: title: {title} abstract: {abstract} category: {category}",
        description="Text of the `prompt` field (what language-model item encoders read): item fields in "
        "{braces} (title, abstract, category, subcategory) joined by short natural prompts. Prepared like any "
        "text field when `prompt` is in text_fields (added automatically for `model.item=lm`).",
    )
    history_len: int = Field(50, ge=1, description="Most recent clicks kept per history.")
    strict: bool = Field(False, description="Treat ids missing from every news file as an error.")

    def __init__(self, **values: Any):
        if type(self) is DataConfig:  # pydantic cannot make __init__ return the format's class
            raise TypeError(
                "DataConfig holds the keys every format shares: use DataConfig.model_validate({...}), which "
                "returns the config of the format its `format` names, or that format's class"
            )
        super().__init__(**values)

    @model_validator(mode="wrap")
    @classmethod
    def _as_its_format(cls, values: Any, handler: Callable) -> DataConfig:
        """Validated as `DataConfig` (the `data` group, `DataConfig.model_validate`), a mapping becomes the
        config of the format it names; a format's own class validates as usual."""
        if cls is not DataConfig or not isinstance(values, dict):
            return handler(values)
        name = values.get("format", "mind")
        if name not in FORMATS:
            error = PydanticCustomError(
                "unknown_format",
                "unknown format `{name}`; formats: {formats}",
                {"name": name, "formats": ", ".join(FORMATS)},
            )
            raise ValidationError.from_exception_data(
                cls.__name__, [InitErrorDetails(type=error, loc=("format",), input=name)]
            )
        return FORMATS[name].config.model_validate(values)

    @model_validator(mode="after")
    def _split_list_needs_once(self) -> DataConfig:
        if self.split_list not in ("", "none") and self.split != "once":
            raise ValueError("data.split_list is ONCE's valid/test list: it needs data.split=once")
        return self

    @field_validator("prompt")
    @classmethod
    def _known_prompt_fields(cls, template: str) -> str:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
        bad = [n for n in names if n not in PROMPT_FIELDS]
        if bad:
            raise ValueError(
                f"unknown field {{{bad[0]}}}; valid: {', '.join('{' + f + '}' for f in PROMPT_FIELDS)}"
            )
        return template


@dataclass(frozen=True)
class Format:
    """A raw data format: its name (`data.format`), its config, its files and its reader."""

    name: str
    config: type[DataConfig]  # DataConfig's keys and the format's own, with `format: Literal[name]`
    # the raw files under `data.source` that preparation reads, found (and checked present) without reading
    # them: their content hash keys the dataset cache
    files: Callable[[Path, DataConfig], list[Path]]
    # the reader: the raw data as splits of items and impressions (progress: show progress bars)
    open: Callable[[Path, DataConfig, bool], Source]
    about: str  # what `data.source` holds, in a few words (`oncerec prepare --help`)
    domain: str = "news"  # or "books": dataset.json's `domain`, what GENRE's prompts speak of
    preset: str = ""  # the data preset `oncerec prepare --format NAME` starts from, if any
    generated: bool = False  # the demo data: generated into the cache, not a folder to prepare


FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    """Add a format to the table (a format module calls it once, at import)."""
    if fmt.name in FORMATS:
        raise ValueError(f"data format `{fmt.name}` is registered twice")
    declared = fmt.config.model_fields["format"].annotation
    if getattr(declared, "__args__", None) != (fmt.name,):
        raise TypeError(f"{fmt.config.__name__}.format must be Literal[{fmt.name!r}], the format's name")
    FORMATS[fmt.name] = fmt
    return fmt


def format_of(cfg: DataConfig) -> Format:
    return FORMATS[cfg.format]


def saved_data_config(values: dict) -> dict:
    """The `data` keys of a config saved by an older oncerec (a run's config.yaml), whose one DataConfig held
    every format's keys: `format: demo` with `demo_format: goodreads` is today's `demo-goodreads`, and the keys
    of other formats, which this format never read, are dropped. Today's configs pass unchanged."""
    values = dict(values)
    if values.pop("demo_format", "mind") == "goodreads" and values.get("format") == "demo":
        values["format"] = "demo-goodreads"
    fmt = FORMATS.get(values.get("format", "mind"))
    if fmt is None:
        return values  # the schema names the unknown format
    foreign = {k for f in FORMATS.values() for k in f.config.model_fields} - fmt.config.model_fields.keys()
    return {k: v for k, v in values.items() if k not in foreign}


def unknown_key(values: dict, key: str) -> str:
    """The error line of a `data` key the chosen format does not have, with the formats that do."""
    name = values.get("format", "mind")
    own = FORMATS[name].config.model_fields if name in FORMATS else DataConfig.model_fields
    line = f"unknown key `data.{key}` for data.format={name}; valid keys: {', '.join(own)}"
    owners = [f.name for f in FORMATS.values() if key in f.config.model_fields]
    if owners:
        line += f" (`{key}` is a key of data.format={', '.join(owners)})"
    return line


def data_keys() -> dict[str, Any]:
    """Every `data` key of every format, with its field (`FieldInfo`): a key has one type wherever it is."""
    return {k: f for fmt in FORMATS.values() for k, f in fmt.config.model_fields.items()}
