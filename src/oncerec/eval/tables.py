"""What the tables of metrics share (report.md, `train`'s and `demo`'s printed tables, `compare`, `experiment`):
which columns, their headers, the cells.

A table shows each run's `table_metrics` (the union over its runs, in order), then its `impressions`, then
for each slice any of its runs has (cold_items, cold_users, generated_users) the first of those metrics
over the slice and the slice's impressions, then the full-ranking metrics any of its runs has (`full/...`)
and the users they average over. Headers say the grouping of every AUC (`metric_label`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from oncerec.eval.metrics import FULL_PREFIX, metric_label, table_metrics
from oncerec.eval.slices import SLICES


def cell(value: float | None) -> str:
    """A metric rounded as the tables show it; a dash where it is undefined (null in metrics.json: no
    impression with a click and a skip) or missing (a run saved before the metric or slice existed)."""
    return "—" if value is None or math.isnan(value) else f"{value:.4f}"


def columns(choices: Iterable[Sequence[str]]) -> list[str]:
    """The metric columns of a table of runs that chose `choices` (each run's `exp.metrics`)."""
    out: list[str] = []
    for names in choices:
        out += [n for n in table_metrics(names) if n not in out]
    return out


def slice_keys(splits: Iterable[dict]) -> list[str]:
    """The slices any of these metrics dicts (one split of a run each) has, in `SLICES` order."""
    present = {key for m in splits for key in SLICES if isinstance(m.get(key), dict)}
    return [key for key in SLICES if key in present]


def slice_label(metric: str, key: str) -> str:
    return f"{metric_label(metric)} on {SLICES[key]}"


def slice_cell(part: dict | None, metric: str) -> str:
    """A slice's `metric` and, in brackets, the impressions it averages over."""
    value = (part or {}).get(metric)
    return "—" if value is None or math.isnan(value) else f"{value:.4f} ({part['groups']:,})"


def full_keys(splits: Iterable[dict]) -> list[str]:
    """The full-ranking metrics (`full/recall@10`, ...) any of these metrics dicts has, in the order they first
    appear; every one is a top-K metric, so `@` tells them from the counts (`full/users`, ...)."""
    out: list[str] = []
    for m in splits:
        out += [k for k in m if k.startswith(FULL_PREFIX) and "@" in k and k not in out]
    return out


def full_label(key: str) -> str:
    return f"{metric_label(key.removeprefix(FULL_PREFIX))} of all items"


def full_headers(keys: Sequence[str]) -> list[str]:
    return [*map(full_label, keys), USERS_RANKED] if keys else []


def full_cells(m: dict, keys: Sequence[str]) -> list[str]:
    """A split's full-ranking metrics `keys` and the users they average over (dashes: not computed)."""
    if not keys:
        return []
    users = m.get(f"{FULL_PREFIX}users")
    return [*(cell(m.get(k)) for k in keys), "—" if users is None else f"{users:,}"]


USERS_RANKED = "users ranked"  # the header of `full/users`, the users the full-ranking metrics average over
