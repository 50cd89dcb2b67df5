"""Real (tiny) training runs: every preset, run-directory contents, exact resume, failures."""

from __future__ import annotations

import math
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import differing, make_mnist_root
from PIL import Image, ImageFont

from gancli.engine import losses, starting
from gancli.engine.checkpoint import load_checkpoint
from gancli.engine.config import list_presets, load_config
from gancli.engine.data import FASHION_CLASSES, cache_home
from gancli.engine.errors import CheckpointError, ConfigError, Interrupted, TrainingError
from gancli.engine.generator import SampleRequest, load_generator, parse_labels, sample_batches
from gancli.engine.listeners import NullReporter
from gancli.engine.options import RuntimeOptions
from gancli.engine.runs import MetricsLog
from gancli.engine.starting import resume_trainer
from gancli.engine.trainer import Trainer

PRESETS = sorted(list_presets())  # every shipped preset


def label_margin(names: tuple[str, ...] | list[str]) -> int:
    """Width of the class-name column left of a conditional grid."""
    font = ImageFont.load_default()
    return 6 + max(math.ceil(font.getlength(name)) for name in names)


TINY = {"data.limit": 320, "training.batch_size": 32, "training.epochs": 1}


def new_trainer(tmp_path: Path, preset: str, data_dir: Path, *sets: str, **flags: Any) -> Trainer:
    config = load_config(preset, list(sets), {**TINY, **flags})
    options = RuntimeOptions(data_dir=str(data_dir), device="cpu")
    return starting.new_trainer(config, options, preset_name=preset, out=str(tmp_path / "runs"))


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.slow
def test_one_epoch_of_each_preset_writes_a_complete_run(
    tmp_path: Path, data_dir: Path, preset: str
) -> None:
    trainer = new_trainer(tmp_path, preset, data_dir)
    result = trainer.fit()
    run = Path(result.run_dir)
    assert run == tmp_path / "runs" / f"{preset}-001"
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "reals.png",
        "losses.png",
        "progress.gif",
        "samples/epoch_0001.png",
        "checkpoints/last.pt",
    ):
        assert (run / name).is_file(), name
    records = MetricsLog(run / "metrics.jsonl").read()
    assert [r["kind"] for r in records][-1] == "epoch"
    assert records[0]["kind"] == "segment" and records[0]["precision"] == "fp32"
    for record in records[1:]:
        for key in ("loss_d", "loss_g", "d_real", "d_fake", "wall"):
            assert math.isfinite(record[key]), (key, record)
    assert result.steps == trainer.steps_per_epoch == 320 // 32 // trainer.config.objective.n_critic
    assert set(result.final) == {"loss_d", "loss_g", "d_real", "d_fake"}
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["epoch"] == 1 and state["step"] == result.steps
    assert state["config"]["objective"]["loss"] == trainer.config.objective.loss
    assert load_config(run / "config.yaml") == trainer.config  # config.yaml is a usable preset


def test_grid_layouts(tmp_path: Path, data_dir: Path) -> None:
    cond = new_trainer(tmp_path, "cgan-mnist", data_dir).fit()
    # 10 rows (one per class) x 10 columns of 28 px with 2 px padding, class names on the left.
    margin = label_margin(tuple("0123456789"))
    with Image.open(Path(cond.run_dir) / "samples" / "epoch_0001.png") as grid:
        assert grid.size == (margin + 10 * 30 + 2, 10 * 30 + 2)
        assert grid.crop((0, 0, margin, 302)).getextrema()[1] > 200  # the names are drawn
    with Image.open(Path(cond.run_dir) / "reals.png") as reals:
        assert reals.size == (margin + 302, 302)
    state = load_checkpoint(Path(cond.run_dir) / "checkpoints" / "last.pt")
    assert state["fixed_labels"].tolist() == [c for c in range(10) for _ in range(10)]
    plain = new_trainer(tmp_path, "dcgan-mnist", data_dir, "training.grid_size=36").fit()
    with Image.open(Path(plain.run_dir) / "samples" / "epoch_0001.png") as grid:
        assert grid.size == (6 * 30 + 2, 6 * 30 + 2)


