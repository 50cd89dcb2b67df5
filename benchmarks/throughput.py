"""Usage: python benchmarks/throughput.py [--presets dcgan-mnist,wgan-mnist] [--steps 20]
[--repeats 3] [--warmup 3] [--threads N] [--data-dir DIR] [--quick]

Training throughput of gancli's loop against the same networks trained the way PyTorch
tutorials write it, with FLOPs per training image, the share of this machine's fp32 matmul
peak and the peak memory of a real `gancli train`. Writes benchmarks/results/throughput.md
and throughput.json (--quick: a smoke run on five presets, written to the temp directory).

Methodology:

- Each loop runs in a process of its own (spawned), on the same data files, with G and D
  built by gancli.engine.models.build_models from the preset's config after the same
  seeding (the script checks that the initial weights are equal). The processes are timed
  in alternating windows (gancli, reference, gancli, reference ...), each after its own
  warm-up steps, one process computing at a time, so drift in the machine's load hits both
  alike. Separate processes, because some of what gancli sets up is process-wide and not
  undone (the allocator's reuse of freed memory, the threads' denormal flags): in a shared
  process it would speed up the reference too.
- One step is one G step: n_critic D steps then one G step. Images per step are the real
  images D consumes, batch_size x n_critic, for both loops; images/s = images x steps / s.
- gancli: TrainState.step on the real ImageSet, in a process set up by the runtime's
  prepare() as `gancli train` is (threads, allocator) and under the denormal flushing that
  Trainer.fit sets, plus the per-step bookkeeping of an epoch (adding the stats to the
  window and epoch sums, one host read of the window every training.log_every steps).
  Left out: the metrics.jsonl line and the epoch-end grid, health check, checkpoint and plot.
- reference: tutorial.py's TutorialLoop: a Dataset of PIL images (converted once, at
  construction) with ToTensor and Normalize((0.5,), (0.5,)), DataLoader(shuffle=True,
  drop_last=True, num_workers=0), default Adam / RMSprop, the preset's objective written
  inline (BCEWithLogitsLoss for the BCE losses), separate real and fake D passes on
  fake.detach(), a new z and a new G forward for the G step, weight clipping or the usual
  autograd.grad gradient penalty.
- FLOPs: torch.utils.flop_counter.FlopCounterMode over one step of each loop (forward and
  backward of every matmul and convolution, all n_critic D steps and the G step; element-wise
  ops, norms and optimiser updates are not counted). Achieved GFLOP/s is gancli's images/s
  times its FLOPs per image; the peak is the best GFLOP/s of timed 2048x2048 fp32
  torch.mm (2 n^3 FLOPs each) at the same thread count, measured at the start and at the
  end of the run (other load can only make it look lower). The fp32 bound is the ratio
  to the reference that gancli's FLOPs per image would give at 100% of that peak: where
  it is under the 2x target, no fp32 loop doing the same arithmetic can meet it.
- Kernel bound: after the timed windows, one more window per loop under a dispatch mode
  that times each convolution and matrix-product ATen op on its own (KERNELS): gancli's
  seconds per step inside them. The reference's step time over that is the ratio gancli
  would reach if all its other work (element-wise ops, norms, the optimiser, Python) took
  no time and these kernels ran as fast as they do here; where it is under the target,
  only faster kernels (lower precision, another machine) or less arithmetic can meet it.
- --bf16 (default where the CPU has bf16 units): a third loop in the alternation,
  gancli with --precision bf16 autocast, against the same fp32 reference.
- Peak RSS: ru_maxrss of a real `python -m gancli train --preset P --epochs 1` process on
  the full dataset, started by a small helper process (see RSS_HELPER), stopped with SIGINT
  after its first metrics line (training.log_every steps), which makes it finish the step
  and write a checkpoint. A full MNIST epoch per preset would take longer than the whole
  benchmark may; the memory that matters is there from the first step: the whole split in
  memory, both networks, optimiser state, step activations. Not in it: the epoch-end sample
  grid and loss plot.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

# tutorial.py sits beside this file: sys.path[0] when run as a script
from tutorial import Batches, TutorialLoop

from gancli.engine.config import Config, list_presets, load_config
from gancli.engine.data import ImageSet, load_dataset
from gancli.engine.errors import EXIT_INTERRUPTED, ConfigError
from gancli.engine.runtime import (
    RuntimeOptions,
    fast_on_cpu,
    flushing_denormals,
    prepare,
    seed_everything,
)
from gancli.engine.state import STATS, TrainState

ROOT, RESULTS = harness.ROOT, harness.RESULTS
QUICK_PRESETS = "dcgan-mnist,cgan-notmnist,gan-mnist,wgan-mnist,wgan-gp-mnist"
TARGET_RATIO = 2.0  # gancli images/s over the reference's, on every preset
TARGET_PEAK_SHARE = 0.60  # of the measured fp32 matmul peak, on PEAK_PRESET
PEAK_PRESET = "dcgan-mnist"
TARGET_RSS_MB = 1536.0  # peak resident memory of a gancli train process
PEAK_MATMUL_SIDE = 2048
PEAK_REPEATS = 20
RSS_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Settings:
    steps: int  # timed G steps per window
    repeats: int  # timed windows per loop
    warmup: int  # untimed G steps before each window
    rss_log_every: int  # steps before the RSS child is stopped


FULL = Settings(steps=20, repeats=3, warmup=3, rss_log_every=10)
QUICK = Settings(steps=2, repeats=2, warmup=1, rss_log_every=1)


# --------------------------------------------------------------------------- gancli's loop


class GancliLoop:
    """TrainState.step plus the bookkeeping a real epoch does after each step."""

    def __init__(self, config: Config, data: ImageSet, threads: int, precision: str = "fp32"):
        options = RuntimeOptions(device="cpu", threads=threads, precision=precision)
        device = prepare(options)  # as `gancli train` sets up its process
        seed_everything(config.training.seed)  # as Trainer does before building the models
        self.state = TrainState(config, data.image_shape, data.num_classes, device, options)
        self.batches = _endless_epochs(data, config.training.batch_size, config.training.seed)
        self.window = torch.zeros(len(STATS))
        self.epoch_sum = torch.zeros(len(STATS))
        self.log_every = config.training.log_every
        self.steps = 0

    def step(self) -> None:
        stats = self.state.step(self.batches)
        self.window += stats
        self.epoch_sum += stats
        self.steps += 1
        if self.steps % self.log_every == 0:
            self.window.tolist()  # the loop's one host read per log line
            self.window.zero_()

    def networks(self) -> tuple[nn.Module, nn.Module]:
        return self.state.generator, self.state.discriminator

    def flops(self) -> int:
        return _count_flops(lambda: self.state.step(self.batches))

    def timed(self, warmup: int, steps: int) -> float:
        # Trainer.fit trains with denormals flushed to zero; the setting is restored after.
        with flushing_denormals():
            return _timed(self.step, warmup, steps)

    def in_kernels(self, warmup: int, steps: int) -> float:
        with flushing_denormals():
            return _in_kernels(self.step, warmup, steps)


def _endless_epochs(data: ImageSet, batch_size: int, seed: int) -> Batches:
    """gancli's batches, epoch after epoch, as the trainer draws them."""
    for epoch in itertools.count():
        yield from data.batches(batch_size, seed, epoch)


