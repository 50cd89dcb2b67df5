"""Usage: save_checkpoint(path, state); state = load_checkpoint(path)

Checkpoints describe themselves: state dicts, the resolved config as a plain dict, the
dataset's shape and class names, the fixed noise and every RNG state, so a run can be
resumed exactly and sampled from with nothing but the file. They are written atomically
(temporary file, fsync, rename) and read with `torch.load(weights_only=True)` only:
no pickled code is ever executed.
"""

from __future__ import annotations

import errno
import hashlib
import random
import re
import sys
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
import torch

import gancli
from gancli.engine.errors import CheckpointError, first_line
from gancli.engine.files import atomic_write
from gancli.engine.limits import available_memory, human_bytes

FORMAT = "gancli-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "version", "config", "generator", "discriminator", "epoch", "step")
SAFE_TORCH = (2, 6)  # weights_only loading is safe from here on (CVE-2025-32434)


def save_checkpoint(path: Path, state: dict[str, Any], previous: Path | None = None) -> None:
    """Write `state` so that `path` is always a complete checkpoint, old or new.

    The new file is written beside it, fsynced and renamed over it. With `previous`, the
    old file is first renamed there, so the last two good checkpoints are always on disk;
    a kill between the two renames leaves `previous` for resume to pick up.
    """
    payload = {"format": FORMAT, "version": FORMAT_VERSION, **state}
    payload["integrity"] = content_digest(payload)
    hint = "; the previous checkpoint is untouched"
    with atomic_write(path, keep_old_as=previous, hint=hint) as tmp, open(tmp, "wb") as fh:
        sink = _Sink(fh)
        try:
            torch.save(payload, cast(BinaryIO, sink))  # torch needs only write()
        except RuntimeError as exc:
            # torch's zip writer turns a failed write (a full disk) into "unexpected pos
            # 576 vs 534"; the OSError behind it says what happened.
            if sink.error is not None:
                raise sink.error from None
            first = first_line(exc)[:120]
            raise OSError(errno.EIO, f"the checkpoint writer failed ({first})") from None


class _Sink:
    """A file for torch.save that remembers the first OSError of its writes."""

    def __init__(self, fh: BinaryIO):
        self.fh = fh
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.fh.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self.fh.flush()


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a gancli checkpoint; refuses anything that is not one, intact."""
    path = Path(path)
    if _torch_version() < SAFE_TORCH:
        raise CheckpointError(
            f"torch {torch.__version__} cannot load checkpoints safely; gancli needs torch >= 2.6"
        )
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    check_checkpoint_file(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or hostile files
        raise CheckpointError(
            f"{path}: not a readable gancli checkpoint ({_reason(exc)})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a gancli checkpoint")
    if state.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {state.get('version')} is not supported "
            f"(this gancli reads format {FORMAT_VERSION})"
        )
    missing = [k for k in (*REQUIRED_KEYS, "integrity") if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint is missing {', '.join(missing)}")
    stored = state.pop("integrity")
    try:
        actual = content_digest(state)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: checkpoint holds unexpected contents ({exc})") from None
    if stored != actual:
        raise CheckpointError(f"{path}: checksum mismatch, the file is corrupt")
    return state


def check_checkpoint_file(path: Path) -> None:
    """CheckpointError, in milliseconds whatever the file's size, for a file that cannot be
    a checkpoint or could not be loaded: no zip directory at its end (torch.save writes a
    zip archive), or more bytes than the memory free, which loading would need. Only a
    file that passes is read whole (loaded, hashed)."""
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:  # reads the directory at the end, no more
            stored = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(
            f"{path}: not a readable gancli checkpoint ({human_bytes(size)} with no zip "
            f"directory at its end, as torch.save writes: {str(exc)[:80]})"
        ) from None
    free = available_memory()
    if free is not None and max(size, stored) > free:
        raise CheckpointError(
            f"{path}: loading it needs about {human_bytes(max(size, stored))} of memory and "
            f"{human_bytes(free)} is free; a gancli checkpoint this large is not loaded here"
        )


def newest_valid(paths: list[Path]) -> tuple[Path, dict[str, Any], list[str]]:
    """The loadable checkpoint with the most steps among `paths`, and why others were skipped.

    `paths[0]` is the one written last (last.pt): when it loads, nothing can be newer.
    """
    best: tuple[Path, dict[str, Any]] | None = None
    problems = []
    for i, path in enumerate(paths):
        if not path.is_file():
            continue
        try:
            state = load_checkpoint(path)
        except CheckpointError as exc:
            problems.append(str(exc))
            continue
        if i == 0:
            return path, state, problems
        if best is None or int(state["step"]) > int(best[1]["step"]):
            best = (path, state)
    if best is None:
        found = "; ".join(problems) if problems else "no checkpoint files"
        raise CheckpointError(f"no usable checkpoint ({found})")
    return best[0], best[1], problems


def content_digest(state: Any) -> str:
    """sha256 over a checkpoint's contents: every tensor's bytes, dtype and shape, every value.

    torch.load does not notice flipped bits inside tensor data; this does.
    """
    digest = hashlib.sha256()

    def feed(obj: Any) -> None:
        if isinstance(obj, torch.Tensor):
            flat = obj.detach().cpu().contiguous().reshape(-1)
            digest.update(f"T{flat.dtype}{tuple(obj.shape)}".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
        elif isinstance(obj, dict):
            digest.update(f"D{len(obj)}".encode())
            for key in sorted(obj, key=repr):
                digest.update(repr(key).encode())
                feed(obj[key])
        elif isinstance(obj, (list, tuple)):
            digest.update(f"L{len(obj)}".encode())
            for item in obj:
                feed(item)
        elif obj is None or isinstance(obj, (bool, int, float, str, bytes)):
            digest.update(repr(obj).encode())
        else:
            raise TypeError(f"cannot checksum a {type(obj).__name__}")

    feed(state)
    return digest.hexdigest()


def _torch_version() -> tuple[int, int]:
    major, minor = (int(part) for part in str(torch.__version__).split(".")[:2])
    return major, minor


def versions() -> dict[str, str]:
    return {
        "gancli": gancli.__version__,
        "torch": str(torch.__version__),  # TorchVersion is not plain data
        "python": sys.version.split()[0],
    }


def capture_rng() -> dict[str, Any]:
    """Every RNG state the training loop touches, in types weights_only loading accepts."""
    kind, keys, *position = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(np.array(keys, dtype=np.uint32)), *position],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, gauss_next = state["python"][0], state["python"][2]
    random.setstate((version, tuple(state["python"][1]), gauss_next))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"].cpu())


def _reason(exc: Exception) -> str:
    """The useful part of torch.load's error, on one line."""
    text = str(exc)
    found = re.search(r"unsupported global:? GLOBAL (\S+)", text, re.IGNORECASE)
    if found:
        return f"it holds a Python object ({found.group(1)}), refused by weights-only loading"
    if "weights only load failed" in text.lower():
        return "it holds Python objects, refused by weights-only loading"
    return first_line(exc)[:160]
