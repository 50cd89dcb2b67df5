"""Usage: write_progress_gif(sorted(run.samples.glob("epoch_*.png")), run.progress_gif)

Per-epoch grids -> an animated GIF with the epoch written on each frame.
"""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

CAPTION_HEIGHT = 14


def _caption(frame: Image.Image, text: str) -> Image.Image:
    framed = Image.new("RGB", (frame.width, frame.height + CAPTION_HEIGHT), (0, 0, 0))
    framed.paste(frame.convert("RGB"), (0, CAPTION_HEIGHT))
    ImageDraw.Draw(framed).text((3, 1), text, fill=(255, 255, 255), font=ImageFont.load_default())
    return framed


def write_progress_gif(
    grids: list[Path], out: Path, frame_ms: int = 500, hold_last_ms: int = 2000
) -> int:
    """Write one captioned frame per grid (the last one held longer); returns the frame count."""
    if not grids:
        return 0
    frames = []
    for path in grids:
        match = re.search(r"epoch_(\d+)", path.stem)
        label = f"epoch {int(match.group(1))}" if match else path.stem
        with Image.open(path) as img:
            frames.append(_caption(img, label))
    durations = [frame_ms] * (len(frames) - 1) + [hold_last_ms]
    frames[0].save(
        out, save_all=True, append_images=frames[1:], duration=durations, loop=0, optimize=False
    )
    return len(frames)
