"""Usage: trainer.outputs.listeners.append(MyListener())  # on_log / on_epoch_end / on_fit_end

What the training loop tells the outside world. The Reporter shows progress to the user
(the CLI renders it as a progress bar or log lines). Listeners write and check what a run
keeps besides its checkpoints, each called by the run driver after every metrics line
(`on_log`), at the end of every epoch (`on_epoch_end`, in list order, before the
checkpoint) and once training is done (`on_fit_end`). Only the rank that writes the run
directory reports and has listeners.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from operator import methodcaller
from typing import Any, Protocol

import torch
from torch import nn

from gancli.engine.animation import write_progress
from gancli.engine.config import Config, config_to_yaml
from gancli.engine.data import ImageSet
from gancli.engine.errors import ConfigError, GancliError, Interrupted
from gancli.engine.grids import save_grid
from gancli.engine.health import HealthMonitor
from gancli.engine.plots import plot_losses
from gancli.engine.runs import RunDir


class Reporter(Protocol):
    """What the loop tells the outside world; the CLI renders it as a progress bar or log lines.

    `advance` comes after every step with the epoch under way and, at a log line, its
    figures; between log lines it also gets, every `preview_seconds` (None: never), the
    losses of the steps since the last one: about once a second for a live bar, every
    half minute for a log."""

    preview_seconds: float | None

    def start(self, info: dict[str, Any]) -> None: ...
    def advance(self, step: int, epoch: int, stats: dict[str, float] | None) -> None: ...
    def epoch(self, record: dict[str, Any]) -> None: ...
    def note(self, text: str) -> None: ...


class NullReporter:
    preview_seconds: float | None = None

    def start(self, info: dict[str, Any]) -> None: ...
    def advance(self, step: int, epoch: int, stats: dict[str, float] | None) -> None: ...
    def epoch(self, record: dict[str, Any]) -> None: ...
    def note(self, text: str) -> None: ...


@dataclass
class EpochEnd:
    """One finished epoch, as the listeners see it; earlier listeners may add to it."""

    epoch: int  # epochs done: the number of the epoch just finished
    step: int  # G steps done
    sampler: nn.Module  # the generator samples are drawn from (the EMA when kept)
    samples: torch.Tensor  # uint8 images of the fixed grid noise (and labels)
    evaluation: dict[str, Any] | None = None  # an --eval-every check, when this epoch had one


class Listener:
    """Does nothing; subclasses override what they need."""

    def on_log(self, record: dict[str, Any]) -> None:
        """A step record just written to metrics.jsonl (losses, D outputs, images/s)."""

    def on_epoch_end(self, end: EpochEnd) -> None:
        """An epoch is done; its checkpoint is written after every listener has run."""

    def on_fit_end(self) -> None:
        """The planned epochs are done (not called when training stops early)."""


class SampleGrids(Listener):
    """samples/epoch_NNNN.png: the epoch's samples of the fixed noise, one row per class
    for conditional models, enlarged `scale` times (training.grid_scale)."""

    def __init__(self, run: RunDir, nrow: int, row_labels: list[str] | None, scale: int = 1):
        self.run, self.nrow, self.row_labels, self.scale = run, nrow, row_labels, scale

    def on_epoch_end(self, end: EpochEnd) -> None:
        path = self.run.epoch_grid(end.epoch)
        save_grid(end.samples, path, self.nrow, self.row_labels, self.scale)


class ProgressEvaluation(Listener):
    """--eval-every K: FID, class coverage (and class accuracy) every K epochs, into
    metrics.jsonl and the user's view."""

    def __init__(
        self,
        run: RunDir,
        config: Config,
        data: ImageSet,
        data_dir: str | None,
        note: Callable[[str], None],
        prior: torch.Tensor | None,
    ):
        self.run, self.config, self.data, self.data_dir = run, config, data, data_dir
        self.note, self.prior = note, prior  # prior: the clusters' shares (model.clusters)
        self.every = config.training.eval_every
        self.scorer: Any = None  # a ProgressScorer, built on first use

    def on_epoch_end(self, end: EpochEnd) -> None:
        if not self.every or end.epoch % self.every:
            return
        if self.scorer is None:
            from gancli.engine.scoring import ProgressScorer  # loads the evaluator's code

            args = (self.config, self.data, self.data_dir, self.note, self.prior)
            self.scorer = ProgressScorer(*args)
        record = {"kind": "eval", "epoch": end.epoch, "step": end.step}
        record.update(self.scorer.score(end.sampler, end.epoch))
        self.run.log.append(record)
        self.note(self.scorer.describe(record))
        end.evaluation = record


class HealthWarnings(Listener):
    """Warnings when D wins outright, the samples lose their variety or an --eval-every
    check covers fewer classes than before (see health.py)."""

    def __init__(
        self, monitor: HealthMonitor, num_classes: int, warn: Callable[[str | None], None]
    ):
        self.monitor, self.num_classes, self.warn = monitor, num_classes, warn

    def on_log(self, record: dict[str, Any]) -> None:
        self.warn(self.monitor.after_log(record))

    def on_epoch_end(self, end: EpochEnd) -> None:
        self.warn(self.monitor.after_epoch(end.epoch, end.samples))
        if end.evaluation is not None:
            self.warn(self.monitor.after_eval(end.evaluation, self.num_classes))


