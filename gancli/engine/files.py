"""Usage: with atomic_write(path) as tmp: image.save(tmp)

Every file gancli writes in place of another is written the same way: to a temporary name
beside it, flushed to disk, then renamed over it. A reader (or a crash) sees the old file
or the new one, never half of one, and a failed write leaves no temporary file behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gancli.engine.errors import StorageError


@contextmanager
def atomic_write(path: Path, keep_old_as: Path | None = None, hint: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; on success it becomes `path`.

    The temporary name keeps the suffix (PIL and NumPy choose the format by it). With
    `keep_old_as`, the file at `path` is first renamed there, so that the two newest
    versions are on disk at every moment. An OSError (disk full, read-only folder, name
    too long) becomes a one-line StorageError ending in `hint`.
    """
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        _fsync_file(tmp)
        if keep_old_as is not None and path.exists():
            os.replace(path, keep_old_as)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}{hint}") from None
    finally:
        tmp.unlink(missing_ok=True)  # still there only if the write failed or was interrupted


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable; not possible on every platform, and not needed for
    atomicity (the rename is atomic either way)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
