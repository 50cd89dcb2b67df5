"""Usage: animate(AnimateJob(run="runs/cgan-digits-001", interpolate=True))

Animations: the per-epoch grids as a captioned GIF (or MP4), and walks through a trained
generator's latent space (spherical interpolation between random points) or, for
conditional models, across its classes at fixed noise.
"""

from __future__ import annotations

import importlib.util
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from gancli.engine.clusters import draw
from gancli.engine.errors import CheckpointError, ConfigError
from gancli.engine.files import atomic_write, check_output_file, check_writable
from gancli.engine.generator import TrainedGenerator, load_generator, noise_chunks
from gancli.engine.grids import check_scale, check_scale_factor, generate, grid_image, upscale
from gancli.engine.limits import check_memory
from gancli.engine.runs import RunDir, latest_run, runs_root

CAPTION_HEIGHT = 14


@dataclass(frozen=True)
class AnimateJob:
    """What `gancli animate` is asked for, as typed."""

    run: str | None = None  # run folder (None: the latest run under `runs`)
    runs: str | None = None  # runs root (None: $GANCLI_RUNS_DIR or ./runs)
    out: str | None = None  # .gif or .mp4 (None: RUN/progress.gif or RUN/interpolation.gif)
    fps: float | None = None  # frames per second (None: 2, walks 12)
    every: int = 1  # every K-th epoch grid
    loop: int = 0  # GIF repeats; 0 loops forever
    hold_last: float = 2.0  # extra seconds on the last frame of a progress animation
    interpolate: bool = False  # a latent walk of the newest generator instead
    across_classes: bool = False  # a walk across the classes at fixed noise
    seed: int = 0  # of the walk's keyframes
    scale: int = 1  # each pixel as scale x scale
    force: bool = False  # replace an existing out (the run's own GIFs always are)


def animate(job: AnimateJob) -> dict[str, object]:
    """`gancli animate`: the run's progress, or a walk through its generator's latent space."""
    check_scale_factor(job.scale)
    run = RunDir.open(job.run) if job.run else latest_run(runs_root(job.runs))
    out = Path(job.out) if job.out else None
    replace = job.force or out is None  # the run's own progress.gif / interpolation.gif
    if not (job.interpolate or job.across_classes):
        fps = job.fps or 2.0
        return write_progress(run, out, fps, job.every, job.loop, job.hold_last, replace, job.scale)
    target = out or run.path / "interpolation.gif"
    check_animation(target, job.loop, 0, replace)
    trained = load_generator(run.newest_checkpoint()[0])
    frames = latent_walk(trained, seed=job.seed, across_classes=job.across_classes)
    write_animation(frames, target, job.fps or 12.0, job.loop, 0, replace, job.scale)
    return {"out": str(target), "frames": len(frames), "scale": job.scale}


def caption(frame: Image.Image, text: str) -> Image.Image:
    """The frame with a dark strip on top holding `text`."""
    framed = Image.new("RGB", (frame.width, frame.height + CAPTION_HEIGHT), (0, 0, 0))
    framed.paste(frame.convert("RGB"), (0, CAPTION_HEIGHT))
    ImageDraw.Draw(framed).text((3, 1), text, fill=(255, 255, 255), font=ImageFont.load_default())
    return framed


def epoch_grids(run: RunDir, every: int = 1) -> list[tuple[int, Path]]:
    """(epoch, grid path) for every `every`-th epoch; the last epoch is always included."""
    grids = []
    for path in sorted(run.samples.glob("epoch_*.png")):
        match = re.fullmatch(r"epoch_(\d+)", path.stem)
        if match:
            grids.append((int(match.group(1)), path))
    if not grids:
        return []
    picked = [g for i, g in enumerate(grids) if i % every == 0]
    return picked if picked[-1] == grids[-1] else [*picked, grids[-1]]


GIF_FRAME_MAX = 655.35  # seconds: a GIF frame's delay is 16 bits of centiseconds
GIF_LOOPS_MAX = 65535
GIF_SIDE_MAX = 65535  # pixels: a GIF stores each side in 16 bits
# The `video` extra, module -> package: not installed with gancli, for GIFs need neither.
VIDEO_MODULES = {"imageio": "imageio", "imageio_ffmpeg": "imageio-ffmpeg"}


