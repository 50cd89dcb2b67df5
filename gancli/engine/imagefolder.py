"""Usage: data = read_image_folder(Path("pets"), 64, 3)

`folder:PATH`: any folder of pictures. Sub-folders become classes (so conditional presets
work on them); every image is converted to grey or RGB and centre-cropped and resized to
a square. Unreadable or truncated files, and pictures over Pillow's decompression-bomb
limit, are skipped and reported (each kind on one line, naming the first few files), never
fatal.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from gancli.engine.data import FOLDER_PREFIX, ImageSet
from gancli.engine.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
SHOWN_BAD = 3  # unreadable files named in the report; the rest are counted


def _class_of(path: Path, root: Path) -> str | None:
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else None


def read_image_folder(root: Path, size: int, channels: int) -> ImageSet:
    """The folder's images (uint8, N x channels x size x size) and labels, split "all", with
    notes for the user and the number of files skipped."""
    if not root.is_dir():
        raise DataError(f"folder:{root}: not a directory")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"folder:{root}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    notes: list[str] = []
    classes = sorted({c for p in files if (c := _class_of(p, root)) is not None})
    if classes:
        loose = [p for p in files if _class_of(p, root) is None]
        if loose:
            notes.append(
                f"folder:{root}: ignored {len(loose)} image(s) outside the class sub-folders"
            )
        files = [p for p in files if _class_of(p, root) is not None]
    index = {name: i for i, name in enumerate(classes)}
    mode = "L" if channels == 1 else "RGB"
    arrays, labels, bad, huge = [], [], [], []
    for path in files:
        try:
            with warnings.catch_warnings():
                # Pillow only warns between its limit and twice it: refuse those too.
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as img:
                    img.load()
                    picture = ImageOps.exif_transpose(img).convert(mode)
            picture = ImageOps.fit(picture, (size, size), Image.Resampling.LANCZOS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            huge.append(path)
            continue
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
            bad.append(path)
            continue
        array = np.asarray(picture, dtype=np.uint8)
        arrays.append(array[None] if channels == 1 else array.transpose(2, 0, 1))
        class_name = _class_of(path, root)
        labels.append(index[class_name] if class_name is not None else 0)
    if bad:
        notes.append(f"skipped {len(bad)} unreadable image(s): {_named(bad)}")
    if huge:
        limit = f"{(Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f} megapixels"
        notes.append(
            f"skipped {len(huge)} image(s) over {limit} (Pillow's limit against "
            f"decompression bombs): {_named(huge)}"
        )
    if not arrays:
        raise DataError(
            f"folder:{root}: none of the {len(files)} image files could be read"
            + (f" ({'; '.join(notes)})" if notes else "")
        )
    class_names = tuple(classes) if classes else (root.name or "images",)
    images = torch.from_numpy(np.stack(arrays))
    targets = torch.tensor(labels, dtype=torch.long)
    skipped = len(bad) + len(huge)
    return ImageSet(
        f"{FOLDER_PREFIX}{root}", "all", str(root), images, targets, class_names, notes, skipped
    )


def _named(paths: list[Path]) -> str:
    """The first SHOWN_BAD paths, and how many more."""
    more = f" and {len(paths) - SHOWN_BAD} more" if len(paths) > SHOWN_BAD else ""
    return ", ".join(str(p) for p in paths[:SHOWN_BAD]) + more
