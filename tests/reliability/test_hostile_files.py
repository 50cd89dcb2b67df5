"""Corrupt, foreign and malicious checkpoints are refused with one line, before any use."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
import torch
from scenarios import MALICIOUS_KINDS, MARKER, clean_failure, mutants, write_malicious
from typer.testing import CliRunner

from gancli.cli import app
from gancli.engine.checkpoint import load_checkpoint
from gancli.engine.errors import CheckpointError

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def good(trained_runs: dict[str, Path]) -> bytes:
    return (trained_runs["cgan"] / "checkpoints" / "last.pt").read_bytes()


@pytest.mark.slow
def test_every_mutant_is_refused(tmp_path: Path, good: bytes) -> None:
    for name, data in mutants(good, 12, seed=1):
        path = tmp_path / "m.pt"
        path.write_bytes(data)
        with pytest.raises(CheckpointError):
            load_checkpoint(path)
        result = invoke("sample", path, "--out", tmp_path / "x.png")
        assert clean_failure(result.exit_code, result.output, ""), (name, result.output)


@pytest.mark.slow
def test_flipped_tensor_bits_fail_the_checksum(tmp_path: Path, good: bytes) -> None:
    state = torch.load(io.BytesIO(good), weights_only=True)  # torch itself sees nothing wrong
    state["generator"]["net.0.weight"][0, 0, 0, 0] += 1e-3
    torch.save(state, tmp_path / "tampered.pt")
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(tmp_path / "tampered.pt")


def test_a_checkpoint_from_another_run_is_refused(
    tmp_path: Path, trained_runs: dict[str, Path]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_runs["cgan"], run)
    other = trained_runs["dcgan-ema"] / "checkpoints" / "last.pt"
    shutil.copy(other, run / "checkpoints" / "last.pt")
    (run / "checkpoints" / "previous.pt").unlink()
    result = invoke("train", "--resume", run)
    assert clean_failure(result.exit_code, result.output, "does not belong to"), result.output


@pytest.mark.parametrize("how", MALICIOUS_KINDS)
def test_malicious_pickles_never_run(tmp_path: Path, how: str, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "samples").mkdir()
    evil = run / "checkpoints" / "last.pt"
    write_malicious(evil, how, tmp_path)
    for args in (
        ["sample", evil],
        ["sample", run],
        ["animate", run, "--interpolate"],
        ["inspect", evil],
        ["inspect", run],
        ["train", "--resume", run],
        ["evaluate", run],
    ):
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
    assert not os.path.exists(tmp_path / MARKER)
