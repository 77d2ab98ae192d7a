"""Data commands: `prepare`, `demo-data`, `stats`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def cmd_prepare(a: argparse.Namespace) -> None:
    from oncerec.api import prepare
    from oncerec.data.summary import protocol_lines, stats_lines

    ds = prepare(
        a.raw, out=a.out, format=a.format, overrides=a.overrides, strict=a.strict, progress=not a.quiet
    )
    print("\n".join([*stats_lines(ds.stats, ds.root), *protocol_lines(ds.stats)]))


def cmd_demo_data(a: argparse.Namespace) -> None:
    from oncerec.data.demo import write_demo_data

    summary = write_demo_data(
        Path(a.out), a.format, scale=a.scale, seed=a.seed, fresh=a.fresh, progress=not a.quiet
    )
    print(json.dumps(summary, indent=2))


def cmd_stats(a: argparse.Namespace) -> None:
    from oncerec.data.dataset import Dataset
    from oncerec.data.summary import stats_lines

    ds = Dataset(a.dataset)
    print("\n".join(stats_lines(ds.stats, ds.root)))


def _prepared_formats() -> list:
    """The formats `prepare` reads from a folder (the demo data is generated instead), from their table. Read
    only when `prepare` is parsed or its help shown: `oncerec --version` and `--help` import none of the
    readers' libraries."""
    from oncerec.data.formats import FORMATS

    return [f for f in FORMATS.values() if not f.generated]


class _PreparedFormats:
    """`prepare --format`'s choices, as argparse reads them (`in`, iteration)."""

    def __contains__(self, name: object) -> bool:
        return name in iter(self)

    def __iter__(self):
        return iter([f.name for f in _prepared_formats()])


class _PrepareHelp(argparse.HelpFormatter):
    """`prepare --help`: the raw folder's help says what each format reads."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = super()._get_help_string(action)
        if action.dest != "raw":
            return text
        reads = "; ".join(
            f"{f.name}: {f.about}" + (f", starting from the data preset {f.preset}" if f.preset else "")
            for f in _prepared_formats()
        )
        return f"{text}; by format: {reads}".replace("%", "%%")


def add_prepare(sub) -> None:
    s = sub.add_parser("prepare", help="raw data folder -> dataset directory", formatter_class=_PrepareHelp)
    s.add_argument("raw", help="raw data folder")  # + what each format reads (_PrepareHelp)
    s.add_argument(
        "--format",
        choices=_PreparedFormats(),
        metavar="FORMAT",  # argparse would read the choices to write the usage line
        default="mind",
        help="the raw data's format, one of %(choices)s (default: mind); each has data keys of its own "
        "(oncerec config show data.format=FORMAT)",
    )
    s.add_argument(
        "--out", help="dataset directory to create (default: <raw>-prepared beside the raw folder)"
    )
    s.add_argument("--strict", action="store_true", help="ids missing from every news file are an error")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.add_argument("overrides", nargs="*", help="data options, e.g. data.split=once data.history_len=30")
    s.set_defaults(func=cmd_prepare)


def add_demo_data(sub) -> None:
    s = sub.add_parser(
        "demo-data", help="write the built-in synthetic dataset in a raw format (MIND or Goodreads)"
    )
    s.add_argument("out")
    s.add_argument("--scale", default="small", choices=["tiny", "small", "medium", "large"])
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--format", choices=["mind", "goodreads"], default="mind")
    s.add_argument(
        "--fresh",
        type=float,
        default=0.0,
        help="share of the dev day's new items written with concept words no earlier item uses (0-1)",
    )
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_demo_data)


def add_stats(sub) -> None:
    s = sub.add_parser("stats", help="print the statistics of a prepared dataset")
    s.add_argument("dataset")
    s.set_defaults(func=cmd_stats)
