"""Round two of the hostile user, shared by tests/reliability and benchmarks/reliability.py.

Two kinds of case, each counted under one of FAMILIES:

- corpus entries of kind "command" (bad_inputs.jsonl): any gancli command, run against a
  copy of a tiny trained run that `setup` first damages; a refused command must print one
  line and change no file (family 1 holds for every refusal in the corpus);
- scenarios (functions below) that need what the corpus cannot express: real pipes and
  closed or full output streams, signals at chosen moments, a read-only or full file system
  (in a private mount namespace: `unshare -rm`, skipped where that is not allowed) and two
  commands racing for one name.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FAMILIES = {
    1: "nothing written before the run lock; a refused command changes no file",
    2: "no file replaced without --force",
    3: "broken run folders: one line, exit 2",
    4: "storage faults: one line, nothing half-written",
    5: "output streams: closed, full or broken",
    6: "huge or absurd requests refused up front or bounded",
    7: "signals: no orphan folder, no truncated file",
    8: "terminal safety and names: markup and escapes shown, odd names refused",
    9: "bounded work on hostile files: huge checkpoints refused before reading",
    10: "a wrong --data-dir stops at once; one level too deep is accepted",
    11: "names that are not UTF-8 (runs, folders, classes): shown, written and embedded",
    12: "values read back from a cache or a record are checked, not only their shape",
    13: "one unreadable preset file hides no other preset",
    14: "image folders: oversized pictures named, skipped files counted",
    15: "completion offers only what the command accepts, and never a traceback",
    16: "an exit code means what it says: a trained, checkpointed epoch is a success",
}
LONG = "a" * 260  # a file name longer than any file system allows (255 bytes)
TINY = {"data.limit": 64, "training.batch_size": 32, "training.epochs": 2}
# gan-mnist's round-1 recipe (no clusters, no EMA) made conditional, at a quarter width
TINY_SETS = [
    "model.conditional=true",
    "model.clusters=0",
    "model.d_conditioning=input",
    "training.ema=0",
    "training.ema_rampup=0",
    "model.g_width=0.25",
    "model.d_width=0.25",
]


def make_tiny_run(root: Path, data_dir: Path) -> Path:
    """A finished conditional MLP run with 2 epochs and checkpoints of about 1 MB."""
    from gancli.engine.config import load_config
    from gancli.engine.options import RuntimeOptions
    from gancli.engine.starting import new_trainer

    config = load_config("gan-mnist", TINY_SETS, TINY)
    options = RuntimeOptions(data_dir=str(data_dir), device="cpu")
    trainer = new_trainer(config, options, preset_name="tiny", out=str(root))
    trainer.fit()
    return trainer.run.path


def copy_run(source: Path, target: Path) -> None:
    """A copy of a run whose big files are hard links (setup replaces, never edits them)."""
    shutil.copytree(source, target, copy_function=os.link)


# --------------------------------------------------------------------------- corpus commands


def fill(text: str, workdir: Path) -> str:
    """Placeholders of a corpus entry: {run}, {tmp}, {pid} (a live process), {long},
    {data} (the shared data root, $GANCLI_DATA_DIR)."""
    return (
        text.replace("{run}", str(workdir / "run"))
        .replace("{data}", os.environ.get("GANCLI_DATA_DIR", ""))
        .replace("{tmp}", str(workdir))
        .replace("{pid}", str(os.getpid()))
        .replace("{long}", LONG)
    )


def _clear(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def _write(path: Path, text: str) -> None:
    _clear(path)  # never write through a hard link to the source run
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _b64(path: Path, data: str) -> None:
    _clear(path)
    path.write_bytes(base64.b64decode(data))


def _append(path: Path, text: str) -> None:
    _write(path, (path.read_text() if path.is_file() else "") + text)


def _mkdir(path: Path) -> None:
    _clear(path)
    path.mkdir(parents=True)


def _symlink(path: Path, target: str) -> None:
    _clear(path)
    path.symlink_to(target)


def _touch(path: Path) -> None:
    _write(path, "")


def _idx_gz(path: Path, shape: list[int], payload: int) -> None:
    """An IDX file whose header says `shape` and whose body is `payload` zero bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(bytes([0, 0, 8, len(shape)]) + struct.pack(f">{len(shape)}I", *shape))
        block = bytes(1 << 20)
        for start in range(0, payload, len(block)):
            fh.write(block[: min(len(block), payload - start)])


