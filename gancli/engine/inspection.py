"""Usage: report = inspect_target("runs/dcgan-mnist-001"); print(report.to_dict())

What a run directory, a checkpoint or a preset holds, as one InspectReport: the resolved
config, an architecture table of G and D, the data, training progress, checkpoint
health and the last evaluation. The CLI renders it; `--json` prints `to_dict()`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from gancli.engine.checkpoint import check_checkpoint_file, load_checkpoint
from gancli.engine.config import (
    Config,
    config_from_dict,
    config_to_dict,
    load_config,
    resolve_preset,
)
from gancli.engine.data import dataset_summary
from gancli.engine.errors import CheckpointError, ConfigError, GancliError
from gancli.engine.files import file_sha256
from gancli.engine.models import BATCH_NORMS, ClassBatchNorm2d, MinibatchStdDev, build_models
from gancli.engine.records import read_evaluations
from gancli.engine.runs import RunDir, latest_run, runs_root, stat_problem

SPARK = "▁▂▃▄▅▆▇█"
RESUME_KEYS = ("generator", "discriminator", "opt_g", "opt_d", "rng", "fixed_noise", "data")


@dataclass
class Layer:
    layer: str  # e.g. "ConvTranspose2d(110->128, k7 s1 p0)"; "embed: ..." beside the stack
    output: list[int]  # output shape without the batch dimension
    parameters: int


@dataclass
class Network:
    layers: list[Layer]
    parameters: int
    size_mb: float  # parameters and buffers


@dataclass
class Architecture:
    generator: Network | None = None
    discriminator: Network | None = None
    error: str | None = None  # why the networks cannot be built for this data


@dataclass
class DataSummary:
    dataset: str
    image_shape: list[int]
    classes: list[str] | None  # None: known only once the data is read (folders)


@dataclass
class TrainedData(DataSummary):
    split: str | None = None
    images: int | None = None
    source: str | None = None  # where the images were read


@dataclass
class Progress:
    epochs_done: int | None = None
    epochs_planned: int | None = None
    steps: int | None = None
    mid_epoch_step: int = 0  # steps into an unfinished epoch
    seconds: float | None = None  # training time, resumed processes included
    ema: bool | None = None  # whether an EMA generator is kept
    last_epoch: dict[str, float] | None = None  # the last epoch record's losses
    images_per_second: float | None = None  # mean over the epochs
    loss_d_sparkline: str = ""
    loss_g_sparkline: str = ""


@dataclass
class CheckpointHealth:
    file: str
    bytes: int
    sha256: str  # "" when the file was refused before it was read whole
    loads: bool = False  # with weights_only=True, format and checksum intact
    can_resume: bool = False
    error: str | None = None
    contains: list[str] = field(default_factory=list)
    missing_for_resume: list[str] = field(default_factory=list)
    epoch: int | None = None
    step: int | None = None


@dataclass
class InspectReport:
    kind: Literal["run", "checkpoint", "preset"]
    path: str
    name: str | None = None
    config: dict[str, Any] | None = None
    config_error: str | None = None  # a checkpoint's config this gancli cannot read
    data: DataSummary | None = None
    architecture: Architecture | None = None
    progress: Progress | None = None
    checkpoints: list[CheckpointHealth] = field(default_factory=list)
    evaluation: dict[str, Any] | None = None  # the last record of eval.json, as written
    versions: dict[str, str] | None = None  # of gancli, torch and Python that trained it
    files: list[str] | None = None  # what the run directory holds

    def to_dict(self) -> dict[str, Any]:
        """Plain data for --json; parts that do not apply are left out."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, [])}


