"""Usage: gancli train --preset dcgan-mnist --epochs 5

The command line: parse options, call one engine function, print. No training maths here.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

import gancli
from gancli import ui
from gancli.engine.errors import EXIT_INTERRUPTED, EXIT_USAGE, ConfigError, GancliError

app = typer.Typer(
    name="gancli",
    help="Train, sample, animate, score and inspect the classic GANs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else there.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]


@contextmanager
def cli_errors() -> Iterator[None]:
    """Engine errors -> one line on stderr and their exit code; Ctrl-C -> 130."""
    try:
        yield
    except GancliError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gancli {gancli.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Train, sample, animate, score and inspect the classic GANs."""


@app.command(
    epilog="Examples:  gancli train --preset dcgan-mnist --epochs 5 --data-dir data  |  "
    "gancli train --preset wgan-gp-mnist --set optim.lr_g=5e-5  |  "
    "gancli train --resume runs/dcgan-mnist-001 --epochs 10"
)
def train(
    preset: Annotated[
        str | None,
        typer.Option("--preset", "-p", help="Preset name (see presets/) or path to a YAML file."),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set", "-s", help="Override one config value: section.key=value. Repeatable."
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs to train (training.epochs).")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Batch size (training.batch_size).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (training.seed).")] = None,
    limit: Annotated[
        int | None, typer.Option(help="Train on the first N images only (data.limit).")
    ] = None,
    save_every: Annotated[
        int | None, typer.Option(help="Also keep checkpoints/epoch_NNNN.pt every K epochs.")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Data root to search first (then $GANCLI_DATA_DIR, the cache, download)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Runs root (default: $GANCLI_RUNS_DIR or ./runs).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Run name (default: the preset's).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    threads: Annotated[
        int | None, typer.Option(min=1, help="CPU threads (default: physical cores).")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="Continue RUN_DIR from its last checkpoint (with --epochs to extend)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the resolved config and stop.")
    ] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train a GAN from a preset; writes a run directory with samples, metrics and checkpoints."""
    from gancli.engine.config import config_to_dict, config_to_yaml, load_config, resolve_preset
    from gancli.engine.trainer import RuntimeOptions, Trainer

    with cli_errors():
        options = RuntimeOptions(
            data_dir=str(data_dir) if data_dir else None,
            out=str(out) if out else None,
            name=name,
            device=device,
            threads=threads,
        )
        if resume is not None:
            others = {
                "--preset": preset,
                "--set": overrides,
                "--batch-size": batch_size,
                "--seed": seed,
                "--limit": limit,
                "--save-every": save_every,
                "--name": name,
            }
            given = [flag for flag, value in others.items() if value]
            if given:
                raise ConfigError(
                    f"--resume continues a run with its own config; drop {', '.join(given)} "
                    "(only --epochs, --device, --threads and --data-dir apply)"
                )
            if dry_run:
                raise ConfigError("--dry-run does not apply to --resume")
            trainer = Trainer.resume(resume, options, epochs=epochs)
        else:
            flags = {
                "training.epochs": epochs,
                "training.batch_size": batch_size,
                "training.seed": seed,
                "data.limit": limit,
                "training.save_every": save_every,
            }
            config = load_config(preset, overrides or [], flags)
            if dry_run:
                if json_out:
                    ui.print_json(config_to_dict(config))
                elif not quiet:
                    sys.stdout.write(config_to_yaml(config))
                return
            preset_name = resolve_preset(preset).stem if preset else "custom"
            trainer = Trainer.new(config, options, preset_name=preset_name)
        console = ui.make_console(json_out)
        reporter = ui.make_reporter(console, quiet)
        try:
            result = trainer.fit(reporter)
        finally:
            reporter.close()
    if json_out:
        ui.print_json(dataclasses.asdict(result))
    elif not quiet:
        console.print(
            f"done: {result.epochs} epochs, {result.steps} steps in {result.seconds:.1f}s "
            f"({result.images_per_second:.0f} img/s); run directory {result.run_dir}",
            soft_wrap=True,
        )


def _not_yet(command: str) -> None:
    typer.echo(f"error: gancli {command} is not implemented yet", err=True)
    raise typer.Exit(EXIT_USAGE)


@app.command(epilog="Example:  gancli sample --digit 7 -n 64")
def sample(
    path: Annotated[str | None, typer.Argument(help="Run directory or checkpoint.")] = None,
) -> None:
    """Generate images from a trained run (not implemented yet)."""
    _not_yet("sample")


@app.command(epilog="Example:  gancli animate runs/dcgan-mnist-001")
def animate(path: Annotated[str | None, typer.Argument(help="Run directory.")] = None) -> None:
    """Build a GIF of training progress (not implemented yet)."""
    _not_yet("animate")


@app.command(epilog="Example:  gancli evaluate runs/cgan-mnist-001 -n 10000")
def evaluate(
    path: Annotated[str | None, typer.Argument(help="Run directory or checkpoint.")] = None,
) -> None:
    """Score a trained run with FID, KID and class metrics (not implemented yet)."""
    _not_yet("evaluate")


@app.command(epilog="Example:  gancli inspect runs/dcgan-mnist-001")
def inspect(
    path: Annotated[str | None, typer.Argument(help="Run, checkpoint or preset.")] = None,
) -> None:
    """Show what a run, checkpoint or preset holds (not implemented yet)."""
    _not_yet("inspect")
