"""Usage: images = load_dataset(config.data, data_dir="../shared/data", device=torch.device("cpu"))

Named IDX datasets (mnist, fashion-mnist, notmnist) are read by gancli itself from
gzipped or raw files in torchvision's `<root>/<Folder>/raw/` layout or Debian's
`/usr/share/datasets/<name>/`; `digits` is drawn on the fly and `folder:PATH` reads any
image folder. Every split is held whole in memory as uint8 on the training device;
batches are scaled to [-1, 1] only when drawn.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import math
import os
import struct
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gancli.engine.config import DataConfig
from gancli.engine.errors import ConfigError, DataError
from gancli.engine.limits import check_memory

ENV_DATA_DIR = "GANCLI_DATA_DIR"
ENV_NO_DOWNLOAD = "GANCLI_NO_DOWNLOAD"
ENV_DEBIAN_DATASETS = "GANCLI_DEBIAN_DATASETS"  # where Debian's dataset-* packages install
DIGITS_SIZE = 60_000  # images in the built-in digits training set
DIGITS_SEEDS = {"train": 0, "test": 1}  # the digits splits are fixed data sets, like MNIST's
FOLDER_PREFIX = "folder:"

_IDX_UBYTE = 0x08


@dataclass(frozen=True)
class IdxDataset:
    """A dataset stored as IDX files under `<root>/<folder>/raw/`."""

    name: str
    folder: str
    class_names: tuple[str, ...]
    files: dict[str, tuple[str, str]]  # split -> (images file, labels file), without .gz
    downloadable: bool = True  # torchvision has a downloader of this name

    def download(self, root: Path) -> None:
        import torchvision.datasets as tvd

        getattr(tvd, self.folder)(root=str(root), train=True, download=True)
        getattr(tvd, self.folder)(root=str(root), train=False, download=True)


_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

DATASETS: dict[str, IdxDataset] = {
    "mnist": IdxDataset("mnist", "MNIST", tuple("0123456789"), _MNIST_FILES),
    "fashion-mnist": IdxDataset("fashion-mnist", "FashionMNIST", FASHION_CLASSES, _MNIST_FILES),
    "notmnist": IdxDataset(
        "notmnist", "notMNIST", tuple("ABCDEFGHIJ"), _MNIST_FILES, downloadable=False
    ),
}
BUILT_IN = ("digits",)


@dataclass
class ImageSet:
    """A whole dataset split in memory: uint8 images (N, C, H, W) and int64 labels (N,)."""

    name: str
    split: str
    source: str
    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    notes: list[str] = field(default_factory=list)  # what the user should hear about the data
    skipped: int = 0  # files left out as unreadable (image folders)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def describe(self) -> dict[str, Any]:
        """What a checkpoint records of its training data."""
        return {
            "dataset": self.name,
            "split": self.split,
            "source": self.source,
            "num_images": len(self),
            "image_shape": list(self.image_shape),
            "class_names": list(self.class_names),
        }

    def check_enough(self, batch_size: int, n_critic: int) -> None:
        """ConfigError unless one G step's real images (batch_size x n_critic) are here."""
        if len(self) < batch_size * n_critic:
            skipped = f" ({self.skipped} unreadable files skipped)" if self.skipped else ""
            raise ConfigError(
                f"training.batch_size: {batch_size} x objective.n_critic {n_critic} real images "
                f"are needed per G step, but the dataset has only {len(self)}{skipped}; lower "
                "the batch size or raise data.limit"
            )

    def batches(
        self,
        batch_size: int,
        seed: int,
        epoch: int,
        start: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Full batches of one epoch, scaled to [-1, 1], in a permutation fixed by (seed, epoch).

        The order depends only on the seed and the epoch number, so a resumed run draws
        exactly the batches an uninterrupted one would. `start` skips batches already done.
        With `world_size` processes, `batch_size` is the global batch and process `rank`
        gets its contiguous slice of each one: the batches and their number do not depend
        on how many processes share them.
        """
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} does not split over {world_size} ranks")
        share = batch_size // world_size
        order = torch.randperm(len(self), generator=epoch_generator(seed, epoch))
        order = order.to(self.images.device)
        for i in range(start, len(self) // batch_size):
            first = i * batch_size + rank * share
            idx = order[first : first + share]
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


def read_idx(path: Path, limit: int | None = None) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzipped or raw), checking its header and size;
    with `limit`, only its first `limit` items (a gzip file is decompressed no further).

    Only as many bytes as the header announces (and one more, to notice excess) are
    read, and an announcement beyond the memory free is refused: a gzip file that expands
    to gigabytes costs no more than the dataset it claims to be.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0:
                raise DataError(f"{path}: not an IDX file (bad magic number)")
            dtype, ndim = head[2], head[3]
            if dtype != _IDX_UBYTE:
                raise DataError(
                    f"{path}: IDX type 0x{dtype:02x} is not supported (expected unsigned bytes)"
                )
            dims = fh.read(4 * ndim)
            if ndim == 0 or len(dims) < 4 * ndim:
                raise DataError(f"{path}: truncated IDX header")
            shape = struct.unpack(f">{ndim}I", dims)
            check_memory(
                math.prod(shape), f"{path}: its header says {shape}, which", "is it an IDX file?"
            )
            wanted = shape if limit is None else (min(shape[0], limit), *shape[1:])
            out = np.empty(wanted, dtype=np.uint8)
            got = _read_into(fh, out.data.cast("B"))
            excess = limit is None and got == out.size and bool(fh.read(1))
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if got < out.size or excess:
        have = f"{got} bytes of images" if got < out.size else "more bytes than that"
        raise DataError(f"{path}: IDX size mismatch: header says {shape}, file has {have}")
    return out


def _read_into(fh: io.BufferedIOBase, buffer: memoryview) -> int:
    """Fill `buffer` from `fh` (short reads retried); the bytes read, fewer only at the end."""
    got = 0
    while got < len(buffer):
        n = fh.readinto(buffer[got:])
        if not n:
            break
        got += n
    return got


def cache_home() -> Path:
    """gancli's folder in the user cache ($XDG_CACHE_HOME or ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gancli"


def user_cache_dir() -> Path:
    return cache_home() / "data"


def raw_dirs(spec: IdxDataset) -> list[tuple[str, Path]]:
    """Folders that may hold the dataset's IDX files without --data-dir, in order, each with
    how it was chosen: <Folder>/raw under $GANCLI_DATA_DIR and the user cache, then Debian's."""
    roots = [("user cache", user_cache_dir())]
    if os.environ.get(ENV_DATA_DIR):
        roots.insert(0, (f"${ENV_DATA_DIR}", Path(os.environ[ENV_DATA_DIR]).expanduser()))
    dirs = [(how, root / spec.folder / "raw") for how, root in roots]
    debian = Path(os.environ.get(ENV_DEBIAN_DATASETS) or "/usr/share/datasets")
    dirs.append(("Debian package", debian / spec.name))
    return dirs


def given_raw_dir(spec: IdxDataset, data_dir: str | Path) -> Path:
    """The folder of IDX files that --data-dir names: DIR/<Folder>/raw, or DIR itself given
    one or two levels too deep (DIR = .../MNIST or .../MNIST/raw). DataError at once, naming
    the expected layout, when DIR holds none of them: a wrong --data-dir never falls
    through to other places or a download."""
    root = Path(data_dir).expanduser()
    candidates = [root / spec.folder / "raw"]
    if root.name == spec.folder:
        candidates.append(root / "raw")
    if root.name == "raw" and root.parent.name == spec.folder:
        candidates.append(root)
    for raw_dir in candidates:
        if any(_locate(spec, split, raw_dir) for split in spec.files):
            return raw_dir
    images = spec.files["train"][0]
    if not root.is_dir():
        problem = "no such folder" if not os.path.lexists(root) else "not a folder"
    else:
        problem = f"no {spec.folder}/raw/{images}[.gz] there"
    raise DataError(
        f"--data-dir {root}: {problem}; give the folder that holds {spec.folder}/, i.e. "
        f"DIR with DIR/{spec.folder}/raw/{images}[.gz] and the other IDX files of {spec.name}"
    )


def _locate(spec: IdxDataset, split: str, raw_dir: Path) -> tuple[Path, Path] | None:
    """The split's images and labels files in `raw_dir`, each raw or gzipped, if both are there."""
    images, labels = (
        next((p for p in (raw_dir / stem, raw_dir / f"{stem}.gz") if p.is_file()), None)
        for stem in spec.files[split]
    )
    return (images, labels) if images and labels else None


def _load_idx_pair(
    spec: IdxDataset, split: str, images: Path, labels: Path, limit: int | None
) -> ImageSet:
    x, y = read_idx(images, limit), read_idx(labels, limit)
    if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise DataError(f"{images.parent}: images {x.shape} and labels {y.shape} do not match")
    if y.size and int(y.max()) >= len(spec.class_names):
        raise DataError(f"{labels}: label {int(y.max())} out of range for {spec.name}")
    return ImageSet(
        name=spec.name,
        split=split,
        source=str(images.parent),
        images=torch.from_numpy(x).unsqueeze(1),
        labels=torch.from_numpy(y.astype(np.int64)),
        class_names=spec.class_names,
    )


def _search(
    spec: IdxDataset, split: str, dirs: list[tuple[str, Path]], limit: int | None
) -> ImageSet | None:
    for _, raw_dir in dirs:
        found = _locate(spec, split, raw_dir)
        if found:
            return _load_idx_pair(spec, split, *found, limit)
    return None


def load_idx_dataset(
    name: str,
    split: str,
    data_dir: str | Path | None,
    other_split: bool = False,
    limit: int | None = None,
) -> ImageSet:
    """Find a named IDX dataset and read it, only its first `limit` images when given.

    Looks only in --data-dir when it is given (see given_raw_dir); otherwise in
    $GANCLI_DATA_DIR, the user cache and Debian's dataset folder, then downloads into the
    cache. With `other_split`, a dataset of which only another split is present
    (notMNIST's test split, say) is used, and a note says so.
    """
    spec = DATASETS[name]
    if data_dir is not None:
        dirs = [("--data-dir", given_raw_dir(spec, data_dir))]
    else:
        dirs = raw_dirs(spec)
    found = _search(spec, split, dirs, limit)
    if found:
        return found
    tried = [f"{raw_dir} ({how})" for how, raw_dir in dirs]
    if data_dir is None:
        found = _download(spec, split, tried, limit)
        if found:
            return found
    if other_split:
        for other in (s for s in spec.files if s != split):
            found = _search(spec, other, dirs, limit)
            if found:
                found.notes.append(
                    f"{name}: no {split} split found, so this run uses the {other} split "
                    f"({len(found)} images from {found.source})"
                )
                return found
    raise DataError(
        f"{name} ({split} split) not found; tried {'; '.join(tried)}. Put the IDX files in "
        f"<dir>/{spec.folder}/raw/ and pass --data-dir <dir> or set ${ENV_DATA_DIR}"
    )


def _download(spec: IdxDataset, split: str, tried: list[str], limit: int | None) -> ImageSet | None:
    """The split downloaded into the user cache, where allowed; None (and what happened
    added to `tried`) otherwise."""
    cache = user_cache_dir()
    if not spec.downloadable:
        tried.append("download (none exists for this dataset)")
        return None
    if os.environ.get(ENV_NO_DOWNLOAD):
        tried.append(f"download (skipped: ${ENV_NO_DOWNLOAD} is set)")
        return None
    try:
        # torchvision prints its progress on stdout, which belongs to --json's result.
        with contextlib.redirect_stdout(sys.stderr):
            spec.download(cache)
    except Exception as exc:  # any network or disk failure means "not available"
        reason = str(exc).splitlines()[0] if str(exc) else ""
        tried.append(f"download into {cache} failed ({type(exc).__name__}: {reason})")
        return None
    found = _search(spec, split, [("user cache", cache / spec.folder / "raw")], limit)
    if not found:
        tried.append(f"download into {cache} (finished, but the files are not there)")
    return found


def load_digits(split: str, limit: int | None) -> ImageSet:
    from gancli.engine.synthetic import generate_digits

    count = limit or (DIGITS_SIZE if split == "train" else DIGITS_SIZE // 6)
    images, labels, fonts = generate_digits(count, DIGITS_SEEDS[split])
    source = f"drawn from Pillow's font and {len(fonts)} system fonts (seed {DIGITS_SEEDS[split]})"
    return ImageSet("digits", split, source, images, labels, tuple("0123456789"))


def conform(images: torch.Tensor, size: int, channels: int) -> torch.Tensor:
    """uint8 images -> the configured side and channel count (antialiased resize, grey <-> RGB)."""
    n, c, h, w = images.shape
    # The resize works in float32 on the whole set: its input and output at once.
    needed = 4 * n * (max(c, channels) * h * w + channels * size * size)
    check_memory(
        needed,
        f"{n:,} images at {channels}x{size}x{size} px",
        "lower data.image_size or data.limit",
    )
    if images.shape[1] != channels:
        if channels == 3:
            images = images.expand(-1, 3, -1, -1).contiguous()
        else:  # ITU-R 601 luma, as Pillow's convert("L")
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * weights).sum(1, keepdim=True).round().to(torch.uint8)
    if images.shape[-1] != size or images.shape[-2] != size:
        resized = torch.nn.functional.interpolate(
            images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        images = resized.round().clamp(0, 255).to(torch.uint8)
    return images


def dataset_summary(config: DataConfig) -> tuple[tuple[int, int, int], tuple[str, ...] | None]:
    """(image shape, class names if known without reading the data) for a data config."""
    shape = (config.channels, config.image_size, config.image_size)
    if config.dataset in DATASETS:
        return shape, DATASETS[config.dataset].class_names
    if config.dataset in BUILT_IN:
        return shape, tuple("0123456789")
    return shape, None


def load_dataset(
    config: DataConfig,
    data_dir: str | Path | None = None,
    split: str = "train",
    device: torch.device | None = None,
) -> ImageSet:
    """The configured dataset split, limited to `config.limit` images, shaped and on `device`.

    Training (split "train") accepts another split of a named dataset when only that one
    is present; the returned set's `notes` then say so.
    """
    name = config.dataset
    if name.startswith(FOLDER_PREFIX):
        from gancli.engine.imagefolder import read_image_folder

        root = Path(name[len(FOLDER_PREFIX) :]).expanduser()
        data = read_image_folder(root, config.image_size, config.channels)
    elif name == "digits":
        data = load_digits(split, config.limit)
    elif name in DATASETS:
        data = load_idx_dataset(name, split, data_dir, split == "train", config.limit)
    else:
        known = ", ".join([*DATASETS, *BUILT_IN, "folder:PATH"])
        raise DataError(f"data.dataset: unknown dataset '{name}'; known: {known}")
    if config.limit is not None:
        data.images, data.labels = data.images[: config.limit], data.labels[: config.limit]
    data.images = conform(data.images, config.image_size, config.channels)
    if device is not None:
        data.images, data.labels = data.images.to(device), data.labels.to(device)
    return data
