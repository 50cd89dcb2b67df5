"""Usage: options = RuntimeOptions(device="cuda", precision="bf16", threads=4)

Where and how a run trains, as opposed to what it learns (its config). Kept apart from
runtime.py, which applies them, so that reading a command line needs no PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RuntimeOptions:
    """Where and how to run; none of it changes what is learnt, so none of it is in the
    config, and all of it may differ when a run is resumed."""

    data_dir: str | None = None  # data root to search first
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    threads: int | None = None  # CPU threads per process; None: default_threads()
    deterministic: bool = False  # PyTorch's deterministic algorithms only (matters on CUDA)
    # auto | fp32 | bf16 | fp16: the autocast dtype of the forward passes (auto: bf16 where
    # the device has bfloat16 units and it is measured sound, else fp32; see choose_precision)
    precision: str = "auto"
    compile: bool = False  # torch.compile the networks' training forward passes
    sync_bn: bool = False  # batch-norm statistics over all ranks (distributed CUDA runs)
