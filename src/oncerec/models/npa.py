"""NPA (Wu et al., 2019): personalised attention at both levels, in three parts that work only together.

The item encoder (`model.item=npa`) gives a title's CNN word states, not one vector: NPA pools them with an
attention query made from the *user's* id, for clicked and candidate news alike. So the item representation is
the states themselves (user-independent: each item is still encoded once, in training and in the fast
evaluation) and the pooling happens where the user is known.

The user encoder (`model.user=npa`): the user-id embedding e_u gives two preference queries, q_w = ReLU(V_w e_u +
v_w) for words and q_d = ReLU(V_d e_u + v_d) for news. Each clicked title's word states c_i are pooled by
softmax_i(q_w . tanh(W_w c_i + b_w)), the clicked news vectors r_j by softmax_j(q_d . tanh(W_d r_j + b_d)):
u = sum_j alpha_j r_j. That is the additive form of the authors' code (Microsoft Recommenders); the paper
prints softmax_i(c_i . tanh(W_p q_w + b_p)) (`model.item.npa_attention=paper`), whose logits grow with the
states. The representation is [u, q_w].

The predictor (`model.predictor=npa`) pools each candidate's words with the same word query and scores u . r'.

The form of the attention is the item encoder's key (`model.item.npa_attention`): its keys are packed beside
the states, and the user encoder and predictor read the form from there.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from oncerec.models.config import CATEGORICAL, ModelConfig
from oncerec.models.interfaces import (
    VECTOR_AND_WORD_QUERY,
    WORD_STATES,
    ComponentConfig,
    ItemEncoder,
    ModelSpec,
    Predictor,
    UserEncoder,
)
from oncerec.models.layers import UserEmbedding, any_valid, attendable
from oncerec.models.naml import WordCNN
from oncerec.models.packing import pack_sequence, unpack_sequence
from oncerec.models.registry import register


class NPAItemConfig(ComponentConfig):
    """Item encoder `npa`: the CNN word states of one text field (NPA: the title)."""

    kernel_size: int = Field(3, ge=1, description="Window of the CNN over words.")
    npa_attention: Literal["additive", "paper"] = Field(
        "additive",
        description="Where the personalised attention's tanh sits (NPA's user encoder and predictor read it "
        "here). `additive` (the authors' code in Microsoft Recommenders): a_i = q . tanh(W c_i + b), bounded by "
        "|q|; `paper` (the equation as printed): a_i = c_i . tanh(W q + b), whose logits grow with the states and "
        "trains worse (see the results page).",
    )

    def check(self, model: ModelConfig) -> None:
        if len(model.item_fields) != 1 or model.item_fields[0] in CATEGORICAL:
            raise ValueError(
                f"model.item=npa reads one text field (NPA: the title); got model.item_fields {model.item_fields}"
            )


class NPAUserConfig(ComponentConfig):
    """User encoder `npa`: personalised attention over the clicked titles' words and the clicked news."""

    user_id_dim: int = Field(50, ge=1, description="Width of the user-id embedding.")


def attention_keys(item: NPAItemConfig, model: ModelConfig, width: int) -> nn.Module | None:
    """What turns states [..., width] into the keys of NPA's personalised attention: tanh(W v + b)
    (attention_hidden wide) in the additive form, none (the states are their own keys) in the paper's."""
    if item.npa_attention == "paper":
        return None
    return nn.Sequential(nn.Linear(width, model.attention_hidden), nn.Tanh())


def key_width(item: NPAItemConfig, model: ModelConfig) -> int:
    """The width of a title word's attention key beside its state in the packed form (0: the state itself)."""
    return 0 if item.npa_attention == "paper" else model.attention_hidden


def unpack_words(packed: Tensor, d: int, a: int) -> tuple[Tensor, Tensor, Tensor]:
    """[..., W * (d + a + 1)] (what `WordStatesItemEncoder` gives; d: hidden_size, a: `key_width`) -> word
    states [..., W, d], their attention keys [..., W, a] (the states where a = 0: the paper's form) and the mask
    [..., W]."""
    both, mask = unpack_sequence(packed.unflatten(-1, (-1, d + a + 1)).flatten(0, -3))
    both, mask = both.view(*packed.shape[:-1], -1, d + a), mask.view(*packed.shape[:-1], -1)
    return both[..., :d], (both[..., d:] if a else both), mask


