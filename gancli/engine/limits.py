"""Usage: check_memory(n * 784, "-n 100000000: a .npz of 28x28 images", "write a folder")

Absurd requests are refused before any work, with the estimate that rules them out: the
memory a command would hold at once against what this machine (or its container, or the
GPU) has free, and the files a folder of images would take against room on its disk.
Estimates err low, so a refusal is never a false alarm; what passes may still fail, and
then fails with one line (errors.out_of_memory).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from gancli.engine.config import Config
from gancli.engine.errors import ConfigError

FLOAT_BYTES = 4


def human_bytes(count: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} PB"


def available_memory() -> int | None:
    """Bytes this process could still allocate: the smaller of the kernel's MemAvailable
    and what the container's memory limit leaves (cgroup v2 or v1); None where unknown."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    cgroup = Path("/sys/fs/cgroup")
    for limit, usage in (
        ("memory.max", "memory.current"),
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),
    ):
        try:
            cap, used = int((cgroup / limit).read_text()), int((cgroup / usage).read_text())
        except (OSError, ValueError):  # absent, or "max": no limit
            continue
        if cap < 2**60:
            found.append(max(0, cap - used))
    if not found and hasattr(os, "sysconf"):
        with contextlib.suppress(OSError, ValueError):
            found.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    return min(found) if found else None


def check_memory(needed: float, what: str, hint: str, device: torch.device | None = None) -> None:
    """ConfigError when `what` would need more than the memory free: on a CUDA `device`,
    that device's free bytes; otherwise the host's available memory."""
    if device is not None and device.type == "cuda":
        free: int | None = int(torch.cuda.mem_get_info(device)[0])
    elif device is None or device.type == "cpu":
        free = available_memory()
    else:
        return  # MPS shares the host's memory in ways not worth guessing
    if free is not None and needed > free:
        raise ConfigError(
            f"{what} needs about {human_bytes(needed)} of memory and "
            f"{human_bytes(free)} is free; {hint}"
        )


def check_disk(folder: Path, files: int, size: float, what: str, hint: str) -> None:
    """ConfigError when `files` new files of `size` bytes in all cannot fit on the file
    system holding `folder` (each file takes at least one block and one inode)."""
    existing = next((p for p in (folder, *folder.parents) if p.is_dir()), None)
    if existing is None or not hasattr(os, "statvfs"):
        return
    fs = os.statvfs(existing)
    room = fs.f_bavail * fs.f_frsize
    needed = max(size, files * fs.f_frsize)
    if needed > room or (fs.f_files and files > fs.f_favail):
        raise ConfigError(
            f"{what} needs at least {human_bytes(needed)} in {files:,} file(s) and the file "
            f"system of {existing} has {human_bytes(room)} and {fs.f_favail:,} free inodes; {hint}"
        )


def training_memory(config: Config, image_shape: tuple[int, int, int], classes: int) -> int:
    """A low estimate of the bytes one training step holds at once: the weights with their
    gradients and two optimiser moments, the EMA copy, and the activations autograd keeps
    (and their gradients) for a batch through G and D. The networks are built on PyTorch's
    meta device: shapes only, no memory, whatever the widths."""
    from gancli.engine.models import activations_per_sample, build_models

    with torch.device("meta"):
        # A folder's classes are known only once it is read; their number barely matters here.
        g, d = build_models(config.model, image_shape, max(classes, 2), shapes_only=True)
    g_parameters = sum(p.numel() for p in g.parameters())
    parameters = g_parameters + sum(p.numel() for p in d.parameters())
    ema = g_parameters if config.training.ema else 0
    state = FLOAT_BYTES * (4 * parameters + ema)
    # Floats per image; each is kept for the backward pass, which makes a gradient of it.
    activations = activations_per_sample(g, (1, 1)) + activations_per_sample(d, image_shape[1:])
    return int(state + 2 * FLOAT_BYTES * config.training.batch_size * activations)


def check_training_memory(
    config: Config, image_shape: tuple[int, int, int], classes: int, device: torch.device
) -> None:
    """Refuse a config whose networks cannot fit, before any data is read."""
    m = config.model
    check_memory(
        training_memory(config, image_shape, classes),
        f"training this config (model.g_width {m.g_width:g}, model.d_width {m.d_width:g}, "
        f"{image_shape[1]} px, batch {config.training.batch_size})",
        "lower the widths, data.image_size or training.batch_size",
        device,
    )
