"""Usage: generator, discriminator = build_models(config.model, (1, 28, 28), num_classes=10)

Two families, each with a conditional form: `mlp` (fully connected) and `dcgan`
(transposed convolutions up, strided convolutions down). Every network takes
`(input, labels)`; unconditional ones ignore the labels, so the trainer never needs to
know which one it holds. The labels are classes (model.conditional) or clusters of the
training images (model.clusters; see clusters.py).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from gancli.engine.config import ModelConfig
from gancli.engine.errors import ConfigError
from gancli.engine.fast_layers import (
    ClassEmbedding,
    FullConv2d,
    ProjectNoise,
    channels_last,
    one_hot,
    with_label,
)

MLP_G_HIDDEN = (256, 512, 1024)
MLP_D_HIDDEN = (1024, 512, 256)
DCGAN_BASE_CHANNELS = 64  # ngf and ndf at width 1.0
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.SyncBatchNorm)  # what --sync-bn may convert


class MLPGenerator(nn.Module):
    """z (+ one-hot label) -> 256 -> 512 -> 1024 -> C*H*W, tanh."""

    def __init__(self, cfg: ModelConfig, image_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        self.z_dim, self.image_shape = cfg.z_dim, image_shape
        self.num_classes = label_count(cfg, num_classes)
        widths = [_scaled(h, cfg.g_width) for h in MLP_G_HIDDEN]
        layers: list[nn.Module] = []
        fan_in = cfg.z_dim + self.num_classes
        for width in widths:
            layers += [nn.Linear(fan_in, width)]
            layers += _norm(cfg.g_norm, width, maps=False)
            layers += [nn.LeakyReLU(0.2, inplace=True)]
            fan_in = width
        layers += [nn.Linear(fan_in, math.prod(image_shape)), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        z = with_label(z.flatten(1), labels, self.num_classes)
        return self.net(z).view(-1, *self.image_shape)


class MLPDiscriminator(nn.Module):
    """C*H*W (+ one-hot label) -> 1024 -> 512 -> 256 -> 1 logit, LeakyReLU 0.2."""

    def __init__(self, cfg: ModelConfig, image_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        self.num_classes = label_count(cfg, num_classes)
        projected = bool(self.num_classes) and cfg.d_conditioning == "projection"
        self.input_classes = 0 if projected else self.num_classes
        widths = [_scaled(h, cfg.d_width) for h in MLP_D_HIDDEN]
        layers: list[nn.Module] = []
        fan_in = math.prod(image_shape) + self.input_classes
        for i, width in enumerate(widths):
            layers += [nn.Linear(fan_in, width)]
            if i > 0:  # never normalise the raw input layer
                layers += _norm(cfg.d_norm, width, maps=False)
            layers += [nn.LeakyReLU(0.2, inplace=True)]
            if cfg.d_dropout:
                layers += [nn.Dropout(cfg.d_dropout)]
            fan_in = width
        if cfg.d_mbstd:
            layers += [MinibatchStdDev(cfg.d_mbstd_group)]
            fan_in += 1
        layers += [nn.Linear(fan_in, 1)]
        self.net = nn.Sequential(*layers)
        self.embed = ClassEmbedding(self.num_classes, fan_in) if projected else None

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None, parts: int = 1
    ) -> torch.Tensor:
        x = with_label(x.flatten(1), labels, self.input_classes)
        return _project(self.net, self.embed, x, labels, parts)


class DCGANGenerator(nn.Module):
    """z (+ one-hot label) as a 1x1 map, upsampled by stride-2 transposed convolutions.

    28x28: z -> (ngf*2) x 7 x 7 -> ngf x 14 x 14 -> C x 28 x 28.
    32x32 and 64x64 start at 4x4 and double more often, halving the channels each time.
    """

    def __init__(self, cfg: ModelConfig, image_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        channels, size, _ = image_shape
        base, doublings = dcgan_geometry(size)
        self.num_classes = label_count(cfg, num_classes)
        ngf = _scaled(DCGAN_BASE_CHANNELS, cfg.g_width)
        width = ngf * 2 ** (doublings - 1)
        bias = cfg.g_norm == "none"  # batch norm's shift makes a conv bias redundant
        # (z_dim + classes) x 1 x 1 -> width x base x base
        layers: list[nn.Module] = [
            ProjectNoise(cfg.z_dim, self.num_classes, width, base, bias=bias),
            *_norm(cfg.g_norm, width, maps=True, num_classes=self.num_classes),
            nn.ReLU(inplace=True),
        ]
        for _ in range(doublings - 1):
            # width x s x s -> (width / 2) x 2s x 2s
            layers += [
                nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=bias),
                *_norm(cfg.g_norm, width // 2, maps=True, num_classes=self.num_classes),
                nn.ReLU(inplace=True),
            ]
            width //= 2
        # ngf x (size / 2) x (size / 2) -> C x size x size
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.class_norms = cfg.g_norm == "class-batch"

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        layers = iter(self.net)
        h = next(layers)(z.flatten(1), labels=labels)  # ProjectNoise joins the labels
        classes = one_hot(labels, self.num_classes, z) if self.class_norms else None
        for layer in layers:
            h = layer(h, classes) if isinstance(layer, ClassBatchNorm2d) else layer(h)
        return h


class ClassBatchNorm2d(nn.Module):
    """Batch norm whose scale and shift come from the class (de Vries et al. 2017; the
    generator of Miyato & Koyama 2018): y = BN(x) * (1 + s_c) + t_c, with s and t linear
    in the one-hot label, so soft labels blend the classes' scales and shifts.

    It holds a plain batch norm rather than being one, so that --sync-bn's conversion
    swaps only the normalisation and keeps the class scale and shift around it.
    """

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.num_features = channels
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.scale = nn.Linear(num_classes, channels, bias=False)
        self.shift = nn.Linear(num_classes, channels, bias=False)

    def forward(self, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        scale = 1.0 + self.scale(classes)[:, :, None, None]
        return self.norm(x) * scale + self.shift(classes)[:, :, None, None]


class DCGANDiscriminator(nn.Module):
    """Stride-2 convolutions down to the base size, then one base x base convolution to a logit.

    28x28: C (+ classes as constant maps) x 28 x 28 -> ndf x 14 x 14 -> (ndf*2) x 7 x 7 -> 1.
    """

    def __init__(self, cfg: ModelConfig, image_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        channels, size, _ = image_shape
        base, doublings = dcgan_geometry(size)
        self.num_classes = label_count(cfg, num_classes)
        projected = bool(self.num_classes) and cfg.d_conditioning == "projection"
        self.input_classes = 0 if projected else self.num_classes
        width = _scaled(DCGAN_BASE_CHANNELS, cfg.d_width)
        # (C + classes) x size x size -> ndf x (size / 2) x (size / 2); no norm on the input layer
        layers: list[nn.Module] = [
            nn.Conv2d(channels + self.input_classes, width, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for _ in range(doublings - 1):
            # width x s x s -> (width * 2) x s/2 x s/2
            layers += [
                nn.Conv2d(width, width * 2, 4, 2, 1, bias=cfg.d_norm != "batch"),
                *_norm(cfg.d_norm, width * 2, maps=True),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            width *= 2
        if cfg.d_mbstd:
            # width x base x base -> (width + 1) x base x base
            layers += [MinibatchStdDev(cfg.d_mbstd_group)]
            width += 1
        # width x base x base -> 1 x 1 x 1
        layers += [FullConv2d(width, 1, base, 1, 0)]
        self.net = nn.Sequential(*layers)
        features = width * base * base
        self.embed = ClassEmbedding(self.num_classes, features) if projected else None

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None, parts: int = 1
    ) -> torch.Tensor:
        if self.input_classes:
            maps = one_hot(labels, self.num_classes, x)[:, :, None, None]
            x = torch.cat([x, maps.expand(-1, -1, *x.shape[2:])], dim=1)
        return _project(self.net, self.embed, x, labels, parts)


class MinibatchStdDev(nn.Module):
    """One more feature for D: how much the samples of a small group differ from each other
    (Karras et al. 2018, section 3). The standard deviation of every feature over the group,
    averaged into one number, is given to each member of the group (as a constant map for
    convolutional features). A collapsed G makes groups of near-equal fakes, which D then
    tells apart from real groups at a glance, so G is pushed to vary its samples.

    Groups take every (N / group)-th sample, so a batch that is not divisible by `group`
    uses the largest group size that divides it.
    """

    def __init__(self, group: int):
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        g = next(size for size in range(min(self.group, n), 0, -1) if n % size == 0)
        # Every feature of a sample, in memory order (the average over them does not care
        # which order): a view for channels-last maps too.
        flat = x.permute(0, 2, 3, 1) if channels_last(x) else x
        grouped = flat.reshape(g, n // g, -1)  # grouped[a, b] is sample a * (n / g) + b
        # The variance written out: Tensor.var over a leading dimension of a few samples
        # ran ~6x slower here (40 ms forward and backward on 128 x 128 x 7 x 7).
        centred = grouped - grouped.mean(dim=0)
        std = (centred.square().mean(dim=0) + 1e-8).sqrt().mean(dim=1)
        std = std.repeat(g)  # sample i belongs to group i % (n / g)
        shape = (n, 1, *x.shape[2:])
        feature = std.view(n, *([1] * (x.dim() - 1))).expand(shape).to(x.dtype)
        if channels_last(x):
            # torch.cat takes its layout from its inputs: an expanded map would make the
            # output, and the gradient flowing back into D, NCHW (element-wise backward
            # kernels run many times slower on mixed layouts).
            feature = feature.contiguous(memory_format=torch.channels_last)
        return torch.cat([x, feature], dim=1)

    def extra_repr(self) -> str:
        return f"group={self.group}"


def label_count(cfg: ModelConfig, num_classes: int) -> int:
    """How many labels the networks are conditioned on: the dataset's classes, the
    clusters of self-conditioning, or none."""
    if cfg.clusters:
        return cfg.clusters
    return num_classes if cfg.conditional else 0


def dcgan_geometry(size: int) -> tuple[int, int]:
    """Image side -> (base side of the smallest feature map, number of stride-2 steps)."""
    doublings = 0
    while size % 2 == 0 and size // 2 >= 4:
        size //= 2
        doublings += 1
    if doublings < 2 or size > 7:
        raise ConfigError(
            "model.arch: dcgan needs a square image side of the form base * 2^k with base "
            f"4..7 and k >= 2 (28, 32, 64, ...); got {size * 2**doublings}"
        )
    return size, doublings


def build_models(
    cfg: ModelConfig, image_shape: tuple[int, int, int], num_classes: int, shapes_only: bool = False
) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) for the configured family, initialised.

    shapes_only: the layers without the weight init and spectral norm, which change values
    but no shape or parameter count. On PyTorch's meta device their random draws run
    Python reference code that imports the compiler stack (about 2 s).
    """
    if image_shape[1] != image_shape[2] and cfg.arch == "dcgan":
        raise ConfigError(f"model.arch: dcgan needs square images, got {image_shape[1:]}")
    if cfg.conditional and num_classes < 2:
        raise ConfigError("model.conditional: the dataset has no class labels to condition on")
    families = {
        "mlp": (MLPGenerator, MLPDiscriminator),
        "dcgan": (DCGANGenerator, DCGANDiscriminator),
    }
    g_cls, d_cls = families[cfg.arch]
    generator = g_cls(cfg, image_shape, num_classes)
    discriminator = d_cls(cfg, image_shape, num_classes)
    if shapes_only:
        return generator, discriminator
    if cfg.init == "dcgan":
        generator.apply(_dcgan_init)
        discriminator.apply(_dcgan_init)
    if cfg.spectral_norm:
        for module in list(discriminator.modules()):
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                spectral_norm(module)
    return generator, discriminator


