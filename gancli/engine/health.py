"""Usage: monitor = HealthMonitor(probabilistic=True); warning = monitor.after_log(record)

Signs that a GAN run is going wrong, turned into warnings: a discriminator that wins
outright (D(G(z)) near 0 for a while, so G gets almost no gradient) and samples that
lose their variety or, with --eval-every, whole classes (mode collapse). Non-finite
losses are errors, raised by the trainer.
"""

from __future__ import annotations

from typing import Any

import torch

D_WINS_BELOW = 0.02  # D(G(z)) under this ...
D_WINS_WINDOWS = 3  # ... for this many log intervals in a row earns a warning
COLLAPSE_RATIO = 0.25  # samples varying less than this fraction of real images: a warning


def variety(images: torch.Tensor, groups: torch.Tensor) -> float:
    """Mean per-pixel standard deviation within each group (class) of images, in [0, 0.5]."""
    pixels = images.float().flatten(1) / 255.0
    spreads = [
        pixels[groups == g].std(0).mean() for g in groups.unique() if (groups == g).sum() > 1
    ]
    return float(torch.stack(spreads).mean()) if spreads else 0.0


class HealthMonitor:
    """Watches one run; `reals` are real images laid out like its grid, with their `labels`."""

    def __init__(self, probabilistic: bool, reals: torch.Tensor, labels: torch.Tensor):
        self.probabilistic = probabilistic  # D's output is a probability (BCE objectives)
        self.labels = labels  # class of each grid position (all 0 when unconditional)
        # A dataset smaller than the grid gives fewer real images than grid positions.
        self.real_variety = variety(reals, labels[: len(reals)])
        self.d_wins_windows = 0  # consecutive log intervals with D(G(z)) near 0
        self.best_ratio = 0.0  # highest sample/real variety ratio seen in this process
        self.best_coverage = 0  # most classes covered at an --eval-every check

    def after_log(self, record: dict[str, Any]) -> str | None:
        """A warning when D has been winning outright for D_WINS_WINDOWS log intervals."""
        if not self.probabilistic:
            return None  # a critic's raw scores have no "near zero"
        self.d_wins_windows = self.d_wins_windows + 1 if record["d_fake"] < D_WINS_BELOW else 0
        if self.d_wins_windows != D_WINS_WINDOWS:
            return None
        return (
            f"D(G(z)) has stayed below {D_WINS_BELOW} for {D_WINS_WINDOWS} log intervals "
            f"(to step {record['step']}): D wins outright and G learns little. Try a lower "
            "optim.lr_d, objective.real_label=0.9 or model.spectral_norm=true"
        )

    def after_epoch(self, epoch: int, fakes: torch.Tensor) -> str | None:
        """A warning when the grid's samples vary far less than real images (mode collapse)."""
        if self.real_variety <= 0:
            return None
        ratio = variety(fakes, self.labels) / self.real_variety
        # An untrained G makes near-identical images too: only a fall in variety is collapse.
        self.best_ratio = max(self.best_ratio, ratio)
        if ratio >= COLLAPSE_RATIO or ratio >= self.best_ratio / 2:
            return None
        return (
            f"epoch {epoch} samples vary only {ratio:.0%} as much as real images "
            f"(down from {self.best_ratio:.0%}): G may be collapsing onto a few modes. "
            "Try a lower optim.lr_g, training.ema or objective.loss=wgan-gp"
        )

    def after_eval(self, record: dict[str, Any], num_classes: int) -> str | None:
        """A warning when an --eval-every check finds fewer classes covered than before."""
        coverage = int(record["coverage"])
        best, self.best_coverage = self.best_coverage, max(self.best_coverage, coverage)
        if coverage >= best:
            return None
        return (
            f"epoch {record['epoch']} samples cover {coverage}/{num_classes} classes, down from "
            f"{best}: G is dropping modes. Try a lower optim.lr_g, training.ema or "
            "objective.loss=wgan-gp"
        )
