"""Usage: plot_losses(run.log.read(), run.losses_plot, title=run.path.name)

The loss, discriminator-output and (with --eval-every) FID curves of a run, from its
metrics.jsonl, with the ends of epochs marked: as losses.png (matplotlib), and as inline
SVG drawings for `gancli report`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

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


def plot_losses(records: list[dict[str, Any]], out: Path, title: str = "") -> None:
    """Panels against G steps: both losses; D(x) with D(G(z)); FID and classes covered when
    the run was trained with --eval-every. Light vertical lines mark where epochs ended,
    numbered on a top axis; `title` (the run's name) heads the figure."""
    steps = [r for r in records if r.get("kind") == "step"]
    if not steps:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = [r for r in records if r.get("kind") == "eval"]
    rows = 3 if evals else 2
    x = [r["step"] for r in steps]
    # 8 x 3 inches a panel at 100 dpi, text at 11 pt: readable without zooming in.
    with plt.rc_context({"font.size": 11}):
        fig, axes = plt.subplots(rows, 1, figsize=(8, 3 * rows), sharex=True)
        top, middle = axes[0], axes[1]
        top.plot(x, [r["loss_d"] for r in steps], label="loss D")
        top.plot(x, [r["loss_g"] for r in steps], label="loss G")
        top.set_ylabel("loss")
        top.legend(loc="upper right")
        middle.plot(x, [r["d_real"] for r in steps], label="D(x)")
        middle.plot(x, [r["d_fake"] for r in steps], label="D(G(z))")
        middle.set_ylabel("discriminator output")
        middle.legend(loc="upper right")
        if evals:
            bottom, at = axes[2], [r["step"] for r in evals]
            bottom.plot(at, [r["fid"] for r in evals], "o-", color="tab:purple", label="FID")
            bottom.set_yscale("log")
            bottom.set_ylabel("FID (evaluator)")
            coverage = bottom.twinx()
            coverage.plot(at, [r["coverage"] for r in evals], "s--", color="tab:green")
            coverage.set_ylabel("classes covered", color="tab:green")
            coverage.set_ylim(bottom=0)
        axes[-1].set_xlabel("generator step")
        marks = epoch_marks(records)
        for step, _ in marks:
            for ax in axes:
                ax.axvline(step, color="0.8", linewidth=0.8, zorder=0)
        if marks:
            # The same steps on a top axis, numbered by epoch: where each epoch ended.
            epochs = top.secondary_xaxis("top")
            epochs.set_xticks([step for step, _ in marks], [str(e) for _, e in marks])
            epochs.set_xlabel("end of epoch")
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        try:
            with atomic_write(out) as tmp:
                fig.savefig(tmp, dpi=100)
        finally:
            plt.close(fig)


# --------------------------------------------------------------------------- inline SVG

# The report draws the same curves as vector graphics inside its page: sharp at any zoom
# and in print, a few kilobytes, text that can be searched, and up to date with
# metrics.jsonl even mid-epoch (losses.png is redrawn only at the end of each epoch).
SVG_WIDTH, SVG_HEIGHT = 720, 240  # user units; the page scales the drawing to its width
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 38, 40  # margins for tick labels and epoch numbers
MAX_CHART_POINTS = 1500  # points per curve; more add bytes, not detail, at this width
CURVE_COLOURS = ("#1f77b4", "#e8710a")


@dataclass(frozen=True)
class Curve:
    label: str
    points: list[tuple[float, float]]  # (G step, value)


def loss_charts(records: list[dict[str, Any]]) -> list[str]:
    """The losses and D's outputs of a run's step records as two SVG drawings (none when
    no step has been logged yet), with the ends of epochs marked."""
    steps = [r for r in records if r.get("kind") == "step"]
    if not steps:
        return []
    marks = epoch_marks(records)

    def curve(label: str, key: str) -> Curve:
        return Curve(label, [(r["step"], r[key]) for r in steps])

    return [
        svg_chart("losses", "loss", [curve("loss D", "loss_d"), curve("loss G", "loss_g")], marks),
        svg_chart(
            "discriminator output",
            "D output",
            [curve("D(x)", "d_real"), curve("D(G(z))", "d_fake")],
            marks,
        ),
    ]


def svg_chart(title: str, y_label: str, curves: list[Curve], marks: list[tuple[int, int]]) -> str:
    """One panel: curves against G steps, ticked axes, a legend, and a dashed line with its
    number where each marked epoch ended. Values that are not finite are left out."""
    curves = [Curve(c.label, _thin([p for p in c.points if _finite(p[1])])) for c in curves]
    values = [v for c in curves for _, v in c.points]
    x_high = max([s for c in curves for s, _ in c.points] + [s for s, _ in marks] + [1])
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (high - low) * 0.06 or 0.5
    low, high = low - pad, high + pad
    width, height = SVG_WIDTH - _LEFT - _RIGHT, SVG_HEIGHT - _TOP - _BOTTOM

    def x_at(step: float) -> float:
        return _LEFT + step / x_high * width

    def y_at(value: float) -> float:
        return _TOP + (high - value) / (high - low) * height

    out = [
        # Inline in HTML, so no xmlns: the page names no URL at all.
        f'<svg class="chart" role="img" '
        f'viewBox="0 0 {SVG_WIDTH} {SVG_HEIGHT}" width="{SVG_WIDTH}" height="{SVG_HEIGHT}">',
        f"<title>{escape(title)} against generator steps</title>",
        f'<g fill="none" stroke="currentColor" stroke-opacity="0.15">'
        f'<rect x="{_LEFT}" y="{_TOP}" width="{width}" height="{height}"/></g>',
    ]
    texts = [
        _text(_LEFT, 14, title, "start", weight="bold"),
        _text(_LEFT + width / 2, SVG_HEIGHT - 6, "generator step", "middle"),
        f'<text transform="translate(14 {_TOP + height / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>',
    ]
    for tick in nice_ticks(low, high):
        y = y_at(tick)
        out.append(_line(_LEFT, y, _LEFT + width, y, "currentColor", 'stroke-opacity="0.1"'))
        texts.append(_text(_LEFT - 6, y + 4, _tick_label(tick, low, high), "end"))
    for tick in nice_ticks(0, x_high):
        texts.append(_text(x_at(tick), _TOP + height + 16, _tick_label(tick, 0, x_high), "middle"))
    if marks:
        texts.append(_text(_LEFT - 6, _TOP - 6, "epoch", "end"))
    for step, epoch in marks:
        x = x_at(step)
        out.append(_line(x, _TOP, x, _TOP + height, "currentColor", _MARK_STYLE))
        texts.append(_text(x, _TOP - 6, str(epoch), "middle"))
    # The legend shares the title's line, right-aligned, so it never covers a curve.
    key_x = float(_LEFT + width)
    for c, colour in reversed(list(zip(curves, CURVE_COLOURS, strict=False))):
        key_x -= 24 + 7.5 * len(c.label) + 12  # swatch, text at about 7.5 units a character
        out.append(_line(key_x, 10, key_x + 18, 10, colour, 'stroke-width="2"'))
        texts.append(_text(key_x + 24, 14, c.label, "start"))
    for c, colour in zip(curves, CURVE_COLOURS, strict=False):
        points = " ".join(f"{x_at(s):.1f},{y_at(v):.1f}" for s, v in c.points)
        out.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>'
        )
    out.append(f'<g fill="currentColor" font-size="12">{"".join(texts)}</g>')
    out.append("</svg>")
    return "".join(out)


_MARK_STYLE = 'stroke-opacity="0.35" stroke-dasharray="3 3"'


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round values (steps of 1, 2, 2.5 or 5 times a power of ten) between
    `low` and `high`, both included when round."""
    if not (_finite(low) and _finite(high)) or high <= low:
        return []
    raw = (high - low) / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9)
    ticks = []
    for i in range(first, math.floor(high / step + 1e-9) + 1):
        ticks.append(round(i * step, 12))
    return ticks


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


def _line(x1: float, y1: float, x2: float, y2: float, colour: str, extra: str = "") -> str:
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{colour}" {extra}/>'
    )


def _text(x: float, y: float, text: str, anchor: str, weight: str = "normal") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-weight="{weight}">'
        f"{escape(text)}</text>"
    )
