"""Data-parallel training on torch (`dlc run --nproc N`): each process holds the whole model and data, trains
on its contiguous share of every global batch and sums the gradients of all processes with one all-reduce
per step (the DistributedDataParallel scheme, over gloo on the CPU and NCCL on GPUs), so that every process
applies the gradient one process would (backends/distributed.py says how). Step losses and metric statistics
are summed once per epoch. Evaluation runs whole on every process (no collective).

BatchNorm is synchronized: the batch mean and variance are those of the global batch (sums all-reduced in
the forward pass, their gradients in the backward pass), so it trains as in one process."""

from __future__ import annotations

import datetime
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist

from dlc.backends.distributed import Worker, WorkerLost, share

from . import layers as TLayers
from .training import epoch_buffers

DIE_AT = "DLC_TEST_WORKER_DIES"  # "RANK:STEP": that rank exits at that step (honoured under pytest only)


def _lost(e: BaseException) -> WorkerLost:
    text = str(e).lower()
    why = "timed out" if "timeout" in text or "timed out" in text else "its connection was lost"
    return WorkerLost(f"another process of this data-parallel run stopped or stopped answering ({why})")


def _all_reduce(t: torch.Tensor) -> None:
    """Sum `t` over the processes, in place; WorkerLost when one of them is gone."""
    try:
        dist.all_reduce(t)
    except (RuntimeError, OSError) as e:  # gloo/NCCL: connection closed, reset, timed out
        raise _lost(e) from None


def start(worker: Worker, device: str = "auto") -> None:
    """Join the run's process group (before the session is made: it pins this process's GPU), gloo on the
    CPU, NCCL on CUDA; WorkerLost when the others do not come within the timeout."""
    cuda = device != "cpu" and (device.startswith("cuda") or device == "auto") and torch.cuda.is_available()
    if cuda:
        if worker.local_rank >= torch.cuda.device_count():
            raise ValueError(f"data-parallel worker {worker.rank} needs GPU {worker.local_rank}, and this "
                             f"machine has {torch.cuda.device_count()}: use at most that many processes per "
                             "machine (--nproc), or --device cpu")
        torch.cuda.set_device(worker.local_rank)
    os.environ.setdefault("MASTER_ADDR", worker.master_addr)
    os.environ.setdefault("MASTER_PORT", str(worker.master_port))
    try:
        dist.init_process_group("nccl" if cuda else "gloo", rank=worker.rank, world_size=worker.world,
                                timeout=datetime.timedelta(seconds=worker.timeout_s))
    except (RuntimeError, OSError, ValueError) as e:
        raise _lost(e) from None


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(session, worker: Worker) -> None:
    """Make the session train data-parallel: its trainer's epochs run on this process's shares, its
    BatchNorm layers use the global batch's statistics."""
    session.trainer = DataParallel(session.trainer, worker)
    for module in session.net.modules():
        if isinstance(module, TLayers.BatchNorm):
            module.moments = _global_moments


class _AllReduceSum(torch.autograd.Function):
    """Sum over the processes; the gradient of each process's input is the sum of the gradients of the
    output on every process (each process's loss depends on the sum)."""

    @staticmethod
    def forward(ctx, t):
        t = t.clone()
        _all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, g):
        g = g.clone()
        _all_reduce(g)
        return g


