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
    penalty = obj.penalty(critic, real, fake, torch.zeros(5, dtype=torch.long), 0)
    assert penalty.item() == pytest.approx(10.0 * (norm - 1.0) ** 2, abs=1e-6)
    penalty.backward()  # the penalty is differentiable w.r.t. the critic's weights
    assert critic.w.grad is not None
    expected = 10.0 * 2 * (norm - 1.0)  # d/dw0 of 10 (|w0| - 1)^2
    assert critic.w.grad[0].item() == pytest.approx(expected, abs=1e-5)
    assert math.isfinite(critic.w.grad.abs().sum().item())


def test_non_gp_objectives_have_no_penalty_unless_asked() -> None:
    for loss in ("minimax", "nonsaturating", "wgan-clip", "hinge", "rpgan"):
        obj = build_objective(ObjectiveConfig(loss=loss))
        assert (
            obj.penalty(nn.Linear(1, 1), torch.zeros(1), torch.zeros(1), torch.zeros(1), 0) is None
        )


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_relativistic_pairing_losses() -> None:
    """RpGAN pairs real i with fake i: D minimises softplus(-(D(x) - D(G(z))))."""
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    rp = build_objective(ObjectiveConfig(loss="rpgan"))
    assert rp.relativistic and not rp.probabilistic
    # differences real - fake: [1, -1]
    assert rp.d_loss(real, fake).item() == pytest.approx((softplus(-1) + softplus(1)) / 2)
    assert rp.g_loss(fake, real).item() == pytest.approx((softplus(1) + softplus(-1)) / 2)
    # a fake scored like its real partner: both sides at log 2
    assert rp.g_loss(real, real).item() == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="real batch"):
        rp.g_loss(fake)


class SquareCritic(nn.Module):
    """D(x) = sum x^2: its input gradient is 2x, so R2 is 0.5 E||2x||^2 = 2 E||x||^2."""

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return x.flatten(1).square().sum(1)


def test_r1_r2_and_lazy_regularisation() -> None:
    w = torch.tensor([3.0, 4.0, 0.0, 0.0])  # ||w||^2 = 25
    linear, square = LinearCritic(w), SquareCritic()
    real, fake = torch.randn(6, 1, 2, 2), torch.randn(6, 1, 2, 2)
    labels = torch.zeros(6, dtype=torch.long)
    r2_of = 2.0 * float(fake.flatten(1).square().sum(1).mean())  # 0.5 E||2x||^2
    r1 = build_objective(ObjectiveConfig(loss="nonsaturating", r1=0.2))
    assert r1.penalty(linear, real, fake, labels, 7).item() == pytest.approx(0.2 * 0.5 * 25)
    r2 = build_objective(ObjectiveConfig(loss="hinge", r2=0.5))
    assert r2.penalty(square, real, fake, labels, 0).item() == pytest.approx(0.5 * r2_of, rel=1e-5)
    both = build_objective(ObjectiveConfig(loss="rpgan", r1=1.0, r2=1.0))
    # the same critic on both: R1 on the reals, R2 on the fakes
    expected = 0.5 * float(real.flatten(1).square().sum(1).mean()) * 4 + r2_of
    assert both.penalty(square, real, fake, labels, 3).item() == pytest.approx(expected, rel=1e-5)
    lazy = build_objective(ObjectiveConfig(loss="nonsaturating", r1=0.2, reg_every=4))
    taken = [lazy.penalty(linear, real, fake, labels, step) for step in range(9)]
    assert [step for step, p in enumerate(taken) if p is not None] == [0, 4, 8]
    assert taken[4] is not None and taken[4].item() == pytest.approx(4 * 0.2 * 0.5 * 25)


def test_r1_is_differentiable_and_adds_to_the_gradient_penalty() -> None:
    w = torch.tensor([3.0, 4.0, 0.0, 0.0])
    critic = LinearCritic(w.clone())
    real, fake = torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2)
    labels = torch.zeros(5, dtype=torch.long)
    obj = build_objective(ObjectiveConfig(loss="wgan-gp", gp_weight=10.0, r1=2.0))
    penalty = obj.penalty(critic, real, fake, labels, 0)
    assert penalty.item() == pytest.approx(10.0 * (5.0 - 1.0) ** 2 + 2.0 * 0.5 * 25, rel=1e-5)
    penalty.backward()
    # d/dw of 10 (|w| - 1)^2 + |w|^2 = 20 (|w| - 1) w / |w| + 2 w
    expected = 20 * 4.0 * w / 5.0 + 2 * w
    assert torch.allclose(critic.w.grad, expected, atol=1e-4)
