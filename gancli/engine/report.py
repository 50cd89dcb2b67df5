"""Usage: write_report("runs/dcgan-mnist-001")  # writes runs/dcgan-mnist-001/report.html

One self-contained HTML page per run, to read anywhere or send by mail: the run's name and
config, its epoch grids in order, the progress GIF, loss curves, the last evaluation beside
the real-data floor, training's warnings and the checkpoints on disk. Images are embedded
as data: URIs and the page loads nothing from anywhere (its Content-Security-Policy forbids
it, and it holds no script). Every piece of text that comes from the run is HTML-escaped.

A run folder that is damaged or unfinished (no grids yet, a junk line in metrics.jsonl, no
or a broken eval.json, a truncated image) still gets a page with what there is, and the
page names each problem; a folder that is not a run, or one whose layout is wrong (a
folder named config.yaml), is refused with one line, as every other command does.
"""

from __future__ import annotations

import base64
import datetime
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from PIL import Image, ImageSequence

import gancli
from gancli.engine.animation import epoch_grids
from gancli.engine.config import config_to_dict, load_config
from gancli.engine.errors import CheckpointError, GancliError
from gancli.engine.files import atomic_write, check_output_file, check_writable, readable
from gancli.engine.limits import human_bytes
from gancli.engine.plots import loss_charts
from gancli.engine.records import evaluation_rows, read_evaluations
from gancli.engine.runs import RunDir, latest_run, runs_root, stat_problem

REPORT_NAME = "report.html"  # the run's own page, which `gancli report` may replace
MAX_GRIDS = 24  # epoch grids on one page; a longer run shows an even selection
DISPLAY_WIDTH = 640  # CSS px a small image is enlarged toward, by a whole factor
MAX_IMAGE_BYTES = 32 * 2**20  # a larger image file is left out of the page, and named


@dataclass
class Picture:
    """An image file, checked and ready to embed."""

    caption: str
    uri: str  # data:image/...;base64,...
    width: int  # pixels
    height: int


@dataclass
class RunReport:
    """What a run folder holds, read leniently: every part that cannot be read is None or
    empty and has a line in `problems`."""

    name: str
    path: Path
    config: dict[str, Any] | None = None
    grids: list[Picture] = field(default_factory=list)
    grids_total: int = 0
    reals: Picture | None = None
    progress_gif: Picture | None = None
    records: list[dict[str, Any]] | None = None  # metrics.jsonl; None when unreadable
    losses_png: Picture | None = None  # shown only when metrics.jsonl cannot be
    evaluation: dict[str, Any] | None = None  # the last record of eval.json
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def warnings(self) -> list[dict[str, Any]]:
        return [r for r in self.records or [] if r.get("kind") == "warning"]


def open_run_for_report(path: str | Path) -> RunDir:
    """A run folder to report on: like RunDir.open, but one without a checkpoint yet (still
    in its first epoch, or stopped before it) is reported too, from what it holds."""
    run = RunDir(Path(path).expanduser())
    problem = stat_problem(run.path)
    if problem or not run.path.exists():
        raise CheckpointError(f"run directory not found: {run.path}{problem}")
    if not run.path.is_dir():
        raise CheckpointError(f"{run.path} is not a folder; gancli report takes a run directory")
    run.check_layout()
    if not run.config.is_file() and not any(p.is_file() for p in run.checkpoint_files()):
        raise CheckpointError(
            f"{run.path} holds no config.yaml and no checkpoints/*.pt; is it a gancli run?"
        )
    return run


def write_report(
    path: str | None, out: str | None = None, force: bool = False, runs: str | None = None
) -> dict[str, Any]:
    """`gancli report`: write the page of the run at `path` (None: the latest run under
    `runs`) to `out` (default RUN/report.html, which is replaced: it is the run's own). Any
    other existing `out` is replaced only with `force`, and a new one is created
    exclusively. Returns what was written, and the problems the page names."""
    run = open_run_for_report(path) if path else latest_run(runs_root(runs))
    target = Path(out) if out else run.path / REPORT_NAME
    replace = force or not out
    # Refused before any image is read: a page that cannot be written at `target`.
    check_output_file(target, (".html", ".htm"), ".html", replace)
    check_writable(target.parent, "--out")
    report = collect(run)
    page = readable(render(report)).encode("utf-8")  # run, file and class names included
    with atomic_write(target, replace=replace) as tmp:
        tmp.write_bytes(page)
    return {
        "out": str(target),
        "bytes": len(page),
        "grids": len(report.grids),
        "grids_total": report.grids_total,
        "progress_gif": report.progress_gif is not None,
        "evaluation": report.evaluation is not None,
        "warnings": len(report.warnings),
        "checkpoints": [c["file"] for c in report.checkpoints],
        "problems": report.problems,
    }


