"""`experiment`: a grid of trainings (a spec) and one results table."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_experiment(a: argparse.Namespace) -> None:
    from oncerec.experiment import load_spec, run_experiment

    source = Path(a.source) if a.source else None
    spec = load_spec(a.spec).subset(a.rows, a.seeds)
    table = run_experiment(spec, Path(a.out), a.overrides, quiet=not a.verbose, source=source)
    print(table.read_text())
    print(f"table: {table} (and results.csv beside it)")


def add_experiment(sub) -> None:
    s = sub.add_parser("experiment", help="run a grid of trainings (a spec) and write one results table")
    s.add_argument("spec", help="a packaged spec name (e.g. once-demo) or a YAML file")
    s.add_argument("--out", default="runs/experiments")
    s.add_argument("--source", help="the data folder a spec reads (e.g. ONCE's release for once-goodreads)")
    s.add_argument(
        "--rows",
        default="",
        metavar="PATTERN",
        help="only the rows matching these shell patterns, comma-separated (e.g. 'nrms/*' or 'naml/word,naml/dire')",
    )
    s.add_argument("--seeds", type=int, metavar="N", help="only the first N of the spec's seeds")
    s.add_argument("--verbose", action="store_true", help="show each run's output")
    s.add_argument("overrides", nargs="*", help="appended to every run, e.g. exp.epochs=1")
    s.set_defaults(func=cmd_experiment)
