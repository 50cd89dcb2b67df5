"""The benchmarks' shared harness, and the GPU check's CPU smoke run (so that the script
a lent GPU runs in a hurry does not rot between visits)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import harness  # noqa: E402


def test_harness_tables_and_alternation() -> None:
    assert harness.table(["a", "b"], [[1, "x"]]) == ["| a | b |", "|---|---|", "| 1 | x |"]
    assert harness.median_range([3.0, 1.0, 2.0]) == "2.0 [1.0-3.0]"
    assert harness.median_range([5.0]) == "5.0"
    order: list[str] = []
    runs = harness.alternate({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, 2)
    assert order == ["a", "b", "a", "b"] and list(runs) == ["a", "b"]


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_cpu_part(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "gpu.md"
    command = [
        sys.executable, str(BENCHMARKS / "gpu_check.py"), "--device", "cpu", "--smoke",
        "--data-dir", str(data_dir), "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    trained = {r["name"].split()[0] for r in rows if r["part"] == "train"}
    assert trained == {p.stem for p in (BENCHMARKS.parent / "presets").glob("*.yaml")}
    assert {r["part"] for r in rows} == {"train", "torchrun", "resume", "commands"}
    assert all(r["ok"] for r in rows)
    assert all(r["fid"] > 0 and r["images_per_second"] > 0 for r in rows if r["part"] == "train")
    assert "checks passed" in out.read_text()
