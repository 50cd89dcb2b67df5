"""Usage: plot_losses(run.log.read(), run.losses_plot, title=run.path.name)

The loss, discriminator-output and (with --eval-every) FID and coverage curves of a run,
from its metrics.jsonl, with the ends of epochs marked. One layout per panel (ticks, labels,
legend, marks) is drawn two ways: with Pillow into losses.png, and as inline SVG for
`gancli report`. (A plotting library would add about a second to every run's first epoch
end, and half a second to each after it.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from gancli.engine.files import atomic_write

MAX_EPOCH_MARKS = 20  # more lines than this turn a long run's plot into a grey smear


def epoch_marks(
    records: list[dict[str, Any]], most: int = MAX_EPOCH_MARKS
) -> list[tuple[int, int]]:
    """(G step, epoch) where each finished epoch ended, from the epoch records, in order.

    A resumed run may hold an epoch's record twice; its last one counts. Beyond `most`
    epochs only every k-th is kept, k the first of 1, 2, 5, 10, 20, 50, ... that leaves at
    most `most`, so the marks fall on round epoch numbers."""
    ends: dict[int, int] = {}
    for record in records:
        if record.get("kind") == "epoch":
            ends[record["epoch"]] = record["step"]
    every = _round_interval(len(ends), most)
    return [(step, epoch) for epoch, step in sorted(ends.items()) if epoch % every == 0]


def _round_interval(count: int, most: int) -> int:
    """The first of 1, 2, 5, 10, 20, 50, ... that cuts `count` marks down to `most` or fewer."""
    scale = 1
    while True:
        for step in (1, 2, 5):
            if count // (step * scale) <= max(1, most):
                return step * scale
        scale *= 10


# --------------------------------------------------------------------------- layout

# A panel is laid out in user units: the report's SVG scales them to the page's width,
# losses.png draws them at PNG_SCALE pixels a unit.
SVG_WIDTH, SVG_HEIGHT = 720, 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 38, 40  # margins for tick labels and epoch numbers
MAX_CHART_POINTS = 1500  # points per curve; more add bytes, not detail, at this width
CURVE_COLOURS = ("#1f77b4", "#e8710a")
FONT_SIZE = 12  # units


@dataclass(frozen=True)
class Curve:
    label: str
    points: list[tuple[float, float]]  # (G step, value)


@dataclass(frozen=True)
class Panel:
    title: str
    y_label: str
    curves: list[Curve]
    log_y: bool = False  # FID spans decades: a log scale shows its late progress
    dots: bool = False  # a dot on every point: for curves of a few evaluations


@dataclass(frozen=True)
class Stroke:
    points: list[tuple[float, float]]
    colour: str | None = None  # None: the text colour
    width: float = 1.0
    opacity: float = 1.0
    dashed: bool = False
    dots: bool = False


@dataclass(frozen=True)
class Label:
    x: float
    y: float  # the baseline
    text: str
    anchor: str  # start, middle or end
    bold: bool = False
    vertical: bool = False  # read bottom to top, centred on (x, y)


@dataclass(frozen=True)
class Drawing:
    frame: tuple[float, float, float, float]  # x, y, width, height of the plot area
    strokes: list[Stroke]
    labels: list[Label]


def loss_panels(records: list[dict[str, Any]]) -> list[Panel]:
    """The panels of a run's records: losses and D's outputs once a step is logged, then
    FID and classes covered once an evaluation is (--eval-every)."""
    steps = [r for r in records if r.get("kind") == "step"]
    if not steps:
        return []

    def curve(label: str, key: str, rows: list[dict[str, Any]]) -> Curve:
        return Curve(label, [(r["step"], r[key]) for r in rows if key in r])

    panels = [
        Panel(
            "losses", "loss", [curve("loss D", "loss_d", steps), curve("loss G", "loss_g", steps)]
        ),
        Panel(
            "discriminator output",
            "D output",
            [curve("D(x)", "d_real", steps), curve("D(G(z))", "d_fake", steps)],
        ),
    ]
    evals = [r for r in records if r.get("kind") == "eval"]
    if evals:
        panels.append(
            Panel("FID (evaluator)", "FID", [curve("FID", "fid", evals)], log_y=True, dots=True)
        )
        coverage = [curve("classes", "coverage", evals)]
        panels.append(Panel("classes covered", "classes", coverage, dots=True))
    return panels


def layout(panel: Panel, marks: list[tuple[int, int]]) -> Drawing:
    """One panel: curves against G steps, ticked axes, a legend, and a dashed line with its
    number where each marked epoch ended. Values that are not finite (or not positive on a
    log scale) are left out."""

    def keep(value: Any) -> bool:
        return _finite(value) and (value > 0 or not panel.log_y)

    curves = [Curve(c.label, _thin([p for p in c.points if keep(p[1])])) for c in panel.curves]
    scale = math.log10 if panel.log_y else float
    values = [scale(v) for c in curves for _, v in c.points]
    x_high = max([s for c in curves for s, _ in c.points] + [s for s, _ in marks] + [1])
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (high - low) * 0.06 or 0.5
    low, high = low - pad, high + pad
    width, height = SVG_WIDTH - _LEFT - _RIGHT, SVG_HEIGHT - _TOP - _BOTTOM

    def x_at(step: float) -> float:
        return _LEFT + step / x_high * width

    def y_at(value: float) -> float:
        return _TOP + (high - scale(value)) / (high - low) * height

    strokes: list[Stroke] = []
    labels = [
        Label(_LEFT, 14, panel.title, "start", bold=True),
        Label(_LEFT + width / 2, SVG_HEIGHT - 6, "generator step", "middle"),
        Label(14, _TOP + height / 2, panel.y_label, "middle", vertical=True),
    ]
    y_ticks = _log_ticks(low, high) if panel.log_y else nice_ticks(low, high)
    for tick in y_ticks:
        y = y_at(tick)
        strokes.append(Stroke([(_LEFT, y), (_LEFT + width, y)], opacity=0.1))
        span = (10**low, 10**high) if panel.log_y else (low, high)
        labels.append(Label(_LEFT - 6, y + 4, _tick_label(tick, *span), "end"))
    for tick in nice_ticks(0, x_high):
        labels.append(Label(x_at(tick), _TOP + height + 16, _tick_label(tick, 0, x_high), "middle"))
    if marks:
        labels.append(Label(_LEFT - 6, _TOP - 6, "epoch", "end"))
    for step, epoch in marks:
        x = x_at(step)
        strokes.append(Stroke([(x, _TOP), (x, _TOP + height)], opacity=0.35, dashed=True))
        labels.append(Label(x, _TOP - 6, str(epoch), "middle"))
    # The legend shares the title's line, right-aligned, so it never covers a curve.
    key_x = float(_LEFT + width)
    for c, colour in reversed(list(zip(curves, CURVE_COLOURS, strict=False))):
        key_x -= 24 + 7.5 * len(c.label) + 12  # swatch, text at about 7.5 units a character
        strokes.append(Stroke([(key_x, 10), (key_x + 18, 10)], colour, width=2))
        labels.append(Label(key_x + 24, 14, c.label, "start"))
    for c, colour in zip(curves, CURVE_COLOURS, strict=False):
        points = [(x_at(s), y_at(v)) for s, v in c.points]
        strokes.append(Stroke(points, colour, width=1.5, dots=panel.dots))
    return Drawing((_LEFT, _TOP, width, height), strokes, labels)


# --------------------------------------------------------------------------- losses.png

PNG_SCALE = 1.25  # pixels a unit: 900 x 300 a panel
_SUPERSAMPLE = 2  # drawn at twice the size, then scaled down: smooth lines and text
_TITLE_HEIGHT = 36  # units above the panels for the run's name


def plot_losses(records: list[dict[str, Any]], out: Path, title: str = "") -> None:
    """losses.png: the panels of loss_panels, stacked, with where epochs ended marked and
    numbered, and `title` (the run's name) above them; nothing when no step is logged."""
    panels = loss_panels(records)
    if not panels:
        return
    marks = epoch_marks(records)
    k = PNG_SCALE * _SUPERSAMPLE
    top = _TITLE_HEIGHT if title else 0
    size = (round(SVG_WIDTH * k), round((top + SVG_HEIGHT * len(panels)) * k))
    image = Image.new("RGB", size, "white")
    pen = _Pen(ImageDraw.Draw(image), k)
    if title:
        pen.label(Label(SVG_WIDTH / 2, 24, title, "middle", bold=True), 0, size=15)
    for i, panel in enumerate(panels):
        pen.drawing(layout(panel, marks), top + i * SVG_HEIGHT)
    image = image.reduce(_SUPERSAMPLE)  # each pixel the mean of a 2 x 2 block
    with atomic_write(out) as tmp:
        image.save(tmp, format="PNG", optimize=False)


class _Pen:
    """Draws a layout's units onto a Pillow image, `k` pixels a unit, black on white."""

    def __init__(self, draw: Any, k: float):
        self.draw, self.k = draw, k
        self.fonts = {
            px: ImageFont.load_default(size=px) for px in (round(FONT_SIZE * k), round(15 * k))
        }

    def drawing(self, drawing: Drawing, y0: float) -> None:
        x, y, w, h = drawing.frame
        k = self.k
        box = (round(x * k), round((y0 + y) * k), round((x + w) * k), round((y0 + y + h) * k))
        self.draw.rectangle(box, outline=_grey(0.15), width=round(k))
        for stroke in drawing.strokes:
            self.stroke(stroke, y0)
        for label in drawing.labels:
            self.label(label, y0)

    def stroke(self, stroke: Stroke, y0: float) -> None:
        colour = stroke.colour or _grey(stroke.opacity)
        width = max(1, round(stroke.width * self.k))
        points = [(x * self.k, (y0 + y) * self.k) for x, y in stroke.points]
        if stroke.dashed:
            (x1, y1), (x2, y2) = points[0], points[-1]
            length, dash = math.hypot(x2 - x1, y2 - y1), 3 * self.k
            for i in range(math.ceil(length / (2 * dash))):
                a, b = 2 * i * dash / length, min(1.0, (2 * i + 1) * dash / length)
                segment = [(x1 + (x2 - x1) * t, y1 + (y2 - y1) * t) for t in (a, b)]
                self.draw.line(segment, fill=colour, width=width)
        elif len(points) > 1:
            self.draw.line(points, fill=colour, width=width, joint="curve")
        if stroke.dots:
            r = 3 * self.k
            for x, y in points:
                self.draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)

    def label(self, label: Label, y0: float, size: int = FONT_SIZE) -> None:
        font = self.fonts[round(size * self.k)]
        ascent, descent = _metrics(font)
        length = self.draw.textlength(label.text, font=font)
        shift = {"start": 0.0, "middle": length / 2, "end": length}[label.anchor]
        x, y = label.x * self.k, (y0 + label.y) * self.k
        if label.vertical:  # drawn level on its own image, turned, then pasted
            level = Image.new("L", (math.ceil(length) + 2, ascent + descent), 0)
            ImageDraw.Draw(level).text((1, 0), label.text, font=font, fill=255)
            turned = level.rotate(90, expand=True)
            corner = (round(x - turned.width / 2), round(y - turned.height / 2))
            self.draw.bitmap(corner, turned, fill="black")
            return
        for dx in (0, 1) if label.bold else (0,):  # the default font has no bold face
            self.draw.text((x - shift + dx, y - ascent), label.text, font=font, fill="black")


