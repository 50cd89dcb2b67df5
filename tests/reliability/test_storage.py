"""Full disks, read-only roots, concurrent runs and locks: clear errors, nothing lost."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from gancli.cli import app
from gancli.engine import checkpoint
from gancli.engine.checkpoint import load_checkpoint
from gancli.engine.config import load_config
from gancli.engine.errors import RunDirError, StorageError
from gancli.engine.options import RuntimeOptions
from gancli.engine.runs import RunDir, lock_run
from gancli.engine.trainer import Trainer

runner = CliRunner()
TINY = {"data.limit": 256, "training.batch_size": 32, "training.epochs": 1}


def trained(tmp_path: Path, data_dir: Path, epochs: int = 1) -> Trainer:
    config = load_config("gan-mnist", [], {**TINY, "training.epochs": epochs})
    options = RuntimeOptions(data_dir=str(data_dir))
    trainer = Trainer.new(config, options, out=str(tmp_path))
    trainer.fit()
    return trainer


def no_space(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "somewhere")


@pytest.mark.parametrize(
    "target",
    [
        (checkpoint.torch, "save"),
        (Image.Image, "save"),
        ("gancli.engine.plots.plot_losses", None),
        ("builtins.open", None),
    ],
    ids=["checkpoint", "png", "plot", "metrics"],
)
def test_disk_full_keeps_the_last_checkpoint(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, target: tuple
) -> None:
    trainer = trained(tmp_path, data_dir)
    before = trainer.run.last_checkpoint.read_bytes()
    resumed = Trainer.resume(trainer.run.path, RuntimeOptions(device="cpu"), epochs=2)
    owner, name = target
    if name is None:
        module, _, attr = owner.rpartition(".")
        if module == "builtins":
            real_open = open

            def full_open(file, mode="r", *a, **k):  # type: ignore[no-untyped-def]
                if "a" in mode and str(file).endswith("metrics.jsonl"):
                    no_space()
                return real_open(file, mode, *a, **k)

            monkeypatch.setattr("builtins.open", full_open)
        else:
            import gancli.engine.listeners as listeners_module

            monkeypatch.setattr(listeners_module, attr, no_space)
    else:
        monkeypatch.setattr(owner, name, no_space)
    with pytest.raises(StorageError, match="No space left on device") as info:
        resumed.fit()
    assert info.value.exit_code == 1 and "\n" not in str(info.value)
    run = trainer.run
    load_checkpoint(run.last_checkpoint)  # whatever happened, last.pt is a whole checkpoint
    kept = [p.read_bytes() for p in (run.last_checkpoint, run.previous_checkpoint) if p.exists()]
    assert before in kept  # and the one from before the failure is still on disk
    assert not list(trainer.run.checkpoints.glob(".*tmp*"))


def test_unwritable_runs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = runner.invoke(app, ["train", "--preset", "gan-mnist", "--out", str(blocker / "runs")])
    assert result.exit_code == 2 and result.output.startswith("error: cannot create the runs root")

    def read_only(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(RunDirError, match="Read-only file system"):
        RunDir.create(tmp_path / "ro", "x")


def test_concurrent_runs_never_share_a_directory(tmp_path: Path) -> None:
    made: list[Path] = []
    lock = threading.Lock()

    def create() -> None:
        run = RunDir.create(tmp_path, "same")
        with lock:
            made.append(run.path)

    threads = [threading.Thread(target=create) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 16


def test_run_lock_refuses_a_live_owner_and_takes_a_stale_one(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    (tmp_path / ".lock").write_text(f"{os.getpid()}\n")
    with (
        pytest.raises(RunDirError, match=f"being trained by process {os.getpid()}"),
        lock_run(run),
    ):
        pass
    (tmp_path / ".lock").write_text("999999999\n")  # no such process: stale
    with lock_run(run):
        assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
    assert not (tmp_path / ".lock").exists()


def test_resume_of_a_run_in_progress_is_refused(tmp_path: Path, data_dir: Path) -> None:
    trainer = trained(tmp_path, data_dir)
    (trainer.run.path / ".lock").write_text(f"{os.getpid()}\n")
    result = runner.invoke(app, ["train", "--resume", str(trainer.run.path), "--epochs", "2"])
    assert result.exit_code == 2 and "being trained by process" in result.output
