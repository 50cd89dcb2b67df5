"""Usage: reporter = make_reporter(console, quiet=False); with StageProgress(console) as p: ...

What a long command says while it works. On a terminal: a live line for `train` (epoch,
bar, step/total, losses, images/s, ETA, laid out for the terminal's width) and a bar for
`sample`'s and `evaluate`'s stages. Anywhere else (a pipe, a log file, CI): plain lines
with no control codes, at least one about every LINE_SECONDS. Nothing with --quiet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, ConsoleOptions
from rich.live import Live
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

LINE_SECONDS = 30.0  # off a terminal: a line at least about this often while work goes on
LIVE_SECONDS = 1.0  # on a terminal: the losses shown are refreshed about this often
BAR_MIN, BAR_MAX = 10, 40  # columns of the live bar


def clock(seconds: float | None) -> str:
    """0:04:05; -:--:-- while unknown."""
    if seconds is None:
        return "-:--:--"
    whole = max(0, round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def losses_text(stats: dict[str, Any]) -> str:
    return (
        f"loss_d {stats['loss_d']:.3f}  loss_g {stats['loss_g']:.3f}  "
        f"D(x) {stats['d_real']:.3f}  D(G(z)) {stats['d_fake']:.3f}"
    )


def start_line(info: dict[str, Any]) -> str:
    resumed = f", resuming at epoch {info['start_epoch'] + 1}" if info["start_step"] else ""
    where = f"{info['device']} ({info['threads']} threads"
    if info.get("world_size", 1) > 1:
        kind = str(info["device"]).split(":")[0]
        where = f"{info['world_size']} processes ({kind}, {info['threads']} threads each"
    precision = info.get("precision", "fp32")
    where += ", fp32" if precision == "fp32" else f", {precision} autocast"
    reason = info.get("precision_reason", "as asked")
    where += f" ({reason})" if reason != "as asked" else ""
    return (
        f"run {info['run_dir']} on {where}), "
        f"{info['dataset']}, {info['epochs']} epoch{'s' if info['epochs'] != 1 else ''} x "
        f"{info['steps_per_epoch']} steps{resumed}"
    )


@dataclass
class TrainStatus:
    """Where training stands, as the displays show it. The ETA comes from this process's
    pace so far (epoch-end work included), so it settles after the first few steps."""

    epochs: int
    total: int  # steps of the whole run
    step: int  # steps done, earlier processes' included
    epoch: int = 1  # the epoch under way, 1-based
    stats: dict[str, float] | None = None  # the latest losses and images/s
    started: float = field(default_factory=time.monotonic)
    first_step: int = field(init=False)  # where this process began: the ETA's pace

    def __post_init__(self) -> None:
        self.first_step = self.step

    def update(self, step: int, epoch: int, stats: dict[str, float] | None) -> None:
        self.step, self.epoch = step, epoch
        if stats is not None:
            self.stats = stats

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def remaining(self) -> float | None:
        done = self.step - self.first_step
        if done <= 0:
            return None
        return (self.total - self.step) * self.elapsed / done

    def parts(self) -> dict[str, str]:
        """Each field as text; the losses in three lengths (full, mid, short)."""
        out = {
            "epoch": f"epoch {self.epoch}/{self.epochs}",
            "count": f"{self.step:,}/{self.total:,}",
            "eta": f"ETA {clock(self.remaining)}",
            "full": "",
            "mid": "",
            "short": "",
            "rate": "",
        }
        if self.stats is not None:
            d, g = self.stats["loss_d"], self.stats["loss_g"]
            out["full"] = losses_text(self.stats)
            out["mid"] = f"loss_d {d:.3f}  loss_g {g:.3f}"
            out["short"] = f"d {d:.3f} g {g:.3f}"
            out["rate"] = f"{self.stats.get('images_per_second') or 0:.0f} img/s"
        return out

    def plain_line(self) -> str:
        p = self.parts()
        fields = (p["epoch"], f"step {p['count']}", p["full"], p["rate"], p["eta"])
        return "  ".join(f for f in fields if f)

    def layout(self, width: int) -> tuple[str, int, str]:
        """(epoch, bar columns, the rest) for a line of `width` columns: the richest set of
        fields that fits beside a bar of at least BAR_MIN columns; bar 0 when none does."""
        p = self.parts()
        choices = (
            (p["count"], p["full"], p["rate"], p["eta"]),
            (p["count"], p["mid"], p["rate"], p["eta"]),
            (p["count"], p["short"], p["rate"], p["eta"]),
            (p["count"], p["short"], p["eta"]),
        )
        room = width - 1  # the last column is left free: a full line wraps on some terminals
        for fields in choices:
            rest = "  ".join(f for f in fields if f)
            bar = room - len(p["epoch"]) - len(rest) - 2
            if bar >= BAR_MIN:
                return p["epoch"], min(bar, BAR_MAX), rest
        return p["epoch"], 0, f"{p['count']}  {p['eta']}"


class LiveLine:
    """The live training line, laid out anew for the console's width at every refresh."""

    def __init__(self, status: TrainStatus):
        self.status = status

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Any]:
        epoch, bar, rest = self.status.layout(options.max_width)
        grid = Table.grid(padding=(0, 1))
        cells: list[Any] = [Text(epoch, style="bold")]
        if bar:
            total = max(self.status.total, 1)
            cells.append(ProgressBar(total=total, completed=self.status.step, width=bar))
        cells.append(Text(rest, no_wrap=True, overflow="crop"))
        grid.add_row(*cells)
        yield grid


