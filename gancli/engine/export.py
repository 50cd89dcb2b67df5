"""Usage: export(ExportJob(format="onnx", run="runs/cgan-digits-001"))

The generator alone, for use without gancli: its weights (a torch state dict or a
safetensors file) or its network as a graph (TorchScript, ONNX), with a JSON sidecar
beside it (`generator.onnx.json`) that says how to call it: the inputs in order, the noise,
the classes or the clusters and their shares, the image shape, the output range and how
`gancli sample` turns it into pixels, and where it came from. Each file is read back
before it is published and checked against the generator it came from.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import gancli
from gancli.engine.config import config_to_dict
from gancli.engine.errors import CheckpointError, ConfigError, ExportError, first_line
from gancli.engine.files import atomic_write, check_target, check_writable, file_sha256
from gancli.engine.generator import (
    CLUSTER_STREAM,
    NOISE_CHUNK,
    SEED_MODULUS,
    SEED_MULTIPLIER,
    SampleRequest,
    TrainedGenerator,
    load_generator,
    sample_inputs,
)
from gancli.engine.runs import EXPORTED, resolve_checkpoint, runs_root

SIDECAR_VERSION = 1
EXTRA = "pip install 'gancli[export]'"
CHECK_SAMPLES = 16  # images generated to compare an exported graph with the generator
TRACE_BATCH = 2  # traced at another batch size than checked: a fixed batch would show
CHECK_TOLERANCE = 1e-4  # output units; one uint8 level is 2/255 = 0.0078
LOAD_TRIES = 3  # reads of a checkpoint that a running training keeps replacing


@dataclass(frozen=True)
class Format:
    suffix: str  # of the default file name
    packages: tuple[str, ...]  # imported only when this format is asked for
    graph: bool  # the file holds the network, not only its weights
    call: str  # how the sidecar says to run it


FORMATS = {
    "state-dict": Format(
        ".pt",
        (),
        False,
        "weights only: torch.load(file, weights_only=True) gives the generator's "
        "state_dict; load it into gancli.engine.models.build_models(config.model, "
        "image_shape, len(dataset.class_names))[0] and call it as G(z, labels) in eval mode",
    ),
    "safetensors": Format(
        ".safetensors",
        ("safetensors",),
        False,
        "weights only: safetensors.torch.load_file(file) gives the generator's state_dict; "
        "load it into gancli.engine.models.build_models(config.model, image_shape, "
        "len(dataset.class_names))[0] and call it as G(z, labels) in eval mode",
    ),
    "torchscript": Format(
        ".torchscript",
        (),
        True,
        "torch.jit.load(file)(*inputs), the inputs in the order of `inputs`, under torch.no_grad()",
    ),
    "onnx": Format(
        ".onnx",
        ("onnx", "onnxscript"),
        True,
        "onnxruntime.InferenceSession(file).run(['images'], {name: array for each of `inputs`})[0]",
    ),
}


def check_format(name: str) -> Format:
    """The format called `name`, once the packages it needs import; before any loading."""
    fmt = FORMATS.get(name.lower())
    if fmt is None:
        raise ConfigError(f"--format {name!r}: choose one of {', '.join(FORMATS)}")
    for package in fmt.packages:
        try:
            importlib.import_module(package)
        except ImportError:
            raise ConfigError(
                f"--format {name.lower()} needs the {package} package: {EXTRA}"
            ) from None
    return fmt


def default_out(folder: Path, format_name: str) -> Path:
    """FOLDER/export/generator.SUFFIX: one name per format, so formats never collide."""
    return folder / EXPORTED / f"generator{FORMATS[format_name.lower()].suffix}"


def sidecar_path(out: Path) -> Path:
    """The sidecar keeps the whole file name (generator.onnx.json): exports of several
    formats to one folder then never share a sidecar."""
    return out.with_name(out.name + ".json")


def check_out(out: Path, format_name: str, source: Path, force: bool) -> None:
    """Everything that would stop the write, before the checkpoint is read."""
    sidecar = sidecar_path(out)
    for path in (out, sidecar):
        check_target(path)
    claimed = {".json": None, **{f.suffix: n for n, f in FORMATS.items() if n != "state-dict"}}
    owner = claimed.get(out.suffix.lower(), format_name.lower())
    if owner != format_name.lower():
        what = "a sidecar" if owner is None else f"--format {owner}"
        raise ConfigError(f"--out {out}: the name says {what}, not --format {format_name}")
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; name the file to write")
    if os.path.lexists(out) and _same_file(out, source):
        raise ConfigError(f"--out {out}: is the checkpoint being exported")
    for path in (out, sidecar):
        if os.path.lexists(path) and not force:
            raise ConfigError(f"--out {out}: {path} already exists; pass --force to replace it")
    check_writable(out.parent, "--out")


@dataclass(frozen=True)
class ExportJob:
    """What `gancli export` is asked for, as typed."""

    format: str | None  # state-dict, safetensors, torchscript or onnx
    run: str | None = None  # run folder or checkpoint (None: the latest run under `runs`)
    runs: str | None = None  # runs root (None: $GANCLI_RUNS_DIR or ./runs)
    out: str | None = None  # the file (None: RUN/export/generator.<suffix>)
    ema: bool | None = None  # the EMA generator (None: if the run kept one)
    force: bool = False  # replace an existing out and its sidecar


def export(job: ExportJob) -> dict[str, Any]:
    """`gancli export`: every check that needs no model first (the format and its
    packages, the target), then the generator read and written."""
    if job.format is None:
        raise ConfigError("--format: choose state-dict, safetensors, torchscript or onnx")
    check_format(job.format)
    run, checkpoint = resolve_checkpoint(job.run, runs_root(job.runs))
    target = Path(job.out) if job.out else default_out(run.path if run else Path.cwd(), job.format)
    check_out(target, job.format, checkpoint, job.force)
    trained, sha256 = load_source(checkpoint, job.ema)
    return export_generator(trained, sha256, job.format, target, job.force)


def load_source(checkpoint: Path, ema: bool | None) -> tuple[TrainedGenerator, str]:
    """The generator to export, on the CPU, and the sha256 of the very bytes it was read
    from: a run still training replaces last.pt every epoch, so a checkpoint that
    changed while it was read is read again."""
    for _ in range(LOAD_TRIES):
        before = file_sha256(checkpoint)
        trained = load_generator(checkpoint, "cpu", ema)
        if file_sha256(checkpoint) == before:
            return trained, before
    raise CheckpointError(f"{checkpoint} kept changing while it was read; try again")


def export_generator(
    trained: TrainedGenerator,
    source_sha256: str,
    format_name: str,
    out: Path,
    force: bool = False,
) -> dict[str, Any]:
    """Write the generator to `out` in `format_name` and its sidecar beside it, both as
    export() checked them (check_format, check_out).

    Both are created exclusively unless `force` (of two exports to one name, one fails),
    each through a temporary file; the model is checked before it is published, and the
    sidecar is published last, so a sidecar always describes a complete file.
    """
    name = format_name.lower()
    sidecar = sidecar_path(out)
    model = trained.model.cpu().eval()
    published = False
    try:
        with atomic_write(sidecar, replace=force) as sidecar_tmp:
            with torch.no_grad(), atomic_write(out, replace=force) as tmp:
                check = WRITERS[name](trained, model, tmp)
                digest = file_sha256(tmp)
                size = tmp.stat().st_size
            published = True
            record = describe(trained, source_sha256, name, out, digest, check)
            sidecar_tmp.write_text(json.dumps(record, indent=2) + "\n")
    except BaseException:
        if published and not force:  # ours alone, and without its sidecar: take it back
            out.unlink(missing_ok=True)
        raise
    return {
        "out": str(out),
        "sidecar": str(sidecar),
        "format": name,
        "bytes": size,
        "sha256": digest,
        "checkpoint": str(trained.checkpoint),
        "epoch": trained.epoch,
        "ema": trained.uses_ema,
        "check": check,
    }


# --------------------------------------------------------------------------- the writers


class _Callable(nn.Module):
    """G with exactly the inputs the sidecar lists: (z, labels), or z alone when G takes no
    labels (exporters turn every tensor argument into an input, even an ignored one)."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator(z, labels)


