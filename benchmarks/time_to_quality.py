"""Usage: python benchmarks/time_to_quality.py [--presets gan-mnist,dcgan-mnist] [--epochs 5]
[--append]

Time to good samples, as a user feels it: per MNIST preset, the wall minutes on this
machine until the evaluator's FID first reaches twice the FID that the tutorial-style loop
(benchmarks/tutorial.py, the same networks from the same weights) ends its 5 epochs with,
for gancli and for that loop itself.

- Scores: gancli.engine.scoring.Scorer with the shipped MNIST evaluator, n = 10,000
  samples (seed 0) against 10,000 held-out test images, the same for both.
- The tutorial loop: one process of `tutorial.py --epochs 5 --keep-epochs`; each epoch's G
  is scored; its time to an epoch runs from the process start to that epoch's G on disk.
- gancli: `gancli train --epochs 1`, then `gancli train --resume RUN --epochs e` for
  e = 2, 3, ...: resume is bitwise exact, so this is the run one 5-epoch process would
  make, plus a start-up per epoch (a few seconds' handicap each). After each process the
  sampler that `gancli sample` draws from (the EMA where the preset keeps one) is scored,
  and it stops at the first epoch at or under the target (or after --epochs).
- An epoch is the unit: a target met within an epoch counts at that epoch's end.
- Scoring happens between the processes and is in neither figure.

Writes benchmarks/results/time_to_quality.md and .json; with --append, the presets
measured replace their rows of the existing files and the other rows stay, each with the
time it was measured.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
import torch
from commands import TUTORIAL, size_flags
from harness import run_command
from throughput import RESULTS, ROOT

from gancli.engine.config import Config, load_config
from gancli.engine.data import ImageSet, load_dataset
from gancli.engine.evaluator import evaluation_splits, load_evaluator
from gancli.engine.generator import TrainedGenerator, load_generator
from gancli.engine.models import build_models
from gancli.engine.runtime import default_threads
from gancli.engine.scoring import Scorer, generated_images

PRESETS = ("gan-mnist", "dcgan-mnist", "wgan-mnist", "wgan-gp-mnist", "cgan-mnist", "modern-mnist")
N, SEED = 10_000, 0
TARGET_FACTOR = 2.0  # the target: this times the tutorial loop's final FID
GOAL = 0.5  # the aim: gancli's time to the target at most this share of the loop's


class Judge:
    """The evaluator and MNIST's held-out images, embedded once; FID of any generator."""

    def __init__(self, config: Config, data_dir: Path):
        evaluator = load_evaluator(config.data, data_dir, torch.device("cpu"))
        _, heldout = evaluation_splits(config.data, data_dir)
        self.scorer = Scorer(evaluator, heldout, n=N)

    def fid(self, trained: TrainedGenerator) -> float:
        images, asked = generated_images(trained, N, SEED)
        return round(self.scorer.score(images, asked, full=False, seed=SEED).fid, 3)


def tutorial_generator(
    config: Config, weights: Path, epoch: int, data: ImageSet
) -> TrainedGenerator:
    """A G trained by tutorial.py on `data`, as `gancli sample` would hold it. A
    self-conditioned preset's tutorial loop used class numbers as cluster numbers: its
    prior is the classes'."""
    classes = len(data.class_names)
    g, _ = build_models(config.model, data.image_shape, classes)
    g.load_state_dict(torch.load(weights, weights_only=True))
    prior = None
    if config.model.clusters:
        counts = torch.bincount(data.labels, minlength=config.model.clusters).float()
        prior = counts / counts.sum()
    return TrainedGenerator(
        g.eval(), config, data.class_names, data.image_shape, weights, False, epoch, prior
    )