def _sparse(path: Path, extra: int) -> None:
    """`path`'s bytes (none if it is absent) followed by `extra` bytes of a hole: a file
    of any size that takes no room on disk."""
    data = path.read_bytes() if path.is_file() else b""
    _clear(path)
    path.write_bytes(data)
    os.truncate(path, len(data) + extra)


def _own_pngs(folder: Path, count: int) -> None:
    """Images named as `sample --out DIR/` names them, as if left by an earlier sample."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("L", (4, 4)).save(folder / f"{i:06d}_0.png")


def _copy_run(target: Path, source: str) -> None:
    """A second copy of the tiny run (source: {run}), under another name."""
    copy_run(Path(source), target)


def _big_png(path: Path, width: int, height: int) -> None:
    """A black PNG of width x height pixels: a few hundred KB on disk whatever its size."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (width, height)).save(path)


#: The damage a corpus entry's `setup` can do, as [op, path, *params].
SETUP: dict[str, Callable[..., None]] = {
    "write": _write,
    "b64": _b64,
    "append": _append,
    "mkdir": _mkdir,
    "remove": _clear,
    "symlink": _symlink,
    "touch": _touch,
    "pngs": _own_pngs,
    "idx": _idx_gz,
    "sparse": _sparse,
    "copy": _copy_run,
    "bigpng": _big_png,
}


def prepare_command(entry: dict[str, Any], workdir: Path, source: Path) -> list[str]:
    """Copy the tiny run to WORKDIR/run, apply the entry's setup; the command's arguments."""
    copy_run(source, workdir / "run")
    for op, target, *params in entry.get("setup", []):
        params = [fill(p, workdir) if isinstance(p, str) else p for p in params]
        SETUP[op](Path(fill(target, workdir)), *params)
    return [fill(arg, workdir) for arg in entry["args"]]


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every name under `root` with its kind, size and (files) content hash, or its time
    for a file too large to read (the sparse giants of family 9)."""
    found: dict[str, tuple[Any, ...]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            digest: Any = ""
            if path.is_file() and not path.is_symlink():
                big = info.st_size > 1 << 28
                digest = info.st_mtime_ns if big else hashlib.sha1(path.read_bytes()).hexdigest()
            found[str(path.relative_to(root))] = (info.st_mode, info.st_size, digest)
    return found


def command_clean(
    entry: dict[str, Any], code: int, output: str, changed: list[str], workdir: Path
) -> str:
    """'' when the command behaved; otherwise what went wrong. A refusal (non-zero exit) is
    one line starting 'error:' naming `expect`, and changes no file; a success prints
    `expect` somewhere. Either way: no traceback, and `absent`/`present` paths checked.
    The stage lines of `sample` and `evaluate` (work done before a refusal) are not
    counted."""
    lines = _messages(output)
    if "Traceback" in output:
        return "traceback"
    if "\x1b" in output:  # not a terminal: gancli's own output has no escape sequences
        return "a raw escape sequence reached the output"
    if code != entry.get("exit", 2):
        return f"exit {code}"
    if code and (len(lines) != 1 or not lines[0].startswith("error: ")):
        return f"{len(lines)} lines"
    if entry["expect"] not in output:
        return f"no {entry['expect']!r}"
    if code and changed:
        return f"a refused command changed {changed[:3]}"
    for path in entry.get("absent", []):
        if os.path.lexists(fill(path, workdir)):
            return f"{path} exists"
    for path in entry.get("present", []):
        if not os.path.lexists(fill(path, workdir)):
            return f"{path} is missing"
    return ""


def changed_paths(
    before: dict[str, tuple[Any, ...]], after: dict[str, tuple[Any, ...]]
) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


# --------------------------------------------------------------------------- scenarios


@dataclass
class Outcome:
    family: int
    name: str
    problem: str  # '' when clean

    @property
    def clean(self) -> bool:
        return not self.problem


def gancli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "gancli", *args]


def run_shell(script: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=timeout)


#: The plain stage lines `sample` and `evaluate` print on stderr off a terminal
#: ("generating (4/4)", "still scoring the samples (0:00:30)"): work, not an error.
STAGE_LINE = re.compile(r"(?!error|warning)(still )?[a-z][a-z0-9 (),/:-]*")


def _messages(stderr: str) -> list[str]:
    """stderr's lines less blank lines and stage lines."""
    return [x for x in stderr.splitlines() if x.strip() and not STAGE_LINE.fullmatch(x)]


