"""Usage: save_grid(generate(G, noise, labels), path, nrow)

Pictures of a generator's output: the per-epoch grids' fixed inputs, batched generation in
eval mode, grids with class names per row, and whole-pixel enlarging within Pillow's limits.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from gancli.engine.clusters import Clusters, draw
from gancli.engine.config import ModelConfig, TrainingConfig
from gancli.engine.data import ImageSet, to_uint8
from gancli.engine.errors import ConfigError
from gancli.engine.files import atomic_write
from gancli.engine.limits import human_bytes

SAMPLES_PER_CLASS = 10  # columns of a conditional grid: one row per class


def fixed_inputs(
    model: ModelConfig, training: TrainingConfig, num_classes: int, clusters: Clusters | None
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(noise, labels, nrow) for the per-epoch grids: conditional grids get one row per
    class; a self-conditioned model's grid draws its clusters in their shares."""
    gen = torch.Generator().manual_seed(training.seed + 0x5EED)
    nrow = math.ceil(math.sqrt(training.grid_size))
    if model.conditional:
        labels = torch.arange(num_classes).repeat_interleave(SAMPLES_PER_CLASS)
        nrow = SAMPLES_PER_CLASS
    elif clusters is not None:
        labels = draw(clusters.prior, training.grid_size, gen)
    else:
        labels = torch.zeros(training.grid_size, dtype=torch.long)
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
    width, height = grid_size(n, nrow, (c, h, w), padding)
    canvas = torch.zeros(c, height, width, dtype=torch.uint8)
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


def grid_size(
    n: int, nrow: int, image_shape: tuple[int, int, int], padding: int = 2
) -> tuple[int, int]:
    """(width, height) in pixels of grid_image's grid of n images, nrow per row."""
    _, h, w = image_shape
    rows = math.ceil(n / nrow)
    return nrow * (w + padding) + padding, rows * (h + padding) + padding


def real_tiles(data: ImageSet, labels: torch.Tensor, conditional: bool) -> torch.Tensor:
    """Real images laid out like the epoch grids of `labels`: in a conditional grid, each
    image of the class its place shows (blank for a class a --limit left out)."""
    images = data.images.cpu()
    if not conditional:
        return images[: len(labels)]
    tiles = torch.zeros(len(labels), *data.image_shape, dtype=torch.uint8)
    seen: Counter[int] = Counter()
    for i, label in enumerate(labels.tolist()):
        matches = (data.labels.cpu() == label).nonzero().flatten()
        if len(matches):
            tiles[i] = images[int(matches[seen[label] % len(matches)])]
        seen[label] += 1
    return tiles
