"""Usage: trainer.listeners.append(MyListener())  # on_log / on_epoch_end / on_fit_end

What the training loop tells the outside world. The Reporter shows progress to the user
(the CLI renders it as a progress bar or log lines). Listeners write and check what a run
keeps besides its checkpoints, each called by the run driver after every metrics line
(`on_log`), at the end of every epoch (`on_epoch_end`, in list order, before the
checkpoint) and once training is done (`on_fit_end`). Only the rank that writes the run
directory reports and has listeners.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from gancli.engine.animation import write_progress
from gancli.engine.health import HealthMonitor
from gancli.engine.plots import plot_losses
from gancli.engine.runs import RunDir
from gancli.engine.sampling import save_grid

if TYPE_CHECKING:
    from gancli.engine.trainer import Trainer


class Reporter(Protocol):
    """What the loop tells the outside world; the CLI renders it as a progress bar or log lines."""

    def start(self, info: dict[str, Any]) -> None: ...
    def advance(self, step: int, stats: dict[str, float] | None) -> None: ...
    def epoch(self, record: dict[str, Any]) -> None: ...
    def note(self, text: str) -> None: ...


class NullReporter:
    def start(self, info: dict[str, Any]) -> None: ...
    def advance(self, step: int, stats: dict[str, float] | None) -> None: ...
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

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.every = trainer.config.training.eval_every
        self.scorer: Any = None  # a ProgressScorer, built on first use

    def on_epoch_end(self, end: EpochEnd) -> None:
        if not self.every or end.epoch % self.every:
            return
        if self.scorer is None:
            from gancli.engine.scoring import ProgressScorer  # loads the evaluator's code

            t = self.trainer
            prior = t.clusters.prior if t.clusters is not None else None
            self.scorer = ProgressScorer(t.config, t.data, t.options.data_dir, t.note, prior)
        record = {"kind": "eval", "epoch": end.epoch, "step": end.step}
        record.update(self.scorer.score(end.sampler, end.epoch))
        self.trainer.run.log.append(record)
        self.trainer.note(self.scorer.describe(record))
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


def default_listeners(trainer: Trainer) -> list[Listener]:
    """The outputs of every run, in the order they run at each epoch's end."""
    return [
        SampleGrids(
            trainer.run, trainer.grid_nrow, trainer.row_labels, trainer.config.training.grid_scale
        ),
        ProgressEvaluation(trainer),
        HealthWarnings(trainer.health, trainer.data.num_classes, trainer.warn),
        LossPlot(trainer.run),
        ProgressGif(trainer.run),
    ]
