"""Keras' optimizer update rules, operation for operation, on torch tensors.

Stock torch optimizers differ from Keras (eps placement in Adam and RMSprop, lr folded into SGD's velocity,
float32 bias corrections): see shared/EQUIVALENCE.md. Each class mirrors `update_step` of keras/src/optimizers.
"""

from __future__ import annotations

import torch

from dlc.backends import LoweringMissing


class KerasOptimizer:
    def __init__(self, params: list[torch.nn.Parameter], ir):
        self.params = params
        self.ir = ir
        self.lr = float(ir.learning_rate)
        self.iterations = 0
        self.dtype = params[0].dtype if params else torch.float32
        self.state = [self.init_state(p) for p in params]

    def init_state(self, p) -> dict:
        return {}

    def const(self, x: float) -> torch.Tensor:
        """A Python constant as Keras casts it: `ops.cast(float, dtype)` goes through float32."""
        return torch.tensor(float(torch.tensor(x, dtype=torch.float32)), dtype=self.dtype, device=self.params[0].device)

    def _clip(self, grads):
        ir = self.ir
        if ir.clipnorm:
            out = []
            for g in grads:
                l2sum = (g * g).sum()
                l2norm = torch.where(l2sum > 0, torch.sqrt(torch.where(l2sum > 0, l2sum, torch.ones_like(l2sum))),
                                     l2sum)
                out.append(g * ir.clipnorm / torch.clamp(l2norm, min=ir.clipnorm))
            return out
        if ir.global_clipnorm:
            norm = torch.sqrt(sum((g * g).sum() for g in grads))
            scale = ir.global_clipnorm / torch.maximum(norm, torch.tensor(ir.global_clipnorm, dtype=norm.dtype,
                                                                             device=norm.device))
            return [g * scale for g in grads]
        if ir.clipvalue:
            return [torch.clamp(g, -ir.clipvalue, ir.clipvalue) for g in grads]
        return grads

    @torch.no_grad()
    def step(self):
        grads = [p.grad for p in self.params]
        grads = self._clip(grads)
        lr = torch.tensor(self.lr, dtype=self.dtype, device=self.params[0].device)
        if self.ir.weight_decay:  # Keras: variable -= variable * cast(wd) * lr, before the update step
            wd = self.const(self.ir.weight_decay)
            for p in self.params:
                p.sub_(p * wd * lr)
        for p, g, s in zip(self.params, grads, self.state):
            self.update(p, g, s, lr)
        self.iterations += 1

    def update(self, p, g, s, lr):  # pragma: no cover
        raise NotImplementedError

    def zero_grad(self):
        for p in self.params:
            p.grad = None


class SGD(KerasOptimizer):
    def init_state(self, p):
        return {"m": torch.zeros_like(p)} if self.ir.momentum else {}

    def update(self, p, g, s, lr):
        if "m" not in s:
            p.sub_(g * lr)
            return
        momentum = self.const(self.ir.momentum)
        m = s["m"]
        m.copy_(m * momentum - g * lr)
        if self.ir.nesterov:
            p.add_(m * momentum - g * lr)
        else:
            p.add_(m)


class RMSprop(KerasOptimizer):
    def init_state(self, p):
        s = {"v": torch.zeros_like(p)}
        if self.ir.momentum:
            s["m"] = torch.zeros_like(p)
        if self.ir.centered:
            s["a"] = torch.zeros_like(p)
        return s

    def update(self, p, g, s, lr):
        rho = self.ir.rho
        v = s["v"]
        if not self.ir.centered:
            # Keras' ops in Keras' order, written in place into two buffers per parameter: no temporaries of
            # the parameter's size each step (they cost ~1,800 page faults per step on the 784x512 kernel)
            if "t" not in s:
                s["t"], s["d"] = torch.empty_like(p), torch.empty_like(p)
            t, d = s["t"], s["d"]
            torch.mul(g, g, out=t).mul_(1 - rho)
            v.mul_(rho).add_(t)                            # v = rho*v + (1 - rho)*(g*g)
            torch.add(v, self.ir.epsilon, out=d).sqrt_()  # sqrt(v + eps)
            torch.mul(g, lr, out=t).div_(d)                # (lr*g) / sqrt(v + eps)
            if "m" in s:
                s["m"].mul_(self.ir.momentum).add_(t)      # m = momentum*m + increment
                p.sub_(s["m"])
            else:
                p.sub_(t)
            return
        v.copy_(rho * v + (1 - rho) * (g * g))
        if self.ir.centered:
            a = s["a"]
            a.copy_(rho * a + (1 - rho) * g)
            denom = v - a * a + self.ir.epsilon
        else:
            denom = v + self.ir.epsilon
        inc = (lr * g) / torch.sqrt(denom)
        if "m" in s:
            m = s["m"]
            m.copy_(self.ir.momentum * m + inc)
            p.sub_(m)
        else:
            p.sub_(inc)


