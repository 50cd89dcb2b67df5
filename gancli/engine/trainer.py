"""Usage: result = Trainer.new(config, RuntimeOptions(data_dir="data")).fit(reporter)

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
import shlex
import signal
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from operator import methodcaller
from pathlib import Path
from typing import Any

import torch

from gancli.engine import checkpoint as ckpt
from gancli.engine import distributed
from gancli.engine.clusters import Clusters, cached_clusters
from gancli.engine.config import (
    Config,
    config_to_dict,
)
from gancli.engine.data import ImageSet, cache_home, load_dataset
from gancli.engine.errors import (
    EXIT_INTERRUPTED,
    CheckpointError,
    ConfigError,
    GancliError,
    TrainingError,
)
from gancli.engine.health import HealthMonitor
from gancli.engine.listeners import (
    EpochEnd,
    Listener,
    NullReporter,
    Reporter,
    default_listeners,
)
from gancli.engine.runs import RunDir, lock_run, read_resume_point, runs_root
from gancli.engine.runtime import (
    RuntimeOptions,
    StopRequests,
    flushing_denormals,
    friendly_errors,
    prepare,
    runtime_notes,
    seed_everything,
)
from gancli.engine.sampling import check_scale, fixed_inputs, generate, grid_size, save_grid
from gancli.engine.state import STATS, TrainState


class Interrupted(GancliError):
    """Training stopped on a signal after saving a checkpoint: a stop the user asked for,
    told as such (with how to resume), not as an error."""

    prefix = None

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


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
        self.options = options or RuntimeOptions()
        self.ranks = distributed.current()
        self.is_main = self.ranks.is_main  # the rank that writes files and reports
        train_cfg = config.training
        distributed.check_batch_size(train_cfg.batch_size, self.ranks.world_size)
        if len(data) < train_cfg.batch_size * config.objective.n_critic:
            skipped = f" ({data.skipped} unreadable files skipped)" if data.skipped else ""
            raise ConfigError(
                f"training.batch_size: {train_cfg.batch_size} x objective.n_critic "
                f"{config.objective.n_critic} real images are needed per G step, but the dataset "
                f"has only {len(data)}{skipped}; lower the batch size or raise data.limit"
            )
        # told to the user when training starts
        self.notes: list[str] = list(data.notes) + runtime_notes(self.options, device)
        self.clusters = self._clusters(checkpoint)
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
        self.reals = self._real_tiles()  # real images laid out like the epoch grids
        probabilistic = self.state.objective.probabilistic
        self.health = HealthMonitor(probabilistic, self.reals, self.grid_classes)
        self.stops = StopRequests()
        self.reporter: Reporter = NullReporter()
        self.listeners: list[Listener] = default_listeners(self) if self.is_main else []
        self._last_is_good = False  # last.pt is known to be a valid checkpoint
        # Set by resume(): the run directory's files still to bring in line, once locked.
        self._resume_pending = False
        self._raised_epochs: int | None = None
        self._clock: float | None = None  # perf_counter at the start of this process's fit()
        self._failed_outputs: set[type[Listener]] = set()  # listeners already warned about

    def _clusters(self, checkpoint: dict[str, Any] | None) -> Clusters | None:
        """model.clusters: the checkpoint's clusters, or new ones found by rank 0."""
        k = self.config.model.clusters
        if not k:
            return None
        if checkpoint is not None:
            try:
                clusters = Clusters.from_state(checkpoint["clusters"])
            except (ValueError, KeyError, TypeError, RuntimeError) as exc:
                raise CheckpointError(f"the checkpoint's clusters are damaged ({exc})") from None
            if len(clusters.labels) != len(self.data):
                raise CheckpointError("the checkpoint's clusters are not for this dataset")
            return clusters
        seed, folder = self.config.training.seed, cache_home() / "clusters"
        clusters, cached = distributed.on_main(
            lambda: cached_clusters(self.data.images, k, seed, folder)
        )
        source = f" (an earlier run's, from {folder})" if cached else ""
        self.notes.append(f"model.clusters: {k} k-means clusters of the training images{source}")
        return clusters

    @property
    def step(self) -> int:
        """G steps taken in the whole run."""
        return self.state.steps

    @property
    def grid_classes(self) -> torch.Tensor:
        """The class of each grid image; all 0 for an unconditional grid (clusters or not)."""
        if self.config.model.conditional:
            return self.fixed_labels
        return torch.zeros_like(self.fixed_labels)

    @property
    def row_labels(self) -> list[str] | None:
        """Class names for the rows of a conditional grid (one row per class)."""
        return list(self.data.class_names) if self.config.model.conditional else None

    # ------------------------------------------------------------------ construction

    @classmethod
    def new(
        cls,
        config: Config,
        options: RuntimeOptions,
        preset_name: str = "custom",
        out: str | None = None,
        name: str | None = None,
        device: torch.device | None = None,
    ) -> Trainer:
        """Load data, create the run directory under `out` (default: the runs root) named
        after `name` or the preset, write config.yaml and reals.png. `device`: what
        runtime.prepare(options) returned, when the caller has set up the process already.

        Under torchrun, call it inside distributed.session(): rank 0 creates the run
        directory and tells the others its path.
        """
        device = device or prepare(options)
        data = load_dataset(config.data, options.data_dir, device=device)
        root = runs_root(out)
        run = distributed.on_main(lambda: RunDir.create(root, name or preset_name))
        try:
            trainer = cls(config, run, data, device, options)
            if trainer.is_main:
                run.write_config(config, f"preset: {preset_name}")
                scale = config.training.grid_scale
                save_grid(trainer.reals, run.reals, trainer.grid_nrow, trainer.row_labels, scale)
        except BaseException:  # an error, a full disk or a signal: leave no trace
            if distributed.is_main():
                run.discard()
            raise
        return trainer

    @classmethod
    def resume(
        cls,
        run_path: str | Path,
        options: RuntimeOptions,
        epochs: int | None = None,
        device: torch.device | None = None,
    ) -> Trainer:
        """Continue a run from its newest valid checkpoint; `epochs` raises the planned total.

        Nothing in the run directory changes before fit() holds the run's lock. Under
        torchrun, rank 0 reads the checkpoint and hands it to the others (no shared file
        system needed); the number of ranks may differ from the run's last one.
        """
        device = device or prepare(options)
        run, path, state, problems, config = distributed.on_main(
            lambda: read_resume_point(run_path, epochs)
        )
        data_dir = options.data_dir
        source = Path(str(state.get("data", {}).get("source", "")))
        if data_dir is None and source.name == "raw" and source.is_dir():
            data_dir = str(source.parents[1])  # read again from <root>/<Folder>/raw
        data = load_dataset(config.data, data_dir, device=device)
        if len(data) != state["data"]["num_images"]:
            raise CheckpointError(
                f"the dataset now has {len(data)} images, the run was trained on "
                f"{state['data']['num_images']}; resume needs the same data"
            )
        trainer = cls(config, run, data, device, options, checkpoint=state)
        trainer._last_is_good = path == run.last_checkpoint
        trainer._resume_pending, trainer._raised_epochs = True, epochs
        if problems:
            trainer.notes.append(
                f"resuming from {path.name} (step {trainer.step}); skipped: {'; '.join(problems)}"
            )
        planned = config.training.epochs
        if trainer.epoch >= planned and not trainer.step_in_epoch:
            trainer.notes.append(
                f"the run has finished its {planned} epoch{'s' if planned != 1 else ''}: nothing "
                f"left to train; pass --epochs N (more than {planned}) to train it further"
            )
        return trainer

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
            "data": {
                "dataset": self.data.name,
                "split": self.data.split,
                "source": self.data.source,
                "num_images": len(self.data),
                "image_shape": list(self.data.image_shape),
                "class_names": list(self.data.class_names),
            },
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
        self._rng = self._resumed_rng(state)

    def _resumed_rng(self, state: dict[str, Any]) -> dict[str, Any]:
        """The random state to go on from: this rank's own, when the checkpoint has it."""
        if not self.ranks.distributed:
            return dict(state["rng"])  # rank 0's, when the run was distributed before
        saved = state.get("rank_rng") or []
        if len(saved) == self.ranks.world_size:
            return dict(saved[self.ranks.rank])
        # A different number of ranks than before: new noise streams, fixed by seed and step.
        seed = distributed.rank_seed(self.config.training.seed, self.step, self.ranks.rank)
        seed_everything(seed)
        return ckpt.capture_rng()

    def save(self) -> None:
        """Checkpoint the current state; refuses weights that are not finite, or that differ
        between ranks. Every rank calls it (it gathers from all); rank 0 writes."""
        for name in ("generator", "discriminator"):
            net = getattr(self.state, name)
            if not all(bool(torch.isfinite(p).all()) for p in net.parameters()):
                raise self._agreed_failure(
                    f"the {name}'s weights became NaN/Inf by step {self.step}; the last good "
                    "checkpoint is kept. Lower optim.lr_d / optim.lr_g"
                )
        checksums, rngs = self._gather_ranks()
        if not self.is_main:
            return
        state = self.checkpoint()
        state["rank_checksums"] = checksums
        if self.ranks.distributed:
            state["rank_rng"] = rngs
        # Keep the old last.pt as previous.pt, unless it is unreadable: then previous.pt may
        # hold the only good checkpoint, and it stays.
        previous = self.run.previous_checkpoint if self._last_is_good else None
        ckpt.save_checkpoint(self.run.last_checkpoint, state, previous=previous)
        self._last_is_good = True
        every = self.config.training.save_every
        if every and self.step_in_epoch == 0 and self.epoch % every == 0:
            ckpt.save_checkpoint(self.run.epoch_checkpoint(self.epoch), state)

    def _gather_ranks(self) -> tuple[list[list[str]], list[dict[str, Any] | None]]:
        """Every rank's weight checksums and RNG state; TrainingError if the weights differ.

        DDP keeps the ranks' weights equal by averaging gradients; this checks that it did.
        """
        mine = [
            distributed.weights_checksum(self.state.generator),
            distributed.weights_checksum(self.state.discriminator),
        ]
        rng = ckpt.capture_rng() if self.ranks.distributed else None
        gathered = distributed.gather((mine, rng))
        checksums = [sums for sums, _ in gathered]
        odd = [rank for rank, sums in enumerate(checksums) if sums != checksums[0]]
        if odd:
            raise self._agreed_failure(
                f"the weights of rank(s) {', '.join(map(str, odd))} differ from rank 0's at "
                f"step {self.step}; the last good checkpoint is kept: resume from it"
            )
        return checksums, [state for _, state in gathered]

    def _agreed_failure(self, message: str) -> TrainingError:
        """The error for a failure every rank meets alike (agreed data): rank 0 prints it."""
        error = TrainingError(message)
        error.quiet = not self.is_main
        return error

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
            if self.is_main and self._resume_pending:
                self._write_resumed_run()
            self.reporter.start(self._start_info())
            for note in self.notes:
                self.reporter.note(note)
            clock = self._clock = time.perf_counter()
            ckpt.restore_rng(self._rng)
            try:
                last = self._train_epochs(images_per_step)
            finally:
                self._rng = ckpt.capture_rng()  # a later fit() carries on from here
            self._tell_listeners(methodcaller("on_fit_end"))
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
        if self._raised_epochs is not None:
            self.run.write_config(self.config, "resumed")
        self.run.log.keep_until(self.step)
        self._resume_pending = False

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
            if flush:
                now = time.perf_counter()
                images = window_steps * images_per_step
                logged = self._log("step", window, window_steps, images, now - window_clock)
                window.zero_()
                window_steps, window_clock = 0, now
                last = {k: logged[k] for k in STATS}
                self._tell_listeners(methodcaller("on_log", logged))
                shown = logged
            elif every is not None and time.perf_counter() - shown_at >= every:
                # The window's losses so far, for the eye only: at most one device sync
                # per preview, this rank's figures, nothing written.
                now = shown_at = time.perf_counter()
                shown = dict(zip(STATS, (window / window_steps).tolist(), strict=True))
                images = window_steps * images_per_step
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
            raise self._agreed_failure(
                f"losses became NaN/Inf by step {self.step} (epoch {self.epoch + 1}): "
                f"loss_d={means[0]}, loss_g={means[1]}; the last good checkpoint is kept. "
                "Lower optim.lr_d / optim.lr_g, or try model.spectral_norm=true"
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
            self._tell_listeners(methodcaller("on_epoch_end", end))
        self.save()  # every rank: it checks that their weights agree

    def _tell_listeners(self, event: methodcaller) -> None:
        """`event` on every listener in turn. An output a listener cannot make (a full
        disk, a folder in the way of losses.png, a damaged epoch grid for the GIF) is a
        warning, said once per listener, not the end of training: the epoch's checkpoint
        is still written, and the command's exit code says the training succeeded."""
        for listener in self.listeners:
            try:
                event(listener)
            except Interrupted:
                raise
            except (GancliError, OSError) as exc:
                if type(listener) not in self._failed_outputs:
                    self._failed_outputs.add(type(listener))
                    self.note(f"warning: {exc}; training goes on without it")

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

    def _real_tiles(self) -> torch.Tensor:
        """Real images laid out like the epoch grids: row i of a conditional run shows class i."""
        labels, images = self.fixed_labels.tolist(), self.data.images.cpu()
        if not self.config.model.conditional:
            return images[: len(labels)]
        tiles = torch.zeros(len(labels), *self.data.image_shape, dtype=torch.uint8)
        seen: Counter[int] = Counter()
        for i, label in enumerate(labels):
            matches = (self.data.labels.cpu() == label).nonzero().flatten()
            if len(matches):  # a class missing from a --limit'ed dataset stays blank
                tiles[i] = images[int(matches[seen[label] % len(matches)])]
            seen[label] += 1
        return tiles

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
        code = EXIT_INTERRUPTED if signum == signal.SIGINT else 128 + signum
        how = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        error = Interrupted(
            f"stopped by {how}: interrupted at step {self.step} (epoch {self.epoch + 1} of "
            f"{self.config.training.epochs}); checkpoint saved to "
            f"{self.run.last_checkpoint}. Resume with: gancli train --resume "
            f"{shlex.quote(str(self.run.path))}",
            code,
        )
        error.quiet = not self.is_main
        raise error