def personal_pool(values: Tensor, keys: Tensor, mask: Tensor, query: Tensor) -> Tensor:
    """NPA's personalised attention: sum_i softmax_i(k_i . q) v_i over values v_i [..., L, F] with keys k_i
    [..., L, A], their mask [..., L] and the user's query q [..., A]; zero when no position is valid. The keys
    are the values themselves in the paper's form, tanh(W v_i + b) in the additive one."""
    logits = torch.einsum("...la,...a->...l", keys, query)
    weights = torch.softmax(logits.masked_fill(~attendable(mask), float("-inf")), dim=-1)
    return torch.einsum("...l,...lf->...f", weights, values) * any_valid(mask).to(values.dtype)


@register("item", "npa")
class WordStatesItemEncoder(ItemEncoder):
    """The CNN word states c_i of one text field (NPA: the title), their attention keys (additive form) and
    their mask, packed to the dataset's longest text: [N, W * (hidden_size + a + 1)]. A fixed width, so that
    items of different batches concatenate; the keys are user-independent, so they are computed here, once per
    item."""

    config_class = NPAItemConfig
    gives = WORD_STATES  # pooled by NPA's user encoder and predictor, with the user's query

    def __init__(self, cfg: NPAItemConfig, model: ModelConfig, words: nn.Module, spec: ModelSpec):
        super().__init__()
        self.field = model.item_fields[0]
        self.words = words
        self.cnn = WordCNN(words.dim, model.hidden_size, cfg.kernel_size, model.dropout)
        self.keys = attention_keys(cfg, model, model.hidden_size)
        self.width = spec.text_widths[self.field]

    def forward(self, content: dict[str, Tensor]) -> Tensor:
        ids, mask = content[self.field], content[f"{self.field}_mask"]
        states = self.cnn.states(self.words(ids), mask)[:, : self.width]
        if self.keys is not None:
            states = torch.cat([states, self.keys(states)], dim=-1)
        return pack_sequence(states, mask[:, : self.width], self.width).flatten(1)


def preference_query(item: NPAItemConfig, model: ModelConfig, user_id_dim: int) -> nn.Module:
    """e_u -> the user's query: q = ReLU(V e_u + v) (attention_hidden wide) in the additive form; its
    projection tanh(W q + b) (hidden_size wide, the width of the states it meets) in the paper's."""
    layers = [nn.Linear(user_id_dim, model.attention_hidden), nn.ReLU()]
    if item.npa_attention == "paper":
        layers += [nn.Linear(model.attention_hidden, model.hidden_size), nn.Tanh()]
    return nn.Sequential(*layers)


@register("user", "npa")
class NPAUser(UserEncoder):
    config_class = NPAUserConfig
    takes, gives = WORD_STATES, VECTOR_AND_WORD_QUERY

    def __init__(self, cfg: NPAUserConfig, model: ModelConfig, spec: ModelSpec):
        super().__init__()
        # the packed word states' widths: the item encoder's form (see the module's docstring)
        self.widths = model.hidden_size, key_width(model.item, model)
        self.user_emb = UserEmbedding(spec.train_users, cfg.user_id_dim)
        self.word_query = preference_query(model.item, model, cfg.user_id_dim)
        self.news_query = preference_query(model.item, model, cfg.user_id_dim)
        self.news_keys = attention_keys(model.item, model, model.hidden_size)

    def forward(self, clicked: Tensor, mask: Tensor, user: Tensor) -> Tensor:
        """clicked [B, H, W * (d + a + 1)] packed word states, mask [B, H], user [B] -> [u, q_w]."""
        states, keys, word_mask = unpack_words(clicked, *self.widths)
        e = self.user_emb(user)
        word_query, news_query = self.word_query(e), self.news_query(e)
        news = personal_pool(states, keys, word_mask, word_query.unsqueeze(1))  # r_j [B, H, d]
        news_keys = news if self.news_keys is None else self.news_keys(news)
        return torch.cat([personal_pool(news, news_keys, mask, news_query), word_query], dim=-1)


@register("predictor", "npa")
class PersonalDotPredictor(Predictor):
    """NPA's click predictor: each candidate's word states are pooled with the user's word query q_w (the
    personalised attention of the news encoder) into r', scored u . r'."""

    takes = VECTOR_AND_WORD_QUERY

    def __init__(self, cfg: ComponentConfig, model: ModelConfig, spec: ModelSpec):
        super().__init__()
        self.widths = model.hidden_size, key_width(model.item, model)  # of the packed word states

    def forward(self, user: Tensor, candidates: Tensor) -> Tensor:
        d = self.widths[0]
        u, word_query = user[..., :d], user[..., d:]
        states, keys, mask = unpack_words(candidates, *self.widths)  # [B, K, W, d], [B, K, W, a]
        news = personal_pool(states, keys, mask, word_query.unsqueeze(1))  # r' [B, K, d]
        return torch.einsum("bd,bkd->bk", u, news)
