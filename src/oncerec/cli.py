"""The `oncerec` command: one entry point, one sub-command per job."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from oncerec.errors import OncerecError


def _print_stats(stats: dict, out: Path) -> None:
    print(f"dataset: {out}")
    print(f"items {stats['items']:,}  users {stats['users']:,}  distinct histories {stats['histories']:,}")
    print(f"{'split':<8}{'impressions':>12}{'rows':>12}{'clicks':>10}{'users':>10}{'empty hist':>11}")
    for name, s in stats["splits"].items():
        print(
            f"{name:<8}{s['impressions']:>12,}{s['rows']:>12,}{s['clicks']:>10,}{s['users']:>10,}"
            f"{s['empty_histories']:>11,}"
        )
    print("vocab: " + ", ".join(f"{k} {v:,}" for k, v in stats["vocab"].items()))
    for tok, fields in stats["token_lengths"].items():
        for field, p in fields.items():
            if p:
                print(
                    f"tokens[{tok}.{field}]: p50 {p['p50']:.0f}  p90 {p['p90']:.0f}  p99 {p['p99']:.0f}  "
                    f"max {p['max']}  truncated at {p['max_len']}: {p['truncated']:,}"
                )
    if "prepare" in stats:
        p = stats["prepare"]
        print(
            f"prepared in {p['seconds']} s ({p['lines_per_s']:,} lines/s), peak memory {p['peak_rss_mb']:,} MiB"
        )


def cmd_prepare(a: argparse.Namespace) -> None:
    from oncerec.api import prepare

    ds = prepare(
        a.raw, out=a.out, format=a.format, overrides=a.overrides, strict=a.strict, progress=not a.quiet
    )
    stats = ds.stats
    _print_stats(stats, ds.root)
    if "once_goodreads" in stats:
        p = stats["once_goodreads"]
        print(
            f"users: {p['users_with_history']:,} with a history, {p['users_dropped_one_book']:,} with one book "
            f"(no group); cold users (1-5 books): {p['cold_users_in_dataset']:,} of {p['cold_users_in_release']:,} "
            f"in the dataset ({p['cold_users_select_with']})"
        )


def cmd_demo_data(a: argparse.Namespace) -> None:
    import tempfile

    from oncerec.data.demo import write_demo_mind
    from oncerec.data.formats.goodreads import write_demo_goodreads
    from oncerec.paths import check_new_dir

    out = Path(a.out)
    if a.format == "mind":
        summary = write_demo_mind(out, scale=a.scale, seed=a.seed, progress=not a.quiet, fresh=a.fresh)
    else:
        check_new_dir(out, "OUT")
        with tempfile.TemporaryDirectory() as tmp:
            news = write_demo_mind(
                Path(tmp) / "mind", scale=a.scale, seed=a.seed, progress=not a.quiet, fresh=a.fresh
            )
            summary = write_demo_goodreads(out, Path(tmp) / "mind", a.seed) | {"news_world": news["dev"]}
    print(json.dumps(summary, indent=2))


def cmd_stats(a: argparse.Namespace) -> None:
    from oncerec.data.dataset import Dataset

    ds = Dataset(a.dataset)
    _print_stats(ds.stats, ds.root)


def _print_metrics(metrics: dict, names: list[str]) -> None:
    """{split: metrics} of a run that chose `names` (exp.metrics), as an aligned Markdown table."""
    from oncerec.eval.tables import metric_table

    table, _ = metric_table(["split"], [([split], [m]) for split, m in metrics.items()], [names])
    print(table.markdown(pad=True))


def cmd_train(a: argparse.Namespace) -> None:
    from oncerec.api import make_config, train_config

    cfg = make_config(overrides=a.overrides)
    run = train_config(cfg, progress=not a.quiet)
    if run.metrics:
        _print_metrics(run.metrics, cfg.exp.metrics)
        print(f"run: {run.run_dir}")


def cmd_demo(a: argparse.Namespace) -> None:
    """The main job: train a model on the built-in data and compare it with popularity and the oracle."""
    from oncerec.config.loader import build_config
    from oncerec.data.dataset import Dataset
    from oncerec.eval.metrics import table_metrics
    from oncerec.eval.slices import split_metrics
    from oncerec.eval.tables import metric_table
    from oncerec.training.baselines import oracle_scores, popularity_scores
    from oncerec.training.trainer import Trainer

    # Compact sizes so that the main job trains in a few minutes on 2 CPU cores: model-wide sizes, which every
    # component that has such a size reads (a model without attention heads, NAML, has no use for num_heads).
    compact = [
        "model.hidden_size=64",
        "model.num_heads=4",
        "model.attention_hidden=64",
        "model.category_dim=32",
        "embed.dim=64",
    ]
    cfg = build_config([f"data=demo-{a.scale}", f"model={a.model}", "exp=demo", *compact, *a.overrides])
    trainer = Trainer(cfg, progress=not a.quiet)
    metrics = trainer.fit()
    ds: Dataset = trainer.dataset
    test = ds.split("test")
    rows = {
        "oracle (true click probability)": oracle_scores(ds, test),
        "popularity (train clicks)": popularity_scores(ds, test),
    }
    runs = {cfg.model.name: metrics["test"]}
    runs.update({name: split_metrics(test, s, exp=cfg.exp) for name, s in rows.items() if s is not None})
    table, _ = metric_table(["model"], [([name], [m]) for name, m in runs.items()], [cfg.exp.metrics])
    print(f"\ntest split of demo-{a.scale}: {test.num_impressions:,} impressions")
    print(table.markdown(pad=True))
    oracle = runs.get("oracle (true click probability)")
    if oracle and "auc" in table_metrics(cfg.exp.metrics):
        gap = (metrics["test"]["auc"] - 0.5) / (oracle["auc"] - 0.5)
        print(f"\n{cfg.model.name} closes {gap:.1%} of the AUC gap between random (0.5) and the oracle.")
    print(f"run directory: {trainer.run_dir}")
    print(next_steps(trainer.run_dir, *_user_with_history(ds)))


def _user_with_history(ds) -> tuple[str, list[str]]:
    """A user of the test split with clicks in their history, and those clicks' item ids: an example whose
    recommendations mean something."""
    import numpy as np

    test = ds.split("test")
    items, lengths, _ = ds.histories
    rows = np.flatnonzero(lengths[np.asarray(test.history)] > 0)
    if not len(rows):
        return "", []
    row = int(test.history[rows[0]])
    ids = ds.items_table.column("id").to_pylist()
    return ds.vocab("user")[int(test.user[rows[0]])], [ids[i] for i in items[row, : lengths[row]]]


def next_steps(run_dir: Path, user: str, history: list[str]) -> str:
    """The commands to try after the demo, on its run."""
    run, export = str(run_dir), f"exports/{Path(run_dir).name}"
    body = json.dumps({"history": history[-3:], "k": 5})
    lines = [
        f"oncerec evaluate {run} --split valid test",
        f"oncerec recommend {run} --user {user} --top-k 5" if user else "",
        f"oncerec export {run} --out {export}",
        f"oncerec serve {export} --port 8000 &",
        f"curl -s localhost:8000/recommend -d '{body}'",
        "oncerec presets model   # then e.g. oncerec demo --model naml",
    ]
    return "\nnext:\n" + "\n".join(f"  {line}" for line in lines if line)


def cmd_evaluate(a: argparse.Namespace) -> None:
    from oncerec.api import load_run
    from oncerec.eval.metrics import metrics_json

    run = load_run(a.run_dir, data=a.data)
    metrics = {}
    for split in a.split:
        # the flag alone (an empty list): the default full-ranking metrics; no flag (None): the run's own
        m = run.evaluate(split, full_ranking=a.full_ranking, write=a.write)
        if m:
            metrics[split] = m
    print(metrics_json(metrics))


def cmd_score(a: argparse.Namespace) -> None:
    from oncerec.eval.leaderboard import score_files
    from oncerec.eval.metrics import metrics_json

    print(metrics_json(score_files(Path(a.prediction), Path(a.truth))))


def cmd_compare(a: argparse.Namespace) -> None:
    """One Markdown table of the saved metrics of several runs (e.g. a model with and without DIRE)."""
    from oncerec.config.loader import load_saved_config
    from oncerec.eval.metrics import read_metrics
    from oncerec.eval.tables import metric_table

    rows, choices = [], []
    for run in map(Path, a.run_dirs):
        metrics_file, config_file = run / "metrics.json", run / "config.yaml"
        if not metrics_file.is_file() or not config_file.is_file():
            raise OncerecError(f"{run}: not a finished run (no metrics.json / config.yaml)")
        cfg = load_saved_config(config_file)
        m = read_metrics(metrics_file).get(a.split)
        if m is None:
            raise OncerecError(f"{metrics_file}: no `{a.split}` metrics (split without labels?)")
        model, lm = cfg.model, cfg.model.item.name == "lm"  # the language model and its layer, or a dash
        item = model.item.name + (f" ({model.item.lm})" if lm else "")
        rows.append(([run.name, model.name, item, str(model.item.layer) if lm else "—"], [m]))
        choices.append(cfg.exp.metrics)
    table, _ = metric_table(["run", "model", "item", "layer"], rows, choices)
    print(f"`{a.split}` split of {len(rows)} runs\n")
    print(table.markdown())


def cmd_experiment(a: argparse.Namespace) -> None:
    from oncerec.experiment import load_spec, run_experiment

    source = Path(a.source) if a.source else None
    spec = load_spec(a.spec).subset(a.rows, a.seeds)
    table = run_experiment(spec, Path(a.out), a.overrides, quiet=not a.verbose, source=source)
    print(table.read_text())
    print(f"table: {table} (and results.csv beside it)")


def cmd_recommend(a: argparse.Namespace) -> None:
    from oncerec.api import load_run

    run = load_run(a.run_dir, data=a.data)
    history = [h.strip() for h in a.history.split(",")] if a.history else None
    for rank, (item_id, score, title) in enumerate(
        run.recommend(a.user, history, a.top_k, exclude_history=not a.include_history), 1
    ):
        print(f"{rank:>3}. {score:8.4f}  {item_id}  {title}")


def cmd_export(a: argparse.Namespace) -> None:
    """A trained run as a folder a service loads without the training data: item vectors, weights, index."""
    from oncerec.api import load_run
    from oncerec.serve import require_packages

    require_packages()
    manifest = load_run(a.run_dir, data=a.data).export(
        a.out, index=a.index, dtype=a.dtype, ef_search=a.ef_search, nprobe=a.nprobe, progress=not a.quiet
    )
    index, search = manifest["index"]["kind"], manifest["index"]["search"]
    print(
        f"export: {a.out}: {manifest['items']:,} items x {manifest['dim']} ({manifest['dtype']}), {index} index"
        + "".join(f", {k.replace('_', ' ')} {v}" for k, v in search.items())
        + f"; ranking: {manifest['ranking'].replace('_', ' ')}"
    )


def cmd_serve(a: argparse.Namespace) -> None:
    from oncerec.serve import require_packages

    require_packages()
    from oncerec.serve.app import serve
    from oncerec.serve.export import export_for

    if a.workers < 1:
        raise OncerecError(f"--workers {a.workers}: give at least 1")
    if not 0 <= a.port <= 65535:
        raise OncerecError(f"--port {a.port}: give a port from 1 to 65535 (0: any free port)")
    if a.max_body_bytes < 1:
        raise OncerecError(f"--max-body-bytes {a.max_body_bytes}: give at least 1")
    serve(
        export_for(Path(a.path)),
        host=a.host,
        port=a.port,
        workers=a.workers,
        persist=a.persist,
        candidates=a.candidates,
        max_body=a.max_body_bytes,
        added_dir=Path(a.added_dir) if a.added_dir else None,
    )


def cmd_dire_cache(a: argparse.Namespace) -> None:
    """Run a language model's frozen layers once over every item and keep their states (DIRE)."""
    from oncerec.config.loader import build_config
    from oncerec.data.dataset import Dataset, resolve_dataset
    from oncerec.dire.cache import build_cache, cache_dir

    cfg = build_config(a.overrides)
    if cfg.model.item.name != "lm":
        raise OncerecError(
            f"model.item={cfg.model.item.name}: `dire cache` needs a language-model item encoder (item=lm)"
        )
    dataset = Dataset(resolve_dataset(cfg.data, progress=not a.quiet))
    cache = build_cache(
        dataset, cfg.model, batch_size=a.batch_size, progress=not a.quiet, shard_size=a.shard_size
    )
    m = cache.manifest
    n, width, dim = m["shape"]
    per_item = sum((cache.folder / f"layer-{k}.npy").stat().st_size for k in m["layers"]) / n
    print(f"cache: {cache_dir(dataset, cfg.model)}")
    print(
        f"model {m['model']} ({m['num_layers']} layers), layers cached {m['layers']}, {n - 1:,} items x "
        f"{width} tokens x {dim} ({m['dtype']}), {per_item / 1024:,.1f} KiB per item"
    )


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


