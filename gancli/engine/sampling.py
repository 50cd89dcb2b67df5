"""Usage: save_grid(generate(generator, z, labels), path, nrow=10)

Turning generators into pictures: fixed noise for the per-epoch grids, batched
generation in eval mode, and image grids written as PNG.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from gancli.engine.data import to_uint8

SAMPLES_PER_CLASS = 10  # columns of a conditional grid: one row per class


def fixed_inputs(
    z_dim: int, grid_size: int, num_classes: int, conditional: bool, seed: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(noise, labels, nrow) for the per-epoch grids; conditional grids get one row per class."""
    gen = torch.Generator().manual_seed(seed + 0x5EED)
    if conditional:
        labels = torch.arange(num_classes).repeat_interleave(SAMPLES_PER_CLASS)
        nrow = SAMPLES_PER_CLASS
    else:
        labels = torch.zeros(grid_size, dtype=torch.long)
        nrow = math.ceil(math.sqrt(grid_size))
    noise = torch.randn(labels.shape[0], z_dim, generator=gen)
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


def grid_image(images: torch.Tensor, nrow: int, padding: int = 2) -> Image.Image:
    """uint8 images (N, C, H, W) -> one PIL image, `nrow` per row, on a dark background."""
    n, c, h, w = images.shape
    rows = math.ceil(n / nrow)
    canvas = torch.zeros(c, rows * (h + padding) + padding, nrow * (w + padding) + padding)
    canvas = canvas.to(torch.uint8)
    for i in range(n):
        top, left = padding + (i // nrow) * (h + padding), padding + (i % nrow) * (w + padding)
        canvas[:, top : top + h, left : left + w] = images[i]
    array = canvas.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if c == 1 else array, mode="L" if c == 1 else "RGB")


def save_grid(images: torch.Tensor, path: Path, nrow: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    grid_image(images, nrow).save(path)
