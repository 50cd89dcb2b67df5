"""Usage: run = RunDir.create(runs_root("runs"), "dcgan-mnist")  # runs/dcgan-mnist-001

A run directory is created atomically (os.mkdir fails if the name exists), so two
runs never share one and an existing run is never overwritten.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gancli.engine.config import (
    SECTIONS,
    Config,
    config_from_dict,
    config_to_dict,
    config_to_yaml,
    load_config,
)
from gancli.engine.errors import CheckpointError, ConfigError, RunDirError, StorageError
from gancli.engine.files import atomic_write, check_writable, readable
from gancli.engine.records import MetricsLog

ENV_RUNS_DIR = "GANCLI_RUNS_DIR"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MAX_RUNS_PER_NAME = 9999


def check_run_name(name: str) -> None:
    """RunDirError unless `name` makes a run folder name safe to print and to type."""
    if not _NAME.fullmatch(name):  # match() would let a trailing newline through
        raise RunDirError(
            f"--name {name!r}: use letters, digits, '.', '_' and '-' (at most 100 characters)"
        )


def runs_root(out: str | Path | None = None) -> Path:
    """--out, else $GANCLI_RUNS_DIR, else ./runs."""
    if out is not None:
        return Path(out).expanduser()
    return Path(os.environ.get(ENV_RUNS_DIR) or "runs").expanduser()


class _Entry:
    """A RunDir attribute naming a path inside the run: `config = _Entry("config.yaml")`."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, run: RunDir, owner: type | None = None) -> Path:
        return run.path / self.name


