"""Usage: images, labels, fonts = generate_digits(60_000, seed=0)

`digits`: a labelled, handwriting-like digit set drawn on the fly, so that gancli trains
and is tested with nothing to download. Each digit is rendered with Pillow from every
font found (Pillow's bundled font at least) at several stroke widths, then every sample
gets its own slant, rotation, scale, shift and smooth elastic distortion, and is
resampled to 28x28, white on black like MNIST. The same seed and fonts give the same set.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

SIDE = 28
CANVAS = 64  # templates are drawn at this side and resampled down to SIDE
GLYPH_BOX = 46  # the glyph's longer side in a template: 20/28 of the image, as in MNIST
STROKES = (0, 1, 2)
FONT_DIRS = (
    "/usr/share/fonts",
    "/usr/local/share/fonts",
    "~/.fonts",
    "~/.local/share/fonts",
    "/Library/Fonts",
    "/System/Library/Fonts",
    "C:/Windows/Fonts",
)
MAX_FONTS = 16
BATCH = 4096

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def find_fonts() -> tuple[str, ...]:
    """Up to MAX_FONTS TrueType/OpenType files that draw ten distinct digits, sorted by path."""
    paths: list[str] = []
    for base in FONT_DIRS:
        root = Path(os.path.expanduser(base))
        if root.is_dir():
            paths += sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in (".ttf", ".otf"))
    usable = []
    for path in paths:
        try:
            font = ImageFont.truetype(path, 32)
            glyphs = {_render(font, str(d), 0).tobytes() for d in range(10)}
        except (OSError, ValueError):
            continue
        if len(glyphs) == 10:  # symbol fonts draw nothing or the same box for every digit
            usable.append(path)
        if len(usable) == MAX_FONTS:
            break
    return tuple(usable)


def _render(font: Font, text: str, stroke: int) -> Image.Image:
    img = Image.new("L", (CANVAS * 2, CANVAS * 2), 0)
    ImageDraw.Draw(img).text(
        (CANVAS, CANVAS),
        text,
        font=font,
        fill=255,
        anchor="mm",
        stroke_width=stroke,
        stroke_fill=255,
    )
    return img


def _template(font: Font, digit: int, stroke: int) -> np.ndarray:
    """One glyph scaled into GLYPH_BOX and centred by its centre of mass on a CANVAS square."""
    img = _render(font, str(digit), stroke)
    box = img.getbbox()
    if box is None:
        return np.zeros((CANVAS, CANVAS), dtype=np.float32)
    glyph = img.crop(box)
    scale = GLYPH_BOX / max(glyph.size)
    glyph = glyph.resize(
        (max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))),
        Image.Resampling.LANCZOS,
    )
    array = np.asarray(glyph, dtype=np.float32) / 255.0
    ys, xs = np.indices(array.shape)
    mass = array.sum()
    cy, cx = (ys * array).sum() / mass, (xs * array).sum() / mass
    out = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    top, left = round(CANVAS / 2 - cy), round(CANVAS / 2 - cx)
    h, w = array.shape
    t0, l0 = max(0, top), max(0, left)
    t1, l1 = min(CANVAS, top + h), min(CANVAS, left + w)
    out[t0:t1, l0:l1] = array[t0 - top : t1 - top, l0 - left : l1 - left]
    return out


@functools.lru_cache(maxsize=2)
def _templates(fonts: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(templates (T, 1, CANVAS, CANVAS) float in [0, 1], digit of each (T,))."""
    sources: list[Font] = [ImageFont.load_default(size=GLYPH_BOX)]
    sources += [ImageFont.truetype(path, GLYPH_BOX) for path in fonts]
    arrays, digits = [], []
    for font in sources:
        for digit in range(10):
            for stroke in STROKES:
                arrays.append(_template(font, digit, stroke))
                digits.append(digit)
    return torch.from_numpy(np.stack(arrays)).unsqueeze(1), torch.tensor(digits)


def _random_affine(n: int, gen: torch.Generator) -> torch.Tensor:
    """(n, 2, 3) maps from output to template coordinates: slant, rotation, scale, shift."""

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(n, generator=gen) * (high - low) + low

    angle = uniform(-14, 14) * math.pi / 180
    slant = uniform(-0.35, 0.25)  # handwriting leans right more often than left
    sx, sy = uniform(0.8, 1.2), uniform(0.85, 1.15)
    tx, ty = uniform(-0.1, 0.1), uniform(-0.1, 0.1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Output -> template: inverse scale, then shear, then rotation, then shift.
    a = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
    shear = torch.zeros(n, 2, 2)
    shear[:, 0, 0], shear[:, 0, 1], shear[:, 1, 1] = 1, slant, 1
    scale = torch.diag_embed(torch.stack([1 / sx, 1 / sy], 1))
    # The template is CANVAS wide, the glyph fills GLYPH_BOX of it: zoom so the glyph
    # covers 20 of the 28 output pixels.
    zoom = (GLYPH_BOX / CANVAS) / (20 / SIDE)
    linear = a @ shear @ scale * zoom
    return torch.cat([linear, torch.stack([tx, ty], 1).unsqueeze(2)], 2)


def _elastic(grid: torch.Tensor, gen: torch.Generator, strength: float = 0.08) -> torch.Tensor:
    """Add a smooth random displacement (a 4x4 field upsampled) to a sampling grid."""
    n = grid.shape[0]
    coarse = (torch.rand(n, 2, 4, 4, generator=gen) * 2 - 1) * strength
    field = F.interpolate(coarse, size=grid.shape[1:3], mode="bicubic", align_corners=True)
    return grid + field.permute(0, 2, 3, 1)


@functools.lru_cache(maxsize=4)
def generate_digits(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """(uint8 images (n, 1, 28, 28), int64 labels (n,), font files used); classes balanced."""
    fonts = find_fonts()
    templates, template_digits = _templates(fonts)
    # Every digit has the same number of templates: row d of `table` lists digit d's.
    table = torch.stack([torch.nonzero(template_digits == d).flatten() for d in range(10)])
    gen = torch.Generator().manual_seed(seed)
    labels = (torch.arange(n) % 10)[torch.randperm(n, generator=gen)]
    images = torch.empty(n, 1, SIDE, SIDE, dtype=torch.uint8)
    for start in range(0, n, BATCH):
        y = labels[start : start + BATCH]
        pick = table[y, torch.randint(table.shape[1], (len(y),), generator=gen)]
        theta = _random_affine(len(y), gen)
        grid = F.affine_grid(theta, [len(y), 1, SIDE, SIDE], align_corners=False)
        grid = _elastic(grid, gen)
        out = F.grid_sample(templates[pick], grid, mode="bilinear", align_corners=False)
        gain = torch.rand(len(y), 1, 1, 1, generator=gen) * 0.5 + 1.0  # pen pressure
        images[start : start + BATCH] = (out * gain).clamp(0, 1).mul(255).round().to(torch.uint8)
    return images, labels, fonts
