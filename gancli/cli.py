"""Usage: gancli train --preset dcgan-mnist --epochs 5

The command line: parse options, call one engine function, print. No training maths here.
"""

from __future__ import annotations

import dataclasses
import enum
import gc
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated, Any

import typer
from typer import rich_utils as typer_rich_utils
from typer.core import TyperArgument, TyperOption

import gancli
from gancli import completion, reporting, ui
from gancli.engine.errors import (
    EXIT_INTERRUPTED,
    ConfigError,
    GancliError,
    StorageError,
    Terminated,
    out_of_memory,
    raise_on_termination,
)

app = typer.Typer(
    name="gancli",
    help="Train, sample, animate, score and inspect the classic GANs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _no_type_for_flags(show_type: Any) -> Any:
    """Typer's type column, left empty where it is noise: a flag takes no value (newer
    Typer prints `<bool>` for it) and a named argument (RUN) says what it takes."""

    def column(param: Any, ctx: Any) -> str | None:
        if getattr(param, "is_flag", False) or isinstance(param, TyperArgument):
            return None
        shown: str | None = show_type(param, ctx)
        return shown

    return column


for _kind in (TyperOption, TyperArgument):
    if hasattr(_kind, "display_type_rich"):  # Typer >= 0.16; older ones print no types
        _kind.display_type_rich = _no_type_for_flags(_kind.display_type_rich)  # type: ignore[method-assign]


def _usage_error_in_one_line(error: Any) -> None:
    """Typer's own usage errors (a value of the wrong type or out of range, an unknown
    option, a missing value) as one line on stderr, like every other gancli error, instead
    of a usage line and a framed box. Its exit code (2) stays."""
    if type(error).__name__ == "NoArgsIsHelpError":  # the help was shown: nothing to add
        return
    ctx = getattr(error, "ctx", None)
    hint = f" (see {ctx.command_path} -h)" if ctx is not None else ""
    _say(f"error: {' '.join(error.format_message().split())}{hint}")


typer_rich_utils.rich_format_error = _usage_error_in_one_line  # type: ignore[assignment]

# Help panels: what an option is about.
RECIPE, DATA, DEVICE, RUN, OUTPUT = "Recipe", "Data", "Device", "Run folder", "Output"

JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json", help="Print one JSON object on stdout and nothing else there.",
        rich_help_panel=OUTPUT,
    ),
]  # fmt: skip
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print nothing but errors.", rich_help_panel=OUTPUT)
]
RunsOpt = Annotated[
    Path | None,
    typer.Option(
        "--runs", help="Runs root for the latest run ($GANCLI_RUNS_DIR or ./runs).",
        metavar="DIR", rich_help_panel=RUN,
    ),
]  # fmt: skip
DeviceOpt = Annotated[
    str,
    typer.Option(
        metavar="auto|cpu|cuda|cuda:N|mps", help="Where to compute.", rich_help_panel=DEVICE
    ),
]
#: A run folder or checkpoint argument, completed from the runs root.
RunArg = Annotated[
    str | None,
    typer.Argument(
        metavar="RUN", help="Run directory or checkpoint (default: the latest run).",
        autocompletion=completion.runs, show_default=False,
    ),
]  # fmt: skip

#: A run folder argument (no checkpoint file), completed from the runs root.
RunDirArg = Annotated[
    str | None,
    typer.Argument(
        metavar="RUN",
        help="Run directory (default: the latest run).",
        autocompletion=completion.runs,
        show_default=False,
    ),
]