def bench_tutorial(
    preset: str, args: argparse.Namespace, judge: Judge, tmp: Path
) -> dict[str, Any]:
    out = tmp / "tutorial"
    command = [
        sys.executable, str(TUTORIAL), "--preset", preset, "--epochs", str(args.epochs),
        "--threads", str(args.threads), "--data-dir", str(args.data_dir), "--out", str(out),
        "--keep-epochs", *size_flags(args.limit),
    ]  # fmt: skip
    started = time.time()
    result = run_command(command, tmp / "tutorial")
    printed = json.loads(result["stdout"].strip().splitlines()[-1])
    config = load_config(preset, flags={"data.limit": args.limit})
    data = load_dataset(config.data, args.data_dir)  # the images the tutorial trained on
    epochs = []
    for epoch, ended in enumerate(printed["epoch_ends"], start=1):
        g = tutorial_generator(config, out / f"epoch_{epoch:04d}_g.pt", epoch, data)
        epochs.append({"epoch": epoch, "minutes": (ended - started) / 60, "fid": judge.fid(g)})
        print(f"  tutorial epoch {epoch}: FID {epochs[-1]['fid']}", flush=True)
    shutil.rmtree(out)
    return {"wall_minutes": result["wall"] / 60, "epochs": epochs}


def bench_gancli(
    preset: str, args: argparse.Namespace, judge: Judge, target: float, tmp: Path
) -> dict[str, Any]:
    root = tmp / "gancli-runs"
    common = ["--threads", str(args.threads), "--data-dir", str(args.data_dir), "--quiet"]
    minutes, epochs = 0.0, []
    for epoch in range(1, args.epochs + 1):
        if epoch == 1:
            where = ["--preset", preset, "--out", str(root), "--name", "ttq"]
            where += size_flags(args.limit)  # a resumed run keeps its own
        else:
            where = ["--resume", str(next(root.glob("ttq*")))]
        command = [sys.executable, "-m", "gancli", "train", *where, "--epochs", str(epoch), *common]
        minutes += run_command(command, tmp / f"gancli-{epoch}")["wall"] / 60
        run = next(root.glob("ttq*"))
        fid = judge.fid(load_generator(run / "checkpoints" / "last.pt"))
        epochs.append({"epoch": epoch, "minutes": minutes, "fid": fid})
        print(f"  gancli epoch {epoch}: FID {fid} at {minutes:.2f} min", flush=True)
        if fid <= target:
            break
    shutil.rmtree(root)
    return {"epochs": epochs}


def first_at_or_under(epochs: list[dict[str, Any]], target: float) -> dict[str, Any] | None:
    return next((e for e in epochs if e["fid"] <= target), None)


def bench_preset(preset: str, args: argparse.Namespace, judge: Judge) -> dict[str, Any]:
    print(f"{preset}:", flush=True)
    with tempfile.TemporaryDirectory(prefix="gancli-ttq-") as tmp:
        tutorial = bench_tutorial(preset, args, judge, Path(tmp))
        target = TARGET_FACTOR * tutorial["epochs"][-1]["fid"]
        gancli = bench_gancli(preset, args, judge, target, Path(tmp))
    reached = {
        "tutorial": first_at_or_under(tutorial["epochs"], target),
        "gancli": first_at_or_under(gancli["epochs"], target),
    }
    return {
        "preset": preset,
        "measured": time.strftime("%Y-%m-%d %H:%M"),
        "target_fid": round(target, 3),
        "tutorial": tutorial,
        "gancli": gancli,
        "reached": reached,
    }


# --------------------------------------------------------------------------- the report


def _minutes(entry: dict[str, Any] | None) -> str:
    return "not reached" if entry is None else f"{entry['minutes']:.2f} (epoch {entry['epoch']})"


