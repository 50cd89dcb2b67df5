"""Usage: python benchmarks/gpu_check.py [--device cuda] [--smoke] [--presets a,b] [--n 2000]

Everything a GPU must show, in one command, so that a GPU lent for a short while is used
fully (about 6-8 minutes on one H100-class GPU with the defaults). It needs only the
repository and the data folder (../shared/data or --data-dir), no network. Writes
benchmarks/results/gpu-<device>.md and .json (--smoke: into the temp folder) and exits 1
if any check failed; every check runs whatever the others did.

1. train: every preset, one epoch, at every precision the device offers (CUDA: fp32 with
   TF32, bf16 where the GPU has it, fp16 with loss scaling; a CPU: fp32, and bf16 where it
   has bf16 units), in this process: images/s of the epoch, peak memory (CUDA's allocator
   peak; on a CPU the process's peak RSS, which only grows), and the evaluator FID of
   --n samples of the epoch's generator (no floor).
2. compile: dcgan-mnist for one epoch with --compile and without, images/s of each
   (not in --smoke: a compile takes 25-30 s per network on a 2-core CPU).
3. torchrun: `torchrun --nproc-per-node 1 -m gancli train` (NCCL on CUDA, gloo on a
   CPU); with 2 or more GPUs also 2 processes with --sync-bn.
4. kill and resume: `gancli train` stopped by SIGINT after its first metrics line (exit
   130, checkpoint kept), then `--resume` to the end (exit 0).
5. sample, evaluate and export (ONNX where onnx is installed, else a state dict) of that
   run, on the device, as a user types them.

--smoke (with --device cpu, what CI runs): every part that runs on a CPU, on 320 images at
batch 32 with 200 samples scored, to keep the script from rotting between GPU visits.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness
import torch

from gancli.engine.config import list_presets, load_config
from gancli.engine.generator import load_generator
from gancli.engine.options import RuntimeOptions
from gancli.engine.runtime import fast_on_cpu, resolve_device
from gancli.engine.scoring import EvalRequest, score_generator
from gancli.engine.starting import new_trainer

SMOKE = {"data.limit": 320, "training.batch_size": 32}
KILL_PRESET = "dcgan-mnist"


class Check:
    """The outcome of each check, kept whether it passed or failed."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def run(self, part: str, name: str, action: Callable[[], dict[str, Any]]) -> None:
        started = time.perf_counter()
        try:
            row = {"ok": True, **action()}
        except Exception as exc:  # a check that fails is reported, the next one runs
            traceback.print_exc()
            row = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        row.update(part=part, name=name, seconds=round(time.perf_counter() - started, 1))
        print(f"{'ok  ' if row['ok'] else 'FAIL'} {part}: {name} ({row['seconds']} s)", flush=True)
        self.rows.append(row)


def precisions(device: torch.device) -> list[str]:
    if device.type == "cuda":
        return ["fp32", "bf16", "fp16"] if torch.cuda.is_bf16_supported() else ["fp32", "fp16"]
    return ["fp32", "bf16"] if fast_on_cpu("bf16") else ["fp32"]


def peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def train_once(preset: str, precision: str, args: Any, root: Path, compile_: bool = False):
    """One epoch of `preset` in this process: images/s, peak memory, FID."""
    device = resolve_device(args.device)
    settings = {"training.epochs": 1, **(SMOKE if args.smoke else {})}
    config = load_config(preset, [], settings)
    options = RuntimeOptions(
        data_dir=str(args.data), device=args.device, precision=precision, compile=compile_
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    name = f"{preset}-{precision}" + ("-compiled" if compile_ else "")
    result = new_trainer(config, options, preset, str(root), name).fit()
    memory = peak_memory(device)
    trained = load_generator(Path(result.run_dir) / "checkpoints" / "last.pt", device)
    report = score_generator(trained, EvalRequest(n=args.n, floor=False), str(args.data))
    return {
        "images_per_second": result.images_per_second,
        "peak_memory": memory,
        "fid": report.model.fid,
        "run_dir": result.run_dir,
    }


def command(*arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        list(arguments),
        cwd=harness.ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(process: subprocess.Popen[str], expect: int = 0) -> str:
    """The command's stdout, once it has ended with the exit code `expect`."""
    output, errors = process.communicate(timeout=600)
    if process.returncode != expect:
        tail = " / ".join(errors.strip().splitlines()[-3:])
        raise RuntimeError(f"exit {process.returncode}, not {expect}: {tail}")
    return output


def small(args: Any) -> list[str]:
    """The flags that make a command-line run as small as the in-process ones."""
    flags = ["--epochs", "1", "--data-dir", str(args.data), "--device", args.device]
    return flags + (["--limit", "320", "--batch-size", "32"] if args.smoke else [])


def torchrun_check(args: Any, root: Path, processes: int, sync_bn: bool) -> dict[str, Any]:
    extra = ["--sync-bn"] if sync_bn else []
    process = command(
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
        "-m", "gancli", "train", "--preset", KILL_PRESET, *small(args), *extra,
        "--out", str(root), "--name", f"torchrun-{processes}", "--json", "--quiet",
    )  # fmt: skip
    result = json.loads(finished(process))
    assert result["world_size"] == processes, result
    return {"images_per_second": result["images_per_second"], "processes": processes}


def kill_and_resume(args: Any, root: Path) -> dict[str, Any]:
    """SIGINT after the first metrics line, then --resume to the end: the run it leaves."""
    run = root / "killed-001"
    flags = [*small(args), "--set", "training.log_every=2"]
    process = command(
        *harness.gancli("train", "--preset", KILL_PRESET, *flags, "--out", str(root)),
        "--name", "killed",
    )  # fmt: skip
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (metrics.is_file() and '"kind": "step"' in metrics.read_text()):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the run ended or hung before its first metrics line")
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    finished(process, expect=130)
    resumed = command(*harness.gancli("train", "--resume", str(run), "--device", args.device))
    finished(resumed)
    epochs = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert any(r["kind"] == "epoch" for r in epochs), "no epoch record after the resume"
    return {"run_dir": str(run)}


def user_commands(args: Any, run: Path, root: Path) -> dict[str, Any]:
    """sample, evaluate and export of the run, on the device."""
    device = ["--device", args.device]
    finished(command(*harness.gancli("sample", str(run), "-n", "64", *device, "--quiet")))
    evaluation = command(
        *harness.gancli("evaluate", str(run), "-n", str(args.n), "--data-dir", str(args.data)),
        *device, "--json",
    )  # fmt: skip
    fid = json.loads(finished(evaluation))["model"]["fid"]
    fmt = "onnx" if importlib.util.find_spec("onnx") else "state-dict"
    target = root / f"generator.{fmt}"
    finished(command(*harness.gancli("export", str(run), "--format", fmt, "--out", str(target))))
    return {"fid": fid, "export": fmt}


def run_checks(args: Any, root: Path) -> Check:
    device = resolve_device(args.device)
    check = Check()
    for preset in args.presets:
        for precision in precisions(device):
            run = lambda p=preset, q=precision: train_once(p, q, args, root)  # noqa: E731
            check.run("train", f"{preset} {precision}", run)
    if not args.smoke:
        for compiled in (False, True):
            name = f"{KILL_PRESET} {'--compile' if compiled else 'no compile'}"
            run = lambda c=compiled: train_once(KILL_PRESET, "auto", args, root, c)  # noqa: E731
            check.run("compile", name, run)
    check.run("torchrun", "1 process", lambda: torchrun_check(args, root, 1, False))
    if device.type == "cuda" and torch.cuda.device_count() >= 2:
        check.run("torchrun", "2 processes, --sync-bn", lambda: torchrun_check(args, root, 2, True))
    check.run("resume", "SIGINT, then --resume", lambda: kill_and_resume(args, root))
    killed = root / "killed-001"
    check.run("commands", "sample, evaluate, export", lambda: user_commands(args, killed, root))
    return check


def _result(row: dict[str, Any]) -> str:
    return "ok" if row["ok"] else f"FAIL: {row['error']}"


def _train_row(row: dict[str, Any]) -> list[object]:
    return [
        row["part"],
        row["name"],
        f"{row.get('images_per_second', 0):,.0f}",
        f"{row.get('peak_memory', 0) / 2**20:,.0f}",
        f"{row.get('fid', float('nan')):.2f}",
        _result(row),
    ]


def render(report: dict[str, Any]) -> str:
    rows = report["rows"]
    trains = [r for r in rows if r["part"] in ("train", "compile")]
    others = [r for r in rows if r["part"] not in ("train", "compile")]
    passed = sum(r["ok"] for r in rows)
    header = ["part", "run", "images/s", "peak memory (MiB)", "FID (evaluator)", "result"]
    lines = [
        f"# GPU check: {report['device_name']}",
        "",
        harness.machine_line(report["machine"]),
        f"Made by `{report['command']}`; {passed} of {len(rows)} checks passed in "
        f"{report['seconds'] / 60:.1f} minutes.",
        "",
        *harness.table(header, [_train_row(r) for r in trains]),
        "",
        *harness.table(
            ["part", "check", "seconds", "result"],
            [[r["part"], r["name"], r["seconds"], _result(r)] for r in others],
        ),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = harness.parser(__doc__)
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    parser.add_argument("--smoke", action="store_true", help="small runs (see above)")
    parser.add_argument("--presets", help="comma-separated presets (default: all)")
    parser.add_argument("--n", type=int, help="samples scored per run (2,000; --smoke 200)")
    args = parser.parse_args()
    args.quick = args.quick or args.smoke
    args.data = harness.data_dir(args)
    args.n = args.n or (200 if args.smoke else 2000)
    args.presets = args.presets.split(",") if args.presets else sorted(list_presets())
    os.environ["GANCLI_NO_DOWNLOAD"] = "1"
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")
        check = run_checks(args, Path(tmp))
    report = {
        "machine": harness.machine(),
        "device_name": name,
        "command": "python benchmarks/gpu_check.py " + " ".join(sys.argv[1:]),
        "seconds": time.perf_counter() - started,
        "rows": check.rows,
    }
    slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    harness.write_report(harness.out_path(args, f"gpu-{slug}"), render(report), report)
    sys.exit(0 if all(r["ok"] for r in check.rows) else 1)


if __name__ == "__main__":
    main()
