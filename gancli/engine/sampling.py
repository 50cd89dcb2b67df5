"""Usage: sample(SampleJob(run="runs/cgan-digits-001", classes=("7",), n=64))

`gancli sample`: a trained generator's images written as a PNG grid, a folder of PNGs or
a .npz of arrays, every limit checked before the first image is made.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gancli.engine.errors import ConfigError
from gancli.engine.files import atomic_write, check_output_file, check_target, check_writable
from gancli.engine.generator import (
    SampleRequest,
    StageReport,
    TrainedGenerator,
    check_request,
    default_nrow,
    load_generator,
    parse_labels,
    sample_batches,
)
from gancli.engine.grids import (
    check_scale,
    check_scale_factor,
    grid_image,
    grid_size,
    to_pil,
    upscale,
)
from gancli.engine.limits import check_disk, check_memory
from gancli.engine.runs import GENERATED, next_free_path, resolve_checkpoint, runs_root
from gancli.engine.runtime import use_device


@dataclass(frozen=True)
class SampleJob:
    """What `gancli sample` is asked for, as typed."""

    run: str | None = None  # run folder or checkpoint (None: the latest run under `runs`)
    runs: str | None = None  # runs root (None: $GANCLI_RUNS_DIR or ./runs)
    n: int = 64  # images to generate
    classes: tuple[str, ...] = ()  # '7', 'Sneaker', '0-9', 'all' (none: every class, if any)
    seed: int = 0
    truncation: float | None = None  # redraw noise entries with |z| > T
    batch_size: int = 500  # images per forward pass
    out: str | None = None  # .png, .npz or folder (None: RUN/generated/sample-NNN.png)
    nrow: int | None = None  # images per grid row
    scale: int = 1  # each pixel as scale x scale (grids and folders)
    force: bool = False  # replace an existing out
    ema: bool | None = None  # the EMA generator (None: if the run kept one)
    device: str = "auto"


def sample(job: SampleJob, progress: StageReport | None = None) -> dict[str, Any]:
    """`gancli sample`: generate and write, then say what was written and from what: a .png
    grid, a .npz (images uint8 NCHW, labels int64) or a folder.

    No --out: a grid at the first free RUN/generated/sample-NNN.png. An existing --out is
    replaced only with --force (and, for a folder, only gancli's own image names), and is
    created exclusively otherwise: of two commands writing one name, one fails. --scale
    enlarges a grid or each PNG of a folder (nearest neighbour); a .npz keeps the images as
    the generator made them, for further computation. The result names the classes drawn.
    """
    check_scale_factor(job.scale)
    run, checkpoint = resolve_checkpoint(job.run, runs_root(job.runs))
    trained = load_generator(checkpoint, use_device(job.device), job.ema)
    labels = tuple(parse_labels(list(job.classes), trained.class_names))
    request = SampleRequest(job.n, labels, job.seed, job.truncation, job.batch_size)
    request = check_request(trained, request)
    default_dir = (run.path if run else Path.cwd()) / GENERATED
    out = Path(job.out) if job.out is not None else None
    # The default name is claimed only once the checks pass: a refusal leaves nothing.
    placeholder = default_dir / "sample-NNN.png"
    check_output(
        trained, request, out or placeholder, job.nrow, job.force or out is None, job.scale
    )
    if out is not None:
        result = _write(trained, request, out, job.nrow, job.force, job.scale, progress)
    else:
        claimed = next_free_path(default_dir, "sample", ".png")  # an empty placeholder
        try:
            result = _write(trained, request, claimed, job.nrow, True, job.scale, progress)
        except BaseException:  # failed or interrupted: give the name back
            claimed.unlink(missing_ok=True)
            raise
    result.update(
        checkpoint=str(checkpoint),
        epoch=trained.epoch,
        ema=trained.uses_ema,
        seed=job.seed,
        class_count=len(trained.class_names),
    )
    return result


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
    `request` is as check_request returned it (sample passes it so)."""
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
    check_output_file(out, (".png", ".npz"), ".png or .npz", force)
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


def _grid_nrow(request: SampleRequest, nrow: int | None) -> int:
    """Columns of a grid: --nrow or the default, never more than there are images."""
    return min(nrow or default_nrow(request), request.n)


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