def _fids(epochs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{e['fid']:.3g}" for e in epochs)


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"# Time to good samples: gancli against a tutorial-style loop ({m['date']})",
        "",
        f"- machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, Python {m['python']}, "
        f"torch {m['torch']}, {report['threads']} threads in every process",
        f"- load average at start: {', '.join(f'{v:.2f}' for v in m['load_average_at_start'])}",
        f"- FID: the shipped MNIST evaluator, n = {N:,} samples (seed {SEED}) against "
        f"{N:,} held-out MNIST test images; target: {TARGET_FACTOR:g} x the tutorial "
        f"loop's FID after {report['epochs']} epochs",
        "- time: wall minutes of the processes, scoring excluded; the tutorial loop's to an "
        "epoch from its start to that epoch's G on disk; gancli's summed over one "
        "`gancli train` process per epoch (--epochs 1, then --resume ... --epochs e)",
        "- the unit is an epoch: a target met within one counts at its end",
        f"- whole run {report['seconds'] / 60:.0f} min",
        "",
        f"| preset | measured | tutorial, {report['epochs']} epochs: min | tutorial FID by epoch | "
        "target FID | tutorial min to target | gancli FID by epoch | gancli min to target | "
        f"gancli / tutorial {report['epochs']} epochs | gancli / tutorial to target |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    verdicts = []
    for p in report["presets"]:
        tut, gan = p["reached"]["tutorial"], p["reached"]["gancli"]
        whole = p["tutorial"]["wall_minutes"]
        share = gan["minutes"] / whole if gan else None
        to_target = gan["minutes"] / tut["minutes"] if gan and tut else None
        lines.append(
            f"| {p['preset']} | {p.get('measured', m['date'])} | {whole:.2f} | "
            f"{_fids(p['tutorial']['epochs'])} | "
            f"{p['target_fid']:.3g} | {_minutes(tut)} | {_fids(p['gancli']['epochs'])} | "
            f"{_minutes(gan)} | {'-' if share is None else f'{share:.2f}'} | "
            f"{'-' if to_target is None else f'{to_target:.2f}'} |"
        )
        ok = share is not None and share <= GOAL
        verdicts.append(
            f"- {p['preset']}: gancli at the target in {'-' if share is None else f'{share:.0%}'}"
            f" of the tutorial loop's {report['epochs']}-epoch time, at most {GOAL:.0%}: "
            + ("PASS" if ok else "MISS")
        )
    return "\n".join([*lines, "", "Targets:", "", *verdicts, ""])


def _kept_rows(args: argparse.Namespace, presets: list[str]) -> tuple[list[dict[str, Any]], float]:
    """With --append: the existing report's rows of other presets (each with the time it was
    measured) and that report's seconds; else nothing."""
    existing = args.out.with_suffix(".json")
    if not args.append or not existing.exists():
        return [], 0.0
    old = json.loads(existing.read_text())
    if old["epochs"] != args.epochs:
        raise SystemExit(f"{existing}: measured with --epochs {old['epochs']}, not {args.epochs}")
    kept = [
        {**p, "measured": p.get("measured", old["machine"]["date"])}
        for p in old["presets"]
        if p["preset"] not in presets
    ]
    return kept, float(old["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default=",".join(PRESETS), help="comma-separated presets")
    parser.add_argument("--epochs", type=int, default=5, help="the tutorial loop's epochs (5)")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=RESULTS / "time_to_quality")
    parser.add_argument("--limit", type=int, help="the first N images only: a check of this script")
    parser.add_argument(
        "--append", action="store_true", help="keep the other presets' rows of the --out files"
    )
    args = parser.parse_args()
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    for preset in presets:
        if load_config(preset).data.dataset != "mnist":
            raise SystemExit(f"{preset}: not an MNIST preset; the scores are MNIST's")
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    judge = Judge(load_config(presets[0]), args.data_dir)
    kept, earlier_seconds = _kept_rows(args, presets)
    report: dict[str, Any] = {
        "machine": harness.machine(),
        "threads": args.threads,
        "epochs": args.epochs,
        "presets": kept,
    }
    for preset in presets:  # the files are rewritten after each: a long run can be cut short
        report["presets"].append(bench_preset(preset, args, judge))
        report["seconds"] = earlier_seconds + time.perf_counter() - started
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(render(report))
    print(render(report))


if __name__ == "__main__":
    main()
