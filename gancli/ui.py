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


# --------------------------------------------------------------------------- inspect / presets


def render_presets(presets: dict[str, str], console: Console) -> None:
    width = max((len(name) for name in presets), default=0)
    for name, description in presets.items():
        console.print(f"{name:<{width}}  {description}", soft_wrap=True)


def _facts(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The report's headline facts as (label, value) rows."""
    rows = [("kind", report["kind"]), ("path", report["path"])]
    data = report.get("data")
    if data:
        classes = data.get("classes")
        size = f"{data['images']} {data.get('split', '')} images, " if data.get("images") else ""
        count = f"{len(classes)} classes" if classes else "classes known once read"
        rows.append(("data", f"{data['dataset']}: {size}{count}, shape {data['image_shape']}"))
        if data.get("source"):
            rows.append(("data source", str(data["source"])))
    progress = report.get("progress") or {}
    if "epochs_done" in progress:
        mid = f" (+{progress['mid_epoch_step']} steps)" if progress.get("mid_epoch_step") else ""
        rows.append(
            (
                "progress",
                f"epoch {progress['epochs_done']}{mid} of {progress['epochs_planned']}, "
                f"{progress['steps']} G steps, {progress['seconds']:.0f} s trained",
            )
        )
    last = progress.get("last_epoch")
    if last:
        rows.append(("last epoch", _losses(last)))
    if progress.get("images_per_second"):
        rows.append(("speed", f"{progress['images_per_second']:.0f} images/s"))
    for key in ("loss_d_sparkline", "loss_g_sparkline"):
        if progress.get(key):
            rows.append((key.replace("_sparkline", ""), progress[key]))
    if "ema" in progress:
        rows.append(("EMA generator", "yes" if progress["ema"] else "no"))
    for ck in report.get("checkpoints", []):
        if ck.get("loads"):
            state = f"loads safely, epoch {ck['epoch']}, " + (
                "can resume"
                if ck["can_resume"]
                else f"cannot resume (no {ck['missing_for_resume']})"
            )
        else:
            state = ck.get("error", "does not load")
        rows.append((f"checkpoint {ck['file']}", f"{ck['bytes'] / 2**20:.1f} MB, {state}"))
        rows.append(("  sha256", ck["sha256"]))
    if report.get("evaluation"):
        rows.append(("evaluation", json.dumps(report["evaluation"])[:200]))
    return rows


def _config_lines(config: dict[str, Any]) -> list[str]:
    lines = []
    for section, values in config.items():
        if isinstance(values, dict):
            lines.append(f"{section}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
        elif values:
            lines.append(f"{section}: {values}")
    return lines


def _arch_rows(arch: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (row["layer"], "x".join(str(v) for v in row["output"]), f"{row['parameters']:,}")
        for row in arch["layers"]
    ]


def render_report(report: dict[str, Any], console: Console) -> None:
    """Rich panels and tables on a terminal; plain aligned text anywhere else."""
    facts, config = _facts(report), _config_lines(report.get("config", {}))
    arch = report.get("architecture") or {}
    nets = [(name, arch[name]) for name in ("generator", "discriminator") if name in arch]
    if not console.is_terminal:
        width = max(len(label) for label, _ in facts)
        for label, value in facts:
            console.print(f"{label:<{width}}  {value}", soft_wrap=True)
        for line in config:
            console.print(f"config {line}", soft_wrap=True)
        for name, net in nets:
            console.print(
                f"{name}: {net['parameters']:,} parameters, {net['size_mb']} MB", soft_wrap=True
            )
            for layer, shape, params in _arch_rows(net):
                console.print(f"  {layer:<36} {shape:>10} {params:>10}", soft_wrap=True)
        return
    from rich.panel import Panel
    from rich.table import Table

    summary = Table.grid(padding=(0, 2))
    for label, value in facts:
        summary.add_row(f"[bold]{label}", value)
    console.print(Panel(summary, title=f"gancli inspect: {report.get('name', report['kind'])}"))
    if config:
        console.print(Panel("\n".join(config), title="config"))
    for name, net in nets:
        table = Table(title=f"{name}: {net['parameters']:,} parameters, {net['size_mb']} MB")
        for column, justify in (("layer", "left"), ("output", "right"), ("parameters", "right")):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for row in _arch_rows(net):
            table.add_row(*row)
        console.print(table)
