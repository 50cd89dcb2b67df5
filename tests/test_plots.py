"""The loss curves: losses.png, the report's inline SVG and the epoch marks they share."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from gancli.engine import plots
from gancli.engine.plots import epoch_marks, loss_charts, nice_ticks, plot_losses


def records(epochs: int, steps_per_epoch: int = 8, log_every: int = 2) -> list[dict[str, Any]]:
    """What training writes to metrics.jsonl: step lines, then one epoch line per epoch."""
    out: list[dict[str, Any]] = []
    losses = {"loss_d": 1.3, "loss_g": 0.7, "d_real": 0.6, "d_fake": 0.4}
    for epoch in range(1, epochs + 1):
        for step in range((epoch - 1) * steps_per_epoch + 1, epoch * steps_per_epoch + 1):
            if step % log_every == 0:
                out.append({"kind": "step", "epoch": epoch, "step": step, **losses})
        out.append({"kind": "epoch", "epoch": epoch, "step": epoch * steps_per_epoch, **losses})
    return out


def test_epoch_marks_are_where_epochs_ended() -> None:
    assert epoch_marks(records(3)) == [(8, 1), (16, 2), (24, 3)]
    assert epoch_marks(records(0)) == []
    steps_only = [r for r in records(2) if r["kind"] == "step"]
    assert epoch_marks(steps_only) == []  # a run still in its first epoch


def test_epoch_marks_ignore_other_records_and_take_a_resumed_epoch_s_last() -> None:
    log = records(2)
    log.append({"kind": "warning", "epoch": 2, "step": 16, "message": "D wins"})
    log.append({"kind": "eval", "epoch": 2, "step": 16, "fid": 3.0, "coverage": 10})
    log.append({"kind": "epoch", "epoch": 2, "step": 17, "loss_d": 1, "loss_g": 1})
    assert epoch_marks(log) == [(8, 1), (17, 2)]


@pytest.mark.parametrize(
    ("epochs", "every"),
    [(20, 1), (21, 2), (41, 2), (42, 5), (101, 5), (105, 10), (1000, 50), (5000, 500)],
)
def test_long_runs_are_marked_on_round_epochs(epochs: int, every: int) -> None:
    marks = epoch_marks(records(epochs, steps_per_epoch=4, log_every=4))
    assert [e for _, e in marks] == list(range(every, epochs + 1, every))
    assert all(step == 4 * epoch for step, epoch in marks)
    assert len(marks) <= plots.MAX_EPOCH_MARKS


def test_plot_losses_writes_a_png_with_a_panel_per_curve_pair(tmp_path: Path) -> None:
    out = tmp_path / "losses.png"
    plot_losses(records(3), out, "dcgan-mnist-001")
    with Image.open(out) as image:
        image.load()
        assert image.format == "PNG" and image.size == (900, 645)  # title + 2 panels of 300
    log = [*records(3), {"kind": "eval", "epoch": 3, "step": 24, "fid": 5.0, "coverage": 9}]
    plot_losses(log, out, "with-eval")
    with Image.open(out) as image:
        assert image.size == (900, 1245)  # FID and classes covered below
    plot_losses([], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()  # nothing logged yet: nothing drawn


def test_losses_png_shows_the_title_curves_and_epoch_ends(tmp_path: Path) -> None:
    plot_losses(records(3), tmp_path / "losses.png", "my-run")
    with Image.open(tmp_path / "losses.png") as image:
        rgb = image.convert("RGB")
    pixels = np.asarray(rgb).astype(int)  # (height, width, 3)
    k = plots.PNG_SCALE

    def dark(top: float, bottom: float) -> int:
        rows = pixels[round(top * k) : round(bottom * k)]
        return int((rows.max(axis=2) < 100).sum())

    assert dark(0, plots._TITLE_HEIGHT) > 50  # the run's name
    assert dark(0, 10) == 0
    for colour in plots.CURVE_COLOURS:  # both curves of each panel, in their colours
        want = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
        near = int((np.abs(pixels - want).sum(axis=2) < 40).sum())
        assert near > 200, colour
    # Each epoch end is a dashed grey line down both panels: grey and white alternate.
    drawing = plots.layout(plots.loss_panels(records(3))[0], epoch_marks(records(3)))
    dashes = [s for s in drawing.strokes if s.dashed]
    assert len(dashes) == 3
    x = dashes[0].points[0][0]
    top, bottom = dashes[0].points[0][1], dashes[0].points[1][1]
    top, bottom = (round((plots._TITLE_HEIGHT + y) * k) for y in (top + 2, bottom - 2))
    greys = pixels[top:bottom, round(x * k)].max(axis=1) < 235
    assert 0.25 < greys.mean() < 0.75  # on and off, not a solid line


def test_panels_are_labelled_and_fid_is_on_a_log_scale() -> None:
    log = [*records(3)]
    log += [
        {"kind": "eval", "epoch": e, "step": 8 * e, "fid": f, "coverage": c}
        for e, f, c in [(1, 300.0, 6), (2, 30.0, 9), (3, 3.0, 10)]
    ]
    panels = plots.loss_panels(log)
    assert [p.y_label for p in panels] == ["loss", "D output", "FID", "classes"]
    fid = plots.layout(panels[2], epoch_marks(log))
    texts = [label.text for label in fid.labels]
    assert "generator step" in texts
    assert texts[texts.index("epoch") :][:4] == ["epoch", "1", "2", "3"]
    (curve,) = [s for s in fid.strokes if s.dots]
    ys = [y for _, y in curve.points]
    assert math.isclose(ys[1] - ys[0], ys[2] - ys[1])  # each tenfold drop: the same distance
    assert plots._log_ticks(math.log10(3), math.log10(300)) == [5, 10, 20, 50, 100, 200]


def test_loss_charts_are_inline_svg_with_the_epoch_ends() -> None:
    log = records(3)
    log[1]["loss_d"] = math.nan  # a non-finite value is left out, not drawn as "nan"
    charts = loss_charts(log)
    assert len(charts) == 2
    for chart in charts:
        assert chart.startswith('<svg class="chart"') and chart.endswith("</svg>")
        assert chart.count("<polyline") == 2 and "nan" not in chart.lower()
        assert chart.count('stroke-dasharray="3 3"') == 3
        assert re.findall(r">(\d)</text>", chart)[-3:] == ["1", "2", "3"]
    assert loss_charts([]) == []
    log.append({"kind": "eval", "epoch": 3, "step": 24, "fid": 5.0, "coverage": 9})
    charts = loss_charts(log)
    assert len(charts) == 4  # FID and classes covered, once evaluated during training
    assert all(chart.count("<circle") == 1 for chart in charts[2:])  # one dot a check


def test_nice_ticks() -> None:
    assert nice_ticks(0, 24) == [0, 5, 10, 15, 20]
    assert nice_ticks(0.55, 0.85) == [0.6, 0.7, 0.8]
    assert nice_ticks(-1, 1) == [-1, -0.5, 0, 0.5, 1]
    assert nice_ticks(1, 1) == [] and nice_ticks(0, math.inf) == []
