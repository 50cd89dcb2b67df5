"""Usage: state = TrainState(config, image_shape, num_classes, device); state.step(batches)

Everything one GAN training step changes: G, D, the moving average of G, both optimisers
and loss scalers, and the objective that says what the losses are. `step` is the whole
algorithm, readable top to bottom: n_critic D steps, then one G step, then the average.
It never asks which family or objective it trains: the models take (input, labels), the
objective supplies the losses, its penalties and what happens after a D step, the
augmentation (training.augment) is applied to whatever D sees, and `n_critic` is data.

Epochs, checkpoints, signals and the run directory are the run driver's (trainer.py).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn

from gancli.engine import distributed
from gancli.engine.augment import Augment
from gancli.engine.config import Config, TrainingConfig
from gancli.engine.errors import CheckpointError, first_line
from gancli.engine.losses import build_objective
from gancli.engine.models import build_models, has_convolutions
from gancli.engine.runtime import (
    RuntimeOptions,
    autocast,
    compiled,
    grad_scaler,
    resolve_precision,
)

#: What `TrainState.step` returns, in this order (means over the step's batch).
STATS = ("loss_d", "loss_g", "d_real", "d_fake")

Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]


class EMA:
    """An exponential moving average of G's weights, sampled from instead of G itself.

    The average smooths out the step-to-step wobble of adversarial training; buffers
    (batch-norm statistics) are not averaged but copied from G. With training.ema_rampup,
    the average's half-life (in images) is at most that fraction of the images G has
    been trained on (Karras et al. 2020, "Training generative adversarial networks with
    limited data", appendix B.1), so that early in a run it does not hold on to the
    untrained G.
    """

    def __init__(self, generator: nn.Module, cfg: TrainingConfig):
        self.cfg = cfg
        self.model = copy.deepcopy(generator).requires_grad_(False)

    def decay(self, images_seen: int) -> float:
        """How much of the old average a step keeps, after G has seen `images_seen`."""
        cfg = self.cfg
        if not cfg.ema_rampup:
            return cfg.ema
        # the half-life of `ema` per step of batch_size images, capped by the ramp
        halflife = cfg.batch_size * math.log(0.5) / math.log(cfg.ema)
        halflife = min(halflife, cfg.ema_rampup * images_seen)
        return 0.5 ** (cfg.batch_size / max(halflife, 1e-8))

    @torch.no_grad()
    def update(self, generator: nn.Module, images_seen: int) -> None:
        weight = 1.0 - self.decay(images_seen)
        for average, param in zip(self.model.parameters(), generator.parameters(), strict=True):
            average.lerp_(param, weight)
        for kept, buffer in zip(self.model.buffers(), generator.buffers(), strict=True):
            kept.copy_(buffer)


class TrainState:
    """G, D, the EMA, the optimisers and the objective of one run, and its `step`."""

    def __init__(
        self,
        config: Config,
        image_shape: tuple[int, int, int],
        num_classes: int,
        device: torch.device,
        options: RuntimeOptions | None = None,
    ):
        options, _ = resolve_precision(options or RuntimeOptions(), device)  # auto -> a dtype
        self.config, self.device, self.precision = config, device, options.precision
        generator, discriminator = build_models(config.model, image_shape, num_classes)
        if options.sync_bn:  # same parameter names: checkpoints stay interchangeable
            generator = nn.SyncBatchNorm.convert_sync_batchnorm(generator)
            discriminator = nn.SyncBatchNorm.convert_sync_batchnorm(discriminator)
        # Convolutions run markedly faster on channels-last tensors (about 1.4x for DCGAN on
        # a 2-core CPU); fully connected models have nothing to gain.
        self.memory_format = (
            torch.channels_last if has_convolutions(generator) else torch.contiguous_format
        )
        self.generator = generator.to(device).to(memory_format=self.memory_format)
        self.discriminator = discriminator.to(device).to(memory_format=self.memory_format)
        self.ema = EMA(self.generator, config.training) if config.training.ema > 0 else None
        self.objective = build_objective(config.objective)
        self.opt_g = _make_optimizer(config, self.generator, config.optim.lr_g)
        self.opt_d = _make_optimizer(config, self.discriminator, config.optim.lr_d)
        # One loss scaler per optimiser (fp16 only): D's and G's gradients overflow at
        # different scales, and each scaler's update follows its own optimiser's step.
        self.scaler_g = grad_scaler(device, self.precision)
        self.scaler_d = grad_scaler(device, self.precision)
        self.augment = Augment(config.training.augment)
        self.steps = 0  # G steps taken
        # What the step calls: G and D in DDP when distributed, compiled with --compile;
        # and for the G step the plain D, since through DDP its forward would prepare a
        # gradient all-reduce for D that never comes (D is frozen there). The attributes
        # above stay the plain modules: checkpoints, the EMA and sampling use them, so
        # state-dict keys never get `module.` or `_orig_mod.` prefixes.
        self.g_train = compiled(distributed.wrap(self.generator, device), options.compile)
        self.d_train = compiled(distributed.wrap(self.discriminator, device), options.compile)
        self.d_frozen = compiled(self.discriminator, options.compile)

    @property
    def sampler(self) -> nn.Module:
        """The generator to draw samples from: the EMA when kept."""
        return self.ema.model if self.ema is not None else self.generator

    # ------------------------------------------------------------------ the step

    def step(self, batches: Batches) -> torch.Tensor:
        """n_critic D steps, then one G step on the last D step's fakes, then the EMA.

        Returns the STATS of the last D step and the G step, detached, on the device (read
        them only now and then: reading waits for the device).
        """
        n_critic = self.config.objective.n_critic
        for k in range(n_critic):
            real, labels = next(batches)
            real = self.augment(real.contiguous(memory_format=self.memory_format))
            # Only the last critic step's fakes feed the G step, so only they keep a graph.
            fake = self._generate(labels, keep_graph=k == n_critic - 1)
            d_step = self.steps * n_critic + k  # counted over the whole run
            loss_d, d_real, d_fake = self._d_step(real, fake, labels, d_step)
        loss_g = self._g_step(real, fake, labels)
        self.steps += 1
        if self.ema is not None:
            self.ema.update(self.generator, self.steps * self.config.training.batch_size)
        with torch.no_grad():
            score = self.objective.score
            return torch.stack(
                [loss_d.detach(), loss_g.detach(), score(d_real).mean(), score(d_fake).mean()]
            )

    def _generate(self, labels: torch.Tensor, keep_graph: bool) -> torch.Tensor:
        """Fakes for `labels`, as D sees them (augmented like the reals)."""
        z = torch.randn(labels.shape[0], self.config.model.z_dim, device=self.device)
        with torch.set_grad_enabled(keep_graph), self._autocast():
            return self.augment(self.g_train(z, labels))

    def _d_step(
        self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor, d_step: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One D update on a real batch and G's fakes; returns its loss and raw scores.

        Forward passes run under autocast (--precision); losses are computed in float32.
        """
        with self._autocast():
            # Real and fake in one pass, as two parts: same maths as two passes (batch norm
            # and minibatch standard deviation take each part on its own), bigger matmuls.
            both = self.d_train(
                torch.cat([real, fake.detach()]), torch.cat([labels, labels]), parts=2
            )
            d_real, d_fake = both.chunk(2)
        d_real, d_fake = d_real.float(), d_fake.float()
        loss_d = self.objective.d_loss(d_real, d_fake)
        # The penalty runs outside autocast, in float32, on the plain D:
        # - float32: the norm of the input gradient is the quantity penalised, and with
        #   fp16 it would need the loss scale undone inside autograd.grad (reading the
        #   scale costs a host sync every step); the parameter gradients it adds are
        #   float32 too, so scaling them with the D loss below cannot overflow.
        # - eager: torch.compile does not support double backward.
        # - plain D, not DDP's wrapper: its gradients flow into the same parameters in
        #   loss_d's backward, where autograd sums all contributions before DDP's
        #   all-reduce hook fires, once, with the full gradient.
        penalty = self.objective.penalty(
            self.discriminator, real.float(), fake.float(), labels, d_step
        )
        if penalty is not None:
            loss_d = loss_d + penalty
        _optimise(loss_d, self.opt_d, self.scaler_d)
        self.objective.after_d_step(self.discriminator)  # e.g. clipping: alike on every rank
        return loss_d, d_real, d_fake

    def _g_step(self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One G update through the frozen D; returns G's loss.

        D's weight gradients would be thrown away here: they are not computed. G's
        gradients are all-reduced by DDP(G), whose forward built the graph this backward
        runs through. A relativistic objective compares with D's scores of the last real
        batch, taken again with the D just updated.
        """
        self.discriminator.requires_grad_(False)
        try:
            with self._autocast():
                d_fake = self.d_frozen(fake, labels).float()
                d_real = None
                if self.objective.relativistic:
                    with torch.no_grad():
                        d_real = self.d_frozen(real, labels).float()
            loss_g = self.objective.g_loss(d_fake, d_real)
            _optimise(loss_g, self.opt_g, self.scaler_g)
        finally:
            self.discriminator.requires_grad_(True)
        return loss_g

    def _autocast(self) -> AbstractContextManager[object]:
        return autocast(self.device, self.precision)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """The weights, the EMA, the optimisers (and fp16 loss scalers) and the step count."""
        state = {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "ema": self.ema.model.state_dict() if self.ema is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "step": self.steps,
        }
        for name, scaler in (("scaler_g", self.scaler_g), ("scaler_d", self.scaler_d)):
            if scaler is not None:
                state[name] = scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict() saved; CheckpointError if it does not fit the config."""
        try:
            self.generator.load_state_dict(state["generator"])
            self.discriminator.load_state_dict(state["discriminator"])
            if self.ema is not None:
                self.ema.model.load_state_dict(state["ema"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
            for name, scaler in (("scaler_g", self.scaler_g), ("scaler_d", self.scaler_d)):
                if scaler is not None and state.get(name):  # fp16 goes on with its scale
                    scaler.load_state_dict(state[name])
            self.steps = int(state["step"])
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            first = first_line(exc)[:160]
            raise CheckpointError(f"checkpoint does not fit its own config: {first}") from None


def _make_optimizer(config: Config, module: nn.Module, lr: float) -> torch.optim.Optimizer:
    opt = config.optim
    if opt.name == "adam":
        # Fused Adam updates all tensors in one kernel per step: much faster on small models.
        betas = (opt.beta1, opt.beta2)
        return torch.optim.Adam(module.parameters(), lr=lr, betas=betas, fused=True)
    return torch.optim.RMSprop(module.parameters(), lr=lr, foreach=True)


def _optimise(
    loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None
) -> None:
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.step(optimizer)  # unscales, then steps unless fp16 gradients overflowed
    scaler.update()