def _inputs(trained: TrainedGenerator) -> tuple[torch.Tensor, ...]:
    """CHECK_SAMPLES inputs drawn as `gancli sample --seed 0` draws them, every class in
    turn for a conditional model: the exported file must match G on these."""
    z, labels, _ = next(sample_inputs(trained, SampleRequest(CHECK_SAMPLES)))
    return (z, labels) if label_kind(trained) != "none" else (z,)


def _compare(expected: torch.Tensor, got: torch.Tensor, by: str) -> dict[str, Any]:
    if got.shape != expected.shape:
        raise ExportError(
            f"the exported generator gives {tuple(got.shape)}, not {tuple(expected.shape)}; "
            "nothing was written"
        )
    diff = float((got.float() - expected).abs().max())
    if not diff <= CHECK_TOLERANCE:  # NaN fails too
        raise ExportError(
            f"the exported generator differs from the checkpoint's by up to {diff:.3g} "
            f"(allowed {CHECK_TOLERANCE}); nothing was written"
        )
    return {"by": by, "samples": len(expected), "max_abs_diff": diff}


def _compare_weights(
    expected: dict[str, torch.Tensor], got: dict[str, Any], by: str
) -> dict[str, Any]:
    same = expected.keys() == got.keys() and all(
        isinstance(got[k], torch.Tensor) and torch.equal(got[k], v) for k, v in expected.items()
    )
    if not same:
        raise ExportError("the exported weights differ from the checkpoint's; nothing was written")
    return {"by": by, "tensors": len(expected), "max_abs_diff": 0.0}


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """A plain dict of contiguous CPU tensors (safetensors refuses channels-last strides)."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def _write_state_dict(trained: TrainedGenerator, model: nn.Module, tmp: Path) -> dict[str, Any]:
    weights = _weights(model)
    buffer = io.BytesIO()
    # Through memory, like the other formats: torch's file writer reports a failed open or
    # write as a RuntimeError, which would hide the OSError (a full disk) behind it.
    torch.save(weights, buffer)
    tmp.write_bytes(buffer.getvalue())
    return _compare_weights(weights, torch.load(tmp, weights_only=True), "torch.load")


def _write_safetensors(trained: TrainedGenerator, model: nn.Module, tmp: Path) -> dict[str, Any]:
    from safetensors.torch import load_file, save

    weights = _weights(model)
    # Bytes written here rather than by save_file, whose files are private (mode 0600)
    # where every other output follows the umask.
    tmp.write_bytes(save(weights))
    return _compare_weights(weights, load_file(str(tmp)), "safetensors")


def _write_torchscript(trained: TrainedGenerator, model: nn.Module, tmp: Path) -> dict[str, Any]:
    inputs = _inputs(trained)
    wrapped = _Callable(model).eval()
    with warnings.catch_warnings():
        # torch.jit is deprecated, and tracing warns about G's shape test on z; the check
        # below, at another batch size than traced, is what tells whether the trace holds.
        warnings.simplefilter("ignore")
        example = tuple(x[:TRACE_BATCH] for x in inputs)
        traced = _exporting("torchscript", torch.jit.trace, wrapped, example, check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)  # through memory, as for state-dict
        tmp.write_bytes(buffer.getvalue())
        loaded = torch.jit.load(str(tmp), map_location="cpu")
    return _compare(wrapped(*inputs), loaded(*inputs), "torch.jit.load")


def _write_onnx(trained: TrainedGenerator, model: nn.Module, tmp: Path) -> dict[str, Any]:
    inputs = _inputs(trained)
    names = [spec["name"] for spec in input_specs(trained)]
    wrapped = _Callable(model).eval()
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on naming the shared axis
        program = _exporting(
            "onnx",
            torch.onnx.export,
            wrapped,
            tuple(x[:TRACE_BATCH] for x in inputs),
            input_names=names,
            output_names=["images"],
            dynamic_shapes={name: {0: batch} for name in names},  # any batch size
            dynamo=True,  # torch.export; the TorchScript-based exporter is deprecated
            external_data=False,  # one self-contained file (fine below protobuf's 2 GB)
            verbose=False,  # otherwise it reports its progress on stdout
        )
        if program is None:
            raise ExportError("onnx export failed (the exporter returned nothing)")
        program.save(str(tmp), external_data=False)
    expected = wrapped(*inputs)
    try:
        import onnxruntime
    except ImportError:
        # onnxruntime is only needed to check the file; without it the file is not checked.
        return {"by": None, "samples": 0, "max_abs_diff": None, "opset": _opset(tmp)}
    session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    feed = {name: x.numpy() for name, x in zip(names, inputs, strict=True)}
    got = torch.from_numpy(session.run(["images"], feed)[0])
    return {**_compare(expected, got, "onnxruntime"), "opset": _opset(tmp)}


def _opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _exporting(what: str, exporter: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """exporter(*args, **kwargs), its failure (exporters raise many kinds) as one line."""
    try:
        return exporter(*args, **kwargs)
    except Exception as exc:
        raise ExportError(f"{what} export failed: {first_line(exc)[:160]}") from None


WRITERS: dict[str, Callable[[TrainedGenerator, nn.Module, Path], dict[str, Any]]] = {
    "state-dict": _write_state_dict,
    "safetensors": _write_safetensors,
    "torchscript": _write_torchscript,
    "onnx": _write_onnx,
}


# --------------------------------------------------------------------------- the sidecar


def label_kind(trained: TrainedGenerator) -> str:
    """What G's second input is: classes, clusters (self-conditioning) or none."""
    if trained.cluster_prior is not None:
        return "clusters"
    return "classes" if trained.conditional else "none"