def activations_per_sample(model: nn.Module, input_size: tuple[int, ...]) -> int:
    """Floats a sample's pass through G or D leaves in its layers' outputs, which autograd
    keeps for the backward pass; input_size is the side of its input map: (1, 1) for
    G's noise, the image's (H, W) for D (fully connected nets ignore it).

    Read off the layers' shapes rather than run: a forward pass on PyTorch's meta device
    would import its compiler stack, about 2 s of every `gancli train` on a small CPU.
    tests/test_models.py checks it against such a pass for every preset and layer kind.
    """
    net = model.net
    assert isinstance(net, nn.Sequential)
    shape: list[int] = [0, *input_size]  # channels: set by the first layer
    total = 0
    for layer in net:
        if isinstance(layer, nn.Linear):
            shape = [layer.out_features]
        elif isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            shape = [layer.out_channels, *_conv_sides(layer, shape[1:])]
        elif isinstance(layer, MinibatchStdDev):
            shape = [shape[0] + 1, *shape[1:]]
        elif isinstance(layer, ClassBatchNorm2d):
            total += 2 * shape[0]  # the class's scale and shift
        total += math.prod(shape)
    embed = getattr(model, "embed", None)  # projection conditioning's class embedding
    return total + (embed.out_features if isinstance(embed, nn.Linear) else 0)