class Precision(str, enum.Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


def examples(*lines: str) -> str:
    """An epilog of example commands, one per line so each can be copied whole."""
    return "Examples:\n" + "\n".join(f"  {line}" for line in lines)


@contextmanager
def cli_errors() -> Iterator[None]:
    """Engine errors -> one line on stderr and their exit code; Ctrl-C -> 130, SIGTERM and
    SIGHUP -> 128 + the signal; an allocator failure -> one line, exit 1."""
    try:
        yield
    except GancliError as exc:
        if not exc.quiet:  # quiet: rank 0 of a distributed run prints it
            _say(f"{exc.prefix}: {exc}" if exc.prefix else str(exc))
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt as exc:
        _say("interrupted" + (f" ({exc})" if isinstance(exc, Terminated) else ""))
        raise typer.Exit(getattr(exc, "exit_code", EXIT_INTERRUPTED)) from None
    except (MemoryError, RuntimeError) as exc:
        error = out_of_memory(exc)
        if error is None:
            raise
        _say(f"error: {error}")
        raise typer.Exit(error.exit_code) from None
    except OSError as exc:  # a file fault no engine function foresaw: still one line
        _say(f"error: {exc.filename or 'I/O'}: {exc.strerror or exc}")
        raise typer.Exit(StorageError.exit_code) from None


def _say(line: str) -> None:
    """One line on stderr, if stderr can take it; a newline or escape sequence in a name
    the message quotes is shown, never obeyed."""
    with suppress(OSError, ValueError):
        typer.echo(ui.printable(line), err=True)


def entry() -> None:
    """The `gancli` command and `python -m gancli`."""
    # Start-up creates hundreds of thousands of long-lived objects (PyTorch's modules) and
    # next to no garbage, and the collector's passes over them took 0.2-0.3 s of every
    # command. Collected 70x less often, they cost nothing measurable; a training step
    # makes a few hundred container objects, so a pass still comes every minute or two.
    gc.set_threshold(50_000, 20, 10)
    app()


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
    ui.guard_streams()
    raise_on_termination()


@app.command(
    epilog=examples(
        "gancli train --preset dcgan-mnist --epochs 5 --data-dir data",
        "gancli train --preset wgan-gp-mnist --set optim.lr_g=5e-5",
        "gancli train --resume runs/dcgan-mnist-001 --epochs 10",
        "gancli train --preset cgan-mnist --tensorboard   (then: tensorboard --logdir runs)",
        "torchrun --nproc-per-node 2 -m gancli train --preset dcgan-mnist   (one process per "
        "GPU or per CPU share; --batch-size is the global batch)",
    )
)
def train(
    preset: Annotated[
        str | None,
        typer.Option(
            "--preset",
            "-p",
            metavar="NAME|FILE",
            help="Preset name (gancli presets lists them) or path to a YAML file.",
            autocompletion=completion.presets,
            rich_help_panel=RECIPE,
        ),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            "-s",
            metavar="SECTION.KEY=VALUE",
            help="Override one config value (gancli inspect PRESET shows them). Repeatable.",
            rich_help_panel=RECIPE,
        ),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Epochs to train (training.epochs).", rich_help_panel=RECIPE)
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(help="Batch size (training.batch_size).", rich_help_panel=RECIPE),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Random seed (training.seed).", rich_help_panel=RECIPE)
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            rich_help_panel=DATA,
            help="Data root to search first (then $GANCLI_DATA_DIR, the cache, download).",
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(help="Train on the first N images only (data.limit).", rich_help_panel=DATA),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            rich_help_panel=RUN,
            help="Runs root (default: $GANCLI_RUNS_DIR or ./runs).",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Run name (default: the preset's).", rich_help_panel=RUN)
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            metavar="RUN",
            rich_help_panel=RUN,
            autocompletion=completion.runs,
            help="Continue RUN from its last checkpoint (with --epochs to extend).",
        ),
    ] = None,
    save_every: Annotated[
        int | None,
        typer.Option(
            metavar="K",
            rich_help_panel=RUN,
            help="Also keep checkpoints/epoch_NNNN.pt every K epochs.",
        ),
    ] = None,
    eval_every: Annotated[
        int | None,
        typer.Option(
            metavar="K",
            rich_help_panel=RUN,
            help="Every K epochs: FID and class coverage into metrics.jsonl.",
        ),
    ] = None,
    tensorboard: Annotated[
        bool | None,
        typer.Option(
            "--tensorboard/--no-tensorboard",
            rich_help_panel=RUN,
            show_default=False,
            help="Also log to TensorBoard in the run folder (training.tensorboard; needs "
            "pip install 'gancli\\[tensorboard]').",
        ),
    ] = None,
    device: DeviceOpt = "auto",
    threads: Annotated[
        int | None,
        typer.Option(
            rich_help_panel=DEVICE,
            help="CPU threads per process (default: the physical cores, shared out among "
            "the processes torchrun starts on this machine).",
        ),
    ] = None,
    precision: Annotated[
        Precision,
        typer.Option(
            rich_help_panel=DEVICE,
            help="Arithmetic of the forward passes: fp32, or bf16/fp16 autocast (mixed "
            "precision; fp16 adds loss scaling). fp32 on CUDA uses TF32 tensor cores. "
            "On a CPU, bf16 is fast only with AVX512-BF16 or AMX, and fp16 is very slow.",
        ),
    ] = Precision.fp32,
    compile_: Annotated[
        bool,
        typer.Option(
            "--compile/--no-compile",
            rich_help_panel=DEVICE,
            help="torch.compile G and D: faster steps after a compile of tens of seconds.",
        ),
    ] = False,
    sync_bn: Annotated[
        bool,
        typer.Option(
            "--sync-bn",
            rich_help_panel=DEVICE,
            help="Under torchrun on GPUs: batch-norm statistics over the global batch "
            "(default: each process normalises over its own share).",
        ),
    ] = False,
    deterministic: Annotated[
        bool,
        typer.Option(
            "--deterministic",
            rich_help_panel=DEVICE,
            help="Only deterministic kernels (CUDA); fails naming the op that has none.",
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print the resolved config and stop.", rich_help_panel=OUTPUT
        ),
    ] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train a GAN from a preset; writes a run directory with samples, metrics and checkpoints."""
    from gancli.engine.config import config_to_dict, config_to_yaml
    from gancli.engine.launch import TrainRequest
    from gancli.engine.runtime import RuntimeOptions

    settings = {
        "training.epochs": epochs,
        "training.batch_size": batch_size,
        "training.seed": seed,
        "data.limit": limit,
        "training.save_every": save_every,
        "training.eval_every": eval_every,
        "training.tensorboard": tensorboard,
    }
    options = RuntimeOptions(
        data_dir=str(data_dir) if data_dir else None,
        device=device,
        threads=threads,
        deterministic=deterministic,
        precision=precision.value,
        compile=compile_,
        sync_bn=sync_bn,
    )
    request = TrainRequest(
        preset=preset,
        overrides=tuple(overrides or ()),
        settings=settings,
        out=str(out) if out else None,
        name=name,
        resume=str(resume) if resume else None,
        options=options,
    )
    with cli_errors():
        if dry_run:
            if resume is not None:
                raise ConfigError("--dry-run does not apply to --resume")
            config = request.config()
            if json_out:
                ui.print_json(config_to_dict(config))
            elif not quiet:
                ui.write_text(config_to_yaml(config))
            return
        # Imported only now: a dry run or a bad flag should not wait for PyTorch to load.
        from gancli.engine.launch import launch

        console = ui.make_console(json_out)
        reporter = reporting.make_reporter(console, quiet)
        try:
            result = launch(request, reporter)
        finally:
            reporter.close()
        if result is None:
            return  # a torchrun rank other than 0: rank 0 reports for all
        if json_out:
            ui.print_json(dataclasses.asdict(result))
        elif not quiet:
            console.print(ui.done_line(result), soft_wrap=True)


def _emit(payload: dict[str, Any], json_out: bool, quiet: bool, line: str) -> None:
    """--json: the payload on stdout; otherwise one human line unless --quiet."""
    if json_out:
        ui.print_json(payload)
    elif not quiet:
        ui.make_console(False).print(line, soft_wrap=True)


@app.command(
    epilog=examples(
        "gancli sample --digit 7 -n 64",
        "gancli sample runs/cgan-mnist-001 --class all -n 10000 --out s.npz",
        "gancli sample --out pictures/ -n 16 --truncation 1.5",
        "gancli sample -n 16 --scale 4",
    )
)
def sample(
    path: RunArg = None,
    num: Annotated[int, typer.Option("--num", "-n", min=1, help="Images to generate.")] = 64,
    classes: Annotated[
        list[str] | None,
        typer.Option(
            "--class",
            "--digit",
            "--label",
            "-c",
            metavar="CLASS",
            help="Class by number or name (7, A, Sneaker); lists and ranges: 0-9, 1,3,5, all. "
            "Repeatable; n is split evenly between them.",
            autocompletion=completion.class_names,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Same seed, same images.")] = 0,
    ema: Annotated[
        bool | None,
        typer.Option(
            "--ema/--no-ema", help="Use the EMA generator (default: if kept).", show_default=False
        ),
    ] = None,
    truncation: Annotated[
        float | None,
        typer.Option(min=0.01, metavar="T", help="Redraw noise entries with |z| > T."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE|DIR/",
            rich_help_panel=OUTPUT,
            help="A .png grid, a .npz (images, labels) or a directory of PNGs "
            "(default: RUN/generated/sample-NNN.png).",
        ),
    ] = None,
    nrow: Annotated[
        int | None, typer.Option(min=1, help="Images per grid row.", rich_help_panel=OUTPUT)
    ] = None,
    scale: Annotated[
        int,
        typer.Option(
            "--scale",
            metavar="K",
            rich_help_panel=OUTPUT,
            help="Enlarge each pixel of a .png grid or a folder's PNGs to K x K, K from 1 to "
            "16 (nearest neighbour); a .npz keeps the images as generated.",
        ),
    ] = 1,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing --out.", rich_help_panel=OUTPUT)
    ] = False,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Images per forward pass.", rich_help_panel=DEVICE)
    ] = 500,
    device: DeviceOpt = "auto",
    runs: RunsOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Generate images from a trained run, without retraining."""
    from gancli.engine.runs import GENERATED, resolve_checkpoint, runs_root
    from gancli.engine.runtime import use_device
    from gancli.engine.sampling import (
        SampleRequest,
        check_scale_factor,
        load_generator,
        parse_labels,
        write_samples,
    )

    with cli_errors():
        check_scale_factor(scale)
        run, checkpoint = resolve_checkpoint(path, runs_root(runs))
        trained = load_generator(checkpoint, use_device(device), ema)
        labels = tuple(parse_labels(classes or [], trained.class_names))
        request = SampleRequest(num, labels, seed, truncation, batch_size)
        default_dir = (run.path if run else Path.cwd()) / GENERATED
        with reporting.StageProgress(
            ui.make_console(json_out), quiet, ui.make_console(True)
        ) as progress:
            result = write_samples(trained, request, out, nrow, force, default_dir, scale, progress)
        result.update(
            checkpoint=str(checkpoint), epoch=trained.epoch, ema=trained.uses_ema, seed=seed
        )
        what = ui.classes_phrase(result["classes"], len(trained.class_names))
        removed = f" (removed {result['removed']} older images)" if result.get("removed") else ""
        unscaled = " (a .npz is not scaled)" if scale > 1 and result["scale"] == 1 else ""
        line = f"wrote {result['images']} images{what} to {result['out']}{removed}{unscaled}"
        _emit(result, json_out, quiet, line)


@app.command(
    epilog=examples(
        "gancli export runs/dcgan-mnist-001 --format onnx",
        "gancli export runs/cgan-mnist-001 --format torchscript --out g.torchscript",
        "gancli export runs/x/checkpoints/epoch_0005.pt --format safetensors --no-ema",
    )
)
def export(
    path: RunArg = None,
    format_: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            metavar="state-dict|safetensors|torchscript|onnx",
            help="state-dict or safetensors (weights), torchscript or onnx (the network).",
        ),
    ] = None,
    ema: Annotated[
        bool | None,
        typer.Option(
            "--ema/--no-ema",
            help="Export the EMA generator (default: if kept).",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            rich_help_panel=OUTPUT,
            help="File to write, with a sidecar FILE.json beside it "
            "(default: RUN/export/generator.pt|.safetensors|.torchscript|.onnx).",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Replace an existing --out and its sidecar.", rich_help_panel=OUTPUT
        ),
    ] = False,
    runs: RunsOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write the generator alone, to use without gancli, with a JSON sidecar saying how."""
    from gancli.engine.export import (
        check_format,
        check_out,
        default_out,
        export_generator,
        load_source,
    )
    from gancli.engine.limits import human_bytes
    from gancli.engine.runs import resolve_checkpoint, runs_root

    with cli_errors():
        if format_ is None:
            raise ConfigError("--format: choose state-dict, safetensors, torchscript or onnx")
        check_format(format_)  # an unknown format or a missing package: before any loading
        run, checkpoint = resolve_checkpoint(path, runs_root(runs))
        target = out or default_out(run.path if run else Path.cwd(), format_)
        check_out(target, format_, checkpoint, force)
        trained, sha256 = load_source(checkpoint, ema)
        result = export_generator(trained, sha256, format_, target, force)
        which = "EMA generator" if trained.uses_ema else "generator"
        line = (
            f"wrote {result['out']} ({human_bytes(result['bytes'])}, the {which} of epoch "
            f"{trained.epoch}) and {result['sidecar']}"
        )
        _emit(result, json_out, quiet, line)


@app.command(
    epilog=examples(
        "gancli animate runs/dcgan-mnist-001",
        "gancli animate runs/cgan-mnist-001 --interpolate --out walk.gif",
        "gancli animate runs/dcgan-mnist-001 --scale 3 --out big.gif",
    )
)
def animate(
    path: RunDirArg = None,
    out: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            rich_help_panel=OUTPUT,
            help=".gif or .mp4 (default: RUN/progress.gif, RUN/interpolation.gif).",
        ),
    ] = None,
    fps: Annotated[
        float | None,
        typer.Option(min=0.1, max=60, help="Frames per second (default 2; walks 12)."),
    ] = None,
    every: Annotated[int, typer.Option(min=1, help="Use every K-th epoch grid.")] = 1,
    loop: Annotated[int, typer.Option(min=0, help="GIF repeats; 0 loops forever.")] = 0,
    hold_last: Annotated[float, typer.Option(min=0, help="Extra seconds on the last frame.")] = 2.0,
    interpolate: Annotated[
        bool,
        typer.Option("--interpolate", help="A latent-space walk of the final generator instead."),
    ] = False,
    across_classes: Annotated[
        bool,
        typer.Option("--across-classes", help="With --interpolate: walk across classes, fixed z."),
    ] = False,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the walk's keyframes.")] = 0,
    scale: Annotated[
        int,
        typer.Option(
            "--scale",
            metavar="K",
            rich_help_panel=OUTPUT,
            help="Enlarge each pixel of every frame to K x K, K from 1 to 16 (nearest neighbour).",
        ),
    ] = 1,
    runs: RunsOpt = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            rich_help_panel=OUTPUT,
            help="Replace an existing --out (the run's own GIFs always are).",
        ),
    ] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Build a GIF (or MP4) of training progress, or of a walk through latent space."""
    from gancli.engine.animation import (
        check_animation,
        latent_walk,
        write_animation,
        write_progress,
    )
    from gancli.engine.runs import RunDir, latest_run, runs_root
    from gancli.engine.sampling import check_scale_factor, load_generator

    replace = force or out is None  # the run's own progress.gif / interpolation.gif
    with cli_errors():
        check_scale_factor(scale)
        run = RunDir.open(path) if path else latest_run(runs_root(runs))
        if interpolate or across_classes:
            target = out or run.path / "interpolation.gif"
            check_animation(target, loop, 0, replace)
            trained = load_generator(run.newest_checkpoint()[0])
            frames = latent_walk(trained, seed=seed, across_classes=across_classes)
            write_animation(frames, target, fps or 12.0, loop, 0, replace, scale)
            result: dict[str, Any] = {"out": str(target), "frames": len(frames), "scale": scale}
        else:
            result = write_progress(run, out, fps or 2.0, every, loop, hold_last, replace, scale)
        _emit(result, json_out, quiet, f"wrote {result['frames']} frames to {result['out']}")