# --------------------------------------------------------------------------- reference loop


class ReferenceLoop(TutorialLoop):
    """The tutorial-style loop of tutorial.py, with what the loop processes ask of a loop."""

    def flops(self) -> int:
        return _count_flops(self.step)

    def timed(self, warmup: int, steps: int) -> float:
        return _timed(self.step, warmup, steps)

    def in_kernels(self, warmup: int, steps: int) -> float:
        return _in_kernels(self.step, warmup, steps)


# --------------------------------------------------------------------------- measuring


def _timed(step: Callable[[], None], warmup: int, steps: int) -> float:
    """Seconds for `steps` calls of `step`, after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - start


KERNELS = frozenset({"convolution", "convolution_backward", "mm", "addmm", "bmm", "baddbmm"})


class _KernelClock(TorchDispatchMode):
    """Adds up the seconds spent in convolution and matrix-product kernels (ATen ops,
    timed one by one: on the CPU an op has finished when it returns)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds = 0.0

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        if func.overloadpacket.__name__ not in KERNELS:
            return func(*args, **(kwargs or {}))
        start = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        self.seconds += time.perf_counter() - start
        return out


def _in_kernels(step: Callable[[], None], warmup: int, steps: int) -> float:
    """Seconds per call of `step` spent in KERNELS, over `steps` calls after `warmup`."""
    for _ in range(warmup):
        step()
    with _KernelClock() as clock:
        for _ in range(steps):
            step()
    return clock.seconds / steps