# --------------------------------------------------------------------------- reading


def collect(run: RunDir) -> RunReport:
    """Everything the page shows, each part read on its own so one damaged file costs only
    its own section."""
    report = RunReport(run.path.name, run.path)
    problems = report.problems
    if run.config.is_file():
        try:
            report.config = config_to_dict(load_config(run.config))
        except GancliError as exc:
            problems.append(f"config.yaml cannot be read: {exc}")
    else:
        problems.append(f"{run.config} is missing")
    grids = epoch_grids(run)
    report.grids_total = len(grids)
    for epoch, path in pick_evenly(grids, MAX_GRIDS):
        picture = _picture(path, f"epoch {epoch}", problems)
        if picture is not None:
            report.grids.append(picture)
    if run.reals.exists():
        report.reals = _picture(run.reals, "real images, laid out like the grids", problems)
    if run.progress_gif.exists():
        report.progress_gif = _picture(run.progress_gif, "progress.gif", problems)
    try:
        report.records = run.log.read()
    except GancliError as exc:
        problems.append(str(exc))
        if run.losses_plot.exists():
            report.losses_png = _picture(run.losses_plot, "losses.png", problems)
    try:
        evaluations = read_evaluations(run.evaluations)
        report.evaluation = evaluations[-1] if evaluations else None
    except GancliError as exc:
        problems.append(str(exc))
    for path in run.checkpoint_files():
        if path.is_file():
            stat = path.stat()
            when = datetime.datetime.fromtimestamp(stat.st_mtime, datetime.timezone.utc)
            report.checkpoints.append(
                {
                    "file": path.name,
                    "bytes": stat.st_size,
                    "written": when.isoformat("T", "seconds"),
                }
            )
    return report


def pick_evenly(items: list[Any], most: int) -> list[Any]:
    """All of `items`, or `most` of them evenly spread, the first and the last included."""
    if len(items) <= most:
        return list(items)
    if most <= 1:
        return items[-1:]
    last = len(items) - 1
    return [items[round(i * last / (most - 1))] for i in range(most)]


def _picture(path: Path, caption: str, problems: list[str]) -> Picture | None:
    """The image at `path` checked whole by Pillow (every frame of a GIF), or None with a
    line in `problems` naming why it is left out."""
    try:
        if not path.is_file():  # a folder, or a FIFO that would block the read
            problems.append(f"{path} is not a regular file; left out of the page")
            return None
        size = path.stat().st_size
        if size > MAX_IMAGE_BYTES:
            problems.append(
                f"{path} is {human_bytes(size)}; images over {human_bytes(MAX_IMAGE_BYTES)} "
                "are left out of the page"
            )
            return None
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            kind, width, height = image.format, image.width, image.height
            for frame in ImageSequence.Iterator(image):
                frame.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc).split(";")[0][:100]
        problems.append(f"{path} is not a readable image ({reason}); left out of the page")
        return None
    if kind not in ("PNG", "GIF"):
        problems.append(f"{path} is a {kind} file, not what gancli writes; left out of the page")
        return None
    uri = f"data:image/{kind.lower()};base64,{base64.b64encode(data).decode('ascii')}"
    return Picture(caption, uri, width, height)


# --------------------------------------------------------------------------- rendering

STYLE = """
:root { color-scheme: light dark; font-family: system-ui, sans-serif; line-height: 1.45 }
body { max-width: 72rem; margin: 2rem auto; padding: 0 1rem }
h1 { margin-bottom: 0.2rem; overflow-wrap: anywhere }
.lede { margin-top: 0; opacity: 0.8 }
section { margin: 2rem 0 }
figure { display: inline-block; margin: 0 1rem 1rem 0; vertical-align: top }
figcaption { font-size: 0.9rem; opacity: 0.8 }
img.pixels { image-rendering: pixelated; max-width: 100%; height: auto; background: #000 }
img.plot { max-width: 100%; height: auto }
svg.chart { display: block; max-width: 100%; height: auto; margin-bottom: 1rem }
table { border-collapse: collapse; margin-bottom: 1rem }
th, td { padding: 0.2rem 0.7rem; border-bottom: 1px solid rgba(128, 128, 128, 0.35);
         text-align: left; vertical-align: top; overflow-wrap: anywhere }
td.number { text-align: right; font-variant-numeric: tabular-nums }
.problems { border-left: 4px solid #d9822b; padding-left: 1rem }
.note { opacity: 0.8 }
.columns { display: flex; flex-wrap: wrap; gap: 0 2.5rem; align-items: flex-start }
h3 { margin: 0.5rem 0 }
"""


