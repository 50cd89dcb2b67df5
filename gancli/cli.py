"""Usage: gancli train --preset dcgan-mnist --epochs 5

The command line: parse options, call one engine function, print. No training maths here.
"""

from __future__ import annotations

import dataclasses
import enum
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

import gancli
from gancli import completion, reporting, ui, views
from gancli.engine.errors import (
    EXIT_INTERRUPTED,
    ConfigError,
    GancliError,
    StorageError,
    Terminated,
    out_of_memory,
    raise_on_termination,
)


class OneLineErrors(TyperGroup):
    """Typer's usage errors (a value of the wrong type or out of range, an unknown option,
    a missing value) as one line on stderr, like every other gancli error, instead of a
    usage line and a framed box; their exit code (2) stays. They are caught here, around
    the whole command line, by their interface (exit_code and format_message): Typer
    raises Click's exceptions, from click or from its own copy of it."""

    def main(self, *args: Any, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **extra)
        try:
            code = super().main(*args, standalone_mode=False, **extra)
        except typer.Abort:
            _say("aborted")
            code = 1
        except Exception as error:
            if not (hasattr(error, "format_message") and hasattr(error, "exit_code")):
                raise
            if type(error).__name__ != "NoArgsIsHelpError":  # else the help was shown
                ctx = getattr(error, "ctx", None)
                hint = f" (see {ctx.command_path} -h)" if ctx is not None else ""
                _say(f"error: {' '.join(error.format_message().split())}{hint}")
            code = error.exit_code
        raise SystemExit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="gancli",
    help="Train, sample, animate, score and inspect the classic GANs.",
    cls=OneLineErrors,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def flag(*names: str, **settings: Any) -> Any:
    """typer.Option for a flag, with the help's type column left empty: a flag takes no
    value (Typer would print `<bool>` there)."""
    return typer.Option(*names, metavar="", **settings)


# Help panels: what an option is about.
RECIPE, DATA, DEVICE, RUN, OUTPUT = "Recipe", "Data", "Device", "Run folder", "Output"

JsonOpt = Annotated[
    bool,
    flag(
        "--json", help="Print one JSON object on stdout and nothing else there.",
        rich_help_panel=OUTPUT,
    ),
]  # fmt: skip
QuietOpt = Annotated[
    bool, flag("--quiet", "-q", help="Print nothing but errors.", rich_help_panel=OUTPUT)
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
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        metavar="DIR", rich_help_panel=DATA, help="Data root to search first for the real images."
    ),
]
EmaOpt = Annotated[
    bool | None,
    flag(
        "--ema/--no-ema", help="The EMA generator (default: if the run kept one).",
        show_default=False,
    ),
]  # fmt: skip
BatchOpt = Annotated[
    int, typer.Option(min=1, help="Images per forward pass.", rich_help_panel=DEVICE)
]


def force_option(what: str = "") -> Any:
    """--force, which replaces an existing --out; `what` adds what else it means."""
    return flag("--force", help=f"Replace an existing --out{what}.", rich_help_panel=OUTPUT)


def scale_option(what: str) -> Any:
    """--scale K: each pixel of `what` as a K x K block."""
    return typer.Option(
        "--scale", metavar="K", rich_help_panel=OUTPUT,
        help=f"Enlarge each pixel of {what} to K x K, K from 1 to 16 (nearest neighbour).",
    )  # fmt: skip


def out_option(help: str, metavar: str = "FILE") -> Any:
    """--out: where the command writes, as `help` says."""
    return typer.Option(metavar=metavar, rich_help_panel=OUTPUT, help=help)


def run_argument(what: str, metavar: str = "RUN", complete: Any = completion.runs) -> Any:
    """The optional argument naming `what` to work on (the latest run when left out),
    completed by `complete` (run folders under the runs root)."""
    return typer.Argument(
        metavar=metavar,
        help=f"{what} (default: the latest run).",
        autocompletion=complete,
        show_default=False,
    )


RunArg = Annotated[str | None, run_argument("Run directory or checkpoint")]
RunDirArg = Annotated[str | None, run_argument("Run directory")]


