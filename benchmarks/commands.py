"""Usage: python benchmarks/commands.py [--presets gan-mnist,dcgan-mnist] [--limit 12800]
[--full] [--repeats 3] [--threads N] [--data-dir DIR] [--quick] [--out FILE]

Speed as a user sees it: the wall and CPU seconds of a whole `gancli train` command against
a whole tutorial-style training script (benchmarks/tutorial.py) on the same networks and
images, one epoch each; in the same run, throughput.py's step-only figures, and the fixed
cost of a gancli run (all that is not training steps) set against `import torch`. Writes
benchmarks/results/commands.md and commands.json (--quick: a smoke run of one preset at
640 images, written to the temp directory).

Methodology:

- Per preset (default: every *-mnist preset) and per size (the first --limit N images,
  12,800 by default; --full adds the whole training split, with no --limit), three
  commands, each a fresh process started with subprocess and reaped with os.wait4, timed
  for wall seconds (from just before the start to the reaping) and CPU seconds (user +
  system time of that child alone, from wait4):
  - gancli: `python -m gancli train --preset P --epochs 1 --limit N --threads T
    --data-dir D --out TMP --quiet`, as a user types it (its run directory is read, then
    deleted);
  - tutorial: `python benchmarks/tutorial.py --preset P --epochs 1 --limit N --threads T
    --data-dir D --out TMP`: the same G and D (build_models on the preset's resolved
    config after the same seeding), the same N images, trained by tutorial.py's
    TutorialLoop (the reference loop throughput.py times), then a sample grid saved with
    torchvision.utils.save_image and a torch.save of G, D and both optimisers;
  - import torch: `python -c "import torch"`, the floor of any PyTorch command.
  They alternate (gancli, tutorial, import torch, gancli, ...), --repeats rounds, one
  process at a time, so drift in the machine's load hits all three alike. Figures are
  medians over the rounds. Ratio: the tutorial's median seconds over gancli's (higher:
  gancli faster), for wall and for CPU seconds.
- Step-only, per preset before its commands: throughput.py's loop processes
  (time_windows: gancli's TrainState.step with an epoch's bookkeeping, and the same
  TutorialLoop step, each in a spawned process, checked to start from equal weights) on
  the same first N images, in alternating windows of throughput.py's settings;
  images/s = batch_size x n_critic x G steps / s. The step speed does not depend on N, so
  --full uses the --limit figure for the full epoch too.
- From each gancli run's metrics.jsonl: the steady images/s, the images of the step lines
  after the first log window over their seconds (a line's seconds are its images over its
  images/s; none when the epoch has one window only, e.g. wgan-gp-mnist at 12,800 images),
  and the epoch line's images/s (the whole epoch, first window included). Steady over
  step-only is what running inside the real command costs the step. The first window's
  seconds beyond its images at the steady rate are the one-off costs hidden inside the
  training seconds (first calls of kernels and optimisers, lazy imports).
- Fixed cost: a gancli run's wall seconds minus its training seconds (`wall` of the epoch
  line: from the first step to the end of the last): interpreter start, imports, data
  loading, k-means where the preset self-conditions, building the models, the epoch-end
  grid, health check, checkpoint, loss plot and GIF, exit. Beyond import torch: minus the
  median wall seconds of `python -c "import torch"` in the same rounds. The tutorial's
  fixed cost is shown alike, from the training seconds it prints.
- gancli's cache ($XDG_CACHE_HOME) is a folder of the benchmark's own, empty at its start:
  the first gancli run of a self-conditioned preset (dcgan-mnist, modern-mnist) at each
  size finds its k-means clusters and caches them, and later rounds read them back, as a
  user's later runs on the same images do (0.7 s at 12,800 images, 2.5 s at 60,000, saved).
  With 3 rounds the median is a run that read them; round 1's figures are in the JSON.
- Targets (issue 17): the whole-command wall ratio >= 1.6x at 12,800 images and >= 1.8x on
  a full epoch; steady images/s within 10% of step-only; fixed cost beyond import torch
  under 3 s.

Run time with the defaults on a quiet 2-core machine: about 15 minutes (each round of the
six presets about 4 minutes, the step-only windows about 3 minutes); --full adds about
45 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# throughput.py sits beside this file: sys.path[0] when run as a script
import harness
from throughput import FULL, QUICK, RESULTS, ROOT, Settings, time_windows

from gancli.engine.config import list_presets, load_config
from gancli.engine.errors import ConfigError
from gancli.engine.runtime import default_threads

TUTORIAL = ROOT / "benchmarks" / "tutorial.py"
DEFAULT_LIMIT = 12_800
QUICK_PRESET = "dcgan-mnist"
QUICK_LIMIT = 640
RATIO_TARGETS: dict[int | None, float] = {12_800: 1.6, None: 1.8}  # data.limit -> target
STEADY_TOLERANCE = 0.10  # steady images/s within this share of the step-only figure
FIXED_BEYOND_TORCH_S = 3.0  # a gancli run's fixed seconds beyond `import torch`


@dataclass(frozen=True)
class Plan:
    presets: list[str]
    sizes: list[int | None]  # data.limit of each size; None: the whole training split
    repeats: int  # rounds of (gancli, tutorial, import torch) per preset and size
    step_only: Settings  # throughput.py's windows, per preset
    threads: int
    data_dir: Path
    quick: bool


# --------------------------------------------------------------------------- one command


def size_flags(limit: int | None) -> list[str]:
    return [] if limit is None else ["--limit", str(limit)]


def run_gancli(preset: str, limit: int | None, plan: Plan, tmp: Path) -> dict[str, Any]:
    """One `gancli train` of one epoch, with what its metrics.jsonl says."""
    root = tmp / "gancli-runs"
    command = [
        sys.executable, "-m", "gancli", "train", "--preset", preset, "--epochs", "1",
        *size_flags(limit), "--threads", str(plan.threads), "--data-dir", str(plan.data_dir),
        "--out", str(root), "--quiet",
    ]  # fmt: skip
    result = harness.run_command(command, tmp / "gancli")
    (metrics,) = root.glob("*/metrics.jsonl")
    config = load_config(preset)
    images_per_step = config.training.batch_size * config.objective.n_critic
    result.update(read_metrics(metrics, images_per_step))
    result["fixed"] = result["wall"] - result["train_seconds"]
    shutil.rmtree(root)
    del result["stdout"]
    return result


def read_metrics(path: Path, images_per_step: int) -> dict[str, Any]:
    """Training seconds and images/s of a one-epoch run, from its metrics.jsonl."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    (epoch,) = [r for r in records if r["kind"] == "epoch"]
    windows, previous = [], 0  # (images, seconds) per step line
    for record in records:
        if record["kind"] == "step":
            images = (record["step"] - previous) * images_per_step
            windows.append((images, images / record["images_per_second"]))
            previous = record["step"]
    later = windows[1:]  # the first window holds the first steps' warm-up
    steady = sum(i for i, _ in later) / sum(s for _, s in later) if later else None
    first_images, first_seconds = windows[0]
    return {
        "train_seconds": epoch["wall"],
        "steps": epoch["step"],
        "log_windows": len(windows),
        "steady_images_per_second": steady,
        # one-off costs inside the training seconds (first calls, lazy imports)
        "first_window_excess": first_seconds - first_images / steady if steady else None,
        "epoch_images_per_second": epoch["images_per_second"],
    }


