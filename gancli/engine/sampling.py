"""Usage: write_samples(load_generator(run.last_checkpoint), SampleRequest(n=64), out)

Turning generators into pictures: loading a trained generator from a checkpoint, class
labels by number or name, seeded (optionally truncated) noise, batched generation in eval
mode, and writing PNG grids, folders of PNGs or .npz arrays.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from gancli.engine.checkpoint import load_checkpoint
from gancli.engine.clusters import Clusters, draw
from gancli.engine.config import Config, ModelConfig, TrainingConfig, config_from_dict
from gancli.engine.data import to_uint8
from gancli.engine.errors import CheckpointError, ConfigError
from gancli.engine.files import atomic_write, check_target, check_writable
from gancli.engine.limits import check_disk, check_memory, human_bytes
from gancli.engine.models import build_models
from gancli.engine.runs import next_free_path

SAMPLES_PER_CLASS = 10  # columns of a conditional grid: one row per class


def fixed_inputs(
    model: ModelConfig, training: TrainingConfig, num_classes: int, clusters: Clusters | None
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(noise, labels, nrow) for the per-epoch grids: conditional grids get one row per
    class; a self-conditioned model's grid draws its clusters in their shares."""
    gen = torch.Generator().manual_seed(training.seed + 0x5EED)
    if model.conditional:
        labels = torch.arange(num_classes).repeat_interleave(SAMPLES_PER_CLASS)
        nrow = SAMPLES_PER_CLASS
    elif clusters is not None:
        labels = draw(clusters.prior, training.grid_size, gen)
        nrow = math.ceil(math.sqrt(training.grid_size))
    else:
        labels = torch.zeros(training.grid_size, dtype=torch.long)
        nrow = math.ceil(math.sqrt(training.grid_size))
    noise = torch.randn(labels.shape[0], model.z_dim, generator=gen)
    return noise, labels, nrow


@torch.no_grad()
def generate(
    generator: nn.Module, noise: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024
) -> torch.Tensor:
    """uint8 images (N, C, H, W) on the CPU, generated in eval mode, `batch_size` at a time."""
    was_training = generator.training
    generator.eval()
    device = next(generator.parameters()).device
    try:
        chunks = [
            to_uint8(generator(z.to(device), y.to(device))).cpu()
            for z, y in zip(noise.split(batch_size), labels.split(batch_size), strict=True)
        ]
    finally:
        generator.train(was_training)
    return torch.cat(chunks)


