"""Keras' optimizer update rules, operation for operation, on torch tensors.

Stock torch optimizers differ from Keras (eps placement in Adam and RMSprop, lr folded into SGD's velocity,
float32 bias corrections): see shared/EQUIVALENCE.md. Each class mirrors `update_step` of
keras/src/optimizers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dlc.backends.torch.losses import in_dtype


@dataclass
class Slices:
    """An Embedding's gradient as Keras' TensorFlow backend hands it to the optimizer: one row per occurrence
    of a token in the batch (tf.IndexedSlices; torch's sparse embedding gradient, uncoalesced), not yet
    summed per row. Keras' optimizers square (and clip) these rows one by one before they are summed into
    the variable's shape, so a token seen twice adds g1² + g2² to Adam's v, not (g1 + g2)²."""

    indices: torch.Tensor  # (n,) rows of the variable
    values: torch.Tensor  # (n, *row shape)
    like: torch.Tensor  # the variable

    @staticmethod
    def of(grad: torch.Tensor | None, p: torch.Tensor) -> Slices | torch.Tensor | None:
        """A sparse gradient as Slices; a dense one (or None) as it is."""
        if grad is None or not grad.is_sparse:
            return grad
        return Slices(grad._indices()[0], grad._values(), p)

    def summed(self, values: torch.Tensor | None = None) -> torch.Tensor:
        """The rows (or `values` per row) added into the variable's shape, occurrence after occurrence."""
        rows = self.values if values is None else values
        return torch.zeros_like(self.like).index_add_(0, self.indices, rows)

    def squares(self) -> torch.Tensor:
        """Σ g_i² per row: what Keras' `ops.square` of the slices adds into a dense slot."""
        return self.summed(self.values * self.values)


def dense(g):
    """A gradient in the variable's shape (Slices summed per row)."""
    return g.summed() if isinstance(g, Slices) else g


class KerasOptimizer:
    """The parts every Keras optimizer shares: gradient clipping, decoupled weight decay, the step counter.
    `per_occurrence`: an Embedding's gradient comes as Slices (False: summed first, as dense)."""

    per_occurrence = True
    # whether `step` may be captured in a CUDA graph (backends/torch/graphs.py): its device state is updated
    # in place and it reads the host only through `scalar`, `const`, `lr_tensor` and `step_count`
    capturable = True

    def __init__(self, params: list[torch.nn.Parameter], learning_rate: float, clipnorm: float | None = None,
                 clipvalue: float | None = None, global_clipnorm: float | None = None,
                 weight_decay: float | None = None):
        self.params = params
        self.lr = float(learning_rate)
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.weight_decay = weight_decay
        self.iterations = 0
        self.dtype = params[0].dtype if params else torch.float32
        self._scalars: dict[float, torch.Tensor] = {}
        device = params[0].device if params else None
        # the learning rate and float(step) on the device, each one tensor updated in place: a new tensor per
        # step is a host-to-device copy (on CUDA it waits for the queue), and a CUDA graph of the step reads
        # the tensors it was captured with; `_lr_holds` / `_count_holds`: the values they hold
        self._lr = torch.tensor(self.lr, dtype=self.dtype, device=device)
        self._lr_holds = self.lr
        self._count = torch.zeros((), dtype=self.dtype, device=device)
        self._count_holds, self._count_used = 0, False
        self.state = [self.init_state(p) for p in params]

    def init_state(self, p) -> dict:
        return {}

    def scalar(self, x: float) -> torch.Tensor:
        """A constant as a 0-d tensor in the variables' dtype and device, made once per value (the
        hyperparameters: a bounded set): a new tensor every step is a host-to-device copy, and on CUDA each
        such copy waits for the work queued before it (a synchronization per step)."""
        t = self._scalars.get(x)
        if t is None:
            t = self._scalars[x] = torch.tensor(x, dtype=self.dtype, device=self.params[0].device)
        return t

    def lr_tensor(self) -> torch.Tensor:
        """The learning rate on the device, refilled in place when a schedule has changed `lr`."""
        if self._lr_holds != self.lr:
            self._lr.fill_(in_dtype(self.lr, self._lr.dtype))  # (beyond the dtype: inf, as at the start)
            self._lr_holds = self.lr
        return self._lr

    def const(self, x: float) -> torch.Tensor:
        """A Python constant as Keras casts it: `ops.cast(float, dtype)` goes through float32."""
        return self.scalar(float(np.float32(x)))

    def step_count(self) -> torch.Tensor:
        """float(iterations + 1), the step being taken, in the variables' dtype on their device: counted up
        there in place (no host-to-device copy per step), refilled from the host when the counter was set (a
        checkpoint restored) or where counting up in float32 could round (past 2^24 steps)."""
        n, self._count_used = self.iterations, True
        if self._count_holds == n and n + 1 <= 2**24:
            self._count.add_(1)
        else:
            self._count.fill_(float(n + 1))
        self._count_holds = n + 1
        return self._count

    def step_count_ready(self) -> None:
        """Before a replayed step (backends/torch/graphs.py), whose graph counts the tensor up by one: the
        tensor holds `iterations`, where this optimizer counts steps."""
        if self._count_used and self._count_holds != self.iterations:
            self._count.fill_(float(self.iterations))
            self._count_holds = self.iterations

    def counters(self) -> dict[str, torch.Tensor]:
        """The optimizer's own state beside its per-variable slots (a checkpoint keeps it)."""
        return {}

    def host_counters(self) -> tuple[int, int]:
        """What the host counts per step (a CUDA graph's replay advances it: backends/torch/graphs.py)."""
        return self.iterations, self._count_holds

    def set_host_counters(self, counters: tuple[int, int]) -> None:
        self.iterations, self._count_holds = counters

    def _clip(self, grads):
        """Keras' clipping; Slices are clipped row by row (tf.clip_by_norm and tf.clip_by_value of
        IndexedSlices) and their norms are over the occurrences, before the rows are summed; global clipping
        hands on a dense gradient (its scaling sums the rows)."""
        if self.clipnorm:
            out = []
            for g in grads:
                v = g.values if isinstance(g, Slices) else g
                l2sum = (v * v).sum()
                l2norm = torch.where(l2sum > 0,
                                     torch.sqrt(torch.where(l2sum > 0, l2sum, torch.ones_like(l2sum))), l2sum)
                clip = in_dtype(self.clipnorm, v.dtype)
                out.append(_map(g, lambda t, n=l2norm, c=clip: t * c / torch.clamp(n, min=c)))
            return out
        if self.global_clipnorm:
            norm = torch.sqrt(sum(((g.values if isinstance(g, Slices) else g) ** 2).sum() for g in grads))
            scale = self.global_clipnorm / torch.maximum(norm, self.scalar(float(self.global_clipnorm)))
            # (Keras' `v * scale` is TensorFlow's multiply, which sums IndexedSlices into a dense tensor)
            return [dense(g) * scale for g in grads]
        if self.clipvalue:
            return [_map(g, lambda t: torch.clamp(t, -in_dtype(self.clipvalue, t.dtype),
                                                  in_dtype(self.clipvalue, t.dtype))) for g in grads]
        return grads

    @torch.no_grad()
    def step(self):
        grads = [Slices.of(p.grad, p) for p in self.params]
        if not self.per_occurrence:
            grads = [dense(g) for g in grads]
        grads = self._clip(grads)
        lr = self.lr_tensor()
        if self.weight_decay:  # Keras: variable -= variable * cast(wd) * lr, before the update step
            wd = self.const(self.weight_decay)
            for p in self.params:
                p.sub_(p * wd * lr)
        if not (self.foreach and all(isinstance(g, torch.Tensor) for g in grads)
                and self.update_all(self.params, grads, self.state, lr)):
            for p, g, s in zip(self.params, grads, self.state, strict=True):
                self.update(p, dense(g), s, lr, g if isinstance(g, Slices) else None)
        self.iterations += 1

    @property
    def foreach(self) -> bool:
        """Update every variable in one go where the optimizer can (`update_all`): on CUDA, where each
        operation is a kernel launch, and launches, not arithmetic, bound a small model's step."""
        return bool(self.params) and self.params[0].is_cuda

    def update_all(self, params, grads, states, lr) -> bool:
        """Every variable's step with torch._foreach_* operations (one launch per operation for all the
        variables), the same operations as `update` in the same order; False where this optimizer has none."""
        return False

    def update(self, p, g, s, lr, rows: Slices | None = None):  # pragma: no cover
        """One variable's step from its gradient `g` (dense); `rows`: the gradient's Slices when it came as
        one (an Embedding's), for what Keras computes per occurrence (squares)."""
        raise NotImplementedError

    @staticmethod
    def square(g, rows: Slices | None):
        """Keras' `ops.square(gradient)` as it reaches a dense slot: g², or Σ g_i² per row for Slices."""
        return g * g if rows is None else rows.squares()

    def zero_grad(self):
        for p in self.params:
            p.grad = None


def _map(g, f):
    """f applied to a dense gradient, or to each row of Slices."""
    return Slices(g.indices, f(g.values), g.like) if isinstance(g, Slices) else f(g)


class SGD(KerasOptimizer):
    """v = momentum·v − lr·g; w += v (nesterov: w += momentum·v − lr·g): lr folded into v, as Keras does."""

    def __init__(self, params, learning_rate=0.01, momentum=0.0, nesterov=False, **common):
        self.momentum, self.nesterov = momentum, nesterov
        super().__init__(params, learning_rate, **common)

    def init_state(self, p):
        return {"m": torch.zeros_like(p)} if self.momentum else {}

    def update(self, p, g, s, lr, rows=None):
        if "m" not in s:
            p.sub_(g * lr)
            return
        momentum = self.const(self.momentum)
        m = s["m"]
        m.copy_(m * momentum - g * lr)
        if self.nesterov:
            p.add_(m * momentum - g * lr)
        else:
            p.add_(m)

    def update_all(self, params, grads, states, lr) -> bool:
        step = torch._foreach_mul(grads, lr)                  # g*lr
        if not self.momentum:
            torch._foreach_sub_(params, step)
            return True
        momentum, m = self.const(self.momentum), [s["m"] for s in states]
        torch._foreach_mul_(m, momentum)
        torch._foreach_sub_(m, step)                          # m = m*momentum - g*lr
        if self.nesterov:
            ahead = torch._foreach_mul(m, momentum)
            torch._foreach_sub_(ahead, step)
            torch._foreach_add_(params, ahead)                # p += m*momentum - g*lr
        else:
            torch._foreach_add_(params, m)
        return True


class RMSprop(KerasOptimizer):
    """v = ρv + (1−ρ)g²; w −= lr·g/√(v + ε) (ε inside the root, Keras' form); centered subtracts the mean²."""

    def __init__(self, params, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 **common) -> None:
        self.rho, self.momentum, self.epsilon, self.centered = rho, momentum, epsilon, centered
        self._buffers: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # (_scratch)
        # centered: the keras backend sums an Embedding's gradient first (Keras' own sparse path fails there)
        self.per_occurrence = not centered
        super().__init__(params, learning_rate, **common)

    def init_state(self, p):
        s = {"v": torch.zeros_like(p)}
        if self.momentum:
            s["m"] = torch.zeros_like(p)
        if self.centered:
            s["a"] = torch.zeros_like(p)
        return s

    def update(self, p, g, s, lr, rows=None):
        if self.centered:
            self._update_centered(p, g, s, lr, rows)
            return
        # Keras' ops in Keras' order, written in place into the variable's two buffers (_scratch)
        (t, d), rho = self._scratch(p), self.rho
        if rows is None:
            torch.mul(g, g, out=t).mul_(1 - rho)
        else:
            torch.mul(rows.squares(), 1 - rho, out=t)
        s["v"].mul_(rho).add_(t)                      # v = rho*v + (1 - rho)*(g*g)
        torch.add(s["v"], self.epsilon, out=d).sqrt_()  # sqrt(v + eps)
        torch.mul(g, lr, out=t).div_(d)                # (lr*g) / sqrt(v + eps)
        self._apply(p, t, s)

    def update_all(self, params, grads, states, lr) -> bool:
        if self.centered:
            return False
        # (new lists of temporaries, not the per-variable path's scratch buffers: on CUDA an allocation from
        # the cache costs no launch, a copy into a buffer does)
        v = [s["v"] for s in states]
        t = torch._foreach_mul(grads, grads)
        torch._foreach_mul_(t, 1 - self.rho)     # (1 - rho)*(g*g)
        torch._foreach_mul_(v, self.rho)
        torch._foreach_add_(v, t)                # v = rho*v + (1 - rho)*(g*g)
        d = torch._foreach_add(v, self.epsilon)
        torch._foreach_sqrt_(d)                  # sqrt(v + eps)
        t = torch._foreach_mul(grads, lr)
        torch._foreach_div_(t, d)                # (lr*g) / sqrt(v + eps)
        if self.momentum:
            m = [s["m"] for s in states]
            torch._foreach_mul_(m, self.momentum)
            torch._foreach_add_(m, t)            # m = momentum*m + increment
            torch._foreach_sub_(params, m)
        else:
            torch._foreach_sub_(params, t)
        return True

    def _scratch(self, p) -> tuple[torch.Tensor, torch.Tensor]:
        """A variable's two buffers of its shape, made once and written in place every step: no temporaries
        of the variable's size each step (on the CPU they cost ~1,800 page faults per step on the 784x512
        kernel). Kept beside the state, not in it: a checkpoint holds the state, and these hold nothing
        between steps."""
        buffers = self._buffers.get(id(p))
        if buffers is None:
            buffers = self._buffers[id(p)] = (torch.empty_like(p), torch.empty_like(p))
        return buffers

    def _update_centered(self, p, g, s, lr, rows=None):
        rho, v, a = self.rho, s["v"], s["a"]
        v.copy_(rho * v + (1 - rho) * self.square(g, rows))
        a.copy_(rho * a + (1 - rho) * g)
        self._apply(p, (lr * g) / torch.sqrt(v - a * a + self.epsilon), s)

    def _apply(self, p, increment, s):
        if "m" in s:
            s["m"].mul_(self.momentum).add_(increment)  # m = momentum*m + increment
            p.sub_(s["m"])
        else:
            p.sub_(increment)


class Adam(KerasOptimizer):
    """Keras' Adam: ε added to the uncorrected √v, bias corrections b^t = pow(float32(β), t) in the variable
    dtype. AdamW is this with weight_decay (decoupled, in KerasOptimizer.step)."""

    def __init__(self, params, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
                 **common):
        self.beta_1, self.beta_2, self.epsilon, self.amsgrad = beta_1, beta_2, epsilon, amsgrad
        super().__init__(params, learning_rate, **common)

    def init_state(self, p):
        s = {"m": torch.zeros_like(p), "v": torch.zeros_like(p)}
        if self.amsgrad:
            s["vhat"] = torch.zeros_like(p)
        return s

    def step(self):
        t = self.step_count()
        self._b1p = torch.pow(self.const(self.beta_1), t)
        self._b2p = torch.pow(self.const(self.beta_2), t)
        super().step()

    def update_all(self, params, grads, states, lr) -> bool:
        if self.amsgrad:
            return False
        alpha = lr * torch.sqrt(1 - self._b2p) / (1 - self._b1p)
        m, v = [s["m"] for s in states], [s["v"] for s in states]
        d = torch._foreach_sub(grads, m)
        torch._foreach_mul_(d, 1 - self.beta_1)
        torch._foreach_add_(m, d)                             # m += (g - m)*(1 - beta_1)
        d = torch._foreach_mul(grads, grads)
        torch._foreach_sub_(d, v)
        torch._foreach_mul_(d, 1 - self.beta_2)
        torch._foreach_add_(v, d)                             # v += (g*g - v)*(1 - beta_2)
        step = torch._foreach_mul(m, alpha)
        root = torch._foreach_sqrt(v)
        torch._foreach_add_(root, self.epsilon)
        torch._foreach_div_(step, root)
        torch._foreach_sub_(params, step)                     # p -= (m*alpha) / (sqrt(v) + eps)
        return True

    def update(self, p, g, s, lr, rows=None):
        alpha = lr * torch.sqrt(1 - self._b2p) / (1 - self._b1p)
        m, v = s["m"], s["v"]
        m.add_((g - m) * (1 - self.beta_1))
        v.add_((self.square(g, rows) - v) * (1 - self.beta_2))
        if "vhat" in s:
            s["vhat"].copy_(torch.maximum(s["vhat"], v))
            v = s["vhat"]
        p.sub_((m * alpha) / (torch.sqrt(v) + self.epsilon))


class Adagrad(KerasOptimizer):
    """Keras: accumulator starts at cast(initial_accumulator_value); acc += g²; w −= lr·g/√(acc + ε)."""

    def __init__(self, params, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **common):
        self.initial_accumulator_value, self.epsilon = initial_accumulator_value, epsilon
        super().__init__(params, learning_rate, **common)

    def init_state(self, p):
        return {"acc": torch.ones_like(p) * self.const(self.initial_accumulator_value)}

    def update(self, p, g, s, lr, rows=None):
        acc = s["acc"]
        acc.add_(self.square(g, rows))
        p.sub_((lr * g) / torch.sqrt(acc + self.epsilon))


class Adadelta(KerasOptimizer):
    """Keras: Eg = ρEg + (1−ρ)g²; d = −√(Ed + ε)·g/√(Eg + ε); Ed = ρEd + (1−ρ)d²; w += lr·d."""

    def __init__(self, params, learning_rate=0.001, rho=0.95, epsilon=1e-7, **common):
        self.rho, self.epsilon = rho, epsilon
        super().__init__(params, learning_rate, **common)

    def init_state(self, p):
        return {"eg": torch.zeros_like(p), "ed": torch.zeros_like(p)}

    def update(self, p, g, s, lr, rows=None):
        rho, eps = self.rho, self.epsilon
        eg, ed = s["eg"], s["ed"]
        eg.copy_(rho * eg + (1 - rho) * self.square(g, rows))
        if rows is not None:  # Keras: each occurrence's delta, squared, then summed per row
            d = -((torch.sqrt(ed + eps)[rows.indices] * rows.values) / torch.sqrt(eg + eps)[rows.indices])
            ed.copy_(rho * ed + rows.summed((1 - rho) * (d * d)))
            p.add_(rows.summed(lr * d))
            return
        delta = -((torch.sqrt(ed + eps) * g) / torch.sqrt(eg + eps))
        ed.copy_(rho * ed + (1 - rho) * (delta * delta))
        p.add_(lr * delta)


class Nadam(KerasOptimizer):
    """Keras' Nadam: momentum cache u_t = β1·(1 − 0.5·0.96^t) (β1 and 0.96 cast through float32), the running
    product of u updated once per step before the variable updates (with the exact Python β1 and 0.96)."""

    def __init__(self, params, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **common):
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        super().__init__(params, learning_rate, **common)
        dev = params[0].device if params else None
        self.u_product = torch.tensor(1.0, dtype=self.dtype, device=dev)

    def init_state(self, p):
        return {"m": torch.zeros_like(p), "v": torch.zeros_like(p)}

    def counters(self) -> dict[str, torch.Tensor]:
        return {"u_product": self.u_product}

    def step(self):
        t = self.step_count()
        self.u_product.copy_(self.u_product * self.beta_1 * (1.0 - 0.5 * torch.pow(self.scalar(0.96), t)))
        t1 = t + 1 if self.iterations + 2 <= 2**24 else torch.tensor(float(self.iterations + 2),
                                                                      dtype=self.dtype, device=t.device)
        decay, beta_1, beta_2 = self.const(0.96), self.const(self.beta_1), self.const(self.beta_2)
        self._beta_1, self._beta_2 = beta_1, beta_2
        self._u_t = beta_1 * (1.0 - 0.5 * torch.pow(decay, t))
        self._u_t_1 = beta_1 * (1.0 - 0.5 * torch.pow(decay, t1))
        self._u_product_t_1 = self.u_product * self._u_t_1
        self._beta_2_power = torch.pow(beta_2, t)
        super().step()

    def update(self, p, g, s, lr, rows=None):
        m, v = s["m"], s["v"]
        m.add_((g - m) * (1 - self._beta_1))
        v.add_((self.square(g, rows) - v) * (1 - self._beta_2))
        m_hat = (self._u_t_1 * m) / (1 - self._u_product_t_1) + ((1 - self._u_t) * g) / (1 - self.u_product)
        v_hat = v / (1 - self._beta_2_power)
        p.sub_((m_hat * lr) / (torch.sqrt(v_hat) + self.epsilon))
