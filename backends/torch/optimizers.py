"""Keras' optimizer update rules, operation for operation, on torch tensors.

Stock torch optimizers differ from Keras (eps placement in Adam and RMSprop, lr folded into SGD's velocity,
float32 bias corrections): see shared/EQUIVALENCE.md. Each class mirrors `update_step` of
keras/src/optimizers.
"""

from __future__ import annotations

import torch


class KerasOptimizer:
    """The parts every Keras optimizer shares: gradient clipping, decoupled weight decay, the step counter."""

    def __init__(self, params: list[torch.nn.Parameter], learning_rate: float, clipnorm: float | None = None,
                 clipvalue: float | None = None, global_clipnorm: float | None = None,
                 weight_decay: float | None = None):
        self.params = params
        self.lr = float(learning_rate)
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.weight_decay = weight_decay
        self.iterations = 0
        self.dtype = params[0].dtype if params else torch.float32
        self.state = [self.init_state(p) for p in params]

    def init_state(self, p) -> dict:
        return {}

    def const(self, x: float) -> torch.Tensor:
        """A Python constant as Keras casts it: `ops.cast(float, dtype)` goes through float32."""
        return torch.tensor(float(torch.tensor(x, dtype=torch.float32)), dtype=self.dtype,
                            device=self.params[0].device)

    def _clip(self, grads):
        if self.clipnorm:
            out = []
            for g in grads:
                l2sum = (g * g).sum()
                l2norm = torch.where(l2sum > 0,
                                     torch.sqrt(torch.where(l2sum > 0, l2sum, torch.ones_like(l2sum))), l2sum)
                out.append(g * self.clipnorm / torch.clamp(l2norm, min=self.clipnorm))
            return out
        if self.global_clipnorm:
            norm = torch.sqrt(sum((g * g).sum() for g in grads))
            scale = self.global_clipnorm / torch.maximum(norm,
                                                         torch.tensor(self.global_clipnorm, dtype=norm.dtype,
                                                                       device=norm.device))
            return [g * scale for g in grads]
        if self.clipvalue:
            return [torch.clamp(g, -self.clipvalue, self.clipvalue) for g in grads]
        return grads

    @torch.no_grad()
    def step(self):
        grads = [p.grad for p in self.params]
        grads = self._clip(grads)
        lr = torch.tensor(self.lr, dtype=self.dtype, device=self.params[0].device)
        if self.weight_decay:  # Keras: variable -= variable * cast(wd) * lr, before the update step
            wd = self.const(self.weight_decay)
            for p in self.params:
                p.sub_(p * wd * lr)
        for p, g, s in zip(self.params, grads, self.state, strict=True):
            self.update(p, g, s, lr)
        self.iterations += 1

    def update(self, p, g, s, lr):  # pragma: no cover
        raise NotImplementedError

    def zero_grad(self):
        for p in self.params:
            p.grad = None


class SGD(KerasOptimizer):
    """v = momentum·v − lr·g; w += v (nesterov: w += momentum·v − lr·g): lr folded into v, as Keras does."""

    def __init__(self, params, learning_rate=0.01, momentum=0.0, nesterov=False, **common):
        self.momentum, self.nesterov = momentum, nesterov
        super().__init__(params, learning_rate, **common)

    def init_state(self, p):
        return {"m": torch.zeros_like(p)} if self.momentum else {}

    def update(self, p, g, s, lr):
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


