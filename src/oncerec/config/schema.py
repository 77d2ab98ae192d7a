"""Typed configuration: four groups, as in the approach we implement.

- `data`: where the data comes from and how it is turned into a dataset directory (`DataConfig`, the keys every
  format shares, with each data format's own: they are defined with the formats, in `oncerec.data.formats`);
- `model`: which item encoder, user encoder and predictor, and their sizes;
- `embed`: how the word-embedding table is initialised;
- `exp`: training and evaluation hyper-parameters.

Every knob is a typed, documented field. Unknown keys and wrong types are errors (see `config.loader`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializeAsAny,
    field_validator,
    model_validator,
)

from oncerec.data.formats import DataConfig
from oncerec.eval.metrics import DEFAULT_METRICS, SYNTAX, full_ranking_names, metric_name, metric_names

# The categorical item fields (one value per item); every other item field is text.
CATEGORICAL = ("category", "subcategory")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Strict):
    name: str = Field("custom", description="Preset name, used in run directory names.")
    item: str = Field("attention", description="Item encoder (registry name).")
    user: str = Field("attention", description="User encoder (registry name).")
    predictor: str = Field("dot", description="Predictor (registry name).")
    item_fields: list[str] = Field(
        default_factory=lambda: ["title"],
        description="Item inputs the item encoder reads: text fields and/or `category`, `subcategory`.",
    )
    item_lm: str = Field(
        "",
        description="Language model of the `lm` item encoder: a local Hugging Face folder (BERT-like or "
        "LLaMA-like) or a packaged name (`minilm`, `smollm2-135m`).",
    )
    lm_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="Type the language model is loaded and run in, for the DIRE cache build and training "
        "(`auto`: bfloat16 when a GPU is present, float32 otherwise, resolved at load time). Pooling and "
        "projection run in float32, LoRA adapters are kept in float32.",
    )
    layer: int = Field(
        0,
        ge=0,
        description="DIRE split point k: layers 0..k-1 are frozen and read from the DIRE cache (the hidden "
        "states entering layer k); layers k..L-1 (+ the final norm) run and train. 0: the whole model runs "
        "from token ids, no cache. L (the model's number of layers): every layer is frozen, the cache holds "
        "the final token states (after the final norm) and training runs no language-model layer: only the "
        "pooling and projection (frozen-LLM features; needs model.lora=false).",
    )
    cache_layers: list[int] = Field(
        default_factory=list,
        description="Layers whose entering hidden states `oncerec dire cache` stores (default: [layer]).",
    )
    cache_dtype: Literal["float16", "bfloat16", "float32"] = Field(
        "float16", description="Storage type of the DIRE cache."
    )
    dire_cache: str = Field(
        "",
        description="DIRE cache folder (default: "
        "$ONCEREC_CACHE/dire/<dataset>/<model>-<fingerprint>-<field>, the fingerprint hashing the weight "
        "files' content).",
    )
    lm_pooling: Literal["attention", "mean", "last"] = Field(
        "attention",
        description="How the top layer's token states become one item vector: additive attention, masked "
        "mean, or the last token's state; then a projection to hidden_size.",
    )
    lm_norm: Literal["auto", "none", "batch"] = Field(
        "auto",
        description="Normalisation of the pooled language-model vector before the projection: `batch` "
        "standardises each feature over the batch's items (BatchNorm; the average statistics of training at "
        "evaluation); `auto`: `batch` for LLaMA-like decoders, `none` for BERT-like encoders. A decoder's pooled "
        "states of different items are nearly parallel (mean cosine 0.95 for SmolLM2-135M on demo titles, "
        "0.24 for MiniLM), so a fresh projection maps every item to nearly the same vector and training "
        "starts from constant scores.",
    )
    lora: bool = Field(
        False, description="Train LoRA adapters (peft) on the running layers instead of all their weights."
    )
    lora_r: int = Field(32, ge=1, description="LoRA rank.")
    lora_alpha: float = Field(128.0, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the LoRA input.")
    lora_targets: list[str] = Field(
        default_factory=list,
        description="Module names that get adapters (default: the attention query and value projections, "
        "`q_proj, v_proj` in OPT, Phi and LLaMA-like models, `query, value` in BERT-like ones).",
    )
    hidden_size: int = Field(256, ge=1, description="Width of item and user vectors.")
    num_heads: int = Field(
        8, ge=1, description="Attention heads (self-attention / Fastformer encoders, BST's transformer)."
    )
    attention_residual: bool = Field(
        False,
        description="Self-attention encoders (NRMS) add each layer's input to its output, a Transformer "
        "residual connection that the published NRMS does not have.",
    )
    attention_hidden: int = Field(200, ge=1, description="Hidden width of additive attention.")
    kernel_size: int = Field(3, ge=1, description="CNN window (NAML, LSTUR).")
    category_dim: int = Field(100, ge=1, description="Width of category / subcategory embeddings.")
    num_layers: int = Field(
        2, ge=1, description="Layers of the Fastformer / transformer encoders (BST: transformer layers)."
    )
    gru_mode: Literal["ini", "con"] = Field(
        "ini", description="LSTUR: user-id embedding initialises the GRU (`ini`) or is concatenated (`con`)."
    )
    user_id_dropout: float = Field(
        0.5, ge=0, le=1, description="LSTUR: chance of masking the user-id embedding."
    )
    num_interests: int = Field(
        4, ge=1, description="MINER: number of interest vectors (poly-attention codes)."
    )
    miner_category_bias: bool = Field(
        False,
        description="MINER (user=poly with predictor=target_aware): category-aware attention weighting. Each "
        "context code's attention logit of a clicked item gets the cosine similarity of that item's and the "
        "candidate's category embeddings, so the interest vectors are pooled per candidate (in the predictor).",
    )
    disagreement_weight: float = Field(
        0.8,
        ge=0,
        description="MINER (predictor=target_aware): weight beta of the disagreement regularisation added to "
        "the training loss, the mean cosine similarity of every pair of a user's interest vectors (0: off).",
    )
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout on word embeddings and encoder outputs.")
    mlp_layers: list[int] = Field(
        default_factory=lambda: [256, 128],
        description="CTR predictors: hidden widths of their MLPs (DNN, DCN, DCNv2, GDCN, DeepFM, PNN, DIN, DKN "
        "and BST heads, FinalMLP streams, AutoInt+'s parallel MLP); MaskNet: the widths of its serial MaskBlocks.",
    )
    cross_layers: int = Field(3, ge=1, description="DCN / DCNv2 / GDCN: cross layers.")
    interaction_layers: int = Field(2, ge=1, description="AutoInt: self-attention layers over the fields.")
    interaction_heads: int = Field(
        2,
        ge=1,
        description="AutoInt: attention heads over the fields; FinalMLP: heads of the bilinear fusion.",
    )
    mask_ratio: float = Field(
        2.0,
        gt=0,
        description="MaskNet: reduction ratio r of the instance-guided mask; its aggregation layer is r times "
        "as wide as the input it masks.",
    )
    user_id_dim: int = Field(50, ge=1, description="NPA: width of the user-id embedding.")
    npa_attention: Literal["additive", "paper"] = Field(
        "additive",
        description="NPA: where the personalised attention's tanh sits. `additive` (the authors' code in "
        "Microsoft Recommenders): a_i = q . tanh(W c_i + b), bounded by |q|; `paper` (the equation as printed): "
        "a_i = c_i . tanh(W q + b), whose logits grow with the states and trains worse (see the results page).",
    )
    window_sizes: list[int] = Field(
        default_factory=lambda: [1, 2, 3, 4],
        description="DKN (item=kcnn): window sizes of the KCNN filters; hidden_size / len(window_sizes) "
        "filters each.",
    )
    user_attributes: bool = Field(
        False,
        description="GENRE: embed each user's LLM-generated profile (the dataset's user attributes, e.g. "
        "topics and regions, from `oncerec genre merge`) and fuse it into the user vector by additive "
        "attention (models/user/attributes.py); users without a profile keep the clicks' vector.",
    )


class EmbedConfig(_Strict):
    type: Literal["random", "glove", "hf"] = Field(
        "random",
        description="`random`; `glove`: a GloVe-format text file (`word v1 v2 ...`); `hf`: the token-embedding "
        "matrix of a local Hugging Face model (use with a matching HF tokenizer).",
    )
    path: str = Field("", description="GloVe file or Hugging Face model folder / packaged model name.")
    dim: int = Field(300, ge=1, description="Embedding width for `random` (others take the file's width).")
    freeze: bool = Field(False, description="Keep the embedding table fixed during training.")
    tokenizer: str = Field("word", description="Which stored token ids the embedding table indexes.")


class ExpConfig(_Strict):
    seed: int = Field(2023, description="Seed for initialisation, negative sampling and data order.")
    epochs: int = Field(5, ge=1, description="Training epochs.")
    batch_size: int = Field(64, ge=1, description="Training samples (clicks) per step, per process.")
    eval_batch_size: int = Field(512, ge=1, description="Items / users / impressions per evaluation batch.")
    lr: float = Field(1e-3, gt=0, description="Learning rate of the recommender.")
    item_lr: float = Field(1e-5, gt=0, description="Learning rate of pretrained item-encoder weights.")
    embed_lr: float = Field(
        0.0, ge=0, description="Learning rate of a randomly initialised word-embedding table (0: exp.lr)."
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    neg_count: int = Field(4, ge=1, description="Negatives per clicked candidate (softmax over 1 + K).")
    loss: Literal["auto", "softmax", "bce"] = Field(
        "auto",
        description="Training loss over each click and its negatives. `softmax`: cross-entropy of the click "
        "among the 1 + K candidates (matching models); `bce`: binary cross-entropy of every candidate, "
        "pointwise (CTR models); `auto`: bce for CTR predictors (dnn, dcn, ...), softmax otherwise.",
    )
    acc_batch: int = Field(1, ge=1, description="Gradient accumulation steps.")
    epoch_batch: int = Field(
        0,
        description="Evaluate every 1/n of an epoch when negative (e.g. -4: four times per epoch); 0 or 1: once.",
    )
    warmup: float = Field(0.0, ge=0, description="Warm-up steps (>=1) or fraction of all steps (<1).")
    decay: bool = Field(False, description="Linear decay of the learning rate to 0 after warm-up.")
    clip_norm: float = Field(1.0, ge=0, description="Gradient clipping norm (0: off).")
    patience: int = Field(
        2, ge=0, description="Stop after this many evaluations without improvement (0: off)."
    )
    metric: str = Field(
        "auc",
        description="Validation metric that selects the best checkpoint (lowest for logloss, else highest); "
        "one of `metrics`.",
    )
    metrics: list[str] = Field(
        default_factory=lambda: list(DEFAULT_METRICS),
        description=f"What evaluations report, in this order (the keys of metrics.json; tables show them, "
        f"the default as auc, mrr, ndcg@5, ndcg@10): {SYNTAX}. auc, mrr, ndcg, hit, recall and lrap are "
        "averaged over impressions, gauc over users (each user's impressions pooled), global_auc, f1 and "
        "logloss pool every candidate.",
    )
    full_ranking: list[str] = Field(
        default_factory=list,
        description="Also rank each user's held-out items (the clicked candidates of the split) among every "
        "item of the catalogue, the user's history excluded, and report these metrics of it under `full/` "
        "(e.g. [recall@10,recall@50,ndcg@10,hit@10]; recall@K, ndcg@K and hit@K only; empty: off). At the end "
        "of training (valid and test) and in `oncerec evaluate`; not during validation.",
    )
    cold_user_history: int = Field(
        5,
        ge=0,
        description="The `cold_users` slice of the metrics: impressions whose history holds at most this many "
        "clicks (GENRE's generated items not counted). 5: ONCE's cold users (1-5 clicks).",
    )
    mixed_precision: Literal["no", "bf16", "fp16"] = Field("no", description="Autocast precision.")
    out_dir: str = Field("", description="Run directory (default runs/<data>-<model>-<timestamp>).")
    resume: bool = Field(False, description="Continue the run in out_dir from its last checkpoint.")
    fast_eval: bool = Field(True, description="Encode each item and user once per evaluation.")
    log_every: int = Field(50, ge=1, description="Steps per training log line.")
    save_every: int = Field(
        0, ge=0, description="Also checkpoint every N optimizer steps (0: only at evaluations)."
    )
    max_steps: int = Field(0, ge=0, description="Stop after this many optimizer steps (0: no limit).")
    tracker: Literal["none", "tensorboard", "wandb"] = Field(
        "none",
        description="Also send what log.jsonl records to TensorBoard (RUN_DIR/tensorboard) or Weights & "
        "Biases (its settings from WANDB_* environment variables); each an extra: pip install "
        "'oncerec[tensorboard]' / 'oncerec[wandb]'.",
    )

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, name: str) -> str:
        return metric_name(name)

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, names: list[str]) -> list[str]:
        return metric_names(names)

    @field_validator("full_ranking")
    @classmethod
    def _known_full_ranking(cls, names: list[str]) -> list[str]:
        return full_ranking_names(names)

    @model_validator(mode="after")
    def _metric_is_reported(self) -> ExpConfig:
        # The best checkpoint is chosen on the validation metrics evaluations compute, which are `metrics`.
        if self.metric not in self.metrics:
            raise ValueError(
                f"exp.metric `{self.metric}` selects the best checkpoint: add it to exp.metrics "
                f"({', '.join(self.metrics)}) or choose one of those"
            )
        return self


class Config(_Strict):
    # the chosen format's config (a subclass of DataConfig), dumped with its own keys
    data: SerializeAsAny[DataConfig] = Field(default_factory=lambda: DataConfig.model_validate({}))
    model: ModelConfig = Field(default_factory=ModelConfig)
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    exp: ExpConfig = Field(default_factory=ExpConfig)
    # `group.key` names the user chose (set by `build_config`); not a key, never saved
    _explicit: frozenset[str] = PrivateAttr(default_factory=frozenset)

    @property
    def explicit(self) -> frozenset[str]:
        """The keys given explicitly: key overrides and the keys of the user's own YAML files, not those of
        packaged presets, shared keys or a base config. `check_knobs` (models/recommender.py) holds each
        model key among them to the chosen components."""
        return self._explicit

    @model_validator(mode="after")
    def _language_model_inputs(self) -> Config:
        """A language-model item encoder reads its own tokenizer's ids: have the data prepared with them."""
        if self.model.item == "lm" and self.model.item_lm:
            if self.model.item_lm not in self.data.tokenizers:
                self.data.tokenizers = [*self.data.tokenizers, self.model.item_lm]
            field = self.model.item_fields[0]
            if field not in self.data.text_fields:
                self.data.text_fields = [*self.data.text_fields, field]
        return self


GROUPS: dict[str, type[BaseModel]] = {
    "data": DataConfig,
    "model": ModelConfig,
    "embed": EmbedConfig,
    "exp": ExpConfig,
}
