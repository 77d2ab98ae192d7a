"""Vectorised helpers over grouped rows (CSR layouts: a group's rows are contiguous)."""

from __future__ import annotations

import numpy as np


def first_occurrence(group: np.ndarray, item: np.ndarray) -> np.ndarray:
    """Mask of rows whose (group, item) did not occur in an earlier row."""
    order = np.lexsort((np.arange(len(item)), item, group))
    g, i = group[order], item[order]
    repeat = np.zeros(len(item), bool)
    repeat[order[1:]] = (g[1:] == g[:-1]) & (i[1:] == i[:-1])
    return ~repeat


def rank_within(group: np.ndarray) -> np.ndarray:
    """0-based position of each row within its run of equal values of a sorted `group`."""
    idx = np.arange(len(group))
    new = np.ones(len(group), bool)
    new[1:] = group[1:] != group[:-1]
    return idx - np.maximum.accumulate(np.where(new, idx, 0))


def csr_starts(group: np.ndarray, n: int) -> np.ndarray:
    """Row offsets of groups 0..n-1 in a sorted `group` array (n + 1 entries)."""
    return np.concatenate([[0], np.cumsum(np.bincount(group, minlength=n))])
