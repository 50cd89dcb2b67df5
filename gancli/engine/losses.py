"""Usage: objective = build_objective(config.objective); loss = objective.d_loss(d_real, d_fake)

One object per adversarial objective. The trainer only calls `d_loss`, `g_loss`,
`penalty` and `after_d_step`, so adding an objective never touches the loop.
All discriminator outputs are raw scores (logits for the BCE objectives). The zero-centred
gradient penalties R1 and R2 (objective.r1, objective.r2) go with any objective.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gancli.engine.config import ObjectiveConfig


class Objective:
    """Base objective: G raises D's scores of its fakes, no penalty but R1 and R2 when asked
    for, nothing to do after a D step, scores shown as they are."""

    #: True when D's output is a logit whose sigmoid is the probability "real".
    probabilistic = False
    #: True when G's loss compares D's scores of fakes with those of the reals beside them.
    relativistic = False
    #: True when D's loss penalises (||grad D(x_hat)|| - 1)^2 on random interpolates.
    interpolates = False

    def __init__(self, cfg: ObjectiveConfig):
        self.cfg = cfg

    def d_loss(self, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, d_fake: torch.Tensor, d_real: torch.Tensor | None = None) -> torch.Tensor:
        """G's loss; `d_real` (D's scores of a real batch) is given to relativistic objectives."""
        return -d_fake.mean()

    def penalty(
        self,
        discriminator: nn.Module,
        real: torch.Tensor,
        fake: torch.Tensor,
        labels: torch.Tensor,
        d_step: int,
    ) -> torch.Tensor | None:
        """What is added to D's loss at D step `d_step` (counted from 0 over the whole run):
        the interpolates' penalty on every step (WGAN-GP), then R1 and R2 on every
        `reg_every`-th step with their weight scaled by `reg_every` (lazy regularisation,
        Karras et al. 2020, section 3.1)."""
        cfg = self.cfg
        gp = None
        if self.interpolates:
            # One mixing weight per sample, broadcast over every other dimension.
            shape = (real.shape[0],) + (1,) * (real.dim() - 1)
            eps = torch.rand(shape, device=real.device, dtype=real.dtype)
            grad = input_gradient(discriminator, torch.lerp(fake.detach(), real, eps), labels)
            norm = grad.flatten(1).norm(2, dim=1)
            gp = cfg.gp_weight * (norm - 1.0).pow(2).mean()
        if not (cfg.r1 or cfg.r2) or d_step % cfg.reg_every:
            return gp
        terms = [
            zero_centred_penalty(discriminator, images, labels) * (gamma * cfg.reg_every)
            for gamma, images in ((cfg.r1, real), (cfg.r2, fake))
            if gamma
        ]
        zero_centred = terms[0] if len(terms) == 1 else terms[0] + terms[1]
        return zero_centred if gp is None else gp + zero_centred

    def after_d_step(self, discriminator: nn.Module) -> None:
        return None

    def score(self, d_out: torch.Tensor) -> torch.Tensor:
        """What is logged as D(x) and D(G(z)): a probability, or the critic's raw value."""
        return torch.sigmoid(d_out) if self.probabilistic else d_out


def input_gradient(
    discriminator: nn.Module, images: torch.Tensor, labels: torch.Tensor | None
) -> torch.Tensor:
    """d(sum of D's scores) / d(images), per sample, as a graph the penalty's own backward
    differentiates again (autograd's double backward)."""
    images = images.detach().requires_grad_(True)
    scores = discriminator(images, labels)
    (grad,) = torch.autograd.grad(scores.sum(), images, create_graph=True)
    return grad


def zero_centred_penalty(
    discriminator: nn.Module, images: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """0.5 E[||grad_x D(x)||^2] over `images`: R1 on reals, R2 on fakes (Mescheder et al.
    2018, eq. 9, with their gamma / 2 convention; the weight gamma is applied by the caller)."""
    grad = input_gradient(discriminator, images, labels)
    return 0.5 * grad.square().flatten(1).sum(1).mean()


class _BCE(Objective):
    probabilistic = True

    def d_loss(self, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
        # BCE(real, target t) = t*softplus(-x) + (1-t)*softplus(x); t < 1 is one-sided smoothing.
        t = self.cfg.real_label
        real = t * F.softplus(-d_real) + (1.0 - t) * F.softplus(d_real)
        return real.mean() + F.softplus(d_fake).mean()


class Minimax(_BCE):
    """Goodfellow et al. 2014: G minimises log(1 - D(G(z))), which saturates early on."""

    def g_loss(self, d_fake: torch.Tensor, d_real: torch.Tensor | None = None) -> torch.Tensor:
        return -F.softplus(d_fake).mean()  # log(1 - sigmoid(x)) = -softplus(x)


class NonSaturating(_BCE):
    """Goodfellow et al. 2014, section 3: G minimises -log D(G(z)) for stronger early gradients."""

    def g_loss(self, d_fake: torch.Tensor, d_real: torch.Tensor | None = None) -> torch.Tensor:
        return F.softplus(-d_fake).mean()  # -log(sigmoid(x)) = softplus(-x)


class _Wasserstein(Objective):
    def d_loss(self, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
        return d_fake.mean() - d_real.mean()


class WassersteinClip(_Wasserstein):
    """Arjovsky et al. 2017: keep the critic roughly 1-Lipschitz by clipping every weight."""

    @torch.no_grad()
    def after_d_step(self, discriminator: nn.Module) -> None:
        c = self.cfg.clip
        for p in discriminator.parameters():
            p.clamp_(-c, c)


class WassersteinGP(_Wasserstein):
    """Gulrajani et al. 2017: penalise (||grad D(x_hat)|| - 1)^2 on random interpolates."""

    interpolates = True


class Hinge(Objective):
    """Lim & Ye 2017 / Miyato et al. 2018: margin losses for D, -D(G(z)) for G."""

    def d_loss(self, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
        return F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()


class RelativisticPairing(Objective):
    """RpGAN (Jolicoeur-Martineau 2019; Huang et al. 2024, eq. 2): each real is paired with
    a fake and D learns by how much the real one is more real: softplus(-(D(x) - D(G(z))))
    for D, softplus(-(D(G(z)) - D(x))) for G. No fake can win by landing in a region D
    rates highly for every sample, which discourages mode dropping. Best with R1 and R2."""

    relativistic = True

    def d_loss(self, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
        return F.softplus(d_fake - d_real).mean()

    def g_loss(self, d_fake: torch.Tensor, d_real: torch.Tensor | None = None) -> torch.Tensor:
        if d_real is None:
            raise ValueError("rpgan's generator loss needs D's scores of a real batch")
        return F.softplus(d_real - d_fake).mean()


OBJECTIVES: dict[str, type[Objective]] = {
    "minimax": Minimax,
    "nonsaturating": NonSaturating,
    "wgan-clip": WassersteinClip,
    "wgan-gp": WassersteinGP,
    "hinge": Hinge,
    "rpgan": RelativisticPairing,
}


def build_objective(cfg: ObjectiveConfig) -> Objective:
    return OBJECTIVES[cfg.loss](cfg)
