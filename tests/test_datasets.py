"""Datasets beyond MNIST: Fashion-MNIST, notMNIST, Debian's layout, image folders, digits."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import idx_bytes
from PIL import Image
from torch import nn

from gancli.engine.config import DataConfig
from gancli.engine.data import FASHION_CLASSES, conform, load_dataset
from gancli.engine.errors import DataError
from gancli.engine.synthetic import generate_digits


def test_fashion_mnist_from_shared_data(real_data_dir: Path) -> None:
    data = load_dataset(DataConfig(dataset="fashion-mnist"), real_data_dir)
    assert data.images.shape == (60_000, 1, 28, 28) and data.images.dtype == torch.uint8
    assert torch.bincount(data.labels).tolist() == [6000] * 10
    assert data.class_names == FASHION_CLASSES and data.class_names[9] == "Ankle boot"
    assert data.split == "train" and not data.notes
    test = load_dataset(DataConfig(dataset="fashion-mnist"), real_data_dir, split="test")
    assert len(test) == 10_000


def test_notmnist_trains_on_the_split_it_finds(real_data_dir: Path) -> None:
    data = load_dataset(DataConfig(dataset="notmnist"), real_data_dir)
    assert data.split == "test" and len(data) == 10_000
    assert torch.bincount(data.labels).tolist() == [1000] * 10
    assert data.class_names == tuple("ABCDEFGHIJ")
    assert len(data.notes) == 1 and "no train split found" in data.notes[0]
    assert "uses the test split (10000 images" in data.notes[0]


def test_evaluation_splits_never_fall_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANCLI_DEBIAN_DATASETS", str(tmp_path / "none"))
    raw = tmp_path / "root" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((4, 28, 28), np.uint8)))
    (raw / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(4, np.uint8)))
    monkeypatch.setenv("GANCLI_DATA_DIR", str(tmp_path / "root"))
    with pytest.raises(DataError, match=r"mnist \(test split\) not found"):
        load_dataset(DataConfig(), None, split="test")


def test_debian_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    debian = tmp_path / "usr-share-datasets"
    flat = debian / "fashion-mnist"
    flat.mkdir(parents=True)
    images = np.full((6, 28, 28), 7, dtype=np.uint8)
    labels = np.arange(6, dtype=np.uint8)
    (flat / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (flat / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    monkeypatch.setenv("GANCLI_DATA_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("GANCLI_DEBIAN_DATASETS", str(debian))
    data = load_dataset(DataConfig(dataset="fashion-mnist"), None)
    assert len(data) == 6 and data.source == str(flat)
    assert data.labels.tolist() == list(range(6))


def test_not_found_mentions_debian(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANCLI_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GANCLI_DEBIAN_DATASETS", str(tmp_path / "deb"))
    with pytest.raises(DataError) as info:
        load_dataset(DataConfig(dataset="notmnist"), None)
    assert "(Debian package)" in str(info.value)
    assert "download (none exists for this dataset)" in str(info.value)


def png_bytes(size: tuple[int, int], colour: tuple[int, int, int], fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format=fmt)
    return out.getvalue()


def make_folder(root: Path) -> Path:
    (root / "cats").mkdir(parents=True)
    (root / "dogs").mkdir()
    (root / "cats" / "a.png").write_bytes(png_bytes((40, 30), (250, 10, 10)))
    (root / "cats" / "b.jpg").write_bytes(png_bytes((64, 64), (10, 250, 10), "JPEG"))
    (root / "dogs" / "c.PNG").write_bytes(png_bytes((17, 90), (10, 10, 250)))
    (root / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    jpeg = png_bytes((64, 64), (200, 200, 200), "JPEG")
    (root / "dogs" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "loose.png").write_bytes(png_bytes((8, 8), (0, 0, 0)))
    (root / "dogs" / "notes.txt").write_text("not an image")
    return root


def test_image_folder_rgb(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "pets")
    data = load_dataset(DataConfig(dataset=f"folder:{root}", image_size=32, channels=3))
    assert data.images.shape == (3, 3, 32, 32) and data.images.dtype == torch.uint8
    assert data.class_names == ("cats", "dogs")
    assert data.labels.tolist() == [0, 0, 1]
    red = data.images[0].float().mean(dim=(1, 2))
    assert red[0] > 200 and red[1] < 50  # colour kept
    skipped = [n for n in data.notes if n.startswith("skipped 2 unreadable image(s)")]
    assert skipped and "broken.png" in skipped[0] and "truncated.jpg" in skipped[0]
    assert any("ignored 1 image(s) outside the class sub-folders" in n for n in data.notes)


def test_image_folder_grey_and_errors(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "pets")
    grey = load_dataset(DataConfig(dataset=f"folder:{root}", image_size=28, channels=1))
    assert grey.images.shape == (3, 1, 28, 28)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        load_dataset(DataConfig(dataset=f"folder:{tmp_path / 'empty'}"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="none of the 1 image files could be read"):
        load_dataset(DataConfig(dataset=f"folder:{tmp_path / 'bad'}"))
    with pytest.raises(DataError, match="not a directory"):
        load_dataset(DataConfig(dataset=f"folder:{tmp_path / 'missing'}"))


def test_flat_folder_is_one_class(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    root.mkdir()
    for i in range(3):
        (root / f"{i}.png").write_bytes(png_bytes((20, 20), (i * 80, 0, 0)))
    data = load_dataset(DataConfig(dataset=f"folder:{root}"))
    assert data.class_names == ("flat",) and data.labels.tolist() == [0, 0, 0]


def test_conform_resizes_and_converts() -> None:
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    rgb = conform(images, 64, 3)
    assert rgb.shape == (4, 3, 64, 64) and torch.equal(rgb[:, 0], rgb[:, 2])
    assert conform(rgb, 28, 1).shape == (4, 1, 28, 28)
    assert conform(images, 28, 1) is images


def test_digits_are_balanced_seeded_and_mnist_like() -> None:
    images, labels, _ = generate_digits(2000, 0)
    again, _, _ = generate_digits(2000, 0)
    other, _, _ = generate_digits(2000, 1)
    assert images.shape == (2000, 1, 28, 28) and images.dtype == torch.uint8
    assert torch.bincount(labels).tolist() == [200] * 10
    assert torch.equal(images, again) and not torch.equal(images, other)
    assert 20 < images.float().mean().item() < 80  # white strokes on black, like MNIST's 33
    border = torch.cat([images[:, :, :2].flatten(), images[:, :, -2:].flatten()])
    assert border.float().mean() < 5  # digits stay inside the frame
    data = load_dataset(DataConfig(dataset="digits", limit=500))
    assert len(data) == 500 and data.class_names == tuple("0123456789")


@pytest.mark.slow
def test_digits_are_recognisable() -> None:
    """A small CNN trained for one epoch on digits reads its own test split at >= 95%."""
    torch.manual_seed(0)
    train = load_dataset(DataConfig(dataset="digits"))
    test = load_dataset(DataConfig(dataset="digits"), split="test")
    assert len(train) == 60_000 and len(test) == 10_000
    assert not torch.equal(train.images[:100], test.images[:100])
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10),
    )  # fmt: skip
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    for x, y in train.batches(128, seed=0, epoch=0):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        x = test.images.float() / 127.5 - 1
        accuracy = (net(x).argmax(1) == test.labels).float().mean().item()
    assert accuracy >= 0.95, accuracy