class PlainReporter:
    """Lines with no control codes: the start, an epoch line per epoch, and in between a
    line with step/total, losses, images/s and ETA about every LINE_SECONDS."""

    def __init__(self, console: Console, every: float | None = None):
        self.console = console
        self.every = LINE_SECONDS if every is None else every
        self.preview_seconds: float | None = self.every  # how often the loop sends losses
        self.last_line = time.monotonic()

    def start(self, info: dict[str, Any]) -> None:
        self.status = TrainStatus(info["epochs"], info["total_steps"], info["start_step"])
        self.status.epoch = info["start_epoch"] + 1
        self._print(start_line(info))

    def advance(self, step: int, epoch: int, stats: dict[str, float] | None) -> None:
        self.status.update(step, epoch, stats)
        if stats is not None and time.monotonic() - self.last_line >= self.every:
            self._print(self.status.plain_line())

    def epoch(self, record: dict[str, Any]) -> None:
        rate = record["images_per_second"] or 0.0
        self._print(
            f"epoch {record['epoch']}/{self.status.epochs}  step {record['step']}  "
            f"{losses_text(record)}  {rate:.0f} img/s  {record['wall']:.1f}s"
        )

    def note(self, text: str) -> None:
        self._print(text)

    def close(self) -> None:
        pass

    def _print(self, text: str) -> None:
        self.console.print(text, soft_wrap=True)
        self.last_line = time.monotonic()


class RichReporter(PlainReporter):
    """The live line (LiveLine) at the bottom of a terminal, refreshed a few times a
    second; the start line, notes and epoch lines printed above it."""

    def __init__(self, console: Console):
        super().__init__(console)
        self.preview_seconds = LIVE_SECONDS

    def start(self, info: dict[str, Any]) -> None:
        super().start(info)
        self.live = Live(
            LiveLine(self.status), console=self.console, transient=True, refresh_per_second=4
        )
        self.live.start()

    def advance(self, step: int, epoch: int, stats: dict[str, float] | None) -> None:
        self.status.update(step, epoch, stats)

    def epoch(self, record: dict[str, Any]) -> None:
        self.live.console.print(
            f"epoch {record['epoch']}/{self.status.epochs}  {losses_text(record)}  "
            f"{record['images_per_second'] or 0:.0f} img/s"
        )

    def note(self, text: str) -> None:
        if hasattr(self, "live"):
            self.live.console.print(text)
        else:
            super().note(text)

    def close(self) -> None:
        if hasattr(self, "live"):
            self.live.stop()


class QuietReporter(PlainReporter):
    """--quiet: no line printed, and no previews of the losses asked of the training loop."""

    def __init__(self, console: Console):
        super().__init__(console)
        self.preview_seconds = None

    def _print(self, text: str) -> None:
        pass


def make_reporter(console: Console, quiet: bool) -> PlainReporter:
    if quiet:
        return QuietReporter(console)
    return RichReporter(console) if console.is_terminal else PlainReporter(console)


class StageProgress:
    """What a long command (sample, evaluate) is doing; the engine's `progress` callback.

    On a terminal: the stage, a bar where the work can be counted and the time taken,
    removed when done. Off a terminal: plain lines on `log` (stderr): one as each stage
    starts, and while one lasts, one about every LINE_SECONDS ("still ..."), from a timer
    thread, so that a long stage is never silent. Nothing with --quiet."""

    def __init__(
        self,
        console: Console,
        quiet: bool = False,
        log: Console | None = None,
        every: float | None = None,
    ):
        self.progress: Progress | None = None
        self.log = None if quiet or console.is_terminal else log
        self.every = LINE_SECONDS if every is None else every
        if console.is_terminal and not quiet:
            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[count]}"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )
        self.task: Any = None
        self.stage: str | None = None
        self.count = ""
        self.started = self.said = time.monotonic()
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.timer: threading.Thread | None = None

    def __enter__(self) -> StageProgress:
        if self.progress is not None:
            self.progress.start()
        if self.log is not None:
            self.timer = threading.Thread(target=self._heartbeat, daemon=True)
            self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        if self.progress is not None:
            self.progress.stop()
        if self.timer is not None:
            self.timer.join()

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        count = f"{done:,}/{total:,}" if total else ""
        if self.log is not None:
            with self.lock:
                if stage != self.stage:
                    self.stage, self.started = stage, time.monotonic()
                    self._say(stage + (f" ({count})" if count else ""))
                self.count = count
        if self.progress is None:
            return
        if self.task is None:
            self.task = self.progress.add_task(stage, total=total, count=count)
        self.progress.update(self.task, description=stage, completed=done, total=total, count=count)

    def _heartbeat(self) -> None:
        while not self.stopped.wait(self.every / 6):
            with self.lock:
                if self.stage is not None and time.monotonic() - self.said >= self.every:
                    count = f": {self.count}" if self.count else ""
                    since = clock(time.monotonic() - self.started)
                    self._say(f"still {self.stage}{count} ({since})")

    def _say(self, text: str) -> None:
        assert self.log is not None
        self.log.print(text, soft_wrap=True)
        self.said = time.monotonic()
