"""`python -m benchmarks` (what `make bench` runs): writes bench.json and bench.md, or with --scale
scale.json and scale.md, and prints the Markdown table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from oncerec.errors import OncerecError
from oncerec.logs import printed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes: under 3 minutes on a 2-core CPU")
    p.add_argument("--out", default="bench-out")
    p.add_argument("--threads", type=int, help="torch threads (1 keeps ratios stable on a busy machine)")
    p.add_argument(
        "--only",
        default="",
        help="these sections only, e.g. serve (prepare, train, eval, dire, genre, serve, metrics)",
    )
    p.add_argument("--scale", help="instead: cost growth over demo scales, e.g. small,medium,large")
    p.add_argument("--steps", type=int, default=100, help="--scale: NRMS training steps per scale")
    p.add_argument(
        "--eval-impressions", type=int, default=50_000, help="--scale: valid impressions evaluated"
    )
    a = p.parse_args(argv)
    try:
        # where each benchmark is, a line each; what the benchmarked steps of oncerec report stays unshown
        with printed("benchmarks"):
            if a.scale:
                from benchmarks.scale import run_scale

                print(run_scale(Path(a.out), a.scale.split(","), a.steps, a.eval_impressions))
                return 0
            from benchmarks.suite import run_bench

            only = tuple(x.strip() for x in a.only.split(",") if x.strip())
            run_bench(quick=a.quick, out_dir=Path(a.out), threads=a.threads, only=only)
    except OncerecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print((Path(a.out) / "bench.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
