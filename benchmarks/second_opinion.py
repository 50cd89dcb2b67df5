"""Usage: from second_opinion import second_opinion; second_opinion(trained, n, seed, data, runs)

A second feature space for benchmarks/quality.py, one that no recipe was ever tuned
against. The shipped evaluator (gancli/evaluators/) is the yardstick every preset was tuned
on, so a recipe could learn to please it alone. This classifier differs in everything but
the data: another architecture (LeNet-style 5x5 convolutions without padding or batch norm,
ELU, and a 256-wide fully connected layer whose activations are the features, where the
evaluator pools 128 convolution channels), another optimiser (Adam, no augmentation, no
schedule) and another seed. It is trained here on the same training split, cached under the
runs root, and scores the same samples and the same real-data floor with gancli's Scorer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gancli.engine.data import to_unit_range
from gancli.engine.evaluator import Evaluator, evaluation_splits, held_out_accuracy
from gancli.engine.generator import TrainedGenerator
from gancli.engine.scoring import Scorer, generated_images

SEED = 7  # the shipped evaluators were trained from seed 0
EPOCHS = 3
BATCH = 128
LR = 1e-3
FEATURES = 256


class SecondNet(nn.Module):
    """side x side -> conv5 32 -> pool -> conv5 64 -> pool -> 256 (the features) -> classes."""

    def __init__(self, channels: int, side: int, num_classes: int):
        super().__init__()
        reduced = ((side - 4) // 2 - 4) // 2
        self.convs = nn.Sequential(
            nn.Conv2d(channels, 32, 5),
            nn.ELU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5),
            nn.ELU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.dense = nn.Sequential(nn.Linear(64 * reduced * reduced, FEATURES), nn.ELU())
        self.dropout = nn.Dropout(0.3)
        self.classifier = nn.Linear(FEATURES, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.dense(self.convs(x))
        return features, self.classifier(self.dropout(features))


def second_evaluator(trained: TrainedGenerator, data_dir: str | Path | None, cache: Path) -> Any:
    """The second classifier for the generator's dataset: read from `cache`, or trained
    there (a minute or two on 2 cores for MNIST) and kept."""
    train, heldout = evaluation_splits(trained.config.data, data_dir)
    channels, side, _ = train.image_shape
    net = SecondNet(channels, side, train.num_classes)
    path = cache / f"second-opinion-{trained.config.data.dataset}-seed{SEED}.pt"
    if path.is_file():
        net.load_state_dict(torch.load(path, weights_only=True))
    else:
        _train(net, to_unit_range(train.images), train.labels)
        cache.mkdir(parents=True, exist_ok=True)
        torch.save(net.state_dict(), path)
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    evaluator = Evaluator(
        net=net.eval(),  # type: ignore[arg-type]  # any net giving (features, logits)
        dataset=train.name,
        image_shape=train.image_shape,
        class_names=tuple(train.class_names),
        sha256=hashlib.sha256(buffer.getvalue()).hexdigest(),
        accuracy=0.0,
        source=str(path),
        name="second opinion",
    )
    evaluator.accuracy = held_out_accuracy(evaluator, heldout)
    return evaluator, train, heldout


def _train(net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> None:
    torch.manual_seed(SEED)
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    net.train()
    for _ in range(EPOCHS):
        for idx in torch.randperm(len(images)).split(BATCH):
            _, logits = net(images[idx])
            loss = F.cross_entropy(logits, labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def second_opinion(
    trained: TrainedGenerator, n: int, seed: int, data_dir: str | Path | None, cache: Path
) -> dict[str, Any]:
    """The model's and the real-data floor's figures in the second feature space, drawn
    with the same seed (so the same samples and real images) as the shipped evaluator's."""
    evaluator, train, heldout = second_evaluator(trained, data_dir, cache)
    scorer = Scorer(evaluator, heldout, n=n)
    images, asked = generated_images(trained, n, seed)
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n]
    return {
        "accuracy": round(evaluator.accuracy, 5),
        "sha256": evaluator.sha256,
        "model": _plain(scorer.score(images, asked, seed=seed)),
        "floor": _plain(
            scorer.score(train.images[pick].cpu(), train.labels[pick].cpu(), seed=seed)
        ),
    }


def _plain(scores: Any) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(scores).items() if v is not None}
