"""Run directories: metrics.jsonl through MetricsLog, and the lock taken before any write."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gancli.cli import app
from gancli.engine.errors import CheckpointError
from gancli.engine.runs import MetricsLog


def test_metrics_log_reads_past_a_torn_line_and_cuts_back(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "metrics.jsonl")
    assert log.read() == []
    losses = {"loss_d": 1.0, "loss_g": 1.0, "d_real": 0.5, "d_fake": 0.5}
    for step in (10, 20, 30):
        log.append({"kind": "step", "epoch": 1, "step": step, **losses})
    with open(log.path, "a") as fh:
        fh.write('{"kind": "step", "ep')  # a write killed halfway
    assert [r["step"] for r in log.read()] == [10, 20, 30]
    log.keep_until(20)
    assert [r["step"] for r in log.read()] == [10, 20]
    assert log.path.read_text().endswith("\n")


def test_a_refused_resume_changes_no_file(trained_runs: dict[str, Path]) -> None:
    """A second `train --resume` on a run that is training stops at the lock, before it
    has cut back metrics.jsonl or rewritten config.yaml."""
    run = trained_runs["cgan"]
    lock = run / ".lock"
    lock.write_text(f"{os.getpid()}\n")  # a live process holds the run
    try:
        before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
        result = CliRunner().invoke(app, ["train", "--resume", str(run), "--epochs", "9"])
        assert result.exit_code == 2 and f"is being trained by process {os.getpid()}" in (
            result.output
        )
        after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
        assert after == before
    finally:
        lock.unlink()


def test_metrics_checks_know_the_stats_the_loop_logs() -> None:
    from gancli.engine.records import LOSS_KEYS
    from gancli.engine.state import STATS

    assert LOSS_KEYS == STATS  # records.py cannot import state.py (a cycle): kept in step here


def test_a_damaged_line_is_named_but_a_torn_last_line_is_not(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "metrics.jsonl")
    record = {"kind": "step", "epoch": 1, "step": 1, "loss_d": 1, "loss_g": 1, "d_real": 0.5,
              "d_fake": 0.5}  # fmt: skip
    log.append(record)
    with open(log.path, "a") as fh:
        fh.write('{"kind": "step", "epoch": 1, "step": "ten"}\n{"kind"')
    with pytest.raises(CheckpointError, match=re.escape("""line 2 is damaged ('step' is "ten",""")):
        log.read()