def one_error_line(stderr: str, code: int, expected_code: int | None = None) -> str:
    """'' when stderr is one 'error:' line (after any stage lines) and the exit code fits;
    else the problem."""
    lines = _messages(stderr)
    if "Traceback" in stderr:
        return "traceback"
    if len(lines) != 1 or not lines[0].startswith("error: "):
        return f"stderr: {lines[:3]}"
    if code == 0 or (expected_code is not None and code != expected_code):
        return f"exit {code}"
    return ""


def train_piped_to_head(workdir: Path, data_dir: Path) -> str:
    """`gancli train ... | head -1`: training goes on to the end after the reader leaves."""
    out = workdir / "runs"
    proc = subprocess.Popen(
        gancli_command("train", "--preset", "gan-mnist", "--limit", "128", "--batch-size",
                       "32", "--epochs", "3", "--out", str(out), "--data-dir", str(data_dir)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # as head does after its line
    stderr = proc.stderr.read().decode()
    code = proc.wait(timeout=300)
    metrics = list(out.glob("*/metrics.jsonl"))
    epochs = metrics[0].read_text().count('"kind": "epoch"') if metrics else 0
    if code != 0 or "Traceback" in stderr or epochs != 3:
        return f"exit {code}, {epochs} epochs, stderr {stderr[-200:]!r}"
    return ""


STREAM_COMMANDS = {
    "presets": ["presets"],
    "dry-run": ["train", "--preset", "gan-mnist", "--dry-run"],
    "inspect": ["inspect", "{run}"],
    "sample": ["sample", "{run}", "-n", "4", "--out", "{tmp}/s.png"],
    "report": ["report", "{run}", "--out", "{tmp}/r.html"],
    "export": ["export", "{run}", "-f", "state-dict", "--out", "{tmp}/g.pt"],
}


def stream_case(workdir: Path, source: Path, command: str, redirect: str, json_out: bool) -> str:
    """A command with stdout closed (`>&-`) or on /dev/full: no traceback; with --json, one
    error line and a non-zero exit (the result did not arrive); without, it does its work."""
    copy_run(source, workdir / "run")
    args = [fill(a, workdir) for a in STREAM_COMMANDS[command]]
    args += ["--json"] if json_out else []
    quoted = " ".join(f"'{a}'" for a in gancli_command(*args))
    done = run_shell(f"{quoted} {redirect}")
    if json_out:
        return one_error_line(done.stderr, done.returncode, 1)
    lines = _messages(done.stderr)
    if done.returncode != 0 or "Traceback" in done.stderr or len(lines) > 1:
        return f"exit {done.returncode}, stderr {lines[:3]}"
    return ""


def sigterm_during_folder_sample(workdir: Path, run: Path) -> str:
    """SIGTERM while `sample --out DIR/` writes: exit 143, and every PNG under its final name
    is whole (each is written under a temporary name first); no temporary file is left."""
    from PIL import Image

    folder = workdir / "images"
    proc = subprocess.Popen(
        gancli_command("sample", str(run), "-n", "20000", "--out", str(folder)),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(folder.glob("*.png"))) < 200:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    broken = []
    for path in folder.iterdir():
        try:
            with Image.open(path) as img:
                img.load()
        except OSError:
            broken.append(path.name)
    if proc.returncode != 143 or "Traceback" in stderr or broken:
        return f"exit {proc.returncode}, broken or temporary files {broken[:3]}"
    return ""


def sigterm_after_run_folder(workdir: Path, data_dir: Path, delay: float) -> str:
    """SIGTERM `delay` s after the run folder appears: either no folder is left, or one with
    a checkpoint to resume from; never an orphan without one."""
    root = workdir / f"runs-{delay}"
    proc = subprocess.Popen(
        gancli_command("train", "--preset", "gan-mnist", "--limit", "256", "--batch-size",
                       "32", "--epochs", "3", "--out", str(root), "--data-dir", str(data_dir),
                       "--quiet"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not _listing(root):
        time.sleep(0.002)
    time.sleep(delay)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    orphans = [n for n in _listing(root) if not (root / n / "checkpoints" / "last.pt").is_file()]
    if proc.returncode not in (0, 143) or "Traceback" in stderr or orphans:
        return f"exit {proc.returncode}, orphan run folders {orphans}, stderr {stderr[-200:]!r}"
    return ""


def _listing(folder: Path) -> list[str]:
    """The names in `folder`; none while it does not exist (or no longer does)."""
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


def concurrent_npz(workdir: Path, run: Path) -> str:
    """Two `sample --out same.npz` at once: one writes it, the other says it exists."""
    target = workdir / "same.npz"
    procs = [
        subprocess.Popen(
            gancli_command(
                "sample", str(run), "-n", "3000", "--seed", str(seed), "--out", str(target)
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(code for code, _ in results)
    if codes != [0, 2] or not any("already exists" in err for _, err in results):
        return f"exits {codes}: {[err[-120:] for _, err in results]}"
    return ""


def in_namespace(mounts: str, command: str) -> subprocess.CompletedProcess[str] | None:
    """Run `command` after `mounts` in a private mount namespace (`unshare -rm`: no root
    needed where user namespaces are allowed); None where that is not possible."""
    probe = run_shell("unshare -rm true")
    if probe.returncode != 0:
        return None
    return run_shell(f"unshare -rm bash -c {_quote(mounts + ' && ' + command)}")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


READ_ONLY_COMMANDS = {
    "resume": ["train", "--resume", "{run}", "--epochs", "3"],
    "sample": ["sample", "{run}"],
    "sample --out": ["sample", "{run}", "--out", "{run}/mine.png"],
    "animate": ["animate", "{run}"],
    "evaluate": ["evaluate", "{run}", "-n", "100"],
    "report": ["report", "{run}"],
    "export": ["export", "{run}", "-f", "state-dict"],
}


def read_only_case(workdir: Path, source: Path, command: str) -> str | None:
    """A command on a run in a read-only folder: one line, exit 1, nothing changed.
    None where no read-only mount can be made here."""
    copy_run(source, workdir / "run")
    before = snapshot(workdir)
    args = " ".join(_quote(fill(a, workdir)) for a in gancli_command(*READ_ONLY_COMMANDS[command]))
    run = _quote(str(workdir / "run"))
    done = in_namespace(f"mount --bind {run} {run} && mount -o remount,bind,ro {run}", args)
    if done is None:
        return None
    problem = one_error_line(done.stderr, done.returncode, 1)
    if "Read-only file system" not in done.stderr:
        problem = problem or f"no reason given: {done.stderr[-200:]!r}"
    changed = changed_paths(before, snapshot(workdir))
    return problem or (f"changed {changed[:3]}" if changed else "")


def disk_full_training(workdir: Path, data_dir: Path) -> str | None:
    """Training onto a 48 MB file system, too small for a second 36 MB checkpoint: one line,
    exit 1, and a loadable last.pt left. None where no mount can be made here."""
    from gancli.engine.checkpoint import load_checkpoint

    full = workdir / "full"
    full.mkdir()
    train = " ".join(
        _quote(a)
        for a in gancli_command("train", "--preset", "gan-mnist", "--limit", "64",
                                "--batch-size", "32", "--epochs", "2", "--out", str(full),
                                "--data-dir", str(data_dir), "--quiet")
    )  # fmt: skip
    kept = workdir / "kept.pt"  # the tmpfs goes with the namespace: keep last.pt beside it
    done = in_namespace(
        f"mount -t tmpfs -o size=48m tmpfs {_quote(str(full))}",
        f"{train}; echo exit=$?; cp {_quote(str(full))}/*/checkpoints/last.pt {_quote(str(kept))}",
    )
    if done is None:
        return None
    error = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    if "exit=1" not in done.stdout or len(error) != 1 or "Traceback" in done.stderr:
        return f"{done.stdout[-200:]!r} {done.stderr[-300:]!r}"
    if "No space left on device" not in error[0]:
        return error[0]
    return "" if load_checkpoint(kept)["epoch"] == 1 else "last.pt is not epoch 1's"


def _start_training(root: Path, data_dir: Path, epochs: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        gancli_command("train", "--preset", "gan-mnist", "--limit", "256", "--batch-size",
                       "32", "--epochs", str(epochs), "--out", str(root), "--name", "live",
                       "--data-dir", str(data_dir), "--quiet", "--set", "training.log_every=2"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)


def resume_while_training(workdir: Path, data_dir: Path) -> str:
    """A second `train --resume` on a run that is training: refused in one line before it
    touches a file (metrics.jsonl only grows, config.yaml stays as it was)."""
    proc = _start_training(workdir / "runs", data_dir, 200)
    run = workdir / "runs" / "live-001"
    try:
        _wait_for(run / "checkpoints" / "last.pt", proc)
        config, metrics = (run / "config.yaml").read_bytes(), (run / "metrics.jsonl").read_bytes()
        done = subprocess.run(
            gancli_command("train", "--resume", str(run), "--epochs", "300"),
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        problem = one_error_line(done.stderr, done.returncode, 2)
        if "is being trained by process" not in done.stderr:
            problem = problem or done.stderr[-200:]
        grown = (run / "metrics.jsonl").read_bytes().startswith(metrics)
        if (run / "config.yaml").read_bytes() != config or not grown:
            problem = problem or "the refused resume changed config.yaml or metrics.jsonl"
        return problem
    finally:
        proc.kill()
        proc.wait()


def sighup_training(workdir: Path, data_dir: Path) -> str:
    """SIGHUP mid-epoch (a closed terminal): a checkpoint, a resume hint, exit 129, no lock."""
    from gancli.engine.checkpoint import load_checkpoint

    proc = _start_training(workdir / "runs", data_dir, 200)
    run = workdir / "runs" / "live-001"
    _wait_for(run / "metrics.jsonl", proc)
    proc.send_signal(signal.SIGHUP)
    _, stderr = proc.communicate(timeout=120)
    if proc.returncode != 129 or "gancli train --resume" not in stderr or "Traceback" in stderr:
        return f"exit {proc.returncode}: {stderr[-200:]!r}"
    if (run / ".lock").exists():
        return "the lock was left behind"
    return "" if load_checkpoint(run / "checkpoints" / "last.pt")["step"] > 0 else "no steps"


def train_on_a_terminal(workdir: Path, data_dir: Path) -> str:
    """Training with stdout on a terminal (a pseudo-terminal here): the live progress bar
    runs and training finishes. (Rich swaps sys.stdout for a proxy while it is live.)"""
    import pty
    import threading

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        gancli_command("train", "--preset", "gan-mnist", "--limit", "128", "--batch-size",
                       "32", "--epochs", "2", "--out", str(workdir / "runs"), "--data-dir",
                       str(data_dir)),
        stdin=slave, stdout=slave, stderr=slave,
    )  # fmt: skip
    os.close(slave)
    seen = bytearray()

    def drain() -> None:  # a terminal that is not read fills up and blocks the writer
        with contextlib.suppress(OSError):
            while chunk := os.read(master, 4096):
                seen.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=180)
    except subprocess.TimeoutExpired:
        proc.kill()
        return "training on a terminal did not finish in 180 s"
    finally:
        reader.join(timeout=5)
        os.close(master)
    text = seen.decode(errors="replace")
    if code != 0 or "Traceback" in text or "done: 2 epochs" not in text:
        return f"exit {code}: {text[-300:]!r}"
    return ""


# --------------------------------------------------------------------------- round 3


def _clean_run(done: subprocess.CompletedProcess[str], what: str) -> str:
    if done.returncode != 0 or "Traceback" in done.stderr + done.stdout:
        return f"{what}: exit {done.returncode}: {(done.stderr or done.stdout)[-200:]!r}"
    return ""


def non_utf8_folder_dataset(workdir: Path) -> str:
    """A folder dataset whose path and one class folder are not UTF-8 (b'f\\xff',
    b'caf\\xe9'), through train, evaluate, report, sample DIR/ and inspect --json: each
    exits 0 with no traceback, and the page names the class with U+FFFD."""
    root = workdir / "f\udcff"
    _own_pngs(root / "caf\udce9", 160)
    _own_pngs(root / "plain", 160)
    run = workdir / "runs" / "cgan-mnist-001"
    steps = [
        ("train", "--preset", "cgan-mnist", "--set", f"data.dataset=folder:{root}",
         "--batch-size", "32", "--epochs", "1", "--out", str(workdir / "runs")),
        ("evaluate", str(run), "-n", "100"),
        ("report", str(run)),
        ("sample", str(run), "-n", "4", "--out", str(workdir / "pictures")),
        ("inspect", str(run), "--json"),
    ]  # fmt: skip
    for args in steps:
        problem = _clean_run(subprocess.run(gancli_command(*args), capture_output=True,
                                            text=True, timeout=300), args[0])  # fmt: skip
        if problem:
            return problem
    page = (run / "report.html").read_text(encoding="utf-8")
    return "" if "caf\ufffd" in page else "the page does not name the class caf\ufffd"


def damaged_cluster_cache(workdir: Path, data_dir: Path) -> str:
    """Cluster-cache entries with the right key and shapes but damaged values (a NaN,
    zero or negative share, shares that disagree with the labels, a label out of range):
    each is computed again, never a traceback; a checkpoint whose clusters are damaged
    is refused with one line."""
    import torch

    cache = workdir / "cache"
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "GANCLI_DATA_DIR": str(data_dir)}
    args = ("train", "--preset", "dcgan-mnist", "--limit", "128", "--batch-size", "32",
            "--epochs", "1", "--set", "model.clusters=4", "--quiet")  # fmt: skip

    def train(name: str) -> subprocess.CompletedProcess[str]:
        out = ("--out", str(workdir / "runs"), "--name", name)
        return subprocess.run(gancli_command(*args, *out), capture_output=True, text=True,
                              timeout=300, env=env)  # fmt: skip

    if problem := _clean_run(train("first"), "first train"):
        return problem
    (entry,) = (cache / "gancli" / "clusters").glob("*.pt")
    good = torch.load(entry, weights_only=True)
    damages = {
        "NaN share": lambda s: s["prior"].__setitem__(0, float("nan")),
        "zero shares": lambda s: s["prior"].zero_(),
        "negative share": lambda s: s["prior"].__setitem__(0, -0.5),
        "shares not the labels'": lambda s: s["prior"].copy_(s["prior"].flip(0)),
        "label out of range": lambda s: s["labels"].__setitem__(0, 9),
    }
    for what, damage in damages.items():
        state = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in good.items()}
        damage(state)
        torch.save(state, entry)
        if problem := _clean_run(train("again"), f"train on a cache entry with a {what}"):
            return problem
        if not torch.equal(torch.load(entry, weights_only=True)["prior"], good["prior"]):
            return f"the entry with a {what} was not computed again"
    from gancli.engine.checkpoint import load_checkpoint

    last = workdir / "runs" / "first-001" / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    state["clusters"]["prior"] = torch.full_like(state["clusters"]["prior"], float("nan"))
    torch.save(state, last)
    done = subprocess.run(gancli_command("sample", str(last.parents[1]), "-n", "4"),
                          capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    return one_error_line(done.stderr, done.returncode, 2)


def unreadable_preset(workdir: Path) -> str:
    """A presets folder holding, beside the shipped presets, files that cannot be read
    (invalid YAML, bytes that are not UTF-8, a folder named like a preset): `gancli
    presets` lists every other preset and names each bad one; completion offers the
    others. Run in this process: the presets folder is patched, not the install."""
    from unittest import mock

    from typer.testing import CliRunner

    from gancli import completion
    from gancli.cli import app
    from gancli.engine import config

    folder = workdir / "presets"
    shutil.copytree(config.presets_dir(), folder)
    (folder / "broken-yaml.yaml").write_text("model: [unclosed\n")
    (folder / "latin1.yaml").write_bytes(b"description: caf\xe9\n")
    (folder / "a-folder.yaml").mkdir()
    shipped = sorted(p.stem for p in config.presets_dir().glob("*.yaml"))
    with mock.patch.object(config, "presets_dir", lambda: folder):
        listed = CliRunner().invoke(app, ["presets", "--json"])
        offered = [name for name, _ in completion.presets("")]
    if listed.exit_code != 0:
        return f"presets: exit {listed.exit_code}: {listed.output[-200:]!r}"
    found = json.loads(listed.stdout)["presets"]
    bad = ("a-folder", "broken-yaml", "latin1")
    if missing := [n for n in shipped if n not in found or n not in offered]:
        return f"hidden by a bad file: {missing[:3]}"
    if unnamed := [n for n in bad if not found.get(n, "").startswith("(cannot be used: ")]:
        return f"not named as unusable: {unnamed}"
    return ""


def completion_offers_what_is_accepted(workdir: Path, source: Path) -> str:
    """`sample RUN --class <Tab>`: every class and 'all' for a conditional run; nothing for
    an unconditional one (which refuses --class); nothing, and no traceback, for a run
    whose config is damaged."""
    import yaml

    def complete(run: Path) -> tuple[list[str], str]:
        env = {**os.environ, "_GANCLI_COMPLETE": "complete_bash",
               "COMP_WORDS": f"gancli sample {run} --class ", "COMP_CWORD": "4"}  # fmt: skip
        script = Path(sys.executable).with_name("gancli")  # what the shell calls
        done = subprocess.run([script], env=env, capture_output=True, text=True)
        return done.stdout.split(), done.stderr

    offered, err = complete(source)
    if offered != ["all", *"0123456789"] or err:
        return f"a conditional run: {offered} {err[-200:]!r}"
    plain = workdir / "plain"
    copy_run(source, plain)
    config = yaml.safe_load((source / "config.yaml").read_text())
    config["model"]["conditional"] = False
    _write(plain / "config.yaml", yaml.safe_dump(config))
    offered, err = complete(plain)
    if offered or err:
        return f"an unconditional run: {offered} {err[-200:]!r}"
    _write(plain / "config.yaml", "model: [unclosed\n")
    offered, err = complete(plain)
    return f"a damaged config: {offered} {err[-200:]!r}" if offered or err else ""
