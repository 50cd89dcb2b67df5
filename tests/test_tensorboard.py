"""training.tensorboard: the event files read back with TensorBoard's own reader."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from gancli.cli import app
from gancli.engine.records import MetricsLog

runner = CliRunner()
TINY = ["--limit", "256", "--batch-size", "32", "--set", "training.log_every=4"]


def read_events(run: Path) -> EventAccumulator:
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    return events


@pytest.mark.slow
def test_a_run_logs_scalars_grids_evaluations_and_its_config(
    tmp_path: Path, data_dir: Path
) -> None:
    result = runner.invoke(
        app,
        ["train", "--preset", "cgan-mnist", *TINY, "--epochs", "2", "--eval-every", "2",
         "--set", "training.eval_samples=50", "--out", str(tmp_path), "--tensorboard", "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    run = tmp_path / "cgan-mnist-001"
    events = read_events(run)
    tags = events.Tags()
    assert {"loss/D", "loss/G", "D_output/real", "D_output/fake", "speed/images_per_second"} <= set(
        tags["scalars"]
    )
    # The scalars are metrics.jsonl's step lines, value for value.
    lines = [r for r in MetricsLog(run / "metrics.jsonl").read() if r["kind"] == "step"]
    logged = [(e.step, round(e.value, 4)) for e in events.Scalars("loss/D")]
    assert logged == [(r["step"], round(r["loss_d"], 4)) for r in lines]
    # One grid per epoch, as an image as large as the saved grid's samples.
    grids = events.Images("samples")
    assert [g.step for g in grids] == [8, 16] and grids[0].width > 28 * 10
    fid = events.Scalars("eval/fid")
    assert len(fid) == 1 and fid[0].step == 16 and fid[0].value > 0
    assert "training:" in str(events.Tensors("config/text_summary")[0].tensor_proto)


def test_a_resumed_run_keeps_one_value_per_step(tmp_path: Path, data_dir: Path) -> None:
    args = ["train", "--preset", "gan-mnist", *TINY, "--out", str(tmp_path), "--quiet"]
    assert runner.invoke(app, [*args, "--epochs", "1", "--tensorboard"]).exit_code == 0
    run = tmp_path / "gan-mnist-001"
    resumed = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "2", "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    steps = [e.step for e in read_events(run).Scalars("loss/G")]
    assert steps == [4, 8, 12, 16]


def test_without_the_package_training_is_refused_before_any_file(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorboard" else real(name, *a),
    )
    result = runner.invoke(
        app, ["train", "--preset", "gan-mnist", *TINY, "--out", str(tmp_path), "--tensorboard"]
    )
    assert result.exit_code == 2 and result.output.startswith("error: training.tensorboard:")
    assert "pip install 'gancli[tensorboard]'" in result.output
    assert not any(tmp_path.iterdir())
