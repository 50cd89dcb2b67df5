"""kill -9 during training (and during checkpoint writes) loses nothing; resume is exact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hostile import sigterm_after_run_folder, sigterm_during_folder_sample
from scenarios import KILL_RUN, kill_and_resume, train_to_end

from gancli.engine.checkpoint import load_checkpoint, save_checkpoint
from gancli.engine.options import RuntimeOptions
from gancli.engine.runs import RunDir


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> RunDir:
    return train_to_end(tmp_path_factory.mktemp("reference"), data_dir)


@pytest.mark.parametrize("delay", [0.0, 0.7])
@pytest.mark.slow
def test_kill_9_then_resume_is_bitwise_exact(
    tmp_path: Path, data_dir: Path, reference: RunDir, delay: float
) -> None:
    result = kill_and_resume(tmp_path, data_dir, delay, reference)
    assert result.had_checkpoint and result.killed, result
    assert result.survived and result.resumed and result.bitwise_equal, result


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_corrupt_last_is_never_rotated_over_a_good_previous(
    tmp_path: Path, data_dir: Path, reference: RunDir
) -> None:
    from gancli.engine.options import RuntimeOptions
    from gancli.engine.starting import resume_trainer

    run = RunDir(tmp_path / "k-001")
    run.checkpoints.mkdir(parents=True)
    for name in ("config.yaml", "metrics.jsonl"):
        (run.path / name).write_bytes((reference.path / name).read_bytes())
    state = load_checkpoint(reference.previous_checkpoint)
    save_checkpoint(run.previous_checkpoint, state)
    run.last_checkpoint.write_bytes(b"garbage")
    trainer = resume_trainer(run.path, RuntimeOptions(data_dir=str(data_dir), device="cpu"))
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


def test_a_second_ctrl_c_stops_at_once(tmp_path: Path, data_dir: Path) -> None:
    from gancli.engine.config import load_config
    from gancli.engine.options import RuntimeOptions
    from gancli.engine.starting import new_trainer

    config = load_config("gan-mnist", [], {"data.limit": 256, "training.batch_size": 32})
    trainer = new_trainer(config, RuntimeOptions(data_dir=str(data_dir)), out=str(tmp_path))
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when pytest runs as a background job
    with pytest.raises(KeyboardInterrupt), trainer.stops.installed():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        assert trainer.stops.signum == signal.SIGINT  # the first one only asks to stop
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]
)
@pytest.mark.slow
def test_a_signal_checkpoints_prints_how_to_resume_and_exits(
    tmp_path: Path, data_dir: Path, signum: int, code: int
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gancli", "train", *KILL_RUN, "--epochs", "200", "--out",
         str(tmp_path), "--name", "t", "--data-dir", str(data_dir), "--set",
         "training.log_every=2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    metrics = tmp_path / "t-001" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and metrics.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert f"gancli train --resume {tmp_path / 't-001'}" in stderr and "Traceback" not in stderr
    # A stop the user asked for reads as one, not as a failure.
    last = stderr.strip().splitlines()[-1]
    how = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    assert last.startswith(f"stopped by {how}: interrupted at step "), last
    state = load_checkpoint(tmp_path / "t-001" / "checkpoints" / "last.pt")
    assert 0 < state["step"] < 200 * 10
    resumed = subprocess.run(
        [sys.executable, "-m", "gancli", "train", "--resume", str(tmp_path / "t-001"),
         "--epochs", str(state["epoch"] + 1), "--quiet"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    final = load_checkpoint(tmp_path / "t-001" / "checkpoints" / "last.pt")
    assert final["epoch"] == state["epoch"] + 1


def test_sigterm_while_sampling_to_a_folder_leaves_only_whole_images(
    tmp_path: Path, tiny_run: Path
) -> None:
    assert not sigterm_during_folder_sample(tmp_path, tiny_run)


def test_sigterm_just_after_the_run_folder_is_made_leaves_no_orphan(
    tmp_path: Path, data_dir: Path
) -> None:
    assert not sigterm_after_run_folder(tmp_path, data_dir, 0.0)


@pytest.mark.parametrize("moment", ["writing config.yaml", "before the first step"])
def test_a_termination_before_the_first_checkpoint_removes_the_new_run(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, moment: str
) -> None:
    """Deterministic versions of a SIGTERM landing between `mkdir` and the first checkpoint."""
    from gancli.engine import launch as launch_module
    from gancli.engine.errors import Terminated
    from gancli.engine.runs import RunDir

    def terminated(*args: object, **kwargs: object) -> None:
        raise Terminated(signal.SIGTERM)

    if moment == "writing config.yaml":
        monkeypatch.setattr(RunDir, "write_config", terminated)
    else:
        monkeypatch.setattr("gancli.engine.trainer.Trainer._start_info", terminated)
    request = launch_module.TrainRequest(
        preset="gan-mnist",
        settings={"data.limit": 64, "training.batch_size": 32, "training.epochs": 1},
        out=str(tmp_path / "runs"),
        options=RuntimeOptions(data_dir=str(data_dir), device="cpu"),
    )
    with pytest.raises(Terminated) as info:
        launch_module.launch(request)
    assert info.value.exit_code == 143
    assert not (tmp_path / "runs").exists()  # the run folder, and the root it made, are gone