def _conv_sides(layer: nn.Conv2d | nn.ConvTranspose2d, sides: list[int]) -> list[int]:
    """Output height and width of a (transposed) convolution, as PyTorch documents them."""
    out = []
    for i, side in enumerate(sides):
        k, s, d = layer.kernel_size[i], layer.stride[i], layer.dilation[i]
        p = layer.padding[i]
        assert isinstance(p, int)
        if isinstance(layer, nn.ConvTranspose2d):
            out.append((side - 1) * s - 2 * p + d * (k - 1) + layer.output_padding[i] + 1)
        else:
            out.append((side + 2 * p - d * (k - 1) - 1) // s + 1)
    return out


def _through(layers: nn.Sequential, x: torch.Tensor, parts: int) -> torch.Tensor:
    """x through `layers`. With parts > 1, x is that many equal batches joined (D's reals
    and fakes): the layers that compare a batch's samples take each part on its own, in
    order, so values, gradients and batch norm's running statistics are those of one pass
    per part; every other layer runs once over the whole, as bigger matrix products."""
    if parts == 1:
        return layers(x)
    for layer in layers:
        if isinstance(layer, (BATCH_NORMS, MinibatchStdDev)):  # compares a batch's samples
            x = torch.cat([layer(part) for part in x.chunk(parts)])
        else:
            x = layer(x)
    return x


def has_convolutions(module: nn.Module) -> bool:
    return any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in module.modules())


