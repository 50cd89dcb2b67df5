"""Usage: reporter = make_reporter(console, quiet=False)

Terminal rendering for the CLI: a live Rich progress bar on a terminal, plain
one-line-per-epoch logs anywhere else (pipes, files, CI), nothing at all with --quiet.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

if TYPE_CHECKING:  # the engine's modules load PyTorch: only their types are needed here
    from gancli.engine.inspection import InspectReport, Network
    from gancli.engine.inspection import Progress as RunProgress
    from gancli.engine.scoring import EvalReport, Scores


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
    where = f"{info['device']} ({info['threads']} threads"
    if info.get("world_size", 1) > 1:
        kind = str(info["device"]).split(":")[0]
        where = f"{info['world_size']} processes ({kind}, {info['threads']} threads each"
    if info.get("precision", "fp32") != "fp32":
        where += f", {info['precision']} autocast"
    return (
        f"run {info['run_dir']} on {where}), "
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


def _facts(report: InspectReport) -> list[tuple[str, str]]:
    """The report's headline facts as (label, value) rows."""
    rows = [("kind", report.kind), ("path", report.path)]
    data = report.data
    if data is not None:
        images = getattr(data, "images", None)
        size = f"{images} {getattr(data, 'split', '') or ''} images, " if images else ""
        count = f"{len(data.classes)} classes" if data.classes else "classes known once read"
        rows.append(("data", f"{data.dataset}: {size}{count}, shape {data.image_shape}"))
        if getattr(data, "source", None):
            rows.append(("data source", str(getattr(data, "source", ""))))
    if report.config_error:
        rows.append(("config", f"unreadable: {report.config_error}"))
    if report.progress is not None:
        rows += _progress_rows(report.progress)
    for ck in report.checkpoints:
        if ck.loads:
            state = f"loads safely, epoch {ck.epoch}, " + (
                "can resume" if ck.can_resume else f"cannot resume (no {ck.missing_for_resume})"
            )
        else:
            state = ck.error or "does not load"
        rows.append((f"checkpoint {ck.file}", f"{ck.bytes / 2**20:.1f} MB, {state}"))
        rows.append(("  sha256", ck.sha256))
    if report.evaluation:
        rows.append(("last evaluation", evaluation_line(report.evaluation)))
    return rows


def _progress_rows(progress: RunProgress) -> list[tuple[str, str]]:
    rows = []
    if progress.epochs_done is not None:
        mid = f" (+{progress.mid_epoch_step} steps)" if progress.mid_epoch_step else ""
        rows.append(
            (
                "progress",
                f"epoch {progress.epochs_done}{mid} of {progress.epochs_planned}, "
                f"{progress.steps} G steps, {progress.seconds or 0:.0f} s trained",
            )
        )
    if progress.last_epoch:
        rows.append(("last epoch", _losses(progress.last_epoch)))
    if progress.images_per_second:
        rows.append(("speed", f"{progress.images_per_second:.0f} images/s"))
    for label, line in (
        ("loss_d", progress.loss_d_sparkline),
        ("loss_g", progress.loss_g_sparkline),
    ):
        if line:
            rows.append((label, line))
    if progress.ema is not None:
        rows.append(("EMA generator", "yes" if progress.ema else "no"))
    return rows


def evaluation_line(record: dict[str, Any]) -> str:
    """One line of an eval.json record: the model's headline figures beside the floor's."""
    if "model" not in record:
        return str(record.get("error", "unreadable"))
    model, floor = record["model"], record.get("floor") or {}
    parts = [f"FID {model['fid']:.3g}" + (f" (real floor {floor['fid']:.3g})" if floor else "")]
    parts.append(f"coverage {model['coverage']}/{len(record.get('class_names', []))}")
    if "precision" in model:
        parts.append(f"precision {model['precision']:.2f} recall {model['recall']:.2f}")
    if "accuracy" in model:
        parts.append(f"class accuracy {100 * model['accuracy']:.1f}%")
    return f"epoch {record['epoch']}, n={record['n']}: " + ", ".join(parts)


