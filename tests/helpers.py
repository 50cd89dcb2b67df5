"""Small builders shared by the tests: IDX files and fake data roots."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def make_mnist_root(root: Path, n: int = 20, gz: bool = True) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.arange(n * 28 * 28, dtype=np.uint8).reshape(n, 28, 28)
    labels = np.arange(n, dtype=np.uint8) % 10
    for stem, arr in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels)):
        data = idx_bytes(arr)
        if gz:
            (raw / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (raw / stem).write_bytes(data)
    return root


#: What make_idx_root writes: folder -> {split: images}. notMNIST has a test split only,
#: as in the real data, so training on it takes the fallback path.
IDX_ROOT_SIZES = {
    "MNIST": {"train": 6000, "t10k": 1000},
    "FashionMNIST": {"train": 3000, "t10k": 1000},
    "notMNIST": {"t10k": 2000},
}


def make_idx_root(root: Path) -> Path:
    """A data root laid out like torchvision's (<root>/<Name>/raw/*-ubyte.gz) holding
    gancli's built-in digits, so that everything that reads MNIST-like IDX files is tested
    with no download and no real data. Each dataset and split is drawn from its own seed."""
    from gancli.engine.synthetic import generate_digits

    for seed, (folder, splits) in enumerate(IDX_ROOT_SIZES.items()):
        raw = root / folder / "raw"
        raw.mkdir(parents=True)
        for offset, (split, n) in enumerate(splits.items()):
            images, labels, _ = generate_digits(n, 1000 + 10 * seed + offset)
            for kind, array in (("images-idx3", images[:, 0]), ("labels-idx1", labels)):
                data = idx_bytes(array.numpy())
                (raw / f"{split}-{kind}-ubyte.gz").write_bytes(gzip.compress(data, 1))
    return root


def weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Every tensor that training changes: G, D, EMA and both optimisers' state."""
    flat = {f"g.{k}": v for k, v in state["generator"].items()}
    flat.update({f"d.{k}": v for k, v in state["discriminator"].items()})
    if state["ema"] is not None:
        flat.update({f"ema.{k}": v for k, v in state["ema"].items()})
    for name in ("opt_g", "opt_d"):
        for pid, slots in state[name]["state"].items():
            flat.update({f"{name}.{pid}.{k}": v for k, v in slots.items()})
    return flat


def differing(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    wa, wb = weights(a), weights(b)
    if wa.keys() != wb.keys():
        return sorted(set(wa) ^ set(wb))
    return [k for k in wa if not torch.equal(wa[k], wb[k])]
