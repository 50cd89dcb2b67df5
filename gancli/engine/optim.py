"""Usage: opt = Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999)); opt.zero_grad(); ...; opt.step()

The two optimisers training uses, Adam and RMSprop, without torch.optim. Every
torch.optim optimiser imports PyTorch's compiler stack (torch._dynamo) on first use: about
2 s on a 2-core CPU, a third of what a short `gancli train` spends outside its steps. These
call the same update kernels with the same arguments as `torch.optim.Adam(fused=True)` and
`torch.optim.RMSprop(foreach=True)`, so they give bitwise the same weights, and their
state_dict has torch.optim's layout, so checkpoints load into either (tests/test_optim.py).

What training needs and nothing more: one parameter group, no closures, no weight decay,
no schedules. `torch.amp.GradScaler` drives them through `param_groups` and `step()`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

StateDict = dict[str, Any]
Tensors = list[torch.Tensor]


class Optimizer:
    """One parameter group, per-parameter state, and torch.optim's state_dict layout."""

    #: The state tensors one parameter gets on its first step, in torch.optim's names.
    slots: tuple[str, ...] = ()

    def __init__(self, params: Iterable[torch.Tensor], **group: Any):
        params = list(params)
        if not params:
            raise ValueError("an optimiser needs at least one parameter")
        self.param_groups: list[dict[str, Any]] = [{**group, "params": params}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    @property
    def params(self) -> list[torch.Tensor]:
        return self.param_groups[0]["params"]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        """Update every parameter that has a gradient (the others keep their state)."""
        params = [p for p in self.params if p.grad is not None]
        grads = [p.grad for p in params if p.grad is not None]
        if not params:
            return
        states = [self._state(p) for p in params]
        steps = [s["step"] for s in states]
        if steps[0].is_cpu:  # one wrapped scalar, not one per tensor (as torch.optim does)
            torch._foreach_add_(steps, torch.tensor(1.0), alpha=1.0)
        else:
            torch._foreach_add_(steps, 1)
        self._update(params, grads, {name: [s[name] for s in states] for name in states[0]})

    def _update(self, params: Tensors, grads: Tensors, state: dict[str, Tensors]) -> None:
        """Update `params` from `grads`; `state` holds, one tensor per parameter, the step
        counts (already advanced) and each of the slots."""
        raise NotImplementedError

    def _state(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        state = self.state.get(p)
        if state is None:
            state = {"step": torch.zeros((), dtype=torch.float32, device=self._step_device(p))}
            for name in self.slots:
                state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)
            self.state[p] = state
        return state

    def _step_device(self, p: torch.Tensor) -> torch.device:
        """Where the step count lives: on the CPU unless the update kernel reads it."""
        return torch.device("cpu")

    # ------------------------------------------------------------------ state

    def state_dict(self) -> StateDict:
        """{"state": {index: slots}, "param_groups": [group with "params": indices]}, as
        torch.optim writes it: a parameter is named by its position."""
        index = {id(p): i for i, p in enumerate(self.params)}
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return {
            "state": {index[id(p)]: dict(s) for p, s in self.state.items()},
            "param_groups": [{**group, "params": list(range(len(self.params)))}],
        }

    def load_state_dict(self, state_dict: StateDict) -> None:
        """Restore a state_dict of this class or of its torch.optim counterpart. ValueError
        if it is malformed or belongs to other parameters; nothing changes then."""
        groups, saved = state_dict["param_groups"], state_dict["state"]
        if not isinstance(groups, list) or len(groups) != 1 or not isinstance(saved, dict):
            raise ValueError("optimiser state: expected one parameter group")
        positions = groups[0]["params"]
        if len(positions) != len(self.params):
            raise ValueError(
                f"optimiser state is for {len(positions)} parameters, this network has "
                f"{len(self.params)}"
            )
        expected = {"step", *self.slots}
        restored: dict[torch.Tensor, dict[str, torch.Tensor]] = {}
        for position, p in zip(positions, self.params, strict=True):
            slots = saved.get(position)
            if slots is None:  # never stepped: no gradient reached it yet
                continue
            if not isinstance(slots, dict) or set(slots) != expected:
                raise ValueError(f"optimiser state: expected {sorted(expected)} per parameter")
            if not all(isinstance(slots[name], torch.Tensor) for name in expected):
                raise ValueError("optimiser state: a slot is not a tensor")
            for name in self.slots:
                if slots[name].shape != p.shape:
                    raise ValueError(
                        f"optimiser state: {name} has shape {tuple(slots[name].shape)}, "
                        f"its parameter {tuple(p.shape)}"
                    )
            state = {"step": slots["step"].to(device=self._step_device(p), dtype=torch.float32)}
            for name in self.slots:
                state[name] = slots[name].to(dtype=p.dtype, device=p.device)
            restored[p] = state
        self.param_groups[0].update({k: v for k, v in groups[0].items() if k != "params"})
        self.state = restored


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) in PyTorch's fused kernel: one call updates every tensor."""

    slots = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        # torch.optim.Adam's group keys, so that either class reads the other's state.
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=0,
            amsgrad=False,
            maximize=False,
            foreach=None,
            capturable=False,
            differentiable=False,
            fused=True,
            decoupled_weight_decay=False,
        )

    def _step_device(self, p: torch.Tensor) -> torch.device:
        return p.device  # the fused kernel reads the step count where the weights are

    def _update(self, params: Tensors, grads: Tensors, state: dict[str, Tensors]) -> None:
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        torch._fused_adam_(
            params, grads, state["exp_avg"], state["exp_avg_sq"], [], state["step"],
            lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=0.0, eps=group["eps"],
            amsgrad=False, maximize=False,
        )  # fmt: skip


class RMSprop(Optimizer):
    """RMSprop (Tieleman & Hinton 2012) as the WGAN paper trains its critic, in foreach ops."""

    slots = ("square_avg",)

    def __init__(
        self, params: Iterable[torch.Tensor], lr: float, alpha: float = 0.99, eps: float = 1e-8
    ):
        super().__init__(
            params, lr=lr, momentum=0, alpha=alpha, eps=eps, centered=False, weight_decay=0,
            capturable=False, foreach=True, maximize=False, differentiable=False,
        )  # fmt: skip

    def _update(self, params: Tensors, grads: Tensors, state: dict[str, Tensors]) -> None:
        group = self.param_groups[0]
        alpha, square_avgs = group["alpha"], state["square_avg"]
        torch._foreach_mul_(square_avgs, alpha)
        torch._foreach_addcmul_(square_avgs, grads, grads, value=1 - alpha)
        avg = torch._foreach_sqrt(square_avgs)
        torch._foreach_add_(avg, group["eps"])
        torch._foreach_addcdiv_(params, grads, avg, value=-group["lr"])
