"""DKN (Wang et al., 2018): a knowledge-aware CNN over the title's words and their entities (item encoder
`kcnn`), and attention of each candidate over the clicked titles, then a DNN (predictor `dkn`, over the
`sequence` user encoder's clicks)."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

from oncerec.errors import ConfigError
from oncerec.models.config import ModelConfig
from oncerec.models.ctr import CTRConfig, DNNPredictor
from oncerec.models.interfaces import SEQUENCE, ComponentConfig, ItemEncoder, ModelSpec
from oncerec.models.layers import any_valid, attendable
from oncerec.models.packing import unpack_sequence
from oncerec.models.registry import register


class KCNNConfig(ComponentConfig):
    """Item encoder `kcnn` (DKN's knowledge-aware CNN over the title)."""

    window_sizes: list[int] = Field(
        default_factory=lambda: [1, 2, 3, 4],
        min_length=1,
        description="Window sizes of the KCNN filters; hidden_size / len(window_sizes) filters each.",
    )

    def check(self, model: ModelConfig) -> None:
        if model.item_fields != ["title"]:
            raise ValueError(
                f"model.item=kcnn (DKN) reads the title and its entities: set model.item_fields=[title] "
                f"(got {model.item_fields})"
            )
        filters, rest = divmod(model.hidden_size, len(self.window_sizes))
        if rest or not filters:
            raise ValueError(
                f"model.item=kcnn: model.hidden_size {model.hidden_size} must be a multiple of the number of "
                f"model.item.window_sizes ({len(self.window_sizes)})"
            )


@register("item", "kcnn")
class KCNNItemEncoder(ItemEncoder):
    """Each title word w_i has its entity e_i (0: none; `prepare` aligns MIND's title_entities with the
    words). The entity's pretrained vector (entity_embedding.vec, fixed, as the paper's TransE vectors) is
    mapped to the word space, g(e) = tanh(M e + b), and stacked with the word as a second channel aligned
    with it: W = [[w_1, g(e_1)], ..., [w_n, g(e_n)]]. For each window size l (`window_sizes`),
    hidden_size / len(window_sizes) filters h give c_i = ReLU(h * W_{i:i+l-1} + b), max-pooled over i; the
    window sizes' features are concatenated.

    A word without an entity has a zero entity channel. Windows start at every word and read zeros past the
    text's end, so a title shorter than l still has one window and a vector never depends on its batch. The
    paper's third channel, the mean of an entity's neighbours in the knowledge graph, needs the graph's
    triples, which MIND does not ship: it is left out."""

    config_class = KCNNConfig
    reads_entities = True  # the Recommender then gathers `title_entities`

    def __init__(self, cfg: KCNNConfig, model: ModelConfig, words: nn.Module, spec: ModelSpec):
        super().__init__()
        table = spec.entity_vectors
        if table is None or not table.any():
            raise ConfigError(
                "model.item=kcnn (DKN) needs entity vectors: the dataset has no title entity with a vector "
                "(MIND's news.tsv title_entities and each split's entity_embedding.vec; the demo data has both)"
            )
        filters = model.hidden_size // len(cfg.window_sizes)
        self.words = words
        self.entities = nn.Embedding.from_pretrained(torch.from_numpy(table), freeze=True, padding_idx=0)
        self.transform = nn.Sequential(nn.Linear(table.shape[1], words.dim), nn.Tanh())
        self.convs = nn.ModuleList(nn.Conv1d(2 * words.dim, filters, size) for size in cfg.window_sizes)
        self.drop = nn.Dropout(model.dropout)

    def forward(self, content: dict[str, Tensor]) -> Tensor:
        ids, mask, entities = content["title"], content["title_mask"], content["title_entities"]
        g = self.transform(self.entities(entities)) * (entities > 0).unsqueeze(-1)
        x = torch.cat([self.words(ids), g], dim=-1)
        x = self.drop(x).masked_fill(~mask.unsqueeze(-1), 0).transpose(1, 2)  # [N, 2 * E, L]
        start = attendable(mask).unsqueeze(1)  # windows starting at a word (an empty text: one, zeroed below)
        pooled = [
            conv(F.pad(x, (0, conv.kernel_size[0] - 1))).relu().masked_fill(~start, float("-inf")).amax(-1)
            for conv in self.convs
        ]
        return torch.cat(pooled, dim=-1) * any_valid(mask).to(x.dtype)


@register("predictor", "dkn")
class DKNPredictor(DNNPredictor):
    """DKN's attention: for the candidate title t_j, each clicked title t_k gets the weight
    s_k = softmax_k(H([e(t_k), e(t_j)])), H a DNN (one hidden layer of `attention_hidden`, ReLU) over the two
    KCNN vectors; the user vector is u = sum_k s_k e(t_k) (softmax-normalised, unlike DIN's), and the DNN
    head scores [u, c, u * c] (the paper's G: a DNN over the user and the candidate; the product field as
    for every MLP head here). Needs `model.user=sequence`."""

    config_class = CTRConfig
    takes = SEQUENCE

    def __init__(self, cfg: CTRConfig, model: ModelConfig, spec: ModelSpec):
        super().__init__(cfg, model, spec)
        # H's first layer over [h, c], split by input so that the [B, K, H, 2d] concatenation is never built
        self.att_hist = nn.Linear(self.dim, model.attention_hidden)
        self.att_cand = nn.Linear(self.dim, model.attention_hidden, bias=False)
        self.att_out = nn.Sequential(nn.ReLU(), nn.Linear(model.attention_hidden, 1))

    def forward(self, user: Tensor, candidates: Tensor) -> Tensor:
        hist, mask = unpack_sequence(user)  # [B, H, d], [B, H]
        hidden = self.att_hist(hist).unsqueeze(1) + self.att_cand(candidates).unsqueeze(2)  # [B, K, H, a]
        logits = self.att_out(hidden).squeeze(-1).masked_fill(~attendable(mask).unsqueeze(1), float("-inf"))
        weights = torch.softmax(logits, dim=-1) * any_valid(mask).unsqueeze(1).to(hidden.dtype)
        interest = torch.einsum("bkh,bhd->bkd", weights, hist)
        return self.logits(self.fields(interest, candidates))