def input_specs(trained: TrainedGenerator) -> list[dict[str, Any]]:
    """G's inputs, in call order."""
    z_dim = trained.config.model.z_dim
    specs: list[dict[str, Any]] = [
        {"name": "z", "shape": ["batch", z_dim], "dtype": "float32", "holds": "noise, see noise"}
    ]
    kind = label_kind(trained)
    if kind == "classes":
        holds = f"class index 0..{len(trained.class_names) - 1}; class_names[i] names it"
    elif kind == "clusters":
        holds = "cluster index, drawn with the probabilities in conditioning.cluster_prior"
    else:
        return specs
    specs.append({"name": "labels", "shape": ["batch"], "dtype": "int64", "holds": holds})
    return specs


def describe(
    trained: TrainedGenerator,
    source_sha256: str,
    format_name: str,
    out: Path,
    file_sha256: str,
    check: dict[str, Any],
) -> dict[str, Any]:
    """The sidecar: everything needed to sample from the file without gancli."""
    fmt = FORMATS[format_name]
    channels, height, width = trained.image_shape
    conditional = trained.conditional
    return {
        "sidecar_version": SIDECAR_VERSION,
        "format": format_name,
        "file": out.name,
        "sha256": file_sha256,
        "call": fmt.call,
        "holds_graph": fmt.graph,
        "gancli_version": gancli.__version__,
        "torch_version": str(torch.__version__),
        "source": {
            "checkpoint": str(trained.checkpoint),
            "sha256": source_sha256,
            "epoch": trained.epoch,
            "ema": trained.uses_ema,
        },
        "dataset": {"name": trained.config.data.dataset, "class_names": trained.class_names},
        "z_dim": trained.config.model.z_dim,
        "conditional": conditional,
        "num_classes": len(trained.class_names) if conditional else 0,
        "class_names": list(trained.class_names) if conditional else [],
        "conditioning": _conditioning(trained),
        "image_shape": [channels, height, width],
        "inputs": input_specs(trained),
        "outputs": [
            {"name": "images", "shape": ["batch", channels, height, width], "dtype": "float32"}
        ],
        "output_range": [-1.0, 1.0],  # tanh
        "to_uint8": {
            "formula": "clip(round((x + 1) * 127.5), 0, 255), in float32, rounding half to "
            "even (torch.round, numpy.round)",
            "numpy": "np.clip(np.round((x + 1) * 127.5), 0, 255).astype(np.uint8)",
            "torch": "x.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)",
        },
        "noise": {
            "distribution": "normal",
            "mean": 0.0,
            "std": 1.0,
            "shape": ["batch", trained.config.model.z_dim],
            "dtype": "float32",
            "truncation": "optional: `gancli sample --truncation T` redraws entries with |z| > T",
        },
        "gancli_sample": _sample_recipe(),
        "check": check,
        "parameters": sum(p.numel() for p in trained.model.parameters()),
        "config": config_to_dict(trained.config),
    }


