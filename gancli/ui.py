"""Usage: guard_streams(); console = make_console(json_mode=False); print_json(result)

Where the CLI's output goes: streams that survive a closed pipe or a full disk, consoles
that show hostile names safely, and the JSON result. What the commands print is in
gancli.views (results and tables) and gancli.reporting (progress while they work).
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import sys
from errno import EBADF
from typing import IO, Any, cast

from rich.console import Console

from gancli.engine.errors import StorageError
from gancli.engine.files import readable


class LenientStream(io.TextIOBase):
    """sys.stdout or sys.stderr for Rich, looked up at each write; a write that fails (a
    closed pipe as in `gancli train | head -1`, a full device, a closed descriptor) drops
    this and all later output instead of raising. Progress and messages are a courtesy:
    the command's work goes on, and the JSON result (print_json) is what must arrive."""

    def __init__(self, name: str):
        self.name = name  # "stdout" or "stderr"
        self.lost = False

    def _stream(self) -> Any:
        stream = getattr(sys, self.name)
        # While a progress bar is live, Rich puts a proxy that writes through the console
        # in place of sys.stdout: writing to it from the console would go round in a circle.
        return getattr(stream, "rich_proxied_file", stream)

    def write(self, text: str) -> int:
        if not self.lost:
            try:
                self._stream().write(text)
            except (OSError, ValueError, AttributeError) as exc:  # None when closed at start
                self._lose(exc)
        return len(text)

    def flush(self) -> None:
        if not self.lost:
            try:
                self._stream().flush()
            except (OSError, ValueError, AttributeError) as exc:
                self._lose(exc)

    def isatty(self) -> bool:
        try:
            return not self.lost and bool(self._stream().isatty())
        except (OSError, ValueError, AttributeError):
            return False

    def fileno(self) -> int:
        try:
            return int(self._stream().fileno())
        except AttributeError:  # no stream at all (closed when Python started)
            raise io.UnsupportedOperation("stream closed") from None

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self._stream(), "encoding", None) or "utf-8")

    def _lose(self, exc: BaseException) -> None:
        self.lost = True
        silence(self.name)
        # A closed pipe (its reader has gone) or a stdout closed on purpose: say nothing.
        # Anything else (a full device): say it once.
        quiet = isinstance(exc, BrokenPipeError) or getattr(exc, "errno", None) in (None, EBADF)
        if self.name == "stdout" and not quiet:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                sys.stderr.write(
                    f"warning: stdout lost ({getattr(exc, 'strerror', exc)}); carrying on\n"
                )


def silence(name: str) -> None:
    """Point a standard stream that cannot be written at /dev/null, so that Python's own
    flush at exit does not fail with a traceback about it."""
    stream = getattr(sys, name, None)
    with contextlib.suppress(OSError, ValueError, AttributeError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stream.fileno() if stream is not None else _FDS[name])
        os.close(null)


_FDS = {"stdin": 0, "stdout": 1, "stderr": 2}
_guarded = False


def guard_streams() -> None:
    """Make closed or broken standard streams harmless, once per process. A descriptor 0-2
    closed by the caller (`>&-`) would be handed to the next file gancli opens (a checkpoint
    would receive stray output), so it is opened on /dev/null; Python then has no
    sys.stdout, which LenientStream and print_json treat as closed."""
    global _guarded
    if _guarded:
        return
    _guarded = True
    for fd in _FDS.values():
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free descriptor: this one
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    atexit.register(_flush_at_exit)


def _flush_at_exit() -> None:
    for name in ("stdout", "stderr"):
        try:
            getattr(sys, name).flush()
        except (OSError, ValueError, AttributeError):
            silence(name)


#: Control characters (escape sequences, newlines, bidirectional overrides) as escapes.
_UNPRINTABLE = {
    **{c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))},
    **{c: f"\\u{c:04x}" for c in (0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))},
    ord("\n"): "\\n",
    ord("\t"): "\\t",
    ord("\r"): "\\r",
}


def printable(text: str) -> str:
    """`text` on one line with nothing a terminal would act on: a description, class or
    file name holding an escape sequence or a newline is shown, never obeyed; bytes of a
    name that are not UTF-8 show as U+FFFD instead of making the output fail."""
    return readable(text).translate(_UNPRINTABLE)


class SafeConsole(Console):
    """A console for text that is not gancli's own (descriptions, class and file names):
    no Rich markup or emoji codes are read in it, and control characters are shown as
    escapes. Every string Rich prints, tables and titles included, passes render_str."""

    def render_str(self, text: str, **kwargs: Any) -> Any:
        return super().render_str("\n".join(map(printable, text.split("\n"))), **kwargs)


def make_console(json_mode: bool, quiet: bool = False) -> Console:
    """Human output goes to stdout, or to stderr when stdout carries --json; none if quiet."""
    stream = cast(IO[str], LenientStream("stderr" if json_mode else "stdout"))  # a TextIOBase
    return SafeConsole(file=stream, highlight=False, markup=False, emoji=False, quiet=quiet)


def print_json(payload: dict[str, Any]) -> None:
    """The one JSON object on stdout; StorageError (one line, exit 1) if it cannot be
    written, since a script waiting for it must not take silence for success."""
    text = json.dumps(payload, indent=2, default=str) + "\n"
    try:
        if sys.stdout is None:
            raise OSError(EBADF, "stdout is closed")
        sys.stdout.write(text)
        sys.stdout.flush()
    except (OSError, ValueError) as exc:
        silence("stdout")
        reason = getattr(exc, "strerror", None) or "stdout is closed"
        raise StorageError(f"cannot write the JSON result to stdout: {reason}") from None


def write_text(text: str) -> None:
    """Plain text on stdout (a --dry-run's YAML), dropped like any output that is lost."""
    stream = LenientStream("stdout")
    stream.write(text)
    stream.flush()
