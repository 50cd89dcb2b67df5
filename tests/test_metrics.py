"""The sample-quality metrics against independent references and their defining properties."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from gancli.engine import metrics


def _gaussian(n: int, dim: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    """n points of one fixed correlated Gaussian per dim (the seed picks the points only)."""
    mixing = torch.randn(dim, dim, generator=torch.Generator().manual_seed(dim)) / dim**0.5
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, dim, generator=gen) @ mixing) * scale + shift


def _scipy_fid(a: torch.Tensor, b: torch.Tensor) -> float:
    """The textbook formula with scipy's general matrix square root."""
    x, y = a.double().numpy(), b.double().numpy()
    mu_x, mu_y = x.mean(0), y.mean(0)
    cov_x, cov_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = scipy.linalg.sqrtm(cov_x @ cov_y).real
    return float(((mu_x - mu_y) ** 2).sum() + np.trace(cov_x + cov_y - 2 * root))


@pytest.mark.parametrize("shift,scale", [(0.0, 1.0), (0.3, 1.0), (0.0, 1.7), (1.0, 0.5)])
def test_frechet_distance_matches_scipy_sqrtm(shift: float, scale: float) -> None:
    a = _gaussian(2000, 16, seed=1)
    b = _gaussian(2000, 16, seed=2, shift=shift, scale=scale)
    ours, reference = metrics.frechet_distance(a, b), _scipy_fid(a, b)
    assert ours == pytest.approx(reference, rel=1e-6, abs=1e-8)


def test_frechet_distance_of_known_gaussians() -> None:
    """Diagonal covariances have a closed form: sum (mu diff)^2 + (sigma_a - sigma_b)^2."""
    gen = torch.Generator().manual_seed(0)
    n, sigma_a, sigma_b = 200_000, torch.tensor([1.0, 2.0, 0.5]), torch.tensor([2.0, 2.0, 1.0])
    a = torch.randn(n, 3, generator=gen) * sigma_a
    b = torch.randn(n, 3, generator=gen) * sigma_b + torch.tensor([1.0, 0.0, 0.0])
    expected = 1.0 + float(((sigma_a - sigma_b) ** 2).sum())
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=0.02)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise() -> None:
    a = _gaussian(3000, 32, seed=3)
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    gen = torch.Generator().manual_seed(4)
    noise = torch.randn(a.shape, generator=gen)
    distances = [metrics.frechet_distance(a, a + level * noise) for level in (0.1, 0.3, 1.0)]
    assert 0 < distances[0] < distances[1] < distances[2]


@pytest.mark.slow
def test_kid_is_unbiased_on_one_distribution_and_positive_across_two() -> None:
    a, b = _gaussian(3000, 32, seed=5), _gaussian(3000, 32, seed=6)
    same, same_std = metrics.kernel_distance(a, b, subsets=50)
    assert abs(same) < 3 * same_std / 50**0.5 + 1e-4  # centred on 0, not biased upwards
    # Subsets of one finite set share points, which the estimator counts as a closer
    # match than two independent samples: slightly below 0, never above.
    identical, _ = metrics.kernel_distance(a, a, subsets=50)
    assert -0.01 < identical <= 0
    shifted, _ = metrics.kernel_distance(a, b + 0.5, subsets=20)
    assert shifted > 10 * max(abs(same), 1e-4)


def test_kid_matches_direct_mmd_formula() -> None:
    """One subset of all points: the unbiased estimator written out with loops over pairs."""
    a, b = _gaussian(40, 4, seed=7).double(), _gaussian(40, 4, seed=8, shift=0.2).double()

    def k(x: torch.Tensor, y: torch.Tensor) -> float:
        return float((x @ y / 4 + 1) ** 3)

    m = 40
    xx = sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(a[i], b[j]) for i in range(m) for j in range(m)) / (m * m)
    ours, _ = metrics.kernel_distance(a, b, subsets=1, subset_size=m)
    assert ours == pytest.approx(xx + yy - 2 * xy, rel=1e-9)


def test_inception_score_bounds() -> None:
    confident = torch.eye(10).repeat(1000, 1)  # every class equally often, with certainty
    # 10 with an exactly uniform class marginal; a random split of 1,000 is nearly uniform
    assert metrics.inception_score(confident)[0] == pytest.approx(10.0, rel=0.02)
    uniform = torch.full((1000, 10), 0.1)
    assert metrics.inception_score(uniform)[0] == pytest.approx(1.0, rel=1e-6)
    # Sorted by class, as a conditional model's samples come: the splits must still mix them.
    sorted_by_class = torch.eye(10).repeat_interleave(1000, dim=0)
    assert metrics.inception_score(sorted_by_class)[0] == pytest.approx(10.0, rel=0.02)
    one_class = torch.eye(10)[torch.zeros(1000, dtype=torch.long)]
    assert metrics.inception_score(one_class)[0] == pytest.approx(1.0, rel=1e-6)


def test_precision_recall_identical_and_disjoint_sets() -> None:
    a = _gaussian(1500, 8, seed=9)
    precision, recall = metrics.precision_recall(a, a.clone())
    assert precision == 1.0 and recall == 1.0
    far = _gaussian(1500, 8, seed=10, shift=100.0)
    assert metrics.precision_recall(a, far) == (0.0, 0.0)
    same_distribution = _gaussian(1500, 8, seed=11)
    precision, recall = metrics.precision_recall(a, same_distribution)
    assert precision > 0.9 and recall > 0.9


def test_precision_recall_separate_quality_from_variety() -> None:
    """A collapsed generator (one tight blob) is precise but has low recall."""
    real = _gaussian(2000, 8, seed=12)
    collapsed = real[:1] + 0.01 * _gaussian(2000, 8, seed=13)
    precision, recall = metrics.precision_recall(real, collapsed)
    assert precision > 0.95 and recall < 0.05


def test_class_histogram_and_coverage() -> None:
    predicted = torch.tensor([0, 0, 1, 1, 2, 2, 2, 2])
    shares = metrics.class_histogram(predicted, 4)
    assert shares == [0.25, 0.25, 0.5, 0.0]
    assert metrics.covered_classes(shares, [0.25] * 4) == 3
    assert metrics.covered_classes([0.1] * 10, [0.1] * 10) == 10
    assert metrics.covered_classes([0.5, 0.5] + [0.0] * 8, [0.1] * 10) == 2
