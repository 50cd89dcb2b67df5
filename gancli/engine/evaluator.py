"""Usage: evaluator = load_evaluator(config.data, data_dir, device); emb = evaluator.embed(images)

The networks whose eyes the metrics see through. Each built-in dataset has a small CNN
classifier, trained by `train_evaluator` on the real training split and shipped inside
the package with its sha256 pinned below, so every user's FID is computed in the same
feature space, offline. `folder:` datasets get one trained on first use and cached.
Inception-v3 (torchvision's ImageNet weights) is the optional extractor for comparison
with published figures; it needs the weights in the torch cache or a download.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from gancli.engine.checkpoint import versions
from gancli.engine.config import DataConfig
from gancli.engine.data import (
    BUILT_IN,
    DATASETS,
    ENV_NO_DOWNLOAD,
    FOLDER_PREFIX,
    ImageSet,
    cache_home,
    conform,
    epoch_generator,
    load_dataset,
    to_unit_range,
)
from gancli.engine.errors import CheckpointError, ConfigError, DataError, first_line
from gancli.engine.files import atomic_write, check_target
from gancli.engine.runtime import use_device

FORMAT = "gancli-evaluator"
FORMAT_VERSION = 1
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "evaluators"
# sha256 of each shipped file: a damaged or swapped evaluator would silently change
# every score, so a mismatch is an error. Retrain with `gancli train-evaluator`.
SHIPPED_SHA256 = {
    "mnist": "3b1564e10042e5a7ee335485722da9d16acec0db1a4a8d20a6c07c498a40efb4",
    "fashion-mnist": "fc5053cfc792850360998f83986d8929c30352d0a95bbd0c50be53cb1ffd5f5b",
    "notmnist": "d454023749bc0cf6b2be4d162043a7e0209db35d4f54c45e637739b2b05199ae",
    "digits": "cad58a645b9ba5ccb86b43eb1ecc3c12df183e69e80b9d1696fd581293e83552",
}
FEATURE_DIM = 128
HOLDOUT_FRACTION = 0.2  # of a dataset with one split only: held out to test the evaluator
HOLDOUT_SEED = 20_191_204  # fixed: the held-out images must not depend on any user seed
TRAIN_SEED = 0
TRAIN_MIN_STEPS = 300  # small image folders get more passes than large datasets
TRAIN_BATCH = 128
TRAIN_LR = 2e-3
EMBED_BATCH = 500


@dataclass(frozen=True)
class Recipe:
    """How an evaluator is trained: passes over the data and the random augmentation."""

    epochs: int = 4
    rotate_degrees: float = 10.0
    scale: float = 0.1  # random zoom of ±10%
    shift_pixels: float = 2.0  # at 28 px
    flip: bool = False  # random left-right mirroring


# Glyphs are not mirror-symmetric but tolerate small rotations; clothes are photographed
# upright and either way round.
RECIPES = {"fashion-mnist": Recipe(epochs=10, rotate_degrees=0.0, scale=0.0, flip=True)}

Log = Callable[[str], None]


class EvaluatorNet(nn.Module):
    """Conv classifier; its pooled 128-d activations are the feature space of FID and friends.

    side -> 32 x side/2 -> 64 x side/4 (two convs) -> 128 -> global average -> classes.
    About 0.14 M parameters and 15 M multiply-adds per 28x28 image.
    """

    def __init__(self, channels: int, num_classes: int):
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]

        self.features = nn.Sequential(
            *block(channels, 32),
            nn.MaxPool2d(2),
            *block(32, 64),
            *block(64, 64),
            nn.MaxPool2d(2),
            *block(64, FEATURE_DIM),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(FEATURE_DIM, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)
        return features, self.classifier(features)


@dataclass
class Embedding:
    """What an extractor makes of a set of images: features (N, D) and class probabilities."""

    features: torch.Tensor
    probs: torch.Tensor

    @property
    def predicted(self) -> torch.Tensor:
        return self.probs.argmax(1)


class Extractor(Protocol):
    name: str
    sha256: str

    def embed(self, images: torch.Tensor) -> Embedding: ...


@dataclass
class Evaluator:
    """A trained evaluator network with the facts needed to use and cite it."""

    net: EvaluatorNet
    dataset: str
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    sha256: str
    accuracy: float  # on held-out real images
    source: str
    name: str = "evaluator"

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> Embedding:
        """uint8 images (N, C, H, W), any size and channel count -> features and probabilities."""
        device = next(self.net.parameters()).device
        channels, side, _ = self.image_shape
        features, probs = [], []
        for chunk in images.split(EMBED_BATCH):
            x = to_unit_range(conform(chunk.cpu(), side, channels).to(device))
            f, logits = self.net(x)
            features.append(f.float().cpu())
            probs.append(logits.float().softmax(1).cpu())
        return Embedding(torch.cat(features), torch.cat(probs))


# --------------------------------------------------------------------------- data


def native_config(config: DataConfig) -> DataConfig:
    """The data config an evaluator sees: a named dataset at its own size, a folder as trained."""
    if config.dataset in DATASETS or config.dataset in BUILT_IN:  # all 28x28 grey
        return dataclasses.replace(config, limit=None, image_size=28, channels=1)
    return dataclasses.replace(config, limit=None)


def evaluation_splits(config: DataConfig, data_dir: str | Path | None) -> tuple[ImageSet, ImageSet]:
    """(training images, held-out real images) of a dataset, at the evaluator's size.

    Datasets with a test split use it as the held-out set. With one split only (the
    notMNIST files here, image folders), a fixed 20% of it is held out.
    """
    config = native_config(config)
    train = load_dataset(config, data_dir, split="train")
    if train.split == "train":
        try:
            return train, load_dataset(config, data_dir, split="test")
        except DataError:
            pass  # no test split: hold out part of the training split
    return split_holdout(train)


def split_holdout(data: ImageSet) -> tuple[ImageSet, ImageSet]:
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(HOLDOUT_SEED))
    cut = max(1, int(len(data) * HOLDOUT_FRACTION))

    def part(name: str, idx: torch.Tensor) -> ImageSet:
        split = f"{data.split}, {name}"
        return dataclasses.replace(
            data, split=split, images=data.images[idx], labels=data.labels[idx], notes=[]
        )

    return part("80% part", order[cut:]), part("held-out 20%", order[:cut])


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class EvaluatorJob:
    """What `gancli train-evaluator` is asked for, as typed."""

    dataset: str  # a dataset name (mnist, fashion-mnist, ...) or an image folder
    out: str  # the file to write; never an existing one
    epochs: int | None = None  # (None: the dataset's recipe)
    seed: int = TRAIN_SEED
    data_dir: str | None = None  # data root to search first
    device: str = "auto"


def train_evaluator_file(job: EvaluatorJob, log: Log | None = None) -> dict[str, Any]:
    """`gancli train-evaluator`: train one and write it to a new file."""
    out = Path(job.out)
    check_target(out)
    if out.exists():
        raise ConfigError(f"--out {out}: already exists; choose a new file name")
    config = DataConfig(dataset=job.dataset)
    device = use_device(job.device)
    evaluator = train_evaluator(config, job.data_dir, out, device, job.epochs, job.seed, log)
    return {
        "out": str(out),
        "dataset": evaluator.dataset,
        "heldout_accuracy": evaluator.accuracy,
        "sha256": evaluator.sha256,
    }


def train_evaluator(
    config: DataConfig,
    data_dir: str | Path | None,
    out: Path,
    device: torch.device,
    epochs: int | None = None,
    seed: int = TRAIN_SEED,
    log: Log | None = None,
) -> Evaluator:
    """Train an evaluator on the training images, test it on held-out ones, write it to `out`.

    Seeded: the same seed, data, thread count and machine give the same weights. Weights
    are stored in half precision (a few hundred KB); the accuracy is measured after that.
    """
    log = log or (lambda text: None)
    recipe = RECIPES.get(config.dataset, Recipe())
    train, heldout = evaluation_splits(config, data_dir)
    torch.manual_seed(seed)
    net = EvaluatorNet(train.image_shape[0], train.num_classes).to(device)
    net = net.to(memory_format=torch.channels_last)
    steps_per_epoch = len(train) // TRAIN_BATCH
    if steps_per_epoch < 1:
        skipped = f" ({train.skipped} unreadable files skipped)" if train.skipped else ""
        raise DataError(
            f"{train.name}: {len(train)} images{skipped} are too few to train an evaluator"
        )
    epochs = max(epochs or recipe.epochs, math.ceil(TRAIN_MIN_STEPS / steps_per_epoch))
    optimizer = torch.optim.AdamW(net.parameters(), lr=TRAIN_LR, weight_decay=5e-4, fused=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, TRAIN_LR, total_steps=epochs * steps_per_epoch
    )
    images, labels = train.images.to(device), train.labels.to(device)
    aug = torch.Generator(device=device).manual_seed(seed + 1)
    clock = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(train), generator=epoch_generator(seed, epoch)).to(device)
        for i in range(steps_per_epoch):
            idx = order[i * TRAIN_BATCH : (i + 1) * TRAIN_BATCH]
            x = augment(to_unit_range(images[idx]), recipe, aug)
            _, logits = net(x.contiguous(memory_format=torch.channels_last))
            loss = F.cross_entropy(logits, labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        log(f"epoch {epoch + 1}/{epochs} done ({time.perf_counter() - clock:.0f} s)")
    payload = _payload(net, train, heldout, epochs, seed)
    evaluator = _from_payload(payload, "", "")
    evaluator.net.to(device)
    accuracy = held_out_accuracy(evaluator, heldout)
    payload["heldout_accuracy"] = round(accuracy, 5)
    buffer = io.BytesIO()  # via a buffer: the bytes must not depend on the file's name
    torch.save(payload, buffer)
    blob = buffer.getvalue()
    with atomic_write(out, replace=False) as tmp:  # never over a file made meanwhile
        tmp.write_bytes(blob)
    evaluator.accuracy = accuracy
    evaluator.sha256 = hashlib.sha256(blob).hexdigest()
    evaluator.source = str(out)
    return evaluator


def augment(x: torch.Tensor, recipe: Recipe, gen: torch.Generator) -> torch.Tensor:
    """Random rotation, zoom, shift and mirroring of a batch, per the recipe, in one resample."""
    n = x.shape[0]
    rand = torch.rand(n, 4, generator=gen, device=x.device) * 2 - 1
    angle = rand[:, 0] * math.radians(recipe.rotate_degrees)
    scale = 1 + rand[:, 1] * recipe.scale
    shift = rand[:, 2:] * (2 * recipe.shift_pixels / x.shape[-1])  # in [-1, 1] coordinates
    mirror = torch.ones_like(scale)
    if recipe.flip:
        mirror = torch.where(torch.rand(n, generator=gen, device=x.device) < 0.5, -1.0, 1.0)
    cos, sin = angle.cos() / scale, angle.sin() / scale
    theta = torch.stack([torch.stack([cos * mirror, -sin, shift[:, 0]], 1),
                         torch.stack([sin * mirror, cos, shift[:, 1]], 1)], 1)  # fmt: skip
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


def held_out_accuracy(evaluator: Evaluator, heldout: ImageSet) -> float:
    predicted = evaluator.embed(heldout.images).predicted
    return float((predicted == heldout.labels.cpu()).float().mean())


def _payload(
    net: EvaluatorNet, train: ImageSet, heldout: ImageSet, epochs: int, seed: int
) -> dict[str, Any]:
    state = {
        k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
        for k, v in net.state_dict().items()
    }
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "dataset": train.name,
        "image_shape": list(train.image_shape),
        "class_names": list(train.class_names),
        "state_dict": state,
        "train_images": len(train),
        "heldout_images": len(heldout),
        "heldout_accuracy": None,
        "epochs": epochs,
        "seed": seed,
        "versions": versions(),
    }


# --------------------------------------------------------------------------- loading


def _from_payload(payload: Any, sha256: str, source: str) -> Evaluator:
    try:
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError("not a gancli evaluator")
        if payload.get("version") != FORMAT_VERSION:
            raise ValueError(f"evaluator format {payload.get('version')} is not supported")
        channels, height, width = (int(v) for v in payload["image_shape"])
        class_names = tuple(str(c) for c in payload["class_names"])
        net = EvaluatorNet(channels, len(class_names))
        net.load_state_dict({k: v.float() if v.is_floating_point() else v
                             for k, v in payload["state_dict"].items()})  # fmt: skip
        if not all(torch.isfinite(p).all() for p in net.state_dict().values()):
            raise ValueError("its weights hold NaN or Inf")
        accuracy = float(payload.get("heldout_accuracy") or 0.0)
        if not 0.0 <= accuracy <= 1.0:  # NaN fails this too
            raise ValueError(f"held-out accuracy {accuracy} is not a fraction")
        dataset = str(payload["dataset"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        reason = first_line(exc)[:160]
        raise CheckpointError(f"{source or 'evaluator'}: unusable evaluator ({reason})") from None
    shape = (channels, height, width)
    return Evaluator(net.eval(), dataset, shape, class_names, sha256, accuracy, source)


def read_evaluator(path: Path, expected_sha256: str | None = None) -> Evaluator:
    """Load an evaluator file with weights_only; with `expected_sha256`, the bytes must match."""
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read evaluator {path}: {exc.strerror or exc}") from None
    sha256 = hashlib.sha256(blob).hexdigest()
    if expected_sha256 is not None and sha256 != expected_sha256:
        raise CheckpointError(
            f"{path} is damaged or was replaced (sha256 {sha256[:12]}..., expected "
            f"{expected_sha256[:12]}...); reinstall gancli"
        )
    try:
        payload = torch.load(io.BytesIO(blob), weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise CheckpointError(f"{path}: not a readable evaluator ({type(exc).__name__})") from None
    return _from_payload(payload, sha256, str(path))


def folder_cache_path(data: ImageSet) -> Path:
    """Where the evaluator of an image folder is cached: keyed by the images themselves."""
    digest = hashlib.sha256(data.images.cpu().numpy().tobytes())
    digest.update(data.labels.cpu().numpy().tobytes())
    digest.update(repr(data.class_names).encode())
    return cache_home() / "evaluators" / f"folder-{digest.hexdigest()[:16]}.pt"


def load_evaluator(
    config: DataConfig,
    data_dir: str | Path | None,
    device: torch.device,
    log: Log | None = None,
) -> Evaluator:
    """The evaluator of a dataset: the shipped one, or a folder's cached (trained if missing)."""
    name = config.dataset
    if name in SHIPPED_SHA256:
        path = SHIPPED_DIR / f"{name}.pt"
        if not path.is_file():
            raise CheckpointError(
                f"the {name} evaluator is missing from {SHIPPED_DIR}; reinstall gancli"
            )
        evaluator = read_evaluator(path, SHIPPED_SHA256[name])
    elif name.startswith(FOLDER_PREFIX):
        evaluator = _cached_or_trained(config, data_dir, device, log)
    else:
        raise DataError(f"data.dataset: no evaluator for dataset '{name}'")
    evaluator.net.to(device)
    return evaluator