def run_tutorial(preset: str, limit: int | None, plan: Plan, tmp: Path) -> dict[str, Any]:
    """One run of the tutorial-style script, with the training seconds it prints."""
    out = tmp / "tutorial-run"
    command = [
        sys.executable, str(TUTORIAL), "--preset", preset, "--epochs", "1",
        *size_flags(limit), "--threads", str(plan.threads), "--data-dir", str(plan.data_dir),
        "--out", str(out),
    ]  # fmt: skip
    result = harness.run_command(command, tmp / "tutorial")
    printed = json.loads(result.pop("stdout").strip().splitlines()[-1])
    result.update(printed)
    result["fixed"] = result["wall"] - result["train_seconds"]
    shutil.rmtree(out)
    return result


def run_import_torch(tmp: Path) -> dict[str, Any]:
    result = harness.run_command([sys.executable, "-c", "import torch"], tmp / "import-torch")
    del result["stdout"]
    return result


# --------------------------------------------------------------------------- one preset


def bench_preset(preset: str, plan: Plan, tmp: Path) -> dict[str, Any]:
    config = load_config(preset)
    images_per_step = config.training.batch_size * config.objective.n_critic
    step_only = measure_step_only(preset, plan, images_per_step)
    print(
        f"{preset}: step-only gancli {step_only['gancli']:,.0f} img/s, tutorial "
        f"{step_only['reference']:,.0f} img/s ({step_only['ratio']:.2f}x)",
        flush=True,
    )
    sizes = []
    for limit in plan.sizes:
        runs: dict[str, list[dict[str, Any]]] = {"gancli": [], "tutorial": [], "import_torch": []}
        for round_ in range(plan.repeats):
            runs["gancli"].append(run_gancli(preset, limit, plan, tmp))
            runs["tutorial"].append(run_tutorial(preset, limit, plan, tmp))
            runs["import_torch"].append(run_import_torch(tmp))
            g, t, i = (runs[name][-1] for name in ("gancli", "tutorial", "import_torch"))
            print(
                f"  {_size_label(limit)} round {round_ + 1}/{plan.repeats}: gancli "
                f"{g['wall']:.1f} s (CPU {g['cpu']:.1f}, training {g['train_seconds']:.1f}), "
                f"tutorial {t['wall']:.1f} s (CPU {t['cpu']:.1f}, training "
                f"{t['train_seconds']:.1f}), import torch {i['wall']:.1f} s",
                flush=True,
            )
        sizes.append(summarise(limit, runs, step_only, images_per_step))
    return {
        "preset": preset,
        "seed": config.training.seed,
        "batch_size": config.training.batch_size,
        "n_critic": config.objective.n_critic,
        "images_per_step": images_per_step,
        "step_only": step_only,
        "sizes": sizes,
    }


