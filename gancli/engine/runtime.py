"""Usage: device = prepare(RuntimeOptions(device="auto", threads=2))

Where and how training runs, as opposed to what it learns: the device, CPU threads,
precision, compilation, determinism, seeding, denormal handling, the allocator's reuse of
freed memory, stop signals, and turning failed writes into one-line errors.
None of it is part of a run's config: a resumed run may change any of it.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import platform
import random
import signal
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gancli.engine import distributed
from gancli.engine.checkpoint import capture_rng
from gancli.engine.errors import ConfigError, StorageError, TrainingError, first_line
from gancli.engine.options import RuntimeOptions
from gancli.engine.runs import RunDir

MAX_THREADS = 1024  # more than any machine has cores; a typo beyond it is refused

PRECISIONS: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


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


def use_device(spec: str) -> torch.device:
    """resolve_device, and on the CPU reuse of freed memory for the process (training;
    `evaluate -n 10000`: 25 s -> 19 s here)."""
    device = resolve_device(spec)
    if device.type == "cpu":
        keep_freed_memory()
    return device


def prepare(options: RuntimeOptions) -> torch.device:
    """The device to train on, set up as asked; under torchrun, this rank's (the process
    group is joined by distributed.session)."""
    ranks = distributed.launched()
    device = use_device(options.device)
    if ranks.distributed:
        device = distributed.rank_device(device, ranks)
    check_options(options, device)
    torch.set_num_threads(options.threads or default_threads(ranks.local_world_size))
    if device.type == "cuda":
        # TF32 tensor cores for float32 matmuls and convolutions: ~10 bits of mantissa
        # instead of 23, several times faster, and plenty for GAN training.
        torch.set_float32_matmul_precision("high")
        torch.backends.cudnn.allow_tf32 = True
    if options.deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; set before any CUDA work.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    return device


def check_options(options: RuntimeOptions, device: torch.device) -> None:
    """--precision, --sync-bn, --threads: refuse what the device cannot do, before anything
    runs."""
    if options.threads is not None and not 1 <= options.threads <= MAX_THREADS:
        raise ConfigError(f"--threads {options.threads}: use 1 to {MAX_THREADS}")
    if options.precision not in ("auto", *PRECISIONS):
        raise ConfigError(f"--precision {options.precision!r}: use auto, {', '.join(PRECISIONS)}")
    bf16_gpu = options.precision == "bf16" and device.type == "cuda"
    if bf16_gpu and not torch.cuda.is_bf16_supported():
        raise ConfigError("--precision bf16: this GPU has no bfloat16; use fp16")
    if options.sync_bn and device.type != "cuda":
        raise ConfigError(
            f"--sync-bn: SyncBatchNorm runs on CUDA only, not on {device.type}; drop it "
            "(each process then normalises over its own part of the batch)"
        )


# --precision auto on a CPU with bf16 units: bf16 autocast trains 1.1-1.7x faster there
# (benchmarks/throughput.py), but its quality against fp32 (benchmarks/quality.py, every
# MNIST preset, 2 seeds) is not measured yet: no development machine so far had such units.
# Until it is, auto stays fp32 on CPUs and says that bf16 may be faster.
AUTO_BF16_ON_CPU = False


def choose_precision(
    requested: str, device: torch.device, previous: str | None = None
) -> tuple[str, str]:
    """The arithmetic to train in, and why: `requested` unless it is auto, which keeps a
    resumed run's own (`previous`, so that a resume stays exact) and otherwise picks bf16
    autocast where the hardware has bfloat16 units, fp32 elsewhere."""
    if requested != "auto":
        return requested, "as asked"
    if previous in PRECISIONS:
        return str(previous), "auto: the run's own"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "auto: this GPU has bfloat16"
        return (
            "fp32",
            "auto: this GPU has no bfloat16; TF32 matmuls (--precision fp16 may be faster)",
        )
    if device.type == "cpu" and fast_on_cpu("bf16"):
        if AUTO_BF16_ON_CPU:
            return "bf16", "auto: this CPU has bf16 units"
        return "fp32", (
            "auto: this CPU has bf16 units, but bf16's quality on CPUs is not measured yet; "
            "--precision bf16 may train 1.1-1.7x faster"
        )
    if device.type == "cpu":
        return "fp32", "auto: this CPU has no bf16 units"
    return "fp32", f"auto: fp32 on {device.type}"


def resolve_precision(
    options: RuntimeOptions, device: torch.device, previous: str | None = None
) -> tuple[RuntimeOptions, str]:
    """The options with --precision auto resolved (choose_precision), and why."""
    precision, reason = choose_precision(options.precision, device, previous)
    return dataclasses.replace(options, precision=precision), reason


def runtime_notes(options: RuntimeOptions, device: torch.device) -> list[str]:
    """What the user should hear about the (resolved) runtime options before training."""
    notes = []
    cores = physical_cores()
    if options.threads is not None and options.threads > cores and device.type == "cpu":
        notes.append(
            f"warning: --threads {options.threads} is more than the {cores} core(s) this "
            "process may use; the extra threads only compete for them (slower, not faster)"
        )
    precision = options.precision
    if precision != "fp32" and device.type == "cpu":
        if fast_on_cpu(precision):
            notes.append(
                f"--precision {precision} on the CPU: this one has {precision} instructions; "
                "CPUs without them run it slower than fp32"
            )
        else:
            notes.append(
                f"--precision {precision} on this CPU: autocast works but is slower than "
                f"fp32 here, without {precision} instructions (fp16 ran 10-30x slower in tests)"
            )
    if options.compile:
        notes.append("--compile: the first steps wait for torch.compile (tens of s on a CPU)")
    if options.sync_bn and not distributed.current().distributed:
        notes.append("--sync-bn: no effect in a single process")
    return notes


#: The CPU flags (Linux's /proc/cpuinfo names) of units that compute each precision fast.
CPU_UNITS = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}


def fast_on_cpu(precision: str) -> bool:
    """Whether this CPU has units for `precision` (bf16: AVX512-BF16 or AMX; fp16:
    AVX512-FP16 or AMX-FP16), read from /proc/cpuinfo; False where that is not there."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = [line.split() for line in text.splitlines() if line.startswith("flags")]
    return any(unit in words for words in flags for unit in CPU_UNITS.get(precision, ()))


