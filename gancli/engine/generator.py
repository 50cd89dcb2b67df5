"""Usage: for images, labels in sample_batches(load_generator(path), SampleRequest(n=64)): ...

A trained generator rebuilt from its checkpoint, and drawing from it: class labels by
number or name, seeded (optionally truncated) noise per chunk, requests checked against
the model, batched generation a chunk at a time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from gancli.engine.checkpoint import load_checkpoint
from gancli.engine.clusters import Clusters, draw
from gancli.engine.config import Config, config_from_dict
from gancli.engine.errors import CheckpointError, ConfigError, first_line
from gancli.engine.grids import generate
from gancli.engine.models import build_models


@dataclass
class TrainedGenerator:
    """A generator rebuilt from a checkpoint, with what is needed to label its output."""

    model: nn.Module
    config: Config
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]
    checkpoint: Path
    uses_ema: bool
    epoch: int
    cluster_prior: torch.Tensor | None = None  # model.clusters: each cluster's share

    @property
    def conditional(self) -> bool:
        return self.config.model.conditional

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def load_generator(
    path: Path, device: torch.device | str = "cpu", ema: bool | None = None
) -> TrainedGenerator:
    """G from a checkpoint; its EMA copy when the run kept one (unless `ema` is False)."""
    state = load_checkpoint(path)
    try:
        config = config_from_dict(state["config"])
        data = state["data"]
        channels, height, width = (int(v) for v in data["image_shape"])
        class_names = tuple(str(c) for c in data["class_names"])
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: checkpoint metadata is unusable ({exc})") from None
    if ema and state.get("ema") is None:
        raise ConfigError("--ema: this run kept no EMA generator (training.ema was 0)")
    use_ema = state.get("ema") is not None and ema is not False
    image_shape = (channels, height, width)
    model, _ = build_models(config.model, image_shape, len(class_names))
    try:
        model.load_state_dict(state["ema" if use_ema else "generator"])
    except RuntimeError as exc:
        first = first_line(exc)[:160]
        raise CheckpointError(
            f"{path}: generator weights do not fit its config ({first})"
        ) from None
    model.to(device).eval()
    clusters = state.get("clusters")
    try:
        prior = Clusters.from_state(clusters).prior if clusters else None
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: the checkpoint's clusters are damaged ({exc})") from None
    if config.model.clusters and prior is None:
        raise CheckpointError(f"{path}: the checkpoint lacks the clusters its model needs")
    return TrainedGenerator(
        model, config, class_names, image_shape, path, use_ema, int(state["epoch"]), prior
    )


def parse_labels(specs: list[str], class_names: tuple[str, ...]) -> list[int]:
    """'7', 'Sneaker', 'a' (any case), '0-9', 'A-C', 'all', '1,3,5' -> class indices, in order."""
    lookup = {name.lower(): i for i, name in enumerate(class_names)}

    def one(token: str) -> int:
        if token.lower() in lookup:
            return lookup[token.lower()]
        if token.isdigit() and int(token) < len(class_names):
            return int(token)
        raise ConfigError(
            f"--class {token!r}: unknown class; this model has {len(class_names)} classes: "
            f"{', '.join(class_names)}"
        )

    out: list[int] = []
    for spec in specs:
        for token in (t.strip() for t in spec.split(",")):
            if not token:
                continue
            if token.lower() == "all":
                out.extend(range(len(class_names)))
            elif token.lower() not in lookup and re.fullmatch(r"[^-]+-[^-]+", token):
                first, last = (one(t) for t in token.split("-"))
                step = 1 if last >= first else -1
                out.extend(range(first, last + step, step))
            else:
                out.append(one(token))
    return out


# --------------------------------------------------------------------------- sampling

NOISE_CHUNK = 1024  # noise is drawn per chunk of this many samples, whatever the batch size
SEED_MULTIPLIER = 1_000_003  # a prime: (seed, chunk) pairs map to distinct generator seeds
SEED_MODULUS = 2**63  # torch.Generator.manual_seed takes 64 bits; stay clear of the sign
CLUSTER_STREAM = 1  # a chunk's cluster draws use its noise seed + this: their own stream


def chunk_seed(seed: int, chunk: int) -> int:
    """The torch.Generator seed of chunk `chunk`'s noise for --seed `seed`. The export
    sidecar publishes this recipe, so anything that changes it changes what it says."""
    return (seed * SEED_MULTIPLIER + chunk) % SEED_MODULUS


def noise_chunks(
    n: int, z_dim: int, seed: int, truncation: float | None = None
) -> Iterator[torch.Tensor]:
    """N(0, I) noise for n samples in chunks; chunk k depends only on (seed, k).

    With `truncation` T, entries with |z| > T are redrawn until none is left (the
    truncation trick: less variety, more typical samples).
    """
    for k, start in enumerate(range(0, n, NOISE_CHUNK)):
        gen = torch.Generator().manual_seed(chunk_seed(seed, k))
        z = torch.randn(min(NOISE_CHUNK, n - start), z_dim, generator=gen)
        if truncation is not None:
            outside = z.abs() > truncation
            while outside.any():
                z[outside] = torch.randn(int(outside.sum()), generator=gen)
                outside = z.abs() > truncation
        yield z


@dataclass(frozen=True)
class SampleRequest:
    n: int = 64  # images to generate
    # classes, in blocks of n / len(labels); () is every class for a conditional model
    labels: tuple[int, ...] = ()
    seed: int = 0
    truncation: float | None = None
    batch_size: int = 500  # images per forward pass


def request_labels(
    request: SampleRequest, start: int = 0, count: int | None = None
) -> torch.Tensor:
    """Labels of samples start .. start + count (default: all n): n split into equal
    consecutive blocks, one per requested class; -1 for unconditional requests."""
    count = request.n - start if count is None else count
    if not request.labels:
        return torch.full((count,), -1, dtype=torch.long)
    blocks = torch.arange(start, start + count) * len(request.labels) // request.n
    return torch.tensor(request.labels, dtype=torch.long)[blocks]


def check_request(trained: TrainedGenerator, request: SampleRequest) -> SampleRequest:
    """The request as this model draws it: a conditional model asked for no class draws
    every class in equal blocks; an unconditional one refuses a class."""
    if request.labels and not trained.conditional:
        raise ConfigError("--class: this model is unconditional; it cannot generate a chosen class")
    if trained.conditional and not request.labels:
        return replace(request, labels=tuple(range(len(trained.class_names))))
    return request


#: Told what a long command is doing: (stage, done, total or None when it cannot be counted).
StageReport = Callable[[str, int, int | None], None]


def sample_batches(
    trained: TrainedGenerator, request: SampleRequest, progress: StageReport | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(uint8 images (b, C, H, W), labels (b,)) on the CPU, a chunk of noise at a time, so
    memory stays bounded whatever n is. The request is checked at once, not on first use.
    `progress` hears of every chunk generated."""
    return _batches(trained, check_request(trained, request), progress)