class _GlobalOnly:
    """Stands in for FlopCounterMode's module tracker, which attributes FLOPs to modules.

    Its module hooks break torch.autograd.grad on a leaf input (pytorch/pytorch#131753),
    which is what the gradient penalty does; only the global total is needed here.
    """

    parents = ("Global",)

    def __enter__(self) -> _GlobalOnly:
        return self

    def __exit__(self, *args: object) -> None:
        return None


def _count_flops(step: Callable[[], object]) -> int:
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _GlobalOnly()  # type: ignore[assignment]
    with counter:
        step()
    return int(counter.get_total_flops())


def _weight_digests(networks: tuple[nn.Module, nn.Module]) -> list[str]:
    """One hash per tensor of G's and D's state, in order: equal lists, equal weights."""
    return [
        hashlib.sha256(tensor.detach().contiguous().numpy().tobytes()).hexdigest()
        for net in networks
        for tensor in net.state_dict().values()
    ]


# --------------------------------------------------------------------------- loop processes

LOOPS: dict[str, tuple[str, str]] = {  # name -> (kind, precision)
    "gancli": ("gancli", "fp32"),
    "reference": ("reference", "fp32"),
    "gancli-bf16": ("gancli", "bf16"),
}


def _serve(
    conn: Any, name: str, preset: str, data_dir: Path, threads: int, limit: int | None
) -> None:
    """A loop process: build the loop, report its weights and FLOPs, then time windows."""
    try:
        kind, precision = LOOPS[name]
        config = load_config(preset, flags={"data.limit": limit})
        data = load_dataset(config.data, data_dir)
        loop: GancliLoop | ReferenceLoop = (
            GancliLoop(config, data, threads, precision)
            if kind == "gancli"
            else ReferenceLoop(config, data, threads)
        )
        conn.send(("ok", {"weights": _weight_digests(loop.networks()), "flops": loop.flops()}))
        while (request := conn.recv()) is not None:
            what, warmup, steps = request
            measure = loop.timed if what == "window" else loop.in_kernels
            conn.send(("ok", measure(warmup, steps)))
    except Exception:
        conn.send(("error", traceback.format_exc()))