def grid_image(
    images: torch.Tensor, nrow: int, padding: int = 2, row_labels: list[str] | None = None
) -> Image.Image:
    """uint8 images (N, C, H, W) -> one PIL image, `nrow` per row, on a dark background.

    With `row_labels`, each row is named in a margin on the left (class names of a
    conditional grid).
    """
    n, c, h, w = images.shape
    rows = math.ceil(n / nrow)
    canvas = torch.zeros(c, rows * (h + padding) + padding, nrow * (w + padding) + padding)
    canvas = canvas.to(torch.uint8)
    for i in range(n):
        top, left = padding + (i // nrow) * (h + padding), padding + (i % nrow) * (w + padding)
        canvas[:, top : top + h, left : left + w] = images[i]
    grid = to_pil(canvas)
    if not row_labels:
        return grid
    font = ImageFont.load_default()
    margin = 6 + max(math.ceil(font.getlength(label)) for label in row_labels)
    labelled = Image.new(grid.mode, (grid.width + margin, grid.height), 0)
    labelled.paste(grid, (margin, 0))
    draw = ImageDraw.Draw(labelled)
    white = 255 if grid.mode == "L" else (255, 255, 255)
    for row, label in enumerate(row_labels[:rows]):
        middle = padding + row * (h + padding) + h // 2
        draw.text((margin - 4, middle), label, fill=white, font=font, anchor="rm")
    return labelled


def to_pil(image: torch.Tensor) -> Image.Image:
    """One uint8 image (C, H, W), grey or RGB -> PIL."""
    array = image.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


def save_grid(
    images: torch.Tensor,
    path: Path,
    nrow: int,
    row_labels: list[str] | None = None,
    scale: int = 1,
) -> None:
    with atomic_write(path) as tmp:
        upscale(grid_image(images, nrow, row_labels=row_labels), scale).save(tmp)


SCALE_MAX = 16  # --scale and training.grid_scale: a 28 px digit becomes at most 448 px
# Pillow's default Image.MAX_IMAGE_PIXELS: above it Pillow warns that an image may be a
# decompression bomb (and refuses twice as many), in gancli's own animate and report too,
# so gancli writes nothing larger.
PIXELS_MAX = 89_478_485


def upscale(image: Image.Image, scale: int) -> Image.Image:
    """Each pixel as a `scale` x `scale` block. A viewer enlarging a 28 px digit smooths it
    into a blur; a file enlarged by whole numbers, nearest neighbour, stays sharp anywhere."""
    if scale == 1:
        return image
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def check_scale_factor(scale: int, flag: str = "--scale") -> None:
    """ConfigError unless `scale` is a whole number from 1 to SCALE_MAX."""
    if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= SCALE_MAX:
        raise ConfigError(f"{flag} {scale!r}: use a whole number from 1 to {SCALE_MAX}")


def check_scale(scale: int, width: int, height: int, what: str, flag: str = "--scale") -> int:
    """ConfigError unless `scale` is a whole number 1..SCALE_MAX and `what`, `width` x
    `height` px before scaling, stays readable once scaled; the scaled image's pixels
    otherwise."""
    check_scale_factor(scale, flag)
    pixels = width * scale * height * scale
    if pixels > PIXELS_MAX:
        raise ConfigError(
            f"{flag} {scale}: {what} would be {width * scale:,} x {height * scale:,} px "
            f"({pixels / 1e6:,.0f} megapixels, {human_bytes(pixels)} a channel in memory); "
            f"Pillow, and so gancli, takes images over {PIXELS_MAX / 1e6:.0f} megapixels "
            "for decompression bombs; lower the scale or the number of images"
        )
    return pixels


# --------------------------------------------------------------------------- trained generators


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
        first = str(exc).strip().splitlines()[0][:160]
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
    return _batches(trained, check_request(trained, request), progress or _silent)


def _silent(stage: str, done: int, total: int | None) -> None:
    pass


def _batches(
    trained: TrainedGenerator, request: SampleRequest, progress: StageReport
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    batch_size = min(request.batch_size, NOISE_CHUNK)  # a chunk is the most held at once
    done = 0
    for z, model_labels, labels in sample_inputs(trained, request):
        images = generate(trained.model, z, model_labels, batch_size)
        done += len(z)
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


# --------------------------------------------------------------------------- output files

#: The names `sample --out DIR/` gives its images: 000042.png, 000042_7.png.
OWN_IMAGE = re.compile(r"\d{6,}(_[A-Za-z0-9._-]+)?\.png")
PNG_SIDE_MAX = 2**31 - 1  # pixels; PNG stores each side in 31 bits


def output_kind(out: Path) -> str:
    """grid (.png), npz (.npz) or folder (no suffix)."""
    kind = {".png": "grid", ".npz": "npz"}.get(out.suffix.lower(), "folder")
    if kind == "folder" and out.suffix:
        raise ConfigError(f"--out {out}: use a .png grid, a .npz file or a directory name")
    return kind


def check_output(
    trained: TrainedGenerator,
    request: SampleRequest,
    out: Path,
    nrow: int | None = None,
    force: bool = False,
    scale: int = 1,
) -> None:
    """Everything that would stop the write, checked before any image is made: the kind of
    --out, what is already there, the scale, and the memory or disk space it needs.
    `request` is as check_request returned it (write_samples passes it so)."""
    kind = output_kind(out)
    check_target(out)
    check_writable(out if kind == "folder" else out.parent, "--out")
    image_bytes = math.prod(trained.image_shape)
    channels, height, width = trained.image_shape
    check_scale(scale, width, height, "each image")
    if kind == "folder":
        if os.path.lexists(out) and not out.is_dir():
            raise ConfigError(f"--out {out}: exists and is not a folder")
        if out.is_dir() and any(out.iterdir()) and not force:
            raise ConfigError(
                f"--out {out}: the folder is not empty; pass --force to write into it"
            )
        what = f"-n {request.n:,}: a folder of {request.n:,} PNGs"
        check_disk(out, request.n, request.n * image_bytes * scale**2, what, "lower -n")
        return
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; name a .png or .npz file")
    if os.path.lexists(out) and not force:
        raise ConfigError(f"--out {out}: already exists; pass --force to replace it")
    needed = request.n * (image_bytes + 8)  # the images and labels, held until written
    if kind == "grid":
        width, height = grid_size(request.n, _grid_nrow(request, nrow), trained.image_shape)
        if max(width, height) > PNG_SIDE_MAX:
            raise ConfigError(f"-n {request.n:,}: a grid {width:,} x {height:,} px is too large")
        needed += 3 * width * height * channels  # canvas, PIL copy, labels
        if scale > 1:  # the scaled copy, beside the grid it is made from
            needed += check_scale(scale, width, height, "the grid") * channels
    what = f"-n {request.n:,}: a {out.suffix} of {request.n:,} images"
    check_memory(needed, what, "write a folder of PNGs (--out DIR/) or lower -n")


def grid_size(
    n: int, nrow: int, image_shape: tuple[int, int, int], padding: int = 2
) -> tuple[int, int]:
    """(width, height) in pixels of grid_image's grid of n images, nrow per row."""
    _, h, w = image_shape
    rows = math.ceil(n / nrow)
    return nrow * (w + padding) + padding, rows * (h + padding) + padding


def _grid_nrow(request: SampleRequest, nrow: int | None) -> int:
    """Columns of a grid: --nrow or the default, never more than there are images."""
    return min(nrow or default_nrow(request), request.n)


def write_samples(
    trained: TrainedGenerator,
    request: SampleRequest,
    out: Path | None,
    nrow: int | None = None,
    force: bool = False,
    default_dir: Path = Path("generated"),
    scale: int = 1,
    progress: StageReport | None = None,
) -> dict[str, object]:
    """Generate and write: a .png grid, a .npz (images uint8 NCHW, labels int64) or a folder.

    `out=None`: a grid at the first free DEFAULT_DIR/sample-NNN.png. An existing `out` is
    replaced only with `force` (and, for a folder, only gancli's own image names), and is
    created exclusively otherwise: of two commands writing one name, one fails. `scale`
    enlarges a grid or each PNG of a folder (nearest neighbour); a .npz keeps the images as
    the generator made them, for further computation. The result names the classes drawn.
    """
    request = check_request(trained, request)
    # The default name is claimed only once the checks pass: a refusal leaves nothing.
    placeholder = default_dir / "sample-NNN.png"
    check_output(trained, request, out or placeholder, nrow, force or out is None, scale)
    if out is not None:
        return _write(trained, request, out, nrow, force, scale, progress)
    claimed = next_free_path(default_dir, "sample", ".png")  # an empty placeholder
    try:
        return _write(trained, request, claimed, nrow, True, scale, progress)
    except BaseException:  # failed or interrupted: give the name back
        claimed.unlink(missing_ok=True)
        raise


def _write(
    trained: TrainedGenerator,
    request: SampleRequest,
    out: Path,
    nrow: int | None,
    replace: bool,
    scale: int = 1,
    progress: StageReport | None = None,
) -> dict[str, object]:
    kind = output_kind(out)
    classes = [trained.class_names[i] for i in request.labels]
    if kind == "folder":
        written, removed = _write_folder(trained, request, out, replace, scale, progress)
        return {
            "out": str(out),
            "kind": kind,
            "images": written,
            "removed": removed,
            "scale": scale,
            "classes": classes,
        }
    images_all = np.empty((request.n, *trained.image_shape), dtype=np.uint8)
    labels_all = np.empty(request.n, dtype=np.int64)
    written = 0
    for images, labels in sample_batches(trained, request, progress):
        images_all[written : written + len(images)] = images.numpy()
        labels_all[written : written + len(labels)] = labels.numpy()
        written += len(images)
    with atomic_write(out, replace=replace) as tmp:
        if kind == "npz":
            np.savez(tmp, images=images_all, labels=labels_all)
        else:
            columns = _grid_nrow(request, nrow)
            rows = _row_labels(request, columns, trained.class_names)
            grid = grid_image(torch.from_numpy(images_all), columns, row_labels=rows)
            upscale(grid, scale).save(tmp)
    applied = 1 if kind == "npz" else scale
    return {"out": str(out), "kind": kind, "images": written, "scale": applied, "classes": classes}


def _write_folder(
    trained: TrainedGenerator,
    request: SampleRequest,
    out: Path,
    replace: bool,
    scale: int = 1,
    progress: StageReport | None = None,
) -> tuple[int, int]:
    """One PNG per image, each through a temporary name (a kill never leaves half an image
    under a final name); with `replace`, gancli's own names left from an earlier, larger
    sample are removed afterwards. Returns (written, removed)."""
    names: set[str] = set()
    for images, labels in sample_batches(trained, request, progress):
        for image, label in zip(images, labels.tolist(), strict=True):
            name = f"{len(names):06d}" + (
                f"_{_safe(trained.class_names[label])}" if label >= 0 else ""
            )
            names.add(f"{name}.png")
            with atomic_write(out / f"{name}.png", replace=replace, durable=False) as tmp:
                upscale(to_pil(image), scale).save(tmp)
    stale = [p for p in out.iterdir() if OWN_IMAGE.fullmatch(p.name) and p.name not in names]
    for path in stale if replace else []:
        path.unlink(missing_ok=True)
    return len(names), len(stale) if replace else 0


def _row_labels(
    request: SampleRequest, nrow: int, class_names: tuple[str, ...]
) -> list[str] | None:
    """Class names per grid row, when every row holds exactly one requested class."""
    if not request.labels or request.n % len(request.labels):
        return None
    per_class = request.n // len(request.labels)
    if per_class % nrow:
        return None
    return [class_names[c] for c in request.labels for _ in range(per_class // nrow)]


def _safe(name: str) -> str:
    """A class name as part of a file name: safe characters only, and short."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")[:60] or "class"
