"""The shipped evaluators, `gancli evaluate` and evaluation during training."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from helpers import IDX_ROOT_SIZES
from typer.testing import CliRunner

from gancli.cli import app
from gancli.engine.config import DataConfig
from gancli.engine.errors import CheckpointError
from gancli.engine.evaluator import (
    SHIPPED_DIR,
    SHIPPED_SHA256,
    evaluation_splits,
    load_evaluator,
    read_evaluator,
)

runner = CliRunner()
CPU = torch.device("cpu")


def _invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("name", sorted(SHIPPED_SHA256))
def test_shipped_evaluators_are_pinned_small_and_load_weights_only(name: str) -> None:
    path = SHIPPED_DIR / f"{name}.pt"
    blob = path.read_bytes()
    assert hashlib.sha256(blob).hexdigest() == SHIPPED_SHA256[name]
    assert len(blob) < 400_000  # a few hundred KB: shipped inside the wheel
    evaluator = read_evaluator(path, SHIPPED_SHA256[name])
    assert evaluator.dataset == name and evaluator.accuracy > 0.9


@pytest.mark.parametrize("name,floor", [("mnist", 0.992), ("fashion-mnist", 0.91)])
@pytest.mark.slow
def test_evaluator_accuracy_on_the_real_test_split(
    name: str, floor: float, real_data_dir: Path
) -> None:
    """The README's figures: measured here again on the full test split, not read from the file."""
    evaluator = load_evaluator(DataConfig(dataset=name), real_data_dir, CPU)
    _, test = evaluation_splits(DataConfig(dataset=name), real_data_dir)
    assert len(test) == 10_000
    predicted = evaluator.embed(test.images).predicted
    accuracy = float((predicted == test.labels).float().mean())
    assert accuracy >= floor
    assert accuracy == pytest.approx(evaluator.accuracy, abs=1e-4)


def test_a_damaged_evaluator_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "mnist.pt"
    blob = bytearray((SHIPPED_DIR / "mnist.pt").read_bytes())
    blob[len(blob) // 2] ^= 0x01
    copy.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="damaged or was replaced"):
        read_evaluator(copy, SHIPPED_SHA256["mnist"])