def test_conditional_reals_show_one_class_per_row(tmp_path: Path, data_dir: Path) -> None:
    trainer = new_trainer(tmp_path, "cgan-mnist", data_dir)
    with Image.open(trainer.run.reals) as img:
        pixels = torch.from_numpy(np.asarray(img).copy())[:, label_margin(tuple("0123456789")) :]
    assert pixels.shape == (302, 302)
    data = trainer.data
    for row in range(10):
        tile = pixels[2 + row * 30 : 2 + row * 30 + 28, 2:30]
        matches = [i for i in range(len(data)) if torch.equal(data.images[i, 0], tile)]
        assert matches and int(data.labels[matches[0]]) == row


def test_run_directories_are_numbered_never_reused(tmp_path: Path, data_dir: Path) -> None:
    a = new_trainer(tmp_path, "gan-mnist", data_dir)
    b = new_trainer(tmp_path, "gan-mnist", data_dir)
    assert (a.run.path.name, b.run.path.name) == ("gan-mnist-001", "gan-mnist-002")
    assert (a.run.config.read_text().splitlines()[0]).startswith("# resolved config")


def assert_bitwise_equal(a: dict[str, Any], b: dict[str, Any]) -> None:
    different = differing(a, b)
    assert not different, f"differ after resume: {different[:5]}"


MODERN = [
    "objective.loss=rpgan", "objective.r1=0.5", "objective.r2=0.5", "objective.reg_every=3",
    "model.d_norm=none", "model.d_mbstd=true", "training.ema=0.99", "training.ema_rampup=0.05",
    "training.augment=translation,cutout,color",
]  # fmt: skip


@pytest.mark.parametrize(
    ("preset", "sets"),
    [
        ("dcgan-mnist", ["training.ema=0.99"]),
        ("wgan-gp-mnist", []),
        ("cgan-mnist", []),
        ("dcgan-mnist", MODERN),
        ("cgan-mnist", ["model.conditional=false", "model.clusters=8"]),
    ],
    ids=["dcgan-ema", "wgan-gp", "cgan", "rpgan-r1-r2-mbstd-ema-ramp-augment", "clusters"],
)
@pytest.mark.slow
def test_resume_is_bitwise_exact(
    tmp_path: Path, data_dir: Path, preset: str, sets: list[str]
) -> None:
    options = RuntimeOptions(data_dir=str(data_dir), device="cpu")
    straight = new_trainer(tmp_path / "a", preset, data_dir, *sets, **{"training.epochs": 3})
    straight.fit()
    split = new_trainer(tmp_path / "b", preset, data_dir, *sets, **{"training.epochs": 2})
    split.fit()
    resumed = resume_trainer(split.run.path, options, epochs=3)
    assert resumed.epoch == 2
    resumed.fit()
    a = load_checkpoint(straight.run.last_checkpoint)
    b = load_checkpoint(split.run.last_checkpoint)
    assert (a["epoch"], a["step"]) == (b["epoch"], b["step"]) == (3, 3 * straight.steps_per_epoch)
    assert_bitwise_equal(a, b)
    steps_a = [(r["kind"], r["step"]) for r in straight.run.log.read()]
    steps_b = [(r["kind"], r["step"]) for r in split.run.log.read()]
    resumed_at = ("segment", 2 * straight.steps_per_epoch)  # the second process's record
    assert steps_b == [
        *steps_a[: steps_b.index(resumed_at)],
        resumed_at,
        *steps_a[steps_b.index(resumed_at) :],
    ]
    assert steps_a.count(resumed_at) == 0  # no duplicated or lost records
    assert "epochs: 3" in split.run.config.read_text()
    for epoch in (1, 2, 3):
        assert (
            straight.run.epoch_grid(epoch).read_bytes() == split.run.epoch_grid(epoch).read_bytes()
        )


