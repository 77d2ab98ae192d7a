"""Training curves from log.jsonl."""

from __future__ import annotations

import json
from pathlib import Path


def plot_curves(log_path: Path, out: Path, metric: str = "auc") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = (
        [json.loads(line) for line in log_path.read_text().splitlines() if line] if log_path.is_file() else []
    )
    train = [r for r in records if r["type"] == "train"]
    evals = [r for r in records if r["type"] == "eval"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot([r["step"] for r in train], [r["loss"] for r in train], color="tab:blue")
    ax1.set(xlabel="optimizer step", ylabel="training loss", title="loss")
    for key in dict.fromkeys([metric, "auc", "mrr", "ndcg@10"]):
        ax2.plot([r["step"] for r in evals], [r.get(key) for r in evals], marker="o", label=key)
    ax2.set(xlabel="optimizer step", title="validation")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
