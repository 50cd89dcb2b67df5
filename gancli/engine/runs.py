"""Usage: run = RunDir.create(runs_root("runs"), "dcgan-mnist")  # runs/dcgan-mnist-001

A run directory is created atomically (os.mkdir fails if the name exists), so two
runs never share one and an existing run is never overwritten.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gancli.engine.checkpoint import newest_valid
from gancli.engine.config import Config, config_from_dict, config_to_dict, load_config
from gancli.engine.errors import CheckpointError, ConfigError, RunDirError
from gancli.engine.files import atomic_write

ENV_RUNS_DIR = "GANCLI_RUNS_DIR"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MAX_RUNS_PER_NAME = 9999


def runs_root(out: str | Path | None = None) -> Path:
    """--out, else $GANCLI_RUNS_DIR, else ./runs."""
    if out is not None:
        return Path(out).expanduser()
    return Path(os.environ.get(ENV_RUNS_DIR) or "runs").expanduser()


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def log(self) -> MetricsLog:
        return MetricsLog(self.metrics)

    @property
    def samples(self) -> Path:
        return self.path / "samples"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def previous_checkpoint(self) -> Path:
        return self.checkpoints / "previous.pt"

    def checkpoint_files(self) -> list[Path]:
        """last.pt, previous.pt, then the kept epoch_NNNN.pt, newest first."""
        kept = sorted(self.checkpoints.glob("epoch_*.pt"), reverse=True)
        return [self.last_checkpoint, self.previous_checkpoint, *kept]

    @property
    def reals(self) -> Path:
        return self.path / "reals.png"

    @property
    def losses_plot(self) -> Path:
        return self.path / "losses.png"

    @property
    def evaluations(self) -> Path:
        return self.path / "eval.json"

    @property
    def progress_gif(self) -> Path:
        return self.path / "progress.gif"

    def epoch_grid(self, epoch: int) -> Path:
        return self.samples / f"epoch_{epoch:04d}.png"

    def epoch_checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch_{epoch:04d}.pt"

    @classmethod
    def create(cls, root: Path, name: str) -> RunDir:
        """Make ROOT/NAME-NNN with the next free number; never reuses an existing directory."""
        if not _NAME.match(name):
            raise RunDirError(
                f"--name {name!r}: use letters, digits, '.', '_' and '-' (at most 100 characters)"
            )
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
            run = cls(path)
            run.samples.mkdir()
            run.checkpoints.mkdir()
            return run
        raise RunDirError(f"{root} already holds {MAX_RUNS_PER_NAME} runs named {name}")

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run directory (one holding at least one checkpoint)."""
        run = cls(Path(path).expanduser())
        if not run.path.is_dir():
            raise CheckpointError(f"run directory not found: {run.path}")
        if not any(p.is_file() for p in run.checkpoint_files()):
            raise CheckpointError(f"{run.path} holds no checkpoints/*.pt; is it a gancli run?")
        return run

    def newest_checkpoint(self) -> tuple[Path, dict[str, Any], list[str]]:
        """The valid checkpoint with the most steps, its contents, and what was skipped."""
        return newest_valid(self.checkpoint_files())


def read_resume_point(
    run_path: str | Path, epochs: int | None
) -> tuple[RunDir, Path, dict[str, Any], list[str], Config]:
    """Where a run goes on from: the run, its newest valid checkpoint (path and contents),
    why other checkpoints were skipped, and the run's config with `epochs` raised, checked
    against config.yaml and against the epochs already done."""
    run = RunDir.open(run_path)
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
    if not run.config.is_file():
        return
    try:
        recorded = config_to_dict(load_config(run.config))
    except ConfigError:
        return  # an unreadable config.yaml is replaced by the checkpoint's own on resume
    ours = config_to_dict(config)
    for section, values in ours.items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            theirs = recorded.get(section, {}).get(key)
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
            f"no trained runs under {root}; train one first (gancli train --preset dcgan-mnist) "
            "or pass a run directory or checkpoint"
        )
    newest = max(candidates, key=lambda p: p.stat().st_mtime)
    return RunDir(newest.parents[1])


def resolve_checkpoint(path: str | Path | None, root: Path) -> tuple[RunDir | None, Path]:
    """A run directory, a checkpoint file or nothing (the latest run) -> (run, checkpoint)."""
    if path is None:
        run = latest_run(root)
        return run, run.newest_checkpoint()[0]
    target = Path(path).expanduser()
    if target.is_dir():
        run = RunDir.open(target)
        return run, run.newest_checkpoint()[0]
    if not target.exists():
        raise CheckpointError(f"no run directory or checkpoint at {target}")
    parent = target.parent
    owner = RunDir(parent.parent) if parent.name == "checkpoints" else None
    return owner, target


def next_free_path(directory: Path, stem: str, suffix: str) -> Path:
    """directory/stem-NNN.suffix with the first number not taken, claimed atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    for number in range(1, 100_000):
        path = directory / f"{stem}-{number:03d}{suffix}"
        try:
            with open(path, "x"):
                return path
        except FileExistsError:
            continue
    raise RunDirError(f"{directory} holds too many {stem}-NNN{suffix} files")


class MetricsLog:
    """A run's metrics.jsonl: one JSON record per line, each with a `kind` (step, epoch,
    eval, warning), the 1-based `epoch` it belongs to and the G `step` it was written at.
    The training loop appends; inspect, the plots and resume read."""

    def __init__(self, path: Path):
        self.path = path

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def read(self) -> list[dict[str, Any]]:
        """Every record; a torn last line (a killed write) is left out."""
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def keep_until(self, step: int) -> None:
        """Drop the records written after G step `step` (a resumed run writes them again)."""
        keep = [r for r in self.read() if r.get("step", 0) <= step]
        with atomic_write(self.path) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))


LOCK_NAME = ".lock"


@contextmanager
def lock_run(run: RunDir) -> Iterator[None]:
    """Hold RUN/.lock while training, so two processes never train one run at once.

    A lock left by a process that no longer exists (killed with -9, say) is stale and
    taken over.
    """
    lock = run.path / LOCK_NAME
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _lock_owner(lock)
            if owner is not None and _alive(owner):
                raise RunDirError(
                    f"{run.path} is being trained by process {owner}; wait for it, or delete "
                    f"{lock} if that process is gone"
                ) from None
            lock.unlink(missing_ok=True)  # stale
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{os.getpid()}\n")
        break
    else:
        raise RunDirError(f"cannot take the lock {lock}")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _lock_owner(lock: Path) -> int | None:
    try:
        return int(lock.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
