"""A split's metrics: the totals, and beside them the same metrics over slices of the split.

| key             | what it keeps                                                               | reported         |
|-----------------|-----------------------------------------------------------------------------|------------------|
| cold_items      | the candidates the training split never showed (`Dataset.train_items`), per  | with the dataset |
|                 | impression among its new candidates                                          |                  |
| cold_users      | the impressions whose history holds at most `exp.cold_user_history` clicks  | with the dataset |
|                 | (generated items not counted: GENRE's items for a cold user leave it cold)  |                  |
| generated_users | the impressions whose history holds a generated item (`genre merge` puts a  | when the dataset |
|                 | cold user's generated items into every history row of that user)            | has generated    |
|                 |                                                                             | items            |

A slice holds the metrics of the totals and its size: `impressions` (that it keeps: for cold_items, those with
at least one new candidate), `groups` (averaged over: with a clicked and a skipped candidate), `skipped` and
`rows`. cold_users and cold_items are defined on any dataset, so they compare runs on different datasets of the
same users (a model with GENRE's generated items and one without); generated_users exists only where the
generated items do.
"""

from __future__ import annotations

import numpy as np

from oncerec.config.schema import ExpConfig
from oncerec.data.dataset import Dataset, Split
from oncerec.eval.metrics import evaluate_groups

# metrics.json key -> what a table calls it
SLICES = {
    "cold_items": "new items",
    "cold_users": "cold users",
    "generated_users": "users with generated items",
}


def _history_counts(dataset: Dataset, split: Split) -> tuple[np.ndarray, np.ndarray]:
    """Per impression: the clicks of its history that are not generated items, and whether it has any that
    is."""
    items, lengths, _ = dataset.histories
    history = np.asarray(split.history)
    rows, inverse = np.unique(history, return_inverse=True)  # MIND repeats a user's history row
    length = np.asarray(lengths)[rows]
    generated = dataset.generated_items
    if generated is None:
        return length[inverse], np.zeros(len(history), dtype=bool)
    held = np.arange(items.shape[1])[None, :] < length[:, None]
    n_generated = (generated[np.asarray(items)[rows]] & held).sum(axis=1)
    return (length - n_generated)[inverse], (n_generated > 0)[inverse]


def split_metrics(
    split: Split, scores: np.ndarray, dataset: Dataset | None = None, exp: ExpConfig | None = None
) -> dict:
    """The split's `exp.metrics` (default: `ExpConfig`'s) with `impressions`; with the dataset, also the
    slices (see the module docstring), each under its key."""
    exp = exp or ExpConfig()
    labels = np.asarray(split.label)
    impression = split.row_impression
    users = np.asarray(split.user)[impression]

    def measure(keep: np.ndarray | None = None) -> dict:
        if keep is None:
            return evaluate_groups(labels, scores, impression, exp.metrics, users)
        m = evaluate_groups(labels[keep], scores[keep], impression[keep], exp.metrics, users[keep])
        m["impressions"] = m["groups"] + m["skipped"]  # every impression of the slice has a row in it
        return m

    m = measure()
    m["impressions"] = split.num_impressions
    if dataset is None:
        return m
    m["cold_items"] = measure(~dataset.train_items[np.asarray(split.item)])
    clicks, has_generated = _history_counts(dataset, split)
    m["cold_users"] = measure((clicks <= exp.cold_user_history)[impression])
    m["cold_users"]["max_history"] = exp.cold_user_history
    if dataset.generated_items is not None:
        m["generated_users"] = measure(has_generated[impression])
    return m