def measure_step_only(preset: str, plan: Plan, images_per_step: int) -> dict[str, Any]:
    """throughput.py's alternating step-only windows of gancli and the tutorial loop."""
    settings = plan.step_only
    limit = plan.sizes[0]
    seconds, _, _ = time_windows(
        preset, ["gancli", "reference"], settings, plan.data_dir, plan.threads, limit
    )
    rates = {
        name: [images_per_step * settings.steps / s for s in values]
        for name, values in seconds.items()
    }
    median = {name: statistics.median(values) for name, values in rates.items()}
    return {
        "limit": limit,
        "images_per_second": rates,
        "gancli": median["gancli"],
        "reference": median["reference"],
        "ratio": median["gancli"] / median["reference"],
    }


def summarise(
    limit: int | None,
    runs: dict[str, list[dict[str, Any]]],
    step_only: dict[str, Any],
    images_per_step: int,
) -> dict[str, Any]:
    """Medians, ratios and the fixed cost of one preset at one size."""

    def median(name: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[name])

    steady = [r["steady_images_per_second"] for r in runs["gancli"]]
    steady_median = statistics.median(steady) if None not in steady else None
    excess = [r["first_window_excess"] for r in runs["gancli"]]
    torch_wall = median("import_torch", "wall")
    return {
        "limit": limit,
        "images": runs["gancli"][0]["steps"] * images_per_step,  # trained in the epoch
        "runs": runs,
        "wall": {name: median(name, "wall") for name in runs},
        "cpu": {name: median(name, "cpu") for name in runs},
        "ratio_wall": median("tutorial", "wall") / median("gancli", "wall"),
        "ratio_cpu": median("tutorial", "cpu") / median("gancli", "cpu"),
        "steady_images_per_second": steady_median,
        "epoch_images_per_second": median("gancli", "epoch_images_per_second"),
        "steady_over_step_only": steady_median / step_only["gancli"] if steady_median else None,
        "epoch_over_step_only": median("gancli", "epoch_images_per_second") / step_only["gancli"],
        "first_window_excess": statistics.median(excess) if None not in excess else None,
        "fixed": median("gancli", "fixed"),
        "fixed_beyond_import_torch": median("gancli", "fixed") - torch_wall,
        "tutorial_fixed": median("tutorial", "fixed"),
        "tutorial_fixed_beyond_import_torch": median("tutorial", "fixed") - torch_wall,
    }


# --------------------------------------------------------------------------- report


def _size_label(limit: int | None) -> str:
    return "full epoch" if limit is None else f"N={limit:,}"


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def render(report: dict[str, Any]) -> str:
    lines = _method_lines(report)
    for preset in report["presets"]:
        lines += _preset_lines(preset)
    lines += ["", "Targets:", "", *(f"- {t['text']}" for t in report["targets"]), ""]
    return "\n".join(lines)


