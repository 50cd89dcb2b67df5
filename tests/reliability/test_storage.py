"""Full disks, read-only roots, concurrent runs and locks: clear errors, nothing lost."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest
from hostile import copy_run, disk_full_training, read_only_case
from PIL import Image
from typer.testing import CliRunner

from gancli.cli import app
from gancli.engine import checkpoint
from gancli.engine.checkpoint import load_checkpoint
from gancli.engine.config import load_config
from gancli.engine.errors import ConfigError, RunDirError, StorageError
from gancli.engine.files import atomic_write, temporary_name
from gancli.engine.limits import training_memory
from gancli.engine.listeners import NullReporter
from gancli.engine.options import RuntimeOptions
from gancli.engine.records import read_evaluations
from gancli.engine.runs import EVAL_LOCK_NAME, RunDir, hold_lock, lock_run
from gancli.engine.scoring import EvalReport, Scores, append_record
from gancli.engine.starting import new_trainer, resume_trainer
from gancli.engine.trainer import Trainer

runner = CliRunner()
TINY = {"data.limit": 256, "training.batch_size": 32, "training.epochs": 1}


def trained(tmp_path: Path, data_dir: Path, epochs: int = 1) -> Trainer:
    config = load_config("gan-mnist", [], {**TINY, "training.epochs": epochs})
    options = RuntimeOptions(data_dir=str(data_dir))
    trainer = new_trainer(config, options, out=str(tmp_path))
    trainer.fit()
    return trainer


class NotesReporter(NullReporter):
    """A reporter that keeps what it is told."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)


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
@pytest.mark.slow
def test_disk_full_keeps_the_last_checkpoint(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, target: tuple
) -> None:
    trainer = trained(tmp_path, data_dir)
    before = trainer.run.last_checkpoint.read_bytes()
    resumed = resume_trainer(trainer.run.path, RuntimeOptions(device="cpu"), epochs=2)
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
    run = trainer.run
    if target[0] in (Image.Image, "gancli.engine.plots.plot_losses"):
        # An epoch-end picture is not the run: a warning, and the checkpoint is written.
        reporter = NotesReporter()
        resumed.fit(reporter)
        notes = reporter.notes
        assert any("No space left on device" in n and "training goes on" in n for n in notes)
        assert load_checkpoint(run.last_checkpoint)["epoch"] == 2
        return
    with pytest.raises(StorageError, match="No space left on device") as info:
        resumed.fit()
    assert info.value.exit_code == 1 and "\n" not in str(info.value)
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


# --------------------------------------------------------------------------- round 2


@pytest.mark.slow
def test_a_real_full_disk_inside_torch_save_is_one_line(tmp_path: Path, data_dir: Path) -> None:
    problem = disk_full_training(tmp_path, data_dir)
    if problem is None:
        pytest.skip("no private mount namespace here (unshare -rm) for a small tmpfs")
    assert not problem


def test_the_zip_writers_runtime_error_becomes_the_os_error_behind_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk_save(payload: object, sink: checkpoint._Sink) -> None:
        class Full:
            def write(self, data: bytes) -> int:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        sink.fh = Full()  # type: ignore[assignment]
        with pytest.raises(OSError):
            sink.write(b"PK")  # torch's writer swallows this ...
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk_save)
    target = tmp_path / "last.pt"
    with pytest.raises(StorageError, match=r"last\.pt: No space left on device; the previous"):
        checkpoint.save_checkpoint(target, {"epoch": 1})
    assert not list(tmp_path.iterdir())  # nothing half-written, no temporary file


@pytest.mark.parametrize("command", ["resume", "sample", "evaluate", "report", "export"])
@pytest.mark.slow
def test_a_read_only_run_folder_is_one_line_and_untouched(
    tmp_path: Path, tiny_run: Path, command: str
) -> None:
    problem = read_only_case(tmp_path, tiny_run, command)
    if problem is None:
        pytest.skip("no private mount namespace here (unshare -rm) for a read-only mount")
    assert not problem


def test_two_writers_of_one_new_name_never_both_succeed(tmp_path: Path) -> None:
    target, results = tmp_path / "same.npz", []
    barrier = threading.Barrier(2)

    def write(content: bytes) -> None:
        try:
            with atomic_write(target, replace=False) as tmp:
                tmp.write_bytes(content)
                barrier.wait()  # both have written their temporary file
            results.append(content)
        except ConfigError as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=write, args=(c,)) for c in (b"one", b"two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    written = [r for r in results if isinstance(r, bytes)]
    assert len(written) == 1 and target.read_bytes() == written[0]
    assert any("already exists; pass --force" in str(r) for r in results)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.npz"]


def test_a_temporary_name_fits_beside_a_final_name_at_the_limit(tmp_path: Path) -> None:
    target = tmp_path / ("x" * 251 + ".png")
    assert len(temporary_name(target).name) <= 255
    with atomic_write(target, replace=False) as tmp:
        tmp.write_bytes(b"png")
    assert target.read_bytes() == b"png"


def test_unreadable_evaluations_are_kept_aside_under_new_numbers(
    tmp_path: Path, tiny_run: Path
) -> None:
    run = RunDir(tmp_path / "run")
    copy_run(tiny_run, run.path)
    report = EvalReport("last.pt", 2, False, 50, 0, "evaluator", "a", "a", 0.9, "mnist",
                        "test", ["0"], Scores(fid=1.0, coverage=1))  # fmt: skip
    notes: list[str] = []
    for junk in ("first junk", '{"model": 5}'):
        run.evaluations.write_text(junk)
        append_record(run, report, notes.append)
    kept = {p.name: p.read_text() for p in run.path.glob("eval.json.unreadable*")}
    assert kept == {"eval.json.unreadable": "first junk", "eval.json.unreadable-2": '{"model": 5}'}
    assert len(read_evaluations(run.evaluations)) == 1 and "kept as" in notes[-1]
    assert not (run.path / EVAL_LOCK_NAME).exists()


def test_the_evaluation_lock_waits_then_names_its_owner(tmp_path: Path) -> None:
    lock = tmp_path / EVAL_LOCK_NAME
    lock.write_text(f"{os.getpid()}\n")
    with (
        pytest.raises(RunDirError, match=f"process {os.getpid()} is busy"),
        hold_lock(lock, "process {owner} is busy", wait=0.2),
    ):
        pass
    assert lock.exists()  # a live owner's lock is never taken


def test_memory_estimates_pass_the_presets_and_refuse_absurd_widths() -> None:
    for preset in ("gan-mnist", "dcgan-mnist", "cgan-mnist", "wgan-gp-mnist"):
        config = load_config(preset)
        assert 10 * 2**20 < training_memory(config, (1, 28, 28), 10) < 2**30, preset
    wide = load_config("dcgan-mnist", ["model.g_width=16", "model.d_width=16"])
    assert training_memory(wide, (3, 512, 512), 10) > 2**40  # > 1 TB: refused anywhere
