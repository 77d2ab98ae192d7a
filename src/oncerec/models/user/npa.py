"""NPA's user encoder (Wu et al., 2019): personalised attention at both levels.

The user-id embedding e_u gives two preference queries, q_w = ReLU(V_w e_u + v_w) for words and
q_d = ReLU(V_d e_u + v_d) for news. Each clicked title's word states c_i (from the `npa` item encoder) are
pooled by softmax_i(q_w . tanh(W_w c_i + b_w)), the clicked news vectors r_j by softmax_j(q_d . tanh(W_d r_j +
b_d)): u = sum_j alpha_j r_j. That is the additive form of the authors' code (Microsoft Recommenders); the
paper prints softmax_i(c_i . tanh(W_p q_w + b_p)) (`model.npa_attention=paper`), whose logits grow with the
states. The representation is [u, q_w]: the `npa` predictor pools each candidate's words with the same word
query and scores u . r'.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from oncerec.config.schema import ModelConfig
from oncerec.models.interfaces import VECTOR_AND_WORD_QUERY, WORD_STATES, ModelSpec, UserEncoder
from oncerec.models.item.words import attention_keys, unpack_words
from oncerec.models.layers import UserEmbedding, personal_pool
from oncerec.models.registry import register


def preference_query(cfg: ModelConfig) -> nn.Module:
    """e_u -> the user's query: q = ReLU(V e_u + v) (attention_hidden wide) in the additive form; its
    projection tanh(W q + b) (hidden_size wide, the width of the states it meets) in the paper's."""
    layers = [nn.Linear(cfg.user_id_dim, cfg.attention_hidden), nn.ReLU()]
    if cfg.npa_attention == "paper":
        layers += [nn.Linear(cfg.attention_hidden, cfg.hidden_size), nn.Tanh()]
    return nn.Sequential(*layers)


@register("user", "npa")
class NPAUser(UserEncoder):
    takes, gives = WORD_STATES, VECTOR_AND_WORD_QUERY
    reads: ClassVar[frozenset[str]] = frozenset(
        {"hidden_size", "attention_hidden", "user_id_dim", "npa_attention"}
    )

    def __init__(self, cfg: ModelConfig, spec: ModelSpec):
        super().__init__()
        self.cfg = cfg
        self.user_emb = UserEmbedding(spec.train_users, cfg.user_id_dim)
        self.word_query = preference_query(cfg)
        self.news_query = preference_query(cfg)
        self.news_keys = attention_keys(cfg, cfg.hidden_size)

    def forward(self, clicked: Tensor, mask: Tensor, user: Tensor) -> Tensor:
        """clicked [B, H, W * (d + a + 1)] packed word states, mask [B, H], user [B] -> [u, q_w]."""
        states, keys, word_mask = unpack_words(clicked, self.cfg)
        e = self.user_emb(user)
        word_query, news_query = self.word_query(e), self.news_query(e)
        news = personal_pool(states, keys, word_mask, word_query.unsqueeze(1))  # r_j [B, H, d]
        news_keys = news if self.news_keys is None else self.news_keys(news)
        return torch.cat([personal_pool(news, news_keys, mask, news_query), word_query], dim=-1)
