"""Usage: layer = FullConv2d(128, 1, 7)  # an nn.Conv2d, computed as a matrix product

gancli's one speed device, kept under the 5% rule (docs/speed.md): three layers of the
DCGAN networks computed as the matrix products they are, with public PyTorch operations,
because PyTorch's CPU convolution kernels do not special-case them. Each holds exactly
the parameters and state_dict of the plain layer it stands for, so checkpoints, exports
and the plain path do not depend on it:

- ProjectNoise, G's first layer: nn.ConvTranspose2d of a 1 x 1 input (z and the label);
- FullConv2d, D's last layer: nn.Conv2d whose kernel covers its whole input map;
- ClassEmbedding, projection's class embedding: nn.Linear on the one-hot label, which
  with many labels (self-conditioning's 200 clusters) picks the labels' rows instead.

GANCLI_PLAIN_LAYERS=1 (the one switch, read at start-up) makes each take the plain path
beside it: what benchmarks/fast_layers.py compares, on whole default runs (the figures
are in benchmarks/results/fast_layers.md).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

PLAIN = os.environ.get("GANCLI_PLAIN_LAYERS") == "1"
GATHER_FROM_CLASSES = 32  # from this many classes on, class rows are gathered (_class_rows)


class ProjectNoise(nn.ConvTranspose2d):
    """The generator's first layer: a k x k transposed convolution of a 1 x 1 input, z
    with the one-hot label joined on (z_dim + num_classes input channels).

    On a 1 x 1 input that convolution is a matrix product, z (N, C) @ W (C, out*k*k), and
    computing it as one is several times faster on a CPU than the convolution kernels
    (which do not special-case it). Same parameters, same state_dict, same results.
    Called with `labels`, z is the noise alone and the layer joins the labels itself;
    with many classes it never builds the join (see _class_rows), which changes the
    results by float rounding only.
    """

    def __init__(self, z_dim: int, num_classes: int, out_channels: int, side: int, bias: bool):
        super().__init__(z_dim + num_classes, out_channels, side, 1, 0, bias=bias)
        self.num_classes = num_classes

    def forward(
        self,
        z: torch.Tensor,
        output_size: list[int] | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if PLAIN:
            z = with_label(z.flatten(1), labels, self.num_classes if labels is not None else 0)
            return super().forward(z[:, :, None, None], output_size)
        if z.dim() == 4:
            if z.shape[-2:] != (1, 1):
                return super().forward(z, output_size)
            z = z.flatten(1)
        # The weight is (C, out, k, k). Read it in its own memory order, so that neither it
        # nor its gradient is copied, and give the output that order: channels_last weights
        # (the trainer's) give a channels_last output, as the convolution would.
        weight = self.weight.permute(0, 2, 3, 1)  # a view of channels_last memory
        last_order = weight.is_contiguous()
        weight = weight.flatten(1) if last_order else self.weight.flatten(1)
        if labels is None or not self.num_classes:  # z is the whole input
            out = torch.mm(z, weight)
        elif _gathers(labels, self.num_classes):
            z_dim = z.shape[1]
            rows = _class_rows(weight[z_dim:], labels, self.num_classes)
            out = torch.mm(z, weight[:z_dim]) + rows
        else:
            out = torch.mm(with_label(z, labels, self.num_classes), weight)
        if last_order:
            out = out.view(-1, *self.kernel_size, self.out_channels).permute(0, 3, 1, 2)
        else:
            out = out.view(-1, self.out_channels, *self.kernel_size)
        return out if self.bias is None else out + self.bias[:, None, None]


class ClassEmbedding(nn.Linear):
    """Projection conditioning's class embedding: a bias-free linear layer on the one-hot
    label, called with the labels themselves (indices, or soft labels for class walks),
    so that with many classes it picks the labels' columns instead (see _class_rows)."""

    def __init__(self, num_classes: int, features: int):
        super().__init__(num_classes, features, bias=False)
        if PLAIN:
            return
        # The (features, classes) weight kept in its transpose's memory order: a class's
        # column is then one contiguous run, which _class_rows copies whole, and its
        # gradient is added back the same way (dcgan-mnist's 200 x 6,272 embedding, batch
        # 256 forward and backward: 8 ms instead of 14). Same shape, values and state_dict.
        self.weight = nn.Parameter(self.weight.detach().t().contiguous().t())

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        if PLAIN:
            return F.linear(one_hot(labels, self.in_features, self.weight), self.weight)
        return _class_rows(self.weight.t(), labels, self.in_features)


class FullConv2d(nn.Conv2d):
    """D's last layer: a convolution whose kernel covers its whole input map.

    On an input the size of its kernel (and no padding), that convolution is a matrix
    product, x (N, C*k*k) @ W (out, C*k*k)^T, and computed as one it runs several times
    faster on a CPU (128 x 7 x 7 -> 1 at batch 128, forward and backward: 5.8 ms as a
    convolution, 0.8 ms as a product). Same parameters, same state_dict; the results
    differ from the convolution's only by float rounding.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        whole_map = x.shape[-2:] == self.kernel_size and self.padding == (0, 0)
        if PLAIN or not whole_map or self.dilation != (1, 1) or self.groups != 1:
            return super().forward(x)
        if channels_last(x):  # flatten both in channels-last order: views, no copies
            flat = x.permute(0, 2, 3, 1).flatten(1)
            weight = self.weight.permute(0, 2, 3, 1).flatten(1)
        else:
            flat, weight = x.flatten(1), self.weight.flatten(1)
        out = torch.mm(flat, weight.t())
        if self.bias is not None:
            out = out + self.bias
        return out[:, :, None, None]


def one_hot(labels: torch.Tensor | None, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """Class indices (N,) -> one-hot rows; soft labels (N, classes) pass through (class walks)."""
    if labels is None:
        raise ValueError("a conditional network needs labels")
    if labels.is_floating_point():
        return labels.to(like.dtype)
    return F.one_hot(labels, num_classes).to(like.dtype)


def _class_rows(
    weight: torch.Tensor, labels: torch.Tensor | None, num_classes: int
) -> torch.Tensor:
    """one_hot(labels) @ weight: the rows of `weight` (classes, F) that the labels pick.

    With many classes, picking the rows is much cheaper than the product with the one-hot
    matrix, whose cost grows with the class count: for 200 classes, 6272 features and
    batch 128, forward and backward take 5.6 ms instead of 8.9 ms; with 10 classes the
    product is as fast or faster. The values are the same either way (a one-hot product
    adds exact zeros); soft labels (class walks) always take the product.
    """
    if labels is None or not _gathers(labels, num_classes):
        return one_hot(labels, num_classes, weight) @ weight
    if weight.is_contiguous():  # whole rows
        return weight.index_select(0, labels)
    # (F, classes) memory, a Linear's weight: each of its rows is read once, in order
    return weight.t().index_select(1, labels).t()


def _gathers(labels: torch.Tensor | None, num_classes: int) -> bool:
    """Whether _class_rows gathers rows (many classes, class indices) or takes the product."""
    return (
        labels is not None and not labels.is_floating_point() and num_classes >= GATHER_FROM_CLASSES
    )


def with_label(
    vectors: torch.Tensor, labels: torch.Tensor | None, num_classes: int
) -> torch.Tensor:
    """Flat inputs (N, F) with the one-hot label joined on; unchanged when unconditional."""
    if not num_classes:
        return vectors
    return torch.cat([vectors, one_hot(labels, num_classes, vectors)], dim=1)


def channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
