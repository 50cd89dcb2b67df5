"""`gancli sample` and the sampling engine: labels, seeds, truncation, every output format."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from gancli.cli import app
from gancli.engine.errors import ConfigError
from gancli.engine.generator import (
    SampleRequest,
    load_generator,
    noise_chunks,
    parse_labels,
    request_labels,
    sample_batches,
    sample_inputs,
)
from gancli.engine.scoring import generated_images

runner = CliRunner()
DIGITS = tuple("0123456789")
FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker")


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines


@pytest.mark.parametrize(
    ("specs", "names", "expected"),
    [
        (["7"], DIGITS, [7]),
        (["all"], DIGITS, list(range(10))),
        (["0-9"], DIGITS, list(range(10))),
        (["3-1"], DIGITS, [3, 2, 1]),
        (["1,3,5"], DIGITS, [1, 3, 5]),
        (["2", "4"], DIGITS, [2, 4]),
        (["b"], tuple("ABCDEFGHIJ"), [1]),
        (["A-C"], tuple("ABCDEFGHIJ"), [0, 1, 2]),
        (["sneaker", "t-shirt/top"], FASHION, [7, 0]),
        (["Trouser-Dress"], FASHION, [1, 2, 3]),
    ],
)
def test_parse_labels(specs: list[str], names: tuple[str, ...], expected: list[int]) -> None:
    assert parse_labels(specs, names) == expected


@pytest.mark.parametrize("spec", ["10", "x", "-1", "3-12", "Boot"])
def test_parse_labels_rejects_unknown(spec: str) -> None:
    with pytest.raises(ConfigError, match="unknown class; this model has 10 classes: 0, 1"):
        parse_labels([spec], DIGITS)


def test_noise_is_seeded_per_chunk_and_truncated() -> None:
    a = torch.cat(list(noise_chunks(2500, 8, seed=3)))
    b = torch.cat(list(noise_chunks(2500, 8, seed=3)))
    assert a.shape == (2500, 8) and torch.equal(a, b)
    assert not torch.equal(a, torch.cat(list(noise_chunks(2500, 8, seed=4))))
    # The first samples do not depend on how many are asked for.
    assert torch.equal(torch.cat(list(noise_chunks(100, 8, seed=3))), a[:100])
    t = torch.cat(list(noise_chunks(3000, 8, seed=3, truncation=0.5)))
    assert t.abs().max() <= 0.5 and t.std() < 0.35


def test_labels_are_split_in_blocks() -> None:
    labels = request_labels(SampleRequest(n=7, labels=(4, 9)))
    assert labels.tolist() == [4, 4, 4, 4, 9, 9, 9]
    assert request_labels(SampleRequest(n=3)).tolist() == [-1, -1, -1]


def test_batch_size_does_not_change_the_images(trained_runs: dict[str, Path]) -> None:
    trained = load_generator(trained_runs["cgan"] / "checkpoints" / "last.pt")
    small = torch.cat(
        [x for x, _ in sample_batches(trained, SampleRequest(30, (1, 2), 5, None, 7))]
    )
    big = torch.cat(
        [x for x, _ in sample_batches(trained, SampleRequest(30, (1, 2), 5, None, 500))]
    )
    assert torch.equal(small, big)


def test_png_grid_for_one_digit(trained_runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "seven.png"
    result = invoke("sample", trained_runs["cgan"], "--digit", "7", "-n", "64", "--out", out)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote 64 images of class 7 to {out}"
    with Image.open(out) as img:
        assert img.size[1] == 8 * 30 + 2 and img.mode == "L"
        assert img.size[0] > img.size[1]  # each row is named "7" in a left margin


def test_npz_for_all_classes_and_seeds(trained_runs: dict[str, Path], tmp_path: Path) -> None:
    run = trained_runs["cgan"]
    for name, seed in (("a.npz", 1), ("b.npz", 1), ("c.npz", 2)):
        args = (
            "sample",
            run,
            "--class",
            "all",
            "-n",
            "1000",
            "--seed",
            seed,
            "--out",
            tmp_path / name,
        )
        result = invoke(*args, "--batch-size", "128", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["images"] == 1000
    a, b, c = (np.load(tmp_path / n) for n in ("a.npz", "b.npz", "c.npz"))
    assert a["images"].shape == (1000, 1, 28, 28) and a["images"].dtype == np.uint8
    assert a["labels"].dtype == np.int64
    assert np.bincount(a["labels"]).tolist() == [100] * 10
    assert np.array_equal(a["images"], b["images"])  # same seed, same images
    assert not np.array_equal(a["images"], c["images"])


def test_a_conditional_model_asked_for_no_class_draws_every_class(
    trained_runs: dict[str, Path], tmp_path: Path
) -> None:
    run = trained_runs["cgan"]
    result = invoke("sample", run, "-n", "100", "--out", tmp_path / "all.npz", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["classes"] == list(DIGITS)
    labels = np.load(tmp_path / "all.npz")["labels"]
    assert labels.tolist() == [d for d in range(10) for _ in range(10)]
    grid = invoke("sample", run, "-n", "100", "--out", tmp_path / "all.png")
    assert grid.stdout.strip() == (
        f"wrote 100 images of every class (10, in equal shares) to {tmp_path / 'all.png'}"
    )
    with Image.open(tmp_path / "all.png") as img:  # one row per class, each row named
        assert img.size[1] == 10 * 30 + 2 and img.size[0] > 10 * 30 + 2
    # What G is given, not only what is reported: the classes, never a clamped -1.
    trained = load_generator(run / "checkpoints" / "last.pt")
    (_, given, reported), *_ = sample_inputs(trained, SampleRequest(n=20))
    assert given.tolist() == reported.tolist() == [d for d in range(10) for _ in range(2)]
    _, labels = generated_images(trained, 30, seed=0)  # evaluate's samples
    assert labels is not None and torch.bincount(labels).tolist() == [3] * 10


def test_conditioning_changes_the_images(trained_runs: dict[str, Path]) -> None:
    trained = load_generator(trained_runs["cgan"] / "checkpoints" / "last.pt")
    ones = torch.cat([x for x, _ in sample_batches(trained, SampleRequest(16, (1,), 0))])
    eights = torch.cat([x for x, _ in sample_batches(trained, SampleRequest(16, (8,), 0))])
    assert not torch.equal(ones, eights)


def test_folder_output_names_carry_the_class(trained_runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "pics"
    result = invoke("sample", trained_runs["cgan"], "-c", "3,4", "-n", "4", "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "000000_3.png",
        "000001_3.png",
        "000002_4.png",
        "000003_4.png",
    ]
    with Image.open(out / "000000_3.png") as img:
        assert img.size == (28, 28)


def test_latest_run_and_default_output(trained_runs: dict[str, Path]) -> None:
    root = trained_runs["cgan"].parent
    newest = trained_runs["dcgan-ema"]
    now = time.time()
    os.utime(trained_runs["cgan"] / "checkpoints" / "last.pt", (now - 100, now - 100))
    os.utime(newest / "checkpoints" / "last.pt", (now, now))
    first = invoke("sample", "--runs", root, "-n", "4", "--json")
    second = invoke("sample", "--runs", root, "-n", "4", "--json")
    assert first.exit_code == 0, first.output
    paths = [json.loads(r.stdout)["out"] for r in (first, second)]
    assert paths[0].startswith(str(newest)) and paths[0].endswith("generated/sample-001.png")
    assert paths[1].endswith("generated/sample-002.png")
    assert json.loads(first.stdout)["ema"] is True


def test_ema_choice(trained_runs: dict[str, Path]) -> None:
    path = trained_runs["dcgan-ema"] / "checkpoints" / "last.pt"
    ema, raw = load_generator(path), load_generator(path, ema=False)
    assert ema.uses_ema and not raw.uses_ema
    a = torch.cat([x for x, _ in sample_batches(ema, SampleRequest(8))])
    b = torch.cat([x for x, _ in sample_batches(raw, SampleRequest(8))])
    assert not torch.equal(a, b)
    one_error_line(invoke("sample", trained_runs["cgan"], "--ema"), "kept no EMA generator")


def test_sample_errors(trained_runs: dict[str, Path], tmp_path: Path) -> None:
    one_error_line(
        invoke("sample", trained_runs["dcgan-ema"], "--digit", "7"), "this model is unconditional"
    )
    one_error_line(invoke("sample", trained_runs["cgan"], "--digit", "eleven"), "unknown class")
    one_error_line(invoke("sample", trained_runs["cgan"], "--out", tmp_path / "x.jpg"), "--out")
    one_error_line(invoke("sample", tmp_path / "missing"), "no run directory or checkpoint")
    one_error_line(invoke("sample", "--runs", tmp_path / "empty"), "no trained runs under")
    existing = tmp_path / "keep.png"
    existing.write_bytes(b"precious")
    one_error_line(invoke("sample", trained_runs["cgan"], "--out", existing), "already exists")
    assert existing.read_bytes() == b"precious"
    assert invoke("sample", trained_runs["cgan"], "--out", existing, "--force").exit_code == 0
    assert existing.read_bytes() != b"precious"
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    one_error_line(invoke("sample", bad), "not a readable gancli checkpoint")


def test_truncation_flag(trained_runs: dict[str, Path], tmp_path: Path) -> None:
    result = invoke(
        "sample",
        trained_runs["cgan"],
        "-n",
        "16",
        "--truncation",
        "0.5",
        "--out",
        tmp_path / "t.npz",
    )
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "t.npz")["images"].shape == (16, 1, 28, 28)


def test_scale_enlarges_png_grids_and_folder_images_not_npz(
    trained_runs: dict[str, Path], tmp_path: Path
) -> None:
    run = trained_runs["cgan"]
    plain, big = tmp_path / "plain.png", tmp_path / "big.png"
    assert invoke("sample", run, "-n", "20", "-c", "0-1", "--out", plain).exit_code == 0
    result = invoke("sample", run, "-n", "20", "-c", "0-1", "--out", big, "--scale", "3", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["scale"] == 3
    with Image.open(plain) as small, Image.open(big) as large:
        assert large.size == (3 * small.width, 3 * small.height)
        assert small.resize(large.size, Image.Resampling.NEAREST).tobytes() == large.tobytes()
    folder = tmp_path / "pictures"
    assert invoke("sample", run, "-n", "4", "--out", folder, "--scale", "2").exit_code == 0
    sizes = {Image.open(p).size for p in folder.glob("*.png")}
    assert sizes == {(56, 56)} and len(list(folder.glob("*.png"))) == 4
    npz = invoke("sample", run, "-n", "4", "--out", tmp_path / "s.npz", "--scale", "4")
    assert npz.exit_code == 0 and "(a .npz is not scaled)" in npz.output
    assert np.load(tmp_path / "s.npz")["images"].shape == (4, 1, 28, 28)


def test_scale_refusals(trained_runs: dict[str, Path], tmp_path: Path) -> None:
    run = trained_runs["cgan"]
    out = tmp_path / "x.png"
    for bad in ("0", "17"):
        one_error_line(
            invoke("sample", run, "--scale", bad, "--out", out), "use a whole number from 1 to 16"
        )
    huge = invoke("sample", run, "-n", "20000", "--scale", "16", "--out", out)
    one_error_line(huge, "--scale 16: the grid would be")
    assert "megapixels" in huge.output
    assert not out.exists()
