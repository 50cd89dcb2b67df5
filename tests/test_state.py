"""TrainState: one step is n_critic D updates, one G update and the EMA; its state_dict
carries everything the next step depends on."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from gancli.engine.config import load_config
from gancli.engine.state import STATS, TrainState

SHAPE = (1, 28, 28)


def batches(n: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.rand(8, *SHAPE, generator=gen) * 2 - 1, torch.randint(0, 10, (8,), generator=gen))
        for _ in range(n)
    ]


def state(preset: str, *sets: str, seed: int = 0) -> TrainState:
    torch.manual_seed(seed)
    config = load_config(preset, ["model.g_width=0.25", "model.d_width=0.25", *sets])
    return TrainState(config, SHAPE, 10, torch.device("cpu"))


def snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before: list[torch.Tensor], after: list[torch.Tensor]) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_a_step_takes_n_critic_batches_and_updates_both_networks() -> None:
    s = state("wgan-mnist", "objective.n_critic=3")
    g, d = snapshot(s.generator), snapshot(s.discriminator)
    feed = iter(batches(4))
    stats = s.step(feed)
    assert len(list(feed)) == 1  # three of the four batches were used
    assert stats.shape == (len(STATS),) and not stats.requires_grad
    assert s.steps == 1
    assert changed(g, snapshot(s.generator)) and changed(d, snapshot(s.discriminator))
    clip = s.config.objective.clip  # wgan-clip clips every D weight after each D step
    assert all(p.abs().max() <= clip for p in s.discriminator.parameters())


def test_state_dict_carries_everything_the_next_step_needs() -> None:
    a = state("dcgan-mnist", "training.ema=0.9")
    a.step(iter(batches(1, seed=1)))
    saved = copy.deepcopy(a.state_dict())  # a copy, as a checkpoint holds
    torch.manual_seed(5)
    a.step(iter(batches(1, seed=2)))
    b = state("dcgan-mnist", "training.ema=0.9", seed=99)  # other weights to begin with
    b.load_state_dict(saved)
    assert b.steps == 1
    torch.manual_seed(5)
    b.step(iter(batches(1, seed=2)))
    assert a.ema is not None and b.ema is not None
    for one, other in ((a.generator, b.generator), (a.discriminator, b.discriminator)):
        assert_same(one, other)
    assert_same(a.ema.model, b.ema.model)


def assert_same(one: torch.nn.Module, other: torch.nn.Module) -> None:
    theirs = other.state_dict()
    for key, value in one.state_dict().items():
        assert torch.equal(value, theirs[key]), key


def test_ema_is_the_decayed_average_and_copies_buffers() -> None:
    s = state("dcgan-mnist", "training.ema=0.75", "training.ema_rampup=0")
    assert s.ema is not None and s.sampler is s.ema.model
    before = snapshot(s.ema.model)
    with torch.no_grad():
        for p in s.generator.parameters():
            p.add_(1.0)
        s.generator.net[1].running_mean.fill_(3.0)  # a batch-norm buffer
    s.ema.update(s.generator, images_seen=128)
    for old, new, average in zip(before, snapshot(s.generator), snapshot(s.ema.model), strict=True):
        assert torch.allclose(average, 0.75 * old + 0.25 * new)
    assert torch.all(s.ema.model.net[1].running_mean == 3.0)


def test_without_ema_samples_come_from_g() -> None:
    s = state("gan-mnist", "training.ema=0", "training.ema_rampup=0")
    assert s.ema is None and s.sampler is s.generator


def test_ema_ramp_up_caps_the_half_life_by_images_seen() -> None:
    s = state("dcgan-mnist", "training.ema=0.999", "training.ema_rampup=0.05")
    assert s.ema is not None
    # decay 0.999 per step of 128 images: a half-life of 128 ln 0.5 / ln 0.999 = 88,678 images
    halflife = 128 * math.log(0.5) / math.log(0.999)
    assert halflife == pytest.approx(88_678, abs=1)
    # after 10,000 images the ramp allows 500: each step keeps 0.5 ** (128 / 500) of the average
    assert s.ema.decay(10_000) == pytest.approx(0.5 ** (128 / 500))
    assert s.ema.decay(128) == pytest.approx(0.5**20)  # the first step: almost all new
    assert s.ema.decay(10**8) == pytest.approx(0.999)  # late in training: the decay itself
    plain = state("dcgan-mnist", "training.ema=0.999", "training.ema_rampup=0")
    assert plain.ema is not None and plain.ema.decay(128) == 0.999


def test_a_relativistic_step_with_every_regulariser() -> None:
    s = state(
        "dcgan-mnist",
        "objective.loss=rpgan", "objective.r1=1", "objective.r2=1", "objective.reg_every=2",
        "model.d_norm=none", "model.d_mbstd=true", "training.augment=translation,cutout",
    )  # fmt: skip
    for seed in range(3):
        stats = s.step(iter(batches(1, seed=seed)))
        assert torch.isfinite(stats).all()
    assert s.steps == 3
