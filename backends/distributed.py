"""What every backend's data-parallel training shares, framework-free: who this process is in the run (its
rank among `world` processes), how a global batch is split among the ranks, and the error a lost worker is.

The meaning (README, "Several processes and machines"): the global batch is the spec's batch size, taken
from the epoch's seeded permutation as in one process; rank r trains on its contiguous share of it (`share`),
with the dropout masks of those samples' global positions; the loss each rank backpropagates is its share's
mean loss weighted by share / global batch, the regularization penalties are added on rank 0 only, and the
gradients are summed across the ranks, so every rank applies the one-process gradient."""

from __future__ import annotations

from dataclasses import dataclass

from dlc.compiler.diagnostics import DlcError


class WorkerLost(DlcError, RuntimeError):
    """Another process of a data-parallel run stopped, or stopped answering within the collective timeout."""


@dataclass(frozen=True)
class Worker:
    """This process's place in a data-parallel run: `rank` of `world` processes, `local_rank` on its machine
    (the GPU it uses), the rendezvous address, the collective timeout in seconds; `launched`: started by
    dlc's own launcher (which reports a lost worker itself)."""

    rank: int
    world: int
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    timeout_s: float = 300.0
    launched: bool = False


def share(n: int, world: int, rank: int) -> tuple[int, int]:
    """[start, stop) of rank `rank`'s contiguous share of a batch of `n` samples: the first n % world ranks
    take one sample more (a rank's share may be empty when n < world)."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)
