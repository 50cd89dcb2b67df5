"""Scale-out and runtime options: torchrun on the CPU (gloo), precision, compile, threads."""

from __future__ import annotations

import gc
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from typer.testing import CliRunner

from gancli.cli import app
from gancli.engine import distributed
from gancli.engine.checkpoint import load_checkpoint
from gancli.engine.config import Config, config_from_dict, load_config
from gancli.engine.data import ImageSet
from gancli.engine.errors import ConfigError, GancliError
from gancli.engine.models import build_models
from gancli.engine.options import RuntimeOptions
from gancli.engine.runs import MetricsLog
from gancli.engine.runtime import default_threads, physical_cores
from gancli.engine.starting import new_trainer, resume_trainer
from gancli.engine.state import TrainState

SMALL = ["model.g_width=0.25", "model.d_width=0.25"]  # tiny networks: the tests time the plumbing
TINY_FLAGS = ["--limit", "256", "--batch-size", "32", "--epochs", "1"]
TINY_ARGS = [*TINY_FLAGS, *(arg for s in SMALL for arg in ("--set", s))]


def torchrun(*args: str, nproc: int = 2) -> subprocess.Popen[str]:
    """`python -m torch.distributed.run ... -m gancli train ARGS`, started, not awaited."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc)]
    command += ["--standalone", "-m", "gancli", "train", *args]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy()
    )


def finish(process: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def saved_checksums(state: dict[str, Any]) -> list[str]:
    """The checksums of the weights in a checkpoint, computed as each rank computes its own."""
    config = config_from_dict(state["config"])
    shape = tuple(state["data"]["image_shape"])
    g, d = build_models(config.model, shape, len(state["data"]["class_names"]))  # type: ignore[arg-type]
    g.load_state_dict(state["generator"])
    d.load_state_dict(state["discriminator"])
    return [distributed.weights_checksum(g), distributed.weights_checksum(d)]


def assert_ranks_agreed(state: dict[str, Any], world_size: int) -> None:
    """Every rank held bit-identical weights, and they are the ones saved."""
    assert state["world_size"] == world_size
    checksums = state["rank_checksums"]
    assert len(checksums) == world_size
    assert all(sums == checksums[0] for sums in checksums), checksums
    assert saved_checksums(state) == checksums[0]


@pytest.fixture(autouse=True)
def restore_threads() -> Iterator[None]:
    """The in-process runs here use one thread (steady on a busy machine); put it back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def runs_dir(tmp_path: Path) -> str:
    return str(tmp_path / "runs")


def options(data_dir: Path, **kwargs: Any) -> RuntimeOptions:
    """CPU, one thread per process."""
    return RuntimeOptions(data_dir=str(data_dir), device="cpu", threads=1, **kwargs)


def tiny_config(preset: str, *sets: str, limit: int = 256) -> Config:
    flags = {"data.limit": limit, "training.batch_size": 32, "training.epochs": 1}
    return load_config(preset, [*SMALL, *sets], flags)


# --------------------------------------------------------------------------- torchrun


@pytest.mark.slow
def test_two_ranks_train_in_sync_then_resume_on_one_process(tmp_path: Path, data_dir: Path) -> None:
    """dcgan (batch norm in G and D, two D passes per step) on 2 ranks, resumed on 1."""
    out = tmp_path / "runs"
    code, stdout, stderr = finish(
        torchrun("--preset", "dcgan-mnist", *TINY_ARGS, "--out", str(out), "--json")
    )
    assert code == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    payload = json.loads(stdout)  # rank 0 alone prints: exactly one JSON object
    assert payload["world_size"] == 2 and payload["steps"] == 256 // 32
    (run,) = out.iterdir()  # rank 0 alone created a run directory
    assert Path(payload["run_dir"]) == run
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 8 and state["epoch"] == 1
    assert_ranks_agreed(state, 2)
    assert len(state["rank_rng"]) == 2
    assert not any(p.name.startswith(".") for p in run.iterdir())  # the run lock is gone

    # The step counter does not depend on the world size: resume on a single process.
    resumed = resume_trainer(run, options(data_dir), epochs=2)
    result = resumed.fit()
    assert (result.steps, result.epochs, result.world_size) == (16, 2, 1)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert_ranks_agreed(state, 1)
    epochs = [r for r in MetricsLog(run / "metrics.jsonl").read() if r["kind"] == "epoch"]
    assert [r["step"] for r in epochs] == [8, 16]