class LoopProcess:
    """One loop in a process of its own, timed a window at a time on request; `limit`:
    train on the first N images only (data.limit)."""

    def __init__(
        self, name: str, preset: str, data_dir: Path, threads: int, limit: int | None = None
    ):
        context = multiprocessing.get_context("spawn")
        self.name = name
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(child, name, preset, data_dir, threads, limit), daemon=True
        )
        self.process.start()
        child.close()
        started: dict[str, Any] = self._reply()
        self.weights: list[str] = started["weights"]
        self.flops: int = started["flops"]

    def window(self, warmup: int, steps: int) -> float:
        """Seconds for `steps` steps after `warmup`."""
        self.conn.send(("window", warmup, steps))
        seconds: float = self._reply()
        return seconds

    def in_kernels(self, warmup: int, steps: int) -> float:
        """Seconds per step in convolution and matrix-product kernels (_KernelClock)."""
        self.conn.send(("kernels", warmup, steps))
        seconds: float = self._reply()
        return seconds

    def _reply(self) -> Any:
        try:
            status, value = self.conn.recv()
        except EOFError:
            raise SystemExit(
                f"{self.name} loop process died (exit {self.process.exitcode})"
            ) from None
        if status == "error":
            raise SystemExit(f"{self.name} loop process failed:\n{value}")
        return value

    def close(self) -> None:
        if self.process.is_alive():
            self.conn.send(None)
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.kill()


def matmul_peak(side: int, repeats: int) -> dict[str, Any]:
    """Best fp32 torch.mm GFLOP/s at the current thread count, with its samples.

    The best, not the median: on a shared machine other load and clock changes can only
    make a multiply slower, and the median moved by 20% between runs here."""
    a, b = torch.randn(side, side), torch.randn(side, side)
    out = torch.empty(side, side)
    for _ in range(2):
        torch.mm(a, b, out=out)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        rates.append(2 * side**3 / (time.perf_counter() - start) / 1e9)
    return {"side": side, "gflops": max(rates), "samples": rates}


# Runs a command, prints its peak RSS in kB and exit code. Linux carries a process's peak RSS
# over fork and exec, so a child of this benchmark (torch and the data sets loaded) would
# report at least the benchmark's own peak; a child of this small helper starts near zero.
# The helper's SIGINT handler (not SIG_IGN, which exec keeps) lets the signal reach the child.
RSS_HELPER = """
import json, os, signal, subprocess, sys
signal.signal(signal.SIGINT, lambda *_: None)
child = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(child.pid, 0)
print(json.dumps([usage.ru_maxrss, os.waitstatus_to_exitcode(status)]))
"""


def peak_rss(
    preset: str, data_dir: Path, threads: int, log_every: int, runs: Path
) -> dict[str, Any]:
    """Peak RSS of a real `gancli train` process, stopped after its first metrics line."""
    command = [
        sys.executable, "-m", "gancli", "train", "--preset", preset, "--epochs", "1",
        "--set", f"training.log_every={log_every}", "--threads", str(threads),
        "--data-dir", str(data_dir), "--out", str(runs), "--name", "rss", "--quiet",
    ]  # fmt: skip
    runs.mkdir(parents=True)
    errors = runs / "stderr.txt"
    metrics = runs / "rss-001" / "metrics.jsonl"
    started = time.perf_counter()
    with open(errors, "w") as stderr:
        helper = subprocess.Popen(
            [sys.executable, "-c", RSS_HELPER, *command],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,  # its own process group, for SIGINT to both
        )
    stopped = False
    try:
        while helper.poll() is None:
            if not stopped and _logged_steps(metrics):
                os.killpg(helper.pid, signal.SIGINT)  # finish the step, checkpoint, exit 130
                stopped = True
            elif time.perf_counter() - started > RSS_TIMEOUT_S:
                break
            time.sleep(0.1)
    finally:
        if helper.poll() is None:
            os.killpg(helper.pid, signal.SIGKILL)
    printed = helper.communicate()[0]
    maxrss_kb, exit_code = json.loads(printed) if printed else (0, helper.returncode)
    if exit_code not in (0, EXIT_INTERRUPTED) or not _logged_steps(metrics):
        raise SystemExit(f"{preset}: gancli train exited {exit_code}: {errors.read_text().strip()}")
    return {
        "mb": maxrss_kb / 1024,
        "exit_code": exit_code,
        "stopped_by_sigint": stopped,
        "steps_logged": _logged_steps(metrics),
        "seconds": time.perf_counter() - started,
        "command": " ".join(command[1:]),
    }


