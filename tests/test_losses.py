"""Each objective against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gancli.engine.config import ObjectiveConfig
from gancli.engine.losses import build_objective

LOGITS = torch.tensor([-2.0, 0.0, 3.0])


def bce(p: torch.Tensor, target: float) -> float:
    return float(-(target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean())


def test_bce_discriminator_loss_and_smoothing() -> None:
    real, fake = torch.tensor([2.0, 1.0]), torch.tensor([-1.0, 0.5])
    for t in (1.0, 0.9):
        obj = build_objective(ObjectiveConfig(loss="nonsaturating", real_label=t))
        expected = bce(torch.sigmoid(real), t) + bce(torch.sigmoid(fake), 0.0)
        assert obj.d_loss(real, fake).item() == pytest.approx(expected, rel=1e-6)


def test_generator_losses_minimax_and_nonsaturating() -> None:
    p = torch.sigmoid(LOGITS)
    minimax = build_objective(ObjectiveConfig(loss="minimax"))
    nonsat = build_objective(ObjectiveConfig(loss="nonsaturating"))
    assert minimax.g_loss(LOGITS).item() == pytest.approx(float(torch.log(1 - p).mean()), rel=1e-6)
    assert nonsat.g_loss(LOGITS).item() == pytest.approx(float(-torch.log(p).mean()), rel=1e-6)
    assert minimax.score(LOGITS).tolist() == pytest.approx(p.tolist())


def test_wasserstein_and_hinge() -> None:
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 0.5])
    w = build_objective(ObjectiveConfig(loss="wgan-clip"))
    assert w.d_loss(real, fake).item() == pytest.approx(-0.25 - 2.0)
    assert w.g_loss(fake).item() == pytest.approx(0.25)
    assert w.score(fake).tolist() == fake.tolist()  # critic values are shown raw
    h = build_objective(ObjectiveConfig(loss="hinge"))
    # relu(1 - [1, 3]) = [0, 0]; relu(1 + [-1, 0.5]) = [0, 1.5]
    assert h.d_loss(real, fake).item() == pytest.approx(0.75)
    assert h.g_loss(fake).item() == pytest.approx(0.25)


def test_weight_clipping_after_d_step() -> None:
    critic = nn.Linear(4, 1)
    nn.init.constant_(critic.weight, 0.5)
    build_objective(ObjectiveConfig(loss="wgan-clip", clip=0.01)).after_d_step(critic)
    assert critic.weight.abs().max().item() == pytest.approx(0.01)
    assert critic.bias.abs().max().item() <= 0.01


class LinearCritic(nn.Module):
    """D(x) = <w, x>: its input gradient is w everywhere, so the penalty is known exactly."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return (x.flatten(1) * self.w).sum(1)


@pytest.mark.parametrize("norm", [0.5, 1.0, 3.0])
def test_gradient_penalty_of_a_linear_critic(norm: float) -> None:
    w = torch.zeros(1 * 2 * 2)
    w[0] = norm
    critic = LinearCritic(w)
    obj = build_objective(ObjectiveConfig(loss="wgan-gp", gp_weight=10.0))
    real, fake = torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2)
    penalty = obj.penalty(critic, real, fake, torch.zeros(5, dtype=torch.long))
    assert penalty.item() == pytest.approx(10.0 * (norm - 1.0) ** 2, abs=1e-6)
    penalty.backward()  # the penalty is differentiable w.r.t. the critic's weights
    assert critic.w.grad is not None
    expected = 10.0 * 2 * (norm - 1.0)  # d/dw0 of 10 (|w0| - 1)^2
    assert critic.w.grad[0].item() == pytest.approx(expected, abs=1e-5)
    assert math.isfinite(critic.w.grad.abs().sum().item())


def test_non_gp_objectives_have_no_penalty() -> None:
    for loss in ("minimax", "nonsaturating", "wgan-clip", "hinge"):
        obj = build_objective(ObjectiveConfig(loss=loss))
        assert obj.penalty(nn.Linear(1, 1), torch.zeros(1), torch.zeros(1), torch.zeros(1)) is None