def render(report: RunReport) -> str:
    """The page: fixed sections in a fixed order (a problems section first when there are
    any), every run-supplied string escaped."""
    name = escape(report.name)
    description = (report.config or {}).get("description") or ""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # Nothing may be fetched or run: images come from the page itself.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">",
        '<meta name="generator" content="gancli">',
        f"<title>gancli report: {name}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<header><h1>{name}</h1>",
    ]
    if description:
        parts.append(f'<p class="lede">{escape(str(description))}</p>')
    now = datetime.datetime.now(datetime.timezone.utc).isoformat("T", "seconds")
    parts.append(
        f'<p class="note">{escape(str(report.path))}; page written by gancli '
        f"{escape(gancli.__version__)} at {now}</p></header>"
    )
    if report.problems:
        items = "".join(f"<li>{escape(p)}</li>" for p in report.problems)
        parts.append(
            '<section id="problems" class="problems"><h2>Problems</h2>'
            f"<p>Parts of this run could not be read; the page shows the rest.</p>"
            f"<ul>{items}</ul></section>"
        )
    sections = (
        ("summary", "Summary", _summary),
        ("config", "Config", _config),
        ("grids", "Epoch grids", _grids),
        ("progress", "Progress", _progress),
        ("losses", "Loss curves", _losses),
        ("evaluation", "Evaluation", _evaluation),
        ("warnings", "Warnings", _warnings),
        ("checkpoints", "Checkpoints", _checkpoints),
    )
    for key, title, body in sections:
        parts.append(f'<section id="{key}"><h2>{title}</h2>{body(report)}</section>')
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _summary(report: RunReport) -> str:
    config = report.config or {}
    records = report.records or []
    epochs = [r for r in records if r.get("kind") == "epoch"]
    rows: list[tuple[str, str]] = []
    if config:
        data, model, objective = config["data"], config["model"], config["objective"]
        rows.append(("dataset", f"{data['dataset']} ({data['image_size']} px)"))
        kind = "conditional " if model["conditional"] else ""
        rows.append(("model", f"{kind}{model['arch']}, objective {objective['loss']}"))
    planned = f" of {config['training']['epochs']}" if config else ""
    done = epochs[-1]["epoch"] if epochs else 0
    rows.append(("epochs done", f"{done}{planned}"))
    if records:
        rows.append(("generator steps", f"{max(r['step'] for r in records):,}"))
    if epochs:
        last = epochs[-1]
        rows.append(
            (
                "last epoch",
                f"loss D {last['loss_d']:.4g}, loss G {last['loss_g']:.4g}, "
                f"D(x) {last['d_real']:.3g}, D(G(z)) {last['d_fake']:.3g}",
            )
        )
    rows.append(("epoch grids", f"{report.grids_total}"))
    rows.append(("checkpoints", f"{len(report.checkpoints)}"))
    return _table(None, rows)


def _config(report: RunReport) -> str:
    if report.config is None:
        return '<p class="note">No readable config.yaml (see Problems).</p>'
    out = []
    for section, values in report.config.items():
        if not isinstance(values, dict):
            continue
        rows = [(key, _value(value)) for key, value in values.items()]
        out.append(f"<div><h3>{escape(section)}</h3>{_table(('key', 'value'), rows)}</div>")
    return f'<div class="columns">{"".join(out)}</div>'


def _grids(report: RunReport) -> str:
    if not report.grids_total:
        return (
            '<p class="note">No epoch grids yet: training writes samples/epoch_NNNN.png at '
            "the end of each epoch.</p>"
        )
    shown = len(report.grids)
    if report.grids_total > MAX_GRIDS:
        what = (
            f"{shown} of {report.grids_total} epoch grids, evenly spaced, the first and the "
            "last included; all of them are in samples/."
        )
    else:
        what = f"All {report.grids_total} epoch grids, in order, from the same fixed noise."
    figures = "".join(_figure(p) for p in report.grids)
    reals = _figure(report.reals) if report.reals else ""
    return f'<p class="note">{escape(what)}</p>{figures}{reals}'


def _progress(report: RunReport) -> str:
    if report.progress_gif is None:
        return (
            '<p class="note">No progress.gif: training writes it once every epoch is done '
            "(gancli animate RUN writes it at any time).</p>"
        )
    return _figure(report.progress_gif)