def _config_lines(config: dict[str, Any]) -> list[str]:
    lines = []
    for section, values in config.items():
        if isinstance(values, dict):
            lines.append(f"{section}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
        elif values:
            lines.append(f"{section}: {values}")
    return lines


def _arch_rows(net: Network) -> list[tuple[str, str, str]]:
    return [
        (row.layer, "x".join(str(v) for v in row.output), f"{row.parameters:,}")
        for row in net.layers
    ]


def render_report(report: InspectReport, console: Console) -> None:
    """Rich panels and tables on a terminal; plain aligned text anywhere else."""
    facts, config = _facts(report), _config_lines(report.config or {})
    arch = report.architecture
    both = (("generator", arch.generator), ("discriminator", arch.discriminator)) if arch else ()
    nets = [(name, net) for name, net in both if net is not None]
    if not console.is_terminal:
        width = max(len(label) for label, _ in facts)
        for label, value in facts:
            console.print(f"{label:<{width}}  {value}", soft_wrap=True)
        for line in config:
            console.print(f"config {line}", soft_wrap=True)
        for name, net in nets:
            console.print(
                f"{name}: {net.parameters:,} parameters, {net.size_mb} MB", soft_wrap=True
            )
            for layer, shape, params in _arch_rows(net):
                console.print(f"  {layer:<36} {shape:>10} {params:>10}", soft_wrap=True)
        return
    from rich.panel import Panel
    from rich.table import Table

    summary = Table.grid(padding=(0, 2))
    for label, value in facts:
        summary.add_row(f"[bold]{label}", value)
    console.print(Panel(summary, title=f"gancli inspect: {report.name or report.kind}"))
    if config:
        console.print(Panel("\n".join(config), title="config"))
    for name, net in nets:
        table = Table(title=f"{name}: {net.parameters:,} parameters, {net.size_mb} MB")
        for column, justify in (("layer", "left"), ("output", "right"), ("parameters", "right")):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for row in _arch_rows(net):
            table.add_row(*row)
        console.print(table)


# --------------------------------------------------------------------------- evaluate


def _evaluation_rows(report: EvalReport) -> list[tuple[str, str, str]]:
    """(metric, model, real floor) rows of an evaluation report."""
    classes = len(report.class_names)

    def cell(scores: Scores | None, key: str) -> str:
        value = getattr(scores, key, None)
        if value is None or scores is None:
            return "-"
        if key == "kid":
            return f"{1000 * value:.2f} ± {1000 * (scores.kid_std or 0):.2f}"
        if key == "inception_score":
            return f"{value:.2f} ± {scores.inception_score_std or 0:.2f}"
        if key == "coverage":
            return f"{value}/{classes}"
        if key in ("precision", "recall", "confident", "accuracy"):
            return f"{100 * value:.1f}%"
        return f"{value:.3f}"

    labels = {
        "fid": "FID",
        "kid": "KID x 1000",
        "inception_score": "IS (class score)",
        "precision": "precision",
        "recall": "recall",
        "coverage": "classes covered",
        "confident": "read clearly (p >= 0.9)",
        "accuracy": "class accuracy",
    }
    return [
        (label, cell(report.model, key), cell(report.floor, key)) for key, label in labels.items()
    ]


def render_evaluation(report: EvalReport, console: Console) -> None:
    """The model's figures beside the real-data floor, then what they were measured with."""
    rows = _evaluation_rows(report)
    model = report.model
    notes = [
        f"{report.checkpoint} (epoch {report.epoch}{', EMA' if report.ema else ''}), "
        f"n={report.n}, seed {report.seed}",
        f"features: {report.extractor} (sha256 {report.extractor_sha256[:12]}); "
        f"evaluator accuracy {100 * report.evaluator_accuracy:.2f}% on held-out images",
        f"reference: {report.reference}",
    ]
    if report.floor is not None:
        notes.append(f"real floor: {report.floor.source} scored the same way")
        ratio = model.fid / max(report.floor.fid, 1e-12)
        notes.append(f"FID is {ratio:.1f}x the real floor")
    if model.class_shares:
        shares = zip(report.class_names, model.class_shares, strict=True)
        notes.append("class shares: " + " ".join(f"{n}:{100 * s:.0f}%" for n, s in shares))
    if model.accuracy_per_class:
        worst = min(model.accuracy_per_class.items(), key=lambda kv: kv[1])
        notes.append(f"worst class: {worst[0]} at {100 * worst[1]:.1f}%")
    if report.saved_to:
        notes.append(f"appended to {report.saved_to}")
    if not console.is_terminal:
        width = max(len(metric) for metric, _, _ in rows)
        console.print(f"{'metric':<{width}} {'model':>16} {'real floor':>16}", soft_wrap=True)
        for metric, ours, floor in rows:
            console.print(f"{metric:<{width}} {ours:>16} {floor:>16}", soft_wrap=True)
        for note in notes:
            console.print(note, soft_wrap=True)
        return
    from rich.table import Table

    table = Table(title="gancli evaluate")
    table.add_column("metric")
    table.add_column("model", justify="right")
    table.add_column("real floor", justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for note in notes:
        console.print(note, soft_wrap=True)
