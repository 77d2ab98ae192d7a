"""The recommender and its components: sizes and tensors in, scores out (no file, no dataset).

Importing the package imports every component module, each of which registers its components beside their
definitions (`models/registry.py`), as timm's models package does: the registry itself imports none of them. A
component of your own registers the same way, from any module imported before the config is read (see the
Development page: adding a model).
"""

from oncerec.models import (  # noqa: F401
    bst,
    ctr,
    din,
    dkn,
    dot,
    fastformer,
    item_id,
    lm,
    lstur,
    miner,
    naml,
    npa,
    nrms,
    pool,
    sequence,
)
