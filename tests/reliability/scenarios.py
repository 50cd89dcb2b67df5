"""Reliability scenarios shared by tests/reliability and benchmarks/reliability.py.

The tests run a few of each; the benchmark runs the long versions and reports figures.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from helpers import differing

from gancli.engine.checkpoint import load_checkpoint
from gancli.engine.errors import CheckpointError
from gancli.engine.runs import RunDir

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "bad_inputs.jsonl"

# A tiny, fast run with many checkpoint writes: 10 G steps and a 36 MB checkpoint per epoch.
KILL_RUN = ["--preset", "gan-mnist", "--limit", "640", "--batch-size", "64", "--epochs", "12"]


def gancli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gancli", *args], capture_output=True, text=True, timeout=timeout
    )


def train_to_end(out: Path, data_dir: Path) -> RunDir:
    done = gancli(
        "train", *KILL_RUN, "--out", str(out), "--name", "k", "--quiet", "--data-dir", str(data_dir)
    )
    assert done.returncode == 0, done.stderr
    return RunDir(out / "k-001")


@dataclass
class KillResult:
    delay: float
    had_checkpoint: bool  # the kill came after the first checkpoint was written
    killed: bool  # the process was still training when the signal came
    mid_write: bool  # a half-written temporary checkpoint was left behind
    survived: bool  # a valid checkpoint could be found (or none had been written yet)
    resumed: bool  # `--resume` ran to the end
    bitwise_equal: bool  # ... and matched the uninterrupted run exactly


def kill_and_resume(out: Path, data_dir: Path, delay: float, reference: RunDir) -> KillResult:
    """Start a run, SIGKILL it `delay` s after its first checkpoint, resume, compare.

    Timing from the first checkpoint (not from the start) keeps the scenario the same on
    a fast or a loaded machine; epochs 2-12 of the run still offer a kill point per
    training step and per checkpoint write.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "gancli", "train", *KILL_RUN, "--out", str(out), "--name", "k",
         "--quiet", "--data-dir", str(data_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    run = RunDir(out / "k-001")
    deadline = time.monotonic() + 120
    while not run.last_checkpoint.exists() and proc.poll() is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    time.sleep(delay)
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    files = [p for p in run.checkpoint_files() if p.is_file()] if run.path.is_dir() else []
    mid_write = run.checkpoints.is_dir() and any(run.checkpoints.glob(".*.tmp-*"))
    if not files:
        return KillResult(delay, False, killed, mid_write, True, False, False)
    try:
        run.newest_checkpoint()
    except CheckpointError:
        return KillResult(delay, True, killed, mid_write, False, False, False)
    resumed = gancli("train", "--resume", str(run.path), "--quiet")
    if resumed.returncode != 0:
        return KillResult(delay, True, killed, mid_write, True, False, False)
    equal = same_weights(reference.last_checkpoint, run.last_checkpoint)
    return KillResult(delay, True, killed, mid_write, True, True, equal)


def same_weights(a: Path, b: Path) -> bool:
    return not differing(load_checkpoint(a), load_checkpoint(b))


# --------------------------------------------------------------------------- corrupt files


def mutants(data: bytes, count: int, seed: int = 0) -> list[tuple[str, bytes]]:
    """Damaged copies of a checkpoint file: empty, truncated, bit-flipped, overwritten."""
    rng = random.Random(seed)
    fixed = [
        ("empty", b""),
        ("zeros", bytes(len(data))),
        ("random bytes", rng.randbytes(len(data))),
        ("text", b'{"generator": "not really"}'),
    ]
    made: list[tuple[str, bytes]] = list(fixed)
    kinds = ["truncated", "bit flip", "overwritten block"]
    while len(made) < count:
        kind = kinds[len(made) % len(kinds)]
        if kind == "truncated":
            cut = rng.randrange(1, len(data))
            made.append((f"truncated at {cut}", data[:cut]))
        elif kind == "bit flip":
            pos = rng.randrange(len(data) // 20, len(data))  # past the first records' headers
            flipped = bytearray(data)
            flipped[pos] ^= 1 << rng.randrange(8)
            made.append((f"bit flip at {pos}", bytes(flipped)))
        else:
            pos = rng.randrange(len(data) - 64)
            block = bytearray(data)
            block[pos : pos + 64] = rng.randbytes(64)
            made.append((f"64 random bytes at {pos}", bytes(block)))
    return made[:count]


MARKER = "gancli-pwned"


class _Payload:
    """Pickles as a call that would create MARKER in the working directory."""

    def __init__(self, how: str):
        self.how = how

    def __reduce__(self) -> tuple[Any, ...]:
        target = os.path.join(os.getcwd(), MARKER)
        calls = {
            "os.system": (os.system, (f"touch {target}",)),
            "subprocess": (subprocess.call, (["touch", target],)),
            "exec": (exec, (f"open({target!r}, 'w').close()",)),
            "eval": (eval, (f"open({target!r}, 'w').close()",)),
            "pathlib": (Path.touch, (Path(target),)),
        }
        return calls[self.how]


MALICIOUS_KINDS = ("os.system", "subprocess", "exec", "eval", "pathlib")


def write_malicious(path: Path, how: str, cwd: Path) -> None:
    """A file that claims to be a gancli checkpoint and runs code if unpickled unsafely."""
    here = os.getcwd()
    os.chdir(cwd)
    try:
        torch.save(
            {"format": "gancli-checkpoint", "version": 1, "config": {}, "payload": _Payload(how)},
            path,
        )
    finally:
        os.chdir(here)


# --------------------------------------------------------------------------- bad inputs


def corpus() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]


def corpus_args(entry: dict[str, Any], workdir: Path) -> list[str]:
    """The `gancli train` arguments that feed one corpus entry of kind set, preset or flags
    to the CLI (entries of kind command: hostile.prepare_command)."""
    if entry["kind"] == "set":
        return ["--preset", "dcgan-mnist", "--set", expanded(entry["value"], entry), "--dry-run"]
    if entry["kind"] == "flags":
        return [expanded(arg, entry) for arg in entry["args"]]
    path = workdir / f"bad-{entry['id']}.yaml"
    if "b64" in entry:
        path.write_bytes(base64.b64decode(entry["b64"]))
    else:
        path.write_text(expanded(entry["text"], entry))
    return ["--preset", str(path), "--dry-run"]


def expanded(text: str, entry: dict[str, Any]) -> str:
    """`text` with the entry's `expand` placeholders repeated out (keeps the file small)."""
    for placeholder, (chunk, times) in entry.get("expand", {}).items():
        text = text.replace(placeholder, chunk * times)
    return text


def clean_failure(code: int, output: str, expect: str) -> bool:
    """Exit 2, one line starting with 'error:' that names the problem, no traceback."""
    lines = [line for line in output.splitlines() if line.strip()]
    return (
        code == 2
        and "Traceback" not in output
        and len(lines) == 1
        and lines[0].startswith("error: ")
        and expect in lines[0]
    )
