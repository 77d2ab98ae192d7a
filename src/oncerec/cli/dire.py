"""DIRE commands: `dire cache`."""

from __future__ import annotations

import argparse


def cmd_dire_cache(a: argparse.Namespace) -> None:
    """Run a language model's frozen layers once over every item and keep their states (DIRE)."""
    from oncerec.config.loader import build_config
    from oncerec.training.pipeline import dire_cache

    cfg = build_config(a.overrides)
    cache = dire_cache(cfg, batch_size=a.batch_size, shard_size=a.shard_size, progress=not a.quiet)
    m = cache.manifest
    n, width, dim = m["shape"]
    print(f"cache: {cache.folder}")
    print(
        f"model {m['model']} ({m['num_layers']} layers), layers cached {m['layers']}, {n - 1:,} items x "
        f"{width} tokens x {dim} ({m['dtype']}), {cache.bytes_per_item / 1024:,.1f} KiB per item"
    )


def add_dire(sub) -> None:
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
