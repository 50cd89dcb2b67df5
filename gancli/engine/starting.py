"""Usage: trainer = new_trainer(config, options); trainer.fit(reporter)

Starting a training: a new run directory with its data, config.yaml and reals.png, or the
resume of a run from its newest valid checkpoint, each as a Trainer ready to fit.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gancli.engine import distributed
from gancli.engine.config import Config
from gancli.engine.data import load_dataset
from gancli.engine.errors import CheckpointError
from gancli.engine.grids import save_grid
from gancli.engine.runs import RunDir, read_resume_point, runs_root
from gancli.engine.runtime import RuntimeOptions, prepare
from gancli.engine.trainer import Trainer


def new_trainer(
    config: Config,
    options: RuntimeOptions,
    preset_name: str = "custom",
    out: str | None = None,
    name: str | None = None,
    device: torch.device | None = None,
) -> Trainer:
    """Load data, create the run directory under `out` (default: the runs root) named
    after `name` or the preset, write config.yaml and reals.png. `device`: what
    runtime.prepare(options) returned, when the caller has set up the process already.

    Under torchrun, call it inside distributed.session(): rank 0 creates the run
    directory and tells the others its path.
    """
    device = device or prepare(options)
    data = load_dataset(config.data, options.data_dir, device=device)
    root = runs_root(out)
    run = distributed.on_main(lambda: RunDir.create(root, name or preset_name))
    try:
        trainer = Trainer(config, run, data, device, options)
        if trainer.is_main:
            run.write_config(config, f"preset: {preset_name}")
            scale = config.training.grid_scale
            save_grid(trainer.reals, run.reals, trainer.grid_nrow, trainer.row_labels, scale)
    except BaseException:  # an error, a full disk or a signal: leave no trace
        if distributed.is_main():
            run.discard()
        raise
    return trainer


def resume_trainer(
    run_path: str | Path,
    options: RuntimeOptions,
    epochs: int | None = None,
    device: torch.device | None = None,
) -> Trainer:
    """Continue a run from its newest valid checkpoint; `epochs` raises the planned total.

    Nothing in the run directory changes before fit() holds the run's lock. Under
    torchrun, rank 0 reads the checkpoint and hands it to the others (no shared file
    system needed); the number of ranks may differ from the run's last one.
    """
    device = device or prepare(options)
    run, path, state, problems, config = distributed.on_main(
        lambda: read_resume_point(run_path, epochs)
    )
    data_dir = options.data_dir
    source = Path(str(state.get("data", {}).get("source", "")))
    if data_dir is None and source.name == "raw" and source.is_dir():
        data_dir = str(source.parents[1])  # read again from <root>/<Folder>/raw
    data = load_dataset(config.data, data_dir, device=device)
    if len(data) != state["data"]["num_images"]:
        raise CheckpointError(
            f"the dataset now has {len(data)} images, the run was trained on "
            f"{state['data']['num_images']}; resume needs the same data"
        )
    trainer = Trainer(config, run, data, device, options, checkpoint=state)
    trainer.last_is_good = path == run.last_checkpoint
    trainer.resume_pending, trainer.raised_epochs = True, epochs
    if problems:
        trainer.notes.append(
            f"resuming from {path.name} (step {trainer.step}); skipped: {'; '.join(problems)}"
        )
    planned = config.training.epochs
    if trainer.epoch >= planned and not trainer.step_in_epoch:
        trainer.notes.append(
            f"the run has finished its {planned} epoch{'s' if planned != 1 else ''}: nothing "
            f"left to train; pass --epochs N (more than {planned}) to train it further"
        )
    return trainer
