"""The loss curves: losses.png, the report's inline SVG and the epoch marks they share."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

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


def test_plot_losses_writes_a_png_at_its_default_size(tmp_path: Path) -> None:
    out = tmp_path / "losses.png"
    plot_losses(records(3), out, "dcgan-mnist-001")
    with Image.open(out) as image:
        image.load()
        assert image.format == "PNG" and image.size == (800, 600)
    log = [*records(3), {"kind": "eval", "epoch": 3, "step": 24, "fid": 5.0, "coverage": 9}]
    plot_losses(log, out, "with-eval")
    with Image.open(out) as image:
        assert image.size == (800, 900)  # a third panel for FID
    plot_losses([], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()  # nothing logged yet: nothing drawn


def test_plot_losses_titles_and_marks_the_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib.figure

    seen: dict[str, Any] = {}
    real_savefig = matplotlib.figure.Figure.savefig

    def savefig(fig: matplotlib.figure.Figure, *args: Any, **kwargs: Any) -> None:
        axes = fig.axes
        seen["title"] = fig.get_suptitle()
        tops = [child for ax in axes for child in ax.child_axes]  # the secondary axis
        seen["xlabels"] = [ax.get_xlabel() for ax in [*axes, *tops]]
        seen["ylabels"] = [ax.get_ylabel() for ax in axes]
        seen["vlines"] = sum(
            1
            for ax in axes
            for line in ax.get_lines()
            if list(line.get_xdata()) in ([8, 8], [16, 16], [24, 24])
        )
        seen["ticks"] = [[t.get_text() for t in top.get_xticklabels()] for top in tops]
        real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    plot_losses(records(3), tmp_path / "losses.png", "my-run")
    assert seen["title"] == "my-run"
    assert "generator step" in seen["xlabels"] and "end of epoch" in seen["xlabels"]
    assert seen["ylabels"][:2] == ["loss", "discriminator output"]
    assert seen["vlines"] == 3 * 2  # each epoch end, on both panels
    assert ["1", "2", "3"] in seen["ticks"]


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


def test_nice_ticks() -> None:
    assert nice_ticks(0, 24) == [0, 5, 10, 15, 20]
    assert nice_ticks(0.55, 0.85) == [0.6, 0.7, 0.8]
    assert nice_ticks(-1, 1) == [-1, -0.5, 0, 0.5, 1]
    assert nice_ticks(1, 1) == [] and nice_ticks(0, math.inf) == []
