"""Usage: device = prepare(RuntimeOptions(device="auto", threads=2))

Where and how training runs, as opposed to what it learns: the device, CPU threads,
determinism, seeding, denormal handling, and turning failed writes into one-line errors.
None of it is part of a run's config.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from gancli.engine.errors import ConfigError, StorageError, TrainingError
from gancli.engine.runs import RunDir


@dataclass(frozen=True)
class RuntimeOptions:
    """Where and how to run; none of it changes what is learnt, so none of it is in the config."""

    data_dir: str | None = None  # data root to search first
    out: str | None = None  # runs root (default: $GANCLI_RUNS_DIR or ./runs)
    name: str | None = None  # run name prefix (default: the preset's name)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    threads: int | None = None  # CPU threads for torch; None keeps torch's default (physical cores)
    deterministic: bool = False  # PyTorch's deterministic algorithms only (matters on CUDA)


def resolve_device(spec: str) -> torch.device:
    """'auto' -> the best available device; anything else is checked before it is used."""
    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {spec!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: CUDA is not available here; use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("--device mps: MPS is not available here; use --device cpu or auto")
    elif device.type != "cpu":
        raise ConfigError(f"--device {spec!r}: use auto, cpu, cuda, cuda:N or mps")
    return device


def prepare(options: RuntimeOptions) -> torch.device:
    """The device to train on, with the thread count and determinism asked for."""
    device = resolve_device(options.device)
    if options.threads:
        torch.set_num_threads(options.threads)
    if options.deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; set before any CUDA work.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def friendly_errors(run: RunDir) -> Iterator[None]:
    """Failed writes and missing deterministic kernels -> one-line errors."""
    try:
        yield
    except OSError as exc:
        where = exc.filename or run.path
        raise StorageError(
            f"cannot write {where}: {exc.strerror or exc}; the last good checkpoint in "
            f"{run.checkpoints} is intact"
        ) from None
    except RuntimeError as exc:
        if "deterministic" not in str(exc):
            raise
        first = str(exc).strip().splitlines()[0]
        raise TrainingError(f"--deterministic: {first}") from None


@contextmanager
def flushing_denormals() -> Iterator[None]:
    """Treat denormal floats as zero while training, then restore the caller's setting.

    Denormals appear as weights and gradients shrink and are very slow on x86 CPUs
    (about 10% of a DCGAN step here). The flag is process-wide, hence the restore.
    """
    was_flushing = (torch.tensor([1e-40]) * 1.0).item() == 0.0
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(was_flushing)
