"""Usage: python benchmarks/reliability.py [--kills 20] [--mutants 30] [--seed 0]

The long versions of tests/reliability, run against the real command line, with the
figures written to benchmarks/results/reliability.md:

- kills: start a small training run, SIGKILL it at a random moment (checkpoint writes
  included), check that a valid checkpoint survives, resume, and compare the final
  weights bitwise with an uninterrupted run;
- corrupt files: damaged copies of a real checkpoint, each given to `gancli inspect`;
- malicious pickles: five kinds of code-running checkpoint through sample, animate,
  inspect, evaluate and --resume, counting whether any code ran;
- bad inputs: every config, override and flag entry of tests/reliability/bad_inputs.jsonl
  through `gancli train`;
- families (issues 15 and 25): every corpus entry that names a family (any command, against a
  damaged copy of a tiny run), and the scenarios of tests/reliability/hostile.py (pipes,
  closed and full streams, signals, read-only and full file systems, racing commands),
  reported per family as cases tried and cases clean.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from gancli.engine.runs import RunDir

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "reliability")]

import hostile  # noqa: E402
from scenarios import (  # noqa: E402
    MALICIOUS_KINDS,
    MARKER,
    clean_failure,
    corpus,
    corpus_args,
    gancli,
    kill_and_resume,
    mutants,
    train_to_end,
    write_malicious,
)


def kill_figures(
    tmp: Path, data_dir: Path, kills: int, rng: random.Random
) -> tuple[list[str], RunDir]:
    """Kill -9 a run at random moments, resume it, and compare with an uninterrupted one;
    the figures and the uninterrupted run."""
    started = time.perf_counter()
    reference = train_to_end(tmp / "reference", data_dir)
    span = time.perf_counter() - started
    print(f"reference run: {span:.1f} s")
    results = []
    for i in range(kills):
        # Somewhere in the rest of the run, counted from its first checkpoint.
        delay = rng.uniform(0.0, span * 0.5)
        result = kill_and_resume(tmp / f"kill-{i:02d}", data_dir, delay, reference)
        results.append(result)
        print(f"kill {i + 1:2d} after {delay:4.1f} s: {result}")
    with_ckpt = [k for k in results if k.had_checkpoint]
    lines = [
        f"- kills that landed while the run was still training: "
        f"{sum(k.killed for k in results)}/{len(results)}",
        f"- kills survived (a valid checkpoint left): "
        f"{sum(k.survived for k in results)}/{len(results)}",
        f"- resumes bitwise equal to the uninterrupted run: "
        f"{sum(k.bitwise_equal for k in with_ckpt)}/{len(with_ckpt)} "
        f"({len(results) - len(with_ckpt)} kills came before the first checkpoint)",
        f"- kills that left a half-written checkpoint behind (caught mid-write): "
        f"{sum(k.mid_write for k in results)}",
    ]
    return lines, reference


def mutant_figure(tmp: Path, good: bytes, count: int, seed: int) -> str:
    """Damaged copies of a good checkpoint, each given to `gancli inspect`."""
    refused = 0
    for name, data in mutants(good, count, seed=seed):
        path = tmp / "mutant.pt"
        path.write_bytes(data)
        result = gancli("inspect", str(path))
        ok = clean_failure(result.returncode, result.stdout + result.stderr, "")
        refused += ok
        print(f"mutant {name}: {'refused' if ok else 'NOT REFUSED'}")
    return f"- corrupt checkpoints refused with one line, exit 2: {refused}/{count}"


def malicious_figure(tmp: Path) -> str:
    """Checkpoints that run code when unpickled, given to every command that reads one."""
    executed = 0
    for how in MALICIOUS_KINDS:
        work = tmp / f"evil-{how}"
        run = work / "run"
        (run / "checkpoints").mkdir(parents=True)
        evil = run / "checkpoints" / "last.pt"
        write_malicious(evil, how, work)
        for command in (
            ["sample", str(evil)],
            ["animate", str(run), "--interpolate"],
            ["inspect", str(run)],
            ["evaluate", str(run)],
            ["train", "--resume", str(run)],
        ):
            os.chdir(work)
            gancli(*command)
        executed += (work / MARKER).exists()
    os.chdir(ROOT)
    return (
        f"- malicious checkpoints that ran code: {executed}/{len(MALICIOUS_KINDS)} "
        "(each tried through sample, animate, inspect, evaluate and --resume)"
    )


def bad_input_figure(tmp: Path) -> str:
    """The corpus of bad flags and configs, two commands at a time."""
    entries = [e for e in corpus() if e["kind"] != "command"]

    def check(entry: dict) -> bool:
        result = gancli("train", *corpus_args(entry, tmp))
        return clean_failure(result.returncode, result.stdout + result.stderr, entry["expect"])

    with ThreadPoolExecutor(max_workers=2) as pool:
        clean = list(pool.map(check, entries))
    return f"- bad inputs with a one-line error and exit 2: {sum(clean)}/{len(entries)}"


def corpus_outcomes(tmp: Path, tiny: Path) -> list[hostile.Outcome]:
    """Every corpus entry that names a family, through the real command line."""

    def check(entry: dict) -> hostile.Outcome:
        work = tmp / f"entry-{entry['id']}"
        work.mkdir(parents=True)
        if entry["kind"] != "command":
            result = gancli("train", *corpus_args(entry, work))
            ok = clean_failure(result.returncode, result.stdout + result.stderr, entry["expect"])
            return hostile.Outcome(entry["family"], entry["id"], "" if ok else result.stderr[-200:])
        args = hostile.prepare_command(entry, work, tiny)
        before = hostile.snapshot(work)
        result = gancli(*args)
        changed = hostile.changed_paths(before, hostile.snapshot(work))
        output = result.stdout + result.stderr
        problem = hostile.command_clean(entry, result.returncode, output, changed, work)
        return hostile.Outcome(entry["family"], entry["id"], problem)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(check, [e for e in corpus() if "family" in e]))


def scenarios(tmp: Path, tiny: Path, data_dir: Path) -> list[tuple[int, str, Any]]:
    """(family, name, a call giving '' when clean, the problem, or None where the scenario
    cannot be set up here), each scenario in a folder of its own."""

    def case(family: int, name: str, scenario: Any, *args: Any) -> tuple[int, str, Any]:
        folder = tmp / f"{len(cases):03d}"

        def run() -> str | None:
            folder.mkdir(parents=True)
            return scenario(folder, *args)

        return family, name, run

    cases: list[tuple[int, str, Any]] = []
    for family, name, scenario, *args in [
        (1, "resume while training", hostile.resume_while_training, data_dir),
        (2, "two samples to one .npz", hostile.concurrent_npz, tiny),
        (4, "full disk in torch.save", hostile.disk_full_training, data_dir),
        (5, "train | head -1", hostile.train_piped_to_head, data_dir),
        (5, "train on a terminal", hostile.train_on_a_terminal, data_dir),
        (7, "SIGHUP mid-epoch", hostile.sighup_training, data_dir),
        (7, "SIGTERM in sample DIR/", hostile.sigterm_during_folder_sample, tiny),
        (11, "folder dataset named in bytes", hostile.non_utf8_folder_dataset),
        (12, "damaged cluster cache", hostile.damaged_cluster_cache, data_dir),
        (13, "unreadable preset", hostile.unreadable_preset),
        (15, "completion of --class", hostile.completion_offers_what_is_accepted, tiny),
    ]:
        cases.append(case(family, name, scenario, *args))
    for command in hostile.READ_ONLY_COMMANDS:
        cases.append(case(4, f"read-only {command}", hostile.read_only_case, tiny, command))
    for command in hostile.STREAM_COMMANDS:
        for redirect in (">&-", ">/dev/full"):
            for json_out in (False, True):
                name = f"{command} {redirect}{' --json' if json_out else ''}"
                args = (tiny, command, redirect, json_out)
                cases.append(case(5, name, hostile.stream_case, *args))
    for delay in (0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0):
        name = f"SIGTERM {delay} s after mkdir"
        cases.append(case(7, name, hostile.sigterm_after_run_folder, data_dir, delay))
    return cases


def family_figures(tmp: Path, data_dir: Path) -> list[str]:
    """Cases tried and clean per family, and what was not clean."""
    tiny = hostile.make_tiny_run(tmp / "tiny", data_dir)
    outcomes = corpus_outcomes(tmp / "corpus", tiny)
    skipped = []
    for family, name, call in scenarios(tmp / "scenarios", tiny, data_dir):
        problem = call()
        if problem is None:
            skipped.append(name)
            continue
        outcomes.append(hostile.Outcome(family, name, problem))
        print(f"family {family} {name}: {problem or 'clean'}")
    lines = []
    for family, title in hostile.FAMILIES.items():
        mine = [o for o in outcomes if o.family == family]
        lines.append(f"- family {family}, {title}: {sum(o.clean for o in mine)}/{len(mine)} clean")
        lines += [f"  - not clean: {o.name}: {o.problem[:160]}" for o in mine if not o.clean]
    if skipped:
        lines.append(f"- not run here (no private mount namespace): {', '.join(skipped)}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--mutants", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/reliability.md")
    args = parser.parse_args()
    data_dir = Path(os.environ.get("GANCLI_DATA_DIR") or ROOT.parent / "shared" / "data")
    os.environ.setdefault("GANCLI_NO_DOWNLOAD", "1")
    os.environ.setdefault("GANCLI_DATA_DIR", str(data_dir))  # {data} in corpus entries
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        lines, reference = kill_figures(tmp, data_dir, args.kills, random.Random(args.seed))
        good = reference.last_checkpoint.read_bytes()
        lines.append(mutant_figure(tmp, good, args.mutants, args.seed))
        lines.append(malicious_figure(tmp))
        lines.append(bad_input_figure(tmp))
        lines.append("")
        lines.append("Per family of issues 15 and 25 (corpus entries and scenarios):")
        lines += family_figures(tmp / "families", data_dir)
    report = "\n".join(
        [f"# Reliability figures ({time.strftime('%Y-%m-%d')}, seed {args.seed})", "", *lines, ""]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