def _batches(
    trained: TrainedGenerator, request: SampleRequest, progress: StageReport | None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    batch_size = min(request.batch_size, NOISE_CHUNK)  # a chunk is the most held at once
    done = 0
    for z, model_labels, labels in sample_inputs(trained, request):
        images = generate(trained.model, z, model_labels, batch_size)
        done += len(z)
        if progress is not None:
            progress("generating", done, request.n)
        yield images, labels


def sample_inputs(
    trained: TrainedGenerator, request: SampleRequest
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(noise, the labels G is given, the labels reported) a chunk at a time: what
    `sample` feeds the generator, also used to check an exported one. G is given the
    requested classes, or for a self-conditioned model clusters drawn in their shares."""
    request = check_request(trained, request)
    z_dim = trained.config.model.z_dim
    offset = 0
    for k, z in enumerate(noise_chunks(request.n, z_dim, request.seed, request.truncation)):
        chunk_labels = request_labels(request, offset, len(z))
        offset += len(z)
        if trained.cluster_prior is not None:  # like the noise, fixed by (seed, chunk)
            gen = torch.Generator().manual_seed(chunk_seed(request.seed, k) + CLUSTER_STREAM)
            model_labels = draw(trained.cluster_prior, len(z), gen)
        else:
            model_labels = chunk_labels.clamp(min=0)  # unconditional models ignore them
        yield z, model_labels, chunk_labels


def default_nrow(request: SampleRequest) -> int:
    per_class = request.n // len(request.labels) if len(request.labels) > 1 else 0
    if per_class and request.n % len(request.labels) == 0:
        return per_class  # one row per class
    return math.ceil(math.sqrt(request.n))
