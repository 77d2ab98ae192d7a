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


def write_report(
    run_dir: Path, cfg, metrics: dict, examples: list[tuple[str, list[tuple[str, str, float]]]]
) -> None:
    """A one-page Markdown summary of a run: what was trained, how it scored, what it recommends."""
    m, e = cfg.model, cfg.exp
    lines = [
        f"# Run `{run_dir.name}`",
        "",
        f"- data: `{cfg.data.name}` (split `{cfg.data.split}`, fields {', '.join(cfg.data.text_fields)})",
        f"- model: `{m.name}`: item `{m.item}` on {', '.join(m.item_fields)}, user `{m.user}`, predictor "
        f"`{m.predictor}`, hidden {m.hidden_size}; embeddings `{cfg.embed.type}` ({cfg.embed.dim})",
        f"- training: {e.epochs} epochs, batch {e.batch_size} x {e.acc_batch}, lr {e.lr}, {e.neg_count} negatives, "
        f"seed {e.seed}; best by `{e.metric}`",
        "",
        "| split | AUC | MRR | nDCG@5 | nDCG@10 | impressions | AUC new items (their impressions) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for split, s in metrics.items():
        cold = s.get("cold_items", {})
        new = "—" if cold.get("auc") is None else f"{cold['auc']:.4f} ({cold['groups']:,})"
        lines.append(
            f"| {split} | {s['auc']:.4f} | {s['mrr']:.4f} | {s['ndcg@5']:.4f} | {s['ndcg@10']:.4f} "
            f"| {s['impressions']:,} | {new} |"
        )
    lines += ["", "![training curves](curves.png)", ""]
    for user, recs in examples:
        lines += [f"**Top recommendations for {user}**", ""]
        lines += [f"{i}. {title} (`{item}`, {score:.3f})" for i, (item, title, score) in enumerate(recs, 1)]
        lines.append("")
    (run_dir / "report.md").write_text("\n".join(lines), encoding="utf-8")
