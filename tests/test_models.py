"""Shapes, sizes and initialisation of every generator and discriminator."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from gancli.engine import fast_layers
from gancli.engine.config import ModelConfig
from gancli.engine.errors import ConfigError
from gancli.engine.fast_layers import ClassEmbedding, FullConv2d
from gancli.engine.models import (
    ClassBatchNorm2d,
    activations_per_sample,
    build_models,
    dcgan_geometry,
)


def has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 64, 64)])
@pytest.mark.parametrize("d_conditioning", ["input", "projection"])
def test_shapes(
    arch: str, conditional: bool, shape: tuple[int, int, int], d_conditioning: str
) -> None:
    cfg = ModelConfig(arch=arch, conditional=conditional, d_conditioning=d_conditioning)
    g, d = build_models(cfg, shape, num_classes=10)
    z, labels = torch.randn(4, cfg.z_dim), torch.tensor([0, 3, 7, 9])
    images = g(z, labels)
    assert images.shape == (4, *shape)
    assert images.min() >= -1 and images.max() <= 1  # tanh output
    assert d(images, labels).shape == (4,)


def forward_activations(net: nn.Module, inputs: tuple[torch.Tensor, torch.Tensor]) -> int:
    """The reference: every leaf layer's output, counted in a forward pass of 2 samples."""
    counted = [0]

    def count(module: nn.Module, args: object, output: torch.Tensor) -> None:
        counted[0] += output.numel()

    leaves = [m for m in net.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    net.eval()(*inputs)
    for hook in hooks:
        hook.remove()
    return counted[0] // 2


@pytest.mark.parametrize(
    ("overrides", "shape"),
    [
        ({"arch": "mlp"}, (1, 28, 28)),
        (
            {
                "arch": "mlp",
                "conditional": True,
                "d_norm": "layer",
                "d_mbstd": True,
                "d_dropout": 0.3,
            },
            (1, 28, 28),
        ),
        ({"arch": "mlp", "conditional": True, "d_conditioning": "projection"}, (3, 32, 32)),
        ({"arch": "dcgan"}, (1, 28, 28)),
        ({"arch": "dcgan", "g_width": 0.5, "d_width": 1.5, "d_norm": "layer"}, (3, 32, 32)),
        ({"arch": "dcgan", "conditional": True, "g_norm": "class-batch"}, (1, 64, 64)),
        (
            {"arch": "dcgan", "clusters": 7, "d_conditioning": "projection", "d_mbstd": True},
            (1, 28, 28),
        ),
        ({"arch": "dcgan", "conditional": True, "d_norm": "none", "g_norm": "none"}, (3, 64, 64)),
    ],
)
def test_activations_read_off_the_layers_equal_a_forward_pass(
    overrides: dict[str, object], shape: tuple[int, int, int]
) -> None:
    cfg = ModelConfig(**overrides)  # type: ignore[arg-type]
    g, d = build_models(cfg, shape, num_classes=10)
    z, labels = torch.randn(2, cfg.z_dim), torch.tensor([1, 5])
    assert activations_per_sample(g, (1, 1)) == forward_activations(g, (z, labels))
    images = torch.zeros(2, *shape)
    assert activations_per_sample(d, shape[1:]) == forward_activations(d, (images, labels))


def test_mlp_layout_matches_the_classic_recipe() -> None:
    g, d = build_models(ModelConfig(arch="mlp", g_norm="none", d_norm="none"), (1, 28, 28), 10)
    g_linear = [m for m in g.modules() if isinstance(m, nn.Linear)]
    d_linear = [m for m in d.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in g_linear] == [
        (100, 256),
        (256, 512),
        (512, 1024),
        (1024, 784),
    ]
    assert [(m.in_features, m.out_features) for m in d_linear] == [
        (784, 1024),
        (1024, 512),
        (512, 256),
        (256, 1),
    ]


def test_conditional_inputs_widen_the_first_layers() -> None:
    g, d = build_models(ModelConfig(arch="dcgan", conditional=True), (1, 28, 28), 10)
    assert g.net[0].in_channels == 110  # z + one-hot
    assert d.net[0].in_channels == 11  # image + 10 label maps
    z = torch.randn(2, 100)
    out_a = g(z, torch.tensor([1, 1]))
    out_b = g(z, torch.tensor([2, 2]))
    assert not torch.allclose(out_a, out_b)  # the label changes the image


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
@pytest.mark.parametrize("classes", [10, 200])  # 200: the labels' columns are gathered
def test_projection_conditioning_is_a_class_dependent_last_layer(arch: str, classes: int) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(
        arch=arch,
        conditional=classes == 10,
        clusters=0 if classes == 10 else classes,
        d_conditioning="projection",
    )
    _, d = build_models(cfg, (1, 28, 28), 10)
    assert d.input_classes == 0  # the image goes in alone
    d.eval()
    x, labels = torch.randn(3, 1, 28, 28), torch.tensor([0, 4, classes - 1])
    phi = d.net[:-1](x.flatten(1) if arch == "mlp" else x)
    # D(x, y) = w . phi(x) + b + e_y . phi(x), with e_y the label's column of the embedding
    expected = d.net[-1](phi).view(-1) + (d.embed.weight.T[labels] * phi.flatten(1)).sum(1)
    torch.testing.assert_close(d(x, labels), expected)
    assert not torch.allclose(d(x, labels), d(x, torch.tensor([1, 1, 1])))
    # a soft label mixes the class scores linearly (walks between classes)
    half = torch.full((3, classes), 0.0)
    half[:, 2] = half[:, 5] = 0.5
    mean = (d(x, torch.full((3,), 2)) + d(x, torch.full((3,), 5))) / 2
    torch.testing.assert_close(d(x, half), mean)
    if arch == "dcgan":  # the trainer's channels_last layout: same scores
        d.to(memory_format=torch.channels_last)
        x_last = x.contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(d(x_last, labels), expected)


def test_class_embedding_keeps_each_class_in_one_contiguous_run() -> None:
    """The weight is a Linear's (features, classes), stored classes-major: through the
    trainer's conversions and a training step, and back from a plain Linear's state_dict."""

    embed = ClassEmbedding(200, 6272)
    assert embed.weight.shape == (6272, 200) and embed.weight.t().is_contiguous()
    plain = nn.Linear(200, 6272, bias=False)
    embed.load_state_dict(plain.state_dict())
    assert torch.equal(embed.weight, plain.weight) and embed.weight.t().is_contiguous()
    embed.to(memory_format=torch.channels_last).to("cpu")
    opt = torch.optim.Adam(embed.parameters(), lr=0.1, fused=True)
    labels = torch.tensor([3, 3, 199])
    rows = embed(labels)
    torch.testing.assert_close(rows, plain.weight.t()[labels])
    rows.sum().backward()
    assert embed.weight.grad is not None and embed.weight.grad.t().is_contiguous()
    assert torch.equal(embed.weight.grad[:, 3], torch.full((6272,), 2.0))  # class 3 twice
    opt.step()
    assert embed.weight.t().is_contiguous()
    assert not torch.equal(embed.weight[:, 3], plain.weight[:, 3])  # the picked columns moved
    assert torch.equal(embed.weight[:, 0], plain.weight[:, 0])  # the others did not


@pytest.mark.parametrize("bias", [False, True])
def test_first_generator_layer_computed_as_a_matrix_product(bias: bool) -> None:
    torch.manual_seed(0)
    g, _ = build_models(ModelConfig(g_norm="none" if bias else "batch"), (1, 28, 28), 10)
    layer = g.net[0]
    conv = nn.ConvTranspose2d(100, layer.out_channels, 7, 1, 0, bias=bias)
    conv.load_state_dict(layer.state_dict())  # same parameters, same checkpoint keys
    z = torch.randn(5, 100, 1, 1)
    torch.testing.assert_close(layer(z), conv(z))
    # The trainer's channels_last weights: same values, a channels_last output (as the
    # convolution gives), and neither the weight nor its gradient copied to another layout.
    layer.to(memory_format=torch.channels_last)
    out = layer(z)
    torch.testing.assert_close(out, conv(z))
    assert out.is_contiguous(memory_format=torch.channels_last)
    out.sum().backward()
    assert layer.weight.grad is not None
    assert layer.weight.grad.stride() == layer.weight.stride()


def test_last_discriminator_layer_computed_as_a_matrix_product() -> None:
    torch.manual_seed(0)
    _, d = build_models(ModelConfig(arch="dcgan"), (1, 28, 28), 10)
    layer = d.net[-1]
    assert isinstance(layer, FullConv2d)
    conv = nn.Conv2d(128, 1, 7)
    conv.load_state_dict(layer.state_dict())  # same parameters, same checkpoint keys
    for layout in (torch.contiguous_format, torch.channels_last):
        layer.to(memory_format=layout)
        conv.to(memory_format=layout)
        x = torch.randn(6, 128, 7, 7).contiguous(memory_format=layout)
        x_a, x_b = x.clone().requires_grad_(), x.clone().requires_grad_()
        out = layer(x_a)
        torch.testing.assert_close(out, conv(x_b))
        (out * torch.arange(6.0)[:, None, None, None]).sum().backward()
        (conv(x_b) * torch.arange(6.0)[:, None, None, None]).sum().backward()
        torch.testing.assert_close(x_a.grad, x_b.grad)
        torch.testing.assert_close(layer.weight.grad, conv.weight.grad)
        torch.testing.assert_close(layer.bias.grad, conv.bias.grad)
        assert x_a.grad is not None and x_a.grad.is_contiguous(memory_format=layout)
        layer.zero_grad()
        conv.zero_grad()
    # any other input size is an ordinary convolution
    bigger = torch.randn(2, 128, 9, 9)
    torch.testing.assert_close(layer(bigger), conv(bigger))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_generator_input_with_many_classes_gathers_the_label_rows(
    layout: torch.memory_format,
) -> None:
    torch.manual_seed(0)
    g, _ = build_models(ModelConfig(arch="dcgan", clusters=200), (1, 28, 28), 10)
    layer = g.net[0].to(memory_format=layout)
    conv = nn.ConvTranspose2d(300, layer.out_channels, 7, 1, 0, bias=False)
    conv.load_state_dict(layer.state_dict())
    z, labels = torch.randn(5, 100), torch.tensor([0, 7, 7, 150, 199])
    joined = torch.cat([z, nn.functional.one_hot(labels, 200).float()], 1)[:, :, None, None]
    out = layer(z, labels=labels)
    torch.testing.assert_close(out, conv(joined))
    assert out.is_contiguous(memory_format=layout)
    out.square().sum().backward()
    conv(joined).square().sum().backward()
    assert layer.weight.grad is not None and conv.weight.grad is not None
    torch.testing.assert_close(layer.weight.grad, conv.weight.grad)
    # the joined input is still taken as it was: one matrix product
    torch.testing.assert_close(layer(joined), conv(joined))


def test_dcgan_init_and_width_multipliers() -> None:
    torch.manual_seed(0)
    g, d = build_models(ModelConfig(arch="dcgan", g_width=0.5, d_width=2.0), (1, 28, 28), 10)
    convs = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert convs[0].out_channels == 64  # ngf*2 with ngf = 64 * 0.5
    assert d.net[0].out_channels == 128  # ndf = 64 * 2
    weights = torch.cat([m.weight.flatten() for m in convs])
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    assert weights.mean().abs().item() < 1e-3


def test_normalisation_and_spectral_norm_options() -> None:
    _, d = build_models(ModelConfig(d_norm="layer", spectral_norm=True), (1, 28, 28), 10)
    assert not has_batch_norm(d)
    assert any(isinstance(m, nn.GroupNorm) for m in d.modules())
    assert all(
        hasattr(m, "parametrizations") for m in d.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    )
    _, d = build_models(ModelConfig(d_norm="none"), (1, 28, 28), 10)
    assert not any(isinstance(m, (nn.GroupNorm, nn.BatchNorm2d)) for m in d.modules())
    g, d = build_models(ModelConfig(), (1, 28, 28), 10)
    assert has_batch_norm(g) and has_batch_norm(d)
    assert parameters(g) > 0


def test_dcgan_geometry() -> None:
    assert dcgan_geometry(28) == (7, 2)
    assert dcgan_geometry(32) == (4, 3)
    assert dcgan_geometry(64) == (4, 4)
    with pytest.raises(ConfigError, match="dcgan needs"):
        dcgan_geometry(30)
    with pytest.raises(ConfigError, match="dcgan needs"):
        dcgan_geometry(8)


def test_conditional_needs_classes() -> None:
    with pytest.raises(ConfigError, match="no class labels"):
        build_models(ModelConfig(conditional=True), (1, 28, 28), num_classes=1)


def test_mlp_discriminator_dropout() -> None:
    torch.manual_seed(0)
    _, d = build_models(ModelConfig(arch="mlp", d_dropout=0.5), (1, 28, 28), 10)
    assert sum(isinstance(m, nn.Dropout) for m in d.modules()) == 3  # after each hidden layer
    x = torch.randn(8, 1, 28, 28)
    assert not torch.equal(d(x), d(x))  # a new mask per pass while training
    d.eval()
    torch.testing.assert_close(d(x), d(x))


def test_class_batch_norm_gives_each_class_its_scale_and_shift() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(conditional=True, g_norm="class-batch")
    g, _ = build_models(cfg, (1, 28, 28), 10)
    norms = [m for m in g.modules() if isinstance(m, ClassBatchNorm2d)]
    assert len(norms) == 2 and all(not m.norm.affine for m in norms)  # the class scales, shifts
    norm = norms[0]
    x = torch.randn(4, norm.num_features, 7, 7)
    one_hot = torch.eye(10)[torch.tensor([0, 0, 3, 3])]
    plain = nn.functional.batch_norm(x, None, None, training=True)
    expected = plain * (1 + norm.scale.weight.T[[0, 0, 3, 3], :, None, None])
    expected = expected + norm.shift.weight.T[[0, 0, 3, 3], :, None, None]
    torch.testing.assert_close(norm(x, one_hot), expected)
    z = torch.randn(2, 100)
    torch.testing.assert_close(g(z, torch.tensor([4, 4])), g(z, torch.eye(10)[[4, 4]]))
    assert not torch.allclose(g(z, torch.tensor([4, 4])), g(z, torch.tensor([5, 5])))
    # --sync-bn swaps the inner batch norm only; the class scale and shift stay around it
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(g)
    wrapped = [m for m in synced.modules() if isinstance(m, ClassBatchNorm2d)]
    assert len(wrapped) == 2 and all(isinstance(m.norm, nn.SyncBatchNorm) for m in wrapped)


def test_minibatch_stddev_by_hand() -> None:
    from gancli.engine.models import MinibatchStdDev

    x = torch.tensor([0.0, 1.0, 2.0, 5.0]).view(4, 1, 1, 1).expand(4, 2, 2, 2).contiguous()
    out = MinibatchStdDev(group=2)(x)
    assert out.shape == (4, 3, 2, 2) and torch.equal(out[:, :2], x)
    # groups take every second sample: {0, 2} (std 1) and {1, 5} (std 2)
    assert torch.allclose(out[:, 2, 0, 0], torch.tensor([1.0, 2.0, 1.0, 2.0]), atol=1e-4)
    # channels-last in, channels-last out, and the same numbers
    cl = MinibatchStdDev(group=2)(x.contiguous(memory_format=torch.channels_last))
    assert cl.is_contiguous(memory_format=torch.channels_last) and torch.allclose(cl, out)
    # 3 samples do not split into groups of 2: groups of 1, no spread at all
    assert torch.allclose(MinibatchStdDev(group=2)(x[:3])[:, 2], torch.zeros(3, 2, 2), atol=1e-3)
    flat = MinibatchStdDev(group=4)(torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 0.0], [2.0, 4.0]]))
    # per feature over the 4 samples: std 1 and std sqrt(3), averaged
    assert torch.allclose(flat[:, 2], torch.full((4,), (1 + 3**0.5) / 2), atol=1e-4)


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_minibatch_stddev_in_d_mixes_samples(arch: str) -> None:
    cfg = ModelConfig(arch=arch, d_norm="none", d_mbstd=True)
    _, d = build_models(cfg, (1, 28, 28), 10)
    x = torch.randn(8, 1, 28, 28)
    others_changed = x.clone()
    others_changed[1:] = 0.0  # sample 0 as it was, the rest of its batch alike
    with torch.no_grad():
        assert d(x)[0].item() != pytest.approx(d(others_changed)[0].item(), abs=1e-6)


