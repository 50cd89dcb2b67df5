"""Usage: report = inspect_target("runs/dcgan-mnist-001")

What a run directory, a checkpoint or a preset holds, as one plain dict: the resolved
config, an architecture table of G and D, the data, training progress, checkpoint
health and evaluation results. The CLI renders it; `--json` prints it as it is.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gancli.engine.checkpoint import load_checkpoint
from gancli.engine.config import (
    Config,
    config_from_dict,
    config_to_dict,
    load_config,
    resolve_preset,
)
from gancli.engine.data import dataset_summary
from gancli.engine.errors import CheckpointError, ConfigError, GancliError
from gancli.engine.models import ClassBatchNorm2d, build_models
from gancli.engine.runs import RunDir

SPARK = "▁▂▃▄▅▆▇█"
RESUME_KEYS = ("generator", "discriminator", "opt_g", "opt_d", "rng", "fixed_noise", "data")


def inspect_target(target: str) -> dict[str, Any]:
    """Inspect a run directory, a checkpoint file, or a preset (name or YAML path)."""
    path = Path(target).expanduser()
    if path.is_dir():
        return inspect_run(RunDir.open(path))
    if path.is_file() and path.suffix not in (".yaml", ".yml"):
        return inspect_checkpoint(path)
    return inspect_preset(target)


def inspect_preset(name: str) -> dict[str, Any]:
    path = resolve_preset(name)
    config = load_config(path)
    report: dict[str, Any] = {"kind": "preset", "path": str(path), "name": path.stem}
    report["config"] = config_to_dict(config)
    shape, classes = dataset_summary(config.data)
    report["data"] = {
        "dataset": config.data.dataset,
        "image_shape": list(shape),
        "classes": list(classes) if classes else None,
    }
    if classes or not config.model.conditional:  # a folder's classes are known only once read
        report["architecture"] = architecture(config, shape, len(classes or ()))
    return report


def inspect_checkpoint(path: Path) -> dict[str, Any]:
    health = checkpoint_health(path)
    if not health["loads"]:
        raise CheckpointError(health["error"])
    report: dict[str, Any] = {"kind": "checkpoint", "path": str(path), "checkpoints": [health]}
    state = health.pop("_state", None)
    if state is not None:
        _describe_state(report, state)
    return report


def inspect_run(run: RunDir) -> dict[str, Any]:
    report: dict[str, Any] = {"kind": "run", "path": str(run.path), "name": run.path.name}
    healths = [checkpoint_health(p) for p in run.checkpoint_files() if p.is_file()]
    states = [state for h in healths if (state := h.pop("_state", None)) is not None]
    report["checkpoints"] = healths
    if not states:
        raise CheckpointError("; ".join(h["error"] for h in healths) or "no checkpoints")
    _describe_state(report, max(states, key=lambda s: int(s["step"])))
    report["progress"] = {**report.get("progress", {}), **_progress(run.log.read())}
    if run.evaluations.is_file():
        try:
            records = json.loads(run.evaluations.read_text())
            report["evaluation"] = records[-1] if isinstance(records, list) else records
        except (OSError, json.JSONDecodeError, IndexError) as exc:
            report["evaluation"] = {"error": f"unreadable eval.json ({exc})"}
    report["files"] = sorted(
        str(p.relative_to(run.path)) for p in run.path.iterdir() if not p.name.startswith(".")
    )
    return report


def _describe_state(report: dict[str, Any], state: dict[str, Any]) -> None:
    try:
        config = config_from_dict(state["config"])
    except ConfigError as exc:
        report["config_error"] = str(exc)
        return
    report["config"] = config_to_dict(config)
    data = state.get("data") or {}
    if data:
        report["data"] = {
            "dataset": data.get("dataset"),
            "split": data.get("split"),
            "images": data.get("num_images"),
            "image_shape": data.get("image_shape"),
            "classes": data.get("class_names"),
            "source": data.get("source"),
        }
        shape = tuple(int(v) for v in data.get("image_shape", ()))
        if len(shape) == 3:
            report["architecture"] = architecture(config, shape, len(data.get("class_names", [])))
    report["progress"] = {
        "epochs_done": int(state["epoch"]),
        "epochs_planned": config.training.epochs,
        "steps": int(state["step"]),
        "mid_epoch_step": int(state.get("step_in_epoch", 0)),
        "seconds": round(float(state.get("elapsed", 0.0)), 1),
        "ema": state.get("ema") is not None,
    }
    report["versions"] = state.get("versions", {})


def checkpoint_health(path: Path) -> dict[str, Any]:
    """Size, sha256, whether it loads safely, what it holds and whether it can resume."""
    health: dict[str, Any] = {"file": path.name, "bytes": path.stat().st_size}
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    health["sha256"] = digest.hexdigest()
    try:
        state = load_checkpoint(path)
    except CheckpointError as exc:
        health.update(loads=False, error=str(exc), can_resume=False)
        return health
    health["loads"] = True
    health["contains"] = sorted(k for k, v in state.items() if v is not None)
    missing = [k for k in RESUME_KEYS if state.get(k) is None]
    health["can_resume"] = not missing
    if missing:
        health["missing_for_resume"] = missing
    health["epoch"], health["step"] = int(state["epoch"]), int(state["step"])
    health["_state"] = state
    return health


def architecture(config: Config, image_shape: tuple[int, ...], num_classes: int) -> dict[str, Any]:
    """Layer-by-layer output shapes and parameter counts of G and D, from a traced forward."""
    try:
        g, d = build_models(config.model, image_shape, num_classes)  # type: ignore[arg-type]
    except GancliError as exc:
        return {"error": str(exc)}
    z = torch.zeros(2, config.model.z_dim)
    labels = torch.zeros(2, dtype=torch.long)
    with torch.no_grad():
        g_rows = _trace(g, z, labels)
        d_rows = _trace(d, g(z, labels), labels)
    return {"generator": _summary(g, g_rows), "discriminator": _summary(d, d_rows)}


def _trace(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    layers = {layer: "" for layer in model.get_submodule("net").children()}
    # modules beside the main stack, e.g. the class embedding of projection conditioning
    layers.update({m: f"{name}: " for name, m in model.named_children() if name != "net"})

    def hook(module: nn.Module, _: Any, output: torch.Tensor) -> None:
        rows.append(
            {
                "layer": layers[module] + layer_name(module),
                "output": list(output.shape[1:]),
                "parameters": sum(p.numel() for p in module.parameters()),
            }
        )

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
    if isinstance(module, (nn.modules.batchnorm._BatchNorm, ClassBatchNorm2d)):
        return f"{name}({module.num_features})"
    if isinstance(module, nn.GroupNorm):
        return f"LayerNorm(C,H,W of {module.num_channels})"
    if isinstance(module, nn.LayerNorm):
        return f"LayerNorm({module.normalized_shape[0]})"
    if isinstance(module, nn.LeakyReLU):
        return f"LeakyReLU({module.negative_slope})"
    return name


def _summary(model: nn.Module, rows: list[dict[str, Any]]) -> dict[str, Any]:
    tensors = [*model.parameters(), *model.buffers()]
    return {
        "layers": rows,
        "parameters": sum(p.numel() for p in model.parameters()),
        "size_mb": round(sum(t.numel() * t.element_size() for t in tensors) / 2**20, 2),
    }


def _progress(records: list[dict[str, Any]]) -> dict[str, Any]:
    steps = [r for r in records if r.get("kind") == "step"]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    out: dict[str, Any] = {}
    if epochs:
        last = epochs[-1]
        out["last_epoch"] = {k: last[k] for k in ("epoch", "loss_d", "loss_g", "d_real", "d_fake")}
        rates = [r["images_per_second"] for r in epochs if r.get("images_per_second")]
        out["images_per_second"] = round(sum(rates) / len(rates), 1) if rates else None
    if steps:
        out["loss_d_sparkline"] = sparkline([r["loss_d"] for r in steps])
        out["loss_g_sparkline"] = sparkline([r["loss_g"] for r in steps])
    return out


def sparkline(values: list[float], width: int = 40) -> str:
    """Values -> a row of block characters, resampled to at most `width` points."""
    if not values:
        return ""
    if len(values) > width:
        values = [values[i * len(values) // width] for i in range(width)]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(SPARK[min(7, int((v - low) / span * 8))] for v in values)