def inspect_target(target: str | None, runs: str | None = None) -> InspectReport:
    """Inspect a run directory, a checkpoint file, or a preset (name or YAML path); with
    no target, the latest run under `runs` (None: $GANCLI_RUNS_DIR or ./runs)."""
    if target is None:
        target = str(latest_run(runs_root(runs)).path)
    path = Path(target).expanduser()
    problem = stat_problem(path)
    if problem:  # a symlink loop, say: not a preset name either
        raise CheckpointError(f"cannot inspect {path}{problem}")
    if path.is_dir():
        return inspect_run(RunDir.open(path))
    if path.is_file() and path.suffix not in (".yaml", ".yml"):
        return inspect_checkpoint(path)
    return inspect_preset(target)


def inspect_preset(name: str) -> InspectReport:
    path = resolve_preset(name)
    config = load_config(path)
    shape, classes = dataset_summary(config.data)
    report = InspectReport("preset", str(path), path.stem, config_to_dict(config))
    report.data = DataSummary(config.data.dataset, list(shape), list(classes) if classes else None)
    if classes or not config.model.conditional:  # a folder's classes are known only once read
        report.architecture = architecture(config, shape, len(classes or ()))
    return report


def inspect_checkpoint(path: Path) -> InspectReport:
    health, state = checkpoint_health(path)
    if state is None:
        raise CheckpointError(str(health.error))
    report = InspectReport("checkpoint", str(path), checkpoints=[health])
    _describe_state(report, state)
    return report


def inspect_run(run: RunDir) -> InspectReport:
    report = InspectReport("run", str(run.path), run.path.name)
    found = [checkpoint_health(p) for p in run.checkpoint_files() if p.is_file()]
    report.checkpoints = [health for health, _ in found]
    states = [state for _, state in found if state is not None]
    if not states:
        raise CheckpointError("; ".join(str(h.error) for h in report.checkpoints))
    _describe_state(report, max(states, key=lambda s: int(s["step"])))
    report.progress = report.progress or Progress()
    _add_log_progress(report.progress, run.log.read())
    evaluations = read_evaluations(run.evaluations)  # a damaged eval.json: one line, exit 2
    report.evaluation = evaluations[-1] if evaluations else None
    report.files = sorted(
        str(p.relative_to(run.path)) for p in run.path.iterdir() if not p.name.startswith(".")
    )
    return report


def _describe_state(report: InspectReport, state: dict[str, Any]) -> None:
    try:
        config = config_from_dict(state["config"])
    except ConfigError as exc:
        report.config_error = str(exc)
        return
    report.config = config_to_dict(config)
    data = state.get("data") or {}
    if data:
        shape = [int(v) for v in data.get("image_shape", ())]
        classes = [str(c) for c in data.get("class_names", [])]
        report.data = TrainedData(
            str(data.get("dataset")),
            shape,
            classes,
            split=data.get("split"),
            images=data.get("num_images"),
            source=data.get("source"),
        )
        if len(shape) == 3:
            report.architecture = architecture(config, tuple(shape), len(classes))
    report.progress = Progress(
        epochs_done=int(state["epoch"]),
        epochs_planned=config.training.epochs,
        steps=int(state["step"]),
        mid_epoch_step=int(state.get("step_in_epoch", 0)),
        seconds=round(float(state.get("elapsed", 0.0)), 1),
        ema=state.get("ema") is not None,
    )
    report.versions = state.get("versions", {})


def checkpoint_health(path: Path) -> tuple[CheckpointHealth, dict[str, Any] | None]:
    """Size, sha256, whether it loads safely, what it holds and whether it can resume;
    with the checkpoint's contents when it loads."""
    health = CheckpointHealth(path.name, path.stat().st_size, "")
    try:
        check_checkpoint_file(path)  # size and structure first: no hash of 100 GB of junk
        health.sha256 = file_sha256(path)
        state = load_checkpoint(path)
    except CheckpointError as exc:
        health.error = str(exc)
        return health, None
    health.loads = True
    health.contains = sorted(k for k, v in state.items() if v is not None)
    health.missing_for_resume = [k for k in RESUME_KEYS if state.get(k) is None]
    health.can_resume = not health.missing_for_resume
    health.epoch, health.step = int(state["epoch"]), int(state["step"])
    return health, state


