"""Usage: clusters = find_clusters(data.images, k=50, seed=0); clusters.labels, clusters.prior
       clusters, cached = cached_clusters(data.images, k=50, seed=0, folder=Path("cache"))

Clusters of the training images for self-conditioning (model.clusters): G and D are given
each image's cluster the way a conditional GAN is given its class, and samples draw their
cluster in its share of the training images. The model stays unconditional for its users
(no labels are read, none can be asked for), but G no longer has to discover the
dataset's modes and their proportions by itself: each is a cluster, drawn as often as it
occurs. Unconditional GANs trained briefly draw the modes in uneven shares (a 5-epoch DCGAN
on MNIST: 19% zeros, 3% fours) and lose a mode now and then; conditioning on clusters
removes both, as conditioning on classes does.

Clustering follows Sage et al. 2018 ("Logo synthesis and manipulation with clustered
generative adversarial networks"), who cluster in a fixed feature space before training;
Liu et al. 2020 ("Diverse image generation via self-conditioned GANs") cluster D's own
features instead. Here: k-means++ and Lloyd's iterations on the first 50 principal
components of the pixels, which needs no other network.

Finding 200 clusters takes 0.8 s for 12,800 MNIST images and 2-3 s for all 60,000 on a
2-core CPU, at the start of every run; cached_clusters keeps each result in gancli's cache
folder, keyed by the images themselves and everything else that decides it, so a later run
on the same images reads it back (bitwise the same clusters) instead.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gancli.engine import distributed
from gancli.engine.config import Config
from gancli.engine.data import ImageSet, cache_home
from gancli.engine.errors import CheckpointError, StorageError
from gancli.engine.files import atomic_write

COMPONENTS = 50  # principal components the images are clustered in
PCA_SAMPLE = 20_000  # images the components are fitted on (all are assigned) ...
PCA_FLOATS = 100_000_000  # ... fewer for wide images: at most this many pixel values
ITERATIONS = 30  # Lloyd iterations after the k-means++ start
CHUNK = 8_192  # images per distance computation, to bound memory
METHOD = 1  # raise when find_clusters would give other clusters: old cache entries then miss


@dataclass
class Clusters:
    labels: torch.Tensor  # (N,) int64: the cluster of each training image
    prior: torch.Tensor  # (k,) float: each cluster's share of the training images

    def state_dict(self) -> dict[str, torch.Tensor]:
        # int16 labels: 60,000 images take 120 KB in a checkpoint
        return {"labels": self.labels.to(torch.int16), "prior": self.prior}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> Clusters:
        """Clusters read back from a cache entry or a checkpoint, checked in value as well
        as in shape: ValueError unless every label is one of the k clusters and the prior
        is each cluster's share of the labels, as find_clusters made it."""
        labels, prior = state["labels"], state["prior"]
        if not isinstance(labels, torch.Tensor) or not isinstance(prior, torch.Tensor):
            raise ValueError("the clusters are not tensors")
        if labels.dim() != 1 or prior.dim() != 1 or not len(labels) or not len(prior):
            raise ValueError("the clusters have the wrong shape")
        if labels.is_floating_point() or not prior.is_floating_point():
            raise ValueError("the clusters have the wrong types")
        labels, prior = labels.long(), prior.float()
        if int(labels.min()) < 0 or int(labels.max()) >= len(prior):
            raise ValueError("a cluster label is out of range")
        shares = torch.bincount(labels, minlength=len(prior)).float() / len(labels)
        if not torch.allclose(prior, shares, rtol=0, atol=1e-6):
            raise ValueError("the cluster shares do not match the labels")
        return cls(labels, prior)


