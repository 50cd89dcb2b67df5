"""Usage: augment = Augment(("translation", "cutout")); d_input = augment(images)

Differentiable augmentation of everything D sees (DiffAugment, Zhao et al. 2020): the
same random transformations are applied to real and generated images, in D's steps and
in G's, and G's gradient flows back through them. D then cannot memorise a small training
set, and because fakes are transformed exactly like reals, G is not taught to draw the
transformations themselves (a "leak"). Policies as in the paper, for images in [-1, 1]:

- translation: shift by up to 1/8 of the side in each direction, per image;
- cutout: blank one square of half the side at a random place, per image;
- color: brightness, saturation (RGB only) and contrast, per image.

Pixels that a shift or cutout uncovers are set to -1, the black background of the
MNIST-like datasets, rather than the paper's 0 (mid-grey there).
"""

from __future__ import annotations

import torch

from gancli.engine.config import augment_policy

FILL = -1.0  # value of uncovered pixels: black in [-1, 1]
SHIFT_RATIO = 0.125  # translation: largest shift as a fraction of the side
CUTOUT_RATIO = 0.5  # cutout: side of the blanked square as a fraction of the image side


def translation(x: torch.Tensor) -> torch.Tensor:
    """Each image shifted by whole pixels, at most SHIFT_RATIO of its side each way."""
    n, _, h, w = x.shape
    max_dy, max_dx = int(h * SHIFT_RATIO + 0.5), int(w * SHIFT_RATIO + 0.5)
    dy = torch.randint(-max_dy, max_dy + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-max_dx, max_dx + 1, (n, 1, 1), device=x.device)
    # Read pixel (i - dy, j - dx) of the image padded by one FILL pixel; reads that fall
    # outside the image land on the padding.
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), value=FILL)
    rows = (torch.arange(h, device=x.device).view(1, h, 1) - dy + 1).clamp_(0, h + 1)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) - dx + 1).clamp_(0, w + 1)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    # advanced indexing of (N, H+2, W+2, C) -> (N, H, W, C)
    shifted = padded.permute(0, 2, 3, 1)[batch, rows, cols]
    return shifted.permute(0, 3, 1, 2).contiguous(memory_format=_layout(x))


def cutout(x: torch.Tensor) -> torch.Tensor:
    """Each image with one square of CUTOUT_RATIO of its side set to FILL; the square's
    centre is anywhere in the image, so it may be cut off by the border."""
    n, _, h, w = x.shape
    size_y, size_x = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    top = torch.randint(0, h + 1 - size_y % 2, (n, 1, 1), device=x.device) - size_y // 2
    left = torch.randint(0, w + 1 - size_x % 2, (n, 1, 1), device=x.device) - size_x // 2
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + size_y) & (cols >= left) & (cols < left + size_x)
    return torch.where(inside.unsqueeze(1), torch.full_like(x, FILL), x)


def color(x: torch.Tensor) -> torch.Tensor:
    """Brightness +U(-0.5, 0.5), saturation x U(0, 2) (RGB only), contrast x U(0.5, 1.5)."""
    n = x.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) * (high - low) + low

    x = x + uniform(-0.5, 0.5)
    if x.shape[1] > 1:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * uniform(0.0, 2.0) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * uniform(0.5, 1.5) + mean


TRANSFORMS = {"color": color, "translation": translation, "cutout": cutout}


class Augment:
    """The configured transformations, applied in the paper's order (color, translation,
    cutout) whatever order the config lists them in; no policy: the identity."""

    def __init__(self, policy: tuple[str, ...] | str):
        names = augment_policy(policy) if isinstance(policy, str) else policy
        self.transforms = [fn for name, fn in TRANSFORMS.items() if name in names]

    def __bool__(self) -> bool:
        return bool(self.transforms)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        for transform in self.transforms:
            images = transform(images)
        return images


def _layout(x: torch.Tensor) -> torch.memory_format:
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1
    return torch.channels_last if channels_last else torch.contiguous_format
