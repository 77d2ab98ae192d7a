"""Raw data formats: one module each, registering its config, files and reader in `registry.FORMATS`.
Adding a format is one module here and its import below (see the Development page); the imports' order is the
table's (messages, `prepare --help`, the configuration reference)."""

# isort: off
from oncerec.data.formats import mind, xmind, pens, ebnerd  # noqa: F401  (each module registers its format)
from oncerec.data.formats import goodreads, once_goodreads, adressa, generic, demo  # noqa: F401

# isort: on
from oncerec.data.formats.registry import FORMATS, DataConfig, Format, format_of, register

__all__ = ["FORMATS", "DataConfig", "Format", "format_of", "register"]