def _losses(report: RunReport) -> str:
    if report.records is None:
        if report.losses_png is None:
            return '<p class="note">metrics.jsonl cannot be read (see Problems).</p>'
        return (
            '<p class="note">metrics.jsonl cannot be read (see Problems); this is '
            "losses.png as training last drew it.</p>"
            f'<img class="plot" src="{report.losses_png.uri}" alt="losses.png" '
            f'width="{report.losses_png.width}" height="{report.losses_png.height}">'
        )
    charts = loss_charts(report.records)
    if not charts:
        return '<p class="note">No losses logged yet.</p>'
    return "".join(charts) + (
        '<p class="note">From metrics.jsonl; dashed lines mark where epochs ended.</p>'
    )


def _evaluation(report: RunReport) -> str:
    checks = [r for r in report.records or [] if r.get("kind") == "eval"]
    out = []
    record = report.evaluation
    if record is None:
        out.append(
            '<p class="note">No evaluation in eval.json; gancli evaluate RUN scores the '
            "generator and adds one.</p>"
        )
    else:
        model, floor = record["model"], record.get("floor")
        classes = record["class_names"]
        out.append(
            _table(("metric", "model", "real floor"), evaluation_rows(model, floor, len(classes)))
        )
        notes = [
            f"epoch {record['epoch']}, n={record['n']}, seed {record.get('seed', '?')}, "
            f"{'EMA generator' if record.get('ema') else 'generator'}; "
            f"checkpoint {record.get('checkpoint', '?')}",
            f"features: {record.get('extractor', '?')}; reference: {record.get('reference', '?')}",
        ]
        if floor:
            ratio = model["fid"] / max(floor["fid"], 1e-12)
            notes.append(
                f"FID is {ratio:.1f}x the real floor ({floor.get('source', 'real images')})"
            )
        shares = model.get("class_shares")
        if isinstance(shares, list) and len(shares) == len(classes):
            notes.append(
                "class shares: "
                + ", ".join(f"{c}: {_percent(s)}" for c, s in zip(classes, shares, strict=True))
            )
        out.append("".join(f'<p class="note">{escape(n)}</p>' for n in notes))
    if checks:
        rows = [
            (str(r["epoch"]), f"{r['fid']:.4g}", str(r["coverage"]), _percent(r.get("accuracy")))
            for r in checks
        ]
        out.append("<h3>Checks during training (--eval-every)</h3>")
        out.append(_table(("epoch", "FID", "classes covered", "class accuracy"), rows))
    return "".join(out)


def _warnings(report: RunReport) -> str:
    if report.records is None:
        return '<p class="note">metrics.jsonl cannot be read (see Problems).</p>'
    if not report.warnings:
        return '<p class="note">Training logged no warnings.</p>'
    rows = [(str(r["epoch"]), f"{r['step']:,}", str(r.get("message", ""))) for r in report.warnings]
    return _table(("epoch", "step", "warning"), rows)


def _checkpoints(report: RunReport) -> str:
    if not report.checkpoints:
        return '<p class="note">No checkpoints yet: the first is written after epoch 1.</p>'
    rows = [(c["file"], human_bytes(c["bytes"]), c["written"]) for c in report.checkpoints]
    return _table(("file", "size", "written (UTC)"), rows) + (
        '<p class="note">gancli inspect RUN checks that each one loads and can resume.</p>'
    )


def _figure(picture: Picture) -> str:
    """A pixel image enlarged by the whole factor that brings it nearest DISPLAY_WIDTH,
    drawn with hard pixel edges: a 28 px digit smoothed by the browser would be a blur."""
    factor = max(1, round(DISPLAY_WIDTH / max(1, picture.width)))
    return (
        f'<figure><img class="pixels" src="{picture.uri}" alt="{escape(picture.caption)}" '
        f'width="{picture.width * factor}" height="{picture.height * factor}">'
        f"<figcaption>{escape(picture.caption)}</figcaption></figure>"
    )


def _table(header: tuple[str, ...] | None, rows: Sequence[tuple[str, ...]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header) if header else ""
    body = "".join(
        "<tr>" + "".join(_cell(i, value, header is None) for i, value in enumerate(row)) + "</tr>"
        for row in rows
    )
    return (
        f"<table>{f'<thead><tr>{head}</tr></thead>' if head else ''}<tbody>{body}</tbody></table>"
    )


def _cell(column: int, value: str, facts: bool) -> str:
    if facts and column == 0:
        return f"<th>{escape(value)}</th>"
    numeric = column > 0 and not facts and (value[:1].isdigit() or value == "-")
    style = ' class="number"' if numeric else ""
    return f"<td{style}>{escape(value)}</td>"


def _value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _percent(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{100 * value:.1f}%"
    return "-"