@pytest.mark.parametrize(
    ("arch", "d_norm", "mbstd", "classes", "d_conditioning"),
    [
        ("dcgan", "batch", False, 0, "input"),
        ("dcgan", "batch", True, 200, "projection"),  # dcgan-mnist's and modern-mnist's D
        ("dcgan", "layer", True, 10, "input"),
        ("mlp", "batch", True, 10, "projection"),
    ],
)
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_d_on_joined_batches_in_parts_equals_one_pass_per_batch(
    arch: str,
    d_norm: str,
    mbstd: bool,
    classes: int,
    d_conditioning: str,
    layout: torch.memory_format,
) -> None:
    """The trainer's D step: reals and fakes joined, parts=2. Batch norm and minibatch
    standard deviation must see each part alone, as two passes would, in the same order."""
    cfg = ModelConfig(
        arch=arch, d_norm=d_norm, d_mbstd=mbstd, d_mbstd_group=4, d_conditioning=d_conditioning
    )
    torch.manual_seed(0)
    _, joined = build_models(cfg, (1, 28, 28), classes)
    joined = joined.to(memory_format=layout)
    apart, mixed = copy.deepcopy(joined), copy.deepcopy(joined)
    real = torch.randn(8, 1, 28, 28).contiguous(memory_format=layout)
    fake = 0.5 * torch.randn(8, 1, 28, 28).contiguous(memory_format=layout) + 1.0
    labels = torch.randint(0, max(classes, 1), (8,)) if classes else None
    both = None if labels is None else torch.cat([labels, labels])
    out = joined(torch.cat([real, fake]), both, parts=2)
    expected = torch.cat([apart(real, labels), apart(fake, labels)])
    assert torch.equal(out, expected)
    # with the parts mixed up, the statistics of each part change (a check on the check)
    assert not torch.allclose(mixed(torch.cat([real, fake]), both), expected, atol=1e-4)
    out.square().sum().backward()
    expected.square().sum().backward()
    pairs = list(zip(joined.named_parameters(), apart.parameters(), strict=True))
    # the same sums in another order: equal up to rounding, relative to the largest gradient
    # (a bias before batch norm has an exact gradient of zero: rounding noise alone)
    scale = max(float(q.grad.abs().max()) for _, q in pairs if q.grad is not None)
    for (name, p), q in pairs:
        assert p.grad is not None and q.grad is not None
        assert (p.grad - q.grad).abs().max() <= 1e-5 * scale, name
    for (name, b), c in zip(joined.named_buffers(), apart.buffers(), strict=True):
        assert torch.equal(b, c), name  # running statistics: the real part's, then the fake's


@pytest.mark.parametrize("preset", ["dcgan-mnist", "cgan-mnist"])
def test_the_fast_layers_compute_what_their_plain_forms_do(
    preset: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GANCLI_PLAIN_LAYERS=1's path (the plain nn layers) and the fast one give the same
    outputs and gradients, to float rounding, on the networks of both kinds of labels."""
    from gancli.engine.config import load_config

    torch.manual_seed(0)
    generator, discriminator = build_models(load_config(preset).model, (1, 28, 28), 10)
    classes = generator.num_classes
    z, labels = torch.randn(16, 100), torch.randint(0, classes, (16,))

    def run() -> tuple[torch.Tensor, ...]:
        generator.zero_grad()
        discriminator.zero_grad()
        score = discriminator(generator(z, labels), labels)
        score.sum().backward()
        grads = [p.grad.clone() for p in (*generator.parameters(), *discriminator.parameters())]
        return (score.detach(), *grads)

    fast = run()
    monkeypatch.setattr(fast_layers, "PLAIN", True)
    plain = run()
    for a, b in zip(fast, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
