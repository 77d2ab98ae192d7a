"""The one registry: config names -> component classes. Every class of a kind has the same constructor.

item encoders:  cls(cfg: ModelConfig, words: WordEmbedding, spec: dict)
user encoders:  cls(cfg: ModelConfig, spec: dict)
predictors:     cls(cfg: ModelConfig, spec: dict)
"""

from __future__ import annotations

from oncerec.errors import ConfigError
from oncerec.models.item.fields import (
    AttentionItemEncoder,
    CNNItemEncoder,
    FastformerItemEncoder,
    IdItemEncoder,
    PoolItemEncoder,
)
from oncerec.models.predictors.dot import DotPredictor, TargetAwarePredictor
from oncerec.models.user.attention import AdditiveUser, PolyUser, SelfAttentionUser
from oncerec.models.user.fastformer import FastformerUser
from oncerec.models.user.gru import GRUUser
from oncerec.models.user.pool import PoolUser

REGISTRY: dict[str, dict[str, type]] = {
    "item": {
        "cnn": CNNItemEncoder,
        "attention": AttentionItemEncoder,
        "fastformer": FastformerItemEncoder,
        "pool": PoolItemEncoder,
        "id": IdItemEncoder,
    },
    "user": {
        "attention": AdditiveUser,
        "self_attention": SelfAttentionUser,
        "gru": GRUUser,
        "fastformer": FastformerUser,
        "pool": PoolUser,
        "poly": PolyUser,
    },
    "predictor": {
        "dot": DotPredictor,
        "target_aware": TargetAwarePredictor,
    },
}


def lookup(kind: str, name: str) -> type:
    table = REGISTRY[kind]
    if name not in table:
        raise ConfigError(f"model.{kind}={name}: unknown {kind} component; valid: {', '.join(table)}")
    return table[name]
