"""Self-conditioning (model.clusters): the clusters, and sampling that draws them in shares."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gancli.engine import clusters as clusters_module
from gancli.engine.clusters import Clusters, cached_clusters, draw, find_clusters
from gancli.engine.config import load_config
from gancli.engine.errors import ConfigError
from gancli.engine.generator import SampleRequest, TrainedGenerator, sample_batches


def three_groups() -> tuple[torch.Tensor, torch.Tensor]:
    """Images of three kinds (dark, a bright top half, a bright left half), 60/30/10."""
    gen = torch.Generator().manual_seed(0)
    kinds = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)[torch.randperm(100, generator=gen)]
    images = torch.randint(0, 30, (100, 1, 8, 8), generator=gen, dtype=torch.uint8)
    images[kinds == 1, :, :4, :] += 200
    images[kinds == 2, :, :, :4] += 200
    return images, kinds


def test_clusters_find_the_groups_and_their_shares() -> None:
    images, kinds = three_groups()
    found = find_clusters(images, k=3, seed=0)
    # the same partition, whatever numbers the clusters got
    pairs = set(zip(found.labels.tolist(), kinds.tolist(), strict=True))
    assert len(pairs) == 3 and len({c for c, _ in pairs}) == 3
    assert sorted(found.prior.tolist()) == pytest.approx([0.1, 0.3, 0.6])
    again = find_clusters(images, k=3, seed=0)
    assert torch.equal(again.labels, found.labels)  # fixed by the seed
    assert find_clusters(images[:2], k=5, seed=0).prior.numel() == 2  # k <= images
    restored = Clusters.from_state(found.state_dict())
    assert torch.equal(restored.labels, found.labels) and restored.labels.dtype == torch.long


def test_cached_clusters_are_read_back_bitwise_for_the_same_images_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, _ = three_groups()
    first, cached = cached_clusters(images, k=3, seed=0, folder=tmp_path)
    assert not cached and len(list(tmp_path.glob("*.pt"))) == 1
    fresh = find_clusters(images, k=3, seed=0)
    assert torch.equal(first.labels, fresh.labels) and torch.equal(first.prior, fresh.prior)

    calls: list[int] = []
    real_find = clusters_module.find_clusters

    def counting_find(images: torch.Tensor, k: int, seed: int) -> Clusters:
        calls.append(k)
        return real_find(images, k, seed)

    monkeypatch.setattr(clusters_module, "find_clusters", counting_find)
    again, cached = cached_clusters(images, k=3, seed=0, folder=tmp_path)
    assert cached and calls == []  # read, not computed
    assert torch.equal(again.labels, fresh.labels) and again.labels.dtype == torch.long
    assert torch.equal(again.prior, fresh.prior)

    # anything that decides the clusters is part of the key: each of these is computed anew
    changed = images.clone()
    changed[0, 0, 0, 0] ^= 1
    for args in [(changed, 3, 0), (images, 4, 0), (images, 3, 1), (images[:-1], 3, 0)]:
        _, cached = cached_clusters(*args, folder=tmp_path)
        assert not cached
    assert len(calls) == 4 and len(list(tmp_path.glob("*.pt"))) == 5
    monkeypatch.setattr(clusters_module, "METHOD", clusters_module.METHOD + 1)
    assert not cached_clusters(images, k=3, seed=0, folder=tmp_path)[1]


def test_damaged_or_unwritable_cluster_cache_costs_only_time(tmp_path: Path) -> None:
    images, _ = three_groups()
    expected = find_clusters(images, k=3, seed=0)
    cached_clusters(images, k=3, seed=0, folder=tmp_path)
    (entry,) = tmp_path.glob("*.pt")
    good = entry.read_bytes()
    damaged = {
        "truncated": good[: len(good) // 2],
        "not a file torch reads": b"garbage",
        "other images' labels": _entry_bytes(tmp_path, entry, labels=torch.zeros(99)),
        "a label out of range": _entry_bytes(tmp_path, entry, labels=torch.full((100,), 3)),
    }
    for what, blob in damaged.items():
        entry.write_bytes(blob)
        clusters, cached = cached_clusters(images, k=3, seed=0, folder=tmp_path)
        assert not cached, what
        assert torch.equal(clusters.labels, expected.labels), what
        assert entry.read_bytes() != blob, what  # stored again, whole
        assert cached_clusters(images, k=3, seed=0, folder=tmp_path)[1], what

    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would go")
    clusters, cached = cached_clusters(images, k=3, seed=0, folder=blocked / "clusters")
    assert not cached and torch.equal(clusters.labels, expected.labels)
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind


def _entry_bytes(folder: Path, entry: Path, labels: torch.Tensor) -> bytes:
    """The cache entry at `entry` with its labels replaced (its key kept)."""
    state = torch.load(entry, weights_only=True)
    state["labels"] = labels.to(torch.int16)
    path = folder / "edited.pt"
    torch.save(state, path)
    blob = path.read_bytes()
    path.unlink()
    return blob


def test_draw_follows_the_prior() -> None:
    prior = torch.tensor([0.7, 0.2, 0.1])
    drawn = draw(prior, 20_000, torch.Generator().manual_seed(1))
    shares = torch.bincount(drawn, minlength=3).float() / 20_000
    assert torch.allclose(shares, prior, atol=0.01)


class LabelEcho(torch.nn.Module):
    """A 'generator' whose image is its label: shows what it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (labels.float() / 10 - 1).view(-1, 1, 1, 1).expand(-1, 1, 2, 2) + 0 * self.anchor


def test_samples_of_a_self_conditioned_model_draw_clusters_by_seed() -> None:
    config = load_config(None, ["model.clusters=4"])
    prior = torch.tensor([0.5, 0.25, 0.25, 0.0])
    trained = TrainedGenerator(
        LabelEcho(), config, tuple("0123456789"), (1, 2, 2), Path(), False, 0, prior
    )

    def given(batch_size: int, seed: int) -> torch.Tensor:
        request = SampleRequest(n=3000, seed=seed, batch_size=batch_size)
        images, labels = zip(*sample_batches(trained, request), strict=True)
        assert torch.cat(labels).eq(-1).all()  # no class to show the user
        return torch.cat(images)[:, 0, 0, 0].float().div(255 / 20).round().long()

    clusters = given(500, seed=3)
    assert torch.equal(clusters, given(128, seed=3))  # batch size does not matter
    assert not torch.equal(clusters, given(500, seed=4))
    shares = torch.bincount(clusters, minlength=4).float() / 3000
    assert torch.allclose(shares, prior, atol=0.03) and shares[3] == 0


def test_clusters_config_checks() -> None:
    with pytest.raises(ConfigError, match=r"use one of model\.conditional and model\.clusters"):
        load_config("cgan-mnist", ["model.clusters=10"])
    with pytest.raises(ConfigError, match="one cluster is no clustering"):
        load_config("dcgan-mnist", ["model.clusters=1"])
    assert load_config("dcgan-mnist", ["model.clusters=10", "model.g_norm=class-batch"])
