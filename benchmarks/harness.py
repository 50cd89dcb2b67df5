"""Usage: from harness import parser, run_command, alternate, table, write_report

What every benchmark here shares: the command line (--threads, --data-dir, --quick,
--out), timing a command in a fresh process, alternating variants so that drift in the
machine's load hits all alike, the machine's description, Markdown tables, and writing
results/<name>.md beside results/<name>.json. Each benchmark is a script on top of it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
T = TypeVar("T")


def parser(doc: str, threads: int | None = None) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark takes; `doc` is the script's
    docstring, whose first line is its usage."""
    from gancli.engine.runtime import default_threads

    parsed = argparse.ArgumentParser(description=doc.splitlines()[0])
    parsed.add_argument(
        "--threads", type=int, default=threads or default_threads(),
        help="torch threads of every process (default: the physical cores)",
    )  # fmt: skip
    parsed.add_argument("--data-dir", type=Path, help="data root (default: ../shared/data)")
    parsed.add_argument("--quick", action="store_true", help="a smoke run, into the temp folder")
    parsed.add_argument("--out", type=Path, help="Markdown report; the JSON goes beside it")
    return parsed


def data_dir(args: argparse.Namespace) -> Path:
    """--data-dir, else $GANCLI_DATA_DIR, else ../shared/data beside the repository."""
    chosen = args.data_dir or os.environ.get("GANCLI_DATA_DIR") or ROOT.parent / "shared" / "data"
    return Path(chosen).resolve()


def out_path(args: argparse.Namespace, name: str) -> Path:
    """Where the Markdown report goes: --out, or results/<name>.md (the temp folder for
    --quick, so that a smoke run never replaces a measurement)."""
    if args.out:
        return Path(args.out)
    return (Path(tempfile.gettempdir()) if args.quick else RESULTS) / f"{name}.md"


def run_command(
    command: Sequence[str], logs: Path, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run `command` to its end in a fresh process from the repository root: its wall and
    CPU seconds (os.wait4 gives this child's own rusage) and its stdout. A failure stops
    the benchmark with the command's last lines of stderr."""
    environment = {**os.environ, **(env or {})}
    with open(logs.with_suffix(".out"), "w") as out, open(logs.with_suffix(".err"), "w") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err, env=environment)
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:  # stopped: take the child down too
            process.kill()
            process.wait()
            raise
        wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        errors = logs.with_suffix(".err").read_text().strip().splitlines()[-20:]
        raise SystemExit(f"`{' '.join(command[1:])}` exited {code}:\n" + "\n".join(errors))
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "user": usage.ru_utime,
        "system": usage.ru_stime,
        "stdout": logs.with_suffix(".out").read_text(),
    }


def gancli(*arguments: str) -> list[str]:
    """The command line of `gancli ARGUMENTS` in this interpreter."""
    return [sys.executable, "-m", "gancli", *arguments]


def alternate(variants: dict[str, Callable[[], T]], rounds: int) -> dict[str, list[T]]:
    """Each variant once per round, in turn (a, b, a, b, ...), so that a change in the
    machine's load over the benchmark hits every variant alike."""
    results: dict[str, list[T]] = {name: [] for name in variants}
    for round_ in range(rounds):
        for name, run in variants.items():
            print(f"round {round_ + 1}/{rounds}: {name}", flush=True)
            results[name].append(run())
    return results


def verdict(ok: bool) -> str:
    """How a target reads in every report: PASS or MISS."""
    return "PASS" if ok else "MISS"


def median_range(values: Sequence[float], digits: int = 1) -> str:
    """'median [min-max]', the way every table here shows repeated figures."""
    fmt = f"{{:,.{digits}f}}"
    middle = fmt.format(statistics.median(values))
    if len(values) == 1:
        return middle
    return f"{middle} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A Markdown table's lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def machine() -> dict[str, Any]:
    """The CPU, its bf16 units, Python, PyTorch, the date and the load."""
    import torch

    fields: dict[str, str] = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = fields.get("flags", "").split()
    return {
        "cpu": fields.get("model name", platform.processor() or "unknown"),
        "logical_cpus": os.cpu_count(),
        "cores_per_socket": fields.get("cpu cores", "?"),
        "bf16_units": any(f in flags for f in ("avx512_bf16", "amx_bf16")),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_average_at_start": os.getloadavg(),
    }


def machine_line(info: dict[str, Any]) -> str:
    bf16 = "with" if info.get("bf16_units") else "without"
    return (
        f"Measured {info['date']} on {info['cpu']} ({info['logical_cpus']} logical CPUs, "
        f"{bf16} bf16 units), Python {info['python']}, PyTorch {info['torch']}."
    )


def write_report(out: Path, text: str, data: dict[str, Any]) -> None:
    """The Markdown report at `out` and its figures as JSON beside it; both printed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    print(text)
    print(f"written: {out} and {out.with_suffix('.json')}")
