"""Training and evaluation commands: `train`, `demo`, `evaluate`, `score`, `compare`, `recommend`."""

from __future__ import annotations

import argparse
from pathlib import Path


def _print_metrics(metrics: dict, names: list[str]) -> None:
    """{split: metrics} of a run that chose `names` (exp.metrics), as an aligned Markdown table."""
    from oncerec.eval.tables import named_table

    print(named_table("split", metrics, names).markdown(pad=True))


def cmd_train(a: argparse.Namespace) -> None:
    from oncerec.api import make_config, train_config

    cfg = make_config(overrides=a.overrides)
    run = train_config(cfg, progress=not a.quiet)
    if run.metrics:
        _print_metrics(run.metrics, cfg.exp.metrics)
        print(f"run: {run.run_dir}")


def cmd_demo(a: argparse.Namespace) -> None:
    """The main job: train a model on the built-in data and compare it with popularity and the oracle."""
    from oncerec.training.demo import demo, example_user, next_steps

    result = demo(a.scale, a.model, a.overrides, progress=not a.quiet)
    model = result.run.cfg.model.name
    print(f"\ntest split of demo-{a.scale}: {result.impressions:,} impressions")
    print(result.table.markdown(pad=True))
    if result.oracle_gap is not None:
        print(f"\n{model} closes {result.oracle_gap:.1%} of the AUC gap between random (0.5) and the oracle.")
    print(f"run directory: {result.run.run_dir}")
    steps = next_steps(result.run.run_dir, *example_user(result.run.dataset))
    print("\nnext:\n" + "\n".join(f"  {line}" for line in steps))


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
    from oncerec.eval.compare import compare_runs

    table = compare_runs(a.run_dirs, a.split)
    print(f"`{a.split}` split of {len(a.run_dirs)} runs\n")
    print(table.markdown())


def cmd_recommend(a: argparse.Namespace) -> None:
    from oncerec.api import load_run

    run = load_run(a.run_dir, data=a.data)
    history = [h.strip() for h in a.history.split(",")] if a.history else None
    for rank, (item_id, score, title) in enumerate(
        run.recommend(a.user, history, a.top_k, exclude_history=not a.include_history), 1
    ):
        print(f"{rank:>3}. {score:8.4f}  {item_id}  {title}")


def add_train(sub) -> None:
    from oncerec.config.catalog import PRESET_GROUPS, preset_names

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


def add_demo(sub) -> None:
    s = sub.add_parser("demo", help="the main job: train on the built-in demo data, compare with baselines")
    s.add_argument("--scale", default="small", choices=["tiny", "small", "medium", "large"])
    s.add_argument("--model", default="nrms", help="model preset (default nrms)")
    s.add_argument("--quiet", action="store_true")
    s.add_argument("overrides", nargs="*", help="config overrides, e.g. exp.epochs=1")
    s.set_defaults(func=cmd_demo)


def add_evaluate(sub) -> None:
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


def add_score(sub) -> None:
    s = sub.add_parser("score", help="official MIND metrics of a leaderboard prediction file against truth")
    s.add_argument("prediction")
    s.add_argument("truth")
    s.set_defaults(func=cmd_score)


def add_compare(sub) -> None:
    s = sub.add_parser("compare", help="one table of the saved metrics of several runs")
    s.add_argument("run_dirs", nargs="+")
    s.add_argument("--split", default="test", choices=["valid", "test"])
    s.set_defaults(func=cmd_compare)


def add_recommend(sub) -> None:
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
