"""The `oncerec` command: one entry point, one sub-command per job."""

from __future__ import annotations

import argparse
import sys

from oncerec.cli import config, data, dire, experiment, genre, serve, train
from oncerec.errors import OncerecError
from oncerec.logs import printed

# The sub-commands in the order `oncerec --help` lists them; each module of this package holds a group's
# commands, each a thin call of the library (they import it when they run: the parser itself stays cheap).
COMMANDS = [
    data.add_prepare,
    data.add_demo_data,
    train.add_train,
    train.add_demo,
    train.add_evaluate,
    train.add_score,
    experiment.add_experiment,
    train.add_compare,
    train.add_recommend,
    serve.add_export,
    serve.add_serve,
    dire.add_dire,
    genre.add_genre,
    config.add_config,
    config.add_presets,
    data.add_stats,
]


def build_parser() -> argparse.ArgumentParser:
    from oncerec import __version__

    p = argparse.ArgumentParser(prog="oncerec", description=__doc__)
    p.add_argument("--version", action="version", version=f"oncerec {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `key=value` overrides may come before or after options such as --quiet.
    if hasattr(args, "overrides") and all("=" in x and not x.startswith("-") for x in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        with printed():  # what the library reports on the way: a plain line each on stdout
            args.func(args)
    except OncerecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
