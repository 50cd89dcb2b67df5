"""D's convolutions differentiated twice: gancli's own derivatives against PyTorch's."""

from __future__ import annotations

import copy

import pytest
import torch

from gancli.engine.config import load_config
from gancli.engine.convolution import (
    Conv2d,
    Convolution,
    Geometry,
    InputGrad,
    WeightGrad,
    input_gradient,
)
from gancli.engine.models import build_models


@pytest.mark.parametrize("stride, padding", [(2, 1), (1, 0)])
def test_the_three_functions_have_correct_first_and_second_derivatives(
    stride: int, padding: int
) -> None:
    torch.manual_seed(0)
    geo = Geometry([stride, stride], [padding, padding], [1, 1], 1)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    y = Convolution.apply(x, w, b, geo)
    torch.testing.assert_close(y, torch.nn.functional.conv2d(x, w, b, stride, padding))
    g = torch.randn_like(y, requires_grad=True)
    conv = lambda x, w, b: Convolution.apply(x, w, b, geo)  # noqa: E731
    input_grad = lambda g, w: InputGrad.apply(g, w, x.detach(), geo)  # noqa: E731
    weight_grad = lambda x, g: WeightGrad.apply(x, g, w.detach(), geo)  # noqa: E731
    for fn, inputs in ((conv, (x, w, b)), (input_grad, (g, w)), (weight_grad, (x, g))):
        assert torch.autograd.gradcheck(fn, inputs)
        assert torch.autograd.gradgradcheck(fn, inputs)


def _critic(layout: torch.memory_format) -> torch.nn.Module:
    """wgan-gp-mnist's D: stride-2 convolutions, layer norm, the whole-map last layer."""
    cfg = load_config("wgan-gp-mnist")
    torch.manual_seed(0)
    _, d = build_models(cfg.model, (1, 28, 28), 10)
    assert isinstance(d.net[0], Conv2d) and isinstance(d.net[2], Conv2d)
    return d.to(memory_format=layout)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_input_gradient_and_the_penalty_on_it_match_pytorchs_own_derivatives(
    layout: torch.memory_format,
) -> None:
    ours = _critic(layout)
    theirs = copy.deepcopy(ours)
    x = torch.randn(8, 1, 28, 28).contiguous(memory_format=layout)
    grad = input_gradient(ours, x, None)
    leaf = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(theirs(leaf, None).sum(), leaf, create_graph=True)
    assert grad.shape == x.shape and torch.equal(grad, expected)
    assert grad.is_contiguous(memory_format=layout)
    assert all(p.grad is None for p in ours.parameters())  # only the input's was asked for
    # WGAN-GP's penalty plus a plain D loss, so the weights get both kinds of gradient
    for net, g in ((ours, grad), (theirs, expected)):
        penalty = (g.flatten(1).norm(dim=1) - 1).square().mean()
        (10 * penalty + net(x, None).mean()).backward()
    pairs = list(zip(ours.named_parameters(), theirs.parameters(), strict=True))
    scale = max(float(q.grad.abs().max()) for _, q in pairs if q.grad is not None)
    for (name, p), q in pairs:
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None and q.grad is not None:
            assert (p.grad - q.grad).abs().max() <= 1e-5 * scale, name


def test_only_input_gradient_passes_take_the_functions() -> None:
    d = _critic(torch.channels_last)
    x = torch.randn(4, 1, 28, 28, requires_grad=True)
    first = d.net[0]
    assert type(first(x).grad_fn).__name__ == "ConvolutionBackward0"  # PyTorch's own
    seen: list[str] = []
    hook = first.register_forward_hook(lambda m, i, out: seen.append(type(out.grad_fn).__name__))
    input_gradient(d, x, None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        input_gradient(d, x, None)  # under autocast: PyTorch's own (bf16 weights)
    hook.remove()
    assert seen[0] == "ConvolutionBackward" and seen[1] != "ConvolutionBackward"
