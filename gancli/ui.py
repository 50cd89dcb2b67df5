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
    evaluation = report.get("evaluation")
    if evaluation:
        rows.append(("last evaluation", evaluation_line(evaluation)))
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


# --------------------------------------------------------------------------- evaluate


def _evaluation_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(metric, model, real floor) rows of an evaluation report."""
    model, floor = report["model"], report.get("floor") or {}
    classes = len(report["class_names"])

    def cell(scores: dict[str, Any], key: str) -> str:
        if key not in scores:
            return "-"
        value = scores[key]
        if key == "kid":
            return f"{1000 * value:.2f} ± {1000 * scores['kid_std']:.2f}"
        if key == "is":
            return f"{value:.2f} ± {scores['is_std']:.2f}"
        if key == "coverage":
            return f"{value}/{classes}"
        if key in ("precision", "recall", "accuracy"):
            return f"{100 * value:.1f}%"
        return f"{value:.3f}"

    labels = {
        "fid": "FID",
        "kid": "KID x 1000",
        "is": "IS (class score)",
        "precision": "precision",
        "recall": "recall",
        "coverage": "classes covered",
        "accuracy": "class accuracy",
    }
    return [(label, cell(model, key), cell(floor, key)) for key, label in labels.items()]


def render_evaluation(report: dict[str, Any], console: Console) -> None:
    """The model's figures beside the real-data floor, then what they were measured with."""
    rows = _evaluation_rows(report)
    model = report["model"]
    notes = [
        f"{report['checkpoint']} (epoch {report['epoch']}{', EMA' if report['ema'] else ''}), "
        f"n={report['n']}, seed {report['seed']}",
        f"features: {report['extractor']} (sha256 {report['extractor_sha256'][:12]}); "
        f"evaluator accuracy {100 * report['evaluator_accuracy']:.2f}% on held-out images",
        f"reference: {report['reference']}",
    ]
    if report.get("floor"):
        notes.append(f"real floor: {report['floor']['source']} scored the same way")
        ratio = model["fid"] / max(report["floor"]["fid"], 1e-12)
        notes.append(f"FID is {ratio:.1f}x the real floor")
    if model.get("class_shares"):
        shares = zip(report["class_names"], model["class_shares"], strict=True)
        notes.append("class shares: " + " ".join(f"{n}:{100 * s:.0f}%" for n, s in shares))
    if model.get("accuracy_per_class"):
        worst = min(model["accuracy_per_class"].items(), key=lambda kv: kv[1])
        notes.append(f"worst class: {worst[0]} at {100 * worst[1]:.1f}%")
    if report.get("saved_to"):
        notes.append(f"appended to {report['saved_to']}")
    if not console.is_terminal:
        console.print(f"{'metric':<18} {'model':>16} {'real floor':>16}", soft_wrap=True)
        for metric, ours, floor in rows:
            console.print(f"{metric:<18} {ours:>16} {floor:>16}", soft_wrap=True)
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
