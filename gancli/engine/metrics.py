"""Usage: fid = frechet_distance(real_features, fake_features)

Sample-quality metrics computed from features and class probabilities, whatever network
produced them: Frechet distance (FID), kernel distance (KID), an Inception-Score-style
score, k-nearest-neighbour precision and recall, and class coverage.

They are computed here rather than with a metrics library because one evaluation
extracts features once and feeds them to all five metrics (and to the real-data floor);
the maths is short and each function is tested against an independent reference
(scipy's sqrtm for the Frechet distance, closed forms for the others).
"""

from __future__ import annotations

import math

import torch

KID_SUBSETS = 100  # Binkowski et al. 2018 report the mean over 100 subsets of size 1,000
KID_SUBSET_SIZE = 1000
PR_NEIGHBOURS = 3  # k of Kynkaanniemi et al. 2019
IS_SPLITS = 10  # Salimans et al. 2016
DISTANCE_CHUNK = 2048  # rows of a pairwise-distance block held in memory at once


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance of (N, D) features, in float64."""
    x = features.double()
    mean = x.mean(0)
    centred = x - mean
    return mean, centred.T @ centred / max(x.shape[0] - 1, 1)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two (N, D) feature sets (Heusel et al. 2017).

    ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)). The trace of the matrix square
    root equals the sum of the square roots of the eigenvalues of S_a^(1/2) S_b S_a^(1/2),
    which is symmetric positive semi-definite: two symmetric eigendecompositions, no
    complex parts to discard as with a general sqrtm.
    """
    mu_a, cov_a = gaussian_stats(a)
    mu_b, cov_b = gaussian_stats(b)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = (vectors * values.clamp(min=0).sqrt()) @ vectors.T
    middle = root_a @ cov_b @ root_a
    trace_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    distance = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * trace_root
    return max(float(distance), 0.0)


def kernel_distance(
    a: torch.Tensor,
    b: torch.Tensor,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    seed: int = 0,
) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): unbiased MMD^2 with the kernel (x.y / d + 1)^3.

    Mean and standard deviation over random subsets. Unbiased, so two samples of one
    distribution give values scattered around 0 (slightly negative ones included).
    """
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    a, b = a.double(), b.double()
    dim = a.shape[1]
    gen = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        x = a[torch.randperm(a.shape[0], generator=gen)[:m]]
        y = b[torch.randperm(b.shape[0], generator=gen)[:m]]
        k_xx = (x @ x.T / dim + 1) ** 3
        k_yy = (y @ y.T / dim + 1) ** 3
        k_xy = (x @ y.T / dim + 1) ** 3
        within = k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()
        values.append(float(within / (m * (m - 1)) - 2 * k_xy.mean()))
    spread = torch.tensor(values, dtype=torch.float64)
    return float(spread.mean()), float(spread.std()) if subsets > 1 else 0.0


def inception_score(probs: torch.Tensor, splits: int = IS_SPLITS) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))) per split (Salimans et al. 2016): mean and std.

    1 when every sample gets the same class distribution; the number of classes when each
    sample is classified with certainty and the classes are used equally.
    """
    p = probs.double().clamp(min=1e-12)
    # Split a fixed shuffle, not the rows in order: samples often arrive sorted by class (a
    # conditional model sampled class by class), and a split of one class scores 1.
    order = torch.randperm(p.shape[0], generator=torch.Generator().manual_seed(0))
    scores = []
    for part in p[order].chunk(min(splits, p.shape[0])):
        marginal = part.mean(0, keepdim=True)
        kl = (part * (part.log() - marginal.log())).sum(1).mean()
        scores.append(math.exp(float(kl)))
    spread = torch.tensor(scores, dtype=torch.float64)
    return float(spread.mean()), float(spread.std()) if len(scores) > 1 else 0.0


def _kth_neighbour_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point of the same set."""
    radii = []
    for chunk in features.split(DISTANCE_CHUNK):
        distances = torch.cdist(chunk, features)
        # The smallest distance is the point to itself (0): the k-th neighbour is at k.
        radii.append(distances.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def precision_recall(
    real: torch.Tensor, fake: torch.Tensor, k: int = PR_NEIGHBOURS
) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019).

    Each set's manifold is the union of balls around its points reaching their k-th
    nearest neighbour. Precision: the share of fakes inside the real manifold (are the
    samples realistic?). Recall: the share of reals inside the fake manifold (is the
    variety of the data covered?).
    """
    if min(real.shape[0], fake.shape[0]) <= k:
        raise ValueError(f"precision and recall need more than {k} samples in each set")
    real, fake = real.float(), fake.float()
    real_radii = _kth_neighbour_radii(real, k)
    fake_radii = _kth_neighbour_radii(fake, k)
    fake_inside = torch.zeros(fake.shape[0], dtype=torch.bool)
    real_inside = torch.zeros(real.shape[0], dtype=torch.bool)
    for start in range(0, fake.shape[0], DISTANCE_CHUNK):
        rows = slice(start, start + DISTANCE_CHUNK)
        distances = torch.cdist(fake[rows], real)  # (chunk, real)
        fake_inside[rows] = (distances <= real_radii).any(1)
        real_inside |= (distances <= fake_radii[rows, None]).any(0)
    return float(fake_inside.float().mean()), float(real_inside.float().mean())


def class_histogram(predicted: torch.Tensor, num_classes: int) -> list[float]:
    """Share of samples assigned to each class."""
    counts = torch.bincount(predicted.flatten(), minlength=num_classes).double()
    return (counts / max(predicted.numel(), 1)).tolist()


def covered_classes(shares: list[float], reference: list[float], fraction: float = 0.5) -> int:
    """Classes whose share of the samples is at least `fraction` of their share in the data.

    A generator that dropped a mode (a digit it never draws) loses one; uniform samples
    of a balanced dataset cover all of them.
    """
    return sum(1 for got, want in zip(shares, reference, strict=True) if got >= fraction * want)
