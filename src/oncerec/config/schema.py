"""Typed configuration: four groups, as in the approach we implement.

- `data`: where the data comes from and how it is turned into a dataset directory (`DataConfig`, the keys every
  format shares, with each data format's own: they are defined with the formats, in `oncerec.data.formats`);
- `model`: which item encoder, user encoder and predictor, each with its own keys, and the model-wide sizes
  (defined by the models package, `models/config.py`, beside the components whose configs it chooses among);
- `embed`: how the word-embedding table is initialised;
- `exp`: training and evaluation hyper-parameters.

Every knob is a typed, documented field. Unknown keys and wrong types are errors (see `config.loader`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, field_validator, model_validator

from oncerec.data.formats import DataConfig
from oncerec.eval.metrics import DEFAULT_METRICS, SYNTAX, full_ranking_names, metric_name, metric_names
from oncerec.models.config import CATEGORICAL, ModelConfig

__all__ = ["CATEGORICAL", "GROUPS", "Config", "DataConfig", "EmbedConfig", "ExpConfig", "ModelConfig"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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

    @model_validator(mode="after")
    def _language_model_inputs(self) -> Config:
        """A language-model item encoder reads its own tokenizer's ids: have the data prepared with them."""
        if self.model.item.name == "lm":
            if self.model.item.lm not in self.data.tokenizers:
                self.data.tokenizers = [*self.data.tokenizers, self.model.item.lm]
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
