"""kill -9 during training (and during checkpoint writes) loses nothing; resume is exact."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from scenarios import kill_and_resume, train_to_end

from gancli.engine.checkpoint import load_checkpoint, save_checkpoint
from gancli.engine.runs import RunDir


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> RunDir:
    return train_to_end(tmp_path_factory.mktemp("reference"), data_dir)


@pytest.mark.parametrize("delay", [4.0, 5.5])
def test_kill_9_then_resume_is_bitwise_exact(
    tmp_path: Path, data_dir: Path, reference: RunDir, delay: float
) -> None:
    result = kill_and_resume(tmp_path, data_dir, delay, reference)
    assert result.had_checkpoint, "killed before the first checkpoint: raise the delay"
    assert result.survived and result.resumed and result.bitwise_equal, result


def test_a_kill_between_the_renames_leaves_previous(tmp_path: Path, reference: RunDir) -> None:
    """The moment last.pt is renamed away, previous.pt is complete; resume picks it."""
    run = RunDir(tmp_path / "run")
    run.checkpoints.mkdir(parents=True)
    state = load_checkpoint(reference.last_checkpoint)
    (run.path / "config.yaml").write_bytes((reference.path / "config.yaml").read_bytes())
    save_checkpoint(run.previous_checkpoint, state)  # as if last.pt had just been renamed
    (run.checkpoints / ".last.pt.tmp-123").write_bytes(b"half a checkpoint")
    path, found, _ = run.newest_checkpoint()
    assert path == run.previous_checkpoint and found["step"] == state["step"]


def test_a_corrupt_last_is_never_rotated_over_a_good_previous(
    tmp_path: Path, data_dir: Path, reference: RunDir
) -> None:
    from gancli.engine.trainer import RuntimeOptions, Trainer

    run = RunDir(tmp_path / "k-001")
    run.checkpoints.mkdir(parents=True)
    for name in ("config.yaml", "metrics.jsonl"):
        (run.path / name).write_bytes((reference.path / name).read_bytes())
    state = load_checkpoint(reference.previous_checkpoint)
    save_checkpoint(run.previous_checkpoint, state)
    run.last_checkpoint.write_bytes(b"garbage")
    trainer = Trainer.resume(run.path, RuntimeOptions(data_dir=str(data_dir), device="cpu"))
    assert trainer.step == state["step"] and "skipped" in trainer.notes[-1]
    trainer.fit()
    final = load_checkpoint(run.last_checkpoint)
    assert final["step"] == load_checkpoint(reference.last_checkpoint)["step"]
    assert torch.equal(
        final["generator"]["net.0.weight"],
        load_checkpoint(reference.last_checkpoint)["generator"]["net.0.weight"],
    )
    # The good previous.pt survived the first save after resume (garbage was not rotated).
    assert load_checkpoint(run.previous_checkpoint)["step"] >= state["step"]
