"""DiffAugment: each transformation does what it says, per image, and lets gradients through."""

from __future__ import annotations

import pytest
import torch

from gancli.engine.augment import FILL, Augment, color, cutout, translation
from gancli.engine.errors import ConfigError


def distinct_images(n: int = 16, side: int = 12) -> torch.Tensor:
    """Images with every pixel different (and none at the fill value)."""
    return torch.linspace(-0.9, 0.9, n * side * side).view(n, 1, side, side)


def shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    out = torch.full_like(image, FILL)
    h, w = image.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        ..., max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
    ]
    return out


def test_translation_shifts_each_image_by_at_most_an_eighth() -> None:
    torch.manual_seed(0)
    x = distinct_images(side=16).requires_grad_(True)  # 16 px: shifts of up to 2 px
    out = translation(x)
    offsets = []
    for image, result in zip(x.detach(), out.detach(), strict=True):
        found = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(result, shifted(image, dy, dx))
        ]
        assert len(found) == 1
        offsets.append(found[0])
    assert len(set(offsets)) > 3  # per image, not one shift for the batch
    out.sum().backward()
    # every input pixel still in view passes its gradient once; pixels pushed out, none
    assert x.grad is not None and set(x.grad.unique().tolist()) <= {0.0, 1.0}


def test_cutout_blanks_one_square_of_half_the_side() -> None:
    torch.manual_seed(1)
    x = distinct_images(n=32).requires_grad_(True)
    out = cutout(x)
    blank = out.detach() == FILL
    for i in range(len(x)):
        rows, cols = blank[i, 0].any(1).nonzero(), blank[i, 0].any(0).nonzero()
        assert 1 <= len(rows) <= 6 and 1 <= len(cols) <= 6  # at most 6 x 6 on 12 px
        # a full rectangle: everything inside the rows and columns it spans is blank
        assert blank[i, 0, rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
        assert blank[i].sum() == len(rows) * len(cols)
    assert torch.equal(out.detach()[~blank], x.detach()[~blank])
    out.sum().backward()
    assert x.grad is not None and torch.equal(x.grad, (~blank).float())


def test_color_moves_brightness_and_contrast_within_range() -> None:
    torch.manual_seed(2)
    x = distinct_images(n=64)
    out = color(x)
    shift = out.mean(dim=(1, 2, 3)) - x.mean(dim=(1, 2, 3))
    scale = (out - out.mean(dim=(1, 2, 3), keepdim=True)).std(dim=(1, 2, 3)) / (
        x - x.mean(dim=(1, 2, 3), keepdim=True)
    ).std(dim=(1, 2, 3))
    assert shift.abs().max() <= 0.5 + 1e-5 and shift.std() > 0.1
    assert scale.min() >= 0.5 - 1e-4 and scale.max() <= 1.5 + 1e-4 and scale.std() > 0.1


def test_policies_and_their_order() -> None:
    assert not Augment("none") and not Augment("")
    both = Augment("cutout, translation")
    assert [f.__name__ for f in both.transforms] == ["translation", "cutout"]
    x = distinct_images()
    assert torch.equal(Augment("none")(x), x)
    with pytest.raises(ConfigError, match="unknown augmentation 'flip'"):
        Augment("translation,flip")
