"""Usage: torchrun --nproc-per-node 2 -m gancli train --preset dcgan-mnist  # one rank each

Scale-out with torchrun (or `python -m torch.distributed.run`): every process ("rank")
trains on its own slice of each global batch and DistributedDataParallel averages the
gradients, so all ranks hold the same weights after every step. This module owns what
that needs: the ranks read from torchrun's environment, the process group (gloo on the
CPU, NCCL on CUDA; joined and left by `session`), and the few
collectives the trainer uses: handing every rank what rank 0 decided, averaging logged
stats, agreeing to stop, and checking that the ranks' weights are still identical.
A single process uses none of it: every helper then returns at once.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from gancli.engine.checkpoint import capture_rng
from gancli.engine.errors import (
    EXIT_TRAINING_FAILED,
    ConfigError,
    GancliError,
    TrainingError,
    first_line,
)

T = TypeVar("T")

# Words in the errors gloo and NCCL raise when another rank died or stopped answering.
_LOST_PEER = ("gloo", "nccl", "connection closed", "connection reset", "broken pipe", "timed out")


@dataclass(frozen=True)
class Ranks:
    """Where this process sits among the processes training one run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # index among the processes on this machine (its GPU's index)
    local_world_size: int = 1  # processes on this machine

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = Ranks()
_current = SINGLE  # the ranks of the joined process group; SINGLE when there is none
_device = torch.device("cpu")  # where the collectives' tensors live (the rank's device)


def launched() -> Ranks:
    """The ranks torchrun describes in the environment; a single process when it says nothing."""
    if "WORLD_SIZE" not in os.environ:
        return SINGLE
    try:
        world = int(os.environ["WORLD_SIZE"])
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    except ValueError:
        raise ConfigError(
            "WORLD_SIZE, RANK, LOCAL_RANK and LOCAL_WORLD_SIZE must be whole numbers; "
            "launch with torchrun, which sets them"
        ) from None
    if not (0 <= rank < world and 0 <= local_rank < local_world <= world):
        raise ConfigError(
            f"RANK {rank}, LOCAL_RANK {local_rank}, LOCAL_WORLD_SIZE {local_world} and "
            f"WORLD_SIZE {world} do not fit together; launch with torchrun, which sets them"
        )
    return Ranks(rank, world, local_rank, local_world)


def current() -> Ranks:
    """The ranks of the joined process group (a single process when none is joined)."""
    return _current


def is_main() -> bool:
    """True on the rank that writes the run directory and talks to the user."""
    return _current.is_main


def check_batch_size(batch_size: int, world_size: int) -> None:
    """The global batch must split evenly over the ranks."""
    if batch_size % world_size:
        raise ConfigError(
            f"training.batch_size: {batch_size} is the global batch and must split evenly "
            f"over {world_size} processes; use a multiple of {world_size}"
        )


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """This rank's device: cuda:LOCAL_RANK on GPUs, the CPU as it is."""
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ConfigError(
            f"--device {device.type}: distributed training runs on cpu (gloo) or cuda (NCCL)"
        )
    if device.index is not None:
        raise ConfigError(
            f"--device {device}: under torchrun each process uses cuda:LOCAL_RANK; "
            "pass --device cuda (or auto)"
        )
    count = torch.cuda.device_count()
    if ranks.local_world_size > count:
        raise ConfigError(
            f"{ranks.local_world_size} processes on this machine but only {count} CUDA "
            "device(s); start at most one process per GPU (--nproc-per-node)"
        )
    return torch.device("cuda", ranks.local_rank)


def init(ranks: Ranks, device: torch.device) -> None:
    """Join the process group of a distributed launch (a no-op for a single process)."""
    global _current, _device
    if not ranks.distributed:
        return
    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; run a single process")
    if not dist.is_initialized():  # else joined already (a second run in the same processes)
        try:
            if device.type == "cuda":
                torch.cuda.set_device(device)
                dist.init_process_group("nccl", device_id=device)
            else:
                dist.init_process_group("gloo")
        except ValueError as exc:  # the rendezvous variables are missing or malformed
            raise ConfigError(f"cannot join the other processes: {first_line(exc)}") from None
        except RuntimeError as exc:
            raise TrainingError(
                f"rank {ranks.rank}: cannot join the other processes: {first_line(exc)}"
            ) from None
    _current, _device = ranks, device


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    global _current
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _current = SINGLE