def _method_lines(report: dict[str, Any]) -> list[str]:
    m, step = report["machine"], report["step_only"]
    quick = " (--quick: a smoke run, not a measurement)" if report["quick"] else ""
    sizes = ", ".join(_size_label(limit) for limit in report["sizes"])
    seeds = ", ".join(f"{p['preset']} {p['seed']}" for p in report["presets"])
    return [
        f"# Whole commands: gancli train against a tutorial-style script ({m['date']})",
        "",
        f"- machine: {m['cpu']}, {m['logical_cpus']} logical CPUs "
        f"({m['cores_per_socket']} cores per socket), Python {m['python']}, "
        f"torch {m['torch']}, {report['threads']} threads in every process",
        f"- load average at start: {', '.join(f'{x:.2f}' for x in m['load_average_at_start'])};"
        f" at end: {', '.join(f'{x:.2f}' for x in report['load_average_at_end'])}",
        f"- sizes: {sizes}; {report['repeats']} round(s) of (gancli, tutorial, import torch) per "
        f"preset and size, alternating, each a fresh process, one at a time; medians; whole "
        f"run {report['seconds']:.0f} s{quick}",
        f"- seeds: {seeds}",
        "- gancli: `python -m gancli train --preset P --epochs 1 --limit N --threads T "
        "--data-dir D --out TMP --quiet`",
        "- tutorial: `python benchmarks/tutorial.py --preset P --epochs 1 --limit N --threads T "
        "--data-dir D --out TMP`: the same G and D (same init) on the same images, trained "
        "as PyTorch tutorials do, then save_image of a sample grid and torch.save of G, D and "
        "the optimisers",
        "- wall: seconds from start to exit; CPU: user + system seconds of the process (wait4)",
        "- ratio: tutorial median / gancli median (higher: gancli faster)",
        f"- step-only: throughput.py's loop processes on the first {_size_label(step['limit'])} "
        f"images, {step['repeats']} alternating windows each of {step['steps']} G steps after "
        f"{step['warmup']} warm-up steps",
        "- steady: gancli's images/s over the step lines of its metrics.jsonl after the first "
        "window (-: one window only); epoch: the epoch line's images/s; first window beyond "
        "steady: the first window's seconds minus its images at the steady rate (one-off "
        "costs inside the training seconds: first calls, lazy imports)",
        "- fixed: wall seconds minus the training seconds (gancli: `wall` of the epoch line; "
        "tutorial: the seconds it prints); beyond import torch: minus the median wall seconds "
        'of `python -c "import torch"`',
        "",
    ]


def _preset_lines(p: dict[str, Any]) -> list[str]:
    step = p["step_only"]
    lines = [
        f"## {p['preset']}",
        "",
        f"seed {p['seed']}, batch {p['batch_size']} x n_critic {p['n_critic']}; step-only: "
        f"gancli {step['gancli']:,.0f} img/s, tutorial loop {step['reference']:,.0f} img/s "
        f"({step['ratio']:.2f}x)",
        "",
        "| images | gancli wall s | gancli CPU s | tutorial wall s | tutorial CPU s | "
        "ratio wall | ratio CPU | steady img/s | epoch img/s | steady / step-only | "
        "first window beyond steady s | import torch s | gancli fixed s | beyond import torch | "
        "tutorial fixed s |",
        "| --- " * 15 + "|",
    ]
    for s in p["sizes"]:
        wall, cpu = s["wall"], s["cpu"]
        lines.append(
            f"| {s['images']:,} | {wall['gancli']:.1f} | {cpu['gancli']:.1f} | "
            f"{wall['tutorial']:.1f} | {cpu['tutorial']:.1f} | {s['ratio_wall']:.2f}x | "
            f"{s['ratio_cpu']:.2f}x | {_number(s['steady_images_per_second'], 0)} | "
            f"{s['epoch_images_per_second']:,.0f} | {_ratio(s['steady_over_step_only'])} | "
            f"{_number(s['first_window_excess'], 2)} | {wall['import_torch']:.2f} | "
            f"{s['fixed']:.2f} | {s['fixed_beyond_import_torch']:.2f} | "
            f"{s['tutorial_fixed']:.2f} |"
        )
    return [*lines, ""]


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 17's targets, one line each, for every preset and size."""
    out = []
    for p in report["presets"]:
        for s in p["sizes"]:
            where = f"{p['preset']}, {_size_label(s['limit'])}"
            target = RATIO_TARGETS.get(s["limit"])
            if target is None:
                out.append({"text": f"{where}: ratio {s['ratio_wall']:.2f}x (no target at "
                            "this size)", "pass": None})  # fmt: skip
            else:
                ok = s["ratio_wall"] >= target
                out.append(
                    {
                        "text": f"{where}: whole-command ratio {s['ratio_wall']:.2f}x >= "
                        f"{target:.1f}x {harness.verdict(ok)}",
                        "pass": ok,
                    }
                )
            steady, figure = s["steady_over_step_only"], "steady"
            if steady is None:  # one log window: the epoch's figure is all there is
                steady, figure = s["epoch_over_step_only"], "epoch (one log window)"
            ok = abs(steady - 1) <= STEADY_TOLERANCE
            out.append(
                {
                    "text": f"{where}: {figure} images/s {100 * steady:.0f}% of step-only, "
                    f"within {100 * STEADY_TOLERANCE:.0f}% {harness.verdict(ok)}",
                    "pass": ok,
                }
            )
            ok = s["fixed_beyond_import_torch"] < FIXED_BEYOND_TORCH_S
            out.append(
                {
                    "text": f"{where}: fixed cost beyond import torch "
                    f"{s['fixed_beyond_import_torch']:.2f} s < {FIXED_BEYOND_TORCH_S:.0f} s "
                    f"{harness.verdict(ok)}",
                    "pass": ok,
                }
            )
    return out


