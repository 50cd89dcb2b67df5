"""Usage: reporter = make_reporter(console, quiet=False)

Terminal rendering for the CLI: a live Rich progress bar on a terminal, plain
one-line-per-epoch logs anywhere else (pipes, files, CI), nothing at all with --quiet.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def make_console(json_mode: bool) -> Console:
    """Human output goes to stdout, or to stderr when stdout carries --json."""
    return Console(file=sys.stderr if json_mode else sys.stdout, highlight=False)


def print_json(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _losses(stats: dict[str, Any]) -> str:
    return (
        f"loss_d {stats['loss_d']:.3f}  loss_g {stats['loss_g']:.3f}  "
        f"D(x) {stats['d_real']:.3f}  D(G(z)) {stats['d_fake']:.3f}"
    )


def _start_line(info: dict[str, Any]) -> str:
    resumed = f", resuming at epoch {info['start_epoch'] + 1}" if info["start_step"] else ""
    return (
        f"run {info['run_dir']} on {info['device']} ({info['threads']} threads), "
        f"{info['dataset']}, {info['epochs']} epochs x {info['steps_per_epoch']} steps{resumed}"
    )


class PlainReporter:
    """One line when training starts, one per epoch: readable in logs, no control codes."""

    def __init__(self, console: Console):
        self.console = console

    def start(self, info: dict[str, Any]) -> None:
        self.epochs = info["epochs"]
        self.console.print(_start_line(info), soft_wrap=True)

    def advance(self, step: int, stats: dict[str, float] | None) -> None:
        pass

    def epoch(self, record: dict[str, Any]) -> None:
        rate = record["images_per_second"] or 0.0
        self.console.print(
            f"epoch {record['epoch']}/{self.epochs}  step {record['step']}  {_losses(record)}  "
            f"{rate:.0f} img/s  {record['wall']:.1f}s",
            soft_wrap=True,
        )

    def note(self, text: str) -> None:
        self.console.print(text, soft_wrap=True)

    def close(self) -> None:
        pass


class RichReporter(PlainReporter):
    """A live progress bar with the latest losses, images/s and ETA; epoch lines above it."""

    def start(self, info: dict[str, Any]) -> None:
        super().start(info)
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[losses]}"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.task = self.progress.add_task(
            "train",
            total=info["total_steps"],
            completed=info["start_step"],
            epoch=f"{info['start_epoch'] + 1}/{self.epochs}",
            losses="",
            rate="",
        )
        self.progress.start()

    def advance(self, step: int, stats: dict[str, float] | None) -> None:
        fields: dict[str, Any] = {}
        if stats is not None:
            fields["losses"] = _losses(stats)
            fields["rate"] = f"{stats['images_per_second'] or 0:.0f} img/s"
            fields["epoch"] = f"{stats['epoch']}/{self.epochs}"
        self.progress.update(self.task, completed=step, **fields)

    def epoch(self, record: dict[str, Any]) -> None:
        self.progress.console.print(
            f"epoch {record['epoch']}/{self.epochs}  {_losses(record)}  "
            f"{record['images_per_second'] or 0:.0f} img/s"
        )

    def note(self, text: str) -> None:
        self.progress.console.print(text)

    def close(self) -> None:
        if hasattr(self, "progress"):
            self.progress.stop()


class QuietReporter(PlainReporter):
    def __init__(self) -> None:
        pass

    def start(self, info: dict[str, Any]) -> None:
        pass

    def epoch(self, record: dict[str, Any]) -> None:
        pass

    def note(self, text: str) -> None:
        pass


def make_reporter(console: Console, quiet: bool) -> PlainReporter:
    if quiet:
        return QuietReporter()
    return RichReporter(console) if console.is_terminal else PlainReporter(console)