class LossPlot(Listener):
    """losses.png, redrawn from metrics.jsonl every epoch."""

    def __init__(self, run: RunDir):
        self.run = run

    def on_epoch_end(self, end: EpochEnd) -> None:
        plot_losses(self.run.log.read(), self.run.losses_plot, self.run.path.name)


class ProgressGif(Listener):
    """progress.gif from the epoch grids, once training is done."""

    def __init__(self, run: RunDir):
        self.run = run

    def on_fit_end(self) -> None:
        write_progress(self.run)


#: metrics.jsonl field -> TensorBoard tag
TENSORBOARD_TAGS = {
    "loss_d": "loss/D",
    "loss_g": "loss/G",
    "d_real": "D_output/real",
    "d_fake": "D_output/fake",
    "images_per_second": "speed/images_per_second",
}


class TensorBoardLog(Listener):
    """training.tensorboard: RUN/tensorboard/ holds the metrics lines as scalars, each
    epoch's grid as an image, the --eval-every figures and the config as text, so that
    `tensorboard --logdir runs` shows every run. metrics.jsonl stays the record; this is a
    view of it. The writer starts at the first log line, once the run's lock is held."""

    def __init__(self, run: RunDir, config_text: str, start_step: int, nrow: int):
        if importlib.util.find_spec("tensorboard") is None:  # before any file is made
            raise ConfigError(
                "training.tensorboard: the tensorboard package is not installed; "
                "pip install 'gancli[tensorboard]' (or turn it off with --no-tensorboard)"
            )
        self.run, self.config_text, self.start_step, self.nrow = run, config_text, start_step, nrow
        self.writer: Any = None

    def _writer(self) -> Any:
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            # A resumed run redoes the steps after its checkpoint: purging from there keeps
            # one value per step, as metrics.jsonl does.
            purge = self.start_step + 1 if self.start_step else None
            self.writer = SummaryWriter(str(self.run.path / "tensorboard"), purge_step=purge)
            if not self.start_step:
                indented = "\n".join("    " + line for line in self.config_text.splitlines())
                self.writer.add_text("config", indented, 0)
        return self.writer

    def on_log(self, record: dict[str, Any]) -> None:
        writer = self._writer()
        for key, tag in TENSORBOARD_TAGS.items():
            if record.get(key) is not None:
                writer.add_scalar(tag, record[key], record["step"])
        # On disk with its metrics line: a run stopped or failed before its end (which
        # closes the writer) keeps every line in both.
        writer.flush()

    def on_epoch_end(self, end: EpochEnd) -> None:
        from torchvision.utils import make_grid

        writer = self._writer()
        grid = make_grid(end.samples, nrow=self.nrow, padding=2, pad_value=255)
        writer.add_image("samples", grid, end.step)
        for key, value in (end.evaluation or {}).items():
            if key not in ("kind", "epoch", "step") and isinstance(value, int | float):
                writer.add_scalar(f"eval/{key}", value, end.step)
        writer.add_scalar("epoch", end.epoch, end.step)
        writer.flush()  # an epoch's events are on disk with its checkpoint

    def on_fit_end(self) -> None:
        if self.writer is not None:
            self.writer.close()


def default_listeners(
    run: RunDir,
    config: Config,
    data: ImageSet,
    grid_nrow: int,
    row_labels: list[str] | None,
    health: HealthMonitor,
    start_step: int,
    note: Callable[[str], None],
    warn: Callable[[str | None], None],
    prior: torch.Tensor | None,
    data_dir: str | None,
) -> list[Listener]:
    """The outputs of every run, in the order they run at each epoch's end."""
    listeners = [
        SampleGrids(run, grid_nrow, row_labels, config.training.grid_scale),
        ProgressEvaluation(run, config, data, data_dir, note, prior),
        HealthWarnings(health, data.num_classes, warn),
        LossPlot(run),
        ProgressGif(run),
    ]
    if config.training.tensorboard:
        listeners.append(TensorBoardLog(run, config_to_yaml(config), start_step, grid_nrow))
    return listeners


class Outputs:
    """The run's listeners, told each event in turn. An output a listener cannot make (a
    full disk, a folder in the way of losses.png, a damaged epoch grid for the GIF) is a
    warning, said once per listener, not the end of training: the epoch's checkpoint is
    still written, and the command's exit code says the training succeeded."""

    def __init__(self, listeners: list[Listener], note: Callable[[str], None]):
        self.listeners, self.note = listeners, note
        self.failed: set[type[Listener]] = set()  # listeners already warned about

    def tell(self, event: methodcaller) -> None:
        for listener in self.listeners:
            try:
                event(listener)
            except Interrupted:
                raise
            except (GancliError, OSError) as exc:
                if type(listener) not in self.failed:
                    self.failed.add(type(listener))
                    self.note(f"warning: {exc}; training goes on without it")