@dataclass(frozen=True)
class RunDir:
    path: Path
    made_root: bool = False  # create() made the runs root too: discard() removes it if empty

    config = _Entry("config.yaml")
    metrics = _Entry("metrics.jsonl")
    samples = _Entry("samples")
    checkpoints = _Entry("checkpoints")
    last_checkpoint = _Entry("checkpoints/last.pt")
    previous_checkpoint = _Entry("checkpoints/previous.pt")
    reals = _Entry("reals.png")
    losses_plot = _Entry("losses.png")
    evaluations = _Entry("eval.json")
    progress_gif = _Entry("progress.gif")

    @property
    def log(self) -> MetricsLog:
        return MetricsLog(self.metrics)

    def checkpoint_files(self) -> list[Path]:
        """last.pt, previous.pt, then the kept epoch_NNNN.pt, newest first."""
        kept = sorted(self.checkpoints.glob("epoch_*.pt"), reverse=True)
        return [self.last_checkpoint, self.previous_checkpoint, *kept]

    def epoch_grid(self, epoch: int) -> Path:
        return self.samples / f"epoch_{epoch:04d}.png"

    def epoch_checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch_{epoch:04d}.pt"

    @classmethod
    def create(cls, root: Path, name: str) -> RunDir:
        """Make ROOT/NAME-NNN with the next free number; never reuses an existing directory."""
        check_run_name(name)
        made_root = not os.path.lexists(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirError(f"cannot create the runs root {root}: {exc.strerror}") from None
        if not root.is_dir():
            raise RunDirError(f"the runs root {root} is not a directory")
        pattern = re.compile(rf"^{re.escape(name)}-(\d+)$")
        taken = [int(m.group(1)) for p in root.iterdir() if (m := pattern.match(p.name))]
        number = max(taken, default=0) + 1
        while number <= MAX_RUNS_PER_NAME:
            path = root / f"{name}-{number:03d}"
            try:
                path.mkdir()
            except FileExistsError:  # another gancli took it a moment ago: take the next one
                number += 1
                continue
            except OSError as exc:
                raise RunDirError(f"cannot create {path}: {exc.strerror}") from None
            run = cls(path, made_root)
            try:
                run.samples.mkdir()
                run.checkpoints.mkdir()
            except BaseException:  # a signal or a full disk: leave no half-made run behind
                run.discard()
                raise
            return run
        raise RunDirError(f"{root} already holds {MAX_RUNS_PER_NAME} runs named {name}")

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run directory (one holding at least one checkpoint), checked for
        the damage that would otherwise surface halfway through a command."""
        run = cls(Path(path).expanduser())
        problem = stat_problem(run.path)
        if problem or not run.path.is_dir():
            raise CheckpointError(f"run directory not found: {run.path}{problem}")
        run.check_layout()
        if not any(p.is_file() for p in run.checkpoint_files()):
            raise CheckpointError(run._why_no_checkpoint())
        return run

    def check_layout(self) -> None:
        """One line naming the first of the run's own names that is the wrong kind of thing
        (a directory called config.yaml, a file called samples, a symlink loop)."""
        folders = [self.samples, self.checkpoints, self.path / GENERATED]
        files = [self.config, self.metrics, self.evaluations, self.path / LOCK_NAME]
        for path in folders:
            _check_kind(path, folder=True)
        for path in [*files, *self.checkpoint_files()]:
            _check_kind(path, folder=False)

    def write_config(self, config: Config, how: str) -> None:
        """config.yaml: the resolved config, headed by how it came about."""
        with atomic_write(self.config) as tmp:
            header = f"# resolved config of {readable(self.path.name)} ({how})\n"
            tmp.write_text(header + config_to_yaml(config), encoding="utf-8")

    def _why_no_checkpoint(self) -> str:
        owner = _lock_owner(self.path / LOCK_NAME)
        if owner is not None and _alive(owner):
            return (
                f"{self.path} is still training (process {owner}) and has no checkpoint yet; "
                "try again once its first epoch is done"
            )
        if self.config.is_file():
            return (
                f"{self.path} has no checkpoint: its training stopped before the first one "
                "was written, so there is nothing to use or resume; train again"
            )
        return f"{self.path} holds no checkpoints/*.pt; is it a gancli run?"

    def discard(self) -> None:
        """Remove a run folder that holds no checkpoint (made a moment ago, or interrupted
        before its first checkpoint): nothing in it can be used or resumed."""
        if not any(p.is_file() for p in self.checkpoint_files()):
            shutil.rmtree(self.path, ignore_errors=True)
            if self.made_root:
                with contextlib.suppress(OSError):  # not empty: other runs live there
                    self.path.parent.rmdir()

    def newest_checkpoint(self) -> tuple[Path, dict[str, Any], list[str]]:
        """The valid checkpoint with the most steps, its contents, and what was skipped."""
        from gancli.engine.checkpoint import newest_valid  # loads PyTorch: only when needed

        return newest_valid(self.checkpoint_files())


def read_resume_point(
    run_path: str | Path, epochs: int | None
) -> tuple[RunDir, Path, dict[str, Any], list[str], Config]:
    """Where a run goes on from: the run, its newest valid checkpoint (path and contents),
    why other checkpoints were skipped, and the run's config with `epochs` raised, checked
    against config.yaml and against the epochs already done."""
    run = RunDir.open(run_path)
    run.log.read()  # a damaged metrics.jsonl stops the resume here, before anything runs
    check_writable(run.path, LOCK_NAME)  # a read-only run: say so before loading the data
    path, state, problems = run.newest_checkpoint()
    saved = dict(state["config"])
    if epochs is not None:
        saved["training"] = {**saved["training"], "epochs": epochs}
    try:
        config = config_from_dict(saved)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    _check_same_run(run, path, config)
    if config.training.epochs < state["epoch"]:
        raise ConfigError(
            f"--epochs {config.training.epochs}: the run has already done {state['epoch']} epochs"
        )
    return run, path, state, problems, config


def _check_same_run(run: RunDir, checkpoint: Path, config: Config) -> None:
    """Refuse a checkpoint whose config differs from the run's config.yaml (epochs aside)."""
    try:
        recorded = config_to_dict(load_config(run.config))
    except ConfigError:  # missing or unreadable: the checkpoint's config is all there is
        return
    ours = config_to_dict(config)
    for section in SECTIONS:
        for key, value in ours[section].items():
            theirs = recorded[section][key]
            if (section, key) != ("training", "epochs") and value != theirs:
                raise CheckpointError(
                    f"{checkpoint} does not belong to {run.path}: {section}.{key} is {value!r} "
                    f"in the checkpoint but {theirs!r} in config.yaml"
                )


def latest_run(root: Path) -> RunDir:
    """The run under `root` whose newest checkpoint was written most recently."""
    candidates = (
        [p for p in root.glob("*/checkpoints/*.pt") if p.is_file()] if root.is_dir() else []
    )
    if not candidates:
        raise CheckpointError(
            f"no trained runs under {root}; train one first (gancli train --preset "
            "cgan-digits needs no download) or pass a run directory or checkpoint"
        )
    newest = max(candidates, key=lambda p: p.stat().st_mtime)
    return RunDir.open(newest.parents[1])


def resolve_checkpoint(path: str | Path | None, root: Path) -> tuple[RunDir | None, Path]:
    """A run directory, a checkpoint file or nothing (the latest run) -> (run, checkpoint)."""
    target = None if path is None else Path(path).expanduser()
    if target is None or target.is_dir():
        run = latest_run(root) if target is None else RunDir.open(target)
        return run, run.newest_checkpoint()[0]
    if not target.exists():
        raise CheckpointError(f"no run directory or checkpoint at {target}{stat_problem(target)}")
    parent = target.parent
    owner = RunDir(parent.parent) if parent.name == "checkpoints" else None
    if owner is not None:
        owner.check_layout()
    return owner, target


def next_free_path(directory: Path, stem: str, suffix: str) -> Path:
    """directory/stem-NNN.suffix with the first number not taken, claimed atomically by an
    empty file: the caller fills it (atomic_write may replace it) or removes it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for number in range(1, 100_000):
            path = directory / f"{stem}-{number:03d}{suffix}"
            try:
                with open(path, "x"):
                    return path
            except FileExistsError:
                continue
    except FileExistsError:
        raise CheckpointError(
            f"{directory} is a file, not a folder; move it out of the way"
        ) from None
    except OSError as exc:
        raise StorageError(f"cannot write {exc.filename or directory}: {exc.strerror}") from None
    raise RunDirError(f"{directory} holds too many {stem}-NNN{suffix} files")


GENERATED = "generated"  # sample's default output folder inside a run
EXPORTED = "export"  # export's default output folder inside a run
LOCK_NAME = ".lock"
EVAL_LOCK_NAME = ".eval.lock"


@contextmanager
def lock_run(run: RunDir) -> Iterator[None]:
    """Hold RUN/.lock while training, so two processes never train one run at once.

    A lock left by a process that no longer exists (killed with -9, say) is stale and
    taken over.
    """
    busy = (
        f"{run.path} is being trained by process {{owner}}; wait for it, or delete "
        f"{run.path / LOCK_NAME} if that process is gone"
    )
    with hold_lock(run.path / LOCK_NAME, busy):
        yield


@contextmanager
def hold_lock(lock: Path, busy: str, wait: float = 0.0) -> Iterator[None]:
    """Hold `lock` (a file holding the owner's process id) for the duration. A live owner
    is waited for up to `wait` seconds, then RunDirError(`busy`, with {owner} filled in);
    a dead owner's lock is taken over. Failing to write the lock is a StorageError."""
    deadline = time.monotonic() + wait
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _lock_owner(lock)
            if owner is None and _age(lock) < 1.0:
                time.sleep(0.05)  # just made by another process, which is writing its id
            elif owner is None or not _alive(owner):
                _remove_stale(lock)
            elif time.monotonic() < deadline:
                time.sleep(0.05)
            else:
                raise RunDirError(busy.replace("{owner}", str(owner))) from None
            continue
        except OSError as exc:
            raise StorageError(
                f"cannot write {lock}: {exc.strerror}; nothing was changed"
            ) from None
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{os.getpid()}\n")
        break
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return float("inf")


def _remove_stale(lock: Path) -> None:
    try:
        lock.unlink(missing_ok=True)
    except OSError as exc:  # a directory named .lock, say: never loop on it
        raise CheckpointError(f"{lock} cannot be taken ({exc.strerror}); remove it") from None


def _lock_owner(lock: Path) -> int | None:
    try:
        return int(lock.read_text().split()[0])
    except (OSError, ValueError, IndexError):  # missing, torn, binary or not a file
        return None


def _check_kind(path: Path, folder: bool) -> None:
    """CheckpointError unless `path` is missing or the kind of thing it should be."""
    problem = stat_problem(path)
    if problem:
        raise CheckpointError(f"{path}{problem}; move it out of the way")
    if not path.exists() or (path.is_dir() if folder else path.is_file()):
        return
    kind = "not a folder" if folder else "not a regular file"
    raise CheckpointError(f"{path} is {kind}; move it out of the way")


def stat_problem(path: Path) -> str:
    """': <reason>' when `path` cannot even be looked at (a symlink loop, a name too long,
    no permission); '' otherwise, also when it is simply missing."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return ""
    except OSError as exc:
        return f": {exc.strerror}"
    return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