def _logged_steps(metrics: Path) -> int:
    """The last step in a metrics.jsonl's step records; 0 before the first one."""
    if not metrics.is_file():
        return 0
    steps = [0]
    for line in metrics.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line still being written
        if record.get("kind") == "step":
            steps.append(int(record["step"]))
    return max(steps)


# --------------------------------------------------------------------------- one preset


def time_windows(
    preset: str,
    names: list[str],
    settings: Settings,
    data_dir: Path,
    threads: int,
    limit: int | None = None,
    kernels: bool = False,
) -> tuple[dict[str, list[float]], dict[str, int], dict[str, float]]:
    """The named loops (LOOPS, "reference" among them), each in a process of its own,
    checked to start from the reference's weights and timed in alternating windows:
    seconds per window, FLOPs per step and, with `kernels`, seconds per step in
    convolution and matrix-product kernels (one more window each, after the timed ones),
    by loop name."""
    loops: dict[str, LoopProcess] = {}
    try:
        for name in names:
            loops[name] = LoopProcess(name, preset, data_dir, threads, limit)
        for name in names:
            if loops[name].weights != loops["reference"].weights:
                raise SystemExit(f"{preset}: {name} and the reference start from other weights")
        seconds: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(settings.repeats):
            for name, loop in loops.items():
                seconds[name].append(loop.window(settings.warmup, settings.steps))
        in_kernels = (
            {name: loop.in_kernels(settings.warmup, settings.steps) for name, loop in loops.items()}
            if kernels
            else {}
        )
    finally:
        for loop in loops.values():
            loop.close()
    return seconds, {name: loop.flops for name, loop in loops.items()}, in_kernels


def bench_preset(
    preset: str, settings: Settings, data_dir: Path, threads: int, tmp: Path, bf16: bool
) -> dict[str, Any]:
    config = load_config(preset)
    names = [name for name in LOOPS if bf16 or name != "gancli-bf16"]
    seconds, all_flops, in_kernels = time_windows(
        preset, names, settings, data_dir, threads, kernels=True
    )
    images_per_step = config.training.batch_size * config.objective.n_critic
    flops = {name: all_flops[name] for name in ("gancli", "reference")}
    rates = {
        name: [images_per_step * settings.steps / s for s in values]
        for name, values in seconds.items()
    }
    median = {name: statistics.median(values) for name, values in rates.items()}
    per_image = {name: count / images_per_step for name, count in flops.items()}
    achieved = median["gancli"] * per_image["gancli"] / 1e9
    rss = peak_rss(preset, data_dir, threads, settings.rss_log_every, tmp / f"rss-{preset}")
    return {
        "preset": preset,
        "dataset": config.data.dataset,
        "arch": config.model.arch,
        "conditional": config.model.conditional,
        "loss": config.objective.loss,
        "n_critic": config.objective.n_critic,
        "batch_size": config.training.batch_size,
        "optimizer": config.optim.name,
        "images_per_step": images_per_step,
        "steps_per_window": settings.steps,
        "warmup_steps": settings.warmup,
        "seconds": seconds,
        "images_per_second": rates,
        "median_images_per_second": median,
        "ratio": median["gancli"] / median["reference"],
        "ratio_bf16": median["gancli-bf16"] / median["reference"] if bf16 else None,
        "paired_ratios": [g / r for g, r in zip(rates["gancli"], rates["reference"], strict=True)],
        "flops_per_step": flops,
        "mflop_per_image": {name: value / 1e6 for name, value in per_image.items()},
        "achieved_gflops": achieved,
        "achieved_gflops_reference": median["reference"] * per_image["reference"] / 1e9,
        "kernel_seconds_per_step": in_kernels,
        # The ratio gancli would reach if nothing but its convolution and matrix-product
        # kernels took time: the reference's step over those kernels' seconds per step.
        "kernel_bound": images_per_step / median["reference"] / in_kernels["gancli"],
        "peak_rss": rss,
    }


