"""Usage: grad = input_gradient(discriminator, images, labels)  # differentiable again

The gradient of D's scores with respect to its input, as the gradient penalties (WGAN-GP;
R1 and R2) need it: a graph that the penalty's own backward differentiates, with D's
strided convolutions (`Conv2d`) differentiated twice on the same fast kernels as their
forward and backward passes.

Differentiating a convolution's backward, PyTorch's formula computes the weight's part as
a convolution with batch and channels swapped, which oneDNN runs far slower on a CPU than
the same product taken as a weight gradient (wgan-gp-mnist, 64 images: about 12 ms for the
64 -> 128 layer, 2.4 ms for the first). Here the three products a convolution involves
are autograd Functions, each given by the other two as its derivative:

    conv(x, w)        -> y          d/dx: input_grad(g, w)       d/dw: weight_grad(x, g)
    input_grad(g, w)  -> like x     d/dg: conv(h, w)             d/dw: weight_grad(h, g)
    weight_grad(x, g) -> like w     d/dx: input_grad(g, h)       d/dg: conv(x, h)

(h: the gradient arriving at each one's output), so derivatives of any order run on
convolution forward and backward kernels. They serve only `input_gradient`'s passes, on
the CPU, in float32 (or 64) and eager; every other pass (the D and G steps, autocast,
torch.compile, GPUs) takes PyTorch's own convolution.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.autograd import Function

# Set while input_gradient builds D's graph: Conv2d takes the Functions below.
_BUILDING = ContextVar("gancli_conv_building", default=False)
# Set while input_gradient's own backward runs: only input gradients are asked for, so the
# Functions skip the weights' (autograd would drop them; PyTorch's own nodes know that from
# the engine, which custom Functions cannot ask).
_INPUTS_ONLY = ContextVar("gancli_conv_inputs_only", default=False)


def input_gradient(net: nn.Module, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """d(sum of net(x, labels)) / dx, per sample, as a graph to differentiate again."""
    x = x.detach().requires_grad_(True)
    token = _BUILDING.set(True)
    try:
        out = net(x, labels)
    finally:
        _BUILDING.reset(token)
    token = _INPUTS_ONLY.set(True)
    try:
        (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    finally:
        _INPUTS_ONLY.reset(token)
    return grad


class Geometry(NamedTuple):
    stride: list[int]
    padding: list[int]
    dilation: list[int]
    groups: int


class Conv2d(nn.Conv2d):
    """nn.Conv2d (same parameters and state_dict) that, in `input_gradient`'s passes,
    computes through the three Functions of this module."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _BUILDING.get() or not self._own_path_serves(x):
            return super().forward(x)
        assert isinstance(self.padding, tuple)  # a string ("same") fails _own_path_serves
        geometry = Geometry(list(self.stride), list(self.padding), list(self.dilation), self.groups)
        out: torch.Tensor = Convolution.apply(x, self.weight, self.bias, geometry)
        return out

    def _own_path_serves(self, x: torch.Tensor) -> bool:
        return (
            x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64)
            and self.padding_mode == "zeros"
            and not isinstance(self.padding, str)
            and not torch.is_autocast_enabled("cpu")
            and not torch.compiler.is_compiling()
        )


_aten = torch.ops.aten


class Convolution(Function):
    """conv(x, weight) + bias."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        geo: Geometry,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.geo = geo
        return _aten.convolution(
            x, weight, bias, geo.stride, geo.padding, geo.dilation, False, [0, 0], geo.groups
        )

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b, _ = ctx.needs_input_grad
        if _INPUTS_ONLY.get():
            need_w = need_b = False
        if not torch.is_grad_enabled():  # a plain backward: one kernel call, as PyTorch's own
            return (*_backward(grad, x, weight, ctx.geo, [need_x, need_w, need_b]), None)
        d_x = InputGrad.apply(grad, weight, x.detach(), ctx.geo) if need_x else None
        d_w = WeightGrad.apply(x, grad, weight.detach(), ctx.geo) if need_w else None
        d_b = grad.sum((0, 2, 3)) if need_b else None
        return d_x, d_w, d_b, None


class InputGrad(Function):
    """The gradient that conv(., weight) sends back to its input (shaped like `like`) for
    the gradient `grad` at its output: a transposed convolution."""

    @staticmethod
    def forward(
        ctx: Any, grad: torch.Tensor, weight: torch.Tensor, like: torch.Tensor, geo: Geometry
    ) -> torch.Tensor:
        ctx.save_for_backward(grad, weight)
        ctx.geo = geo
        return _backward(grad, like, weight, geo, [True, False, False])[0]

    @staticmethod
    def backward(ctx: Any, h: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad, weight = ctx.saved_tensors
        need_grad, need_w, _, _ = ctx.needs_input_grad
        d_grad = Convolution.apply(h, weight, None, ctx.geo) if need_grad else None
        d_w = WeightGrad.apply(h, grad, weight.detach(), ctx.geo) if need_w else None
        return d_grad, d_w, None, None


class WeightGrad(Function):
    """The gradient that conv(x, .) sends back to its weight (shaped like `like`) for the
    gradient `grad` at its output."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, grad: torch.Tensor, like: torch.Tensor, geo: Geometry
    ) -> torch.Tensor:
        ctx.save_for_backward(x, grad)
        ctx.geo = geo
        return _backward(grad, x, like, geo, [False, True, False])[1]

    @staticmethod
    def backward(ctx: Any, h: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, grad = ctx.saved_tensors
        need_x, need_grad, _, _ = ctx.needs_input_grad
        d_x = InputGrad.apply(grad, h, x.detach(), ctx.geo) if need_x else None
        d_grad = Convolution.apply(x, h, None, ctx.geo) if need_grad else None
        return d_x, d_grad, None, None


def _backward(
    grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, geo: Geometry, mask: list[bool]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PyTorch's convolution backward kernel: the gradients `mask` asks for."""
    bias_sizes = [weight.shape[0]] if mask[2] else None
    result: tuple[torch.Tensor, torch.Tensor, torch.Tensor] = _aten.convolution_backward(
        grad, x, weight, bias_sizes, geo.stride, geo.padding, geo.dilation,
        False, [0, 0], geo.groups, mask,
    )  # fmt: skip
    return result
