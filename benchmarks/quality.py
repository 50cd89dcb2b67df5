"""Usage: python benchmarks/quality.py [--epochs 5] [--n 10000] [--presets gan-mnist,cgan-mnist]

Sample quality of the MNIST presets after a fixed number of epochs on this machine:
each preset is trained from scratch with its own seed, then scored by `gancli evaluate`'s
engine with n samples against the MNIST test split, beside the real-data floor (real
training images scored the same way). Writes benchmarks/results/quality.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from gancli.engine.checkpoint import load_checkpoint
from gancli.engine.config import Config, config_from_dict, config_to_dict, load_config
from gancli.engine.options import RuntimeOptions
from gancli.engine.sampling import load_generator
from gancli.engine.scoring import EvalRequest, evaluate
from gancli.engine.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
MNIST_PRESETS = ("gan-mnist", "dcgan-mnist", "wgan-mnist", "wgan-gp-mnist", "cgan-mnist")
COLUMNS = ("FID", "FID/floor", "KID x1000", "precision", "recall", "coverage", "accuracy")


def _row(scores: dict, floor_fid: float) -> list[str]:
    accuracy = f"{100 * scores['accuracy']:.1f}%" if "accuracy" in scores else "-"
    return [
        f"{scores['fid']:.3f}",
        f"{scores['fid'] / floor_fid:.1f}x",
        f"{1000 * scores['kid']:.2f}",
        f"{100 * scores['precision']:.1f}%",
        f"{100 * scores['recall']:.1f}%",
        f"{scores['coverage']}/10",
        accuracy,
    ]


def run_preset(preset: str, args: argparse.Namespace, out: Path) -> dict:
    """Train the preset (or, with --reuse, take its finished run) and evaluate it."""
    config = load_config(preset, [], {"training.epochs": args.epochs})
    finished = out / f"{preset}-001" / "checkpoints" / "last.pt"
    if args.reuse and _trained_as(finished, config):
        checkpoint = finished
    else:
        options = RuntimeOptions(data_dir=args.data_dir, threads=args.threads)
        trainer = Trainer.new(config, options, preset_name=preset, out=str(out))
        trainer.fit()
        checkpoint = trainer.run.last_checkpoint
    minutes = load_checkpoint(checkpoint)["elapsed"] / 60  # training time, grids included
    trained = load_generator(checkpoint)
    report = evaluate(trained, EvalRequest(n=args.n, seed=args.seed), args.data_dir).to_dict()
    report.update(preset=preset, minutes=round(minutes, 2), run=str(checkpoint.parents[1]))
    print(f"{preset}: {minutes:.1f} min, FID {report['model']['fid']:.3f}", flush=True)
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


def write_results(reports: list[dict], args: argparse.Namespace) -> str:
    floor = reports[0]["floor"]
    header = ["preset", "epochs", "minutes", *COLUMNS]
    lines = [
        f"# Sample quality after {args.epochs} epochs (n={args.n}, seed {args.seed})",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__}. "
        "Features: gancli's shipped MNIST evaluator "
        f"(sha256 {reports[0]['evaluator_sha256'][:12]}, "
        f"{100 * reports[0]['evaluator_accuracy']:.2f}% on the test split); reference: "
        f"{reports[0]['reference']}. Minutes include the per-epoch grids and checkpoints.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for r in reports:
        cells = [
            r["preset"],
            str(args.epochs),
            f"{r['minutes']:.1f}",
            *_row(r["model"], floor["fid"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    floor_cells = ["real MNIST train (floor)", "-", "-", *_row(floor, floor["fid"])]
    lines.append("| " + " | ".join(floor_cells) + " |")
    best = sorted(reports, key=lambda r: r["model"]["fid"])
    lines += ["", "Ranking by FID: " + " < ".join(r["preset"] for r in best)]
    misses = [r["preset"] for r in reports if r["model"]["fid"] > 10 * floor["fid"]]
    lines.append(
        "Target FID within 10x of the floor: "
        + (f"missed by {', '.join(misses)}" if misses else "met by every preset")
    )
    table = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "quality.md").write_text(table)
    (RESULTS / "quality.json").write_text(json.dumps(reports, indent=1) + "\n")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--n", type=int, default=10_000, help="samples per evaluation")
    parser.add_argument("--seed", type=int, default=0, help="evaluation seed")
    parser.add_argument("--presets", default=",".join(MNIST_PRESETS))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("GANCLI_DATA_DIR", str(REPO.parent / "shared" / "data")),
    )
    parser.add_argument("--runs", default=str(REPO / "runs" / "quality"), help="runs root")
    parser.add_argument(
        "--reuse", action="store_true", help="evaluate finished runs under --runs, don't retrain"
    )
    args = parser.parse_args()
    reports = [run_preset(p, args, Path(args.runs)) for p in args.presets.split(",")]
    print(write_results(reports, args))


if __name__ == "__main__":
    main()
