"""`python -m benchmarks --scale`: how preparation, training and evaluation cost grow from `small` to `medium` to the
MIND-large-shaped `large` demo data, each measured in a fresh child process (its own peak memory).

Per scale: prepare (lines/s, peak RSS); NRMS trained for a fixed number of steps (a partial epoch) from the
memory-mapped dataset; fast evaluation of the trained model on a slice of the valid split (the first
`eval_impressions` impressions); the child's peak RSS over training and evaluation.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

from benchmarks.suite import _private_cache, bench_prepare
from oncerec.errors import OncerecError

logger = logging.getLogger(__name__)

_TRAIN_CHILD = """
import json, sys, time
import numpy as np, torch
from oncerec.config.loader import build_config
from oncerec.data.batching import TrainSampler
from oncerec.data.dataset import Dataset, resolve_dataset
from oncerec.training.build import build_recommender
from oncerec.eval.slices import split_metrics
from oncerec.training.evaluate import predict_fast
def peak_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
scale, steps, n_eval = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cfg = build_config([f"data=demo-{scale}", "model=nrms"])
ds = Dataset(resolve_dataset(cfg.data, progress=False))
torch.manual_seed(0)
model = build_recommender(cfg.model, cfg.embed, ds).train()
opt = torch.optim.AdamW(model.param_groups(1e-3, 1e-5, 0.0, 0.0))
sampler = TrainSampler(ds, ds.split("train"), 64, 4, seed=0)
order = sampler.order(0)
start = time.perf_counter()
for i in range(steps):
    scores = model(sampler.batch(0, i, order))
    loss = torch.nn.functional.cross_entropy(scores, torch.zeros(len(scores), dtype=torch.long))
    loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
train_s = time.perf_counter() - start
valid = ds.split("valid")
part = valid.select(np.arange(min(n_eval, valid.num_impressions)))
model.eval()
start = time.perf_counter()
scores = predict_fast(model, ds, part, 512, "cpu")
eval_s = time.perf_counter() - start
m = split_metrics(part, scores)
print(json.dumps({
    "train_samples": len(sampler.pos_rows), "steps": steps, "train_s": train_s, "samples_per_s": 64 * steps / train_s,
    "epoch_fraction": steps / len(sampler), "eval_impressions": part.num_impressions,
    "eval_rows": len(part.item), "eval_s": eval_s, "eval_auc": m["auc"], "items": ds.num_items - 1,
    "train_impressions": ds.split("train").num_impressions, "peak_rss_mb": peak_mb(),
}))
"""


def bench_scale(scales: list[str], steps: int, eval_impressions: int) -> dict:
    results = {}
    with _private_cache():
        for scale in scales:
            logger.info(f"bench scale: demo-{scale}: prepare")
            prep = bench_prepare(scale)
            logger.info(
                f"bench scale: demo-{scale}: {steps} NRMS steps, evaluation of {eval_impressions:,} impressions"
            )
            done = subprocess.run(
                [sys.executable, "-c", _TRAIN_CHILD, scale, str(steps), str(eval_impressions)],
                capture_output=True,
                text=True,
            )
            if done.returncode:
                raise OncerecError(f"bench scale: demo-{scale} failed:\n{done.stderr.strip()[-3000:]}")
            results[scale] = {"prepare": prep, "train_eval": json.loads(done.stdout.strip().splitlines()[-1])}
    return results


def scale_table(results: dict) -> str:
    lines = [
        "| data | items | train impressions | prepare | prepare peak | NRMS train | eval (fast) | train + eval peak |",
        "|---|---:|---:|---|---:|---|---|---:|",
    ]
    for scale, r in results.items():
        p, t = r["prepare"], r["train_eval"]
        lines.append(
            f"| demo-{scale} | {t['items']:,} | {t['train_impressions']:,} | {p['seconds']:.1f} s "
            f"({p['lines_per_s']:,.0f} lines/s) | {p['peak_rss_mb']:,.0f} MB | {t['samples_per_s']:.0f} samples/s "
            f"({t['steps']} steps = {t['epoch_fraction']:.1%} of an epoch) | {t['eval_impressions']:,} impressions "
            f"({t['eval_rows']:,} rows) in {t['eval_s']:.1f} s | {t['peak_rss_mb']:,.0f} MB |"
        )
    return "\n".join(lines) + "\n"


def run_scale(out_dir: Path, scales: list[str], steps: int, eval_impressions: int) -> str:
    results = bench_scale(scales, steps, eval_impressions)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "scale.json").write_text(json.dumps(results, indent=2) + "\n")
    table = scale_table(results)
    (out_dir / "scale.md").write_text(table)
    return table