def cmd_config_show(a: argparse.Namespace) -> None:
    """The configuration `train` would run with these arguments, each key with what it means."""
    from oncerec.api import make_config
    from oncerec.config.reference import annotated_config

    print(annotated_config(make_config(overrides=a.overrides)))


def cmd_presets(a: argparse.Namespace) -> None:
    """Each preset with the first sentence of its description; `train group=NAME` picks it."""
    from oncerec.api import presets
    from oncerec.config.catalog import PRESET_GROUPS, first_sentence, preset_description

    for group in [a.group] if a.group else PRESET_GROUPS:
        names = presets(group)
        print(f"{group} ({'oncerec experiment NAME' if group == 'experiment' else f'{group}=NAME'}):")
        width = max(map(len, names))
        for name in names:
            print(f"  {name:<{width}}  {first_sentence(preset_description(group, name))}")


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


def build_parser() -> argparse.ArgumentParser:
    from oncerec import __version__
    from oncerec.config.catalog import PRESET_GROUPS, preset_names

    p = argparse.ArgumentParser(prog="oncerec", description=__doc__)
    p.add_argument("--version", action="version", version=f"oncerec {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

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

    s = sub.add_parser(
        "train",
        help="train and evaluate a recommender",
        description="oncerec train data=<preset|file|folder> model=<preset|file> [embed=...] "
        "[exp=...] [group.key=value ...]",
        epilog="presets:\n"
        + "\n".join(f"  {g}: {', '.join(preset_names(g))}" for g in PRESET_GROUPS[:4])
        + "\n\nevery key with its description: oncerec config show data=... model=...; what each preset is: "
        "oncerec presets [GROUP]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument(
        "overrides",
        nargs="*",
        help="e.g. data=demo-small model=lstur exp.epochs=2 model.hidden_size=64 model.user.gru_mode=con",
    )
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("demo", help="the main job: train on the built-in demo data, compare with baselines")
    s.add_argument("--scale", default="small", choices=["tiny", "small", "medium", "large"])
    s.add_argument("--model", default="nrms", help="model preset (default nrms)")
    s.add_argument("--quiet", action="store_true")
    s.add_argument("overrides", nargs="*", help="config overrides, e.g. exp.epochs=1")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("evaluate", help="re-evaluate a saved run (its best weights)")
    s.add_argument("run_dir")
    s.add_argument("--split", nargs="+", default=["test"])
    s.add_argument("--data", help="another dataset (preset, file or folder) with the same vocabularies")
    s.add_argument("--write", action="store_true", help="also rewrite <split>.prediction.txt in the run dir")
    s.add_argument(
        "--full-ranking",
        nargs="*",
        metavar="METRIC",
        help="also rank each user's clicked items of the split among all items, their history excluded "
        "(metrics.json keys full/...): these metrics, recall@K, ndcg@K or hit@K (none named: recall@10 "
        "recall@50 ndcg@10 hit@10); without the flag: the run's exp.full_ranking",
    )
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("score", help="official MIND metrics of a leaderboard prediction file against truth")
    s.add_argument("prediction")
    s.add_argument("truth")
    s.set_defaults(func=cmd_score)

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

    s = sub.add_parser("compare", help="one table of the saved metrics of several runs")
    s.add_argument("run_dirs", nargs="+")
    s.add_argument("--split", default="test", choices=["valid", "test"])
    s.set_defaults(func=cmd_compare)

    s = sub.add_parser("recommend", help="rank items for a user of the dataset, or for a given history")
    s.add_argument("run_dir")
    s.add_argument("--user", default="", help="user id as in the raw data (its latest history is used)")
    s.add_argument(
        "--history", default="", help="comma-separated item ids, instead of the user's own history"
    )
    s.add_argument("--top-k", type=int, default=10)
    s.add_argument("--include-history", action="store_true", help="also rank the history's own items")
    s.add_argument("--data", help="dataset override, as for evaluate")
    s.set_defaults(func=cmd_recommend)

    s = sub.add_parser(
        "export", help="a trained run as a folder to serve: item vectors, weights, FAISS index"
    )
    s.add_argument("run_dir")
    s.add_argument("--out", required=True, help="the export folder to create (new or empty)")
    s.add_argument(
        "--index",
        default="flat",
        choices=["flat", "hnsw", "ivf"],
        help="flat: exact (default); hnsw, ivf: approximate",
    )
    s.add_argument(
        "--dtype", default="float32", choices=["float32", "float16"], help="of the stored item vectors"
    )
    s.add_argument("--ef-search", type=int, help="hnsw: candidates searched per query (default 128)")
    s.add_argument("--nprobe", type=int, help="ivf: cells searched per query (default: a sixth of them)")
    s.add_argument("--data", help="dataset override, as for evaluate")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("serve", help="an HTTP service of a run or an export: recommendations, new items")
    s.add_argument(
        "path", help="an export folder, or a run directory (exported to RUN_DIR/export on first use)"
    )
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--workers", type=int, default=1, help="processes, each with its own copy of the export")
    s.add_argument(
        "--persist", action="store_true", help="keep items added by POST /items (in the added-items store)"
    )
    s.add_argument(
        "--added-dir",
        help="the added-items folder, holding the store items.sqlite (default: EXPORT/added); shared by every "
        "process that serves on this machine",
    )
    s.add_argument(
        "--candidates",
        type=int,
        default=200,
        help="two-stage models (CTR heads, MINER): index candidates the model re-ranks; 0: the model scores every item",
    )
    s.add_argument("--max-body-bytes", type=int, default=4 * 2**20, help="larger requests get 413")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("dire", help="DIRE: cache a language model's frozen layers for every item")
    dire = s.add_subparsers(dest="dire_command", required=True)
    s = dire.add_parser(
        "cache",
        help="run layers 0..k-1 once over every item and store the states entering layer k",
        description="oncerec dire cache data=... model=<bert-*|llm-*|...> [model.item.cache_layers=[k1,k2]]",
    )
    s.add_argument(
        "overrides", nargs="*", help="e.g. data=demo-small model=llm-naml model.item.cache_layers=[26,28]"
    )
    s.add_argument("--batch-size", type=int, default=64, help="items per forward pass")
    s.add_argument(
        "--shard-size", type=int, default=1024, help="items per shard (a killed build keeps finished shards)"
    )
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_dire_cache)

    s = sub.add_parser("genre", help="GENRE: LLM-generated summaries, user profiles and items")
    genre = s.add_subparsers(dest="genre_command", required=True)
    from oncerec.genre.options import add_run_arguments  # argparse and dataclasses only: cheap

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

    s = sub.add_parser("config", help="show the resolved configuration of a command line")
    config = s.add_subparsers(dest="config_command", required=True)
    s = config.add_parser(
        "show",
        help="every key of the configuration these arguments make, with its description",
        description="oncerec config show data=<preset|file|folder> model=<preset|file> [group.key=value ...]",
    )
    s.add_argument("overrides", nargs="*", help="as for train, e.g. data=demo-tiny model=nrms exp.lr=1e-4")
    s.set_defaults(func=cmd_config_show)

    s = sub.add_parser("presets", help="list the packaged presets of a config group, or of every group")
    s.add_argument("group", nargs="?", choices=[*PRESET_GROUPS], help="data, model, embed, exp or experiment")
    s.set_defaults(func=cmd_presets)

    s = sub.add_parser("stats", help="print the statistics of a prepared dataset")
    s.add_argument("dataset")
    s.set_defaults(func=cmd_stats)
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
        args.func(args)
    except OncerecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