def _dcgan_init(module: nn.Module) -> None:
    # Radford et al. 2016, section 4: all weights from N(0, 0.02); batch-norm scales N(1, 0.02).
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and module.affine:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _project(
    net: nn.Sequential,
    embed: ClassEmbedding | None,
    x: torch.Tensor,
    labels: torch.Tensor | None,
    parts: int,
) -> torch.Tensor:
    """D's score per sample: its last layer on its features, plus, with projection
    conditioning, the inner product of those features with the label's embedding
    (Miyato & Koyama 2018, eq. 3: a class-dependent last layer). `parts`: see _through."""
    if embed is None:
        return _through(net, x, parts).view(-1)
    features = _through(net[:-1], x, parts)
    score = net[-1](features).view(-1)
    # The embedding in the features' memory layout, summed without flattening: flattening
    # channels_last features would copy them, and hand their backward a gradient in the
    # other layout, where the element-wise backward kernels run several times slower.
    layout = torch.channels_last if features.dim() == 4 else torch.contiguous_format
    if not features.is_contiguous(memory_format=layout):
        layout = torch.contiguous_format
    embedded = embed(labels).view(features.shape)
    inner = embedded.contiguous(memory_format=layout) * features
    return score + inner.sum(dim=tuple(range(1, inner.dim())))


def _scaled(width: int, multiplier: float) -> int:
    return max(1, round(width * multiplier))


def _norm(kind: str, channels: int, maps: bool, num_classes: int = 0) -> list[nn.Module]:
    """The layer model.g_norm or model.d_norm names, if any, over features or feature maps."""
    if kind == "class-batch":
        return [ClassBatchNorm2d(channels, num_classes)]
    if kind == "batch":
        return [nn.BatchNorm2d(channels) if maps else nn.BatchNorm1d(channels)]
    if kind == "layer":  # each sample on its own; maps over (C, H, W), as WGAN-GP's critic does
        return [nn.GroupNorm(1, channels) if maps else nn.LayerNorm(channels)]
    return []
