"""Reference points for a results table: popularity, and the oracle of the demo data (true click probabilities)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from oncerec.data.dataset import Dataset, Split
from oncerec.errors import DataError


def train_clicks(dataset: Dataset) -> np.ndarray:
    """[num_items] the number of clicks of each item in the training split."""
    train = dataset.split("train")
    return np.bincount(np.asarray(train.item)[np.asarray(train.label) == 1], minlength=dataset.num_items)


def popularity_scores(dataset: Dataset, split: Split) -> np.ndarray:
    """Score = the item's number of clicks in the training split."""
    return train_clicks(dataset)[np.asarray(split.item)].astype(np.float32)


def oracle_scores(dataset: Dataset, split: Split) -> np.ndarray | None:
    """The true click probability of each candidate, from the raw demo folder's `dev/oracle.tsv`
    (ImpressionID, NewsID, probability); None when the raw data has no oracle (real data)."""
    path = Path(dataset.manifest["source"]) / "dev" / "oracle.tsv"
    if not path.is_file():
        return None
    prob: dict[tuple[int, str], float] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            cols = line.rstrip("\r\n").split("\t")
            if len(cols) != 3:
                raise DataError(
                    path, "expected 3 tab-separated columns (ImpressionID, NewsID, probability)", n
                )
            prob[(int(cols[0]), cols[1])] = float(cols[2])
    ids = dataset.item_ids
    imp = np.asarray(split.imp_id)[split.row_impression]
    try:
        return np.array(
            [prob[(int(i), ids[x])] for i, x in zip(imp, np.asarray(split.item), strict=True)], np.float32
        )
    except KeyError as e:
        raise DataError(path, f"no probability for impression/news {e.args[0]}") from None
