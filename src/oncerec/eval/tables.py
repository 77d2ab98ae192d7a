"""The one renderer of tables of metrics: report.md, `train`'s and `demo`'s printed tables, `compare`,
`experiment`'s results.md / results.csv.

A table has leading label columns (split, run, model, seeds, ...) and then the same metric columns everywhere:
the runs' `table_metrics` (the union over the runs, in order), their `impressions`, for each slice any of the
runs has (cold_items, cold_users, generated_users) the first of those metrics over the slice and the
impressions it averages over, then the full-ranking metrics any run has (`full/...`) and the users they
average over. Headers say the grouping of every AUC (`metric_label`). A row holds one metrics dict (a run's
split) or several (the seeds of an experiment row: mean ± std).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from oncerec.eval.metrics import FULL_PREFIX, metric_label, table_metrics
from oncerec.eval.slices import SLICES

DASH = "—"  # undefined (null in metrics.json: no group with a click and a skip) or missing (saved before it existed)


@dataclass(frozen=True)
class Column:
    header: str
    key: str  # where a split's metrics dict holds it: "auc", "f1@0.5", "cold_items.auc" (a slice's), "full/users"
    count: bool = False  # a size (impressions, users): an integer, the same over seeds


def value(metrics: dict, key: str) -> float | None:
    """A split's metric (its name may hold a dot: `f1@0.5`) or a slice's (`cold_items.auc`)."""
    if key in metrics:
        return metrics[key]
    part, _, name = key.partition(".")
    inner = metrics.get(part)
    return inner.get(name) if isinstance(inner, dict) else None


def metric_columns(choices: Iterable[Sequence[str]], splits: Sequence[dict]) -> list[Column]:
    """The metric columns of a table of `splits` (metrics dicts) whose runs chose `choices` (their
    `exp.metrics`)."""
    names: list[str] = []
    for chosen in choices:
        names += [n for n in table_metrics(chosen) if n not in names]
    cols = [Column(metric_label(n), n) for n in names] + [Column("impressions", "impressions", count=True)]
    present = {key for m in splits for key in SLICES if isinstance(m.get(key), dict)}
    for key in (k for k in SLICES if k in present):
        cols += [
            Column(f"{metric_label(names[0])} on {SLICES[key]}", f"{key}.{names[0]}"),
            Column("their impressions", f"{key}.groups", count=True),
        ]
    # every full-ranking metric is a top-K one, so `@` tells them from the counts (full/users, ...)
    full = list(dict.fromkeys(k for m in splits for k in m if k.startswith(FULL_PREFIX) and "@" in k))
    cols += [Column(f"{metric_label(k.removeprefix(FULL_PREFIX))} of all items", k) for k in full]
    if full:
        cols.append(Column("users ranked", f"{FULL_PREFIX}users", count=True))
    return cols


def defined(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None and not math.isnan(v)]


def mean_std(values: Iterable[float | None]) -> tuple[float, float]:
    """Over the values that are defined (nan, nan: none is)."""
    vs = defined(values)
    if not vs:
        return math.nan, math.nan
    return statistics.fmean(vs), statistics.stdev(vs) if len(vs) > 1 else 0.0


def render_cell(col: Column, values: Sequence[float | None], seeds: bool) -> str:
    """One run's value (0.1234), or over seeds mean ± std (0.1234 ± 0.0056; a single defined value has no
    spread to show); sizes as 1,234 (a range where seeds differ)."""
    vs = defined(values)
    if not vs:
        return DASH
    if col.count:
        lo, hi = int(min(vs)), int(max(vs))
        return f"{lo:,}" if lo == hi else f"{lo:,}–{hi:,}"
    if not seeds or len(vs) == 1:
        return f"{vs[0]:.4f}"
    mean, std = mean_std(vs)
    return f"{mean:.4f} ± {std:.4f}"


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    lead: int  # the leading label columns: left-aligned, the rest right-aligned
    notes: list[str] = field(default_factory=list)  # what the columns mean where a header cannot say it

    def add_column(self, header: str, cells: Sequence[str]) -> None:
        self.headers.append(header)
        for row, c in zip(self.rows, cells, strict=True):
            row.append(c)

    def markdown(self, pad: bool = False) -> str:
        """GitHub Markdown; `pad` aligns the columns for a terminal."""
        widths = [
            max(len(r[i]) for r in [self.headers, *self.rows]) if pad else 0 for i in range(len(self.headers))
        ]

        def line(cells: Sequence[str]) -> str:
            out = [
                f"{c:<{w}}" if i < self.lead else f"{c:>{w}}"
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ]
            return "| " + " | ".join(out) + " |"

        # a padded cell is its width and a space each side; a rule of that width keeps the columns straight
        rule = [
            "-" * max(w + 2, 3) if i < self.lead else "-" * max(w + 1, 3) + ":" for i, w in enumerate(widths)
        ]
        text = [line(self.headers), "|" + "|".join(rule) + "|"]
        text += [line(r) for r in self.rows]
        return "\n".join(text + ([""] + self.notes if self.notes else []))


def metric_table(
    lead: Sequence[str],
    rows: Sequence[tuple[Sequence[str], Sequence[dict]]],
    choices: Iterable[Sequence[str]],
    seeds: bool = False,
) -> tuple[Table, list[Column]]:
    """The table of `rows` (label cells under `lead`, the metrics dicts of the row: one per seed where `seeds`)
    whose runs chose `choices`; its metric columns too (results.csv writes them)."""
    splits = [m for _, ms in rows for m in ms]
    cols = metric_columns(choices, splits)
    body = [
        [*labels, *(render_cell(c, [value(m, c.key) for m in ms], seeds) for c in cols)]
        for labels, ms in rows
    ]
    table = Table([*lead, *(c.header for c in cols)], body, len(lead))
    cold = [m["cold_users"] for m in splits if isinstance(m.get("cold_users"), dict)]
    if cold:
        most = {c["max_history"] for c in cold if "max_history" in c}
        table.notes.append(
            "Cold users: impressions whose history has at most "
            + (f"{most.pop()} clicks." if len(most) == 1 else "`exp.cold_user_history` clicks.")
        )
    items = {m[f"{FULL_PREFIX}items"] for m in splits if f"{FULL_PREFIX}items" in m}
    if items:
        table.notes.append(
            "Of all items: each user's clicked items of the split ranked among all "
            + (f"{items.pop():,} items" if len(items) == 1 else "the items")
            + ", the user's history excluded."
        )
    return table, cols


def named_table(lead: str, metrics: Mapping[str, dict], choice: Sequence[str]) -> Table:
    """One row per name (a split, a model) of `metrics` {name: metrics}, from runs that chose `choice`."""
    table, _ = metric_table([lead], [([name], [m]) for name, m in metrics.items()], [choice])
    return table