@app.command(
    epilog=examples(
        "gancli inspect runs/dcgan-mnist-001",
        "gancli inspect dcgan-mnist",
        "gancli inspect runs/x/checkpoints/last.pt --json",
    )
)
def inspect(
    path: Annotated[
        str | None,
        typer.Argument(
            metavar="RUN|CHECKPOINT|PRESET",
            show_default=False,
            help="Run directory, checkpoint or preset (default: the latest run).",
            autocompletion=completion.runs_and_presets,
        ),
    ] = None,
    runs: RunsOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Show what a run, checkpoint or preset holds: config, architecture, progress, health."""
    from gancli.engine.inspection import inspect_target
    from gancli.engine.runs import latest_run, runs_root

    with cli_errors():
        report = inspect_target(path or str(latest_run(runs_root(runs)).path))
        if json_out:
            ui.print_json(report.to_dict())
        elif not quiet:
            ui.render_report(report, ui.make_console(False))


@app.command(
    epilog=examples(
        "gancli report runs/dcgan-mnist-001",
        "gancli report runs/cgan-mnist-001 --out ~/cgan.html --force",
        "gancli report --json",
    )
)
def report(
    path: RunDirArg = None,
    out: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            rich_help_panel=OUTPUT,
            help="The .html file to write (default: RUN/report.html).",
        ),
    ] = None,
    runs: RunsOpt = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            rich_help_panel=OUTPUT,
            help="Replace an existing --out (RUN/report.html always is).",
        ),
    ] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write a self-contained HTML page about a run: grids, curves, evaluation, warnings."""
    from gancli.engine.limits import human_bytes
    from gancli.engine.report import open_run_for_report, write_report
    from gancli.engine.runs import latest_run, runs_root

    with cli_errors():
        run = open_run_for_report(path) if path else latest_run(runs_root(runs))
        result = write_report(run, out, force)
        shown, total = result["grids"], result["grids_total"]
        grids = f"{shown} of {total}" if shown != total else f"{total}"
        problems = result["problems"]
        noted = f"; {len(problems)} problem(s) named on the page" if problems else ""
        line = f"wrote {result['out']} ({grids} epoch grids, {human_bytes(result['bytes'])}){noted}"
        _emit(result, json_out, quiet, line)


@app.command(epilog=examples("gancli presets", "gancli presets --json"))
def presets(json_out: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """List the shipped presets with their one-line descriptions."""
    from gancli.engine.config import list_presets, presets_dir

    with cli_errors():
        found = list_presets()
        if json_out:
            ui.print_json({"directory": str(presets_dir()), "presets": found})
        elif not quiet:
            ui.render_presets(found, ui.make_console(False))


@app.command(
    epilog=examples(
        "gancli evaluate runs/cgan-mnist-001",
        "gancli evaluate runs/x/checkpoints/epoch_0005.pt -n 2000 --json",
        "gancli evaluate --train-evaluator mnist --out mnist.pt",
    )
)
def evaluate(
    path: RunArg = None,
    num: Annotated[
        int, typer.Option("--num", "-n", min=1, help="Samples to score (and real images).")
    ] = 10_000,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the noise and real subset.")] = 0,
    ema: Annotated[
        bool | None,
        typer.Option(
            "--ema/--no-ema",
            help="Score the EMA generator (default: if kept).",
            show_default=False,
        ),
    ] = None,
    extractor: Annotated[
        str,
        typer.Option(
            metavar="evaluator|inception",
            help="Features for FID, KID, IS, precision/recall: evaluator (the dataset's "
            "shipped CNN) or inception (torchvision's Inception-v3; needs its weights).",
        ),
    ] = "evaluator",
    floor: Annotated[
        bool,
        typer.Option("--floor/--no-floor", help="Also score real training images (the floor)."),
    ] = True,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Images per forward pass.", rich_help_panel=DEVICE)
    ] = 500,
    train_evaluator: Annotated[
        str | None,
        typer.Option(
            "--train-evaluator",
            metavar="DATASET",
            rich_help_panel="Training an evaluator",
            help="Instead: train DATASET's evaluator CNN (seeded) and write it to --out.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            rich_help_panel="Training an evaluator",
            help="With --train-evaluator: the file to write.",
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            min=1,
            rich_help_panel="Training an evaluator",
            help="With --train-evaluator: epochs (default: the recipe's).",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            rich_help_panel=DATA,
            help="Data root to search first for the real images.",
        ),
    ] = None,
    device: DeviceOpt = "auto",
    runs: RunsOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Score a trained generator: FID, KID, IS, precision/recall, class coverage and accuracy."""
    from gancli.engine.runtime import use_device

    console = ui.make_console(json_out)

    def log(text: str) -> None:
        if not quiet:
            console.print(text, soft_wrap=True)

    with cli_errors():
        if train_evaluator is not None:
            _train_evaluator(
                train_evaluator, out, epochs, seed, data_dir, device, log, json_out, quiet
            )
            return
        from gancli.engine.files import check_writable
        from gancli.engine.runs import resolve_checkpoint, runs_root
        from gancli.engine.sampling import load_generator
        from gancli.engine.scoring import EvalRequest, append_record, check_request
        from gancli.engine.scoring import evaluate as score

        request = EvalRequest(num, seed, batch_size, extractor, floor)
        check_request(request)
        run, checkpoint = resolve_checkpoint(path, runs_root(runs))
        if run is not None:
            check_writable(run.path, "eval.json")  # now, not after minutes of scoring
        trained = load_generator(checkpoint, use_device(device), ema)
        with reporting.StageProgress(console, quiet, ui.make_console(True)) as progress:
            report = score(trained, request, str(data_dir) if data_dir else None, log, progress)
        if run is not None:
            append_record(run, report, log)
            report.saved_to = str(run.evaluations)
        if json_out:
            ui.print_json(report.to_dict())
        elif not quiet:
            ui.render_evaluation(report, console)


def _train_evaluator(
    dataset: str,
    out: Path | None,
    epochs: int | None,
    seed: int,
    data_dir: Path | None,
    device: str,
    log: Any,
    json_out: bool,
    quiet: bool,
) -> None:
    from gancli.engine.config import DataConfig
    from gancli.engine.evaluator import train_evaluator
    from gancli.engine.files import check_target
    from gancli.engine.runtime import use_device

    if out is None:
        raise ConfigError("--train-evaluator: give the file to write with --out")
    check_target(out)
    if out.exists():
        raise ConfigError(f"--out {out}: already exists; choose a new file name")
    evaluator = train_evaluator(
        DataConfig(dataset=dataset),
        str(data_dir) if data_dir else None,
        out,
        use_device(device),
        epochs,
        seed,
        log,
    )
    result = {
        "out": str(out),
        "dataset": evaluator.dataset,
        "heldout_accuracy": evaluator.accuracy,
        "sha256": evaluator.sha256,
    }
    _emit(
        result,
        json_out,
        quiet,
        f"wrote {out}: {100 * evaluator.accuracy:.2f}% on held-out images, "
        f"sha256 {evaluator.sha256}",
    )
