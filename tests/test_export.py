"""`gancli export`: every format, read back without gancli, against `gancli sample`'s images."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import gancli
from gancli.cli import app
from gancli.engine import export
from gancli.engine.config import config_from_dict, load_config
from gancli.engine.generator import SampleRequest, TrainedGenerator, load_generator, sample_batches
from gancli.engine.models import build_models

runner = CliRunner()
SEED = 11
N = 1030  # past one noise chunk (1,024): the second chunk's seed is checked too
SUFFIX = {
    "state-dict": ".pt",
    "safetensors": ".safetensors",
    "torchscript": ".torchscript",
    "onnx": ".onnx",
}

# Run with only torch, numpy, safetensors and onnxruntime: gancli cannot even be imported,
# so nothing the files need can come from it. Argument: JSON {"threads", "cases": [...]}.
WITHOUT_GANCLI = r"""
import importlib.abc, json, sys

class NoGancli(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "gancli" or name.startswith("gancli."):
            raise ImportError("this check runs without gancli")
        return None

sys.meta_path.insert(0, NoGancli())

import numpy as np
import torch

args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])


def inputs(side, seed, n, classes):
    # `gancli sample --seed SEED -n N`'s inputs, from the recipe in the sidecar alone
    recipe, cond = side["gancli_sample"], side["conditioning"]
    for k, start in enumerate(range(0, n, recipe["chunk"])):
        count = min(recipe["chunk"], n - start)
        s = (seed * recipe["seed_multiplier"] + k) % recipe["seed_modulus"]
        z = torch.randn(count, side["z_dim"], generator=torch.Generator().manual_seed(s))
        if cond["kind"] == "clusters":
            prior = torch.tensor(cond["cluster_prior"], dtype=torch.float32)
            gen = torch.Generator().manual_seed(s + recipe["cluster_seed_offset"])
            labels = torch.multinomial(prior, count, replacement=True, generator=gen)
        elif cond["kind"] == "classes":
            labels = torch.tensor(classes)[torch.arange(start, start + count) * len(classes) // n]
        else:
            labels = None
        yield z, labels


def generate(case, side):
    names = [spec["name"] for spec in side["inputs"]]
    if side["format"] == "torchscript":
        module = torch.jit.load(case["file"])
        run = lambda *xs: module(*xs).numpy()
    else:
        import onnxruntime
        session = onnxruntime.InferenceSession(case["file"], providers=["CPUExecutionProvider"])
        run = lambda *xs: session.run(
            ["images"], {name: x.numpy() for name, x in zip(names, xs)}
        )[0]
    images, labels = [], []
    with torch.no_grad():
        for z, y in inputs(side, case["seed"], case["n"], case["classes"]):
            feed = (z, y) if y is not None else (z,)
            assert len(feed) == len(names), names
            for part in zip(*(x.split(500) for x in feed)):  # sample's --batch-size
                x = run(*part)
                images.append(np.clip(np.round((x + 1) * 127.5), 0, 255).astype(np.uint8))
            labels.append(y if side["conditional"] else torch.full((len(z),), -1))
    return np.concatenate(images), torch.cat(labels).numpy()


results = []
for case in args["cases"]:
    with open(case["sidecar"]) as fh:
        side = json.load(fh)
    if side["holds_graph"]:
        images, labels = generate(case, side)
        sample = np.load(case["npz"])
        diff = np.abs(images.astype(np.int16) - sample["images"].astype(np.int16))
        results.append({
            "max_level_diff": int(diff.max()),
            "differing_pixels": int((diff > 0).sum()),
            "labels_equal": bool(np.array_equal(labels, sample["labels"])),
            "shape": list(images.shape),
        })
    else:
        if side["format"] == "safetensors":
            from safetensors.torch import load_file
            tensors = load_file(case["file"])
        else:
            tensors = torch.load(case["file"], weights_only=True)
        state = torch.load(case["checkpoint"], weights_only=True)
        reference = state["ema" if side["source"]["ema"] else "generator"]
        results.append({
            "plain_dict": type(tensors) is dict,
            "names_equal": sorted(tensors) == sorted(reference),
            "shapes_equal": all(tensors[k].shape == v.shape for k, v in reference.items()),
            "values_equal": all(torch.equal(tensors[k], v) for k, v in reference.items()),
            "tensors": len(tensors),
        })
print(json.dumps({"results": results, "gancli_imported": "gancli" in sys.modules}))
"""


def invoke(*args: Any):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result, code: int, fragment: str) -> None:
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def prepared(trained_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """Copies of the shared tiny runs (exports land inside them) and, for each, what
    `gancli sample --seed SEED -n N --out x.npz` writes: all classes for the cgan."""
    root = tmp_path_factory.mktemp("export")
    runs, samples = {}, {}
    for key in ("cgan", "dcgan-ema"):
        run = Path(shutil.copytree(trained_runs[key], root / trained_runs[key].name))
        npz = root / f"{key}.npz"
        classes = ["--class", "all"] if key == "cgan" else []
        result = invoke(
            "sample", run, "--seed", SEED, "-n", N, *classes, "--out", npz, "--device", "cpu"
        )
        assert result.exit_code == 0, result.output
        runs[key], samples[key] = run, npz
    return runs, samples


def run_without_gancli(cases: list[dict[str, Any]], cwd: Path) -> list[dict[str, Any]]:
    arg = json.dumps({"threads": torch.get_num_threads(), "cases": cases})
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_GANCLI, arg], capture_output=True, text=True, cwd=cwd
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["gancli_imported"] is False
    return report["results"]


def check_sidecar(side: dict[str, Any], key: str, fmt: str, out: Path, run: Path) -> None:
    checkpoint = run / "checkpoints" / "last.pt"
    state = torch.load(checkpoint, weights_only=True)
    assert side["format"] == fmt and side["file"] == out.name and side["sha256"] == sha256(out)
    assert side["source"]["sha256"] == sha256(checkpoint)
    assert side["source"]["epoch"] == state["epoch"] == 3
    assert side["gancli_version"] == gancli.__version__
    assert side["z_dim"] == state["config"]["model"]["z_dim"] == side["inputs"][0]["shape"][1]
    assert side["image_shape"] == [1, 28, 28] and side["output_range"] == [-1.0, 1.0]
    assert side["noise"]["distribution"] == "normal" and side["noise"]["std"] == 1.0
    assert [spec["name"] for spec in side["inputs"]] == ["z", "labels"]
    if key == "cgan":
        assert side["conditional"] is True and side["conditioning"]["kind"] == "classes"
        assert side["class_names"] == list("0123456789") and side["num_classes"] == 10
        assert side["source"]["ema"] is False  # the run kept no EMA
    else:
        assert side["conditional"] is False and side["class_names"] == []
        prior = torch.tensor(side["conditioning"]["cluster_prior"], dtype=torch.float32)
        assert torch.equal(prior, state["clusters"]["prior"].float())
        assert side["source"]["ema"] is True  # the EMA generator by default


@pytest.mark.parametrize("fmt", list(SUFFIX))
@pytest.mark.slow
def test_export_reproduces_sample_without_gancli(
    fmt: str, prepared: tuple[dict[str, Path], dict[str, Path]], tmp_path: Path
) -> None:
    runs, samples = prepared
    cases = []
    for key, run in runs.items():
        result = invoke("export", run, "--format", fmt, "--json")
        assert result.exit_code == 0, result.output
        payload = json.loads(result.stdout)
        out = Path(payload["out"])
        assert out == run / "export" / f"generator{SUFFIX[fmt]}"  # the default --out
        sidecar = json.loads(Path(payload["sidecar"]).read_text())
        assert payload["sidecar"] == f"{out}.json"
        check_sidecar(sidecar, key, fmt, out, run)
        if sidecar["holds_graph"]:
            assert payload["check"]["max_abs_diff"] <= 1e-4
        cases.append(
            {
                "file": str(out),
                "sidecar": payload["sidecar"],
                "npz": str(samples[key]),
                "checkpoint": str(run / "checkpoints" / "last.pt"),
                "seed": SEED,
                "n": N,
                "classes": list(range(10)) if key == "cgan" else [],
            }
        )
    results = run_without_gancli(cases, tmp_path)
    for case, found in zip(cases, results, strict=True):
        if fmt in ("torchscript", "onnx"):
            assert found["shape"] == [N, 1, 28, 28] and found["labels_equal"], found
            # ONNX Runtime's kernels round differently from PyTorch's: one level at most
            assert found["max_level_diff"] <= (1 if fmt == "onnx" else 0), found
        else:
            assert found["plain_dict"] and found["names_equal"], found
            assert found["shapes_equal"] and found["values_equal"], found
            assert_rebuilt_model_matches(case)


def assert_rebuilt_model_matches(case: dict[str, Any]) -> None:
    """The weights, in the network the sidecar's config describes, draw `sample`'s images."""
    side = json.loads(Path(case["sidecar"]).read_text())
    if side["format"] == "safetensors":
        from safetensors.torch import load_file

        tensors = load_file(case["file"])
    else:
        tensors = torch.load(case["file"], weights_only=True)
    shape = tuple(side["image_shape"])
    model, _ = build_models(
        config_from_dict(side["config"]).model, shape, len(side["dataset"]["class_names"])
    )
    model.load_state_dict(tensors)
    trained = load_generator(Path(case["checkpoint"]))
    trained.model = model.eval()
    request = SampleRequest(case["n"], tuple(case["classes"]), case["seed"])
    images = torch.cat([x for x, _ in sample_batches(trained, request)])
    assert np.array_equal(images.numpy(), np.load(case["npz"])["images"])


def test_no_ema_exports_the_raw_generator(
    prepared: tuple[dict[str, Path], dict[str, Path]], tmp_path: Path
) -> None:
    run = prepared[0]["dcgan-ema"]
    out = tmp_path / "raw.pt"
    result = invoke("export", run, "--format", "state-dict", "--no-ema", "--out", out)
    assert result.exit_code == 0, result.output
    assert (
        result.output.startswith(f"wrote {out} (") and "the generator of epoch 3" in result.output
    )
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    tensors = torch.load(out, weights_only=True)
    assert all(torch.equal(tensors[k], v) for k, v in state["generator"].items())
    assert not all(torch.equal(tensors[k], v) for k, v in state["ema"].items())
    assert json.loads((tmp_path / "raw.pt.json").read_text())["source"]["ema"] is False
    cgan = prepared[0]["cgan"]
    result = invoke("export", cgan, "-f", "state-dict", "--ema", "--out", tmp_path / "x.pt")
    one_error_line(result, 2, "kept no EMA generator")
    assert not (tmp_path / "x.pt").exists()


def test_export_errors(prepared: tuple[dict[str, Path], dict[str, Path]], tmp_path: Path) -> None:
    run = prepared[0]["cgan"]
    existing = tmp_path / "keep.pt"
    existing.write_bytes(b"precious")
    before = existing.stat().st_mtime_ns
    one_error_line(
        invoke("export", run, "-f", "state-dict", "--out", existing), 2, "already exists"
    )
    assert existing.read_bytes() == b"precious" and existing.stat().st_mtime_ns == before
    assert not (tmp_path / "keep.pt.json").exists()
    # a sidecar in the way is refused too, before anything is written
    (tmp_path / "new.pt.json").write_text("{}")
    result = invoke("export", run, "-f", "state-dict", "--out", tmp_path / "new.pt")
    one_error_line(result, 2, "new.pt.json already exists")
    assert not (tmp_path / "new.pt").exists()
    assert invoke("export", run, "-f", "state-dict", "--out", existing, "--force").exit_code == 0
    assert (
        torch.load(existing, weights_only=True).keys()
        == load_generator(run / "checkpoints" / "last.pt").model.state_dict().keys()
    )

    one_error_line(invoke("export", run, "--format", "pickle"), 2, "--format 'pickle'")
    one_error_line(invoke("export", run), 2, "--format")
    result = invoke("export", run, "-f", "torchscript", "--out", tmp_path / "g.onnx")
    one_error_line(result, 2, "the name says --format onnx")
    one_error_line(invoke("export", tmp_path / "missing", "-f", "onnx"), 2, "no run directory")
    (tmp_path / "not-a-run").mkdir()
    one_error_line(invoke("export", tmp_path / "not-a-run", "-f", "onnx"), 2, "gancli run?")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    one_error_line(invoke("export", junk, "-f", "onnx"), 2, "not a readable gancli checkpoint")
    last = run / "checkpoints" / "last.pt"
    result = invoke("export", last, "-f", "state-dict", "--out", last, "--force")
    one_error_line(result, 2, "is the checkpoint being exported")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_missing_package_names_the_extra(
    prepared: tuple[dict[str, Path], dict[str, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "safetensors", None)  # import now fails
    result = invoke("export", prepared[0]["cgan"], "-f", "safetensors")
    one_error_line(result, 2, "pip install 'gancli[export]'")


def test_a_file_that_fails_its_check_is_not_published(
    prepared: tuple[dict[str, Path], dict[str, Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(export, "CHECK_TOLERANCE", -1.0)  # no difference is small enough
    out = tmp_path / "g.torchscript"
    result = invoke("export", prepared[0]["cgan"], "-f", "torchscript", "--out", out)
    one_error_line(result, 1, "differs from the checkpoint's")
    assert os.listdir(tmp_path) == []  # neither file, nor a temporary one


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_a_generator_without_labels_takes_z_alone(tmp_path: Path) -> None:
    """Plain wgan-mnist's G reads no labels: the graphs take z only, and the sidecar says so."""
    import onnxruntime

    config = load_config("wgan-mnist", ["model.clusters=0"], {})
    generator, _ = build_models(config.model, (1, 28, 28), 10)
    trained = TrainedGenerator(
        generator.eval(), config, tuple("0123456789"), (1, 28, 28), tmp_path / "x.pt", False, 0
    )
    z = torch.randn(5, config.model.z_dim)
    with torch.no_grad():
        expected = generator(z, None)
    for fmt in ("torchscript", "onnx"):
        out = tmp_path / f"g{SUFFIX[fmt]}"
        export.export_generator(trained, "0" * 64, fmt, out)
        side = json.loads((tmp_path / f"g{SUFFIX[fmt]}.json").read_text())
        assert [spec["name"] for spec in side["inputs"]] == ["z"]
        assert side["conditioning"] == {"kind": "none", "input": None}
        if fmt == "torchscript":
            with torch.no_grad():
                got = torch.jit.load(str(out))(z)
        else:
            session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
            assert [i.name for i in session.get_inputs()] == ["z"]
            got = torch.from_numpy(session.run(["images"], {"z": z.numpy()})[0])
        assert torch.allclose(got, expected, atol=1e-5)
