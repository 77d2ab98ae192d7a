"""Click-through-rate (CTR) predictors: a learned function of the user representation and each candidate's
vector, scored pointwise (one logit per candidate, trained with binary cross-entropy: `exp.loss=auto`).

The user vector u [B, d] and the candidate vector c [B, K, d] are the two *fields* of a classic CTR model
(each is a dense "embedding" here: pooled text, categories or an item id, whatever the item encoder gives).
Models that have no multiplicative interaction of their own (DNN, the MLP head of DIN) also get the
element-wise product u * c as a third field: without it an MLP struggles to learn even a dot product
(Rendle et al., 2020). Shared parts: `MLP`, `pairwise_inner` (the FM / IPNN interaction), `CrossNetwork`
(DCN and DCNv2), `GatedCrossNetwork` (GDCN), `InteractingLayer` (AutoInt) and `MaskBlock` (MaskNet).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from oncerec.config.schema import ModelConfig
from oncerec.errors import ConfigError
from oncerec.models.interfaces import SEQUENCE, ModelSpec, Predictor
from oncerec.models.layers import any_valid, attendable
from oncerec.models.registry import register
from oncerec.models.user.sequence import unpack_sequence


class MLP(nn.Sequential):
    """Linear -> ReLU (or `act`) -> Dropout per hidden width, then a linear output of width `out` (None: no
    output layer; `out_dim` is then the last hidden width)."""

    def __init__(
        self, in_dim: int, layers: list[int], dropout: float, out: int | None = 1, act: type = nn.ReLU
    ):
        mods: list[nn.Module] = []
        for width in layers:
            mods += [nn.Linear(in_dim, width), act(), nn.Dropout(dropout)]
            in_dim = width
        if out is not None:
            mods.append(nn.Linear(in_dim, out))
        super().__init__(*mods)
        self.out_dim = out if out is not None else in_dim


def pairwise_inner(fields: Tensor) -> Tensor:
    """Inner products of every pair of fields: [..., F, d] -> [..., F(F-1)/2]."""
    i, j = torch.triu_indices(fields.shape[-2], fields.shape[-2], 1, device=fields.device)
    return (fields[..., i, :] * fields[..., j, :]).sum(-1)


class CrossNetwork(nn.Module):
    """x_{l+1} = x_0 * f_l(x_l) + b_l + x_l. DCN: f_l(x) = w_l . x (one scalar per layer); DCNv2: f_l(x) =
    W_l x + c_l (a full matrix), so every layer adds one more degree of explicit feature crossing."""

    def __init__(self, dim: int, layers: int, matrix: bool):
        super().__init__()
        self.maps = nn.ModuleList(nn.Linear(dim, dim if matrix else 1, bias=matrix) for _ in range(layers))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(dim)) for _ in range(layers))

    def forward(self, x0: Tensor) -> Tensor:
        x = x0
        for f, b in zip(self.maps, self.biases, strict=True):
            x = x0 * f(x) + b + x
        return x


class GatedCrossNetwork(nn.Module):
    """GDCN's gated cross layers (Wang et al., 2023): c_{l+1} = c_0 * (W_l c_l + b_l) * sigmoid(W_g,l c_l) + c_l.
    The information gate sigmoid(W_g c_l) weighs each cross feature, so deep cross layers stop adding noise."""

    def __init__(self, dim: int, layers: int):
        super().__init__()
        self.cross = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        self.gate = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in range(layers))

    def forward(self, c0: Tensor) -> Tensor:
        c = c0
        for w, g in zip(self.cross, self.gate, strict=True):
            c = c0 * w(c) * torch.sigmoid(g(c)) + c
        return c


class MaskBlock(nn.Module):
    """MaskNet's block (Wang et al., 2021): the instance-guided mask V_mask = W_2 ReLU(W_1 V_emb + b_1) + b_2,
    made from the whole feature embedding V_emb (its aggregation layer `ratio` times as wide as the input),
    multiplies the block's input feature-wise; then V_out = ReLU(LN(W_h (V_mask * V_in)))."""

    def __init__(self, emb_dim: int, in_dim: int, out_dim: int, ratio: float):
        super().__init__()
        hidden = max(1, round(ratio * in_dim))
        self.mask = nn.Sequential(nn.Linear(emb_dim, hidden), nn.ReLU(), nn.Linear(hidden, in_dim))
        self.hidden = nn.Linear(in_dim, out_dim, bias=False)  # LayerNorm's own shift makes a bias redundant
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, emb: Tensor, x: Tensor) -> Tensor:
        return torch.relu(self.norm(self.hidden(self.mask(emb) * x)))