def _cached_or_trained(
    config: DataConfig, data_dir: str | Path | None, device: torch.device, log: Log | None
) -> Evaluator:
    log = log or (lambda text: None)
    data = load_dataset(native_config(config), data_dir)
    path = folder_cache_path(data)
    if path.is_file():
        try:
            cached = read_evaluator(path)
            if cached.class_names != data.class_names:
                raise CheckpointError(f"{path}: its classes are not the folder's")
            return cached
        except CheckpointError as exc:
            log(f"retraining the cached evaluator: {exc}")
            path.unlink(missing_ok=True)  # a cache entry: trained again below
    log(f"training an evaluator for {config.dataset} (first use; cached at {path})")
    return train_evaluator(config, data_dir, path, device, log=log)


# --------------------------------------------------------------------------- Inception-v3


class InceptionExtractor:
    """torchvision's ImageNet Inception-v3: 2,048-d pool features and 1,000-class probabilities.

    Only for comparison with published figures: images are upsampled from 28x28 to 299x299
    and made RGB, which is far from what Inception was trained on, and torchvision's
    weights differ from the TensorFlow ones behind published FIDs. Its FID is not
    comparable with the evaluator's, nor exactly with papers'.
    """

    name = "inception"

    def __init__(self, device: torch.device):
        from torchvision.models import Inception_V3_Weights, inception_v3

        weights = Inception_V3_Weights.IMAGENET1K_V1
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        if not cached.is_file() and os.environ.get(ENV_NO_DOWNLOAD):
            raise DataError(
                f"--extractor inception needs torchvision's Inception-v3 weights, which are not "
                f"in the torch cache ({cached}) and downloads are off (${ENV_NO_DOWNLOAD}); "
                "use the default evaluator"
            )
        try:
            state = torch.hub.load_state_dict_from_url(
                weights.url, progress=False, check_hash=True, weights_only=True
            )
        except Exception as exc:  # network errors come in many types
            raise DataError(
                f"--extractor inception needs torchvision's Inception-v3 weights: not in the "
                f"torch cache ({cached}) and the download failed ({type(exc).__name__}); "
                "download them once with internet access, or use the default evaluator"
            ) from None
        self.sha256 = hashlib.sha256(cached.read_bytes()).hexdigest()
        model = inception_v3(weights=None, aux_logits=True, init_weights=False)
        model.load_state_dict(state)
        self.fc = model.fc
        model.fc = nn.Identity()
        self.model = model.eval().to(device)
        self.fc.eval().to(device)
        self.device = device

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> Embedding:
        mean = torch.tensor([0.485, 0.456, 0.406], device=self.device).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], device=self.device).view(1, 3, 1, 1)
        features, probs = [], []
        for chunk in images.split(64):
            x = chunk.to(self.device).float().div(255).expand(-1, 3, -1, -1)
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            f = self.model((x - mean) / std)
            features.append(f.cpu())
            probs.append(self.fc(f).softmax(1).cpu())
        return Embedding(torch.cat(features), torch.cat(probs))
