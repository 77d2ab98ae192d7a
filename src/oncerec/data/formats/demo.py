"""The built-in demo data as formats: `demo` (news, in MIND's format) and `demo-goodreads` (books, in
Goodreads' format, from the same world). Their raw folder is generated into the cache on first use
(`oncerec.data.demo`, `data.dataset.resolve_dataset`), then read as the format it is written in, with that
format's keys (demo-goodreads: the ONCE protocol's and Goodreads' own)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from oncerec.data.formats import goodreads, mind
from oncerec.data.formats.goodreads import GoodreadsConfig
from oncerec.data.formats.registry import DataConfig, Format, register


class DemoKeys(DataConfig):
    """The demo generator's keys (formats demo, demo-goodreads)."""

    writes: ClassVar[str]  # the raw format the generator writes: mind or goodreads
    demo_scale: Literal["tiny", "small", "medium", "large"] = Field(
        "small", description="Size of the generated demo data."
    )
    demo_seed: int = Field(0, description="Seed of the demo data generator.")
    demo_fresh: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Share of the demo's dev-day items written with concept words no earlier item uses (the "
        "second half of each concept's synonyms, which a pretrained language model knows and a word table "
        "learned from clicks cannot). 0: the generator's data as before.",
    )


class DemoConfig(DemoKeys):
    """Generated news in MIND's format."""

    writes = "mind"
    format: Literal["demo"] = "demo"


class DemoGoodreadsConfig(DemoKeys, GoodreadsConfig):
    """Generated books in Goodreads' format, prepared with the ONCE protocol."""

    writes = "goodreads"
    format: Literal["demo-goodreads"] = "demo-goodreads"


register(
    Format(
        "demo",
        DemoConfig,
        mind.mind_files,
        mind.MindSource,
        about="generated news (MIND's format)",
        generated=True,
    )
)
register(
    Format(
        "demo-goodreads",
        DemoGoodreadsConfig,
        goodreads.files,
        goodreads.open_goodreads,
        about="generated books (Goodreads' format)",
        domain="books",
        generated=True,
    )
)
