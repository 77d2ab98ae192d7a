"""A training run, step by step; `oncerec train`, `oncerec demo`, the experiment runner (through `oncerec train`),
`oncerec.train` and `oncerec dire cache` (the first two steps) all run these:

1. `prepare_dataset`: the dataset of `data=`, prepared (or the demo data generated) on first use;
2. `language_model` (DIRE only): the language model, loaded once, and the cache of its frozen layers, built
   if it is absent;
3. `build_recommender`: the model, from the dataset's sizes and content;
4. `Trainer(cfg, dataset, model, run_dir)`, then `fit`: training, validation, checkpoints, the final test.

Under `accelerate launch` every process runs every step: the main process prepares the dataset while the
others wait, the processes split the DIRE cache's items between them, and DDP trains.
"""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list

from oncerec.config.schema import Config, DataConfig
from oncerec.data.dataset import Dataset, resolve_dataset
from oncerec.dire.cache import SHARD, DireCache, build_cache
from oncerec.errors import OncerecError
from oncerec.logs import main_process_only
from oncerec.training.build import build_recommender, language_model, load_language_model
from oncerec.training.session import Run
from oncerec.training.tracking import require_tracker
from oncerec.training.trainer import Trainer, check_run_dir, run_dir_for


def processes() -> PartialState:
    """This process's place among those of the run (one, or those of `accelerate launch`), of which the main
    one alone logs. Without a GPU, accelerate needs cpu=True to treat several launched processes as one job
    (gloo)."""
    state = PartialState(cpu=not torch.cuda.is_available())
    main_process_only(state.is_main_process)
    return state


def prepare_dataset(cfg: DataConfig, progress: bool = True) -> Dataset:
    """The dataset of a data config, prepared on first use, every split checked (not at the first validation
    after an epoch of training). The main process prepares; the others wait, then open what it wrote."""
    state = processes()
    with state.main_process_first():
        dataset = Dataset(resolve_dataset(cfg, progress=progress and state.is_main_process))
    for name in dataset.split_names:
        dataset.split(name)
    return dataset


def new_run_dir(cfg: Config) -> Path:
    """The run directory, one name for every process (the default one holds the time), checked before
    anything is written: a new run needs a new or empty folder, a resumed one a run of the same config."""
    holder = [str(run_dir_for(cfg))]
    broadcast_object_list(holder)
    run_dir = Path(holder[0])
    check_run_dir(run_dir, cfg)
    return run_dir


def train(cfg: Config, progress: bool = True) -> tuple[Run, dict]:
    """Trains `cfg`; returns the run (its best weights) and its metrics ({split: {...}}, as metrics.json)."""
    require_tracker(cfg.exp.tracker)
    main = processes().is_main_process
    dataset = prepare_dataset(cfg.data, progress)
    run_dir = new_run_dir(cfg)
    torch.manual_seed(cfg.exp.seed)
    lm = language_model(cfg.model, dataset, progress=progress and main)
    model = build_recommender(cfg.model, cfg.embed, dataset, seed=cfg.exp.seed, lm=lm)
    trainer = Trainer(cfg, dataset, model, run_dir, progress=progress)
    metrics = trainer.fit()
    return trainer.run, metrics


def dire_cache(
    cfg: Config, batch_size: int = 64, shard_size: int = SHARD, progress: bool = True
) -> DireCache:
    """The first two steps alone, for `oncerec dire cache`: the dataset, then the DIRE cache of every layer
    of `model.item.cache_layers` (or `model.item.layer`), built or completed."""
    if cfg.model.item.name != "lm":
        raise OncerecError(
            f"model.item={cfg.model.item.name}: `dire cache` needs a language-model item encoder (item=lm)"
        )
    dataset = prepare_dataset(cfg.data, progress)
    lm = load_language_model(cfg.model.item)  # the checks of the model before any cache work
    return build_cache(
        dataset, cfg.model, batch_size=batch_size, progress=progress, shard_size=shard_size, model=lm
    )