@contextmanager
def session(device: torch.device) -> Iterator[None]:
    """Join the process group of a torchrun launch on `device` (this rank's), and leave it
    at the end, also on errors; a single process joins nothing."""
    init(launched(), device)
    try:
        yield
        # All ranks finished: leave together. A rank tearing down gloo while another is
        # still using the group can abort the process ("terminate called ...").
        barrier()
    finally:
        shutdown()


@contextmanager
def rank_errors() -> Iterator[None]:
    """Make errors name their rank: on ranks other than 0, errors every rank meets alike
    (a bad flag, an error rank 0 handed out) are left to rank 0 to print, and a lost peer
    becomes a one-line TrainingError. A failing rank exits, and torchrun then stops the
    others, so none waits forever."""
    ranks = launched()  # errors before the group is joined still know their rank
    try:
        yield
    except GancliError as exc:
        raise _from_rank(exc, ranks) from None
    except RuntimeError as exc:
        if not ranks.distributed or not lost_peer(exc):
            raise
        raise TrainingError(
            f"rank {ranks.rank}: lost contact with the other processes "
            f"({_peer_reason(exc)}); the first failing rank's error says why"
        ) from None


def lost_peer(exc: BaseException) -> bool:
    """Whether `exc` is a collective failing because another rank died or hung."""
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc).lower()
    return any(word in text for word in _LOST_PEER)


def _from_rank(exc: GancliError, ranks: Ranks) -> GancliError:
    if ranks.is_main or exc.quiet:
        return exc
    if isinstance(exc, ConfigError):  # every rank checks the same flags and config
        exc.quiet = True
    elif not str(exc).startswith("rank "):
        exc.args = (f"rank {ranks.rank}: {exc}",)
    return exc


# --------------------------------------------------------------------------- collectives


def on_main(fn: Callable[[], T]) -> T:
    """Call `fn` on rank 0 only and hand its result, or the fact that it failed, to all ranks.

    For decisions and reads only rank 0 makes: creating the run directory, reading the
    checkpoint to resume (so other machines need no shared file system).
    """
    if not _current.distributed:
        return fn()
    box: list[Any] = [None]
    failure: BaseException | None = None
    if _current.is_main:
        try:
            box[0] = _pack(("ok", fn()))
        except BaseException as exc:  # the others must hear of it, or they wait forever
            failure = exc
            code = exc.exit_code if isinstance(exc, GancliError) else EXIT_TRAINING_FAILED
            box[0] = _pack(("error", f"rank 0 failed: {exc}", code))
    dist.broadcast_object_list(box, src=0)
    if failure is not None:
        raise failure
    outcome = _unpack(box[0])
    if outcome[0] == "error":  # rank 0 met and printed it: stop the other ranks alike
        error = GancliError(outcome[1])
        error.exit_code, error.quiet = outcome[2], True
        raise error
    return outcome[1]


