"""gancli's Adam and RMSprop against torch.optim's: the same weights bit for bit, state
dicts either can load, and malformed state refused without a change."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable

import pytest
import torch
from torch import nn

from gancli.engine.optim import Adam, Optimizer, RMSprop

Pair = tuple[Callable[[list[nn.Parameter]], Optimizer], Callable[..., torch.optim.Optimizer]]

PAIRS: dict[str, Pair] = {
    "adam": (
        lambda p: Adam(p, lr=2e-3, betas=(0.5, 0.999)),
        lambda p: torch.optim.Adam(p, lr=2e-3, betas=(0.5, 0.999), fused=True),
    ),
    "rmsprop": (
        lambda p: RMSprop(p, lr=5e-3),
        lambda p: torch.optim.RMSprop(p, lr=5e-3, foreach=True),
    ),
}


def network() -> nn.Module:
    """Convolution (channels-last, as training holds it), linear, and a frozen layer whose
    parameters never get a gradient."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, 2, 1),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        nn.Linear(4 * 7 * 7, 3),
        nn.Linear(3, 1),
    )
    net[-1].requires_grad_(False)
    return net.to(memory_format=torch.channels_last)


def train(net: nn.Module, optimizer: Optimizer | torch.optim.Optimizer, steps: int) -> None:
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(8, 1, 14, 14, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        net(x).square().mean().backward()
        optimizer.step()


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(
        torch.equal(x, y)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


@pytest.mark.parametrize("name", PAIRS)
def test_the_same_weights_and_state_as_torch_optim(name: str) -> None:
    ours_of, theirs_of = PAIRS[name]
    net_a, net_b = network(), network()
    ours, theirs = ours_of(list(net_a.parameters())), theirs_of(net_b.parameters())
    train(net_a, ours, 5)
    train(net_b, theirs, 5)
    assert same_weights(net_a, net_b)
    mine, reference = ours.state_dict(), theirs.state_dict()
    assert mine["param_groups"] == reference["param_groups"]
    assert mine["state"].keys() == reference["state"].keys() == {0, 1, 2, 3}  # not the frozen
    for index, slots in reference["state"].items():
        assert mine["state"][index].keys() == slots.keys()
        for key, value in slots.items():
            assert torch.equal(mine["state"][index][key], value), (index, key)
            assert mine["state"][index][key].dtype == value.dtype


@pytest.mark.parametrize("name", PAIRS)
def test_state_dicts_load_across_and_training_goes_on_alike(name: str) -> None:
    ours_of, theirs_of = PAIRS[name]
    start = network()
    first = ours_of(list(start.parameters()))
    train(start, first, 3)
    # ours -> torch.optim, and torch.optim -> ours, each then trained 3 more steps
    net_t, net_o = copy.deepcopy(start), copy.deepcopy(start)
    theirs = theirs_of(net_t.parameters())
    theirs.load_state_dict(copy.deepcopy(first.state_dict()))
    ours = ours_of(list(net_o.parameters()))
    ours.load_state_dict(copy.deepcopy(theirs.state_dict()))
    train(net_t, theirs, 3)
    train(net_o, ours, 3)
    train(start, first, 3)
    assert same_weights(net_t, start) and same_weights(net_o, start)


def test_malformed_state_is_refused_and_changes_nothing() -> None:
    net = network()
    adam = Adam(list(net.parameters()), lr=1e-3)
    train(net, adam, 1)
    good = adam.state_dict()
    before = copy.deepcopy(good)
    fewer = copy.deepcopy(good)
    fewer["param_groups"][0]["params"].pop()
    reshaped = copy.deepcopy(good)
    reshaped["state"][0]["exp_avg"] = torch.zeros(5)
    untensored = copy.deepcopy(good)
    untensored["state"][1]["exp_avg_sq"] = "0"
    rmsprop_slots = copy.deepcopy(good)
    rmsprop_slots["state"][0] = {"step": torch.tensor(1.0), "square_avg": torch.zeros(4, 1, 3, 3)}
    for bad, message in [
        (fewer, "for 5 parameters, this network has 6"),
        (reshaped, r"exp_avg has shape \(5,\), its parameter \(4, 1, 3, 3\)"),
        (untensored, "not a tensor"),
        (rmsprop_slots, r"expected \['exp_avg', 'exp_avg_sq', 'step'\]"),
    ]:
        with pytest.raises(ValueError, match=message):
            adam.load_state_dict(bad)
    after = adam.state_dict()
    assert after["param_groups"] == before["param_groups"]
    for index, slots in before["state"].items():
        assert all(torch.equal(after["state"][index][k], v) for k, v in slots.items())


def test_training_never_imports_the_compiler_stack() -> None:
    """torch.optim imports torch._dynamo (about 2 s) on first use: gancli's steps must not,
    nor the memory check before them, for every family of model and objective."""
    script = """
import sys
import torch
from gancli.engine.config import load_config
from gancli.engine.limits import training_memory
from gancli.engine.state import TrainState
for preset in ("gan-mnist", "dcgan-mnist", "wgan-mnist", "wgan-gp-mnist", "cgan-mnist",
               "modern-mnist"):
    config = load_config(preset, ["training.batch_size=4", "model.g_width=0.25",
                                  "model.d_width=0.25"])
    training_memory(config, (1, 28, 28), 10)
    state = TrainState(config, (1, 28, 28), 10, torch.device("cpu"))
    batches = iter([(torch.rand(4, 1, 28, 28) * 2 - 1, torch.tensor([0, 1, 2, 3]))] * 20)
    for _ in range(2):
        state.step(batches)
    state.load_state_dict(state.state_dict())
print(sorted(m for m in sys.modules if m.startswith("torch._dynamo")))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