class Precision(str, enum.Enum):
    auto = "auto"
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
        flag("--version", callback=_version, is_eager=True, help="Show the version and exit."),
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
        flag(
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
            help="Arithmetic of the forward passes: auto (bf16 autocast on a GPU with "
            "bfloat16, else fp32; the start line says which and why), fp32, or bf16/fp16 "
            "autocast (fp16 adds loss scaling). fp32 on CUDA uses TF32 tensor cores. On a "
            "CPU, bf16 is fast only with AVX512-BF16 or AMX, and fp16 is very slow.",
        ),
    ] = Precision.auto,
    compile_: Annotated[
        bool,
        flag(
            "--compile/--no-compile",
            rich_help_panel=DEVICE,
            help="torch.compile G and D: faster steps after a compile of tens of seconds.",
        ),
    ] = False,
    sync_bn: Annotated[
        bool,
        flag(
            "--sync-bn",
            rich_help_panel=DEVICE,
            help="Under torchrun on GPUs: batch-norm statistics over the global batch "
            "(default: each process normalises over its own share).",
        ),
    ] = False,
    deterministic: Annotated[
        bool,
        flag(
            "--deterministic",
            rich_help_panel=DEVICE,
            help="Only deterministic kernels (CUDA); fails naming the op that has none.",
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        flag("--dry-run", help="Print the resolved config and stop.", rich_help_panel=OUTPUT),
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
        data_dir=_text(data_dir),
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
        out=_text(out),
        name=name,
        resume=_text(resume),
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

        reporter = reporting.make_reporter(ui.make_console(json_out), quiet)
        try:
            result = launch(request, reporter)
        finally:
            reporter.close()
        if result is None:
            return  # a torchrun rank other than 0: rank 0 reports for all
        _emit(dataclasses.asdict(result), json_out, quiet, views.done_line(result))


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _stages(json_out: bool, quiet: bool) -> reporting.StageProgress:
    """What a long command is doing, as plain lines on stderr (see reporting.StageProgress)."""
    return reporting.StageProgress(ui.make_console(json_out), quiet, ui.make_console(True))


def _logger(json_out: bool, quiet: bool) -> Callable[[str], None]:
    """The engine's `log`: lines on the console (stderr with --json), none with --quiet."""
    return partial(ui.make_console(json_out, quiet).print, soft_wrap=True)


def _emit(
    payload: dict[str, Any], json_out: bool, quiet: bool, shown: str | Callable[[Console], None]
) -> None:
    """--json: the payload on stdout; otherwise, unless --quiet, `shown` on stdout: one human
    line, or a view that prints on the console it is given."""
    if json_out:
        ui.print_json(payload)
    elif not quiet:
        console = ui.make_console(False)
        if callable(shown):
            shown(console)
        else:
            console.print(shown, soft_wrap=True)


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
    ema: EmaOpt = None,
    truncation: Annotated[
        float | None,
        typer.Option(min=0.01, metavar="T", help="Redraw noise entries with |z| > T."),
    ] = None,
    out: Annotated[
        Path | None,
        out_option(
            "A .png grid, a .npz (images, labels) or a directory of PNGs "
            "(default: RUN/generated/sample-NNN.png).",
            "FILE|DIR/",
        ),
    ] = None,
    nrow: Annotated[
        int | None, typer.Option(min=1, help="Images per grid row.", rich_help_panel=OUTPUT)
    ] = None,
    scale: Annotated[int, scale_option("a .png grid or a folder's PNGs (not a .npz)")] = 1,
    force: Annotated[bool, force_option()] = False,
    batch_size: BatchOpt = 500,
    device: DeviceOpt = "auto",
    runs: RunsOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Generate images from a trained run, without retraining."""
    from gancli.engine.sampling import SampleJob
    from gancli.engine.sampling import sample as sample_images

    job = SampleJob(
        run=path, runs=_text(runs), n=num, classes=tuple(classes or ()), seed=seed,
        truncation=truncation, batch_size=batch_size, out=_text(out), nrow=nrow, scale=scale,
        force=force, ema=ema, device=device,
    )  # fmt: skip
    with cli_errors():
        with _stages(json_out, quiet) as progress:
            result = sample_images(job, progress)
        what = views.classes_phrase(result["classes"], result["class_count"])
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
    ema: EmaOpt = None,
    out: Annotated[
        Path | None,
        out_option(
            "File to write, with a sidecar FILE.json beside it "
            "(default: RUN/export/generator.pt|.safetensors|.torchscript|.onnx)."
        ),
    ] = None,
    force: Annotated[bool, force_option(" and its sidecar")] = False,
    runs: RunsOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write the generator alone, to use without gancli, with a JSON sidecar saying how."""
    from gancli.engine.export import ExportJob
    from gancli.engine.export import export as export_generator
    from gancli.engine.limits import human_bytes

    job = ExportJob(format_, path, _text(runs), _text(out), ema, force)
    with cli_errors():
        result = export_generator(job)
        which = "EMA generator" if result["ema"] else "generator"
        line = (
            f"wrote {result['out']} ({human_bytes(result['bytes'])}, the {which} of epoch "
            f"{result['epoch']}) and {result['sidecar']}"
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
        out_option(".gif or .mp4 (default: RUN/progress.gif, RUN/interpolation.gif)."),
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
        flag("--interpolate", help="A latent-space walk of the final generator instead."),
    ] = False,
    across_classes: Annotated[
        bool,
        flag("--across-classes", help="With --interpolate: walk across classes, fixed z."),
    ] = False,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the walk's keyframes.")] = 0,
    scale: Annotated[int, scale_option("every frame")] = 1,
    runs: RunsOpt = None,
    force: Annotated[bool, force_option(" (the run's own GIFs always are)")] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Build a GIF (or MP4) of training progress, or of a walk through latent space."""
    from gancli.engine.animation import AnimateJob
    from gancli.engine.animation import animate as write_animation

    job = AnimateJob(
        run=path, runs=_text(runs), out=_text(out), fps=fps, every=every, loop=loop,
        hold_last=hold_last, interpolate=interpolate, across_classes=across_classes, seed=seed,
        scale=scale, force=force,
    )  # fmt: skip
    with cli_errors():
        result = write_animation(job)
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
        run_argument(
            "Run directory, checkpoint or preset",
            "RUN|CHECKPOINT|PRESET",
            completion.runs_and_presets,
        ),
    ] = None,
    runs: RunsOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Show what a run, checkpoint or preset holds: config, architecture, progress, health."""
    from gancli.engine.inspection import inspect_target

    with cli_errors():
        report = inspect_target(path, _text(runs))
        _emit(report.to_dict(), json_out, quiet, partial(views.render_report, report))


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
        out_option("The .html file to write (default: RUN/report.html)."),
    ] = None,
    runs: RunsOpt = None,
    force: Annotated[bool, force_option(" (RUN/report.html always is)")] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write a self-contained HTML page about a run: grids, curves, evaluation, warnings."""
    from gancli.engine.limits import human_bytes
    from gancli.engine.report import write_report

    with cli_errors():
        result = write_report(path, _text(out), force, _text(runs))
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
        payload = {"directory": str(presets_dir()), "presets": found}
        _emit(payload, json_out, quiet, partial(views.render_presets, found))


@app.command(
    epilog=examples(
        "gancli evaluate runs/cgan-mnist-001",
        "gancli evaluate runs/x/checkpoints/epoch_0005.pt -n 2000 --json",
    )
)
def evaluate(
    path: RunArg = None,
    num: Annotated[
        int, typer.Option("--num", "-n", min=1, help="Samples to score (and real images).")
    ] = 10_000,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the noise and real subset.")] = 0,
    ema: EmaOpt = None,
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
        flag("--floor/--no-floor", help="Also score real training images (the floor)."),
    ] = True,
    batch_size: BatchOpt = 500,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    runs: RunsOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Score a trained generator: FID, KID, IS, precision/recall, class coverage and accuracy."""
    from gancli.engine.scoring import EvalRequest, EvaluateJob
    from gancli.engine.scoring import evaluate as score

    request = EvalRequest(num, seed, batch_size, extractor, floor)
    job = EvaluateJob(path, _text(runs), request, ema, _text(data_dir), device)
    with cli_errors():
        with _stages(json_out, quiet) as progress:
            report = score(job, _logger(json_out, quiet), progress)
        _emit(report.to_dict(), json_out, quiet, partial(views.render_evaluation, report))


@app.command(
    "train-evaluator",
    epilog=examples(
        "gancli train-evaluator mnist --out mnist.pt",
        "gancli train-evaluator ~/pictures/cats --out cats.pt --epochs 20",
    ),
)
def train_evaluator(
    dataset: Annotated[
        str,
        typer.Argument(
            metavar="DATASET",
            show_default=False,
            help="A dataset name (mnist, fashion-mnist, ...) or a folder of images.",
        ),
    ],
    out: Annotated[Path, out_option("The file to write (a new one).")],
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Epochs (default: the dataset's recipe).")
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Same seed, same weights.")] = 0,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train the small classifier that evaluate scores with, for a dataset or image folder."""
    from gancli.engine.evaluator import EvaluatorJob, train_evaluator_file

    job = EvaluatorJob(dataset, str(out), epochs, seed, _text(data_dir), device)
    with cli_errors():
        result = train_evaluator_file(job, _logger(json_out, quiet))
        line = (
            f"wrote {result['out']}: {100 * result['heldout_accuracy']:.2f}% on held-out images, "
            f"sha256 {result['sha256']}"
        )
        _emit(result, json_out, quiet, line)