class RMSprop(KerasOptimizer):
    """v = ρv + (1−ρ)g²; w −= lr·g/√(v + ε) (ε inside the root, Keras' form); centered subtracts the mean²."""

    def __init__(self, params, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 **common):
        self.rho, self.momentum, self.epsilon, self.centered = rho, momentum, epsilon, centered
        super().__init__(params, learning_rate, **common)

    def init_state(self, p):
        s = {"v": torch.zeros_like(p)}
        if self.momentum:
            s["m"] = torch.zeros_like(p)
        if self.centered:
            s["a"] = torch.zeros_like(p)
        return s

    def update(self, p, g, s, lr):
        if self.centered:
            self._update_centered(p, g, s, lr)
            return
        # Keras' ops in Keras' order, written in place into two buffers per parameter: no temporaries of the
        # parameter's size each step (they cost ~1,800 page faults per step on the 784x512 kernel)
        if "t" not in s:
            s["t"], s["d"] = torch.empty_like(p), torch.empty_like(p)
        t, d, rho = s["t"], s["d"], self.rho
        torch.mul(g, g, out=t).mul_(1 - rho)
        s["v"].mul_(rho).add_(t)                      # v = rho*v + (1 - rho)*(g*g)
        torch.add(s["v"], self.epsilon, out=d).sqrt_()  # sqrt(v + eps)
        torch.mul(g, lr, out=t).div_(d)                # (lr*g) / sqrt(v + eps)
        self._apply(p, t, s)

    def _update_centered(self, p, g, s, lr):
        rho, v, a = self.rho, s["v"], s["a"]
        v.copy_(rho * v + (1 - rho) * (g * g))
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
        t = torch.tensor(float(self.iterations + 1), dtype=self.dtype, device=self.params[0].device)
        self._b1p = torch.pow(self.const(self.beta_1), t)
        self._b2p = torch.pow(self.const(self.beta_2), t)
        super().step()

    def update(self, p, g, s, lr):
        alpha = lr * torch.sqrt(1 - self._b2p) / (1 - self._b1p)
        m, v = s["m"], s["v"]
        m.add_((g - m) * (1 - self.beta_1))
        v.add_((g * g - v) * (1 - self.beta_2))
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

    def update(self, p, g, s, lr):
        acc = s["acc"]
        acc.add_(g * g)
        p.sub_((lr * g) / torch.sqrt(acc + self.epsilon))


class Adadelta(KerasOptimizer):
    """Keras: Eg = ρEg + (1−ρ)g²; d = −√(Ed + ε)·g/√(Eg + ε); Ed = ρEd + (1−ρ)d²; w += lr·d."""

    def __init__(self, params, learning_rate=0.001, rho=0.95, epsilon=1e-7, **common):
        self.rho, self.epsilon = rho, epsilon
        super().__init__(params, learning_rate, **common)

    def init_state(self, p):
        return {"eg": torch.zeros_like(p), "ed": torch.zeros_like(p)}

    def update(self, p, g, s, lr):
        rho, eps = self.rho, self.epsilon
        eg, ed = s["eg"], s["ed"]
        eg.copy_(rho * eg + (1 - rho) * (g * g))
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

    def step(self):
        dev = self.params[0].device
        t = torch.tensor(float(self.iterations + 1), dtype=self.dtype, device=dev)
        self.u_product = self.u_product * self.beta_1 * (
            1.0 - 0.5 * torch.pow(torch.tensor(0.96, dtype=self.dtype, device=dev), t))
        t1 = torch.tensor(float(self.iterations + 2), dtype=self.dtype, device=dev)
        decay, beta_1, beta_2 = self.const(0.96), self.const(self.beta_1), self.const(self.beta_2)
        self._beta_1, self._beta_2 = beta_1, beta_2
        self._u_t = beta_1 * (1.0 - 0.5 * torch.pow(decay, t))
        self._u_t_1 = beta_1 * (1.0 - 0.5 * torch.pow(decay, t1))
        self._u_product_t_1 = self.u_product * self._u_t_1
        self._beta_2_power = torch.pow(beta_2, t)
        super().step()

    def update(self, p, g, s, lr):
        m, v = s["m"], s["v"]
        m.add_((g - m) * (1 - self._beta_1))
        v.add_((g * g - v) * (1 - self._beta_2))
        m_hat = (self._u_t_1 * m) / (1 - self._u_product_t_1) + ((1 - self._u_t) * g) / (1 - self.u_product)
        v_hat = v / (1 - self._beta_2_power)
        p.sub_((m_hat * lr) / (torch.sqrt(v_hat) + self.epsilon))
