"""Usage: images = load_dataset(config.data, data_dir="../shared/data", device=torch.device("cpu"))

Datasets are read by gancli itself (IDX files, gzipped or raw, in torchvision's
`<root>/<Folder>/raw/` layout) and held whole in memory as uint8 on the training
device; batches are scaled to [-1, 1] only when drawn.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gancli.engine.config import DataConfig
from gancli.engine.errors import DataError

ENV_DATA_DIR = "GANCLI_DATA_DIR"
ENV_NO_DOWNLOAD = "GANCLI_NO_DOWNLOAD"

_IDX_UBYTE = 0x08


@dataclass(frozen=True)
class IdxDataset:
    """A dataset stored as IDX files under `<root>/<folder>/raw/`."""

    name: str
    folder: str
    class_names: tuple[str, ...]
    files: dict[str, tuple[str, str]]  # split -> (images file, labels file), without .gz
    image_shape: tuple[int, int, int] = (1, 28, 28)

    def download(self, root: Path) -> None:
        import torchvision.datasets as tvd

        getattr(tvd, self.folder)(root=str(root), train=True, download=True)
        getattr(tvd, self.folder)(root=str(root), train=False, download=True)


_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

DATASETS: dict[str, IdxDataset] = {
    "mnist": IdxDataset("mnist", "MNIST", tuple(str(d) for d in range(10)), _MNIST_FILES),
}


@dataclass
class ImageSet:
    """A whole dataset split in memory: uint8 images (N, C, H, W) and int64 labels (N,)."""

    name: str
    split: str
    source: str
    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def batches(
        self, batch_size: int, seed: int, epoch: int, start: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Full batches of one epoch, scaled to [-1, 1], in a permutation fixed by (seed, epoch).

        The order depends only on the seed and the epoch number, so a resumed run draws
        exactly the batches an uninterrupted one would. `start` skips batches already done.
        """
        order = torch.randperm(len(self), generator=epoch_generator(seed, epoch))
        order = order.to(self.images.device)
        for i in range(start, len(self) // batch_size):
            idx = order[i * batch_size : (i + 1) * batch_size]
            yield to_unit_range(self.images.index_select(0, idx)), self.labels.index_select(0, idx)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (2**63))


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images.float().mul_(2.0 / 255.0).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255] (clamped, rounded)."""
    return images.detach().add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)


# --------------------------------------------------------------------------- IDX files


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzipped or raw), checking its header and size."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    dtype, ndim = data[2], data[3]
    if dtype != _IDX_UBYTE:
        raise DataError(
            f"{path}: IDX type 0x{dtype:02x} is not supported (expected unsigned bytes)"
        )
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise DataError(
            f"{path}: IDX size mismatch: header says {shape}, file has {len(data)} bytes"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _find_file(raw_dir: Path, stem: str) -> Path | None:
    for candidate in (raw_dir / stem, raw_dir / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gancli" / "data"


def candidate_roots(data_dir: str | Path | None) -> list[tuple[str, Path]]:
    """The data roots to search, in order, each with how it was chosen."""
    roots: list[tuple[str, Path]] = []
    if data_dir is not None:
        roots.append(("--data-dir", Path(data_dir).expanduser()))
    if os.environ.get(ENV_DATA_DIR):
        roots.append((f"${ENV_DATA_DIR}", Path(os.environ[ENV_DATA_DIR]).expanduser()))
    roots.append(("user cache", user_cache_dir()))
    return roots


def _locate(spec: IdxDataset, split: str, root: Path) -> tuple[Path, Path] | None:
    raw_dir = root / spec.folder / "raw"
    images_stem, labels_stem = spec.files[split]
    images, labels = _find_file(raw_dir, images_stem), _find_file(raw_dir, labels_stem)
    return (images, labels) if images and labels else None


def _load_idx_pair(spec: IdxDataset, split: str, images: Path, labels: Path) -> ImageSet:
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise DataError(f"{images.parent}: images {x.shape} and labels {y.shape} do not match")
    if y.size and int(y.max()) >= len(spec.class_names):
        raise DataError(f"{labels}: label {int(y.max())} out of range for {spec.name}")
    return ImageSet(
        name=spec.name,
        split=split,
        source=str(images.parent),
        images=torch.from_numpy(x.copy()).unsqueeze(1),
        labels=torch.from_numpy(y.astype(np.int64)),
        class_names=spec.class_names,
    )


def load_idx_dataset(name: str, split: str, data_dir: str | Path | None) -> ImageSet:
    """Find a named IDX dataset (data dir, $GANCLI_DATA_DIR, user cache, download) and read it."""
    spec = DATASETS[name]
    tried = []
    for how, root in candidate_roots(data_dir):
        found = _locate(spec, split, root)
        if found:
            return _load_idx_pair(spec, split, *found)
        tried.append(f"{root / spec.folder / 'raw'} ({how})")
    cache = user_cache_dir()
    if os.environ.get(ENV_NO_DOWNLOAD):
        tried.append(f"download (skipped: ${ENV_NO_DOWNLOAD} is set)")
    else:
        try:
            spec.download(cache)
        except Exception as exc:  # any network or disk failure means "not available"
            tried.append(f"download into {cache} ({type(exc).__name__}: {str(exc)[:80]})")
        else:
            found = _locate(spec, split, cache)
            if found:
                return _load_idx_pair(spec, split, *found)
            tried.append(f"download into {cache} (finished, but the files are not there)")
    raise DataError(
        f"{name} not found; tried {'; '.join(tried)}. Put the IDX files in "
        f"<dir>/{spec.folder}/raw/ and pass --data-dir <dir> or set ${ENV_DATA_DIR}"
    )


def load_dataset(
    config: DataConfig,
    data_dir: str | Path | None = None,
    split: str = "train",
    device: torch.device | None = None,
) -> ImageSet:
    """The configured dataset split, limited to its first `config.limit` images, on `device`."""
    if config.dataset not in DATASETS:
        known = ", ".join(DATASETS)
        raise DataError(f"data.dataset: unknown dataset '{config.dataset}'; known: {known}")
    data = load_idx_dataset(config.dataset, split, data_dir)
    if config.limit is not None:
        data.images, data.labels = data.images[: config.limit], data.labels[: config.limit]
    if device is not None:
        data.images, data.labels = data.images.to(device), data.labels.to(device)
    return data
