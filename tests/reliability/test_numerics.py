"""Warnings when D wins outright or samples collapse; determinism on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from gancli.cli import app
from gancli.engine.config import load_config
from gancli.engine.listeners import HealthWarnings, NullReporter
from gancli.engine.options import RuntimeOptions
from gancli.engine.starting import new_trainer
from gancli.engine.trainer import Trainer

TINY = {"data.limit": 256, "training.batch_size": 32, "training.epochs": 1}


class Notes(NullReporter):
    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)


def new(tmp_path: Path, data_dir: Path, preset: str = "gan-mnist", **flags: object) -> Trainer:
    config = load_config(preset, [], {**TINY, **flags})
    return new_trainer(config, RuntimeOptions(data_dir=str(data_dir)), out=str(tmp_path))


def test_warns_when_d_wins_outright(tmp_path: Path, data_dir: Path) -> None:
    trainer = new(tmp_path, data_dir)
    reporter = Notes()
    trainer.reporter = reporter
    (health,) = [h for h in trainer.outputs.listeners if isinstance(h, HealthWarnings)]
    certain = {"kind": "step", "epoch": 1, "step": 1, "loss_d": 0.01, "loss_g": 9.0}
    certain.update(d_real=0.999, d_fake=0.001)
    for _ in range(3):
        health.on_log(certain)
    assert len(reporter.notes) == 1 and "D wins outright" in reporter.notes[0]
    assert [r["kind"] for r in trainer.run.log.read()][-1] == "warning"


def test_warns_when_samples_collapse(tmp_path: Path, data_dir: Path) -> None:
    trainer = new(tmp_path, data_dir)
    reporter = Notes()
    trainer.reporter = reporter
    varied = trainer.reals
    assert trainer.health.after_epoch(1, varied) is None  # as varied as real images: fine
    collapsed = varied[:1].expand_as(varied).clone()  # every sample the same image
    trainer.warn(trainer.health.after_epoch(2, collapsed))
    assert len(reporter.notes) == 1 and "collapsing" in reporter.notes[0]
    assert "epoch 2 samples vary only 0%" in reporter.notes[0]


@pytest.mark.slow
def test_no_false_alarms_in_a_normal_run(tmp_path: Path, data_dir: Path) -> None:
    trainer = new(tmp_path, data_dir, "dcgan-mnist", **{"training.epochs": 2})
    up_front = list(trainer.notes)  # said before training (e.g. a pointer to --precision bf16)
    reporter = Notes()
    trainer.fit(reporter)
    assert reporter.notes == up_front


@pytest.mark.slow
def test_same_seed_twice_is_bitwise_identical(tmp_path: Path, data_dir: Path) -> None:
    from helpers import differing

    from gancli.engine.checkpoint import load_checkpoint

    a = new(tmp_path / "a", data_dir, "dcgan-mnist", **{"training.ema": 0.9})
    b = new(tmp_path / "b", data_dir, "dcgan-mnist", **{"training.ema": 0.9})
    a.fit()
    b.fit()
    assert not differing(
        load_checkpoint(a.run.last_checkpoint), load_checkpoint(b.run.last_checkpoint)
    )
    assert a.run.epoch_grid(1).read_bytes() == b.run.epoch_grid(1).read_bytes()
    c = new(tmp_path / "c", data_dir, "dcgan-mnist", **{"training.seed": 1})
    c.fit()
    assert differing(load_checkpoint(a.run.last_checkpoint), load_checkpoint(c.run.last_checkpoint))


def test_deterministic_flag_trains_on_cpu(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["train", "--preset", "gan-mnist", "--limit", "256", "--batch-size", "32", "--epochs",
         "1", "--out", str(tmp_path), "--deterministic", "--quiet"],
    )  # fmt: skip
    try:
        assert result.exit_code == 0, result.output
        assert (tmp_path / "gan-mnist-001" / "checkpoints" / "last.pt").is_file()
    finally:
        torch.use_deterministic_algorithms(False)
