"""Serving commands: `export`, `serve`."""

from __future__ import annotations

import argparse
from pathlib import Path

from oncerec.errors import OncerecError


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


def add_export(sub) -> None:
    from oncerec.serve.options import DEFAULT_EF_SEARCH, DTYPES, KINDS

    s = sub.add_parser(
        "export", help="a trained run as a folder to serve: item vectors, weights, FAISS index"
    )
    s.add_argument("run_dir")
    s.add_argument("--out", required=True, help="the export folder to create (new or empty)")
    s.add_argument(
        "--index",
        default="flat",
        choices=KINDS,
        help="flat: exact (default); hnsw, ivf: approximate",
    )
    s.add_argument("--dtype", default=DTYPES[0], choices=DTYPES, help="of the stored item vectors")
    s.add_argument(
        "--ef-search", type=int, help=f"hnsw: candidates searched per query (default {DEFAULT_EF_SEARCH})"
    )
    s.add_argument("--nprobe", type=int, help="ivf: cells searched per query (default: a sixth of them)")
    s.add_argument("--data", help="dataset override, as for evaluate")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_export)


def add_serve(sub) -> None:
    from oncerec.serve.options import DEFAULT_CANDIDATES

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
        default=DEFAULT_CANDIDATES,
        help="two-stage models (CTR heads, MINER): index candidates the model re-ranks; 0: the model scores every item",
    )
    s.add_argument("--max-body-bytes", type=int, default=4 * 2**20, help="larger requests get 413")
    s.set_defaults(func=cmd_serve)