# --------------------------------------------------------------------------- report


def _rate(values: list[float], median: float) -> str:
    return f"{median:,.0f} [{min(values):,.0f}-{max(values):,.0f}]"


def render(report: dict[str, Any]) -> str:
    lines = [*_method_lines(report), *_table_lines(report)]
    if report["bf16"]:
        lines += _bf16_lines(report)
    return "\n".join([*lines, *_target_lines(report), ""])


def _method_lines(report: dict[str, Any]) -> list[str]:
    m, start, end = report["machine"], report["peak_at_start"], report["peak_at_end"]
    quick = " (--quick: a smoke run, not a measurement)" if report["quick"] else ""
    return [
        f"# Training throughput ({m['date']})",
        "",
        f"- machine: {m['cpu']}, {m['logical_cpus']} logical CPUs "
        f"({m['cores_per_socket']} cores per socket), Python {m['python']}, "
        f"torch {m['torch']}, {report['threads']} threads",
        f"- load average at start: {', '.join(f'{x:.2f}' for x in m['load_average_at_start'])};"
        f" at end: {', '.join(f'{x:.2f}' for x in report['load_average_at_end'])}",
        f"- fp32 matmul peak: {report['peak_gflops']:.1f} GFLOP/s, the best of "
        f"{PEAK_REPEATS} {start['side']}x{start['side']} torch.mm at the start "
        f"({start['gflops']:.1f}) and at the end ({end['gflops']:.1f})",
        f"- per preset: {report['repeats']} windows per loop, alternating, of "
        f"{report['steps']} G steps after {report['warmup']} warm-up steps; whole run "
        f"{report['seconds']:.0f} s{quick}",
        "- each loop in a process of its own, one computing at a time",
        "- gancli: TrainState.step with an epoch's per-step bookkeeping, in a process set "
        "up as `gancli train` sets up its own (threads, reuse of freed memory) and with "
        "denormals flushed, as in Trainer.fit; epoch-end grids, checkpoints and plots left out",
        "- reference: the same G and D (same init) trained as PyTorch tutorials do: PIL "
        "Dataset + ToTensor/Normalize, DataLoader, default Adam/RMSprop, separate real and "
        "fake D passes, a new G forward for the G step",
        "- images = real images D consumes per G step (batch_size x n_critic) x G steps; "
        "img/s as median [min-max]; ratio = gancli median / reference median",
        "- MFLOP/img: matmul and convolution FLOPs (forward + backward) of one step, per "
        "image; GFLOP/s and % of peak are gancli's",
        "- peak RSS: ru_maxrss of `gancli train --preset P --epochs 1` on the full dataset, "
        "stopped by SIGINT (finish the step, write a checkpoint) after its first "
        "metrics line; a full epoch per preset would not fit the run's time budget, so the "
        "epoch-end grid and loss plot are not in it",
        "",
        "- reference % of peak: the reference's own GFLOP/s over the peak; fp32 bound: the "
        "ratio a loop doing gancli's FLOPs per image would reach at 100% of the peak",
        "- kernels ms/step: seconds per step inside convolution and matrix-product ATen ops "
        f"({', '.join(sorted(KERNELS))}; each timed on its own by a dispatch mode, over one "
        "more window per loop after the timed ones); kernel bound: the reference's step "
        "time over gancli's kernel time, the ratio gancli would reach if everything but "
        "those kernels, as this machine runs them, took no time",
        "",
    ]


