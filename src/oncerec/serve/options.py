"""The choices and defaults of exporting and serving that the command line offers.

Kept free of heavy imports (numpy, torch, FAISS): the CLI builds its parser from here on every start.
"""

from __future__ import annotations

KINDS = ("flat", "hnsw", "ivf")  # the item index: exact, or approximate (a graph; inverted lists)
DTYPES = ("float32", "float16")  # of the item vectors an export stores and its index holds
DEFAULT_EF_SEARCH = 128  # hnsw: candidates searched per query
DEFAULT_CANDIDATES = 200  # two-stage ranking (CTR heads, MINER): the index's candidates the model re-ranks
