"""Usage: python docs/make_images.py   (about 8 minutes on 2 CPU cores)

Makes the README's pictures in docs/images/ from a real run, so that they can be made
again: the README's command 1 (`gancli train --preset cgan-digits --epochs 1`, gancli's
built-in digits, nothing to download), then the same run resumed to 3 epochs (resume is
bitwise exact, so its first epoch stays command 1's), and on it `gancli sample --digit 7`,
`gancli animate` and `gancli animate --interpolate`. Each command is the CLI's own, run in
a temporary folder; only the pictures are kept.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

IMAGES = Path(__file__).resolve().parent / "images"


def gancli(*args: str, cwd: Path) -> None:
    print("$ gancli", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "gancli", *args], cwd=cwd, check=True)


def main() -> None:
    IMAGES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as name:
        work = Path(name)
        run = "runs/cgan-digits-001"
        gancli("train", "--preset", "cgan-digits", "--epochs", "1", cwd=work)
        shutil.copy(work / run / "samples" / "epoch_0001.png", IMAGES / "first-epoch.png")
        gancli("train", "--resume", run, "--epochs", "3", cwd=work)
        gancli("sample", run, "--digit", "7", "-n", "64", "--scale", "2",
               "--out", str(IMAGES / "sevens.png"), "--force", cwd=work)  # fmt: skip
        gancli("animate", run, "--scale", "2", "--hold-last", "2",
               "--out", str(IMAGES / "progress.gif"), "--force", cwd=work)  # fmt: skip
        gancli("animate", run, "--interpolate",
               "--out", str(IMAGES / "interpolation.gif"), "--force", cwd=work)  # fmt: skip
    for path in sorted(IMAGES.iterdir()):
        print(f"{path.relative_to(IMAGES.parents[1])}: {path.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
