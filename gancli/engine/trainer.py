"""Usage: result = new_trainer(config, RuntimeOptions(data_dir="data")).fit(reporter)

The run driver, and the only training loop: it takes a TrainState (state.py) through the
planned epochs, logs the losses to metrics.jsonl, calls the epoch-end listeners (grids,
health warnings, --eval-every, the loss plot) and checkpoints after every epoch. It holds
the run's lock while training, turns a first SIGINT/SIGTERM/SIGHUP into a checkpoint and
a clean stop, and resumes exactly where a checkpoint left off.

Under torchrun every rank runs this same loop on its slice of each global batch (see
distributed.py); rank 0 alone writes the run directory and reports progress.
"""

from __future__ import annotations

import dataclasses
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from operator import methodcaller
from typing import Any

import torch

from gancli.engine import checkpoint as ckpt
from gancli.engine import distributed
from gancli.engine.clusters import training_clusters
from gancli.engine.config import Config, config_to_dict
from gancli.engine.data import ImageSet
from gancli.engine.errors import Interrupted, TrainingError
from gancli.engine.grids import check_scale, fixed_inputs, generate, grid_size, real_tiles
from gancli.engine.health import HealthMonitor
from gancli.engine.listeners import (
    EpochEnd,
    NullReporter,
    Outputs,
    Reporter,
    default_listeners,
)
from gancli.engine.runs import RunDir, lock_run
from gancli.engine.runtime import (
    RuntimeOptions,
    StopRequests,
    flushing_denormals,
    friendly_errors,
    resolve_precision,
    resumed_rng,
    runtime_notes,
    seed_everything,
)
from gancli.engine.state import STATS, TrainState

# what metrics.jsonl keeps of each process's start (a "segment" record)
SEGMENT_KEYS = ("device", "threads", "world_size", "precision", "precision_reason")


@dataclass
class TrainResult:
    run_dir: str
    epochs: int
    steps: int
    seconds: float
    images_per_second: float
    final: dict[str, float] = field(default_factory=dict)
    world_size: int = 1  # processes that trained together (torchrun ranks)
    start_step: int = 0  # steps done before this process began (a resumed run)
    start_epoch: int = 0  # epochs done before this process began