def _metrics(font: Any) -> tuple[int, int]:
    """(ascent, descent) in pixels; Pillow built without FreeType has only a bitmap font."""
    if hasattr(font, "getmetrics"):
        return font.getmetrics()
    return font.getbbox("Ag")[3], 0


def _grey(opacity: float) -> str:
    """Black at this opacity over white."""
    level = round(255 * (1 - opacity))
    return f"#{level:02x}{level:02x}{level:02x}"


# --------------------------------------------------------------------------- inline SVG

# The report draws the same panels as vector graphics inside its page: sharp at any zoom
# and in print, a few kilobytes, text that can be searched, and up to date with
# metrics.jsonl even mid-epoch (losses.png is redrawn only at the end of each epoch).


def loss_charts(records: list[dict[str, Any]]) -> list[str]:
    """The panels of loss_panels as SVG drawings (none when no step has been logged yet),
    with the ends of epochs marked."""
    marks = epoch_marks(records)
    return [svg_chart(layout(panel, marks), panel.title) for panel in loss_panels(records)]


def svg_chart(drawing: Drawing, title: str) -> str:
    """A layout as one <svg> element, in the page's text colour."""
    x, y, w, h = drawing.frame
    out = [
        # Inline in HTML, so no xmlns: the page names no URL at all.
        f'<svg class="chart" role="img" '
        f'viewBox="0 0 {SVG_WIDTH} {SVG_HEIGHT}" width="{SVG_WIDTH}" height="{SVG_HEIGHT}">',
        f"<title>{escape(title)} against generator steps</title>",
        f'<g fill="none" stroke="currentColor" stroke-opacity="0.15">'
        f'<rect x="{x}" y="{y}" width="{w}" height="{h}"/></g>',
    ]
    for stroke in drawing.strokes:
        out.append(_svg_stroke(stroke))
    texts = "".join(_svg_text(label) for label in drawing.labels)
    out.append(f'<g fill="currentColor" font-size="{FONT_SIZE}">{texts}</g>')
    out.append("</svg>")
    return "".join(out)


