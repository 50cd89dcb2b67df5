"""Usage: result = Trainer.new(config, RuntimeOptions(data_dir="data")).fit(reporter)

The only training loop. It never asks which family or objective it is training: the
models take (input, labels), the objective supplies the losses, its penalty and what
happens after a D step, and `n_critic` is data.

Under torchrun every rank runs this same loop on its slice of each global batch (see
distributed.py); rank 0 alone writes the run directory and reports progress.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import signal
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from gancli.engine import checkpoint as ckpt
from gancli.engine import distributed
from gancli.engine.animation import write_progress
from gancli.engine.config import (
    Config,
    config_from_dict,
    config_to_dict,
    config_to_yaml,
    load_config,
)
from gancli.engine.data import ImageSet, load_dataset
from gancli.engine.errors import (
    EXIT_INTERRUPTED,
    CheckpointError,
    ConfigError,
    GancliError,
    TrainingError,
)
from gancli.engine.health import HealthMonitor
from gancli.engine.losses import build_objective
from gancli.engine.models import build_models, has_batch_norm, has_convolutions
from gancli.engine.plots import plot_losses, read_metrics
from gancli.engine.runs import RunDir, lock_run, runs_root
from gancli.engine.runtime import (
    RuntimeOptions,
    autocast,
    compiled,
    flushing_denormals,
    friendly_errors,
    grad_scaler,
    prepare,
    runtime_notes,
    seed_everything,
)
from gancli.engine.sampling import fixed_inputs, generate, save_grid

LOSS_FIELDS = ("loss_d", "loss_g", "d_real", "d_fake")


class Reporter(Protocol):
    """What the loop tells the outside world; the CLI renders it as a progress bar or log lines."""

    def start(self, info: dict[str, Any]) -> None: ...
    def advance(self, step: int, stats: dict[str, float] | None) -> None: ...
    def epoch(self, record: dict[str, Any]) -> None: ...
    def note(self, text: str) -> None: ...


class NullReporter:
    def start(self, info: dict[str, Any]) -> None: ...
    def advance(self, step: int, stats: dict[str, float] | None) -> None: ...
    def epoch(self, record: dict[str, Any]) -> None: ...
    def note(self, text: str) -> None: ...


class Interrupted(GancliError):
    """Training stopped on a signal after saving a checkpoint."""

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


def _make_optimizer(
    config: Config, params: Iterator[nn.Parameter], lr: float
) -> torch.optim.Optimizer:
    opt = config.optim
    if opt.name == "adam":
        # Fused Adam updates all tensors in one kernel per step: much faster on small models.
        return torch.optim.Adam(params, lr=lr, betas=(opt.beta1, opt.beta2), fused=True)
    return torch.optim.RMSprop(params, lr=lr, foreach=True)


def _check_same_run(run: RunDir, checkpoint: Path, config: Config) -> None:
    """Refuse a checkpoint whose config differs from the run's config.yaml (epochs aside)."""
    if not run.config.is_file():
        return
    try:
        recorded = config_to_dict(load_config(run.config))
    except ConfigError:
        return  # an unreadable config.yaml is replaced by the checkpoint's own on resume
    ours = config_to_dict(config)
    for section, values in ours.items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            theirs = recorded.get(section, {}).get(key)
            if (section, key) != ("training", "epochs") and value != theirs:
                raise CheckpointError(
                    f"{checkpoint} does not belong to {run.path}: {section}.{key} is {value!r} "
                    f"in the checkpoint but {theirs!r} in config.yaml"
                )


def _read_newest(
    run_path: str | Path, epochs: int | None
) -> tuple[RunDir, Path, dict[str, Any], list[str], Config]:
    """A run's newest valid checkpoint and its config (with `epochs` raised), checked."""
    run = RunDir.open(run_path)
    path, state, problems = run.newest_checkpoint()
    saved = dict(state["config"])
    if epochs is not None:
        saved["training"] = {**saved["training"], "epochs": epochs}
    try:
        config = config_from_dict(saved)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    _check_same_run(run, path, config)
    if config.training.epochs < state["epoch"]:
        raise ConfigError(
            f"--epochs {config.training.epochs}: the run has already done {state['epoch']} epochs"
        )
    return run, path, state, problems, config


