"""Usage: raise ConfigError("training.epochs: must be >= 1, got 0")

Every error a user can cause or fix is a GancliError: the CLI prints its
message on one line and exits with its code, never with a traceback.
"""

from __future__ import annotations

EXIT_TRAINING_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class GancliError(Exception):
    """An error with a one-line, actionable message and an exit code."""

    exit_code = EXIT_USAGE
    #: True when another process prints it (rank 0 of a distributed run): exit, say nothing.
    quiet = False


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
