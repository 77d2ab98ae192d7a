"""GENRE commands: `genre run`, `genre merge`, `genre import`, `genre export`."""

from __future__ import annotations

import argparse
import json


def cmd_genre_run(a: argparse.Namespace) -> None:
    """GENRE: ask an LLM for summaries, user profiles or items; every answer goes into the response store."""
    from oncerec.genre.options import RunOptions
    from oncerec.genre.runner import run_task

    opts = RunOptions.from_args(a)
    for summary in run_task(a.task, a.data, opts, progress=not a.quiet):
        print("\n".join(summary.lines(opts.price_in, opts.price_out)))


def cmd_genre_merge(a: argparse.Namespace) -> None:
    from oncerec.genre.merge import merge

    tasks = tuple(t.strip() for t in a.tasks.split(",") if t.strip())
    report = merge(a.data, a.store or None, a.out, model=a.model or None, tasks=tasks, prompt=a.prompt)
    print(json.dumps(report, indent=2))


def cmd_genre_import(a: argparse.Namespace) -> None:
    """GENRE: answers made elsewhere (ONCE's released logs, a batch API's output) into the response store."""
    from oncerec.genre.importer import ImportOptions, import_answers

    opts = ImportOptions(
        task=a.task,
        log=a.log,
        fmt=a.format,
        vocab=a.vocab,
        domain=a.domain,
        store=a.store,
        model=a.model,
        skip_bad=a.skip_bad,
        allow_unknown_ids=a.allow_unknown_ids,
    )
    print("\n".join(import_answers(a.data, opts, progress=not a.quiet).report()))


def cmd_genre_export(a: argparse.Namespace) -> None:
    from oncerec.genre.store import Store

    store = Store(a.store, readonly=True)
    try:
        print(f"wrote {store.export_jsonl(a.out):,} records to {a.out}")
    finally:
        store.close()


def add_genre(sub) -> None:
    from oncerec.genre.options import add_run_arguments  # argparse and dataclasses only: cheap

    s = sub.add_parser("genre", help="GENRE: LLM-generated summaries, user profiles and items")
    genre = s.add_subparsers(dest="genre_command", required=True)
    s = genre.add_parser(
        "run",
        help="ask an OpenAI-compatible endpoint or a local model; answers go into the response store",
        description="oncerec genre run <summarize|profile|generate> --data DIR [--backend openai|local] "
        "[--base-url URL] [--model NAME] [--concurrency N] [--timeout S] [--max-retries N] [--store FILE] "
        "[--limit N] [--dry-run]; the API key is read from $OPENAI_API_KEY (or --api-key-env)",
    )
    add_run_arguments(s)
    s.set_defaults(func=cmd_genre_run)
    s = genre.add_parser("merge", help="a new dataset directory with the store's generated data")
    s.add_argument("--data", required=True, help="the source dataset (never modified)")
    s.add_argument("--store", default="", help="response store (default: <dataset>/genre.sqlite)")
    s.add_argument("--out", required=True, help="the new dataset directory")
    s.add_argument("--model", default="", help="only answers of this model (default: the latest of any)")
    s.add_argument("--tasks", default="summarize,profile,generate", help="which answers to merge")
    s.add_argument(
        "--prompt",
        help="render every item's `prompt` field (what DIRE reads) again from this template, which may name "
        "{summary}: e.g. 'book title: {title} description: {summary}'",
    )
    s.set_defaults(func=cmd_genre_merge)
    s = genre.add_parser(
        "import",
        help="answers made elsewhere (ONCE's released logs, JSON lines) into the response store",
        description="oncerec genre import --data DIR --format once|jsonl --task summarize|profile|generate "
        "--log FILE [--vocab tok.uid.dat] [--domain news|books] [--store FILE] [--model NAME] [--skip-bad] "
        "[--allow-unknown-ids]; "
        "every answer is validated as a live one; `genre merge` then uses them as it uses live answers",
    )
    s.add_argument("--data", required=True, help="the dataset the answers are about (as for `genre run`)")
    s.add_argument("--format", choices=["once", "jsonl"], default="once", help="once: ONCE's released logs")
    s.add_argument("--task", required=True, choices=["summarize", "profile", "generate"])
    s.add_argument("--log", required=True, help="the file to import, e.g. user_profiler.log")
    s.add_argument(
        "--vocab", default="", help="integer ids are 0-based line numbers of this file (tok.uid.dat)"
    )
    s.add_argument("--domain", choices=["news", "books"], default="", help="default: the dataset's")
    s.add_argument("--store", default="", help="response store (default: <dataset>/genre.sqlite)")
    s.add_argument("--model", default="", help="the model that wrote the answers (default: gpt-3.5-turbo)")
    s.add_argument("--skip-bad", action="store_true", help="store malformed lines as invalid and go on")
    s.add_argument(
        "--allow-unknown-ids",
        action="store_true",
        help="import a log most of whose ids the dataset lacks (one about a larger dataset): the known ones",
    )
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_genre_import)
    s = genre.add_parser("export", help="every stored record as JSON lines")
    s.add_argument("--store", required=True)
    s.add_argument("--out", required=True, help="FILE.jsonl")
    s.set_defaults(func=cmd_genre_export)