class Trainer:
    def __init__(
        self,
        config: Config,
        run: RunDir,
        data: ImageSet,
        device: torch.device,
        state: dict[str, Any] | None = None,
        options: RuntimeOptions | None = None,
    ):
        self.config, self.run, self.data, self.device = config, run, data, device
        self.options = options or RuntimeOptions()
        self.ranks = distributed.current()
        self.is_main = self.ranks.is_main  # the rank that writes files and reports
        model_cfg, train_cfg = config.model, config.training
        distributed.check_batch_size(train_cfg.batch_size, self.ranks.world_size)
        if len(data) < train_cfg.batch_size * config.objective.n_critic:
            raise ConfigError(
                f"training.batch_size: {train_cfg.batch_size} x objective.n_critic "
                f"{config.objective.n_critic} real images are needed per G step, but the dataset "
                f"has only {len(data)}; lower the batch size or raise data.limit"
            )
        if state is None:
            seed_everything(train_cfg.seed)
        generator, discriminator = build_models(model_cfg, data.image_shape, data.num_classes)
        if self.options.sync_bn:  # same parameter names: checkpoints stay interchangeable
            generator = nn.SyncBatchNorm.convert_sync_batchnorm(generator)
            discriminator = nn.SyncBatchNorm.convert_sync_batchnorm(discriminator)
        # Convolutions run markedly faster on channels-last tensors (about 1.4x for DCGAN on
        # a 2-core CPU); fully connected models have nothing to gain.
        self.memory_format = (
            torch.channels_last if has_convolutions(generator) else torch.contiguous_format
        )
        self.generator = generator.to(device).to(memory_format=self.memory_format)
        self.discriminator = discriminator.to(device).to(memory_format=self.memory_format)
        self.ema: nn.Module | None = None
        if train_cfg.ema > 0:
            self.ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.objective = build_objective(config.objective)
        self.opt_g = _make_optimizer(config, self.generator.parameters(), config.optim.lr_g)
        self.opt_d = _make_optimizer(config, self.discriminator.parameters(), config.optim.lr_d)
        # One loss scaler per optimiser (fp16 only): D's and G's gradients overflow at
        # different scales, and each scaler's update follows its own optimiser's step.
        self.scaler_g = grad_scaler(device, self.options.precision)
        self.scaler_d = grad_scaler(device, self.options.precision)
        # Without batch norm, D sees real and fake in one pass: same maths, better matmuls.
        self.joint_d_pass = not has_batch_norm(self.discriminator)
        self.steps_per_epoch = len(data) // train_cfg.batch_size // config.objective.n_critic
        self.epoch, self.step, self.step_in_epoch, self.elapsed = 0, 0, 0, 0.0
        noise, labels, self.grid_nrow = fixed_inputs(
            model_cfg.z_dim,
            train_cfg.grid_size,
            data.num_classes,
            model_cfg.conditional,
            train_cfg.seed,
        )
        self.fixed_noise, self.fixed_labels = noise, labels
        if state is None and self.ranks.distributed:
            # Every rank built the same weights from the seed; from here on each rank
            # draws its own noise. Reproducible for a given number of ranks only.
            seed_everything(distributed.rank_seed(train_cfg.seed, 0, self.ranks.rank))
        # The random state training starts from: the seeded state after building the models,
        # or the checkpoint's. fit() restores it, so nothing run in between can shift it.
        self._rng: dict[str, Any] = ckpt.capture_rng()
        if state is not None:
            self._load_state(state)
        self._g_train, self._d_train, self._d_frozen = self._training_modules()
        self.reals = self._real_tiles()  # real images laid out like the epoch grids
        self.health = HealthMonitor(self.objective.probabilistic, self.reals, self.fixed_labels)
        self._stop_signal: int | None = None
        self._last_is_good = False  # last.pt is known to be a valid checkpoint
        # told to the user when training starts
        self.notes: list[str] = list(data.notes) + runtime_notes(self.options, device)
        self._clock: float | None = None  # perf_counter at the start of this process's fit()
        self._reporter: Reporter = NullReporter()
        self._progress_eval: Any = None  # built on first use by --eval-every

    # ------------------------------------------------------------------ construction

    @classmethod
    def new(
        cls,
        config: Config,
        options: RuntimeOptions,
        preset_name: str = "custom",
    ) -> Trainer:
        """Load data, create the run directory, write config.yaml and reals.png.

        Under torchrun, rank 0 creates the run directory and tells the others its path.
        """
        # Before joining the other ranks: a bad batch size fails fast, nobody waits.
        distributed.check_batch_size(config.training.batch_size, distributed.launched().world_size)
        device = prepare(options)
        data = load_dataset(config.data, options.data_dir, device=device)
        root = runs_root(options.out)
        run = distributed.on_main(lambda: RunDir.create(root, options.name or preset_name))
        try:
            trainer = cls(config, run, data, device, options=options)
        except BaseException:
            if distributed.is_main():  # just made, still empty: leave no trace
                shutil.rmtree(run.path, ignore_errors=True)
            raise
        if trainer.is_main:
            run.config.write_text(
                f"# resolved config of {run.path.name} (preset: {preset_name})\n"
                + config_to_yaml(config)
            )
            trainer._write_reals()
        return trainer

    @classmethod
    def resume(
        cls, run_path: str | Path, options: RuntimeOptions, epochs: int | None = None
    ) -> Trainer:
        """Continue a run from its newest valid checkpoint; `epochs` raises the planned total.

        Under torchrun, rank 0 reads the checkpoint and hands it to the others (no shared
        file system needed); the number of ranks may differ from the run's last one.
        """
        device = prepare(options)
        run, path, state, problems, config = distributed.on_main(
            lambda: _read_newest(run_path, epochs)
        )
        data_dir = options.data_dir
        source = Path(str(state.get("data", {}).get("source", "")))
        if data_dir is None and source.name == "raw":
            data_dir = str(source.parents[1])  # read again from <root>/<Folder>/raw
        data = load_dataset(config.data, data_dir, device=device)
        if len(data) != state["data"]["num_images"]:
            raise CheckpointError(
                f"the dataset now has {len(data)} images, the run was trained on "
                f"{state['data']['num_images']}; resume needs the same data"
            )
        trainer = cls(config, run, data, device, state=state, options=options)
        trainer._last_is_good = path == run.last_checkpoint
        if problems:
            trainer.notes.append(
                f"resuming from {path.name} (step {trainer.step}); skipped: {'; '.join(problems)}"
            )
        if trainer.is_main:
            if epochs is not None:
                run.config.write_text(
                    f"# resolved config of {run.path.name} (resumed)\n" + config_to_yaml(config)
                )
            trainer._truncate_metrics()
        return trainer

    def _training_modules(self) -> tuple[nn.Module, nn.Module, nn.Module]:
        """What the step calls: G and D (in DDP when distributed, compiled with --compile),
        and D for the G step: the plain module, since through DDP its forward would
        prepare a gradient all-reduce for D that never comes (D is frozen there).

        self.generator and self.discriminator stay the plain modules: checkpoints, EMA and
        sampling use them, so state-dict keys never get `module.` or `_orig_mod.` prefixes.
        """
        on = self.options.compile
        g = compiled(distributed.wrap(self.generator, self.device), on)
        d = compiled(distributed.wrap(self.discriminator, self.device), on)
        return g, d, compiled(self.discriminator, on)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": config_to_dict(self.config),
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
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
            **{
                name: scaler.state_dict()
                for name, scaler in (("scaler_g", self.scaler_g), ("scaler_d", self.scaler_d))
                if scaler is not None
            },
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        try:
            self.generator.load_state_dict(state["generator"])
            self.discriminator.load_state_dict(state["discriminator"])
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
            for name, scaler in (("scaler_g", self.scaler_g), ("scaler_d", self.scaler_d)):
                if scaler is not None and state.get(name):  # fp16 goes on with its scale
                    scaler.load_state_dict(state[name])
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0][:160]
            raise CheckpointError(f"checkpoint does not fit its own config: {first}") from None
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
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
        for name, net in (("generator", self.generator), ("discriminator", self.discriminator)):
            if not all(bool(torch.isfinite(p).all()) for p in net.parameters()):
                raise self._failed(
                    f"the {name}'s weights became NaN/Inf by step {self.step}; the last good "
                    "checkpoint is kept. Lower optim.lr_d / optim.lr_g"
                )
        checksums, rngs = self._gather_ranks()
        if not self.is_main:
            return
        state = self.state_dict()
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
            distributed.weights_checksum(self.generator),
            distributed.weights_checksum(self.discriminator),
        ]
        rng = ckpt.capture_rng() if self.ranks.distributed else None
        gathered = distributed.gather((mine, rng))
        checksums = [sums for sums, _ in gathered]
        odd = [rank for rank, sums in enumerate(checksums) if sums != checksums[0]]
        if odd:
            raise self._failed(
                f"the weights of rank(s) {', '.join(map(str, odd))} differ from rank 0's at "
                f"step {self.step}; the last good checkpoint is kept: resume from it"
            )
        return checksums, [state for _, state in gathered]

    def _failed(self, message: str) -> TrainingError:
        """A failure every rank meets alike (agreed data): rank 0 alone prints it."""
        error = TrainingError(message)
        error.quiet = not self.is_main
        return error

    # ------------------------------------------------------------------ the loop

    def fit(self, reporter: Reporter | None = None) -> TrainResult:
        # Only rank 0 reports: one progress bar, not one per process.
        reporter = (reporter if self.is_main else None) or NullReporter()
        cfg = self.config.training
        images_per_step = cfg.batch_size * self.config.objective.n_critic
        total_steps = cfg.epochs * self.steps_per_epoch
        start_step = self.step
        reporter.start(
            {
                "run_dir": str(self.run.path),
                "device": str(self.device),
                "threads": torch.get_num_threads(),
                "world_size": self.ranks.world_size,
                "precision": self.options.precision,
                "dataset": f"{self.data.name} ({len(self.data)} {self.data.split} images)",
                "epochs": cfg.epochs,
                "start_epoch": self.epoch,
                "steps_per_epoch": self.steps_per_epoch,
                "total_steps": total_steps,
                "start_step": start_step,
            }
        )
        for note in self.notes:
            reporter.note(note)
        clock = self._clock = time.perf_counter()
        self._reporter = reporter
        ckpt.restore_rng(self._rng)
        with (
            lock_run(self.run) if self.is_main else nullcontext(),
            self._signals(),
            flushing_denormals(),
            friendly_errors(self.run),
        ):
            try:
                last = self._run_epochs(reporter, images_per_step)
            finally:
                self._rng = ckpt.capture_rng()  # a later fit() carries on from here
            if self.is_main:
                write_progress(self.run)
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
        )

    def _run_epochs(self, reporter: Reporter, images_per_step: int) -> dict[str, float]:
        """Train until the planned epochs are done; returns the last logged losses."""
        cfg = self.config.training
        window = torch.zeros(len(LOSS_FIELDS), device=self.device)
        epoch_sum = torch.zeros(len(LOSS_FIELDS), device=self.device)
        window_steps = epoch_steps = 0
        last: dict[str, float] = {}
        window_clock = epoch_clock = time.perf_counter()
        while self.epoch < cfg.epochs:
            batches = self.data.batches(
                cfg.batch_size,
                cfg.seed,
                self.epoch,
                start=self.step_in_epoch * self.config.objective.n_critic,
                rank=self.ranks.rank,
                world_size=self.ranks.world_size,
            )
            while self.step_in_epoch < self.steps_per_epoch:
                stats = self._train_step(batches)
                window += stats
                epoch_sum += stats
                window_steps += 1
                epoch_steps += 1
                self.step += 1
                self.step_in_epoch += 1
                flush = self.step % cfg.log_every == 0
                flush = flush or self.step_in_epoch == self.steps_per_epoch
                logged = None
                if flush:
                    now = time.perf_counter()
                    logged = self._log(
                        "step",
                        window,
                        window_steps,
                        window_steps * images_per_step,
                        now - window_clock,
                    )
                    window.zero_()
                    window_steps, window_clock = 0, now
                    last = {k: logged[k] for k in LOSS_FIELDS}
                reporter.advance(self.step, logged)
                signum = self._agreed_stop(flush)
                if signum is not None:
                    self._interrupt(signum)
            now = time.perf_counter()
            record = self._log(
                "epoch",
                epoch_sum,
                epoch_steps,
                epoch_steps * images_per_step,
                now - epoch_clock,
            )
            self.epoch += 1
            self.step_in_epoch = 0
            epoch_sum.zero_()
            epoch_steps, epoch_clock = 0, now
            self._end_epoch()
            reporter.epoch(record)
        return last

    def _train_step(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """n_critic D steps, then one G step on the last D step's fakes. Returns detached stats.

        Forward passes run under autocast (--precision); losses are computed in float32.
        """
        g, d, objective = self._g_train, self._d_train, self.objective
        n_critic = self.config.objective.n_critic
        for k in range(n_critic):
            real, labels = next(batches)
            real = real.contiguous(memory_format=self.memory_format)
            z = torch.randn(real.shape[0], self.config.model.z_dim, device=self.device)
            # Only the last critic step's fakes feed the G step, so only they keep a graph.
            with torch.set_grad_enabled(k == n_critic - 1), self._autocast():
                fake = g(z, labels)
            with self._autocast():
                if self.joint_d_pass:
                    d_real, d_fake = d(
                        torch.cat([real, fake.detach()]), torch.cat([labels, labels])
                    ).chunk(2)
                else:
                    d_real, d_fake = d(real, labels), d(fake.detach(), labels)
            d_real, d_fake = d_real.float(), d_fake.float()
            loss_d = objective.d_loss(d_real, d_fake)
            # The gradient penalty runs outside autocast, in float32, on the plain D:
            # - float32: the norm of the input gradient is the quantity penalised, and with
            #   fp16 it would need the loss scale undone inside autograd.grad (reading the
            #   scale costs a host sync every step); the parameter gradients it adds are
            #   float32 too, so scaling them with the D loss below cannot overflow.
            # - eager: torch.compile does not support double backward.
            # - plain D, not DDP's wrapper: its gradients flow into the same parameters in
            #   loss_d's backward, where autograd sums all contributions before DDP's
            #   all-reduce hook fires, once, with the full gradient.
            penalty = objective.penalty(self.discriminator, real, fake.float(), labels)
            if penalty is not None:
                loss_d = loss_d + penalty
            self._optimise(loss_d, self.opt_d, self.scaler_d)
            objective.after_d_step(self.discriminator)  # e.g. clipping: alike on every rank
        # D's weight gradients would be thrown away in the G step: don't compute them. The
        # plain D runs here; G's gradients are all-reduced by DDP(G), whose forward (in the
        # last critic step) built the graph this backward runs through.
        self.discriminator.requires_grad_(False)
        with self._autocast():
            d_out = self._d_frozen(fake, labels)
        loss_g = objective.g_loss(d_out.float())
        self._optimise(loss_g, self.opt_g, self.scaler_g)
        self.discriminator.requires_grad_(True)
        if self.ema is not None:
            self._update_ema()
        with torch.no_grad():
            return torch.stack(
                [
                    loss_d.detach(),
                    loss_g.detach(),
                    objective.score(d_real).mean(),
                    objective.score(d_fake).mean(),
                ]
            )

    def _autocast(self) -> AbstractContextManager[object]:
        return autocast(self.device, self.options.precision)

    @staticmethod
    def _optimise(
        loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None
    ) -> None:
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
            return
        scaler.scale(loss).backward()
        scaler.step(optimizer)  # unscales; skips the step if fp16 gradients overflowed
        scaler.update()

    @torch.no_grad()
    def _update_ema(self) -> None:
        assert self.ema is not None
        weight = 1.0 - self.config.training.ema
        for average, param in zip(self.ema.parameters(), self.generator.parameters(), strict=True):
            average.lerp_(param, weight)
        for ema_buffer, buffer in zip(self.ema.buffers(), self.generator.buffers(), strict=True):
            ema_buffer.copy_(buffer)

    # ------------------------------------------------------------------ bookkeeping

    def _log(
        self,
        kind: str,
        sums: torch.Tensor,
        steps: int,
        images: int,
        seconds: float,
    ) -> dict[str, Any]:
        """Append one record to metrics.jsonl; the only place the loop waits for the device.

        Under torchrun the stats are averaged over the ranks first (every rank calls this).
        """
        means = (distributed.all_mean(sums) / max(steps, 1)).tolist()  # one sync per log line
        # `epoch` is 1-based: the epoch this record belongs to.
        record: dict[str, Any] = {"kind": kind, "epoch": self.epoch + 1, "step": self.step}
        record.update({k: round(v, 6) for k, v in zip(LOSS_FIELDS, means, strict=True)})
        record["images_per_second"] = round(images / seconds, 1) if seconds > 0 else None
        record["wall"] = round(self._wall(), 3)
        if not all(math.isfinite(v) for v in means):
            raise self._failed(
                f"losses became NaN/Inf by step {self.step} (epoch {self.epoch + 1}): "
                f"loss_d={means[0]}, loss_g={means[1]}; the last good checkpoint is kept. "
                "Lower optim.lr_d / optim.lr_g, or try model.spectral_norm=true"
            )
        if self.is_main:
            with open(self.run.metrics, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        if kind == "step":
            self._warn(self.health.after_log(record))
        return record

    def _wall(self) -> float:
        """Training seconds so far, earlier processes of a resumed run included."""
        return self.elapsed + (time.perf_counter() - self._clock if self._clock else 0.0)

    def _end_epoch(self) -> None:
        if self.is_main:
            sampler = self.ema if self.ema is not None else self.generator
            images = generate(sampler, self.fixed_noise, self.fixed_labels)
            save_grid(images, self.run.epoch_grid(self.epoch), self.grid_nrow, self._row_labels())
            self._warn(self.health.after_epoch(self.epoch, images))
            every = self.config.training.eval_every
            if every and self.epoch % every == 0:
                self._evaluate(sampler)
        self.save()  # every rank: it checks that their weights agree
        if self.is_main:
            plot_losses(read_metrics(self.run.metrics), self.run.losses_plot)

    def _evaluate(self, sampler: nn.Module) -> None:
        """FID and class coverage of this epoch's generator, into metrics.jsonl (--eval-every)."""
        from gancli.engine.evaluation import ProgressEvaluator

        if self._progress_eval is None:
            self._progress_eval = ProgressEvaluator(
                self.config, self.data, self.options.data_dir, lambda t: self._reporter.note(t)
            )
        record = {"kind": "eval", "epoch": self.epoch, "step": self.step}
        record.update(self._progress_eval.score(sampler, self.epoch))
        with open(self.run.metrics, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        self._reporter.note(self._progress_eval.describe(record))
        self._warn(self.health.after_eval(record, self.data.num_classes))

    def _row_labels(self) -> list[str] | None:
        """Class names for the rows of a conditional grid (one row per class)."""
        return list(self.data.class_names) if self.config.model.conditional else None

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

    def _write_reals(self) -> None:
        save_grid(self.reals, self.run.reals, self.grid_nrow, self._row_labels())

    # ------------------------------------------------------------------ warnings

    def _warn(self, text: str | None) -> None:
        """Tell the user, and keep it in metrics.jsonl (rank 0 only)."""
        if text is None or not self.is_main:
            return
        self._reporter.note(f"warning: {text}")
        record = {"kind": "warning", "epoch": self.epoch + 1, "step": self.step, "message": text}
        with open(self.run.metrics, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def _truncate_metrics(self) -> None:
        """Drop metrics written after the checkpoint, so a resume never duplicates steps."""
        keep = [r for r in read_metrics(self.run.metrics) if r.get("step", 0) <= self.step]
        tmp = self.run.metrics.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
        tmp.replace(self.run.metrics)

    # ------------------------------------------------------------------ signals

    @contextmanager
    def _signals(self) -> Iterator[None]:
        """First SIGINT/SIGTERM: finish the step, checkpoint, stop. Second: stop at once."""

        def handler(signum: int, frame: Any) -> None:
            if self._stop_signal is not None:
                raise KeyboardInterrupt
            self._stop_signal = signum

        try:
            previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: leave signal handling to the caller
            yield
            return
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def _agreed_stop(self, log_step: bool) -> int | None:
        """The stop signal, once every rank knows of it, so that all stop after the same step.

        torchrun hands SIGINT/SIGTERM to every rank, but not at the same step. On the CPU
        the ranks compare notes after every step (tens of microseconds over gloo); on GPUs
        only at log steps, where the loop waits for the device anyway: reading a flag
        every step would stall the GPU's queue of work each time.
        """
        if not self.ranks.distributed:
            return self._stop_signal
        if log_step or self.device.type == "cpu":
            return distributed.agree_signal(self._stop_signal)
        return None

    def _interrupt(self, signum: int) -> None:
        self.save()
        distributed.barrier()  # rank 0's checkpoint is written before any rank exits
        code = EXIT_INTERRUPTED if signum == signal.SIGINT else 128 + signal.SIGTERM
        error = Interrupted(
            f"interrupted at step {self.step} (epoch {self.epoch + 1}); checkpoint saved to "
            f"{self.run.last_checkpoint}. Resume with: gancli train --resume {self.run.path}",
            code,
        )
        error.quiet = not self.is_main
        raise error
