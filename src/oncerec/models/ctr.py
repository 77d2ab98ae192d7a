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

import torch
from pydantic import Field, field_validator
from torch import Tensor, nn

from oncerec.models.config import ModelConfig
from oncerec.models.interfaces import ComponentConfig, ModelSpec, Predictor
from oncerec.models.registry import register


class CTRConfig(ComponentConfig):
    """A CTR predictor with an MLP."""

    mlp_layers: list[int] = Field(
        default_factory=lambda: [256, 128],
        description="Hidden widths of its MLP (the DNN, DCN, DCNv2, GDCN, DeepFM, PNN, DIN, DKN and BST heads, "
        "FinalMLP's streams, AutoInt+'s parallel MLP).",
    )


class CrossConfig(CTRConfig):
    """DCN / DCNv2 / GDCN: cross layers beside an MLP."""

    cross_layers: int = Field(3, ge=1, description="Cross layers.")


class MaskNetConfig(ComponentConfig):
    """Predictor `masknet` (serial MaskNet)."""

    mlp_layers: list[int] = Field(
        default_factory=lambda: [256, 128], min_length=1, description="The widths of its serial MaskBlocks."
    )
    mask_ratio: float = Field(
        2.0,
        gt=0,
        description="Reduction ratio r of the instance-guided mask; its aggregation layer is r times as wide as "
        "the input it masks.",
    )


class AutoIntConfig(CTRConfig):
    """Predictor `autoint` (AutoInt+)."""

    interaction_layers: int = Field(2, ge=1, description="Self-attention layers over the fields.")
    interaction_heads: int = Field(2, ge=1, description="Attention heads over the fields.")

    def check(self, model: ModelConfig) -> None:
        if model.hidden_size % self.interaction_heads:
            raise ValueError(
                f"model.hidden_size {model.hidden_size} must be divisible by model.predictor.interaction_heads "
                f"{self.interaction_heads}"
            )


class FinalMLPConfig(CTRConfig):
    """Predictor `finalmlp`."""

    interaction_heads: int = Field(2, ge=1, description="Heads of the bilinear fusion of the two streams.")

    @field_validator("mlp_layers")
    @classmethod
    def _streams(cls, layers: list[int]) -> list[int]:
        if not layers:
            raise ValueError("FinalMLP needs at least one width (its two streams)")
        return layers

    def check(self, model: ModelConfig) -> None:
        if self.mlp_layers[-1] % self.interaction_heads:
            raise ValueError(
                f"model.predictor=finalmlp: the last of model.predictor.mlp_layers ({self.mlp_layers[-1]}) must "
                f"be divisible by model.predictor.interaction_heads ({self.interaction_heads})"
            )


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

    config_class = CTRConfig
    pointwise = True  # trained with binary cross-entropy under exp.loss=auto
    product_field = False  # add u * c as a third field

    def __init__(self, cfg: ComponentConfig, model: ModelConfig, spec: ModelSpec):
        super().__init__()
        self.dim = model.hidden_size
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

    def __init__(self, cfg: CTRConfig, model: ModelConfig, spec: ModelSpec):
        super().__init__(cfg, model, spec)
        self.mlp = MLP(self.num_fields * self.dim, cfg.mlp_layers, model.dropout)

    def logits(self, fields: Tensor) -> Tensor:
        return self.mlp(fields.flatten(-2)).squeeze(-1)


@register("predictor", "dcn")
class DCNPredictor(CTRPredictor):
    """DCN (Wang et al., 2017): a cross network and an MLP side by side over [u, c], joined by a linear
    layer. The cross layers build the u x c interactions explicitly."""

    config_class = CrossConfig
    matrix = False

    def __init__(self, cfg: CrossConfig, model: ModelConfig, spec: ModelSpec):
        super().__init__(cfg, model, spec)
        width = self.num_fields * self.dim
        self.cross = self.cross_network(width, cfg.cross_layers)
        self.deep = MLP(width, cfg.mlp_layers, model.dropout, out=None)
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

    def cross_network(self, width: int, layers: int) -> nn.Module:
        return GatedCrossNetwork(width, layers)


@register("predictor", "masknet")
class MaskNetPredictor(CTRPredictor):
    """Serial MaskNet (Wang et al., 2021): the fields [u, c] are layer-normalised one by one (LN_EMB) and go
    through MaskBlocks in series, one per width of `mlp_layers`; every block's mask is made from the raw
    embedding [u, c] (`mask_ratio`: its aggregation layer's width over the masked input's). A linear layer
    reads the last block. The mask's feature-wise product is the model's multiplicative interaction, so no
    u * c field is added."""

    config_class = MaskNetConfig

    def __init__(self, cfg: MaskNetConfig, model: ModelConfig, spec: ModelSpec):
        super().__init__(cfg, model, spec)
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

    def __init__(self, cfg: CTRConfig, model: ModelConfig, spec: ModelSpec):
        super().__init__(cfg, model, spec)
        self.linear = nn.Linear(self.num_fields * self.dim, 1)
        self.deep = MLP(self.num_fields * self.dim, cfg.mlp_layers, model.dropout)

    def logits(self, fields: Tensor) -> Tensor:
        x = fields.flatten(-2)
        return (self.linear(x) + self.deep(x)).squeeze(-1) + pairwise_inner(fields).sum(-1)


@register("predictor", "pnn")
class PNNPredictor(CTRPredictor):
    """PNN (Qu et al., 2016), inner-product variant: the product layer holds the fields themselves (linear
    signal) and the inner products of every field pair (product signal); an MLP on top."""

    def __init__(self, cfg: CTRConfig, model: ModelConfig, spec: ModelSpec):
        super().__init__(cfg, model, spec)
        pairs = self.num_fields * (self.num_fields - 1) // 2
        self.mlp = MLP(self.num_fields * self.dim + pairs, cfg.mlp_layers, model.dropout)

    def logits(self, fields: Tensor) -> Tensor:
        return self.mlp(torch.cat([fields.flatten(-2), pairwise_inner(fields)], dim=-1)).squeeze(-1)


@register("predictor", "autoint")
class AutoIntPredictor(CTRPredictor):
    """AutoInt+ (Song et al., 2019): stacked multi-head self-attention among the fields [u, c, u * c]
    (`interaction_layers`, `interaction_heads`), a linear read-out, plus a parallel MLP (none when
    mlp_layers is empty)."""

    config_class = AutoIntConfig
    product_field = True

    def __init__(self, cfg: AutoIntConfig, model: ModelConfig, spec: ModelSpec):
        super().__init__(cfg, model, spec)
        self.layers = nn.Sequential(
            *(InteractingLayer(self.dim, cfg.interaction_heads) for _ in range(cfg.interaction_layers))
        )
        self.readout = nn.Linear(self.num_fields * self.dim, 1)
        self.deep = MLP(self.num_fields * self.dim, cfg.mlp_layers, model.dropout) if cfg.mlp_layers else None

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

    config_class = FinalMLPConfig

    def __init__(self, cfg: FinalMLPConfig, model: ModelConfig, spec: ModelSpec):
        super().__init__(cfg, model, spec)
        width = self.num_fields * self.dim
        self.gates = nn.ModuleList(MLP(self.dim, [self.dim], 0.0, out=width) for _ in range(2))
        self.streams = nn.ModuleList(MLP(width, cfg.mlp_layers, model.dropout, out=None) for _ in range(2))
        m, heads = self.streams[0].out_dim, cfg.interaction_heads
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
