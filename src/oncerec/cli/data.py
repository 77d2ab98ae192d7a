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


def add_prepare(sub) -> None:
    s = sub.add_parser("prepare", help="raw data folder -> dataset directory")
    s.add_argument(
        "raw",
        help="raw data folder (MIND: train/, dev/, optional test/; xMIND: the MIND folder, with "
        "data.translations=<xMIND language folder>; PENS: news.tsv, train.tsv, valid.tsv; EB-NeRD: "
        "articles.parquet, train/, validation/, optional test/; Adressa: the event files, with the data preset "
        "adressa; Goodreads: the two .json.gz files; once-goodreads: ONCE's released Goodreads folder, with the "
        "data preset once-goodreads; generic: items + interactions files)",
    )
    s.add_argument(
        "--format",
        choices=["mind", "xmind", "pens", "ebnerd", "adressa", "goodreads", "once-goodreads", "generic"],
        default="mind",
    )
    s.add_argument(
        "--out", help="dataset directory to create (default: <raw>-prepared beside the raw folder)"
    )
    s.add_argument("--strict", action="store_true", help="ids missing from every news file are an error")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.add_argument("overrides", nargs="*", help="data options, e.g. data.split=once data.history_len=30")
    s.set_defaults(func=cmd_prepare)


def add_demo_data(sub) -> None:
    s = sub.add_parser("demo-data", help="write the built-in synthetic dataset in the raw MIND format")
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
