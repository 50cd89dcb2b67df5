"""`gancli animate`: progress GIFs from the epoch grids and latent walks."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageSequence
from typer.testing import CliRunner

from gancli.cli import app
from gancli.engine import animation
from gancli.engine.animation import CAPTION_HEIGHT, scale_frames, slerp
from gancli.engine.errors import ConfigError

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def frames_of(path: Path) -> list[Image.Image]:
    with Image.open(path) as gif:
        return [frame.copy() for frame in ImageSequence.Iterator(gif)]


def durations_of(path: Path) -> list[int]:
    with Image.open(path) as gif:
        out = []
        for frame in ImageSequence.Iterator(gif):
            out.append(frame.info["duration"])
        return out


def test_training_writes_one_frame_per_epoch(trained_runs: dict[str, Path]) -> None:
    gif = trained_runs["cgan"] / "progress.gif"
    frames = frames_of(gif)
    assert len(frames) == 3
    assert frames[0].size[1] == 302 + CAPTION_HEIGHT and frames[0].size[0] > 302
    durations = durations_of(gif)
    assert durations[-1] > durations[0]  # the last frame is held longer
    strip = frames[0].convert("L").crop((0, 0, 60, CAPTION_HEIGHT))
    assert strip.getextrema()[1] > 0  # the caption is drawn


def test_animate_options(trained_runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "every2.gif"
    result = invoke(
        "animate", trained_runs["cgan"], "--every", "2", "--fps", "5", "--out", out, "--json"
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["epochs"] == [1, 3] and payload["frames"] == 2
    assert len(frames_of(out)) == 2
    assert durations_of(out)[0] == 200


def test_interpolation_gif(trained_runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "walk.gif"
    result = invoke("animate", trained_runs["cgan"], "--interpolate", "--out", out)
    assert result.exit_code == 0, result.output
    frames = frames_of(out)
    assert len(frames) == 5 * 12
    assert frames[0].size[1] == 10 * 30 + 2  # one row per class
    assert frames[0].size[0] > 8 * 30 + 2  # 8 walkers and the class names
    assert frames[0].tobytes() != frames[6].tobytes()  # it moves


@pytest.mark.slow
def test_class_walk_and_unconditional_walk(trained_runs: dict[str, Path], tmp_path: Path) -> None:
    classes = invoke(
        "animate", trained_runs["cgan"], "--across-classes", "--out", tmp_path / "c.gif", "--json"
    )
    assert classes.exit_code == 0, classes.output
    assert json.loads(classes.stdout)["frames"] == 10 * 12
    plain = invoke(
        "animate", trained_runs["dcgan-ema"], "--interpolate", "--out", tmp_path / "u.gif"
    )
    assert plain.exit_code == 0, plain.output
    assert frames_of(tmp_path / "u.gif")[0].size == (8 * 30 + 2, 8 * 30 + 2)
    bad = invoke("animate", trained_runs["dcgan-ema"], "--across-classes")
    assert bad.exit_code == 2 and "needs a conditional model" in bad.output


def test_mp4_needs_the_plugin(
    trained_runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "imageio_ffmpeg" else real(name, *a),
    )
    result = invoke("animate", trained_runs["cgan"], "--out", tmp_path / "p.mp4")
    assert result.exit_code == 2
    assert "MP4 needs imageio and imageio-ffmpeg (imageio-ffmpeg not installed)" in result.output
    assert "pip install 'gancli[video]'" in result.output
    assert not (tmp_path / "p.mp4").exists()


def test_mp4_without_imageio_is_one_line_before_any_frame(
    trained_runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "imageio", None)  # `import imageio` now fails
    monkeypatch.setattr(animation, "latent_walk", lambda *a, **k: pytest.fail("walked first"))
    out = tmp_path / "walk.mp4"
    result = invoke("animate", trained_runs["cgan"], "--interpolate", "--out", out)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [
        "error: MP4 needs imageio and imageio-ffmpeg (imageio not installed): "
        "pip install 'gancli[video]'; a .gif needs nothing more"
    ]
    assert not out.exists()


def test_animate_scale(trained_runs: dict[str, Path], tmp_path: Path) -> None:
    plain, big = tmp_path / "plain.gif", tmp_path / "big.gif"
    assert invoke("animate", trained_runs["cgan"], "--out", plain).exit_code == 0
    result = invoke("animate", trained_runs["cgan"], "--out", big, "--scale", "2", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["scale"] == 2
    small, large = frames_of(plain), frames_of(big)
    assert len(small) == len(large) == 3
    for a, b in zip(small, large, strict=True):
        assert b.size == (2 * a.width, 2 * a.height)
        a_rgb = a.convert("RGB").resize(b.size, Image.Resampling.NEAREST)
        assert a_rgb.tobytes() == b.convert("RGB").tobytes()
    bad = invoke("animate", trained_runs["cgan"], "--out", tmp_path / "x.gif", "--scale", "17")
    assert bad.exit_code == 2 and "--scale 17: use a whole number from 1 to 16" in bad.output


def test_scale_frames_refuses_what_cannot_be_read_back(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="megapixels"):
        scale_frames([Image.new("L", (5000, 5000))], 16, tmp_path / "a.gif")
    with pytest.raises(ConfigError, match="a GIF allows at most 65,535 px a side"):
        scale_frames([Image.new("L", (5000, 10))], 14, tmp_path / "a.gif")


def test_animate_errors(tmp_path: Path, trained_runs: dict[str, Path]) -> None:
    assert invoke("animate", tmp_path).exit_code == 2
    result = invoke("animate", trained_runs["cgan"], "--out", tmp_path / "x.avi")
    assert result.exit_code == 2 and "use a .gif or .mp4 file" in result.output


def test_slerp_endpoints_and_norm() -> None:
    a = torch.nn.functional.normalize(torch.randn(4, 16), dim=1)
    b = torch.nn.functional.normalize(torch.randn(4, 16), dim=1)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-6)
    assert torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    assert torch.allclose(slerp(a, b, 0.5).norm(dim=1), torch.ones(4), atol=1e-5)
    assert torch.allclose(slerp(a, a, 0.3), a, atol=1e-6)  # parallel: no division by zero


def test_mp4_with_the_plugin(trained_runs: dict[str, Path], tmp_path: Path) -> None:
    import imageio.v3 as iio

    out = tmp_path / "p.mp4"
    result = invoke("animate", trained_runs["cgan"], "--out", out, "--fps", "4", "--hold-last", "1")
    assert result.exit_code == 0, result.output
    video = iio.imread(out)
    # 3 epochs + 1 s held at 4 fps; the width holds the class-name column
    assert video.shape[:2] == (3 + 4, 302 + CAPTION_HEIGHT) and video.shape[2] > 302