def test_a_second_run_on_the_same_images_reads_its_clusters_from_the_cache(
    tmp_path: Path, data_dir: Path
) -> None:
    sets = ["model.conditional=false", "model.clusters=8"]
    first = new_trainer(tmp_path, "cgan-mnist", data_dir, *sets)
    second = new_trainer(tmp_path, "cgan-mnist", data_dir, *sets)
    other_seed = new_trainer(tmp_path, "cgan-mnist", data_dir, *sets, "training.seed=1")
    notes = [[n for n in t.notes if "k-means" in n] for t in (first, second, other_seed)]
    folder = cache_home() / "clusters"
    found = "model.clusters: 8 k-means clusters of the training images"
    assert notes == [[found], [f"{found} (an earlier run's, from {folder})"], [found]]
    assert first.clusters is not None and second.clusters is not None
    assert torch.equal(first.clusters.labels, second.clusters.labels)
    assert torch.equal(first.clusters.prior, second.clusters.prior)
    assert len(list(folder.glob("*.pt"))) == 2


class StopAt(NullReporter):
    """Delivers a SIGINT-equivalent to the trainer after a given step."""

    def __init__(self, trainer: Trainer, step: int):
        self.trainer, self.at = trainer, step

    def advance(self, step: int, epoch: int, stats: dict[str, float] | None) -> None:
        if step == self.at:
            self.trainer.stops.request(signal.SIGINT)


class Recorder(NullReporter):
    """A live reporter (like the progress bar) that keeps every advance."""

    preview_seconds = 1.0

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, dict[str, float] | None]] = []

    def advance(self, step: int, epoch: int, stats: dict[str, float] | None) -> None:
        self.calls.append((step, epoch, stats))


def test_a_live_display_gets_the_epoch_every_step_and_losses_from_the_first(
    tmp_path: Path, data_dir: Path
) -> None:
    trainer = new_trainer(
        tmp_path, "gan-mnist", data_dir, "training.log_every=100", **{"training.epochs": 2}
    )
    recorder = Recorder()
    trainer.fit(recorder)
    assert [step for step, _, _ in recorder.calls] == list(range(1, 21))
    assert [epoch for _, epoch, _ in recorder.calls] == [1] * 10 + [2] * 10
    first = recorder.calls[0][2]  # a preview of the window, long before the log line
    assert first is not None and first["images_per_second"] > 0
    assert set(first) >= {"loss_d", "loss_g", "d_real", "d_fake"}
    assert all(math.isfinite(first[k]) for k in ("loss_d", "loss_g"))
    # Previews are for the eye only: metrics.jsonl holds the epoch-end lines alone.
    steps = [r["step"] for r in MetricsLog(trainer.run.path / "metrics.jsonl").read()]
    assert steps == [
        0,
        10,
        10,
        20,
        20,
    ]  # the start's segment, then a step and an epoch line per epoch


@pytest.mark.slow
def test_interrupt_mid_epoch_saves_and_resumes_exactly(tmp_path: Path, data_dir: Path) -> None:
    straight = new_trainer(tmp_path / "a", "dcgan-mnist", data_dir, **{"training.epochs": 2})
    straight.fit()
    broken = new_trainer(tmp_path / "my runs", "dcgan-mnist", data_dir, **{"training.epochs": 2})
    with pytest.raises(Interrupted) as info:
        broken.fit(StopAt(broken, 13))  # epoch 2, step 3 of 10
    assert info.value.exit_code == 130
    # The hint is shell-quoted: pasted as it is, it works for a path with a space.
    assert f"gancli train --resume '{broken.run.path}'" in str(info.value)
    state = load_checkpoint(broken.run.last_checkpoint)
    assert (state["epoch"], state["step"], state["step_in_epoch"]) == (1, 13, 3)
    resumed = resume_trainer(broken.run.path, RuntimeOptions(device="cpu"))
    resumed.fit()
    assert_bitwise_equal(
        load_checkpoint(straight.run.last_checkpoint), load_checkpoint(broken.run.last_checkpoint)
    )


