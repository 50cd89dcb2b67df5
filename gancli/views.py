"""Usage: render_report(inspect_target("runs/x"), make_console(False))

What the commands print when done: the one-line results of `train` and `sample`, and the
tables of `inspect`, `evaluate` and `presets`, on a console from gancli.ui.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from rich.console import Console

from gancli.engine.records import evaluation_rows
from gancli.reporting import losses_text
from gancli.ui import printable

if TYPE_CHECKING:  # the engine's modules load PyTorch: only their types are needed here
    from gancli.engine.inspection import InspectReport, Network
    from gancli.engine.inspection import Progress as RunProgress
    from gancli.engine.scoring import EvalReport


def done_line(result: Any) -> str:
    """The last line of `gancli train`: what the run holds now and, after a resume, what
    this process added to it (a TrainResult)."""
    where = f"; run directory {result.run_dir}"
    now = f"in {result.seconds:.1f}s ({result.images_per_second:.0f} img/s)"
    epochs = f"{result.epochs} epoch{'s' if result.epochs != 1 else ''}"
    if not result.start_step:
        return f"done: {epochs}, {result.steps} steps {now}{where}"
    return (
        f"done: {epochs}, {result.steps} steps in all; resumed at step "
        f"{result.start_step} (epoch {result.start_epoch + 1}), "
        f"{result.steps - result.start_step} steps {now}{where}"
    )


def classes_phrase(classes: list[str], num_classes: int) -> str:
    """' of class 7', ' of every class (10, in equal shares)' or '' for `sample`'s line."""
    if not classes:
        return ""
    if len(classes) == num_classes > 1 and len(set(classes)) == num_classes:
        return f" of every class ({num_classes}, in equal shares)"
    return f" of class {', '.join(classes)}"


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
        rows.append(("  sha256", ck.sha256 or "not computed (refused before reading it whole)"))
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
        rows.append(("last epoch", losses_text(progress.last_epoch)))
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
            pairs = ", ".join(f"{k}={printable(str(v))}" for k, v in values.items())
            lines.append(f"{section}: {pairs}")
        elif values:
            lines.append(f"{section}: {printable(str(values))}")
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
    from rich.text import Text

    summary = Table.grid(padding=(0, 2))
    for label, value in facts:
        summary.add_row(Text(label, style="bold"), value)
    title = Text(printable(f"gancli inspect: {report.name or report.kind}"))
    console.print(Panel(summary, title=title))
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


def render_evaluation(report: EvalReport, console: Console) -> None:
    """The model's figures beside the real-data floor, then what they were measured with."""
    model = report.model
    floor = dataclasses.asdict(report.floor) if report.floor is not None else None
    rows = evaluation_rows(dataclasses.asdict(model), floor, len(report.class_names))
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
    if console.is_terminal:
        from rich.table import Table

        table = Table(title="gancli evaluate")
        table.add_column("metric")
        table.add_column("model", justify="right")
        table.add_column("real floor", justify="right")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    else:
        width = max(len(metric) for metric, _, _ in rows)
        for metric, ours, real in (("metric", "model", "real floor"), *rows):
            console.print(f"{metric:<{width}} {ours:>16} {real:>16}", soft_wrap=True)
    for note in notes:
        console.print(note, soft_wrap=True)