def _table_lines(report: dict[str, Any]) -> list[str]:
    lines = [
        "| preset | gancli img/s | reference img/s | ratio | fp32 bound | kernels ms/step "
        "gancli | kernels ms/step reference | kernel bound | MFLOP/img gancli | "
        "MFLOP/img reference | GFLOP/s | % of peak | reference % of peak | peak RSS MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["presets"]:
        rates, median, mflop = (
            r["images_per_second"],
            r["median_images_per_second"],
            r["mflop_per_image"],
        )
        kernels = r["kernel_seconds_per_step"]
        lines.append(
            f"| {r['preset']} | {_rate(rates['gancli'], median['gancli'])} | "
            f"{_rate(rates['reference'], median['reference'])} | {r['ratio']:.2f}x | "
            f"{r['fp32_ratio_bound']:.2f}x | {1e3 * kernels['gancli']:.1f} | "
            f"{1e3 * kernels['reference']:.1f} | {r['kernel_bound']:.2f}x | "
            f"{mflop['gancli']:.1f} | {mflop['reference']:.1f} | "
            f"{r['achieved_gflops']:.1f} | {100 * r['peak_share']:.1f}% | "
            f"{100 * r['reference_peak_share']:.1f}% | {r['peak_rss']['mb']:.0f} |"
        )
    return lines


def _bf16_lines(report: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "gancli with `--precision bf16` (autocast; this CPU has bf16 units), against the "
        "same fp32 reference, in the same alternation:",
        "",
        "| preset | gancli bf16 img/s | ratio to reference | over gancli fp32 |",
        "| --- | --- | --- | --- |",
    ]
    for r in report["presets"]:
        rates, median = r["images_per_second"], r["median_images_per_second"]
        lines.append(
            f"| {r['preset']} | {_rate(rates['gancli-bf16'], median['gancli-bf16'])} | "
            f"{r['ratio_bf16']:.2f}x | {median['gancli-bf16'] / median['gancli']:.2f}x |"
        )
    return lines


def _target_lines(report: dict[str, Any]) -> list[str]:
    lines = ["", "Targets:", ""]
    for r in report["presets"]:
        why = ""
        if r["ratio"] < TARGET_RATIO and r["fp32_ratio_bound"] < TARGET_RATIO:
            why = f" (out of reach in fp32: bound {r['fp32_ratio_bound']:.2f}x)"
        elif r["ratio"] < TARGET_RATIO and r["kernel_bound"] < TARGET_RATIO:
            why = f" (out of reach with these kernels: bound {r['kernel_bound']:.2f}x)"
        if r["ratio_bf16"] is not None:
            bf16_ok = harness.verdict(r["ratio_bf16"] >= TARGET_RATIO)
            why += f"; with bf16 {r['ratio_bf16']:.2f}x {bf16_ok}"
        lines.append(
            f"- {r['preset']}: ratio {r['ratio']:.2f}x >= {TARGET_RATIO:.1f}x "
            f"{harness.verdict(r['ratio'] >= TARGET_RATIO)}{why}; peak RSS "
            f"{r['peak_rss']['mb']:.0f} MB <= {TARGET_RSS_MB:.0f} MB "
            f"{harness.verdict(r['peak_rss']['mb'] <= TARGET_RSS_MB)}"
        )
        if r["preset"] == PEAK_PRESET:
            lines.append(
                f"- {r['preset']}: {100 * r['peak_share']:.1f}% of fp32 peak >= "
                f"{100 * TARGET_PEAK_SHARE:.0f}% "
                f"{harness.verdict(r['peak_share'] >= TARGET_PEAK_SHARE)}"
            )
    return lines


def _arguments() -> tuple[argparse.Namespace, Settings, list[str], Path, Path]:
    """The command line: its arguments, the window settings, the presets, the data root
    and the report's path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", help="comma-separated preset names (default: all)")
    parser.add_argument("--steps", type=int, help=f"timed G steps per window ({FULL.steps})")
    parser.add_argument("--repeats", type=int, help=f"timed windows per loop ({FULL.repeats})")
    parser.add_argument("--warmup", type=int, help=f"G steps before each window ({FULL.warmup})")
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(),
        help="torch threads (default: torch's, which gancli keeps: the physical cores)",
    )  # fmt: skip
    parser.add_argument("--data-dir", type=Path, help="data root (default: ../shared/data)")
    parser.add_argument("--quick", action="store_true", help="smoke run, under a minute")
    parser.add_argument(
        "--bf16", action=argparse.BooleanOptionalAction, default=fast_on_cpu("bf16"),
        help="also time gancli with --precision bf16 (default: if this CPU has bf16 units)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, help="Markdown report; the JSON goes beside it")
    args = parser.parse_args()
    base = QUICK if args.quick else FULL
    settings = Settings(
        steps=args.steps or base.steps,
        repeats=args.repeats or base.repeats,
        warmup=base.warmup if args.warmup is None else args.warmup,
        rss_log_every=base.rss_log_every,
    )
    default_out = Path(tempfile.gettempdir()) if args.quick else RESULTS
    out = args.out or default_out / "throughput.md"
    data_dir = harness.data_dir(args)
    os.environ.setdefault("GANCLI_NO_DOWNLOAD", "1")
    presets = args.presets or (QUICK_PRESETS if args.quick else ",".join(list_presets()))
    names = [p.strip() for p in presets.split(",") if p.strip()]
    for name in names:  # fail now, not after minutes of measuring
        try:
            load_config(name)
        except ConfigError as exc:
            parser.error(str(exc))
    return args, settings, names, data_dir, out


def main() -> None:
    args, settings, names, data_dir, out = _arguments()
    # SIGTERM as an exception, so that a stopped benchmark stops its gancli train child too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, data {data_dir}")
    started = time.perf_counter()
    report: dict[str, Any] = {
        "machine": harness.machine(),
        "threads": torch.get_num_threads(),
        "quick": args.quick,
        "bf16": args.bf16,
        "steps": settings.steps,
        "repeats": settings.repeats,
        "warmup": settings.warmup,
        "peak_at_start": matmul_peak(PEAK_MATMUL_SIDE, PEAK_REPEATS),
        "presets": [],
    }
    print(f"fp32 matmul peak: {report['peak_at_start']['gflops']:.1f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            result = bench_preset(name, settings, data_dir, args.threads, Path(tmp), args.bf16)
            report["presets"].append(result)
            median = result["median_images_per_second"]
            print(
                f"{name}: gancli {median['gancli']:,.0f} img/s, reference "
                f"{median['reference']:,.0f} img/s ({result['ratio']:.2f}x), peak RSS "
                f"{result['peak_rss']['mb']:.0f} MB [{time.perf_counter() - started:.0f} s]",
                flush=True,
            )
    _add_peak_shares(report)
    report["seconds"] = time.perf_counter() - started
    report["load_average_at_end"] = os.getloadavg()
    text = render(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    print(text)
    print(f"written: {out} and {out.with_suffix('.json')}")


def _add_peak_shares(report: dict[str, Any]) -> None:
    """The fp32 peak at the end, and each preset's share of the better of the two peaks."""
    report["peak_at_end"] = matmul_peak(PEAK_MATMUL_SIDE, PEAK_REPEATS)
    # Other load on the machine can only make the peak look lower: take the best.
    report["peak_gflops"] = max(report["peak_at_start"]["gflops"], report["peak_at_end"]["gflops"])
    for result in report["presets"]:
        result["peak_share"] = result["achieved_gflops"] / report["peak_gflops"]
        # The most any fp32 loop doing gancli's FLOPs per image could reach at 100% of the
        # peak, over the reference: where it is below the target, no fp32 loop meets it.
        best_rate = report["peak_gflops"] * 1e3 / result["mflop_per_image"]["gancli"]
        result["fp32_ratio_bound"] = best_rate / result["median_images_per_second"]["reference"]
        result["reference_peak_share"] = result["achieved_gflops_reference"] / report["peak_gflops"]


if __name__ == "__main__":
    main()