class InteractingLayer(nn.Module):
    """AutoInt: multi-head self-attention among the fields, a residual projection, ReLU."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"model.hidden_size {dim} must be divisible by model.interaction_heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.res = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """x [..., F, d] -> [..., F, d]."""
        q, k, v = self.qkv(x).unflatten(-1, (3, self.heads, -1)).unbind(-3)  # each [..., F, heads, d/heads]
        att = torch.softmax(torch.einsum("...fhe,...ghe->...hfg", q, k) / q.shape[-1] ** 0.5, dim=-1)
        out = torch.einsum("...hfg,...ghe->...fhe", att, v).flatten(-2)
        return torch.relu(out + self.res(x))


class CTRPredictor(Predictor):
    """Base: builds the fields [B, K, F, d] from (u, c[, u * c]); a subclass turns them into logits [B, K]."""

    pointwise = True  # trained with binary cross-entropy under exp.loss=auto
    product_field = False  # add u * c as a third field
    reads: ClassVar[frozenset[str]] = frozenset({"hidden_size"})

    def __init__(self, cfg: ModelConfig, spec: ModelSpec):
        super().__init__()
        self.dim = cfg.hidden_size
        self.num_fields = 3 if self.product_field else 2

    def fields(self, user: Tensor, candidates: Tensor) -> Tensor:
        """user [B, d] (or one per candidate, [B, K, d]), candidates [B, K, d] -> fields [B, K, F, d]."""
        if user.dim() == 2:
            user = user.unsqueeze(1).expand_as(candidates)
        if user.shape != candidates.shape:
            raise ValueError(
                f"{type(self).__name__} scores one user vector per candidate; got user {tuple(user.shape)} for "
                f"candidates {tuple(candidates.shape)} (a user encoder with several vectors, e.g. poly?)"
            )
        parts = [user, candidates] + ([user * candidates] if self.product_field else [])
        return torch.stack(parts, dim=-2)

    def forward(self, user: Tensor, candidates: Tensor) -> Tensor:
        return self.logits(self.fields(user, candidates))

    def logits(self, fields: Tensor) -> Tensor:
        raise NotImplementedError


@register("predictor", "dnn")
class DNNPredictor(CTRPredictor):
    """DNN (YouTube-style deep model): an MLP over the concatenated fields [u, c, u * c]."""

    product_field = True
    reads: ClassVar[frozenset[str]] = CTRPredictor.reads | {"mlp_layers", "dropout"}

    def __init__(self, cfg: ModelConfig, spec: ModelSpec):
        super().__init__(cfg, spec)
        self.mlp = MLP(self.num_fields * self.dim, cfg.mlp_layers, cfg.dropout)

    def logits(self, fields: Tensor) -> Tensor:
        return self.mlp(fields.flatten(-2)).squeeze(-1)


@register("predictor", "dcn")
class DCNPredictor(CTRPredictor):
    """DCN (Wang et al., 2017): a cross network and an MLP side by side over [u, c], joined by a linear
    layer. The cross layers build the u x c interactions explicitly."""

    matrix = False
    reads: ClassVar[frozenset[str]] = CTRPredictor.reads | {"cross_layers", "mlp_layers", "dropout"}

    def __init__(self, cfg: ModelConfig, spec: ModelSpec):
        super().__init__(cfg, spec)
        width = self.num_fields * self.dim
        self.cross = self.cross_network(width, cfg.cross_layers)
        self.deep = MLP(width, cfg.mlp_layers, cfg.dropout, out=None)
        self.out = nn.Linear(width + self.deep.out_dim, 1)

    def cross_network(self, width: int, layers: int) -> nn.Module:
        return CrossNetwork(width, layers, self.matrix)

    def logits(self, fields: Tensor) -> Tensor:
        x = fields.flatten(-2)
        return self.out(torch.cat([self.cross(x), self.deep(x)], dim=-1)).squeeze(-1)


@register("predictor", "dcnv2")
class DCNv2Predictor(DCNPredictor):
    """DCN-V2 (Wang et al., 2021): DCN whose cross layers use full weight matrices (parallel structure)."""

    matrix = True


@register("predictor", "gdcn")
class GDCNPredictor(DCNPredictor):
    """GDCN (Wang et al., 2023), the parallel form GDCN-P: gated cross layers beside an MLP over [u, c],
    joined by a linear layer (the layout of `dcn` and `dcnv2` here, so the three differ in the cross layer
    alone)."""

    reads: ClassVar[frozenset[str]] = frozenset({"hidden_size", "cross_layers", "mlp_layers", "dropout"})

    def cross_network(self, width: int, layers: int) -> nn.Module:
        return GatedCrossNetwork(width, layers)


@register("predictor", "masknet")
class MaskNetPredictor(CTRPredictor):
    """Serial MaskNet (Wang et al., 2021): the fields [u, c] are layer-normalised one by one (LN_EMB) and go
    through MaskBlocks in series, one per width of `mlp_layers`; every block's mask is made from the raw
    embedding [u, c] (`mask_ratio`: its aggregation layer's width over the masked input's). A linear layer
    reads the last block. The mask's feature-wise product is the model's multiplicative interaction, so no
    u * c field is added."""

    reads: ClassVar[frozenset[str]] = frozenset({"hidden_size", "mlp_layers", "mask_ratio"})

    def __init__(self, cfg: ModelConfig, spec: ModelSpec):
        super().__init__(cfg, spec)
        if not cfg.mlp_layers:
            raise ConfigError("model.predictor=masknet needs model.mlp_layers (the widths of its MaskBlocks)")
        width = self.num_fields * self.dim
        self.emb_norm = nn.LayerNorm(self.dim)
        ins = [width, *cfg.mlp_layers[:-1]]
        self.blocks = nn.ModuleList(
            MaskBlock(width, i, o, cfg.mask_ratio) for i, o in zip(ins, cfg.mlp_layers, strict=True)
        )
        self.out = nn.Linear(cfg.mlp_layers[-1], 1)

    def logits(self, fields: Tensor) -> Tensor:
        emb = fields.flatten(-2)
        x = self.emb_norm(fields).flatten(-2)
        for block in self.blocks:
            x = block(emb, x)
        return self.out(x).squeeze(-1)


@register("predictor", "deepfm")
class DeepFMPredictor(CTRPredictor):
    """DeepFM (Guo et al., 2017): first-order linear terms + factorisation-machine pairwise interactions
    (for the two fields: the dot product u . c, so DeepFM contains the matching model) + an MLP."""

    reads: ClassVar[frozenset[str]] = CTRPredictor.reads | {"mlp_layers", "dropout"}

    def __init__(self, cfg: ModelConfig, spec: ModelSpec):
        super().__init__(cfg, spec)
        self.linear = nn.Linear(self.num_fields * self.dim, 1)
        self.deep = MLP(self.num_fields * self.dim, cfg.mlp_layers, cfg.dropout)

    def logits(self, fields: Tensor) -> Tensor:
        x = fields.flatten(-2)
        return (self.linear(x) + self.deep(x)).squeeze(-1) + pairwise_inner(fields).sum(-1)


@register("predictor", "pnn")
class PNNPredictor(CTRPredictor):
    """PNN (Qu et al., 2016), inner-product variant: the product layer holds the fields themselves (linear
    signal) and the inner products of every field pair (product signal); an MLP on top."""

    reads: ClassVar[frozenset[str]] = CTRPredictor.reads | {"mlp_layers", "dropout"}

    def __init__(self, cfg: ModelConfig, spec: ModelSpec):
        super().__init__(cfg, spec)
        pairs = self.num_fields * (self.num_fields - 1) // 2
        self.mlp = MLP(self.num_fields * self.dim + pairs, cfg.mlp_layers, cfg.dropout)

    def logits(self, fields: Tensor) -> Tensor:
        return self.mlp(torch.cat([fields.flatten(-2), pairwise_inner(fields)], dim=-1)).squeeze(-1)


@register("predictor", "autoint")
class AutoIntPredictor(CTRPredictor):
    """AutoInt+ (Song et al., 2019): stacked multi-head self-attention among the fields [u, c, u * c]
    (`interaction_layers`, `interaction_heads`), a linear read-out, plus a parallel MLP (none when
    mlp_layers is empty)."""

    product_field = True
    reads: ClassVar[frozenset[str]] = CTRPredictor.reads | {
        "interaction_heads",
        "interaction_layers",
        "mlp_layers",
        "dropout",
    }

    def __init__(self, cfg: ModelConfig, spec: ModelSpec):
        super().__init__(cfg, spec)
        self.layers = nn.Sequential(
            *(InteractingLayer(self.dim, cfg.interaction_heads) for _ in range(cfg.interaction_layers))
        )
        self.readout = nn.Linear(self.num_fields * self.dim, 1)
        self.deep = MLP(self.num_fields * self.dim, cfg.mlp_layers, cfg.dropout) if cfg.mlp_layers else None

    def logits(self, fields: Tensor) -> Tensor:
        out = self.readout(self.layers(fields).flatten(-2))
        if self.deep is not None:
            out = out + self.deep(fields.flatten(-2))
        return out.squeeze(-1)


@register("predictor", "finalmlp")
class FinalMLPPredictor(CTRPredictor):
    """FinalMLP (Mao et al., 2023): two MLP streams over [u, c]; stream 1's input is gated by the user field,
    stream 2's by the candidate field (gates 2 * sigmoid(MLP(context)), "feature selection"); the streams are
    fused by a multi-head bilinear layer (`interaction_heads`)."""

    reads: ClassVar[frozenset[str]] = CTRPredictor.reads | {"interaction_heads", "mlp_layers", "dropout"}

    def __init__(self, cfg: ModelConfig, spec: ModelSpec):
        super().__init__(cfg, spec)
        width = self.num_fields * self.dim
        if not cfg.mlp_layers:
            raise ConfigError(
                "model.predictor=finalmlp needs model.mlp_layers (the width of its two streams)"
            )
        self.gates = nn.ModuleList(MLP(self.dim, [self.dim], 0.0, out=width) for _ in range(2))
        self.streams = nn.ModuleList(MLP(width, cfg.mlp_layers, cfg.dropout, out=None) for _ in range(2))
        m, heads = self.streams[0].out_dim, cfg.interaction_heads
        if m % heads:
            raise ConfigError(
                f"model.predictor=finalmlp: the last of model.mlp_layers ({m}) must be divisible by "
                f"model.interaction_heads ({heads})"
            )
        self.heads = heads
        self.linear = nn.ModuleList([nn.Linear(m, 1), nn.Linear(m, 1, bias=False)])
        self.bilinear = nn.Parameter(torch.randn(heads, m // heads, m // heads) * (heads / m))

    def logits(self, fields: Tensor) -> Tensor:
        x = fields.flatten(-2)
        o1, o2 = (
            stream(x * 2 * torch.sigmoid(gate(fields[..., f, :])))
            for f, gate, stream in zip((0, 1), self.gates, self.streams, strict=True)
        )
        out = self.linear[0](o1) + self.linear[1](o2)
        h1, h2 = o1.unflatten(-1, (self.heads, -1)), o2.unflatten(-1, (self.heads, -1))
        return out.squeeze(-1) + torch.einsum("...hi,hij,...hj->...", h1, self.bilinear, h2)


@register("predictor", "din")
class DINPredictor(DNNPredictor):
    """DIN (Zhou et al., 2018): target attention. For each candidate, an activation unit (an MLP over
    [h, c, h - c, h * c], hidden width `attention_hidden`, PReLU) weighs every clicked item h; the weighted
    sum (not softmax-normalised, as in the paper: it keeps the intensity of an interest) is that candidate's
    user vector, and the DNN head scores [v, c, v * c]. Needs `model.user=sequence` (the clicked items, not a
    pooled vector). Costs B x K x H x d per scoring batch: lower exp.eval_batch_size for long impressions."""

    takes = SEQUENCE
    reads: ClassVar[frozenset[str]] = DNNPredictor.reads | {"attention_hidden"}

    def __init__(self, cfg: ModelConfig, spec: ModelSpec):
        super().__init__(cfg, spec)
        d, a = self.dim, cfg.attention_hidden
        # One linear layer over [h, c, h - c, h * c], split by input so the [B, K, H, 4d] concatenation is
        # never built: W [h, c, h - c, h * c] = (W_1 + W_3) h + (W_2 - W_3) c + W_4 (h * c).
        self.att_hist = nn.Linear(d, a)
        self.att_cand = nn.Linear(d, a, bias=False)
        self.att_prod = nn.Linear(d, a, bias=False)
        self.att_out = nn.Sequential(nn.PReLU(), nn.Linear(a, 1))

    def forward(self, user: Tensor, candidates: Tensor) -> Tensor:
        hist, mask = unpack_sequence(user)  # [B, H, d], [B, H]
        hidden = (
            self.att_hist(hist).unsqueeze(1)
            + self.att_cand(candidates).unsqueeze(2)
            + self.att_prod(hist.unsqueeze(1) * candidates.unsqueeze(2))
        )  # [B, K, H, a]
        weights = self.att_out(hidden).squeeze(-1) * mask.unsqueeze(1).to(hidden.dtype)
        interest = torch.einsum("bkh,bhd->bkd", weights, hist)
        return self.logits(self.fields(interest, candidates))


@register("predictor", "bst")
class BSTPredictor(CTRPredictor):
    """BST (Chen et al., 2019): a Transformer over the clicked items and the candidate. For each candidate the
    sequence [h_1 .. h_H, c] gets position embeddings (the paper's position is the time from the click to
    the target; here the recency rank: the candidate 0, the last click 1, ...), goes through `num_layers`
    Transformer layers (`num_heads` heads; post-norm, LeakyReLU feed-forward, as in the paper:
    S' = LN(S + Dropout(MH(S))), F = LN(S' + Dropout(LeakyReLU(S' W_1 + b_1) W_2 + b_2))), and the outputs of
    every position, concatenated, feed an MLP (`mlp_layers`, LeakyReLU). Needs `model.user=sequence`.
    Padded clicks are masked in the attention and their outputs zeroed, so a score does not depend on the
    batch."""

    takes = SEQUENCE
    chunk = 2048  # sequences per Transformer call: bounds the [B * K, H + 1, 4d] feed-forward activations
    reads: ClassVar[frozenset[str]] = frozenset(
        {"hidden_size", "num_heads", "num_layers", "mlp_layers", "dropout"}
    )

    def __init__(self, cfg: ModelConfig, spec: ModelSpec):
        super().__init__(cfg, spec)
        d, length = self.dim, spec.history_len + 1
        if d % cfg.num_heads:
            raise ConfigError(f"model.hidden_size {d} must be divisible by model.num_heads {cfg.num_heads}")
        self.pos = nn.Embedding(length, d)
        layer = nn.TransformerEncoderLayer(
            d, cfg.num_heads, 4 * d, cfg.dropout, activation=F.leaky_relu, batch_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, cfg.num_layers, enable_nested_tensor=False)
        self.mlp = MLP(length * d, cfg.mlp_layers, cfg.dropout, act=nn.LeakyReLU)

    def sequences(self, user: Tensor, candidates: Tensor) -> tuple[Tensor, Tensor]:
        """The packed history [B, H, d + 1] and candidates [B, K, d] -> sequences [B, K, H + 1, d] (positions
        added) and their mask."""
        hist, mask = unpack_sequence(user)
        (b, h, d), k = hist.shape, candidates.shape[1]
        seq = torch.cat([hist.unsqueeze(1).expand(b, k, h, d), candidates.unsqueeze(2)], dim=2)
        recency = (mask.sum(1, keepdim=True) - torch.arange(h, device=mask.device)).clamp(min=0)
        pos = torch.cat([recency * mask, recency.new_zeros(b, 1)], dim=1)  # [B, H + 1]
        full = torch.cat([mask, mask.new_ones(b, 1)], dim=1)
        return seq + self.pos(pos).unsqueeze(1), full.unsqueeze(1).expand(b, k, h + 1)

    def forward(self, user: Tensor, candidates: Tensor) -> Tensor:
        seq, mask = self.sequences(user, candidates)
        b, k = candidates.shape[:2]
        flat, flat_mask = seq.flatten(0, 1), mask.flatten(0, 1)
        out = torch.cat(
            [
                self.transformer(s, src_key_padding_mask=~m)
                for s, m in zip(flat.split(self.chunk), flat_mask.split(self.chunk), strict=True)
            ]
        )
        out = out * flat_mask.unsqueeze(-1).to(out.dtype)
        return self.mlp(out.flatten(1)).view(b, k)


@register("predictor", "dkn")
class DKNPredictor(DNNPredictor):
    """DKN's attention (Wang et al., 2018): for the candidate title t_j, each clicked title t_k gets the weight
    s_k = softmax_k(H([e(t_k), e(t_j)])), H a DNN (one hidden layer of `attention_hidden`, ReLU) over the two
    KCNN vectors; the user vector is u = sum_k s_k e(t_k) (softmax-normalised, unlike DIN's), and the DNN
    head scores [u, c, u * c] (the paper's G: a DNN over the user and the candidate; the product field as
    for every MLP head here). Needs `model.user=sequence`."""

    takes = SEQUENCE
    reads: ClassVar[frozenset[str]] = frozenset({"hidden_size", "attention_hidden", "mlp_layers", "dropout"})

    def __init__(self, cfg: ModelConfig, spec: ModelSpec):
        super().__init__(cfg, spec)
        # H's first layer over [h, c], split by input so that the [B, K, H, 2d] concatenation is never built
        self.att_hist = nn.Linear(self.dim, cfg.attention_hidden)
        self.att_cand = nn.Linear(self.dim, cfg.attention_hidden, bias=False)
        self.att_out = nn.Sequential(nn.ReLU(), nn.Linear(cfg.attention_hidden, 1))

    def forward(self, user: Tensor, candidates: Tensor) -> Tensor:
        hist, mask = unpack_sequence(user)  # [B, H, d], [B, H]
        hidden = self.att_hist(hist).unsqueeze(1) + self.att_cand(candidates).unsqueeze(2)  # [B, K, H, a]
        logits = self.att_out(hidden).squeeze(-1).masked_fill(~attendable(mask).unsqueeze(1), float("-inf"))
        weights = torch.softmax(logits, dim=-1) * any_valid(mask).unsqueeze(1).to(hidden.dtype)
        interest = torch.einsum("bkh,bhd->bkd", weights, hist)
        return self.logits(self.fields(interest, candidates))