@pytest.mark.slow
def test_nan_losses_stop_training_without_a_nan_checkpoint(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = new_trainer(tmp_path, "dcgan-mnist", data_dir, **{"training.epochs": 2})
    trainer.fit()
    before = trainer.run.last_checkpoint.read_bytes()
    resumed = resume_trainer(trainer.run.path, RuntimeOptions(device="cpu"), epochs=3)
    monkeypatch.setattr(
        losses.NonSaturating,
        "g_loss",
        lambda self, d_fake, d_real=None: d_fake.mean() * float("nan"),
    )
    with pytest.raises(TrainingError, match=r"NaN/Inf by step 30 \(epoch 3\)") as info:
        resumed.fit()
    assert info.value.exit_code == 1
    assert trainer.run.last_checkpoint.read_bytes() == before


def test_dataset_smaller_than_a_step(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"training\.batch_size"):
        new_trainer(tmp_path, "wgan-mnist", data_dir, "objective.n_critic=5", **{"data.limit": 100})


def test_resume_refuses_other_data_and_fewer_epochs(tmp_path: Path, data_dir: Path) -> None:
    trainer = new_trainer(tmp_path, "gan-mnist", data_dir, **{"training.epochs": 2})
    trainer.fit()
    assert load_checkpoint(trainer.run.last_checkpoint)["data"]["num_images"] == 320
    other = make_mnist_root(tmp_path / "other", n=40)
    with pytest.raises(CheckpointError, match="dataset now has 40 images"):
        resume_trainer(trainer.run.path, RuntimeOptions(data_dir=str(other), device="cpu"))
    with pytest.raises(ConfigError, match="already done 2 epochs"):
        resume_trainer(trainer.run.path, RuntimeOptions(device="cpu"), epochs=1)


def test_resume_finds_data_that_moved_since_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder a run read its data from is tried first on resume, but only while it
    is there: a run copied to another machine finds the data the usual way."""
    first = make_mnist_root(tmp_path / "first", n=64)
    trainer = new_trainer(tmp_path, "gan-mnist", first, **{"data.limit": 64})
    trainer.fit()
    (tmp_path / "first").rename(tmp_path / "moved")
    monkeypatch.setenv("GANCLI_DATA_DIR", str(tmp_path / "moved"))
    resumed = resume_trainer(trainer.run.path, RuntimeOptions(device="cpu"), epochs=2)
    assert resumed.data.source == str(tmp_path / "moved" / "MNIST" / "raw")


def test_a_run_that_cannot_start_leaves_no_directory(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(ConfigError):
        new_trainer(tmp_path, "wgan-mnist", data_dir, "objective.n_critic=5", **{"data.limit": 100})
    assert not (tmp_path / "runs" / "wgan-mnist-001").exists()


def test_nan_weights_are_never_checkpointed(tmp_path: Path, data_dir: Path) -> None:
    trainer = new_trainer(tmp_path, "gan-mnist", data_dir)
    trainer.fit()
    before = trainer.run.last_checkpoint.read_bytes()
    with torch.no_grad():
        next(trainer.state.generator.parameters()).fill_(float("nan"))
    with pytest.raises(TrainingError, match="generator's weights became NaN/Inf"):
        trainer.save()
    assert trainer.run.last_checkpoint.read_bytes() == before
    assert not list(trainer.run.checkpoints.glob(".*tmp*"))


def test_class_names_label_the_rows_of_conditional_grids(tmp_path: Path, data_dir: Path) -> None:
    result = new_trainer(tmp_path, "cgan-fashion", data_dir).fit()
    margin = label_margin(FASHION_CLASSES)
    with Image.open(Path(result.run_dir) / "samples" / "epoch_0001.png") as grid:
        assert grid.size == (margin + 302, 302)
    assert margin > label_margin(tuple("0123456789"))  # "Ankle boot" needs more room


def test_dcgan_follows_a_folder_of_rgb_images(tmp_path: Path, data_dir: Path) -> None:
    from test_datasets import make_folder

    root = make_folder(tmp_path / "pets")
    config = load_config(
        "cgan-mnist",
        [f"data.dataset=folder:{root}", "data.image_size=32", "data.channels=3"],
        {"training.batch_size": 2, "training.epochs": 1},
    )
    options = RuntimeOptions(device="cpu")
    trainer = starting.new_trainer(config, options, "pets", out=str(tmp_path / "runs"))
    notes: list[str] = []

    class Notes(NullReporter):
        def note(self, text: str) -> None:
            notes.append(text)

    trainer.fit(Notes())
    assert trainer.data.image_shape == (3, 32, 32)
    assert any("skipped 2 unreadable image(s)" in n for n in notes)
    with Image.open(trainer.run.epoch_grid(1)) as grid:
        assert grid.mode == "RGB" and grid.size[1] == 2 * (32 + 2) + 2  # cats, dogs
    dogs = load_generator(trainer.run.last_checkpoint)
    assert dogs.class_names == ("cats", "dogs")
    assert parse_labels(["DOGS"], dogs.class_names) == [1]
    images = next(sample_batches(dogs, SampleRequest(n=4, labels=(1,))))[0]
    assert images.shape == (4, 3, 32, 32)


def test_listeners_hear_every_log_line_epoch_and_the_end(tmp_path: Path, data_dir: Path) -> None:
    from gancli.engine.listeners import EpochEnd, Listener

    heard: list[tuple[str, int]] = []

    class Recorder(Listener):
        def on_log(self, record: dict[str, Any]) -> None:
            heard.append(("log", record["step"]))

        def on_epoch_end(self, end: EpochEnd) -> None:
            assert end.samples.shape == (64, 1, 28, 28) and end.samples.dtype == torch.uint8
            heard.append(("epoch", end.epoch))

        def on_fit_end(self) -> None:
            heard.append(("end", 0))

    trainer = new_trainer(
        tmp_path, "gan-mnist", data_dir, "training.log_every=4", **{"training.epochs": 2}
    )
    trainer.outputs.listeners.append(Recorder())
    trainer.fit()
    # 10 steps per epoch, logged at steps 4 and 8 and at each epoch's end (10, 20)
    assert heard == [
        ("log", 4), ("log", 8), ("log", 10), ("epoch", 1),
        ("log", 12), ("log", 16), ("log", 20), ("epoch", 2), ("end", 0),
    ]  # fmt: skip


def test_grid_scale_enlarges_the_grids_and_reals(tmp_path: Path, data_dir: Path) -> None:
    trainer = new_trainer(
        tmp_path, "gan-mnist", data_dir, "training.grid_scale=2", **{"data.limit": 64}
    )
    run = Path(trainer.fit().run_dir)
    side = 2 * (8 * (28 + 2) + 2)  # 64 images, 8 a row, each pixel drawn 2 x 2
    for name in ("reals.png", "samples/epoch_0001.png"):
        with Image.open(run / name) as image:
            assert image.size == (side, side), name
            block = image.crop((2 * 2, 2 * 2, 2 * 30, 2 * 30))  # the first image
            assert (
                block.resize((28, 28), Image.Resampling.NEAREST)
                .resize(block.size, Image.Resampling.NEAREST)
                .tobytes()
                == block.tobytes()
            )  # 2 x 2 blocks of one value


def test_grid_scale_too_large_is_refused_before_training(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(ConfigError) as info:
        new_trainer(
            tmp_path, "gan-mnist", data_dir, "training.grid_size=1024",
            "training.grid_scale=16", **{"data.limit": 64},
        )  # fmt: skip
    message = str(info.value)
    assert message.startswith("training.grid_scale 16: each epoch grid would be 15,392 x 15,392")
    assert "megapixels" in message
    assert not any((tmp_path / "runs").glob("*"))  # no run folder left behind
