"""`gancli inspect` and `gancli presets`."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import torch
from typer.testing import CliRunner

from gancli.cli import app
from gancli.engine.config import load_config
from gancli.engine.inspection import sparkline
from gancli.engine.models import build_models

runner = CliRunner()


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def test_inspect_run_json(trained_runs: dict[str, Path]) -> None:
    run = trained_runs["cgan"]
    result = invoke("inspect", run, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["kind"] == "run" and report["name"] == run.name
    assert report["config"]["model"]["conditional"] is True
    assert report["data"]["images"] == 320 and report["data"]["classes"] == list("0123456789")
    progress = report["progress"]
    assert (progress["epochs_done"], progress["epochs_planned"], progress["steps"]) == (3, 3, 30)
    assert len(progress["loss_d_sparkline"]) > 0 and progress["images_per_second"] > 0
    last, previous = report["checkpoints"]
    assert (last["file"], last["epoch"]) == ("last.pt", 3)
    assert (previous["file"], previous["epoch"], previous["loads"]) == ("previous.pt", 2, True)
    digest = hashlib.sha256((run / "checkpoints" / "last.pt").read_bytes()).hexdigest()
    assert last["sha256"] == digest and last["loads"] and last["can_resume"]
    assert {"generator", "discriminator", "opt_g", "rng"} <= set(last["contains"])
    g, d = build_models(load_config("cgan-mnist").model, (1, 28, 28), 10)
    arch = report["architecture"]
    assert arch["generator"]["parameters"] == parameters(g)
    assert arch["discriminator"]["parameters"] == parameters(d)
    assert arch["generator"]["layers"][-1]["output"] == [1, 28, 28]
    # projection conditioning: the image goes in alone, the label meets D's last features
    assert arch["discriminator"]["layers"][0]["layer"] == "Conv2d(1->64, k4 s2 p1)"
    assert arch["discriminator"]["layers"][-2]["layer"] == "FullConv2d(128->1, k7 s1 p0)"
    assert arch["discriminator"]["layers"][-1]["layer"] == "embed: ClassEmbedding(10->6272)"
    assert "progress.gif" in report["files"]


def test_inspect_plain_text_and_checkpoint(trained_runs: dict[str, Path]) -> None:
    result = invoke("inspect", trained_runs["dcgan-ema"])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output
    assert re.search(r"^EMA generator +yes$", result.output, re.MULTILINE)
    assert "generator: " in result.output and "Tanh" in result.output
    ck = invoke("inspect", trained_runs["dcgan-ema"] / "checkpoints" / "last.pt", "--json")
    assert json.loads(ck.stdout)["kind"] == "checkpoint"


def test_inspect_preset_by_name_and_file(tmp_path: Path) -> None:
    by_name = json.loads(invoke("inspect", "wgan-gp-mnist", "--json").stdout)
    assert by_name["kind"] == "preset" and by_name["config"]["objective"]["loss"] == "wgan-gp"
    assert by_name["architecture"]["discriminator"]["layers"][3]["layer"].startswith("LayerNorm")
    custom = tmp_path / "mine.yaml"
    custom.write_text("model:\n  arch: mlp\n")
    by_file = json.loads(invoke("inspect", custom, "--json").stdout)
    assert by_file["architecture"]["generator"]["layers"][0]["layer"] == "Linear(100->256)"


def test_inspect_refuses_broken_checkpoints(tmp_path: Path) -> None:
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"\x00" * 64)
    result = invoke("inspect", bad)
    assert result.exit_code == 2 and result.output.startswith("error: ")
    assert invoke("inspect", "no-such-preset").exit_code == 2


def test_presets_command() -> None:
    listing = invoke("presets")
    assert listing.exit_code == 0
    names = [line.split()[0] for line in listing.output.splitlines()]
    assert {"gan-mnist", "dcgan-mnist", "wgan-mnist", "wgan-gp-mnist", "cgan-mnist"} <= set(names)
    payload = json.loads(invoke("presets", "--json").stdout)
    assert payload["presets"]["wgan-mnist"].startswith("WGAN with weight clipping")


def test_sparkline() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert len(sparkline(list(range(1000)))) == 40
    assert sparkline([]) == "" and sparkline([2, 2]) == "▁▁"


def test_inspect_a_folder_preset(tmp_path: Path) -> None:
    preset = tmp_path / "pets.yaml"
    preset.write_text("data:\n  dataset: folder:pets\n  image_size: 64\n  channels: 3\n")
    report = json.loads(invoke("inspect", preset, "--json").stdout)
    assert report["data"] == {"dataset": "folder:pets", "image_shape": [3, 64, 64], "classes": None}
    assert report["architecture"]["generator"]["layers"][-2]["output"] == [3, 64, 64]
    preset.write_text("data:\n  dataset: folder:pets\nmodel:\n  conditional: true\n")
    conditional = json.loads(invoke("inspect", preset, "--json").stdout)
    assert "architecture" not in conditional  # its classes are known only once the folder is read
