"""IDX reading, data-directory lookup and batching; the real MNIST files where present."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import IDX_ROOT_SIZES, idx_bytes, make_mnist_root

from gancli.engine.config import DataConfig
from gancli.engine.data import IdxDataset, load_dataset, read_idx, to_uint8, to_unit_range
from gancli.engine.errors import DataError

# Published MNIST training label counts for digits 0-9.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_mnist_train_split_from_shared_data(real_data_dir: Path) -> None:
    data = load_dataset(DataConfig(dataset="mnist"), real_data_dir)
    assert data.images.shape == (60_000, 1, 28, 28)
    assert data.images.dtype == torch.uint8 and data.labels.dtype == torch.int64
    assert torch.bincount(data.labels).tolist() == MNIST_TRAIN_COUNTS
    assert data.images.float().mean().item() == pytest.approx(33.318, abs=1e-3)
    assert data.class_names == tuple("0123456789")
    assert data.source.endswith("MNIST/raw")


def test_mnist_test_split_and_limit(data_dir: Path) -> None:
    test = load_dataset(DataConfig(dataset="mnist"), data_dir, split="test")
    assert len(test) == IDX_ROOT_SIZES["MNIST"]["t10k"]
    limited = load_dataset(DataConfig(dataset="mnist", limit=300), data_dir)
    full = load_dataset(DataConfig(dataset="mnist"), data_dir)
    assert len(limited) == 300
    assert torch.equal(limited.images, full.images[:300])


@pytest.mark.parametrize("gz", [True, False])
def test_raw_and_gzipped_idx(tmp_path: Path, gz: bool) -> None:
    root = make_mnist_root(tmp_path, gz=gz)
    data = load_dataset(DataConfig(dataset="mnist"), root)
    assert data.images.shape == (20, 1, 28, 28)
    assert data.labels.tolist() == [i % 10 for i in range(20)]


def test_idx_header_checks(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(DataError, match="bad magic number"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(idx_bytes(np.zeros((4, 2), dtype=np.uint8))[:-3])
    with pytest.raises(DataError, match="size mismatch"):
        read_idx(short)
    floats = tmp_path / "floats"
    floats.write_bytes(bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 1) + b"\x00" * 4)
    with pytest.raises(DataError, match="not supported"):
        read_idx(floats)
    broken_gz = tmp_path / "broken.gz"
    broken_gz.write_bytes(gzip.compress(idx_bytes(np.zeros((10, 10), dtype=np.uint8)))[:-10])
    with pytest.raises(DataError, match="cannot read"):
        read_idx(broken_gz)


@pytest.mark.parametrize("gz", [True, False])
def test_a_limit_reads_only_the_first_items(tmp_path: Path, gz: bool) -> None:
    items = np.arange(10 * 6, dtype=np.uint8).reshape(10, 2, 3)
    raw = idx_bytes(items)
    path = tmp_path / ("items.gz" if gz else "items")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    assert np.array_equal(read_idx(path, limit=4), items[:4])
    assert np.array_equal(read_idx(path, limit=99), items)
    # Only what is read must be there: a file cut after 7 items still gives its first 4.
    cut = tmp_path / "cut"
    cut.write_bytes(raw[: len(raw) - 3 * 6])
    assert np.array_equal(read_idx(cut, limit=4), items[:4])
    with pytest.raises(DataError, match="size mismatch"):
        read_idx(cut, limit=8)
    with pytest.raises(DataError, match="size mismatch"):
        read_idx(cut)


def test_lookup_order_data_dir_then_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = make_mnist_root(tmp_path / "first", n=10)
    second = make_mnist_root(tmp_path / "second", n=30)
    monkeypatch.setenv("GANCLI_DATA_DIR", str(second))
    assert len(load_dataset(DataConfig(), first)) == 10
    assert len(load_dataset(DataConfig(), None)) == 30
    # A --data-dir without the files stops at once: no other place, no download.
    with pytest.raises(DataError, match=r"--data-dir .*empty: no such folder; give the folder"):
        load_dataset(DataConfig(), tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no MNIST/raw/train-images-idx3-ubyte\[\.gz\] there"):
        load_dataset(DataConfig(), tmp_path / "empty")


def test_a_data_dir_one_or_two_levels_too_deep_is_accepted(tmp_path: Path) -> None:
    root = make_mnist_root(tmp_path / "root", n=10)
    assert len(load_dataset(DataConfig(), root / "MNIST")) == 10
    assert len(load_dataset(DataConfig(), root / "MNIST" / "raw")) == 10
    # ... but only under the dataset's own folder name: FashionMNIST's files are named alike.
    (root / "MNIST").rename(root / "FashionMNIST")
    with pytest.raises(DataError, match="give the folder that holds MNIST/"):
        load_dataset(DataConfig(), root / "FashionMNIST")


def test_user_cache_is_searched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GANCLI_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    make_mnist_root(tmp_path / "gancli" / "data", n=12)
    assert len(load_dataset(DataConfig(), None)) == 12


def test_a_download_keeps_stdout_for_the_json_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def download(spec: IdxDataset, root: Path) -> None:  # prints as torchvision's does
        print(f"Downloading https://example.invalid/{spec.folder}.gz to {root}")
        make_mnist_root(root, n=12)

    monkeypatch.delenv("GANCLI_DATA_DIR")
    monkeypatch.delenv("GANCLI_NO_DOWNLOAD")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(IdxDataset, "download", download)
    assert len(load_dataset(DataConfig(), None)) == 12
    out, err = capsys.readouterr()
    assert out == "" and "Downloading" in err


def test_not_found_names_every_place_tried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANCLI_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(DataError) as info:
        load_dataset(DataConfig(), None)
    message = str(info.value)
    for part in (
        "($GANCLI_DATA_DIR)",
        "(user cache)",
        "download (skipped",
        "--data-dir <dir>",
    ):
        assert part in message
    assert "\n" not in message


def test_unknown_dataset() -> None:
    with pytest.raises(DataError, match="unknown dataset 'cifar'"):
        load_dataset(DataConfig(dataset="cifar"))


def test_batches_are_seeded_full_and_scaled(tmp_path: Path) -> None:
    data = load_dataset(DataConfig(), make_mnist_root(tmp_path, n=50))
    first = list(data.batches(8, seed=1, epoch=0))
    again = list(data.batches(8, seed=1, epoch=0))
    other_epoch = list(data.batches(8, seed=1, epoch=1))
    assert len(first) == 6 and all(x.shape == (8, 1, 28, 28) for x, _ in first)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0][1], other_epoch[0][1])
    x = torch.cat([b[0] for b in first])
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.dtype == torch.float32
    # Each image appears at most once per epoch, with its own label.
    seen = torch.cat([b[1] for b in first])
    assert len(seen) == 48
    resumed = list(data.batches(8, seed=1, epoch=0, start=4))
    assert torch.equal(resumed[0][0], first[4][0])


def test_scaling_roundtrip() -> None:
    pixels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    unit = to_unit_range(pixels)
    assert unit.min().item() == -1.0 and unit.max().item() == 1.0
    assert torch.equal(to_uint8(unit), pixels)