@pytest.mark.slow
def test_wgan_gp_resumes_on_two_ranks(tmp_path: Path, data_dir: Path) -> None:
    """One process trains an epoch; torchrun continues it on 2 ranks (gradient penalty)."""
    config = tiny_config("wgan-gp-mnist", "model.arch=mlp", limit=320)  # layer norm in D
    trainer = new_trainer(config, options(data_dir), out=runs_dir(tmp_path))
    trainer.fit()
    steps = trainer.step  # 320 images / (32 x 5 critic steps) = 2
    code, stdout, stderr = finish(
        torchrun("--resume", str(trainer.run.path), "--epochs", "2", "--json")
    )
    assert code == 0, stderr[-3000:]
    assert json.loads(stdout)["steps"] == 2 * steps
    state = load_checkpoint(trainer.run.path / "checkpoints" / "last.pt")
    assert state["step"] == 2 * steps
    assert_ranks_agreed(state, 2)


@pytest.mark.slow
def test_sigterm_stops_all_ranks_at_one_step_with_a_checkpoint(tmp_path: Path) -> None:
    """torchrun forwards SIGTERM to each rank; they agree on a step, rank 0 saves, all exit."""
    out = tmp_path / "runs"
    args = ["--preset", "gan-mnist", "--limit", "12800", "--batch-size", "32", "--epochs", "5"]
    process = torchrun(
        *args,
        "--set",
        "training.log_every=1",
        *(a for s in SMALL for a in ("--set", s)),
        "--out",
        str(out),
    )
    deadline = time.monotonic() + 120
    while not list(out.glob("*/metrics.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.2)  # training has started once the first step is logged
    process.send_signal(signal.SIGTERM)
    code, _, stderr = finish(process, timeout=120)
    assert code != 0
    assert stderr.count("interrupted at step") == 1, stderr[-3000:]  # rank 0 alone says so
    (run,) = out.iterdir()
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert 0 < state["step"] < 5 * 400
    assert_ranks_agreed(state, 2)


def test_batch_size_must_split_over_the_ranks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked before joining the other ranks: no process waits; rank 0 alone prints it."""
    for name, value in (("WORLD_SIZE", "2"), ("LOCAL_WORLD_SIZE", "2"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    args = ["train", "--preset", "gan-mnist", "--batch-size", "33", "--out", str(tmp_path)]
    shown = {}
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        shown[rank] = [line for line in result.output.splitlines() if line.strip()]
    assert shown["1"] == []
    assert len(shown["0"]) == 1
    assert shown["0"][0].startswith("error: training.batch_size: 33 is the global batch")
    assert not list(tmp_path.iterdir())


def test_sync_bn_on_the_cpu_is_a_one_line_error(tmp_path: Path) -> None:
    args = [
        "train",
        "--preset",
        "dcgan-mnist",
        "--sync-bn",
        "--device",
        "cpu",
        "--out",
        str(tmp_path),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --sync-bn: SyncBatchNorm runs on CUDA")
    assert not list(tmp_path.iterdir())


def test_ranks_come_from_torchruns_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert distributed.launched() == distributed.SINGLE  # no torchrun: one process
    env = {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert distributed.launched() == distributed.Ranks(3, 4, 1, 2)
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(ConfigError, match="do not fit together"):
        distributed.launched()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ConfigError, match="whole numbers"):
        distributed.launched()


def test_each_rank_takes_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA device choice, checked without a GPU."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    ranks = distributed.Ranks(rank=3, world_size=4, local_rank=1, local_world_size=2)
    assert distributed.rank_device(torch.device("cuda"), ranks) == torch.device("cuda", 1)
    assert distributed.rank_device(torch.device("cpu"), ranks) == torch.device("cpu")
    with pytest.raises(ConfigError, match="cuda:LOCAL_RANK"):
        distributed.rank_device(torch.device("cuda", 0), ranks)
    with pytest.raises(ConfigError, match="cpu \\(gloo\\) or cuda"):
        distributed.rank_device(torch.device("mps"), ranks)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="one process per GPU"):
        distributed.rank_device(torch.device("cuda"), ranks)


def test_errors_name_their_rank_and_shared_ones_are_printed_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "1"), ("LOCAL_RANK", "1")):
        monkeypatch.setenv(name, value)
    lost = RuntimeError("[gloo/pair.cc:561] Connection closed by peer [::1]:6575. This is bad")
    with pytest.raises(GancliError) as caught, distributed.rank_errors():
        raise lost
    assert str(caught.value).startswith("rank 1: lost contact with the other processes (Connection")
    assert caught.value.exit_code == 1 and not caught.value.quiet
    with pytest.raises(ConfigError) as config_error, distributed.rank_errors():
        raise ConfigError("training.batch_size: bad")
    assert config_error.value.quiet  # every rank meets it; rank 0 prints it
    with pytest.raises(RuntimeError, match="unrelated"), distributed.rank_errors():
        raise RuntimeError("unrelated")  # a bug stays a bug


# --------------------------------------------------------------------------- DDP mechanics


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _grads(module: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in module.parameters() if p.grad is not None]


def _step_grads(state: TrainState, rank: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """One TrainState.step on this rank's own batches and noise; the gradients it left in
    D (its last D step's) and in G (the G step's), taken before their optimisers' updates."""
    torch.manual_seed(100 + rank)  # each rank: its own data and noise, the same in both runs
    n_critic = state.config.objective.n_critic
    shape = (4, 1, 28, 28)
    batches = [(torch.rand(shape) * 2 - 1, torch.zeros(4, dtype=torch.long))] * n_critic
    state.step(iter(batches))
    return _grads(state.discriminator), _grads(state.generator)


def _rank_worker(rank: int, port: int) -> None:
    """One of two ranks: DDP's gradients must be the mean of the ranks' own gradients."""
    os.environ.update(
        WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    presets = ("dcgan-mnist", "wgan-gp-mnist")

    def state(preset: str) -> TrainState:
        torch.manual_seed(0)  # the same weights on both ranks and in both states
        made = TrainState(load_config(preset, SMALL), (1, 28, 28), 10, cpu)
        # No updates: G's gradient passes through D, which must be the same D in both
        # states (D updated with its own gradient and with the mean would differ).
        for optimizer in (made.opt_g, made.opt_d):
            optimizer.step = lambda *args, **kwargs: None  # type: ignore[method-assign]
        return made

    alone = {preset: state(preset) for preset in presets}  # built before joining: no DDP
    with distributed.rank_errors(), distributed.session(cpu):
        for preset in presets:
            together = state(preset)  # in DDP wrappers, as the trainer's under torchrun
            got = _step_grads(together, rank)
            own = _step_grads(alone[preset], rank)
            nets = (together.discriminator, together.generator)
            for net, ddp_grads, own_grads in zip(nets, got, own, strict=True):
                assert len(ddp_grads) == len(own_grads) == len(list(net.parameters()))
                means = [distributed.all_mean(b) for b in own_grads]
                for a, mean in zip(ddp_grads, means, strict=True):
                    assert torch.allclose(a, mean, rtol=1e-4, atol=1e-6), preset
                # The ranks' own gradients differ, so equal means are no accident.
                assert any(not torch.equal(b, m) for b, m in zip(own_grads, means, strict=True))
            # DDP wrappers must go before the process group does: destroying the group
            # under a live reducer can abort the process at exit.
            del together
            gc.collect()
        # Rank 0's decisions and failures reach every rank.
        assert distributed.on_main(lambda: f"made by {distributed.current().rank}") == "made by 0"

        def fails() -> None:
            raise ConfigError("no room")

        try:
            distributed.on_main(fails)
        except GancliError as exc:
            assert exc.exit_code == 2 and exc.quiet == (rank == 1), exc
        else:
            raise AssertionError("on_main swallowed rank 0's error")
        # A signal one rank received stops every rank.
        assert distributed.agree_signal(signal.SIGTERM if rank == 1 else None) == signal.SIGTERM
        assert distributed.agree_signal(None) is None
        assert distributed.gather(rank) == [0, 1]


@pytest.mark.slow
def test_ddp_averages_every_gradient_the_trainer_takes() -> None:
    """Batch norm's two D passes, the penalty's double backward on the plain D, and the G step
    through the frozen plain D: each rank ends with the mean of the ranks' own gradients."""
    context = mp.start_processes(
        _rank_worker, args=(_free_port(),), nprocs=2, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + 300  # a hung collective fails the test, not the whole run
    while not context.join(timeout=10):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the two ranks did not finish within 300 s")


# --------------------------------------------------------------------------- data shards


def test_ranks_take_contiguous_slices_of_each_global_batch() -> None:
    images = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1).expand(40, 1, 2, 2).contiguous()
    data = ImageSet("t", "train", "memory", images, torch.arange(40), tuple("0123456789"))
    whole = [labels for _, labels in data.batches(8, seed=3, epoch=1, start=1)]
    shards = [
        [labels for _, labels in data.batches(8, 3, 1, start=1, rank=r, world_size=4)]
        for r in range(4)
    ]
    assert len(whole) == 4 and all(len(s) == 4 for s in shards)
    for i, batch in enumerate(whole):
        assert torch.equal(torch.cat([shard[i] for shard in shards]), batch)


# --------------------------------------------------------------------------- precision


class Notes:
    """A reporter that keeps the notes."""

    preview_seconds = None

    def __init__(self) -> None:
        self.notes: list[str] = []

    def start(self, info: dict[str, Any]) -> None: ...
    def advance(self, step: int, epoch: int, stats: dict[str, float] | None) -> None: ...
    def epoch(self, record: dict[str, Any]) -> None: ...

    def note(self, text: str) -> None:
        self.notes.append(text)


def assert_finite_metrics(run: Path) -> None:
    for record in MetricsLog(run / "metrics.jsonl").read():
        if record["kind"] in ("step", "epoch"):
            assert all(math.isfinite(record[k]) for k in ("loss_d", "loss_g", "d_real", "d_fake"))


def test_bf16_autocast_on_the_cpu_trains_and_says_it_is_slow(
    tmp_path: Path, data_dir: Path
) -> None:
    trainer = new_trainer(
        tiny_config("gan-mnist"), options(data_dir, precision="bf16"), out=runs_dir(tmp_path)
    )
    reporter = Notes()
    result = trainer.fit(reporter)
    assert all(math.isfinite(v) for v in result.final.values())
    assert_finite_metrics(trainer.run.path)
    assert any(note.startswith("--precision bf16 on") for note in reporter.notes)
    state = load_checkpoint(trainer.run.path / "checkpoints" / "last.pt")
    assert state["precision"] == "bf16" and "scaler_g" not in state
    assert all(
        p.dtype == torch.float32 for p in state["generator"].values() if p.is_floating_point()
    )


def test_fp16_keeps_its_loss_scalers_in_checkpoints(tmp_path: Path, data_dir: Path) -> None:
    """wgan-gp: the penalty runs in float32 beside fp16 forward passes and scaled gradients.
    (MLP networks: fp16 convolutions on a CPU are 30x slower than fp32.)"""
    config = tiny_config("wgan-gp-mnist", "model.arch=mlp", limit=320)
    trainer = new_trainer(config, options(data_dir, precision="fp16"), out=runs_dir(tmp_path))
    trainer.fit()
    assert_finite_metrics(trainer.run.path)
    state = load_checkpoint(trainer.run.path / "checkpoints" / "last.pt")
    for name in ("scaler_g", "scaler_d"):
        assert state[name]["scale"] > 0 and state[name]["growth_interval"] == 2000
    fp16 = options(data_dir, precision="fp16")
    resumed = resume_trainer(trainer.run.path, fp16, epochs=2)
    scaler = resumed.state.scaler_d
    assert scaler is not None and scaler.state_dict() == state["scaler_d"]
    # A resume with --precision auto keeps the run's own; another one may be asked for.
    assert resume_trainer(trainer.run.path, options(data_dir), epochs=2).options.precision == "fp16"
    again = resume_trainer(trainer.run.path, options(data_dir, precision="fp32"), epochs=2)
    assert again.state.scaler_d is None
    again.fit()
    assert_finite_metrics(trainer.run.path)
    assert "scaler_d" not in load_checkpoint(trainer.run.path / "checkpoints" / "last.pt")


def test_16_bit_on_the_cpu_comes_with_a_note_on_speed(monkeypatch: pytest.MonkeyPatch) -> None:
    import gancli.engine.runtime as runtime

    cpu = torch.device("cpu")
    for fast, fragment in ((True, "has bf16 instructions"), (False, "slower than fp32")):
        monkeypatch.setattr(runtime, "fast_on_cpu", lambda precision, fast=fast: fast)
        (note,) = runtime.runtime_notes(RuntimeOptions(precision="bf16"), cpu)
        assert fragment in note
        assert runtime.runtime_notes(RuntimeOptions(precision="fp32"), cpu) == []


def test_precision_auto_picks_by_hardware_and_keeps_a_resumed_runs_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gancli.engine.runtime as runtime

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    choose = runtime.choose_precision
    assert choose("fp32", gpu) == ("fp32", "as asked")  # --precision fp32 always forces it
    assert choose("bf16", cpu) == ("bf16", "as asked")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert choose("auto", gpu)[0] == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    precision, why = choose("auto", gpu)
    assert precision == "fp32" and "no bfloat16" in why
    # A CPU without bf16 units trains in fp32; one with them too, until bf16's quality on
    # CPUs is measured (AUTO_BF16_ON_CPU), and the reason points at the faster option.
    monkeypatch.setattr(runtime, "fast_on_cpu", lambda precision: False)
    assert choose("auto", cpu) == ("fp32", "auto: this CPU has no bf16 units")
    monkeypatch.setattr(runtime, "fast_on_cpu", lambda precision: True)
    precision, why = choose("auto", cpu)
    assert precision == "fp32" and "--precision bf16" in why
    monkeypatch.setattr(runtime, "AUTO_BF16_ON_CPU", True)
    assert choose("auto", cpu)[0] == "bf16"
    # A resume keeps the precision the run trained in, so that it stays bitwise exact.
    assert choose("auto", cpu, previous="fp16") == ("fp16", "auto: the run's own")
    assert choose("fp32", cpu, previous="fp16") == ("fp32", "as asked")


def test_the_precision_is_said_at_the_start_and_kept_per_segment(
    tmp_path: Path, data_dir: Path
) -> None:
    trainer = new_trainer(tiny_config("gan-mnist"), options(data_dir), out=runs_dir(tmp_path))
    reporter = Notes()
    trainer.fit(reporter)
    resumed = resume_trainer(trainer.run.path, options(data_dir, precision="fp32"), epochs=2)
    resumed.fit()
    segments = [r for r in resumed.run.log.read() if r["kind"] == "segment"]
    assert [s["step"] for s in segments] == [0, trainer.steps_per_epoch]
    assert segments[0]["precision"] == "fp32" and segments[0]["precision_reason"].startswith("auto")
    assert segments[1]["precision_reason"] == "as asked" and segments[1]["device"] == "cpu"
    assert segments[0]["threads"] == 1 and segments[0]["world_size"] == 1


# --------------------------------------------------------------------------- compile


class FakeCompiled(nn.Module):
    """Stands in for torch.compile's wrapper (same `_orig_mod` attribute), without compiling:
    a real compile of even a tiny GAN takes 25-30 s on a 2-core CPU with a cold cache."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self._orig_mod = module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._orig_mod(*args, **kwargs)


def test_compile_wraps_the_training_passes_and_checkpoints_keep_plain_keys(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled: list[nn.Module] = []

    def fake_compile(module: nn.Module, **kwargs: Any) -> nn.Module:
        compiled.append(module)
        return FakeCompiled(module)

    monkeypatch.setattr(torch, "compile", fake_compile)
    trainer = new_trainer(
        tiny_config("gan-mnist"), options(data_dir, compile=True), out=runs_dir(tmp_path)
    )
    # G, D for the D step, D for the G step; all the plain modules in a single process.
    state = trainer.state
    assert compiled == [state.generator, state.discriminator, state.discriminator]
    assert isinstance(state.g_train, FakeCompiled) and isinstance(state.d_frozen, FakeCompiled)
    reporter = Notes()
    trainer.fit(reporter)
    assert any("--compile" in note for note in reporter.notes)
    state = load_checkpoint(trainer.run.path / "checkpoints" / "last.pt")
    g, d = build_models(trainer.config.model, (1, 28, 28), 10)
    assert set(state["generator"]) == set(g.state_dict())
    assert set(state["discriminator"]) == set(d.state_dict())
    resume_trainer(trainer.run.path, options(data_dir), epochs=2).fit()  # no compile


# --------------------------------------------------------------------------- threads


HYPERTHREADED = "\n\n".join(
    f"processor\t: {cpu}\nphysical id\t: {cpu // 4}\ncore id\t\t: {cpu % 2}\nsiblings\t: 4"
    for cpu in range(8)
)  # two sockets of 2 cores x 2 hyper-threads


def test_physical_cores_counts_cores_not_hyperthreads() -> None:
    assert physical_cores(HYPERTHREADED, set(range(8))) == 4
    assert physical_cores(HYPERTHREADED, {0, 2}) == 1  # two threads of one core
    assert physical_cores(HYPERTHREADED, {0, 1, 4}) == 3
    # No core ids (many ARM boards): the usable CPUs.
    assert physical_cores("processor\t: 0\n\nprocessor\t: 1\n", {0, 1}) == 2
    assert physical_cores("", None) == (os.cpu_count() or 1)
    assert physical_cores() >= 1


def test_default_threads_share_the_cores_among_local_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    import gancli.engine.runtime as runtime

    monkeypatch.setattr(runtime, "physical_cores", lambda: 8)
    assert [default_threads(n) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