def find_clusters(images: torch.Tensor, k: int, seed: int) -> Clusters:
    """k clusters of uint8 images (N, C, H, W), fixed by `seed`; computed on the CPU."""
    gen = torch.Generator().manual_seed(seed)
    flat = images.cpu().flatten(1)
    k = min(k, len(flat))
    sample = min(len(flat), PCA_SAMPLE, PCA_FLOATS // flat.shape[1])
    fit = _unit(flat[torch.randperm(len(flat), generator=gen)[:sample]])
    mean = fit.mean(dim=0)
    axes = _principal_axes(fit - mean, min(COMPONENTS, *fit.shape), gen)
    points = torch.cat([(_unit(chunk) - mean) @ axes for chunk in flat.split(CHUNK)])
    centres = _kmeans_plus_plus(points, k, gen)
    for _ in range(ITERATIONS):
        labels = _nearest(points, centres)
        sums = torch.zeros_like(centres).index_add_(0, labels, points)
        counts = torch.bincount(labels, minlength=k).unsqueeze(1)
        # an emptied cluster keeps its old centre (and may win images back)
        centres = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
    labels = _nearest(points, centres)
    prior = torch.bincount(labels, minlength=k).float() / len(labels)
    return Clusters(labels, prior)


def cached_clusters(images: torch.Tensor, k: int, seed: int, folder: Path) -> tuple[Clusters, bool]:
    """find_clusters(images, k, seed), read from `folder` when an earlier call stored it
    there; and whether it was. A missing, unreadable or mismatched entry is computed (and
    stored) again; a folder that cannot be written to only costs the saving."""
    key = _cache_key(images, k, seed)
    path = folder / f"{key[:32]}.pt"
    found = _read_entry(path, key, len(images), min(k, len(images)))
    if found is not None:
        return found, True
    clusters = find_clusters(images, k, seed)
    try:
        with atomic_write(path, durable=False) as tmp:
            torch.save({"key": key, **clusters.state_dict()}, tmp)
    except StorageError:
        pass  # read-only or full: the next run computes them again
    return clusters, False


def _cache_key(images: torch.Tensor, k: int, seed: int) -> str:
    """SHA-256 of the images' bytes and of all else that decides the clusters: the method,
    its constants and PyTorch's version (other kernels may round differently)."""
    flat = images.cpu().contiguous()
    recipe = (METHOD, k, seed, flat.dtype, tuple(flat.shape), COMPONENTS, PCA_SAMPLE,
              PCA_FLOATS, ITERATIONS, CHUNK, torch.__version__)  # fmt: skip
    digest = hashlib.sha256(repr(recipe).encode())
    digest.update(flat.numpy().data)
    return digest.hexdigest()


def _read_entry(path: Path, key: str, n: int, k: int) -> Clusters | None:
    """The stored clusters of `key` at `path`, or None if absent, unreadable or not for
    these n images and k clusters."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, weights_only=True)
        if state.get("key") != key:
            return None
        clusters = Clusters.from_state(state)
    except Exception:  # torch.load raises many types for damaged files; from_state, ValueError
        return None
    return clusters if clusters.labels.shape == (n,) and clusters.prior.shape == (k,) else None


def _unit(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255.0)


def _principal_axes(centred: torch.Tensor, q: int, gen: torch.Generator) -> torch.Tensor:
    """The top q principal axes (D, q) of centred rows, by a seeded randomised SVD
    (Halko et al. 2011): exact enough for clustering, and cheap for wide images."""
    probe = torch.randn(centred.shape[1], min(q + 10, centred.shape[1]), generator=gen)
    basis = torch.linalg.qr(centred @ probe).Q
    for _ in range(2):  # power iterations sharpen the leading components
        basis = torch.linalg.qr(centred @ (centred.T @ basis)).Q
    _, _, vh = torch.linalg.svd(basis.T @ centred, full_matrices=False)
    return vh[:q].T


def _kmeans_plus_plus(points: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """Starting centres spread out in proportion to squared distance (Arthur &
    Vassilvitskii 2007)."""
    first = int(torch.randint(len(points), (1,), generator=gen))
    centres = [points[first]]
    nearest = ((points - centres[0]) ** 2).sum(dim=1)
    for _ in range(k - 1):
        # all points on the centres already (repeated images): any point will do
        weights = nearest if nearest.sum() > 0 else torch.ones_like(nearest)
        pick = int(torch.multinomial(weights, 1, generator=gen))
        centres.append(points[pick])
        nearest = torch.minimum(nearest, ((points - points[pick]) ** 2).sum(dim=1))
    return torch.stack(centres)


def _nearest(points: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.cdist(chunk, centres).argmin(dim=1) for chunk in points.split(CHUNK)])


def draw(prior: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """n cluster indices, each drawn with its training share."""
    return torch.multinomial(prior, n, replacement=True, generator=gen)


def training_clusters(
    config: Config, data: ImageSet, checkpoint: dict[str, Any] | None
) -> tuple[Clusters | None, str | None]:
    """model.clusters of a run: the checkpoint's clusters, or new ones found by rank 0 (read
    from the cache when an earlier run found them); and a note for the user, if any."""
    k = config.model.clusters
    if not k:
        return None, None
    if checkpoint is not None:
        try:
            clusters = Clusters.from_state(checkpoint["clusters"])
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise CheckpointError(f"the checkpoint's clusters are damaged ({exc})") from None
        if len(clusters.labels) != len(data):
            raise CheckpointError("the checkpoint's clusters are not for this dataset")
        return clusters, None
    seed, folder = config.training.seed, cache_home() / "clusters"
    clusters, cached = distributed.on_main(lambda: cached_clusters(data.images, k, seed, folder))
    source = f" (an earlier run's, from {folder})" if cached else ""
    return clusters, f"model.clusters: {k} k-means clusters of the training images{source}"
