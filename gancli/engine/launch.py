"""Usage: result = launch(TrainRequest(preset="dcgan-mnist", settings={"training.epochs": 5}))

What `gancli train` does, in one call: a new run from a preset, `--set` overrides and
dedicated flags, or the resume of an existing run, which keeps its own config and may
change only its planned epochs and the runtime options. Under torchrun the process joins
the other ranks for the run and leaves them at the end.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gancli.engine.config import Config, load_config, resolve_preset
from gancli.engine.errors import ConfigError
from gancli.engine.options import RuntimeOptions

if TYPE_CHECKING:
    from gancli.engine.listeners import Reporter
    from gancli.engine.trainer import TrainResult

EPOCHS = "training.epochs"  # the one config value a resume may change


@dataclass(frozen=True)
class TrainRequest:
    """A training command: a new run, or with `resume` the continuation of one."""

    preset: str | None = None  # preset name or YAML file; None: the defaults alone
    overrides: tuple[str, ...] = ()  # section.key=value, as given to --set
    settings: Mapping[str, Any] = field(default_factory=dict)  # dotted key -> flag value
    out: str | None = None  # runs root of a new run (default: $GANCLI_RUNS_DIR or ./runs)
    name: str | None = None  # name of a new run (default: the preset's)
    resume: str | None = None  # run directory to continue
    options: RuntimeOptions = field(default_factory=RuntimeOptions)

    def check(self) -> None:
        """A resume takes its config from the run: refuse what would change it."""
        if self.resume is None:
            return
        given = [flag for flag, value in self._run_flags().items() if value not in (None, ())]
        if given:
            applies = ["--epochs", *(_flag(f.name) for f in dataclasses.fields(RuntimeOptions))]
            raise ConfigError(
                f"--resume continues a run with its own config; drop {', '.join(given)} "
                f"(only {', '.join(applies)} apply)"
            )

    def config(self) -> Config:
        """The resolved config of a new run: defaults < preset < --set < flags."""
        return load_config(self.preset, self.overrides, self.settings)

    def _run_flags(self) -> dict[str, Any]:
        """What would change a run's config or name, by flag (--out, where new runs go,
        does not matter to a resume)."""
        flags = {"--preset": self.preset, "--set": tuple(self.overrides)}
        flags.update({_flag(k): v for k, v in self.settings.items() if k != EPOCHS})
        flags["--name"] = self.name
        return flags


def launch(request: TrainRequest, reporter: Reporter | None = None) -> TrainResult | None:
    """Train as asked. Returns the result on the rank that reports (rank 0), None on the
    others of a torchrun launch."""
    from gancli.engine import distributed  # PyTorch loads here, not for a dry run
    from gancli.engine.data import dataset_summary
    from gancli.engine.limits import check_training_memory
    from gancli.engine.runs import check_run_name
    from gancli.engine.runtime import prepare
    from gancli.engine.starting import new_trainer, resume_trainer

    with distributed.rank_errors():
        request.check()
        if request.name is not None:
            check_run_name(request.name)  # before the data is read
        config = None if request.resume else request.config()
        if config is not None:
            # Before joining the other ranks: a bad batch size fails fast, nobody waits.
            world = distributed.launched().world_size
            distributed.check_batch_size(config.training.batch_size, world)
        device = prepare(request.options)
        if config is not None:
            shape, classes = dataset_summary(config.data)
            check_training_memory(config, shape, len(classes or ()), device)
        with distributed.session(device):
            if request.resume is not None:
                epochs = request.settings.get(EPOCHS)
                trainer = resume_trainer(request.resume, request.options, epochs, device)
            else:
                assert config is not None
                preset_name = resolve_preset(request.preset).stem if request.preset else "custom"
                trainer = new_trainer(
                    config, request.options, preset_name, request.out, request.name, device
                )
            try:
                result = trainer.fit(reporter)
            except KeyboardInterrupt:
                if request.resume is None and trainer.is_main:
                    trainer.run.discard()  # stopped before its first checkpoint: no orphan
                raise
            is_main = trainer.is_main
            del trainer  # its DDP wrappers must go before the process group does
    return result if is_main else None


def _flag(key: str) -> str:
    """The command-line flag of a setting or option: training.batch_size -> --batch-size."""
    return "--" + key.rsplit(".", 1)[-1].replace("_", "-")