def check_animation(out: Path, loop: int = 0, hold_last: float = 0.0, replace: bool = True) -> None:
    """Refuse, before any frame is made, an animation that cannot be written to `out`."""
    check_output_file(out, (".gif", ".mp4"), ".gif or .mp4", replace)
    if loop > GIF_LOOPS_MAX:
        raise ConfigError(f"--loop {loop}: at most {GIF_LOOPS_MAX} (0 loops forever)")
    if hold_last > GIF_FRAME_MAX - 1:
        raise ConfigError(f"--hold-last {hold_last:g}: at most {GIF_FRAME_MAX - 1:g} seconds")
    if out.suffix.lower() == ".mp4":
        missing = [
            package
            for module, package in VIDEO_MODULES.items()
            if importlib.util.find_spec(module) is None
        ]
        if missing:
            raise ConfigError(
                f"MP4 needs imageio and imageio-ffmpeg ({', '.join(missing)} not installed): "
                "pip install 'gancli[video]'; a .gif needs nothing more"
            )
    check_writable(out.parent, "--out")


def scale_frames(frames: list[Image.Image], scale: int, out: Path) -> list[Image.Image]:
    """The frames enlarged `scale` times (nearest neighbour), refused with the size it would
    take when a frame would be too large to read back or all of them too large to hold."""
    width, height = max(f.width for f in frames), max(f.height for f in frames)
    pixels = check_scale(scale, width, height, "each frame")
    if scale == 1:
        return frames
    if out.suffix.lower() == ".gif" and max(width, height) * scale > GIF_SIDE_MAX:
        raise ConfigError(
            f"--scale {scale}: a frame would be {width * scale:,} x {height * scale:,} px; "
            f"a GIF allows at most {GIF_SIDE_MAX:,} px a side; lower --scale"
        )
    # Every frame is held as RGB until the file is written, and the GIF encoder keeps a
    # palette copy of each: about 4 bytes a pixel.
    check_memory(
        4 * pixels * len(frames),
        f"--scale {scale}: {len(frames)} frames of {width * scale:,} x {height * scale:,} px",
        "lower --scale, or use fewer frames (--every)",
    )
    return [upscale(frame, scale) for frame in frames]


def write_animation(
    frames: list[Image.Image],
    out: Path,
    fps: float,
    loop: int = 0,
    hold_last: float = 2.0,
    replace: bool = True,
    scale: int = 1,
) -> None:
    """GIF (Pillow) or MP4 (imageio's ffmpeg plugin), the last frame shown `hold_last` s longer,
    every frame enlarged `scale` times, to an `out` that check_animation accepted. With
    `replace=False` an existing `out` is never replaced (ConfigError)."""
    if not frames:
        raise ConfigError("nothing to animate: no frames")
    frames = scale_frames(frames, scale, out)
    with atomic_write(out, replace=replace) as tmp:
        if out.suffix.lower() == ".gif":
            frame_ms = max(20, round(1000 / fps))
            durations = [frame_ms] * (len(frames) - 1) + [frame_ms + round(hold_last * 1000)]
            frames[0].save(
                tmp, save_all=True, append_images=frames[1:], duration=durations, loop=loop
            )
        else:
            _write_mp4(frames, tmp, fps, hold_last)


def _write_mp4(frames: list[Image.Image], out: Path, fps: float, hold_last: float) -> None:
    import imageio.v2 as imageio
    import numpy as np

    # H.264 wants even sides: pad with black rather than rescale the pixels.
    width, height = frames[0].width + frames[0].width % 2, frames[0].height + frames[0].height % 2
    held = [*frames, *[frames[-1]] * max(0, round(hold_last * fps))]
    with imageio.get_writer(out, fps=fps, codec="libx264", macro_block_size=1) as writer:
        for frame in held:
            canvas = Image.new("RGB", (width, height))
            canvas.paste(frame.convert("RGB"), (0, 0))
            writer.append_data(np.asarray(canvas))  # type: ignore[attr-defined]