# --------------------------------------------------------------------------- command line


def _arguments() -> tuple[Plan, Path]:
    """The run's plan and the Markdown report's path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", help="comma-separated preset names (default: *-mnist)")
    parser.add_argument("--limit", type=int, help=f"images per run ({DEFAULT_LIMIT:,})")
    parser.add_argument("--full", action="store_true", help="also a full epoch (no --limit)")
    parser.add_argument("--repeats", type=int, help="rounds per preset and size (3)")
    parser.add_argument(
        "--threads", type=int, default=default_threads(),
        help="torch threads of every process (default: the physical cores)",
    )  # fmt: skip
    parser.add_argument("--data-dir", type=Path, help="data root (default: ../shared/data)")
    parser.add_argument(
        "--quick", action="store_true",
        help=f"smoke run: {QUICK_PRESET}, {QUICK_LIMIT} images, 1 round, into the temp directory",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, help="Markdown report; the JSON goes beside it")
    args = parser.parse_args()
    if args.quick:
        presets = args.presets or QUICK_PRESET
        limit, repeats, step_only = args.limit or QUICK_LIMIT, args.repeats or 1, QUICK
    else:
        presets = args.presets or ",".join(p for p in list_presets() if p.endswith("-mnist"))
        limit, repeats, step_only = args.limit or DEFAULT_LIMIT, args.repeats or 3, FULL
    names = [p.strip() for p in presets.split(",") if p.strip()]
    for name in names:  # fail now, not after minutes of measuring
        try:
            load_config(name)
        except ConfigError as exc:
            parser.error(str(exc))
    data_dir = harness.data_dir(args)
    default_out = Path(tempfile.gettempdir()) if args.quick else RESULTS
    args.out = args.out or default_out / "commands.md"
    return Plan(
        presets=names,
        sizes=[limit, None] if args.full else [limit],
        repeats=repeats,
        step_only=step_only,
        threads=args.threads,
        data_dir=data_dir,
        quick=args.quick,
    ), args.out


def main() -> None:
    plan, out = _arguments()
    os.environ.setdefault("GANCLI_NO_DOWNLOAD", "1")  # the children inherit it
    # SIGTERM as an exception, so that a stopped benchmark stops the command it runs too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    print(f"{plan.threads} threads, data {plan.data_dir}", flush=True)
    started = time.perf_counter()
    step = plan.step_only
    report: dict[str, Any] = {
        "machine": harness.machine(),
        "threads": plan.threads,
        "quick": plan.quick,
        "sizes": plan.sizes,
        "repeats": plan.repeats,
        "step_only": {
            "limit": plan.sizes[0],
            "steps": step.steps,
            "repeats": step.repeats,
            "warmup": step.warmup,
        },
        "data_dir": str(plan.data_dir),
        "presets": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")  # starts empty (see above)
        for preset in plan.presets:
            report["presets"].append(bench_preset(preset, plan, Path(tmp)))
    report["seconds"] = time.perf_counter() - started
    report["load_average_at_end"] = os.getloadavg()
    report["targets"] = targets(report)
    text = render(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    print(text)
    print(f"written: {out} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
