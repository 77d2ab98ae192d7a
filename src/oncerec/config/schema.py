"""Typed configuration: four groups, as in the approach we implement.

- `data`: where the data comes from and how it is turned into a dataset directory;
- `model`: which item encoder, user encoder and predictor, each with its own keys, and the model-wide sizes
  (defined by the models package, `models/config.py`, beside the components whose configs it chooses among);
- `embed`: how the word-embedding table is initialised;
- `exp`: training and evaluation hyper-parameters.

Every knob is a typed, documented field. Unknown keys and wrong types are errors (see `config.loader`).
"""

from __future__ import annotations

import string
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from oncerec.eval.metrics import DEFAULT_METRICS, SYNTAX, full_ranking_names, metric_name, metric_names
from oncerec.models.config import CATEGORICAL, ModelConfig

__all__ = ["CATEGORICAL", "GROUPS", "Config", "DataConfig", "EmbedConfig", "ExpConfig", "ModelConfig"]

# item columns a data.prompt template may name
PROMPT_FIELDS = ("title", "abstract", "category", "subcategory")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    name: str = Field("data", description="Short name used in run directory names.")
    source: str = Field(
        "",
        description="Raw data folder (MIND format) or prepared dataset directory. Empty with format=demo: "
        "the demo data is generated into the cache.",
    )
    format: Literal[
        "mind", "xmind", "pens", "ebnerd", "adressa", "goodreads", "once-goodreads", "generic", "demo"
    ] = Field(
        "mind",
        description="Raw format of `source`: `mind` (train/ dev/ [test/] with news.tsv + behaviors.tsv), "
        "`xmind` (a MIND folder with one xMIND language's translated news, see `translations`), `pens` "
        "(news.tsv, train.tsv, valid.tsv), `ebnerd` (EB-NeRD: articles.parquet, train/ validation/ [test/] "
        "with behaviors.parquet + history.parquet), `adressa` (one_week/ or three_month/ event files; ONCE "
        "protocol with random negatives), `goodreads` (the UCSD Book Graph's gzipped JSON lines), "
        "`once-goodreads` (ONCE's released Goodreads folder: tok.bid.dat, tok.uid.dat, book.csv, "
        "histories.jsonl; leave-last-out protocol, see data/once_goodreads.py), `generic` (items + "
        "interactions as TSV / CSV / Parquet, see the Data page), or `demo` (generated, see demo_format).",
    )
    translations: str = Field(
        "",
        description="format=xmind: one language's xMIND folder (e.g. xMIND/ron, holding xMINDsmall_train/"
        "news.tsv, ...); its titles and abstracts replace the MIND news text of `source`.",
    )
    demo_format: Literal["mind", "goodreads"] = Field(
        "mind", description="Raw format the demo data is generated in (format=demo)."
    )
    demo_scale: Literal["tiny", "small", "medium", "large"] = Field(
        "small", description="Size of the generated demo data (format=demo)."
    )
    demo_seed: int = Field(0, description="Seed of the demo data generator (format=demo).")
    demo_fresh: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Share of the demo's dev-day items written with concept words no earlier item uses "
        "(format=demo; the second half of each concept's synonyms, which a pretrained language model knows "
        "and a word table learned from clicks cannot). 0: the generator's data as before.",
    )
    split: Literal["mind", "once"] = Field(
        "mind",
        description="`mind`: MIND's own train/dev/test folders are train/valid/test. `once`: the official dev "
        "impressions are split 50/50 into valid and test, by ONCE's published list (`split_list`) or, "
        "without one, shuffled with `split_seed`.",
    )
    split_seed: int = Field(2023, description="Seed of the ONCE valid/test split when it has no list.")
    split_list: str = Field(
        "",
        description="`split=once`: a JSON list of the dev impression ids in ONCE's order (ONCE's "
        "`mind_imp_list.json`): the first half is valid, the second half test; every dev impression must be "
        "listed and every listed one in dev. Empty: ONCE's own list of MIND-small, shipped with oncerec, when "
        "the dev impressions are exactly its ids (real MIND-small), else the halving by `split_seed`. `once`: "
        "that packaged list, required to match. `none`: the halving by `split_seed` always. Else: a file.",
    )
    text_fields: list[str] = Field(
        default_factory=lambda: ["title", "abstract"], description="Item text fields to tokenize."
    )
    max_lengths: dict[str, int] = Field(
        default_factory=lambda: {"title": 30, "abstract": 60},
        description="Max tokens kept per text field (the start is kept). Fields not listed use 64.",
    )
    tokenizers: list[str] = Field(
        default_factory=lambda: ["word"],
        description="Tokenizers to store token ids for: `word` (vocabulary built on the training split), "
        "or a local Hugging Face tokenizer folder / packaged model name (e.g. `minilm`).",
    )
    lowercase: bool = Field(True, description="Lowercase words before the word tokenizer.")
    min_word_count: int = Field(1, ge=1, description="Words seen fewer times in training items map to <unk>.")
    prompt: str = Field(
        "news article: title: {title} abstract: {abstract} category: {category}",
        description="Text of the `prompt` field (what language-model item encoders read): item fields in "
        "{braces} (title, abstract, category, subcategory) joined by short natural prompts. Prepared like any "
        "text field when `prompt` is in text_fields (added automatically for `model.item=lm`).",
    )
    history_len: int = Field(50, ge=1, description="Most recent clicks kept per history.")
    # The ONCE protocol for data without impressions (goodreads, generic): see data/protocol.py.
    rating_positive_above: int = Field(3, description="Goodreads: a rating above this is a positive.")
    rating_negative_below: int = Field(
        3,
        description="Goodreads: a rating from 1 to below this is a negative (0 = unrated, and the rest, drop).",
    )
    item_min_interactions: int = Field(
        5, ge=0, description="Filtering: items need at least this many interactions."
    )
    item_max_interactions: int = Field(10_000, ge=1, description="Filtering: items with more are dropped.")
    user_min_positives: int = Field(
        10, ge=0, description="Filtering: users need at least this many positives."
    )
    cold_user_share: float = Field(0.1, ge=0, le=1, description="Share of users whose history is cut short.")
    cold_history: tuple[int, int] = Field(
        (1, 5), description="History length range of cold users (inclusive)."
    )
    warm_history: tuple[int, int] = Field((5, 9), description="History length range of the other users.")
    split_ratios: tuple[float, float, float] = Field(
        (0.8, 0.1, 0.1),
        description="Train / valid / test shares of each user's remaining interactions, by time.",
    )
    negatives: int = Field(
        0,
        ge=0,
        description="Random items a user never interacted with added as negatives to each of the user's "
        "groups (implicit-feedback data without negatives); with `eval_negatives` set, to training groups only.",
    )
    eval_negatives: int = Field(
        -1,
        ge=-1,
        description="Such negatives per valid / test group; -1: as many as `negatives`.",
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Generic format: oncerec field -> column name, for items (id, title, abstract, category, "
        "subcategory) and interactions (user, item, label, time, group); unmapped fields use their own name.",
    )

    @model_validator(mode="after")
    def _split_list_needs_once(self) -> DataConfig:
        if self.split_list not in ("", "none") and self.split != "once":
            raise ValueError("data.split_list is ONCE's valid/test list: it needs data.split=once")
        return self

    @field_validator("prompt")
    @classmethod
    def _known_prompt_fields(cls, template: str) -> str:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
        bad = [n for n in names if n not in PROMPT_FIELDS]
        if bad:
            raise ValueError(
                f"unknown field {{{bad[0]}}}; valid: {', '.join('{' + f + '}' for f in PROMPT_FIELDS)}"
            )
        return template

    strict: bool = Field(False, description="Treat ids missing from every news file as an error.")


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
    data: DataConfig = Field(default_factory=DataConfig)
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


GROUPS: dict[str, type[_Strict]] = {
    "data": DataConfig,
    "model": ModelConfig,
    "embed": EmbedConfig,
    "exp": ExpConfig,
}
