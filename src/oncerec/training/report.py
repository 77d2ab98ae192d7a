"""Training curves from log.jsonl."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from oncerec.eval.tables import named_table
from oncerec.extras import missing

if TYPE_CHECKING:
    from oncerec.training.session import Recommendation


def plot_curves(log_path: Path, out: Path, metrics: list[str]) -> bool:
    """Training loss and the validation `metrics` (the first: the one that selects the best checkpoint);
    False, drawing nothing, without matplotlib (the `plots` extra)."""
    if missing("plots"):
        return False
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
    for key in dict.fromkeys(metrics):
        ax2.plot([r["step"] for r in evals], [r.get(key) for r in evals], marker="o", label=key)
    ax2.set(xlabel="optimizer step", title="validation")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def write_report(run_dir: Path, cfg, metrics: dict, examples: list[tuple[str, list[Recommendation]]]) -> None:
    """A one-page Markdown summary of a run: what was trained, how it scored, what it recommends."""
    m, e = cfg.model, cfg.exp
    lines = [
        f"# Run `{run_dir.name}`",
        "",
        f"- data: `{cfg.data.name}` (split `{cfg.data.split}`, fields {', '.join(cfg.data.text_fields)})",
        f"- model: `{m.name}`: item `{m.item.name}` on {', '.join(m.item_fields)}, user `{m.user.name}`, predictor "
        f"`{m.predictor.name}`, hidden {m.hidden_size}; embeddings `{cfg.embed.type}` ({cfg.embed.dim})",
        f"- training: {e.epochs} epochs, batch {e.batch_size} x {e.acc_batch}, lr {e.lr}, {e.neg_count} negatives, "
        f"seed {e.seed}; best by `{e.metric}`",
        "",
    ]
    lines += [named_table("split", metrics, e.metrics).markdown(), ""]
    if (run_dir / "curves.png").is_file():
        lines += ["![training curves](curves.png)", ""]
    for user, recs in examples:
        lines += [f"**Top recommendations for {user}**", ""]
        lines += [f"{i}. {title} (`{item}`, {score:.3f})" for i, (item, score, title) in enumerate(recs, 1)]
        lines.append("")
    (run_dir / "report.md").write_text("\n".join(lines), encoding="utf-8")
