"""A saved run, loaded for evaluation or recommendation (no training state)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from oncerec.config.loader import load_group, load_saved_config
from oncerec.config.schema import Config, DataConfig
from oncerec.data.dataset import Dataset, resolve_dataset
from oncerec.errors import OncerecError, shown
from oncerec.eval.metrics import FULL_RANKING_DEFAULT, full_ranking_names, read_metrics
from oncerec.eval.slices import split_metrics
from oncerec.inference import encode_items, encode_users, read_and_seen, top_items, user_inputs
from oncerec.logs import muted
from oncerec.models.recommender import Recommender
from oncerec.training.build import build_recommender, language_model
from oncerec.training.checkpoint import load_latest, load_weights
from oncerec.training.evaluate import predict_fast, write_split_predictions
from oncerec.training.full_ranking import full_ranking_metrics

# Beside a run's config.yaml: the hashes of its training data's vocabularies (`Dataset.vocab_digests`).
VOCAB_FILE = "vocab.json"


class Recommendation(NamedTuple):
    id: str
    score: float
    title: str


@dataclass
class Run:
    """A trained model with its configuration and dataset: evaluate, recommend, export."""

    cfg: Config
    dataset: Dataset
    model: Recommender
    device: torch.device
    run_dir: Path | None = None  # None: a model being trained, not yet saved

    @property
    def metrics(self) -> dict:
        """The metrics saved when training finished (metrics.json: {split: {metric: value}}), or {}."""
        path = self.run_dir / "metrics.json" if self.run_dir else None
        return read_metrics(path) if path and path.is_file() else {}

    def evaluate(
        self, split: str = "test", full_ranking: Sequence[str] | None = None, write: bool = False
    ) -> dict:
        """The split's metrics (as in metrics.json; {} for a split without labels) and, for `full_ranking`
        (e.g. `["recall@10", "ndcg@10"]`; default: the run's `exp.full_ranking`), the full-ranking ones
        (`full/...`). `write`: also rewrite `<split>.prediction.txt` in the run directory."""
        names = self.cfg.exp.full_ranking if full_ranking is None else _full_ranking_names(full_ranking)
        data = self.dataset.split(split)
        batch = self.cfg.exp.eval_batch_size
        scores = predict_fast(self.model, self.dataset, data, batch, self.device)
        if write:
            if self.run_dir is None:
                raise OncerecError("write=True: this run has no run directory to write predictions to")
            write_split_predictions(self.run_dir / f"{split}.prediction.txt", data, scores)
        if not data.labelled:
            return {}
        m = split_metrics(data, scores, self.dataset, self.cfg.exp)
        return m | full_ranking_metrics(self.model, self.dataset, data, names, batch, self.device)

    @torch.no_grad()
    def recommend(
        self,
        user: str | None = None,
        history: Sequence[str] | None = None,
        k: int = 10,
        exclude_history: bool = True,
    ) -> list[Recommendation]:
        """The top `k` items for a user of the dataset (their latest history) or for a history of item ids
        (oldest first; with `user`, for a model with user embeddings), best first. `exclude_history`: leave the
        history's items out."""
        if k < 1:
            raise OncerecError(f"k={k} (--top-k): give at least 1")
        if not user and history is None:
            raise OncerecError(
                "give a user id (--user; their latest history is used) or a history (--history ITEM1,ITEM2,...)"
            )
        ids, index = self.dataset.item_ids, self.dataset.item_index
        users = self.dataset.vocab("user")
        u = users.index(user) if user in users else 0
        if history is not None:
            missing = [h for h in history if h not in index]
            if missing:
                raise OncerecError(
                    f"{len(missing):,} unknown item ids in the history (--history): {shown(missing, 5)}"
                )
            clicked = [index[h] for h in history]
        elif u:
            clicked = self._latest_history(u)
        else:
            raise OncerecError(
                f"user {user!r} is not in the dataset; give a history (--history ITEM1,...) instead"
            )
        read, seen = read_and_seen(clicked, self.dataset.history_len)
        self.model.eval()
        rep = encode_users(self.model, self.user_inputs, [read], [u])
        [(top, scores)] = top_items(
            self.model, rep, self.item_vectors, [seen if exclude_history else []], [k]
        )
        titles = self.dataset.items_table.column("title").to_pylist()
        return [Recommendation(ids[i], s, titles[i]) for i, s in zip(top, scores, strict=True)]

    @cached_property
    def item_vectors(self) -> torch.Tensor:
        """Every item encoded once: the weights of a loaded run do not change, so recommend() reuses them."""
        self.model.eval()
        return encode_items(self.model, self.cfg.exp.eval_batch_size, self.device)

    @cached_property
    def user_inputs(self) -> torch.Tensor:
        """What the user encoder reads of every item as a click, computed once as the item vectors are."""
        return user_inputs(self.model, self.item_vectors)

    def _latest_history(self, user: int) -> list[int]:
        best_time, row = -1, None
        for name in self.dataset.split_names:
            split = self.dataset.split(name)
            mine = np.flatnonzero(np.asarray(split.user) == user)
            if len(mine) and split.time[mine[-1]] > best_time:
                best_time, row = split.time[mine[-1]], int(split.history[mine[-1]])
        items, lengths, _ = self.dataset.histories
        return [int(x) for x in items[row, : lengths[row]]] if row is not None else []


def _full_ranking_names(names: Sequence[str]) -> list[str]:
    try:
        return full_ranking_names(list(names) or FULL_RANKING_DEFAULT)
    except ValueError as e:
        raise OncerecError(f"--full-ranking: {e}") from None


def load_run(run_dir: Path, data: str | None = None) -> Run:
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise OncerecError(f"{run_dir} is not a run directory (no config.yaml)")
    cfg = load_saved_config(config_path)
    # What rebuilding the run's dataset, DIRE cache or word table reports was reported when it was trained;
    # `evaluate` and `recommend` print data alone.
    with muted():
        trained_on = None
        if data:
            trained_on = _trained_vocabularies(run_dir, cfg)
            cfg.data = DataConfig.model_validate(load_group("data", data))
        dataset = Dataset(resolve_dataset(cfg.data))
        if trained_on is not None:
            found = dataset.vocab_digests()
            differ = [name for name, digest in trained_on.items() if found.get(name) != digest]
            if differ:
                raise OncerecError(
                    f"--data {data}: its {', '.join(differ)} vocabulary differs from the one {run_dir} was "
                    "trained on (ids would mean other words, categories or users); evaluate on a dataset "
                    "prepared from the same training data, e.g. one made by `oncerec genre merge`"
                )
        lm = language_model(cfg.model, dataset)  # DIRE: its cache rebuilt if it was removed
        model = build_recommender(cfg.model, cfg.embed, dataset, seed=cfg.exp.seed, lm=lm)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.load_checkpoint_state(run_weights(run_dir), str(run_dir))
    model.to(device)
    model.content.to(device)
    return Run(cfg, dataset, model, device, run_dir)


def run_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The weights a run is evaluated with: its best ones, or its newest checkpoint's that verify."""
    if (run_dir / "best").is_dir():
        return load_weights(run_dir / "best")
    found = load_latest(run_dir)
    if found is None:
        raise OncerecError(f"{run_dir} has no saved weights (best/ or checkpoints/)")
    return found[0]


def _trained_vocabularies(run_dir: Path, cfg: Config) -> dict[str, str]:
    saved = run_dir / VOCAB_FILE
    if saved.is_file():
        return json.loads(saved.read_text())
    # a run from before the file was written: its own dataset says
    return Dataset(resolve_dataset(cfg.data)).vocab_digests()
