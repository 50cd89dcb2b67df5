"""Usage: typer.Option("--preset", autocompletion=presets)

Shell completion (`gancli --install-completion`): preset names, run folders and class
names. It runs on every Tab press, so it reads names from files; only class names of a
built-in dataset load the engine's data module (and with it PyTorch).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import typer
import yaml


def presets(incomplete: str) -> list[tuple[str, str]]:
    """Shipped preset names starting with what was typed, with their descriptions."""
    from gancli.engine.config import list_presets

    return [(name, text) for name, text in list_presets().items() if name.startswith(incomplete)]


def _is_run(path: Path) -> bool:
    return (path / "config.yaml").is_file() or (path / "checkpoints").is_dir()


def runs(ctx: typer.Context, incomplete: str) -> list[str]:
    """Run folders: those under the runs root (--runs, --out, $GANCLI_RUNS_DIR or ./runs)
    and, once a path is being typed, those in the folder typed so far."""
    from gancli.engine.runs import runs_root

    root = runs_root(ctx.params.get("runs") or ctx.params.get("out"))
    folders = [(root, f"{root}/" if str(root) != "." else "")]
    if "/" in incomplete:
        typed = incomplete[: incomplete.rfind("/") + 1]
        folders.append((Path(typed).expanduser(), typed))
    found: list[str] = []
    for folder, prefix in folders:
        with contextlib.suppress(OSError):  # a root that is missing or unreadable: nothing
            for child in sorted(folder.iterdir()):
                name = prefix + child.name
                if name.startswith(incomplete) and name not in found and _is_run(child):
                    found.append(name)
    return found


def class_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """The class names of the run being sampled (the latest run when none is given), if
    its model is conditional."""
    from gancli.engine.errors import GancliError
    from gancli.engine.runs import RunDir, latest_run, runs_root

    try:
        # While the shell completes an option's value, the run given before it may still
        # sit unparsed in ctx.args.
        path = ctx.params.get("path") or next(iter(ctx.args), None)
        if path is None:
            run = latest_run(runs_root(ctx.params.get("runs")))
        else:  # a run folder, or a checkpoint in its checkpoints/ folder
            target = Path(path).expanduser()
            run = RunDir(target if target.is_dir() else target.parents[1])
        config = yaml.safe_load(run.config.read_text(encoding="utf-8"))
        dataset = str(config["data"]["dataset"])
        conditional = config["model"]["conditional"] is True
    except (GancliError, OSError, IndexError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return []  # no run, or one whose config cannot be read: nothing to offer
    if not conditional:
        return []  # `sample --class` refuses every class of an unconditional model
    from gancli.engine.config import DataConfig
    from gancli.engine.data import dataset_summary

    names = dataset_summary(DataConfig(dataset=dataset))[1] or ()
    return [name for name in ("all", *names) if name.startswith(incomplete)]


def runs_and_presets(ctx: typer.Context, incomplete: str) -> list[str]:
    """What `inspect` takes: a run folder or a preset name."""
    return runs(ctx, incomplete) + [name for name, _ in presets(incomplete)]