def _conditioning(trained: TrainedGenerator) -> dict[str, Any]:
    """The sidecar's word on G's labels: none, classes, or clusters and how to draw them."""
    kind = label_kind(trained)
    conditioning: dict[str, Any] = {"kind": kind, "input": None if kind == "none" else "labels"}
    if kind == "classes":
        conditioning.update(count=len(trained.class_names), draw="any class index, per sample")
    elif trained.cluster_prior is not None:
        prior = trained.cluster_prior.float()
        conditioning.update(
            count=len(prior),
            # float32 as in the checkpoint: torch.multinomial draws differently from float64
            cluster_prior=prior.tolist(),
            draw="torch.multinomial(torch.tensor(cluster_prior, dtype=torch.float32), n, "
            "replacement=True): each cluster in its share of the training images",
        )
    return conditioning


def _sample_recipe() -> dict[str, Any]:
    """How `gancli sample --seed SEED -n N` draws its inputs, to reproduce its images."""
    return {
        "chunk": NOISE_CHUNK,
        "seed_multiplier": SEED_MULTIPLIER,
        "seed_modulus": SEED_MODULUS,
        "cluster_seed_offset": CLUSTER_STREAM,
        "noise": "for chunk k = 0, 1, ... of the N samples, `chunk` at a time: s_k = "
        "(SEED * seed_multiplier + k) % seed_modulus; z = torch.randn(count, z_dim, "
        "generator=torch.Generator().manual_seed(s_k))",
        "clusters": "then labels = torch.multinomial(torch.tensor(cluster_prior, "
        "dtype=torch.float32), count, replacement=True, "
        "generator=torch.Generator().manual_seed(s_k + cluster_seed_offset))",
        "classes": "sample i of N asked for classes c_0..c_m-1 gets class c_(i * m // N)",
        "images": "to_uint8(G(z, labels)), in eval mode",
    }


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