class Adam(KerasOptimizer):
    def init_state(self, p):
        s = {"m": torch.zeros_like(p), "v": torch.zeros_like(p)}
        if self.ir.amsgrad:
            s["vhat"] = torch.zeros_like(p)
        return s

    def step(self):
        t = torch.tensor(float(self.iterations + 1), dtype=self.dtype, device=self.params[0].device)
        self._b1p = torch.pow(self.const(self.ir.beta_1), t)
        self._b2p = torch.pow(self.const(self.ir.beta_2), t)
        super().step()

    def update(self, p, g, s, lr):
        alpha = lr * torch.sqrt(1 - self._b2p) / (1 - self._b1p)
        m, v = s["m"], s["v"]
        m.add_((g - m) * (1 - self.ir.beta_1))
        v.add_((g * g - v) * (1 - self.ir.beta_2))
        if "vhat" in s:
            s["vhat"].copy_(torch.maximum(s["vhat"], v))
            v = s["vhat"]
        p.sub_((m * alpha) / (torch.sqrt(v) + self.ir.epsilon))


class Adagrad(KerasOptimizer):
    """Keras: accumulator starts at cast(initial_accumulator_value); acc += g²; w −= lr·g/√(acc + ε)."""

    def init_state(self, p):
        return {"acc": torch.ones_like(p) * self.const(self.ir.initial_accumulator_value)}

    def update(self, p, g, s, lr):
        acc = s["acc"]
        acc.add_(g * g)
        p.sub_((lr * g) / torch.sqrt(acc + self.ir.epsilon))


class Adadelta(KerasOptimizer):
    """Keras: Eg = ρEg + (1−ρ)g²; d = −√(Ed + ε)·g/√(Eg + ε); Ed = ρEd + (1−ρ)d²; w += lr·d."""

    def init_state(self, p):
        return {"eg": torch.zeros_like(p), "ed": torch.zeros_like(p)}

    def update(self, p, g, s, lr):
        rho, eps = self.ir.rho, self.ir.epsilon
        eg, ed = s["eg"], s["ed"]
        eg.copy_(rho * eg + (1 - rho) * (g * g))
        delta = -((torch.sqrt(ed + eps) * g) / torch.sqrt(eg + eps))
        ed.copy_(rho * ed + (1 - rho) * (delta * delta))
        p.add_(lr * delta)


class Nadam(KerasOptimizer):
    """Keras' Nadam: momentum cache u_t = β1·(1 − 0.5·0.96^t) (β1 and 0.96 cast through float32), the running
    product of u updated once per step before the variable updates (with the exact Python β1 and 0.96)."""

    def __init__(self, params, ir):
        super().__init__(params, ir)
        dev = params[0].device if params else None
        self.u_product = torch.tensor(1.0, dtype=self.dtype, device=dev)

    def init_state(self, p):
        return {"m": torch.zeros_like(p), "v": torch.zeros_like(p)}

    def step(self):
        dev = self.params[0].device
        t = torch.tensor(float(self.iterations + 1), dtype=self.dtype, device=dev)
        self.u_product = self.u_product * self.ir.beta_1 * (
            1.0 - 0.5 * torch.pow(torch.tensor(0.96, dtype=self.dtype, device=dev), t))
        t1 = torch.tensor(float(self.iterations + 2), dtype=self.dtype, device=dev)
        decay, beta_1, beta_2 = self.const(0.96), self.const(self.ir.beta_1), self.const(self.ir.beta_2)
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
        p.sub_((m_hat * lr) / (torch.sqrt(v_hat) + self.ir.epsilon))


OPTIMIZERS = {"SGD": SGD, "RMSprop": RMSprop, "Adam": Adam, "AdamW": Adam, "Adagrad": Adagrad,
              "Adadelta": Adadelta, "Nadam": Nadam}


def make(params, ir) -> KerasOptimizer:
    cls = OPTIMIZERS.get(ir.kind)
    if cls is None:
        raise LoweringMissing(f"optimizer {ir.kind}", "torch")
    return cls(params, ir)
