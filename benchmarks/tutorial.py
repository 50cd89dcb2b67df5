"""Usage: python benchmarks/tutorial.py --preset dcgan-mnist --out DIR [--epochs 1]
[--limit N] [--threads N] [--data-dir DIR]

A preset's G and D trained the way PyTorch tutorials write it, as the yardstick for
gancli's speed: TutorialLoop is the training step that benchmarks/throughput.py times
against gancli's, and run as a script this file is a whole tutorial-style training
script, which benchmarks/commands.py times against `gancli train`.

The networks are gancli's own (gancli.engine.models.build_models on the preset's resolved
config, seeded as gancli seeds them, so both start from the same weights), and so are the
images (the first N of the same files, read by gancli's loader). Everything else is
written as tutorials write it:

- a Dataset of PIL images (made once, at construction; torchvision's MNIST makes one per
  __getitem__, which is slower still) with ToTensor and Normalize((0.5,), (0.5,)),
  DataLoader(shuffle=True, drop_last=True, num_workers=0);
- default Adam / RMSprop, the preset's objective written inline (BCEWithLogitsLoss for the
  BCE losses), separate real and fake D passes on fake.detach(), a new z and a new G
  forward for the G step, weight clipping or the usual autograd.grad gradient penalty;
- as a script, after each epoch: a grid of samples of fixed noise saved with
  torchvision.utils.save_image, and torch.save of G, D and both optimisers. It prints
  one JSON line at the end: its training seconds (the steps alone), steps, images and
  the time each epoch ended. With --keep-epochs each epoch's G is kept as
  epoch_NNNN_g.pt (benchmarks/time_to_quality.py scores them).

What a tutorial does not have and TutorialLoop leaves out: gancli's EMA of G and its
k-means self-conditioning (a self-conditioned preset's real batches use their class
numbers as cluster numbers: the same arithmetic).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from torchvision.utils import save_image

from gancli.engine.config import Config, load_config
from gancli.engine.data import ImageSet, load_dataset
from gancli.engine.models import build_models, label_count
from gancli.engine.runtime import seed_everything

Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]


class TutorialImages(Dataset):
    """The dataset as tutorials get it from torchvision: PIL images and int labels.

    The PIL images are made once, here; torchvision's MNIST makes one per __getitem__,
    which is slower still, so the reference is a little faster than the real thing.
    """

    def __init__(self, data: ImageSet):
        arrays = data.images.permute(0, 2, 3, 1).numpy()  # N, H, W, C
        grey = arrays.shape[3] == 1
        self.images = [Image.fromarray(a[:, :, 0] if grey else a) for a in arrays]
        self.labels = data.labels.tolist()
        channels = arrays.shape[3]
        self.transform = transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize((0.5,) * channels, (0.5,) * channels)]
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[index]), self.labels[index]


class TutorialLoop:
    """The preset's G and D, objective and optimiser, trained the way tutorials write it."""

    def __init__(self, config: Config, data: ImageSet, threads: int):
        torch.set_num_threads(threads)
        self.config = config
        seed_everything(config.training.seed)  # as Trainer does, so the weights start equal
        self.g, self.d = build_models(config.model, data.image_shape, data.num_classes)
        optim = config.optim
        if optim.name == "adam":
            betas = (optim.beta1, optim.beta2)
            self.opt_g: torch.optim.Optimizer = torch.optim.Adam(
                self.g.parameters(), lr=optim.lr_g, betas=betas
            )
            self.opt_d: torch.optim.Optimizer = torch.optim.Adam(
                self.d.parameters(), lr=optim.lr_d, betas=betas
            )
        else:
            self.opt_g = torch.optim.RMSprop(self.g.parameters(), lr=optim.lr_g)
            self.opt_d = torch.optim.RMSprop(self.d.parameters(), lr=optim.lr_d)
        self.loader = DataLoader(
            TutorialImages(data),
            batch_size=config.training.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=0,
        )
        self.batches = self._endless_epochs()
        # classes, or clusters (the real batch's class numbers stand in for its clusters:
        # the same arithmetic)
        self.num_labels = label_count(config.model, data.num_classes)
        self.criterion = nn.BCEWithLogitsLoss()

    def _endless_epochs(self) -> Batches:
        while True:
            yield from self.loader

    def _fake_labels(self, n: int) -> torch.Tensor | None:
        if not self.num_labels:
            return None
        return torch.randint(0, self.num_labels, (n,))

    def _d_loss(self, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
        loss, real_label = self.config.objective.loss, self.config.objective.real_label
        if loss in ("minimax", "nonsaturating"):
            real_target = torch.full_like(d_real, real_label)
            return self.criterion(d_real, real_target) + self.criterion(
                d_fake, torch.zeros_like(d_fake)
            )
        if loss == "hinge":
            return F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()
        return -d_real.mean() + d_fake.mean()  # wgan-clip, wgan-gp

    def _g_loss(self, d_fake: torch.Tensor) -> torch.Tensor:
        loss = self.config.objective.loss
        if loss == "nonsaturating":
            return self.criterion(d_fake, torch.ones_like(d_fake))
        if loss == "minimax":
            return -self.criterion(d_fake, torch.zeros_like(d_fake))
        return -d_fake.mean()  # wgan-clip, wgan-gp, hinge

    def _gradient_penalty(
        self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        alpha = torch.rand(real.size(0), 1, 1, 1)
        interpolates = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        d_interpolates = self.d(interpolates, labels)
        gradients = torch.autograd.grad(
            outputs=d_interpolates,
            inputs=interpolates,
            grad_outputs=torch.ones_like(d_interpolates),
            create_graph=True,
            retain_graph=True,
        )[0]
        gradients = gradients.view(gradients.size(0), -1)
        return ((gradients.norm(2, dim=1) - 1) ** 2).mean()

    def step(self) -> None:
        objective, z_dim = self.config.objective, self.config.model.z_dim
        for _ in range(objective.n_critic):
            real, labels = next(self.batches)
            z = torch.randn(real.size(0), z_dim)
            fake_labels = self._fake_labels(real.size(0))
            fake = self.g(z, fake_labels)
            d_real = self.d(real, labels)
            d_fake = self.d(fake.detach(), fake_labels)
            loss_d = self._d_loss(d_real, d_fake)
            if objective.loss == "wgan-gp":
                loss_d = loss_d + objective.gp_weight * self._gradient_penalty(
                    real, fake.detach(), labels
                )
            self.opt_d.zero_grad()
            loss_d.backward()
            self.opt_d.step()
            if objective.loss == "wgan-clip":
                for p in self.d.parameters():
                    p.data.clamp_(-objective.clip, objective.clip)
        z = torch.randn(self.config.training.batch_size, z_dim)
        fake_labels = self._fake_labels(z.size(0))
        loss_g = self._g_loss(self.d(self.g(z, fake_labels), fake_labels))
        self.opt_g.zero_grad()
        loss_g.backward()
        self.opt_g.step()

    def networks(self) -> tuple[nn.Module, nn.Module]:
        return self.g, self.d


# --------------------------------------------------------------------------- the script


def train(
    config: Config, data: ImageSet, threads: int, out: Path, keep_epochs: bool = False
) -> dict[str, Any]:
    """Train for config.training.epochs as a tutorial does, saving a grid and a checkpoint
    after each epoch; the seconds spent in training steps, the steps, the images and the
    Unix time at which each epoch's checkpoint was written."""
    loop = TutorialLoop(config, data, threads)
    cfg, n_critic = config.training, config.objective.n_critic
    steps_per_epoch = len(data) // cfg.batch_size // n_critic  # as gancli counts them
    fixed_noise = torch.randn(cfg.grid_size, config.model.z_dim)
    fixed_labels = torch.arange(cfg.grid_size) % loop.num_labels if loop.num_labels else None
    out.mkdir(parents=True, exist_ok=True)
    seconds, epoch_ends = 0.0, []
    for epoch in range(cfg.epochs):
        started = time.perf_counter()
        for _ in range(steps_per_epoch):
            loop.step()
        seconds += time.perf_counter() - started
        loop.g.eval()
        with torch.no_grad():
            fake = loop.g(fixed_noise, fixed_labels)
        loop.g.train()
        save_image(fake, out / f"epoch_{epoch + 1:04d}.png", nrow=8, normalize=True)
        torch.save(
            {
                "epoch": epoch + 1,
                "generator": loop.g.state_dict(),
                "discriminator": loop.d.state_dict(),
                "opt_g": loop.opt_g.state_dict(),
                "opt_d": loop.opt_d.state_dict(),
            },
            out / "checkpoint.pt",
        )
        if keep_epochs:
            torch.save(loop.g.state_dict(), out / f"epoch_{epoch + 1:04d}_g.pt")
        epoch_ends.append(time.time())
    steps = steps_per_epoch * cfg.epochs
    return {
        "train_seconds": seconds,
        "steps": steps,
        "images": steps * cfg.batch_size * n_critic,
        "epoch_ends": epoch_ends,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True, help="gancli preset name or YAML file")
    parser.add_argument("--out", type=Path, required=True, help="folder for grids and checkpoint")
    parser.add_argument("--epochs", type=int, default=1, help="epochs to train (1)")
    parser.add_argument("--limit", type=int, help="train on the first N images only")
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="torch threads"
    )
    parser.add_argument("--data-dir", help="data root, as gancli's --data-dir")
    parser.add_argument("--keep-epochs", action="store_true", help="keep each epoch's G")
    args = parser.parse_args()
    flags = {"training.epochs": args.epochs, "data.limit": args.limit}
    config = load_config(args.preset, flags=flags)
    data = load_dataset(config.data, args.data_dir)
    print(json.dumps(train(config, data, args.threads, args.out, args.keep_epochs)))


if __name__ == "__main__":
    main()