def architecture(config: Config, image_shape: tuple[int, ...], num_classes: int) -> Architecture:
    """Layer-by-layer output shapes and parameter counts of G and D, from a traced forward
    on PyTorch's meta device: shapes without memory, so any width can be inspected."""
    with torch.device("meta"), torch.no_grad():
        try:
            g, d = build_models(config.model, image_shape, num_classes)  # type: ignore[arg-type]
        except GancliError as exc:
            return Architecture(error=str(exc))
        z = torch.zeros(2, config.model.z_dim)
        labels = torch.zeros(2, dtype=torch.long)
        g_rows = _trace(g, z, labels)
        d_rows = _trace(d, g(z, labels), labels)
    return Architecture(_summary(g, g_rows), _summary(d, d_rows))


def _trace(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> list[Layer]:
    rows: list[Layer] = []
    layers = {layer: "" for layer in model.get_submodule("net").children()}
    # modules beside the main stack, e.g. the class embedding of projection conditioning
    layers.update({m: f"{name}: " for name, m in model.named_children() if name != "net"})

    def hook(module: nn.Module, _: Any, output: torch.Tensor) -> None:
        parameters = sum(p.numel() for p in module.parameters())
        rows.append(Layer(layers[module] + layer_name(module), list(output.shape[1:]), parameters))

    handles = [layer.register_forward_hook(hook) for layer in layers]
    try:
        model.eval()
        model(x, labels)
    finally:
        for handle in handles:
            handle.remove()
    return rows


def layer_name(module: nn.Module) -> str:
    """A short description: ConvTranspose2d(110->128, k7 s1 p0), BatchNorm2d(128), ..."""
    name = type(module).__name__
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        k, s, p = module.kernel_size[0], module.stride[0], module.padding
        pad = p[0] if isinstance(p, tuple) else p
        return f"{name}({module.in_channels}->{module.out_channels}, k{k} s{s} p{pad})"
    if isinstance(module, nn.Linear):
        return f"{name}({module.in_features}->{module.out_features})"
    if isinstance(module, (BATCH_NORMS, ClassBatchNorm2d)):
        return f"{name}({module.num_features})"
    if isinstance(module, nn.GroupNorm):
        return f"LayerNorm(C,H,W of {module.num_channels})"
    if isinstance(module, nn.LayerNorm):
        return f"LayerNorm({module.normalized_shape[0]})"
    if isinstance(module, nn.LeakyReLU):
        return f"LeakyReLU({module.negative_slope})"
    if isinstance(module, MinibatchStdDev):
        return f"MinibatchStdDev(group {module.group})"
    return name


def _summary(model: nn.Module, rows: list[Layer]) -> Network:
    tensors = [*model.parameters(), *model.buffers()]
    return Network(
        rows,
        sum(p.numel() for p in model.parameters()),
        round(sum(t.numel() * t.element_size() for t in tensors) / 2**20, 2),
    )


def _add_log_progress(progress: Progress, records: list[dict[str, Any]]) -> None:
    """What metrics.jsonl adds: the last epoch's losses, images/s and loss sparklines."""
    steps = [r for r in records if r.get("kind") == "step"]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    if epochs:
        last = epochs[-1]
        progress.last_epoch = {
            k: last[k] for k in ("epoch", "loss_d", "loss_g", "d_real", "d_fake")
        }
        rates = [r["images_per_second"] for r in epochs if r.get("images_per_second")]
        progress.images_per_second = round(sum(rates) / len(rates), 1) if rates else None
    progress.loss_d_sparkline = sparkline([r["loss_d"] for r in steps])
    progress.loss_g_sparkline = sparkline([r["loss_g"] for r in steps])


def sparkline(values: list[float], width: int = 40) -> str:
    """Values -> a row of block characters, resampled to at most `width` points."""
    if not values:
        return ""
    if len(values) > width:
        values = [values[i * len(values) // width] for i in range(width)]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(SPARK[min(7, int((v - low) / span * 8))] for v in values)