def all_mean(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` averaged over the ranks (gloo has no AVG reduction, hence SUM / world size)."""
    if not _current.distributed:
        return tensor
    total = tensor.clone()
    dist.all_reduce(total)
    return total.div_(_current.world_size)


def agree_signal(signum: int | None) -> int | None:
    """The stop signal any rank has received (the highest number if they differ), on every rank."""
    if not _current.distributed:
        return signum
    flag = torch.tensor([signum or 0], device=_device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item()) or None


def gather(obj: T) -> list[T]:
    """Every rank's `obj`, in rank order, on every rank (picklable objects)."""
    if not _current.distributed:
        return [obj]
    out: list[Any] = [None] * _current.world_size
    dist.all_gather_object(out, _pack(obj))
    return [_unpack(packed) for packed in out]


def _pack(obj: Any) -> bytes:
    """`obj` as bytes in torch.save's format. The object collectives pickle tensors in an
    older format that torch 2.14 fails to read back; bytes travel as they are."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _unpack(data: bytes) -> Any:
    # Full unpickling: the bytes come from this run's own rank 0 or peers, not from a file.
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)


def barrier() -> None:
    if _current.distributed:
        dist.barrier()


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """`module` in DistributedDataParallel when distributed; as it is otherwise.

    The wrapper shares the module's parameters, so checkpoints keep using the module
    itself (no `module.` key prefixes). Buffers (batch-norm running statistics) are
    broadcast from rank 0 before every forward, so all ranks normalise at eval time alike.
    """
    if not _current.distributed:
        return module
    ids = [device.index] if device.type == "cuda" else None
    # Buffers are broadcast by default (the `broadcast_buffers` flag is deprecated: left unset).
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


# --------------------------------------------------------------------------- seeds, checks


def rank_seed(seed: int, step: int, rank: int) -> int:
    """The seed of one rank's noise from step `step` on: distinct per rank, fixed by the run."""
    digest = hashlib.sha256(f"gancli:{seed}:{step}:{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


_INT_OF_SIZE = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


@torch.no_grad()
def weights_checksum(module: nn.Module) -> str:
    """A cheap, bit-exact fingerprint of a module's parameters.

    Each tensor's bits, read as integers and weighted by position, are summed in int64
    (wrap-around addition is exact in any order, so the sum does not depend on kernels);
    one host sync for the whole module.
    """
    sums = []
    for param in module.parameters():
        flat = param.detach().reshape(-1)
        bits = flat.view(_INT_OF_SIZE[flat.element_size()]).long()
        weights = torch.arange(bits.numel(), device=bits.device).remainder_(65_521).add_(1)
        sums.append((bits * weights).sum())  # not in place: .long() of int64 is the weights
    values = torch.stack(sums).tolist() if sums else []
    return hashlib.sha256(repr(values).encode()).hexdigest()[:16]


def _peer_reason(exc: BaseException) -> str:
    """'[.../pair.cc:561] Connection closed by peer [::1]:6575. This is...' -> the middle."""
    text = re.sub(r"^\[[^\]]*\]\s*", "", first_line(exc))
    return text.split(". ")[0][:160]


def gather_checked(
    networks: dict[str, nn.Module], step: int
) -> tuple[list[list[str]], list[dict[str, Any] | None]]:
    """Every rank's weight checksums and, when distributed, RNG state (for a checkpoint that
    resumes each rank's own noise), once the weights are known fit to save: a TrainingError
    that every rank raises alike if any weight is NaN/Inf, or if the ranks' weights differ
    (DDP keeps them equal by averaging gradients; this checks that it did)."""
    for name, net in networks.items():
        if not all(bool(torch.isfinite(p).all()) for p in net.parameters()):
            raise agreed(
                TrainingError(
                    f"the {name}'s weights became NaN/Inf by step {step}; the last good "
                    "checkpoint is kept. Lower optim.lr_d / optim.lr_g"
                )
            )
    mine = [weights_checksum(net) for net in networks.values()]
    rng = capture_rng() if current().distributed else None
    gathered = gather((mine, rng))
    checksums = [sums for sums, _ in gathered]
    odd = [rank for rank, sums in enumerate(checksums) if sums != checksums[0]]
    if odd:
        raise agreed(
            TrainingError(
                f"the weights of rank(s) {', '.join(map(str, odd))} differ from rank 0's at "
                f"step {step}; the last good checkpoint is kept: resume from it"
            )
        )
    return checksums, [state for _, state in gathered]


E = TypeVar("E", bound=GancliError)


def agreed(error: E) -> E:
    """`error`, met alike by every rank (it comes from agreed data): rank 0 alone prints it."""
    error.quiet = not current().is_main
    return error
