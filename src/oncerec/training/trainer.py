"""Training with negative sampling, periodic validation, early stopping, exact resume, and final test.

Runs as one process on CPU/GPU, or as several under `accelerate launch` (DDP): each process takes every
world-th batch of the same deterministic epoch order, gradients are averaged by DDP, and the main process
evaluates, checkpoints and decides when to stop.

Run directory (other tools rely on it): config.yaml, log.jsonl, curves.png, checkpoints/, best/,
metrics.json ({"valid": {...}, "test": {...}}), valid.prediction.txt, test.prediction.txt.
"""

from __future__ import annotations

import json
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object
from tqdm import tqdm

from oncerec.config.loader import config_diff, dump_config, load_saved_config
from oncerec.config.schema import Config
from oncerec.data.batching import TrainSampler
from oncerec.data.dataset import Dataset
from oncerec.errors import CheckpointError, ConfigError, OncerecError
from oncerec.eval.metrics import lower_is_better, metrics_json, table_metrics
from oncerec.eval.slices import split_metrics
from oncerec.logs import main_process_only
from oncerec.models.recommender import Recommender
from oncerec.paths import write_text_atomic
from oncerec.training.checkpoint import load_latest, load_weights, save_checkpoint, save_weights
from oncerec.training.evaluate import predict_fast, predict_slow, write_split_predictions
from oncerec.training.full_ranking import full_ranking_metrics
from oncerec.training.losses import batch_loss
from oncerec.training.report import plot_curves, write_report
from oncerec.training.session import VOCAB_FILE, Run
from oncerec.training.tracking import Tracker, open_tracker, scalars

logger = logging.getLogger(__name__)

# Keys that may change between an interrupted run and its resumption (`metrics`, `cold_user_history` and
# `tracker` say what is reported and where, not what trains; `metric`, which picks the checkpoint, may not).
RESUMABLE_KEYS = {
    f"exp.{k}"
    for k in (
        *("resume", "out_dir", "log_every", "eval_batch_size", "epochs", "patience", "max_steps"),
        *("metrics", "cold_user_history", "tracker"),
    )
}


@dataclass
class TrainState:
    epoch: int = 0
    step_in_epoch: int = 0  # optimizer steps done in `epoch`
    global_step: int = 0
    best: float | None = None
    best_step: int = -1
    bad_evals: int = 0
    stopped: bool = False
    evals: list = field(default_factory=list)


def _better(metric: str, new: float, old: float | None) -> bool:
    if old is None or math.isnan(old):
        return not math.isnan(new)
    return new < old if lower_is_better(metric) else new > old


def run_dir_for(cfg: Config) -> Path:
    if cfg.exp.out_dir:
        return Path(cfg.exp.out_dir)
    return Path("runs") / f"{cfg.data.name}-{cfg.model.name}-{datetime.now():%Y%m%d-%H%M%S}"


def check_run_dir(run_dir: Path, cfg: Config) -> None:
    """Before anything is written: a new run needs an empty or new folder, a resumed one a run of the same
    config. A folder of the user's own files is never written into (its report.md or metrics.json would be
    overwritten)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise OncerecError(f"exp.out_dir={run_dir} is a file; give a folder (new or empty)")
    if cfg.exp.resume:
        saved_path = run_dir / "config.yaml"
        if not saved_path.is_file():
            raise OncerecError(f"exp.resume=true but {run_dir} has no config.yaml (nothing to resume)")
        diffs = resume_diff(load_saved_config(saved_path), cfg)
        if diffs:
            raise ConfigError(
                f"cannot resume {run_dir}: it holds a run (and checkpoints) of another model or config "
                f"({diff_line(diffs)}); resume with the config in {saved_path}, or train into a new exp.out_dir"
            )
    elif (run_dir / "config.yaml").exists():
        raise OncerecError(
            f"{run_dir} already holds a run; add exp.resume=true to continue it, or choose another exp.out_dir"
        )
    elif run_dir.is_dir() and any(run_dir.iterdir()):
        raise OncerecError(
            f"exp.out_dir={run_dir} is not empty and is not an oncerec run; choose a new or empty folder"
        )


def run_diff(saved: Config, cfg: Config, ignore: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """What differs between a saved run's config and `cfg`, but for the keys in `ignore`."""
    return [d for d in config_diff(saved, cfg) if d.split(":")[0] not in ignore]