def _svg_stroke(stroke: Stroke) -> str:
    colour = stroke.colour or "currentColor"
    style = f'stroke="{colour}"'
    if stroke.opacity < 1:
        style += f' stroke-opacity="{stroke.opacity:g}"'
    if stroke.width != 1:
        style += f' stroke-width="{stroke.width:g}"'
    if stroke.dashed:
        style += ' stroke-dasharray="3 3"'
    if len(stroke.points) == 2 and not stroke.dots:
        (x1, y1), (x2, y2) = stroke.points
        return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" {style}/>'
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in stroke.points)
    out = f'<polyline fill="none" {style} points="{points}"/>'
    if stroke.dots:
        out += "".join(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in stroke.points
        )
    return out


def _svg_text(label: Label) -> str:
    if label.vertical:
        return (
            f'<text transform="translate({label.x:g} {label.y:.1f}) rotate(-90)" '
            f'text-anchor="middle">{escape(label.text)}</text>'
        )
    weight = "bold" if label.bold else "normal"
    return (
        f'<text x="{label.x:.1f}" y="{label.y:.1f}" text-anchor="{label.anchor}" '
        f'font-weight="{weight}">{escape(label.text)}</text>'
    )


def _log_ticks(low: float, high: float) -> list[float]:
    """Round values between 10**low and 10**high for a log axis: 1, 2 and 5 times powers
    of ten, only the powers when that makes more than 8, linear ones within one decade."""
    ticks = [
        m * 10.0**e
        for e in range(math.floor(low), math.ceil(high) + 1)
        for m in (1, 2, 5)
        if low <= math.log10(m * 10.0**e) <= high
    ]
    if len(ticks) > 8:
        ticks = [t for t in ticks if math.log10(t) == round(math.log10(t))]
    return ticks if len(ticks) >= 2 else nice_ticks(10**low, 10**high)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round values (steps of 1, 2, 2.5 or 5 times a power of ten) between
    `low` and `high`, both included when round."""
    if not (_finite(low) and _finite(high)) or high <= low:
        return []
    raw = (high - low) / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9)
    return [round(i * step, 12) for i in range(first, math.floor(high / step + 1e-9) + 1)]


def _tick_label(value: float, low: float, high: float) -> str:
    """A tick value with as many decimals as the axis' span needs, and no more."""
    span = high - low
    decimals = max(0, 2 - math.floor(math.log10(span))) if span > 0 else 0
    text = f"{value:,.{min(decimals, 6)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _thin(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """At most MAX_CHART_POINTS evenly spaced points, the last one kept."""
    if len(points) <= MAX_CHART_POINTS:
        return points
    stride = math.ceil(len(points) / MAX_CHART_POINTS)
    kept = points[::stride]
    return kept if kept[-1] == points[-1] else [*kept, points[-1]]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