def write_progress(
    run: RunDir,
    out: Path | None = None,
    fps: float = 2.0,
    every: int = 1,
    loop: int = 0,
    hold_last: float = 2.0,
    replace: bool = True,
    scale: int = 1,
) -> dict[str, object]:
    """The run's epoch grids as one animation with 'epoch N' on each frame, enlarged
    `scale` times (the caption with them, so it stays legible)."""
    target = out or run.progress_gif
    check_animation(target, loop, hold_last, replace)
    grids = epoch_grids(run, every)
    if not grids:
        raise ConfigError(f"{run.path} has no samples/epoch_*.png grids yet")
    frames = [caption(read_grid(path), f"epoch {epoch}") for epoch, path in grids]
    write_animation(frames, target, fps, loop, hold_last, replace, scale)
    return {
        "out": str(target),
        "frames": len(frames),
        "epochs": [e for e, _ in grids],
        "scale": scale,
    }


def read_grid(path: Path) -> Image.Image:
    """An epoch grid, read whole; CheckpointError naming it when it is not a whole image
    (a directory, a truncated or foreign file, an image too large to be a grid)."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc).split(";")[0][:100]
        raise CheckpointError(
            f"{path} is not a readable image ({reason}); delete it to animate the rest"
        ) from None


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between rows of a and b (White 2016, Sampling Generative Nets)."""
    a_unit, b_unit = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    omega = torch.acos((a_unit * b_unit).sum(1).clamp(-1.0, 1.0)).unsqueeze(1)
    sin_omega = torch.sin(omega)
    linear = (1.0 - t) * a + t * b
    curved = (torch.sin((1.0 - t) * omega) * a + torch.sin(t * omega) * b) / sin_omega.clamp_min(
        1e-8
    )
    return torch.where(sin_omega.abs() < 1e-6, linear, curved)


def latent_walk(
    trained: TrainedGenerator,
    seed: int = 0,
    keyframes: int = 5,
    steps: int = 12,
    walkers: int = 8,
    across_classes: bool = False,
) -> list[Image.Image]:
    """Frames of a looping walk.

    Unconditional: a grid of `walkers` x `walkers` independent walks through z.
    Conditional: one row per class, `walkers` columns; each column's z walks and every row
    shares it, so the style moves while the class stays. With `across_classes`, z stays
    fixed and the label glides from each class to the next.
    """
    z_dim = trained.config.model.z_dim
    num_classes = len(trained.class_names)
    if across_classes and not trained.conditional:
        raise ConfigError("--across-classes needs a conditional model")
    columns = walkers if trained.conditional else walkers * walkers
    points = next(noise_chunks((keyframes + 1) * columns, z_dim, seed)).view(
        keyframes + 1, columns, z_dim
    )
    # a frame's labels: one row per class, or for a self-conditioned model one cluster per
    # walker, drawn in its share
    if trained.conditional:
        labels = torch.arange(num_classes).repeat_interleave(columns)
    elif trained.cluster_prior is not None:
        labels = draw(trained.cluster_prior, columns, torch.Generator().manual_seed(seed))
    else:
        labels = torch.zeros(columns, dtype=torch.long)
    frames = []
    if across_classes:
        z = points[0]
        eye = torch.eye(num_classes)
        for c in range(num_classes):
            for s in range(steps):
                t = s / steps
                label = (1 - t) * eye[c] + t * eye[(c + 1) % num_classes]
                images = generate(trained.model, z, label.expand(columns, -1).contiguous())
                frames.append(
                    caption(grid_image(images, walkers), f"class {trained.class_names[c]}")
                )
        return frames
    nrow = columns if trained.conditional else math.isqrt(columns)
    rows = list(trained.class_names) if trained.conditional else None
    copies = len(labels) // columns  # every row of a conditional grid walks the same z
    for k in range(keyframes):
        start, end = points[k], points[(k + 1) % keyframes]
        for s in range(steps):
            z = slerp(start, end, s / steps).repeat(copies, 1)
            frames.append(grid_image(generate(trained.model, z, labels), nrow, row_labels=rows))
    return frames
