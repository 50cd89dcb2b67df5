"""Usage: raise ConfigError("training.epochs: must be >= 1, got 0")

Every error a user can cause or fix is a GancliError: the CLI prints its
message on one line and exits with its code, never with a traceback.
"""

from __future__ import annotations

import shlex
import signal
from pathlib import Path
from typing import Any

EXIT_TRAINING_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class GancliError(Exception):
    """An error with a one-line, actionable message and an exit code."""

    exit_code = EXIT_USAGE
    #: True when another process prints it (rank 0 of a distributed run): exit, say nothing.
    quiet = False
    #: What the CLI puts before the message; None for news that is not a failure.
    prefix: str | None = "error"


class ConfigError(GancliError):
    """A preset, override or flag is unknown, mistyped or impossible."""


class DataError(GancliError):
    """A dataset cannot be found, read or understood."""


class CheckpointError(GancliError):
    """A checkpoint or run directory is missing, unreadable or incompatible."""


class RunDirError(GancliError):
    """The output root cannot be written."""


class StorageError(GancliError):
    """A write failed (disk full, read-only file system); earlier checkpoints are intact."""

    exit_code = EXIT_TRAINING_FAILED


class TrainingError(GancliError):
    """Training itself failed (for example the losses became NaN)."""

    exit_code = EXIT_TRAINING_FAILED


class ExportError(GancliError):
    """An exporter failed, or the exported file did not reproduce the generator."""

    exit_code = EXIT_TRAINING_FAILED


class OutOfMemory(GancliError):
    """An allocation failed although the request passed the up-front estimate."""

    exit_code = EXIT_TRAINING_FAILED


def first_line(exc: BaseException) -> str:
    """The first non-blank line of `exc`'s message, stripped; its type's name if it has none."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def out_of_memory(exc: BaseException) -> OutOfMemory | None:
    """The one-line error for an allocator failure (MemoryError, PyTorch's "can't allocate
    memory", CUDA out of memory), or None for any other exception."""
    text = str(exc).strip()
    if isinstance(exc, MemoryError):
        return OutOfMemory(f"out of memory{': ' + text[:160] if text else ''}")
    if isinstance(exc, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text.lower()
    ):
        found = text.split("you tried to allocate ")
        size = (
            f" ({int(found[1].split()[0]) / 2**30:.1f} GiB in one piece)" if len(found) > 1 else ""
        )
        return OutOfMemory(
            f"out of memory{size}: lower the batch size, the number of images or the widths"
        )
    return None


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP outside the training loop. It unwinds like Ctrl-C, so temporary
    files and a run folder made a moment ago are cleaned up, then exits 128 + the signal."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


def raise_on_termination() -> None:
    """Turn SIGTERM and SIGHUP into Terminated in this process (Python's default for them
    ends the process on the spot, leaving half-written temporary files behind). The
    training loop installs its own handlers, which checkpoint first, and restores these."""

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    for name in ("SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is None:  # Windows has no SIGHUP
            continue
        try:
            signal.signal(signum, handler)
        except ValueError:  # not the main thread: leave signals to the caller
            return


class Interrupted(GancliError):
    """Training stopped on a signal after saving a checkpoint: a stop the user asked for,
    told as such (with how to resume), not as an error."""

    prefix = None

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code

    @classmethod
    def by_signal(
        cls, signum: int, step: int, epoch: int, epochs: int, run: Path, saved: Path
    ) -> Interrupted:
        """The stop at step `step` of epoch `epoch` (1-based) of `epochs`, with the
        checkpoint `saved` and how to resume."""
        code = EXIT_INTERRUPTED if signum == signal.SIGINT else 128 + signum
        how = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        return cls(
            f"stopped by {how}: interrupted at step {step} (epoch {epoch} of {epochs}); "
            f"checkpoint saved to {saved}. Resume with: gancli train "
            f"--resume {shlex.quote(str(run))}",
            code,
        )
