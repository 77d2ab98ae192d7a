"""The one registry: config names -> component classes. Every class of a kind has the same constructor.

item encoders:  cls(cfg: ModelConfig, words: WordEmbedding | None, spec: dict); a class with
                `own_inputs = True` gets no word table and gathers its own inputs by item index
user encoders:  cls(cfg: ModelConfig, spec: dict)
predictors:     cls(cfg: ModelConfig, spec: dict)

A predictor with `pointwise = True` (the CTR models) is trained with binary cross-entropy under exp.loss=auto.
A user encoder with `gives_sequence = True` (`sequence`) pairs only with a predictor with
`takes_sequence = True` (`din`, `dkn`, `bst`); the Recommender checks this, and the same for NPA's personalised
attention: an item encoder with `gives_word_states` (`npa`: word states, not a vector) pairs only with a user
encoder with `takes_word_states`, a user encoder with `gives_word_key` only with a predictor with
`takes_word_key`.
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
from oncerec.models.item.kcnn import KCNNItemEncoder
from oncerec.models.item.lm import LMItemEncoder
from oncerec.models.item.words import WordStatesItemEncoder
from oncerec.models.predictors.ctr import (
    AutoIntPredictor,
    BSTPredictor,
    DCNPredictor,
    DCNv2Predictor,
    DeepFMPredictor,
    DINPredictor,
    DKNPredictor,
    DNNPredictor,
    FinalMLPPredictor,
    GDCNPredictor,
    MaskNetPredictor,
    PNNPredictor,
)
from oncerec.models.predictors.dot import DotPredictor, PersonalDotPredictor, TargetAwarePredictor
from oncerec.models.user.attention import AdditiveUser, PolyUser, SelfAttentionUser
from oncerec.models.user.fastformer import FastformerUser
from oncerec.models.user.gru import GRUUser
from oncerec.models.user.npa import NPAUser
from oncerec.models.user.pool import PoolUser
from oncerec.models.user.sequence import SequenceUser

REGISTRY: dict[str, dict[str, type]] = {
    "item": {
        "cnn": CNNItemEncoder,
        "attention": AttentionItemEncoder,
        "fastformer": FastformerItemEncoder,
        "pool": PoolItemEncoder,
        "id": IdItemEncoder,
        "lm": LMItemEncoder,
        "npa": WordStatesItemEncoder,
        "kcnn": KCNNItemEncoder,
    },
    "user": {
        "attention": AdditiveUser,
        "self_attention": SelfAttentionUser,
        "gru": GRUUser,
        "fastformer": FastformerUser,
        "pool": PoolUser,
        "poly": PolyUser,
        "sequence": SequenceUser,
        "npa": NPAUser,
    },
    "predictor": {
        "dot": DotPredictor,
        "target_aware": TargetAwarePredictor,
        "npa": PersonalDotPredictor,
        # CTR models: pointwise logits, binary cross-entropy under exp.loss=auto (see predictors/ctr.py)
        "dnn": DNNPredictor,
        "dcn": DCNPredictor,
        "dcnv2": DCNv2Predictor,
        "deepfm": DeepFMPredictor,
        "pnn": PNNPredictor,
        "din": DINPredictor,
        "finalmlp": FinalMLPPredictor,
        "autoint": AutoIntPredictor,
        "dkn": DKNPredictor,
        "masknet": MaskNetPredictor,
        "gdcn": GDCNPredictor,
        "bst": BSTPredictor,
    },
}


def lookup(kind: str, name: str) -> type:
    table = REGISTRY[kind]
    if name not in table:
        raise ConfigError(f"model.{kind}={name}: unknown {kind} component; valid: {', '.join(table)}")
    return table[name]
