"""What long commands print while they work: the live line at any width, plain lines in logs."""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from gancli import reporting
from gancli.cli import app
from gancli.reporting import LiveLine, PlainReporter, RichReporter, StageProgress, TrainStatus

INFO = {
    "run_dir": "runs/x-001", "device": "cpu", "threads": 2, "dataset": "mnist", "epochs": 5,
    "steps_per_epoch": 4680, "total_steps": 23_400, "start_step": 0, "start_epoch": 0,
}  # fmt: skip
# A WGAN's losses: wide numbers are the hard case for a narrow terminal.
STATS = {
    "loss_d": -12.345,
    "loss_g": 6.5,
    "d_real": 3.25,
    "d_fake": -9.125,
    "images_per_second": 512,
}


def rendered(status: TrainStatus, width: int) -> str:
    console = Console(file=io.StringIO(), width=width, record=True, force_terminal=True)
    console.print(LiveLine(status))
    return console.export_text()


def status_midway() -> TrainStatus:
    status = TrainStatus(epochs=5, total=23_400, step=0)
    status.started -= 60.0  # a minute in: an ETA to show
    status.update(12_345, 3, STATS)
    return status


@pytest.mark.parametrize("width", [80, 100, 120])
def test_the_live_line_shows_every_field_at_80_columns_and_more(width: int) -> None:
    text = rendered(status_midway(), width)
    lines = text.splitlines()
    assert len(lines) == 1 and len(lines[0]) < width and "…" not in text, text
    line = lines[0]
    assert line.startswith("epoch 3/5 ")
    assert "12,345/23,400" in line and "512 img/s" in line
    eta = re.search(r"ETA (\d+):(\d\d):(\d\d)", line)
    assert eta, line  # 12,345 steps took 60 s: 11,055 more take about 54 s
    assert int(eta[1]) * 3600 + int(eta[2]) * 60 + int(eta[3]) == pytest.approx(54, abs=2)
    losses = re.search(r"(?:loss_)?d (-?\d+\.\d{3}) +(?:loss_)?g (-?\d+\.\d{3})", line)
    assert losses and (float(losses[1]), float(losses[2])) == (-12.345, 6.5), line
    if width >= 120:  # room for the discriminator's outputs too
        assert "D(x) 3.250" in line and "D(G(z)) -9.125" in line


def test_the_live_line_before_any_losses_and_on_a_very_narrow_terminal() -> None:
    fresh = TrainStatus(epochs=5, total=23_400, step=0)
    line = rendered(fresh, 80).splitlines()[0]
    assert line.startswith("epoch 1/5 ") and "0/23,400" in line and "ETA -:--:--" in line
    narrow = rendered(status_midway(), 40).splitlines()[0]
    assert narrow.startswith("epoch 3/5") and "12,345/23,400" in narrow and "ETA" in narrow


def test_the_live_reporter_keeps_the_epoch_and_the_latest_losses() -> None:
    reporter = RichReporter(Console(file=io.StringIO(), force_terminal=True, width=80))
    reporter.start(INFO)
    assert reporter.preview_seconds == reporting.LIVE_SECONDS
    reporter.advance(19, 1, STATS)
    reporter.advance(4_700, 2, None)  # between log lines: the last losses stay
    assert (reporter.status.epoch, reporter.status.step) == (2, 4_700)
    assert reporter.status.stats == STATS
    reporter.close()


def test_a_log_gets_a_plain_line_every_interval_and_not_more_often() -> None:
    out = io.StringIO()
    reporter = PlainReporter(Console(file=out, width=80), every=0.0)
    reporter.start(INFO)
    assert reporter.preview_seconds == 0.0  # the loop sends losses as often
    reporter.advance(5, 1, None)  # no fresh losses: nothing to say
    reporter.advance(6, 1, STATS)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\x1b" not in out.getvalue()
    assert lines[1].startswith("epoch 1/5  step 6/23,400  loss_d -12.345  loss_g 6.500  ")
    assert "512 img/s  ETA " in lines[1]
    slow = PlainReporter(Console(file=io.StringIO()), every=30.0)
    slow.start(INFO)
    slow.advance(6, 1, STATS)  # the start line was just now
    assert len(slow.console.file.getvalue().splitlines()) == 1


def test_training_under_a_pipe_speaks_between_epoch_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reporting, "LINE_SECONDS", 0.0)  # a line at every preview
    args = ["train", "--preset", "gan-mnist", "--limit", "256", "--batch-size", "32"]
    result = CliRunner().invoke(app, [*args, "--epochs", "1", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\r" not in result.output
    steps = re.findall(r"^epoch 1/1  step (\d+)/8  loss_d .* img/s  ETA \d+:\d\d:\d\d$",
                       result.output, re.M)  # fmt: skip
    assert steps and steps == sorted(steps, key=int) and "8" not in steps[:-1]
    quiet = CliRunner().invoke(app, [*args, "--epochs", "1", "--out", str(tmp_path), "--quiet"])
    assert quiet.exit_code == 0 and quiet.output == ""


def test_stages_show_as_a_bar_on_a_terminal_and_as_lines_on_stderr_elsewhere() -> None:
    shown = io.StringIO()
    terminal = Console(file=shown, force_terminal=True, width=120)
    log = io.StringIO()
    with StageProgress(terminal, log=Console(file=log)) as progress:
        progress("generating", 500, 1000)
    assert "generating" in shown.getvalue() and "500/1,000" in shown.getvalue()
    assert log.getvalue() == ""  # a terminal has the bar: no lines as well
    with StageProgress(Console(file=io.StringIO()), log=Console(file=log)) as progress:
        progress("loading", 0, None)
        progress("generating", 500, 1000)
        progress("generating", 1000, 1000)  # the same stage: no new line
    assert progress.progress is None
    assert log.getvalue().splitlines() == ["loading", "generating (500/1,000)"]
    quiet = io.StringIO()
    with StageProgress(Console(file=io.StringIO()), True, Console(file=quiet)) as progress:
        progress("generating", 1, 2)
    assert quiet.getvalue() == ""


def test_a_long_stage_off_a_terminal_is_never_silent() -> None:
    log = io.StringIO()
    with StageProgress(Console(file=io.StringIO()), log=Console(file=log), every=0.05) as p:
        p("scoring the samples", 0, None)
        time.sleep(0.4)
    lines = log.getvalue().splitlines()
    assert lines[0] == "scoring the samples"
    assert len(lines) >= 3 and all(re.fullmatch(r"still scoring the samples \(0:00:00\)", x)
                                   for x in lines[1:])  # fmt: skip


@pytest.mark.slow
def test_evaluate_and_sample_say_their_stages_on_stderr(
    trained_runs: dict[str, Path], tmp_path: Path
) -> None:
    run = trained_runs["cgan"]
    result = CliRunner().invoke(app, ["evaluate", str(run), "-n", "200", "--json"])
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)  # stdout holds the result alone
    stages = result.stderr.splitlines()
    assert stages[0] == "loading the evaluator and the real images"
    assert "embedding the held-out real images" in stages
    assert "generating (200/200)" in stages and "scoring the samples" in stages
    out = tmp_path / "s.npz"
    sample = CliRunner().invoke(app, ["sample", str(run), "-n", "10", "--out", str(out)])
    assert sample.exit_code == 0 and sample.stderr.splitlines() == ["generating (10/10)"]
    quiet = CliRunner().invoke(app, ["evaluate", str(run), "-n", "200", "--quiet"])
    assert quiet.exit_code == 0 and quiet.output == "" and quiet.stderr == ""
