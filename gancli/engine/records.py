"""Usage: records = MetricsLog(run / "metrics.jsonl").read(); evals = read_evaluations(path)

The two record files of a run directory: metrics.jsonl, which the training loop appends to,
and eval.json, the list `gancli evaluate` adds to. Both are read by other commands (inspect,
the loss plot, resume), so reading checks every record against what gancli writes: a file
damaged by hand or by another program stops the command with one line naming the line or
record, instead of a traceback wherever a field turns out to be missing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gancli.engine.errors import CheckpointError
from gancli.engine.files import atomic_write

LOSS_KEYS = ("loss_d", "loss_g", "d_real", "d_fake")  # state.STATS: every step and epoch record
_NUMBERS = (*LOSS_KEYS, "images_per_second", "wall", "fid", "accuracy")


class MetricsLog:
    """A run's metrics.jsonl: one JSON record per line, each with a `kind` (step, epoch,
    eval, warning, and segment: what each process trained with), the 1-based `epoch` it
    belongs to and the G `step` it was written at.
    The training loop appends; inspect, the plots and resume read."""

    def __init__(self, path: Path):
        self.path = path

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def read(self) -> list[dict[str, Any]]:
        """Every record; a torn last line (a killed write) is left out. Any other line that
        is not a sound record (junk, binary, the wrong shape) is a CheckpointError naming it:
        the plots, inspect and resume read these records without further checks."""
        if not self.path.is_file():
            return []
        try:
            lines = self.path.read_bytes().split(b"\n")
        except OSError as exc:
            raise CheckpointError(f"cannot read {self.path}: {exc.strerror}") from None
        records = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):  # JSON errors, undecodable bytes, deep nesting
                if number == len(lines):  # no newline after it: a write killed halfway
                    continue
                problem: str | None = "not JSON"
            else:
                problem = _record_problem(record)
            if problem:
                raise CheckpointError(
                    f"{self.path} line {number} is damaged ({problem}); delete that line "
                    "(or the file) and try again"
                )
            records.append(record)
        return records

    def keep_until(self, step: int) -> None:
        """Drop the records written after G step `step` (a resumed run writes them again)."""
        keep = [r for r in self.read() if r.get("step", 0) <= step]
        with atomic_write(self.path) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))


def _record_problem(record: Any) -> str | None:
    """What makes one metrics.jsonl record unusable, or None if it is sound."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not a record"
    if not isinstance(record.get("kind"), str):
        return "no 'kind'"
    for key in ("epoch", "step", *(("coverage",) if record["kind"] == "eval" else ())):
        value = record.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"'{key}' is {json.dumps(value)[:40]}, not a count"
    needed = {"step": LOSS_KEYS, "epoch": LOSS_KEYS, "eval": ("fid",)}.get(record["kind"], ())
    missing = [key for key in needed if key not in record]
    if missing:
        return f"a {record['kind']} record without {', '.join(missing)}"
    return _number_problem(record, _NUMBERS, required=False)


def read_evaluations(path: Path) -> list[dict[str, Any]]:
    """The records of a run's eval.json, a JSON list with one per `gancli evaluate`;
    CheckpointError naming the file when it holds anything else."""
    if not path.is_file():
        return []
    advice = "move it aside (gancli evaluate keeps it as eval.json.unreadable)"
    try:
        loaded = json.loads(path.read_bytes())
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror}") from None
    except (ValueError, RecursionError):
        raise CheckpointError(f"{path} is damaged (not JSON); {advice}") from None
    records = loaded if isinstance(loaded, list) else [loaded]
    for number, record in enumerate(records, 1):
        problem = _evaluation_problem(record)
        if problem:
            raise CheckpointError(f"{path} is damaged (record {number}: {problem}); {advice}")
    return records


def _evaluation_problem(record: Any) -> str | None:
    """What makes one eval.json record unusable, or None if inspect can show it."""
    if not isinstance(record, dict) or not isinstance(record.get("model"), dict):
        return "no model figures"
    if not isinstance(record.get("class_names"), list):
        return "no class names"
    floor = record.get("floor")
    if floor is not None and not isinstance(floor, dict):
        return "floor figures that are not a record"
    model = record["model"]
    return (
        _number_problem(record, ("epoch", "n"), required=True)
        or _number_problem(model, ("fid", "coverage"), required=True)
        or _number_problem(floor or {}, ("fid",), required=floor is not None)
        or _number_problem(model, ("precision", "recall", "accuracy"), required=False)
    )


def _number_problem(values: dict[str, Any], keys: tuple[str, ...], required: bool) -> str | None:
    """Which of `keys` is not a number (or, unless `required`, null or absent)."""
    for key in keys:
        value = values.get(key)
        if value is None and not required:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"'{key}' is {json.dumps(value)[:40]}, not a number"
    return None


EVALUATION_FIGURES = {
    "fid": "FID",
    "kid": "KID x 1000",
    "inception_score": "IS (class score)",
    "precision": "precision",
    "recall": "recall",
    "coverage": "classes covered",
    "confident": "read clearly (p >= 0.9)",
    "accuracy": "class accuracy",
}


def evaluation_rows(
    model: Mapping[str, Any], floor: Mapping[str, Any] | None, classes: int
) -> list[tuple[str, str, str]]:
    """(figure, model, real floor) rows, as `gancli evaluate` prints them, from the figures
    of an eval.json record (or of an evaluation just made); '-' where one was not measured,
    '?' where a hand-edited record holds something other than a number."""

    def number(scores: Mapping[str, Any], key: str) -> float:
        value = scores.get(key) or 0
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0

    def cell(scores: Mapping[str, Any] | None, key: str) -> str:
        value = scores.get(key) if scores is not None else None
        if value is None or scores is None:
            return "-"
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return "?"
        if key == "kid":
            return f"{1000 * value:.2f} ± {1000 * number(scores, 'kid_std'):.2f}"
        if key == "inception_score":
            return f"{value:.2f} ± {number(scores, 'inception_score_std'):.2f}"
        if key == "coverage":
            return f"{value}/{classes}"
        if key in ("precision", "recall", "confident", "accuracy"):
            return f"{100 * value:.1f}%"
        return f"{value:.3f}"

    return [
        (label, cell(model, key), cell(floor, key)) for key, label in EVALUATION_FIGURES.items()
    ]