def _global_moments(x: torch.Tensor, dims: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, biased variance) over `dims` of the global batch, of which `x` is this process's share:
    Keras' var = mean((x - stop_grad(mean))^2) with the sums all-reduced."""
    count = torch.tensor([float(x.numel() // x.shape[-1])], dtype=x.dtype, device=x.device)
    total = _AllReduceSum.apply(torch.cat([x.sum(dim=dims), count]))
    n = total[-1].detach()
    mean = total[:-1] / n
    var = _AllReduceSum.apply(((x - mean.detach()) ** 2).sum(dim=dims)) / n
    return mean, var


class DataParallel:
    """A Trainer (backends/torch/training.py) whose epochs train on this process's share of every batch and
    sum the gradients over the processes; everything else (evaluate, the activity terms, ...) is the
    wrapped trainer's."""

    def __init__(self, trainer, worker: Worker):
        self.inner = trainer
        self.rank, self.world = worker.rank, worker.world
        self.params = list(trainer.opt.params)
        self.die_at = None
        if os.environ.get("PYTEST_CURRENT_TEST") and os.environ.get(DIE_AT):
            rank, step = os.environ[DIE_AT].split(":")
            self.die_at = int(step) if int(rank) == self.rank else None

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def train_step(self, xb, yb, offset: int, batch: int):
        """One step on this process's share (`offset`: its position in the global batch of `batch`
        samples): the share's mean loss weighted by share/batch, the penalties on rank 0, the gradients
        summed over the processes. (this process's part of the step loss, the output)"""
        t = self.inner
        t.step.offset = offset
        try:
            out = t.forward(xb) if hasattr(t, "forward") else t.net(xb)  # (mixed precision: autocast)
        finally:
            t.step.offset = 0
        act = t.activity_loss()
        if len(xb):
            loss = t.loss(out, yb)
            if act is not None:
                loss = loss + act
            loss = loss * (len(xb) / batch)
        else:  # an empty share (a last batch smaller than the processes): a zero gradient, in step
            loss = out.sum() * 0
        reg = t.penalty_loss() if self.rank == 0 else None
        if reg is not None:
            loss = loss + reg
        t.opt.zero_grad()
        loss.backward()
        self._sum_gradients()
        t.opt.step()
        for tensor, constraint in t.constraints:
            constraint(tensor)
        t.step.advance()
        return loss.detach(), out.detach()

    def _sum_gradients(self) -> None:
        grads = [torch.zeros_like(p) if p.grad is None else p.grad.to_dense() if p.grad.is_sparse else p.grad
                 for p in self.params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        _all_reduce(flat)
        at = 0
        for p in self.params:
            k = p.numel()
            p.grad = flat[at:at + k].view_as(p).clone()
            at += k

    def shares_order(self, perm: np.ndarray, sizes: np.ndarray, batch_size: int) -> tuple[np.ndarray, int]:
        """This process's shares of the epoch's batches, one after another, and the size of a full batch's
        share: the plan streamed features are read ahead by (each share read while the step before it
        trains; the session planned whole batches, which a share never asks for: every read was direct).
        Every batch but the last is full, and the last one's share is no bigger than a full one's."""
        cuts = [(i * batch_size + a, i * batch_size + b)
                for i, (a, b) in enumerate(share(int(n), self.world, self.rank) for n in sizes)]
        order = np.concatenate([perm[lo:hi] for lo, hi in cuts]) if cuts else perm[:0]
        a, b = share(batch_size, self.world, self.rank)
        return order, b - a

    def train_epoch(self, x, y, perm: np.ndarray, batch_size: int, progress=None):
        """The steps over the global batches of `perm`, this process taking its share of each: (per-step
        losses, metric statistics, batch sizes) of the whole run, summed over the processes."""
        t = self.inner
        t.net.train()
        perm_t, steps, losses, stats, sizes = epoch_buffers(x, perm, batch_size, t.stats_shape)
        host = getattr(x, "on_host", False)  # (streamed features: the session's HostBatches)
        if host:
            x.plan(*self.shares_order(perm, sizes, batch_size))
        last = time.perf_counter()
        for i in range(steps):
            a, b = share(int(sizes[i]), self.world, self.rank)
            lo, hi = i * batch_size + a, i * batch_size + b
            idx = perm_t[lo:hi]
            yb = y[idx]
            if self.die_at is not None and t.step.value + 1 == self.die_at:
                print(f"rank {self.rank} stops at step {self.die_at} ({DIE_AT})", file=sys.stderr, flush=True)
                os._exit(1)
            loss, out = self.train_step(x[perm[lo:hi]] if host else x[idx], yb, a, int(sizes[i]))
            with torch.no_grad():
                losses[i] = loss
                if b > a:
                    stats += t.stats(out, yb)
            if progress is not None and time.perf_counter() - last > 0.2:
                progress(i + 1, steps)  # (no running values: they are known once the epoch is summed)
                last = time.perf_counter()
        flat = torch.cat([losses, stats.reshape(-1)])
        _all_reduce(flat)
        losses, stats = flat[:steps], flat[steps:].view(t.stats_shape)
        if progress is not None:
            progress(steps, steps)
        return losses.cpu().double().numpy(), stats.cpu().double().numpy(), sizes