class Trainer:
    """One run directory trained by one TrainState: epochs, logs, checkpoints, signals."""

    def __init__(
        self,
        config: Config,
        run: RunDir,
        data: ImageSet,
        device: torch.device,
        options: RuntimeOptions | None = None,
        checkpoint: dict[str, Any] | None = None,
    ):
        self.config, self.run, self.data, self.device = config, run, data, device
        previous = checkpoint.get("precision") if checkpoint else None
        self.options, self.precision_reason = resolve_precision(
            options or RuntimeOptions(), device, previous
        )
        self.ranks = distributed.current()
        self.is_main = self.ranks.is_main  # the rank that writes files and reports
        train_cfg = config.training
        distributed.check_batch_size(train_cfg.batch_size, self.ranks.world_size)
        data.check_enough(train_cfg.batch_size, config.objective.n_critic)
        # told to the user when training starts
        self.notes: list[str] = list(data.notes) + runtime_notes(self.options, device)
        self.clusters, note = training_clusters(config, data, checkpoint)
        self.notes += [note] if note else []
        # what D is shown: the images with their classes, or with their clusters
        self.train_data = data
        if self.clusters is not None:
            cluster_labels = self.clusters.labels.to(data.labels.device)
            self.train_data = dataclasses.replace(data, labels=cluster_labels)
        if checkpoint is None:
            seed_everything(train_cfg.seed)
        self.state = TrainState(config, data.image_shape, data.num_classes, device, self.options)
        self.steps_per_epoch = len(data) // train_cfg.batch_size // config.objective.n_critic
        self.epoch, self.step_in_epoch, self.elapsed = 0, 0, 0.0
        self.fixed_noise, self.fixed_labels, self.grid_nrow = fixed_inputs(
            config.model, train_cfg, data.num_classes, self.clusters
        )
        grid = grid_size(len(self.fixed_labels), self.grid_nrow, data.image_shape)
        check_scale(train_cfg.grid_scale, *grid, "each epoch grid", "training.grid_scale")
        if checkpoint is None and self.ranks.distributed:
            # Every rank built the same weights from the seed; from here on each rank
            # draws its own noise. Reproducible for a given number of ranks only.
            seed_everything(distributed.rank_seed(train_cfg.seed, 0, self.ranks.rank))
        # The random state training starts from: the seeded state after building the models,
        # or the checkpoint's. fit() restores it, so nothing run in between can shift it.
        self._rng: dict[str, Any] = ckpt.capture_rng()
        if checkpoint is not None:
            self._load(checkpoint)
        self.reals = real_tiles(data, self.fixed_labels, config.model.conditional)
        probabilistic = self.state.objective.probabilistic
        # the class of each grid image; all 0 for an unconditional grid (clusters or not)
        classes = self.fixed_labels if config.model.conditional else self.fixed_labels * 0
        self.health = HealthMonitor(probabilistic, self.reals, classes)
        self.stops = StopRequests()
        self.reporter: Reporter = NullReporter()
        prior = self.clusters.prior if self.clusters is not None else None
        listeners = default_listeners(
            run, config, data, self.grid_nrow, self.row_labels, self.health, self.step,
            self.note, self.warn, prior, self.options.data_dir,
        ) if self.is_main else []  # fmt: skip
        self.outputs = Outputs(listeners, self.note)
        self.last_is_good = False  # last.pt is known to be a valid checkpoint
        # Set by starting.resume_trainer: the run's files to bring in line, once locked.
        self.resume_pending = False
        self.raised_epochs: int | None = None
        self._clock: float | None = None  # perf_counter at the start of this process's fit()

    @property
    def step(self) -> int:
        """G steps taken in the whole run."""
        return self.state.steps

    @property
    def row_labels(self) -> list[str] | None:
        """Class names for the rows of a conditional grid (one row per class)."""
        return list(self.data.class_names) if self.config.model.conditional else None

    # ------------------------------------------------------------------ checkpoints

    def checkpoint(self) -> dict[str, Any]:
        """Everything a checkpoint holds: the TrainState's, and where the run stands."""
        return {
            "config": config_to_dict(self.config),
            **self.state.state_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "elapsed": self._wall(),
            "rng": ckpt.capture_rng(),
            "fixed_noise": self.fixed_noise,
            "fixed_labels": self.fixed_labels,
            "grid_nrow": self.grid_nrow,
            "data": self.data.describe(),
            "versions": ckpt.versions(),
            "world_size": self.ranks.world_size,
            "precision": self.options.precision,
            "clusters": self.clusters.state_dict() if self.clusters is not None else None,
        }

    def _load(self, state: dict[str, Any]) -> None:
        self.state.load_state_dict(state)
        self.epoch = int(state["epoch"])
        self.step_in_epoch, self.elapsed = int(state["step_in_epoch"]), float(state["elapsed"])
        self.fixed_noise, self.fixed_labels = state["fixed_noise"], state["fixed_labels"]
        self.grid_nrow = int(state["grid_nrow"])
        self._rng = resumed_rng(state, self.ranks, self.config.training.seed)

    def save(self) -> None:
        """Checkpoint the current state; refuses weights that are not finite, or that differ
        between ranks. Every rank calls it (it gathers from all); rank 0 writes."""
        nets = {"generator": self.state.generator, "discriminator": self.state.discriminator}
        checksums, rngs = distributed.gather_checked(nets, self.step)
        if not self.is_main:
            return
        state = self.checkpoint()
        state["rank_checksums"] = checksums
        if self.ranks.distributed:
            state["rank_rng"] = rngs
        # Keep the old last.pt as previous.pt, unless it is unreadable: then previous.pt may
        # hold the only good checkpoint, and it stays.
        previous = self.run.previous_checkpoint if self.last_is_good else None
        ckpt.save_checkpoint(self.run.last_checkpoint, state, previous=previous)
        self.last_is_good = True
        every = self.config.training.save_every
        if every and self.step_in_epoch == 0 and self.epoch % every == 0:
            ckpt.save_checkpoint(self.run.epoch_checkpoint(self.epoch), state)

    # ------------------------------------------------------------------ the loop

    def fit(self, reporter: Reporter | None = None) -> TrainResult:
        """Train until the planned epochs are done (or a stop signal); rank 0 reports."""
        self.reporter = (reporter if self.is_main else None) or NullReporter()
        images_per_step = self.config.training.batch_size * self.config.objective.n_critic
        start_step, start_epoch = self.step, self.epoch
        with (
            lock_run(self.run) if self.is_main else nullcontext(),
            self.stops.installed(),
            flushing_denormals(),
            friendly_errors(self.run),
        ):
            if self.is_main and self.resume_pending:
                self._write_resumed_run()
            info = self._start_info()
            if self.is_main:  # what this process trains with: one record per run segment
                segment = {k: info[k] for k in SEGMENT_KEYS}
                where = {"epoch": self.epoch + 1, "step": self.step}
                self.run.log.append({"kind": "segment", **where, **segment})
            self.reporter.start(info)
            for note in self.notes:
                self.reporter.note(note)
            clock = self._clock = time.perf_counter()
            ckpt.restore_rng(self._rng)
            try:
                last = self._train_epochs(images_per_step)
            finally:
                self._rng = ckpt.capture_rng()  # a later fit() carries on from here
            self.outputs.tell(methodcaller("on_fit_end"))
        seconds = time.perf_counter() - clock
        steps_done = self.step - start_step
        return TrainResult(
            run_dir=str(self.run.path),
            epochs=self.epoch,
            steps=self.step,
            seconds=round(seconds, 3),
            images_per_second=round(steps_done * images_per_step / seconds, 1) if seconds else 0.0,
            final=last,
            world_size=self.ranks.world_size,
            start_step=start_step,
            start_epoch=start_epoch,
        )

    def _start_info(self) -> dict[str, Any]:
        cfg = self.config.training
        return {
            "run_dir": str(self.run.path),
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "world_size": self.ranks.world_size,
            "precision": self.options.precision,
            "precision_reason": self.precision_reason,
            "dataset": f"{self.data.name} ({len(self.data)} {self.data.split} images)",
            "epochs": cfg.epochs,
            "start_epoch": self.epoch,
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": cfg.epochs * self.steps_per_epoch,
            "start_step": self.step,
        }

    def _write_resumed_run(self) -> None:
        """A resumed run's own files, once the lock is held: metrics written after the
        checkpoint are dropped (they will be written again), and a raised --epochs goes
        into config.yaml."""
        if self.raised_epochs is not None:
            self.run.write_config(self.config, "resumed")
        self.run.log.keep_until(self.step)
        self.resume_pending = False

    def _train_epochs(self, images_per_step: int) -> dict[str, float]:
        """Train until the planned epochs are done; returns the last logged losses."""
        last: dict[str, float] = {}
        while self.epoch < self.config.training.epochs:
            clock = time.perf_counter()
            epoch_sum, steps, last = self._train_epoch(images_per_step, last)
            seconds = time.perf_counter() - clock
            record = self._log("epoch", epoch_sum, steps, steps * images_per_step, seconds)
            self.epoch += 1
            self.step_in_epoch = 0
            self._end_epoch()
            self.reporter.epoch(record)
        return last

    def _train_epoch(
        self, images_per_step: int, last: dict[str, float]
    ) -> tuple[torch.Tensor, int, dict[str, float]]:
        """The rest of the current epoch's steps: their summed stats, their number and the
        last logged losses. An epoch resumed midway averages only the part it trained."""
        cfg = self.config.training
        window = torch.zeros(len(STATS), device=self.device)
        epoch_sum = torch.zeros(len(STATS), device=self.device)
        window_steps, steps, window_clock = 0, 0, time.perf_counter()
        shown_at = -math.inf  # the last preview of the window's losses; the first step shows one
        every = self.reporter.preview_seconds  # seconds between previews; None: none
        batches = self.train_data.batches(
            cfg.batch_size,
            cfg.seed,
            self.epoch,
            start=self.step_in_epoch * self.config.objective.n_critic,
            rank=self.ranks.rank,
            world_size=self.ranks.world_size,
        )
        while self.step_in_epoch < self.steps_per_epoch:
            stats = self.state.step(batches)
            window += stats
            epoch_sum += stats
            window_steps += 1
            steps += 1
            self.step_in_epoch += 1
            flush = self.step % cfg.log_every == 0 or self.step_in_epoch == self.steps_per_epoch
            shown = None  # what the reporter gets: a log line's figures, or a preview
            images = window_steps * images_per_step
            if flush:
                now = time.perf_counter()
                logged = self._log("step", window, window_steps, images, now - window_clock)
                window.zero_()
                window_steps, window_clock = 0, now
                last = {k: logged[k] for k in STATS}
                self.outputs.tell(methodcaller("on_log", logged))
                shown = logged
            elif every is not None and time.perf_counter() - shown_at >= every:
                # The window's losses so far, for the eye only: at most one device sync
                # per preview, this rank's figures, nothing written.
                now = shown_at = time.perf_counter()
                shown = dict(zip(STATS, (window / window_steps).tolist(), strict=True))
                shown["images_per_second"] = images / max(now - window_clock, 1e-9)
            self.reporter.advance(self.step, self.epoch + 1, shown)
            signum = self._agreed_stop(flush)
            if signum is not None:
                self._interrupt(signum)
        return epoch_sum, steps, last

    def _log(
        self, kind: str, sums: torch.Tensor, steps: int, images: int, seconds: float
    ) -> dict[str, Any]:
        """Append one record of mean stats to metrics.jsonl; the only place the loop waits
        for the device. Under torchrun the stats are averaged over the ranks first (every
        rank calls this)."""
        means = (distributed.all_mean(sums) / max(steps, 1)).tolist()  # one sync per log line
        # `epoch` is 1-based: the epoch this record belongs to.
        record: dict[str, Any] = {"kind": kind, "epoch": self.epoch + 1, "step": self.step}
        record.update({k: round(v, 6) for k, v in zip(STATS, means, strict=True)})
        record["images_per_second"] = round(images / seconds, 1) if seconds > 0 else None
        record["wall"] = round(self._wall(), 3)
        if not all(math.isfinite(v) for v in means):
            raise distributed.agreed(
                TrainingError(
                    f"losses became NaN/Inf by step {self.step} (epoch {self.epoch + 1}): "
                    f"loss_d={means[0]}, loss_g={means[1]}; the last good checkpoint is kept. "
                    "Lower optim.lr_d / optim.lr_g, or try model.spectral_norm=true"
                )
            )
        if self.is_main:
            self.run.log.append(record)
        return record

    def _wall(self) -> float:
        """Training seconds so far, earlier processes of a resumed run included."""
        return self.elapsed + (time.perf_counter() - self._clock if self._clock else 0.0)

    def _end_epoch(self) -> None:
        """The listeners see the epoch's samples of the fixed noise; then every rank saves."""
        if self.is_main:
            sampler = self.state.sampler
            samples = generate(sampler, self.fixed_noise, self.fixed_labels)
            end = EpochEnd(self.epoch, self.step, sampler, samples)
            self.outputs.tell(methodcaller("on_epoch_end", end))
        self.save()  # every rank: it checks that their weights agree

    def note(self, text: str) -> None:
        """Tell the user (rank 0's reporter)."""
        self.reporter.note(text)

    def warn(self, text: str | None) -> None:
        """Tell the user, and keep it in metrics.jsonl (rank 0 only)."""
        if text is None or not self.is_main:
            return
        self.reporter.note(f"warning: {text}")
        record = {"kind": "warning", "epoch": self.epoch + 1, "step": self.step, "message": text}
        self.run.log.append(record)

    # ------------------------------------------------------------------ stopping

    def _agreed_stop(self, log_step: bool) -> int | None:
        """The stop signal, once every rank knows of it, so that all stop after the same step.

        torchrun hands SIGINT/SIGTERM to every rank, but not at the same step. On the CPU
        the ranks compare notes after every step (tens of microseconds over gloo); on GPUs
        only at log steps, where the loop waits for the device anyway: reading a flag
        every step would stall the GPU's queue of work each time.
        """
        if not self.ranks.distributed:
            return self.stops.signum
        if log_step or self.device.type == "cpu":
            return distributed.agree_signal(self.stops.signum)
        return None

    def _interrupt(self, signum: int) -> None:
        self.save()
        distributed.barrier()  # rank 0's checkpoint is written before any rank exits
        planned, run = self.config.training.epochs, self.run
        raise distributed.agreed(
            Interrupted.by_signal(
                signum, self.step, self.epoch + 1, planned, run.path, run.last_checkpoint
            )
        )