def test_one_split_datasets_hold_out_a_fixed_fifth(data_dir: Path) -> None:
    train, heldout = evaluation_splits(DataConfig(dataset="notmnist"), data_dir)
    total = IDX_ROOT_SIZES["notMNIST"]["t10k"]
    assert (len(train), len(heldout)) == (total - total // 5, total // 5)
    again = evaluation_splits(DataConfig(dataset="notmnist"), data_dir)[1]
    assert torch.equal(heldout.images, again.images)


def test_evaluate_a_run_with_floor_and_eval_json(
    trained_runs: dict[str, Path], tmp_path: Path
) -> None:
    run = Path(shutil.copytree(trained_runs["cgan"], tmp_path / "cgan"))  # it writes eval.json
    code, out, err = _invoke("evaluate", str(run), "-n", "500", "--json", "--device", "cpu")
    assert code == 0, err
    report = json.loads(out)
    model, floor = report["model"], report["floor"]
    for key in ("fid", "kid", "inception_score", "precision", "recall", "coverage", "accuracy"):
        assert key in model and key in floor
    # 3 tiny epochs on 320 images: far from the real data, which scores near its floor.
    # (The evaluator's accuracy on the real MNIST is checked on the real test split.)
    assert floor["fid"] < model["fid"]
    assert floor["accuracy"] > 0.5 and floor["coverage"] == 10
    assert len(model["accuracy_per_class"]) == 10
    assert report["evaluator_sha256"] == SHIPPED_SHA256["mnist"]
    saved = json.loads((run / "eval.json").read_text())
    assert saved[-1]["model"]["fid"] == model["fid"] and saved[-1]["n"] == 500
    code, out, _ = _invoke("evaluate", str(run), "-n", "500", "--json", "--device", "cpu")
    assert json.loads(out)["model"] == model  # --seed 0 both times: the same figures
    assert len(json.loads((run / "eval.json").read_text())) == len(saved) + 1


def test_evaluate_prints_a_table_and_inspect_shows_it(
    trained_runs: dict[str, Path], tmp_path: Path
) -> None:
    run = Path(shutil.copytree(trained_runs["dcgan-ema"], tmp_path / "dcgan-ema"))
    code, out, err = _invoke("evaluate", str(run), "-n", "300", "--no-floor", "--seed", "3")
    assert code == 0, err
    assert "FID" in out and "classes covered" in out and "EMA" in out
    code, out, _ = _invoke("inspect", str(run))
    assert code == 0 and "last evaluation" in out and "n=300" in out


def test_evaluate_rejects_bad_requests(trained_runs: dict[str, Path], tmp_path: Path) -> None:
    run = str(trained_runs["cgan"])
    code, _, err = _invoke("evaluate", run, "-n", "10")
    assert code == 2 and err.startswith("error: -n 10") and "\n" not in err.strip()
    code, _, err = _invoke("evaluate", run, "--extractor", "vgg")
    assert code == 2 and "--extractor" in err
    code, _, err = _invoke("evaluate", str(tmp_path / "nothing"))
    assert code == 2 and "no run directory or checkpoint" in err


def test_inception_offline_is_one_clear_line(trained_runs: dict[str, Path]) -> None:
    code, out, err = _invoke(
        "evaluate", str(trained_runs["cgan"]), "-n", "100", "--extractor", "inception"
    )
    assert code == 2 and out == ""
    *stages, last = err.splitlines()  # the stages begun before the refusal, then one line
    assert last.startswith("error: --extractor inception needs torchvision's Inception-v3")
    assert stages == ["loading the evaluator and the real images"]


@pytest.mark.slow
def test_folder_evaluator_is_trained_once_and_cached(tmp_path: Path, data_dir: Path) -> None:
    from gancli.engine.data import load_dataset
    from gancli.engine.grids import to_pil

    mnist = load_dataset(DataConfig(dataset="mnist", limit=600), data_dir)
    folder = tmp_path / "pictures"
    for i, (image, label) in enumerate(zip(mnist.images, mnist.labels.tolist(), strict=True)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        to_pil(image).save(folder / str(label) / f"{i}.png")
    config = DataConfig(dataset=f"folder:{folder}", image_size=16, channels=1)
    said: list[str] = []
    first = load_evaluator(config, None, CPU, said.append)
    assert any("training an evaluator" in line for line in said)
    said.clear()
    second = load_evaluator(config, None, CPU, said.append)
    assert said == [] and second.sha256 == first.sha256
    assert first.accuracy > 0.5  # 480 training images at 16x16: well above chance (10%)
    # A cached file with the right shapes but damaged values is refused, then trained again.
    (cached,) = (Path(os.environ["XDG_CACHE_HOME"]) / "gancli" / "evaluators").glob("*.pt")
    good = torch.load(cached, weights_only=True)
    for damage, why in (
        (lambda p: p.update(heldout_accuracy=float("nan")), "is not a fraction"),
        (lambda p: p.update(heldout_accuracy="high"), "could not convert"),
        (lambda p: next(iter(p["state_dict"].values())).fill_(float("inf")), "NaN or Inf"),
    ):
        payload = {**good, "state_dict": {k: v.clone() for k, v in good["state_dict"].items()}}
        damage(payload)
        torch.save(payload, cached)
        with pytest.raises(CheckpointError, match=why):
            read_evaluator(cached)
    said.clear()
    again = load_evaluator(config, None, CPU, said.append)
    assert any("retraining the cached evaluator" in line for line in said), said
    assert again.class_names == first.class_names and 0.5 < again.accuracy <= 1
    shutil.rmtree(folder / "3")  # different images: a different evaluator
    load_evaluator(config, None, CPU, said.append)
    assert any("training an evaluator" in line for line in said)


def test_eval_every_records_fid_and_coverage_while_training(tmp_path: Path) -> None:
    code, out, err = _invoke(
        "train", "--preset", "cgan-mnist", "--limit", "256", "--batch-size", "32",
        "--epochs", "2", "--eval-every", "1", "--set", "training.eval_samples=200",
        "--out", str(tmp_path), "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    run = tmp_path / "cgan-mnist-001"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["epoch"] for r in evals] == [1, 2]
    assert all(r["fid"] > 0 and 0 <= r["coverage"] <= 10 and "accuracy" in r for r in evals)
    assert "FID" in out and "classes covered" in out


def test_a_drop_in_coverage_is_a_warning() -> None:
    from gancli.engine.health import HealthMonitor

    monitor = HealthMonitor(True, torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4))
    assert monitor.after_eval({"epoch": 1, "coverage": 4}, 10) is None
    assert monitor.after_eval({"epoch": 2, "coverage": 10}, 10) is None
    warning = monitor.after_eval({"epoch": 3, "coverage": 7}, 10)
    assert warning is not None and "7/10 classes, down from 10" in warning


def test_evaluate_tells_each_stage_and_counts_the_samples(trained_runs: dict[str, Path]) -> None:
    from gancli.engine.generator import load_generator
    from gancli.engine.runs import RunDir
    from gancli.engine.scoring import EvalRequest, score_generator

    heard: list[tuple[str, int, int | None]] = []
    trained = load_generator(RunDir(trained_runs["cgan"]).last_checkpoint, CPU)
    score_generator(trained, EvalRequest(n=300, floor=True), progress=lambda *a: heard.append(a))
    stages = list(dict.fromkeys(stage for stage, _, _ in heard))
    assert stages == [
        "loading the evaluator and the real images",
        "embedding the held-out real images",
        "generating",
        "scoring the samples",
        "scoring real training images (the floor)",
    ]
    counts = [done for stage, done, total in heard if stage == "generating" and total == 300]
    assert counts == sorted(counts) and counts[-1] == 300
