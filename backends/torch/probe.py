"""The training evidence's probe on torch (definitions: dlc/reference/evidence.py): one forward and backward
pass over the probe set in inference mode, every layer's output caught by a forward hook; the numbers are
reduced on the device and read in one transfer."""

from __future__ import annotations

import torch

from dlc.reference.evidence import SIGMOID_HIGH, SIGMOID_LOW, TANH_LIMIT, ProbeLayer, probe_rows

from .training import weight_tensor


def activation_stats(a: torch.Tensor, family: str | None) -> list[torch.Tensor]:
    """[mean, std, dead fraction, saturated fraction] of one layer's output (NaN where not applicable)."""
    nan = torch.full((), float("nan"), dtype=a.dtype, device=a.device)
    mean = a.mean()
    std = ((a - mean) ** 2).mean().sqrt()
    dead = sat = nan
    if family == "relu":
        alive = (a > 0).reshape(-1, a.shape[-1]).any(dim=0)
        dead = 1 - alive.to(a.dtype).mean()
    elif family == "sigmoid":
        sat = ((a < SIGMOID_LOW) | (a > SIGMOID_HIGH)).to(a.dtype).mean()
    elif family == "tanh":
        sat = (a.abs() > TANH_LIMIT).to(a.dtype).mean()
    return [mean, std, dead, sat]


class Prober:
    """`probe(x, y)` for a session's network: {layer: {grad_norm, act_mean, act_std, dead_fraction,
    saturated_fraction}} (None where not applicable)."""

    def __init__(self, net, modules: dict, loss, layers: list[ProbeLayer], trainer=None):
        self.net, self.modules, self.loss, self.layers, self.trainer = net, modules, loss, layers, trainer
        self.params = {pl.name: [weight_tensor(modules[pl.name], w) for w in pl.trainable] for pl in layers}

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, dict[str, float | None]]:
        outputs: dict[str, torch.Tensor] = {}
        hooks = [self.modules[pl.name].register_forward_hook(self._keep(outputs, pl.name))
                 for pl in self.layers]
        was_training = self.net.training
        self.net.eval()
        try:
            forward = self.trainer.forward if self.trainer is not None else self.net  # (mixed: autocast)
            with torch.enable_grad():
                loss = self.loss(forward(x), y)
        finally:
            for h in hooks:
                h.remove()
            if self.trainer is not None:
                self.trainer._acts.clear()  # the activity regularizers' terms of this forward
            self.net.train(was_training)
        flat = [p for pl in self.layers for p in self.params[pl.name]]
        grads = torch.autograd.grad(loss, flat, allow_unused=True) if flat else ()
        values: list[torch.Tensor] = []
        with torch.no_grad():
            i = 0
            zero = torch.zeros((), dtype=loss.dtype, device=loss.device)
            for pl in self.layers:
                g = grads[i:i + len(self.params[pl.name])]
                i += len(g)
                dense = [t.to_dense() if t.is_sparse else t for t in g if t is not None]  # (Embedding's)
                sq = [(t * t).sum() for t in dense]
                norm = torch.stack(sq).sum().sqrt() if sq else (zero if g else zero + float("nan"))
                a = outputs[pl.name].to(loss.dtype)  # (a layer's output is 16-bit under mixed precision)
                if pl.output_activation == "softmax":
                    a = torch.softmax(a, -1)
                elif pl.output_activation == "sigmoid":
                    a = torch.sigmoid(a)
                values += [norm, *activation_stats(a, pl.family)]
            numbers = torch.stack(values).cpu().double().tolist()
        return probe_rows(self.layers, numbers)

    @staticmethod
    def _keep(outputs: dict, name: str):
        def hook(_module, _inputs, out):
            outputs[name] = (out[0] if isinstance(out, tuple) else out).detach()

        return hook
