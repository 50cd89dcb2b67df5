"""Usage: with atomic_write(path) as tmp: image.save(tmp)

Every file gancli writes in place of another is written the same way: to a temporary name
beside it, flushed to disk, then renamed over it. A reader (or a crash) sees the old file
or the new one, never half of one, and a failed write leaves no temporary file behind.
A file that must not replace anything (an --out without --force) is published with a
hard link instead of a rename, which fails if the name was taken meanwhile.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gancli.engine.errors import ConfigError, StorageError

NAME_MAX = 255  # bytes in one file name on Linux, macOS and Windows file systems
_TEMP_STEM = 100  # characters of the final stem kept in a temporary name
_counter = itertools.count()  # temporary names unique across threads of one process


@contextmanager
def atomic_write(
    path: Path,
    keep_old_as: Path | None = None,
    hint: str = "",
    replace: bool = True,
    durable: bool = True,
) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; on success it becomes `path`.

    The temporary name keeps the suffix (PIL and NumPy choose the format by it). With
    `keep_old_as`, the file at `path` is first renamed there, so that the two newest
    versions are on disk at every moment. With `replace=False`, an existing `path` is
    never replaced, even one made while this write ran: ConfigError. `durable=False`
    skips the fsyncs (thousands of small images: 2 ms each): a killed process still leaves
    no half file under the name, a power cut may. An OSError (disk full, read-only folder,
    name too long) becomes a one-line StorageError ending in `hint`.
    """
    tmp = temporary_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        if durable:
            _fsync(tmp)
        if keep_old_as is not None and path.exists():
            os.replace(path, keep_old_as)
        if replace:
            os.replace(tmp, path)
        else:
            _publish_new(tmp, path)
        if durable:
            # The rename made durable too, where the platform can (it is atomic either way).
            with contextlib.suppress(OSError):
                _fsync(path.parent)
    except FileExistsError as exc:
        if exc.filename != str(path) or replace:
            raise StorageError(f"cannot write {path}: {exc.strerror}{hint}") from None
        raise ConfigError(f"{path}: already exists; pass --force to replace it") from None
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}{hint}") from None
    finally:
        with contextlib.suppress(OSError):  # e.g. its folder could not be made: nothing there
            tmp.unlink(missing_ok=True)  # still there only if the write failed or was interrupted


def temporary_name(path: Path) -> Path:
    """`.STEM.tmp-PID-N.SUFFIX` beside `path`: hidden, unique, and short enough for the file
    system even when the final name is near its limit."""
    suffix = path.suffix if len(path.suffix) <= 16 else ""
    stem = path.name[: len(path.name) - len(suffix)][:_TEMP_STEM]
    return path.with_name(f".{stem}.tmp-{os.getpid()}-{next(_counter)}{suffix}")


def _publish_new(tmp: Path, path: Path) -> None:
    """Give the finished `tmp` the name `path` only if nobody holds that name."""
    try:
        os.link(tmp, path)  # atomic, and fails with FileExistsError if the name is taken
        return
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK):
            raise
    # No hard links here (FAT, some network file systems): claim the name, then fill it.
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
    os.replace(tmp, path)


def keep_aside(path: Path, label: str) -> Path:
    """Keep the current `path` under `NAME.LABEL` (then `NAME.LABEL-2`, ...), never replacing
    an earlier copy; returns the name it got. The caller then writes `path` afresh."""
    for number in range(1, 10_000):
        aside = path.with_name(f"{path.name}.{label}" + (f"-{number}" if number > 1 else ""))
        try:
            _publish_new(path, aside)
        except FileExistsError:
            continue
        except OSError as exc:
            raise StorageError(f"cannot keep {path} aside: {exc.strerror or exc}") from None
        return aside
    raise StorageError(f"cannot keep {path} aside: 9,999 copies named {path.name}.{label}-N exist")


def check_target(path: Path, what: str = "--out") -> None:
    """Refuse, before any work, an output path no file could be written at: a name longer
    than the file system allows, or a folder on the way that is a file."""
    for part in (path, *path.parents):
        if len(os.fsencode(part.name)) > NAME_MAX:
            raise ConfigError(
                f"{what} {_short(path)}: the name {_short(Path(part.name))} is "
                f"{len(os.fsencode(part.name))} bytes; file systems allow {NAME_MAX}"
            )
    for folder in path.parents:
        if folder.is_dir():
            return
        if os.path.lexists(folder):
            raise ConfigError(f"{what} {_short(path)}: {folder} is not a folder")


def check_writable(folder: Path, what: str) -> None:
    """StorageError now, rather than after minutes of work, when `folder` (or the nearest
    existing folder above it) cannot be written."""
    existing = next((p for p in (folder, *folder.parents) if p.is_dir()), None)
    if existing is None or os.access(existing, os.W_OK):
        return
    read_only = hasattr(os, "statvfs") and os.statvfs(existing).f_flag & os.ST_RDONLY
    reason = os.strerror(errno.EROFS if read_only else errno.EACCES)
    raise StorageError(f"cannot write {what} in {existing}: {reason}")


def readable(text: str) -> str:
    """Text that encodes anywhere: the bytes of a file name that are not UTF-8 (which
    Python holds as lone surrogates) become U+FFFD, as a file manager shows them."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # surrogates of another origin (a JSON escape, say)
        raw = text.encode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _short(path: Path) -> str:
    """A path for a one-line message: absurdly long names are cut in the middle."""
    text = str(path)
    return text if len(text) <= 80 else f"{text[:40]}...{text[-30:]}"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_output_file(out: Path, suffixes: tuple[str, ...], kinds: str, replace: bool) -> None:
    """Refuse, before any work, an --out that cannot take the file: a name without one of
    `suffixes` (`kinds` says which in the message), a folder, or an existing file without
    --force (`replace`)."""
    if out.suffix.lower() not in suffixes:
        raise ConfigError(f"--out {out}: use a {kinds} file")
    check_target(out)
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; name a {kinds} file")
    if os.path.lexists(out) and not replace:
        raise ConfigError(f"--out {out}: already exists; pass --force to replace it")
