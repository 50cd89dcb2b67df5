"""Usage: python benchmarks/fast_layers.py [--presets dcgan-mnist] [--rounds 2] [--variants
fast,plain] [--add] [--quick]

Whether gancli's fast layers earn their place under the 5% rule (docs/speed.md): whole
default runs of a shipped preset, `gancli train --preset P` with nothing else, with the
fast layers and with their plain PyTorch forms (GANCLI_PLAIN_LAYERS=1: G's first layer as
nn.ConvTranspose2d on the noise with the one-hot label joined, D's last layer as
nn.Conv2d, projection's class embedding as nn.Linear on the one-hot label). The runs
alternate (fast, plain, fast, plain ...), one process at a time; the figure is the median
wall time of the whole command and the gain is plain over fast, minus one. Each run
records the load average before it, so that a run disturbed by other work shows. --add
adds the runs to those already in the results (to run more rounds later, or one variant
again), and the figures are taken over all of them. Writes
benchmarks/results/fast_layers.md and .json.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from pathlib import Path

import harness

VARIANTS = {"fast": "0", "plain": "1"}  # name -> GANCLI_PLAIN_LAYERS
KEEP_FROM = 0.05  # the 5% rule


def one_run(preset: str, extra: list[str], data: Path, threads: int, switch: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        command = harness.gancli(
            "train", "--preset", preset, *extra, "--threads", str(threads),
            "--data-dir", str(data), "--out", str(root / "runs"), "--quiet",
        )  # fmt: skip
        load = os.getloadavg()[0]
        result = harness.run_command(command, root / "log", env={"GANCLI_PLAIN_LAYERS": switch})
        result["load_before"] = round(load, 2)
        (metrics,) = (root / "runs").glob("*/metrics.jsonl")
        epochs = [json.loads(line) for line in metrics.read_text().splitlines()]
        epochs = [r for r in epochs if r["kind"] == "epoch"]
        result["train_seconds"] = sum(r["wall"] for r in epochs)
        result["epochs"] = len(epochs)
        del result["stdout"]
        return result


def main() -> None:
    parser = harness.parser(__doc__)
    parser.add_argument("--presets", default="dcgan-mnist", help="comma-separated presets")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each variant")
    parser.add_argument("--variants", default="fast,plain", help="which of fast,plain to run")
    parser.add_argument("--add", action="store_true", help="add to the runs already measured")
    args = parser.parse_args()
    data = harness.data_dir(args)
    extra = ["--epochs", "1", "--limit", "640"] if args.quick else []
    out = harness.out_path(args, "fast_layers")
    report: dict = {"machine": harness.machine(), "presets": {}}
    if args.add and out.with_suffix(".json").is_file():
        report = json.loads(out.with_suffix(".json").read_text())
    rows = []
    for preset in args.presets.split(","):
        chosen = {name: VARIANTS[name] for name in args.variants.split(",")}
        runs = harness.alternate(
            {
                name: (lambda s=switch, p=preset: one_run(p, extra, data, args.threads, s))
                for name, switch in chosen.items()
            },
            args.rounds,
        )
        earlier = report["presets"].get(preset, {}).get("runs", {})
        runs = {name: earlier.get(name, []) + runs.get(name, []) for name in VARIANTS}
        walls = {name: [r["wall"] for r in results] for name, results in runs.items()}
        gain = None
        if all(walls.values()):
            gain = statistics.median(walls["plain"]) / statistics.median(walls["fast"]) - 1
        report["presets"][preset] = {"runs": runs, "gain": gain}
        rows.append([
            f"`{preset}`" + (" (quick)" if args.quick else ""),
            harness.median_range(walls["fast"]) if walls["fast"] else "-",
            harness.median_range(walls["plain"]) if walls["plain"] else "-",
            "-" if gain is None else f"{gain:+.1%}",
            "-" if gain is None else "keep" if gain >= KEEP_FROM else "plain PyTorch",
        ])  # fmt: skip
    lines = [
        "# Fast layers against plain PyTorch, whole default runs",
        "",
        harness.machine_line(report["machine"]),
        "Wall seconds of the whole `gancli train`, median [min-max] over the runs, in "
        "alternating rounds. Made by `python benchmarks/fast_layers.py`.",
        "",
        *harness.table(
            ["preset", "fast layers (s)", "plain layers (s)", "gain", "verdict (5% rule)"], rows
        ),
        "",
        "Every run (seconds, and the 1-minute load average just before it):",
        "",
        *[
            f"- `{preset}` {name}: "
            + ", ".join(f"{r['wall']:.1f} s (load {r.get('load_before', '?')})" for r in runs)
            for preset, entry in report["presets"].items()
            for name, runs in entry["runs"].items()
        ],
        "",
    ]
    harness.write_report(out, "\n".join(lines), report)


if __name__ == "__main__":
    main()