def autocast(device: torch.device, precision: str) -> AbstractContextManager[object]:
    """The autocast context of the forward passes; nothing at all for fp32."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=PRECISIONS[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """A loss scaler for fp16, whose small range loses tiny gradients; None otherwise."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def compiled(module: nn.Module, enabled: bool) -> nn.Module:
    """`module` under torch.compile when asked; the module itself keeps the weights."""
    return torch.compile(module) if enabled else module  # type: ignore[return-value]


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 2**20  # the largest glibc accepts on 64-bit systems
_TRIM_THRESHOLD = 2**30


def keep_freed_memory() -> bool:
    """Let this process reuse the memory of freed tensors instead of handing it back.

    A training step frees and allocates again tens of MB of activations and gradients.
    glibc's malloc gives large blocks back to the kernel when they are freed (mmap'd ones
    at once, the heap's free top above a threshold), and the kernel then zero-fills every
    page again on its first touch. Measured on dcgan-mnist (2-core CPU): 14,000-20,000
    page faults and about 35 ms of kernel time per step; with this, none, and 19% more
    images/s. Blocks up to 32 MiB now come from the heap, which keeps up to 1 GiB free.
    The cost: memory stays with the process at its peak instead of going back between steps.
    Process-wide and not undone. glibc only (Linux); elsewhere it does nothing, returns False.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # The mmap threshold first: a trim threshold set alone also fixes the mmap threshold at
    # its 128 KiB start, which made matters worse (dcgan-mnist 1,020 -> 830 images/s).
    return bool(
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
        and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )


def physical_cores(cpuinfo: str | None = None, allowed: set[int] | None = None) -> int:
    """Physical cores this process may run on: distinct (physical id, core id) pairs.

    `cpuinfo` is /proc/cpuinfo's text and `allowed` the CPUs the process may use
    (os.sched_getaffinity); both are read when not given. Where /proc/cpuinfo does not
    name cores (not Linux, many ARM boards), falls back to the usable CPUs, then
    os.cpu_count().
    """
    if allowed is None and hasattr(os, "sched_getaffinity"):
        allowed = set(os.sched_getaffinity(0))
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    cores = set()
    for block in cpuinfo.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if not {"processor", "physical id", "core id"} <= fields.keys():
            continue
        try:
            cpu = int(fields["processor"])
        except ValueError:
            continue
        if allowed is None or cpu in allowed:
            cores.add((fields["physical id"], fields["core id"]))
    if cores:
        return len(cores)
    return len(allowed) if allowed else (os.cpu_count() or 1)


def default_threads(local_processes: int = 1) -> int:
    """One thread per physical core, shared out among this machine's training processes.

    Hyper-threads share a core's arithmetic units: more threads than cores only adds
    contention. Never DataLoader workers: the data already sits in memory.
    """
    return max(1, physical_cores() // max(1, local_processes))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def friendly_errors(run: RunDir) -> Iterator[None]:
    """Failed writes, missing deterministic kernels and failed compiles -> one-line errors."""
    try:
        yield
    except OSError as exc:
        where = exc.filename or run.path
        raise StorageError(
            f"cannot write {where}: {exc.strerror or exc}; the last good checkpoint in "
            f"{run.checkpoints} is intact"
        ) from None
    except RuntimeError as exc:
        first = first_line(exc)
        if type(exc).__module__.startswith(("torch._dynamo", "torch._inductor")):
            raise TrainingError(f"--compile failed: {first[:200]}; train without it") from None
        if "deterministic" not in str(exc):
            raise
        raise TrainingError(f"--deterministic: {first}") from None


@contextmanager
def flushing_denormals() -> Iterator[None]:
    """Treat denormal floats as zero while training, then restore the caller's setting.

    Denormals appear as weights and gradients shrink and are very slow on x86 CPUs. The
    flag lives in each thread's FPU control register: this sets the calling thread's, and
    OpenMP worker threads copy the main thread's when they start (at the first parallel
    op), so workers already running keep theirs. Setting it before they start made no
    measurable difference on dcgan-mnist or wgan-mnist here (benchmarks/throughput.py).
    """
    was_flushing = (torch.tensor([1e-40]) * 1.0).item() == 0.0
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(was_flushing)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopRequests:
    """The first SIGINT, SIGTERM or SIGHUP asks the loop to stop after the current step
    (with a checkpoint); a second one stops at once (KeyboardInterrupt)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def request(self, signum: int, frame: Any = None) -> None:
        """The signal handler: note the first stop signal, raise on the second."""
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Route the stop signals here while training; the previous handlers after."""
        try:
            previous = {s: signal.signal(s, self.request) for s in STOP_SIGNALS}
        except ValueError:  # not the main thread: leave signal handling to the caller
            yield
            return
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


def resumed_rng(state: dict[str, Any], ranks: distributed.Ranks, seed: int) -> dict[str, Any]:
    """The random state a resumed rank goes on from: its own, when the checkpoint has it;
    with another number of ranks than before, new noise streams fixed by seed and step."""
    if not ranks.distributed:
        return dict(state["rng"])  # rank 0's, when the run was distributed before
    saved = state.get("rank_rng") or []
    if len(saved) == ranks.world_size:
        return dict(saved[ranks.rank])
    seed_everything(distributed.rank_seed(seed, int(state["step"]), ranks.rank))
    return capture_rng()