def diff_line(diffs: list[str], shown: int = 6) -> str:
    """The first `shown` differences of `run_diff`, on one line."""
    more = f"; and {len(diffs) - shown} more" if len(diffs) > shown else ""
    return "; ".join(diffs[:shown]) + more


def resume_diff(saved: Config, cfg: Config) -> list[str]:
    """What differs between a saved run's config and `cfg`, but for the keys a resumed run may change."""
    return run_diff(saved, cfg, RESUMABLE_KEYS)


def _lr_lambda(cfg: Config, total_steps: int):
    warm = cfg.exp.warmup if cfg.exp.warmup >= 1 else cfg.exp.warmup * total_steps

    def f(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if cfg.exp.decay:
            return max(0.0, (total_steps - step) / max(1.0, total_steps - warm))
        return 1.0

    return f


class Trainer:
    """Trains a built model on a prepared dataset into `run_dir` (checked by `pipeline.new_run_dir`): the last
    step of `pipeline.train`, which runs the ones before. Reads and writes nothing until `fit`."""

    def __init__(
        self,
        cfg: Config,
        dataset: Dataset,
        model: Recommender,
        run_dir: Path,
        progress: bool = True,
    ):
        self.cfg = cfg
        self.dataset = dataset
        self.model = model
        self.run_dir = run_dir
        self.progress = progress
        self.tracker: Tracker | None = None  # opened by fit, on the main process
        # Without a GPU, accelerate needs cpu=True to treat several launched processes as one DDP job (gloo).
        try:
            self.acc = Accelerator(mixed_precision=cfg.exp.mixed_precision, cpu=not torch.cuda.is_available())
        except ValueError as e:  # accelerate fixes the precision once per process
            raise OncerecError(
                f"exp.mixed_precision={cfg.exp.mixed_precision}: {e} (run it as its own process)"
            ) from e
        self.main = self.acc.is_main_process
        main_process_only(self.main)  # the other processes' lines would repeat the main one's
        self.model.content.to(self.acc.device)
        self.sampler = TrainSampler(
            self.dataset, self.dataset.split("train"), cfg.exp.batch_size, cfg.exp.neg_count, cfg.exp.seed
        )
        world, acc = self.acc.num_processes, cfg.exp.acc_batch
        self.steps_per_epoch = len(self.sampler) // (world * acc)
        if self.steps_per_epoch == 0:
            raise OncerecError(
                f"the training split has {len(self.sampler.pos_rows)} clicks: fewer than one "
                f"step of batch_size {cfg.exp.batch_size} x acc_batch {acc} x {world} processes"
            )
        parts = -cfg.exp.epoch_batch if cfg.exp.epoch_batch < 0 else 1
        every = max(1, math.ceil(self.steps_per_epoch / parts))
        self.eval_points = {
            min(s, self.steps_per_epoch) for s in range(every, self.steps_per_epoch + every, every)
        }
        total = self.steps_per_epoch * cfg.exp.epochs
        self.optimizer = torch.optim.AdamW(
            self.model.param_groups(cfg.exp.lr, cfg.exp.item_lr, cfg.exp.embed_lr, cfg.exp.weight_decay)
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(cfg, total))
        self.ddp_model, self.optimizer = self.acc.prepare(self.model, self.optimizer)
        self.state = TrainState()

    # -- persistence -------------------------------------------------------------------------------------
    def _write_log(self, record: dict) -> None:
        if self.main:
            with open(self.run_dir / "log.jsonl", "a") as f:
                f.write(metrics_json(record, indent=None) + "\n")
            if self.tracker is not None:
                self.tracker.log(record["step"], scalars(record))

    def _save(self) -> None:
        # Each process draws its own dropout masks: every process's generators are kept, in rank order.
        rng = [torch.get_rng_state(), *(torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])]
        ranks = gather_object([rng]) if self.acc.num_processes > 1 else [rng]
        if not self.main:
            return
        train_state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": ranks,  # per rank: [CPU generator, CUDA generators...]
            "trainer": asdict(self.state),
        }
        save_checkpoint(self.run_dir, self.state.global_step, self.model.checkpoint_state(), train_state)

    def _restore(self) -> None:
        found = load_latest(self.run_dir)
        if found is None:
            logger.info(f"no usable checkpoint in {self.run_dir}: starting from the beginning")
            return
        weights, train_state, folder = found
        try:
            self.model.load_checkpoint_state(weights, str(folder))
        except CheckpointError as e:
            raise CheckpointError(
                f"cannot resume {self.run_dir}: {e}, not of its config.yaml; train into a new exp.out_dir, or "
                f"move {folder} away to resume from an older checkpoint"
            ) from None
        self.optimizer.load_state_dict(train_state["optimizer"])
        self.scheduler.load_state_dict(train_state["scheduler"])
        mine = self._saved_rng(train_state)
        torch.set_rng_state(mine[0])
        if mine[1:] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(mine[1:])
        self.state = TrainState(**train_state["trainer"])
        # a stop by max_steps or patience is decided again: a resumed run may allow more of either
        self.state.stopped = self._at_step_limit() or self._out_of_patience()
        logger.info(f"resumed from {folder} (epoch {self.state.epoch}, step {self.state.global_step})")
        if self.main:
            self._truncate_log(self.state.global_step)

    def _saved_rng(self, train_state: dict) -> list[torch.Tensor]:
        if "rng" not in train_state:  # a checkpoint from before per-rank generators: one for all
            return [train_state["torch_rng"], *train_state["cuda_rng"]]
        ranks = train_state["rng"]
        if len(ranks) != self.acc.num_processes:
            raise OncerecError(
                f"the checkpoint was written by {len(ranks)} processes; resume with the same number "
                f"(now {self.acc.num_processes}) for the same result"
            )
        return ranks[self.acc.process_index]

    def _truncate_log(self, step: int) -> None:
        """Drop log lines written after the checkpoint by the interrupted process."""
        path = self.run_dir / "log.jsonl"
        if path.is_file():
            kept = [
                ln for ln in path.read_text().splitlines() if ln and json.loads(ln).get("step", 0) <= step
            ]
            path.write_text("".join(ln + "\n" for ln in kept))

    # -- evaluation --------------------------------------------------------------------------------------
    def evaluate(self, split_name: str, write: bool = False) -> dict:
        """Every process scores its share of the impressions (a contiguous block) and the main process gets
        them all, in order: at MIND-large scale one process alone would keep the others waiting past the
        collectives' timeout. Metrics (and the prediction file) on the main process; {} elsewhere."""
        split = self.dataset.split(split_name)
        world, rank = self.acc.num_processes, self.acc.process_index
        bounds = np.linspace(0, split.num_impressions, world + 1).astype(int)
        part = split.select(np.arange(bounds[rank], bounds[rank + 1])) if world > 1 else split
        predict = predict_fast if self.cfg.exp.fast_eval else predict_slow
        scores = (
            predict(
                self.model,
                self.dataset,
                part,
                self.cfg.exp.eval_batch_size,
                self.acc.device,
                progress=self.progress and self.main and split.num_impressions > 50_000,
            )
            if part.num_impressions
            else np.zeros(0, np.float32)  # more processes than impressions
        )
        self.model.train()
        if world > 1:
            scores = np.concatenate(gather_object([scores]))  # rank order = impression order
        if not self.main:
            return {}
        if write:
            write_split_predictions(self.run_dir / f"{split_name}.prediction.txt", split, scores)
        return split_metrics(split, scores, self.dataset, self.cfg.exp) if split.labelled else {}

    def _validate(self) -> None:
        """Every process evaluates its share; the main process decides; every process learns the decision."""
        decision = [None]
        m = self.evaluate("valid")
        if self.main:
            s = self.state
            value = m[self.cfg.exp.metric]
            improved = _better(self.cfg.exp.metric, value, s.best)
            if improved:
                s.best, s.best_step, s.bad_evals = value, s.global_step, 0
                save_weights(
                    self.run_dir / "best",
                    self.model.checkpoint_state(),
                    {"step": s.global_step, "epoch": s.epoch, self.cfg.exp.metric: value},
                )
            else:
                s.bad_evals += 1
            epoch = s.epoch + s.step_in_epoch / self.steps_per_epoch
            record = {"type": "eval", "split": "valid", "step": s.global_step, "epoch": epoch, **m}
            s.evals.append({k: record[k] for k in ("step", "epoch", self.cfg.exp.metric)})
            self._write_log(record)
            logger.info(
                f"valid @ step {s.global_step}: "
                + "  ".join(f"{k} {m[k]:.4f}" for k in table_metrics(self.cfg.exp.metrics))
                + ("  (best)" if improved else f"  (no gain {s.bad_evals}/{self.cfg.exp.patience or 'inf'})")
            )
            decision = [asdict(s)]
        broadcast_object_list(decision)
        self.state = TrainState(**decision[0])

    # -- training ----------------------------------------------------------------------------------------
    def _step(self, epoch: int, step: int, order: np.ndarray) -> float:
        world, rank, acc = self.acc.num_processes, self.acc.process_index, self.cfg.exp.acc_batch
        total = 0.0
        for a in range(acc):
            batch = self.sampler.batch(epoch, (step * acc + a) * world + rank, order).to(self.acc.device)
            sync = nullcontext() if a == acc - 1 else self.acc.no_sync(self.ddp_model)
            with sync, self.acc.autocast():
                loss = batch_loss(self.model, self.ddp_model(batch), batch, self.cfg.exp.loss)
            self.acc.backward(loss / acc)
            total += loss.item() / acc
        if self.cfg.exp.clip_norm:
            self.acc.clip_grad_norm_(self.model.parameters(), self.cfg.exp.clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total

    def _at_step_limit(self) -> bool:
        return bool(self.cfg.exp.max_steps) and self.state.global_step >= self.cfg.exp.max_steps

    def _out_of_patience(self) -> bool:
        return self.cfg.exp.patience > 0 and self.state.bad_evals >= self.cfg.exp.patience

    def fit(self) -> dict:
        cfg = self.cfg
        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if not cfg.exp.resume:
                write_text_atomic(self.run_dir / "config.yaml", dump_config(cfg))
                write_text_atomic(
                    self.run_dir / VOCAB_FILE, json.dumps(self.dataset.vocab_digests(), indent=1)
                )
        if cfg.exp.resume:
            self._restore()
        if self.main:
            resumed = self.state.global_step if cfg.exp.resume else None
            self.tracker = open_tracker(cfg.exp.tracker, self.run_dir, cfg.model_dump(mode="json"), resumed)
        try:
            self._epochs()
            return self.finish()
        finally:
            if self.tracker is not None:
                self.tracker.close()
                self.tracker = None

    def _epochs(self) -> None:
        """Train until the epochs, `max_steps` or the patience run out, evaluating and checkpointing."""
        cfg, s = self.cfg, self.state
        self.model.train()
        samples_per_step = cfg.exp.batch_size * cfg.exp.acc_batch * self.acc.num_processes
        logger.info(
            f"run dir {self.run_dir}: {self.steps_per_epoch} steps/epoch x {cfg.exp.epochs} epochs, "
            f"{samples_per_step} samples/step on {self.acc.num_processes} processes ({self.acc.device}), {sum(p.numel() for p in self.model.parameters() if p.requires_grad):,} parameters"
        )
        while s.epoch < cfg.exp.epochs and not s.stopped:
            order = self.sampler.order(s.epoch)
            bar = tqdm(
                total=self.steps_per_epoch,
                initial=s.step_in_epoch,
                desc=f"epoch {s.epoch + 1}/{cfg.exp.epochs}",
                disable=not (self.progress and self.main),
                leave=False,
            )
            window, window_loss, t0 = 0, 0.0, time.perf_counter()
            while s.step_in_epoch < self.steps_per_epoch:
                loss = self._step(s.epoch, s.step_in_epoch, order)
                s.step_in_epoch += 1
                s.global_step += 1
                window, window_loss = window + 1, window_loss + loss
                bar.update(1)
                if window == cfg.exp.log_every or s.step_in_epoch == self.steps_per_epoch:
                    rate = window * samples_per_step / (time.perf_counter() - t0)
                    bar.set_postfix(loss=f"{window_loss / window:.4f}", samples_s=f"{rate:.0f}")
                    self._write_log(
                        {
                            "type": "train",
                            "step": s.global_step,
                            "epoch": s.epoch + s.step_in_epoch / self.steps_per_epoch,
                            "loss": window_loss / window,
                            "lr": self.scheduler.get_last_lr()[0],
                            "samples_per_s": rate,
                        }
                    )
                    window, window_loss, t0 = 0, 0.0, time.perf_counter()
                at_limit = self._at_step_limit()
                if s.step_in_epoch in self.eval_points or at_limit:
                    self._validate()
                    s = self.state
                    s.stopped = at_limit or self._out_of_patience()
                    self._save()
                    if s.stopped:
                        break
                elif cfg.exp.save_every and s.global_step % cfg.exp.save_every == 0:
                    self._save()
            bar.close()
            if not s.stopped:
                # A checkpoint taken at the epoch's last step resumes here, straight into the next epoch.
                s.epoch, s.step_in_epoch = s.epoch + 1, 0

    def finish(self) -> dict:
        """Reload the best weights, evaluate valid and test, write predictions, metrics and curves."""
        self.acc.wait_for_everyone()  # best/ is written by the main process
        best = self.run_dir / "best"
        if best.is_dir():
            self.model.load_checkpoint_state(load_weights(best), str(best))
        metrics = {}
        full_names = self.cfg.exp.full_ranking
        for name in ("valid", "test"):
            if name in self.dataset.split_names:
                m = self.evaluate(name, write=True)
                if m and full_names:
                    # on the main process alone, the others waiting at the barrier below: an inner product ranks
                    # MIND-small's 50k users x 65k items in 1.5 min on 2 CPU cores; a CTR head over a large split
                    # could outlast the collectives' timeout (rank those with `oncerec evaluate`, one process)
                    m |= full_ranking_metrics(
                        self.model,
                        self.dataset,
                        self.dataset.split(name),
                        full_names,
                        self.cfg.exp.eval_batch_size,
                        self.acc.device,
                        progress=self.progress,
                    )
                if m:
                    metrics[name] = m
        if self.main:
            write_text_atomic(self.run_dir / "metrics.json", metrics_json(metrics) + "\n")
            drawn = plot_curves(
                self.run_dir / "log.jsonl",
                self.run_dir / "curves.png",
                [self.cfg.exp.metric, *table_metrics(self.cfg.exp.metrics)],
            )
            if not drawn:
                logger.info("curves.png not drawn: it needs matplotlib (pip install 'oncerec[plots]')")
            write_report(self.run_dir, self.cfg, metrics, self._examples())
        # Every process leaves together and closes the process group: one that exits while the others still
        # use it can abort in the collectives' threads ("terminate called without an active exception").
        self.acc.wait_for_everyone()
        self.acc.end_training()
        return metrics

    @property
    def run(self) -> Run:
        """The model as it stands (after `fit`: its best weights) with its config, dataset and run directory."""
        return Run(self.cfg, self.dataset, self.model, self.acc.device, self.run_dir)

    def _examples(self, users: int = 3, top_k: int = 5) -> list:
        """Top recommendations for the first few users of the last split, for the report."""
        run = self.run
        split = self.dataset.split(self.dataset.split_names[-1])
        names = self.dataset.vocab("user")
        chosen = list(dict.fromkeys(int(u) for u in np.asarray(split.user[:200])))[:users]
        return [(names[u], run.recommend(names[u], None, top_k)) for u in chosen]
