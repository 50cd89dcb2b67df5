"""Usage: python benchmarks/quality.py [--presets gan-mnist:5] [--set K=V] [--train-seeds 0,1]

Sample quality of presets on this machine: each is trained from scratch with its own seed
for its own number of epochs (or `--epochs`, or `preset:epochs`), then scored by
`gancli evaluate`'s engine with n samples against its dataset's held-out images, beside
the real-data floor (real training images scored the same way). For presets that augment
D's inputs, a leak check asks whether samples look augmented (see `augmentation_leak`).
Writes benchmarks/results/quality.md and quality.json; a run whose config and epochs
match is reused with --reuse.

Trials: with `--set KEY=VALUE` (a candidate recipe, as `gancli train --set` takes it) or
`--train-seeds` (training seeds other than the preset's own), the results go to
results/quality-trials.md and .json instead, one row per preset, recipe and training seed,
so that a candidate is measured on several seeds without touching the shipped table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from second_opinion import second_opinion
from torch import nn

from gancli.engine.augment import Augment
from gancli.engine.checkpoint import load_checkpoint
from gancli.engine.config import Config, config_from_dict, config_to_dict, load_config
from gancli.engine.data import to_unit_range
from gancli.engine.evaluator import evaluation_splits
from gancli.engine.generator import TrainedGenerator, load_generator
from gancli.engine.options import RuntimeOptions
from gancli.engine.scoring import EvalRequest, generated_images, score_generator
from gancli.engine.starting import new_trainer

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
MNIST_PRESETS = ("gan-mnist", "dcgan-mnist", "wgan-mnist", "wgan-gp-mnist", "cgan-mnist")
EARLIEST = "2026-11-22"  # results from before quality.json recorded the date
COLUMNS = (
    "FID", "FID/floor", "KID x1000", "precision", "recall", "coverage", "class shares",
    "read clearly", "class accuracy",
)  # fmt: skip


def parse_spec(spec: str, epochs: int | None) -> tuple[str, int | None]:
    """'dcgan-digits:1' -> ('dcgan-digits', 1); 'dcgan-mnist' -> (name, --epochs or None)."""
    name, _, count = spec.partition(":")
    return name.strip(), int(count) if count else epochs


def run_preset(
    spec: str, args: argparse.Namespace, out: Path, seed: int | None = None
) -> dict[str, Any]:
    """Train the preset (or, with --reuse, take its finished run) and evaluate it."""
    preset, epochs = parse_spec(spec, args.epochs)
    overrides = [*args.set, *([f"training.seed={seed}"] if seed is not None else [])]
    config = load_config(preset, overrides, {"training.epochs": epochs})
    label = f"{preset}-{config.training.epochs}ep"
    if args.set or seed is not None:  # a trial: its own run folder per recipe and seed
        recipe = hashlib.sha256(" ".join(sorted(args.set)).encode()).hexdigest()[:8]
        label += f"-{recipe}-seed{config.training.seed}"
    finished = out / f"{label}-001" / "checkpoints" / "last.pt"
    if args.reuse and _trained_as(finished, config):
        checkpoint = finished
    else:
        options = RuntimeOptions(data_dir=args.data_dir, threads=args.threads)
        trainer = new_trainer(config, options, preset_name=preset, out=str(out), name=label)
        trainer.fit()
        checkpoint = trainer.run.last_checkpoint
    state = load_checkpoint(checkpoint)
    minutes = state["elapsed"] / 60  # training time, grids and checkpoints included
    trained = load_generator(checkpoint)
    request = EvalRequest(n=args.n, seed=args.seed)
    report = score_generator(trained, request, args.data_dir).to_dict()
    report.update(
        preset=preset,
        epochs=config.training.epochs,
        measured=time.strftime("%Y-%m-%d"),
        minutes=round(minutes, 2),
        run=str(checkpoint.parents[1]),
        overrides=sorted(args.set),
        train_seed=config.training.seed,
    )
    report["second"] = second_opinion(trained, args.n, args.seed, args.data_dir, out)
    if config.training.augment != "none":
        report["leak"] = augmentation_leak(trained, args)
    print(f"{spec}: {minutes:.1f} min, FID {report['model']['fid']:.3f}", flush=True)
    return report


def _trained_as(checkpoint: Path, config: Config) -> bool:
    """Whether `checkpoint` is a finished run of exactly this recipe (the description aside)."""
    if not checkpoint.is_file():
        return False
    state = load_checkpoint(checkpoint)
    # through Config and back: keys added to gancli since the run was trained get defaults
    saved = config_to_dict(config_from_dict(state["config"]))
    wanted = config_to_dict(config)
    saved["description"] = wanted["description"]
    return bool(state["epoch"] == config.training.epochs and saved == wanted)


# --------------------------------------------------------------------------- leaks


def augmentation_leak(trained: TrainedGenerator, args: argparse.Namespace) -> dict[str, float]:
    """Do the samples carry the augmentation D was trained on (a "leak")?

    A small CNN learns to tell augmented real training images from plain ones; it is then
    shown held-out real images and the generator's samples. Without a leak, samples are
    called "augmented" about as often as plain real images are, and far less often than
    augmented ones.
    """
    torch.manual_seed(args.seed)
    augment = Augment(trained.config.training.augment)
    train, heldout = evaluation_splits(trained.config.data, args.data_dir)
    detector = _train_detector(to_unit_range(train.images[:20_000]), augment)
    plain = to_unit_range(heldout.images[:2_000])
    fakes, _ = generated_images(trained, 2_000, args.seed)
    with torch.no_grad():
        rate = {
            "real": _augmented_share(detector, plain),
            "augmented real": _augmented_share(detector, augment(plain)),
            "samples": _augmented_share(detector, to_unit_range(fakes)),
        }
    return {k: round(v, 4) for k, v in rate.items()}


def _train_detector(images: torch.Tensor, augment: Augment, steps: int = 600) -> nn.Module:
    channels = images.shape[1]
    net = nn.Sequential(
        nn.Conv2d(channels, 32, 3, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(32, 64, 3, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(64, 64, 3, 2, 1), nn.LeakyReLU(0.2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 1),
    )  # fmt: skip
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(steps):
        batch = images[torch.randint(0, len(images), (128,))]
        x = torch.cat([batch, augment(batch)])
        y = torch.cat([torch.zeros(128), torch.ones(128)])
        loss = nn.functional.binary_cross_entropy_with_logits(net(x).view(-1), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net.eval()


def _augmented_share(detector: nn.Module, images: torch.Tensor) -> float:
    return float((detector(images).view(-1) > 0).float().mean())


# --------------------------------------------------------------------------- report


def _row(scores: dict, floor_fid: float, classes: int) -> list[str]:
    shares = scores.get("class_shares") or []
    spread = f"{100 * min(shares):.1f}-{100 * max(shares):.1f}%" if shares else "-"
    accuracy = f"{100 * scores['accuracy']:.1f}%" if "accuracy" in scores else "-"
    return [
        f"{scores['fid']:.3f}",
        f"{scores['fid'] / floor_fid:.1f}x",
        f"{1000 * scores['kid']:.2f}",
        f"{100 * scores['precision']:.1f}%",
        f"{100 * scores['recall']:.1f}%",
        f"{scores['coverage']}/{classes}",
        spread,
        f"{100 * scores['confident']:.1f}%" if "confident" in scores else "-",
        accuracy,
    ]


def _table(reports: list[dict], trials: bool) -> list[str]:
    floor = reports[0]["floor"]
    classes = len(reports[0]["class_names"])
    recipe = ["recipe (--set)", "training seed"] if trials else []
    header = ["preset", *recipe, "epochs", "measured", "minutes", *COLUMNS]
    lines = [
        f"### {reports[0]['dataset']} (reference: {reports[0]['reference']}; evaluator sha256 "
        f"{reports[0]['evaluator_sha256'][:12]}, {100 * reports[0]['evaluator_accuracy']:.2f}% "
        "on held-out images)",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    order = _key if trials else (lambda r: r["model"]["fid"])
    for r in sorted(reports, key=order):
        shown = [" ".join(r["overrides"]) or "(preset's own)", str(r["train_seed"])]
        cells = [r["preset"], *(shown if trials else []), str(r["epochs"]), r["measured"]]
        cells.append(f"{r['minutes']:.1f}")
        lines.append("| " + " | ".join([*cells, *_row(r["model"], floor["fid"], classes)]) + " |")
    blanks = ["-"] * (len(header) - len(COLUMNS) - 1)
    floor_cells = ["real training images (floor)", *blanks, *_row(floor, floor["fid"], classes)]
    lines.append("| " + " | ".join(floor_cells) + " |")
    lines += _second_table(reports, order, trials)
    leaks = [r for r in reports if "leak" in r]
    if leaks:
        lines += ["", "Augmentation leak check (share called augmented by a detector):", ""]
        for r in leaks:
            leak = r["leak"]
            lines.append(
                f"- {r['preset']} ({load_config(r['preset']).training.augment}): real "
                f"{100 * leak['real']:.1f}%, augmented real {100 * leak['augmented real']:.1f}%, "
                f"samples {100 * leak['samples']:.1f}%"
            )
    return [*lines, ""]


def _key(report: dict) -> tuple:
    return (report["preset"], report["epochs"], tuple(report["overrides"]), report["train_seed"])


def _second_table(reports: list[dict], order: Any, trials: bool) -> list[str]:
    """The same samples scored in the second feature space (second_opinion.py)."""
    scored = [r for r in reports if "second" in r]
    if not scored:
        return []
    first = scored[0]["second"]
    classes = len(reports[0]["class_names"])
    header = ["preset", *(["recipe (--set)", "training seed"] if trials else []), "epochs"]
    lines = [
        "",
        f"Second opinion (benchmarks/second_opinion.py: another architecture and seed, "
        f"sha256 {first['sha256'][:12]}, {100 * first['accuracy']:.2f}% on held-out images; "
        f"{len(reports) - len(scored)} row(s) above measured before it existed):",
        "",
        "| " + " | ".join([*header, *COLUMNS]) + " |",
        "|" + "---|" * (len(header) + len(COLUMNS)),
    ]
    floor = first["floor"]
    for r in sorted(scored, key=order):
        recipe = [" ".join(r["overrides"]) or "(preset's own)", str(r["train_seed"])]
        cells = [r["preset"], *(recipe if trials else []), str(r["epochs"])]
        lines.append(
            "| " + " | ".join([*cells, *_row(r["second"]["model"], floor["fid"], classes)]) + " |"
        )
    blanks = ["-"] * (len(header) - 1)
    lines.append(
        "| "
        + " | ".join(["real training images (floor)", *blanks, *_row(floor, floor["fid"], classes)])
        + " |"
    )
    return lines


def merged(reports: list[dict], name: str) -> list[dict]:
    """Earlier results (<name>.json) with this run's in place of the same preset, epochs,
    recipe and training seed, so that presets can be measured in separate runs."""
    path = RESULTS / f"{name}.json"
    earlier = json.loads(path.read_text()) if path.is_file() else []
    for r in earlier:  # results written before these keys existed
        r.setdefault("epochs", r["epoch"])
        r.setdefault("measured", EARLIEST)
        r.setdefault("overrides", [])
        r.setdefault("train_seed", load_config(r["preset"]).training.seed)
    done = {_key(r) for r in reports}
    kept = [r for r in earlier if _key(r) not in done]
    return kept + reports


def write_results(reports: list[dict], args: argparse.Namespace, name: str) -> str:
    by_dataset: dict[str, list[dict]] = defaultdict(list)
    for report in reports:
        by_dataset[report["dataset"]].append(report)
    lines = [
        f"# Sample quality (n={args.n}, evaluation seed {args.seed}, training seed: "
        + ("as shown)" if name != "quality" else "each preset's own)"),
        "",
        f"Measured on {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, on the dates shown. Minutes are training time, per-epoch "
        "grids and checkpoints included, and only comparable between runs that had the "
        "machine to themselves (see the README's presets table for timed epochs). Class shares: "
        "the smallest and largest share of the samples the evaluator gives one class; read "
        "clearly: samples it reads as one class with probability >= 0.9.",
        "",
    ]
    for group in by_dataset.values():
        lines += _table(group, trials=name != "quality")
    table = "\n".join(lines)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.md").write_text(table)
    (RESULTS / f"{name}.json").write_text(json.dumps(reports, indent=1) + "\n")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="for every preset")
    parser.add_argument("--n", type=int, default=10_000, help="samples per evaluation")
    parser.add_argument("--seed", type=int, default=0, help="evaluation seed")
    parser.add_argument(
        "--presets", default=",".join(MNIST_PRESETS), help="names, each with :EPOCHS if wanted"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("GANCLI_DATA_DIR", str(REPO.parent / "shared" / "data")),
    )
    parser.add_argument("--runs", default=str(REPO / "runs" / "quality"), help="runs root")
    parser.add_argument(
        "--reuse", action="store_true", help="evaluate finished runs under --runs, don't retrain"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a candidate recipe"
    )
    parser.add_argument("--train-seeds", help="training seeds, comma-separated (a trial)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.train_seeds.split(",")] if args.train_seeds else [None]
    name = "quality-trials" if args.set or args.train_seeds else "quality"
    reports = [
        run_preset(p, args, Path(args.runs), seed)
        for p in args.presets.split(",")
        for seed in seeds
    ]
    print(write_results(merged(reports, name), args, name))


if __name__ == "__main__":
    main()
