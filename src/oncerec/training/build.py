"""From a dataset to a recommender: what the data side reads for the model before the model exists.

The components of `oncerec.models` take sizes and tensors (`ModelSpec`), a word table and an `ItemTable`;
here they are read from a dataset (or an export's `data/` folder). For DIRE (`model.item=lm`) that means the
language model, loaded once by `language_model` (which builds the DIRE cache first when it is absent: a step of
its own, before the model), and the inputs of its layer `model.item.layer` by item index: token ids, or the
cache's states (checked against the model, whose bottom is still loaded) before the encoder drops the frozen
layers.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from torch import Tensor, nn

from oncerec.config.schema import CATEGORICAL, EmbedConfig, ModelConfig
from oncerec.data.batching import ItemContent, trimmed_rows
from oncerec.data.dataset import Dataset
from oncerec.data.word_vectors import word_table
from oncerec.errors import ConfigError, OncerecError
from oncerec.lm.backbone import lm_dtype, load_lm
from oncerec.models.embedding import WordEmbedding
from oncerec.models.interfaces import ModelSpec
from oncerec.models.lm import LMConfig, all_frozen
from oncerec.models.recommender import Recommender


def build_recommender(
    cfg: ModelConfig,
    embed: EmbedConfig,
    dataset: Dataset,
    seed: int = 0,
    word_weights: Tensor | None = None,
    item_encoder: bool = True,
    lm: nn.Module | None = None,
) -> Recommender:
    """`word_weights`: the word table to use instead of building one (a served export holds its trained
    table); `item_encoder=False` leaves the item encoder out: a served export ranks stored item vectors, and
    a DIRE encoder could not be built without its training data's cache. `lm`: DIRE's language model as
    `language_model` loaded it (loaded here otherwise); its DIRE cache must exist (`language_model` builds it)."""
    _check_fields(cfg, dataset)
    item_cls = cfg.component("item")
    # an encoder with its own inputs (item ids, language-model tokens or cached states) needs no word table
    reads_content = item_encoder and not item_cls.own_inputs
    spec = model_spec(cfg, dataset, embed.tokenizer if reads_content else None)
    if item_encoder and item_cls.reads_entities:
        spec.entity_vectors = dataset.entity_vectors()
    if item_encoder and item_cls.language_model:
        spec.lm, spec.item_inputs = language_model_inputs(cfg, dataset, lm)
    words = None
    if reads_content:
        weights = word_table(embed, dataset, seed) if word_weights is None else word_weights
        words = WordEmbedding(weights, embed.freeze, embed.dim, pretrained=embed.type == "hf")
    content = ItemContent(
        dataset,
        cfg.item_fields if reads_content else [],
        embed.tokenizer,
        lookups=("category",) if cfg.miner_category_bias else (),
        entities=item_encoder and item_cls.reads_entities,
    )
    return Recommender(cfg, spec, content, words, item_encoder)


def _check_fields(cfg: ModelConfig, dataset: Dataset) -> None:
    for f in cfg.text_item_fields:
        if f not in dataset.text_fields:
            raise ConfigError(
                f"model.item_fields: `{f}` is not a prepared field; "
                f"valid: {', '.join([*dataset.text_fields, *CATEGORICAL])}"
            )


def model_spec(cfg: ModelConfig, dataset: Dataset, tokenizer: str | None) -> ModelSpec:
    """Sizes of the dataset, which users trained, GENRE user profiles; with `tokenizer`, the longest text of
    each text field the item encoder reads."""
    widths = {}
    if tokenizer is not None:
        for f in cfg.text_item_fields:
            widths[f] = max(int(np.max(dataset.tokens(tokenizer, f)[1], initial=0)), 1)
    return ModelSpec(
        num_items=dataset.num_items,
        train_users=dataset.train_users,
        history_len=dataset.history_len,
        vocab_sizes={f: dataset.vocab_size(f) for f in CATEGORICAL},
        text_widths=widths,
        user_attributes=dataset.user_attributes() if cfg.user_attributes else {},
    )


def language_model(cfg: ModelConfig, dataset: Dataset, progress: bool = True) -> nn.Module | None:
    """DIRE's language model (whole), loaded once, with the cache of its frozen layers built first if it is
    absent (resumable; under `accelerate launch` the processes split the items): the step between the dataset
    and the model. None for an item encoder without a language model."""
    if not cfg.component("item").language_model:
        return None
    from oncerec.dire.cache import build_cache, open_cache

    _check_fields(cfg, dataset)
    lm = load_language_model(cfg.item)
    # A cache of another model or data is refused; one without this layer is found, and refused by the model
    # (listing its layers) rather than rebuilt with more: `oncerec dire cache` adds layers on request.
    if cfg.item.layer and open_cache(dataset, cfg) is None:
        build_cache(dataset, cfg, progress=progress, model=lm)
    return lm


def language_model_inputs(cfg: ModelConfig, dataset: Dataset, lm: nn.Module | None = None):
    """DIRE's language model (whole) and its inputs by item index: token ids for `model.item.layer=0`, else the
    states entering layer k, read from the DIRE cache (which must exist: `language_model` builds it)."""
    from oncerec.dire.cache import cache_dir, check_cache, open_cache

    item: LMConfig = cfg.item
    lm = lm if lm is not None else load_language_model(item)
    if not item.layer:
        ids, lengths = dataset.tokens(item.lm, cfg.item_fields[0])
        return lm, partial(_token_rows, ids, lengths)
    cache = open_cache(dataset, cfg)
    if cache is None:
        raise OncerecError(
            f"model.item.layer={item.layer}: no DIRE cache in {cache_dir(dataset, cfg)}; build it first with "
            "`oncerec dire cache` and the same data= and model= (`oncerec train` builds it before the model)"
        )
    cache.states(item.layer)
    # the model (bottom still loaded) over a few items must match its top from their cached states
    check_cache(lm, cache, dataset, cfg)
    return lm, partial(cache.gather, item.layer)


def load_language_model(item: LMConfig) -> nn.Module:
    """DIRE's language model, whole, in `model.item.dtype`; refused with LoRA over no trainable layer."""
    lm: nn.Module = load_lm(item.lm, lm_dtype(item.dtype))
    all_frozen(item, lm)  # LoRA over no trainable layer: an error before any cache is built
    return lm


def _token_rows(ids: np.ndarray, lengths: np.ndarray, rows: np.ndarray) -> tuple[Tensor, Tensor]:
    x, mask = trimmed_rows(ids, lengths, rows)
    return x.long(), mask
