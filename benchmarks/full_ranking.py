"""The time of the full-ranking evaluation (`exp.full_ranking`) on a catalogue of MIND-small's size: random
user and item vectors through the function that ranks them (`oncerec.training.full_ranking.rank_vectors`: blocks
of users, scores against every item, the history excluded, torch.topk), then the metrics of the top K
(`evaluate_top_k`). The encoders are left out: they encode each item and user once, as the impression
evaluation does (its time is the eval section of `python -m benchmarks`).

    python -m benchmarks.full_ranking [--items 65238] [--users 50000] [--model nrms] [--k 100]

`--model` gives the predictor and the vector width (its preset's hidden_size): nrms's inner product, or a CTR
head such as dnn, which scores every (user, item) pair with its MLP; for those, time a few hundred users and
read the extrapolation to `--of` users.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from oncerec.config.loader import build_config
from oncerec.data.dataset import Dataset, resolve_dataset
from oncerec.eval.metrics import evaluate_top_k
from oncerec.training.build import build_recommender
from oncerec.training.full_ranking import rank_vectors

MIND_SMALL_ITEMS = 65_238  # news of MIND-small (train and dev news.tsv together)
MIND_SMALL_DEV_USERS = 50_000
HISTORY = 50  # clicks per history, MIND's usual cut


def bench(items: int, users: int, preset: str, k: int, batch: int, of: int, seed: int = 0) -> dict:
    # the model supplies the predictor only; demo-tiny is the smallest dataset to build it on
    cfg = build_config(["data=demo-tiny", f"model={preset}"])
    ds = Dataset(resolve_dataset(cfg.data, progress=False))
    model = build_recommender(cfg.model, cfg.embed, ds).eval()
    dim = cfg.model.hidden_size
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    vectors = torch.randn(items + 1, dim, generator=gen)  # row 0: the padding item
    reps = torch.randn(users, dim, generator=gen)
    history = rng.integers(1, items + 1, size=(users, HISTORY))
    targets = [rng.choice(items, size=1 + rng.poisson(1.0), replace=False) + 1 for _ in range(users)]
    start = time.perf_counter()
    found = rank_vectors(model, reps, vectors, history, targets, k, batch)
    rank_s = time.perf_counter() - start
    start = time.perf_counter()
    evaluate_top_k(found, [len(t) for t in targets], [f"recall@{k}", "recall@10", "ndcg@10", "hit@10"])
    metrics_s = time.perf_counter() - start
    return {
        "items": items,
        "users": users,
        "model": preset,
        "predictor": cfg.model.predictor.name,
        "dim": dim,
        "k": k,
        "batch": batch,
        "threads": torch.get_num_threads(),
        "rank_s": round(rank_s, 2),
        "metrics_s": round(metrics_s, 2),
        "users_per_s": round(users / rank_s, 1),
        f"rank_s_for_{of}_users": round(rank_s * of / users, 1),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.full_ranking", description=__doc__.split("\n")[0])
    p.add_argument("--items", type=int, default=MIND_SMALL_ITEMS)
    p.add_argument("--users", type=int, default=MIND_SMALL_DEV_USERS)
    p.add_argument("--model", default="nrms", help="preset whose predictor scores (nrms: inner product)")
    p.add_argument("--k", type=int, default=100, help="the deepest cut-off ranked")
    p.add_argument("--batch", type=int, default=512, help="users per block (exp.eval_batch_size)")
    p.add_argument("--of", type=int, default=MIND_SMALL_DEV_USERS, help="users to extrapolate the time to")
    a = p.parse_args(argv)
    print(json.dumps(bench(a.items, a.users, a.model, a.k, a.batch, a.of)))


if __name__ == "__main__":
    main()
