"""NPA's user encoder (Wu et al., 2019): personalised attention at both levels.

The user-id embedding e_u gives two preference queries, q_w = ReLU(V_w e_u + v_w) for words and
q_d = ReLU(V_d e_u + v_d) for news, each projected to an attention key k = tanh(W q + b). Each clicked title's
word states c_i (from the `npa` item encoder) are pooled by softmax_i(c_i . k_w), the clicked news vectors
r_j by softmax_j(r_j . k_d): u = sum_j alpha_j r_j. The representation is [u, k_w]: the `npa` predictor pools
each candidate's words with the same word key k_w and scores u . r'.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from oncerec.config.schema import ModelConfig
from oncerec.models.interfaces import VECTOR_AND_WORD_KEY, WORD_STATES, ModelSpec, UserEncoder
from oncerec.models.item.words import unpack_words
from oncerec.models.layers import UserEmbedding, personal_pool
from oncerec.models.registry import register


def preference_key(cfg: ModelConfig) -> nn.Module:
    """e_u -> k = tanh(W ReLU(V e_u + v) + b): the query q (attention_hidden wide) and its projection."""
    return nn.Sequential(
        nn.Linear(cfg.user_id_dim, cfg.attention_hidden),
        nn.ReLU(),
        nn.Linear(cfg.attention_hidden, cfg.hidden_size),
        nn.Tanh(),
    )


@register("user", "npa")
class NPAUser(UserEncoder):
    takes, gives = WORD_STATES, VECTOR_AND_WORD_KEY
    reads: ClassVar[frozenset[str]] = frozenset({"hidden_size", "attention_hidden", "user_id_dim"})

    def __init__(self, cfg: ModelConfig, spec: ModelSpec):
        super().__init__()
        self.dim = cfg.hidden_size
        self.user_emb = UserEmbedding(spec.train_users, cfg.user_id_dim)
        self.word_key = preference_key(cfg)
        self.news_key = preference_key(cfg)

    def forward(self, clicked: Tensor, mask: Tensor, user: Tensor) -> Tensor:
        """clicked [B, H, W * (d + 1)] packed word states, mask [B, H], user [B] -> [u, k_w] [B, 2d]."""
        states, word_mask = unpack_words(clicked, self.dim)
        e = self.user_emb(user)
        word_key, news_key = self.word_key(e), self.news_key(e)
        news = personal_pool(states, word_mask, word_key.unsqueeze(1))  # r_j [B, H, d]
        return torch.cat([personal_pool(news, mask, news_key), word_key], dim=-1)
