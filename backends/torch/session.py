"""A trainable torch model for one spec: data kept on the device, losses and metric statistics accumulated on
the device and read once per epoch (or per progress refresh)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlc.backends import LoweringMissing
from dlc.compiler.checks import final_activation
from dlc.compiler.spec import Spec
from dlc.metrics import stats_size
from dlc.weights import flatten, unflatten

from . import layers as TL
from . import optimizers as TO

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def pick_device(device: str) -> torch.device:
    if device in ("auto", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but PyTorch sees no CUDA device")
    return torch.device(device)


class Residual(nn.Module):
    def __init__(self, body: list[nn.Module]):
        super().__init__()
        self.body = nn.ModuleList(body)

    def forward(self, x):
        y = x
        for m in self.body:
            y = m(y)
        return x + y


class Net(nn.Module):
    """The spec's layers in order; returns logits when the last activation is fused into the loss."""

    def __init__(self, spec: Spec, counter: TL.StepCounter, fuse: bool):
        super().__init__()
        self.by_name: dict[str, tuple[str, nn.Module]] = {}
        infos = list(spec.walk())
        last = spec.layers[-1].name
        pos = 0

        def build(depth: int) -> list[nn.Module]:
            nonlocal pos
            mods = []
            while pos < len(infos) and infos[pos].depth >= depth:
                info = infos[pos]
                pos += 1
                if info.layer.kind == "Residual":
                    mod = Residual(build(depth + 1))
                else:
                    mod = TL.lower(info, spec.seed, counter, fuse and info.layer.name == last)
                self.by_name[info.layer.name] = (info.layer.kind, mod)
                mods.append(mod)
            return mods

        self.seq = nn.Sequential(*build(0))

    def forward(self, x):
        return self.seq(x)


SMALL_STEP_WORK = 2e7  # parameters × batch size under which one CPU thread beats several


def _pick_cpu_threads(spec: Spec) -> None:
    """Small models: one thread. Torch's worker threads spin-wait between tiny ops, so on 2 cores (or a busy
    machine) several threads made small models 4-30x slower; big steps keep torch's default. OMP_NUM_THREADS,
    when set, always wins."""
    if os.environ.get("OMP_NUM_THREADS"):
        return
    trainable, _ = spec.param_counts()
    if trainable * spec.train.batch_size < SMALL_STEP_WORK:
        torch.set_num_threads(1)


class Session:
    name = "torch"

    def __init__(self, spec: Spec, dtype: str | None = None, device: str = "auto", weights=None):
        self.spec = spec
        self.dtype = DTYPES[dtype or spec.dtype]
        self.device = pick_device(device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False  # TF32 changes results (EQUIVALENCE.md)
            torch.backends.cudnn.allow_tf32 = False
        self.task = type(spec.loss).task
        self.final = final_activation(spec)
        self.fused = type(spec.loss).output_activation == self.final and self.final in ("softmax", "sigmoid")
        self.counter = TL.StepCounter(self.device)
        self.net = Net(spec, self.counter, self.fused).to(device=self.device, dtype=self.dtype)
        self.regs = self._regularizers()
        self.constraints = [TL.KerasConstraint(TL.tensor_for(mod, kind, w.name), w.constraint, kind, w.name)
                            for info in spec.walk() for w in info.weights if w.constraint is not None
                            for kind, mod in [self.net.by_name[info.layer.name]]]
        if weights is not None:
            self.set_weights(weights)
        self.opt = TO.make([p for p in self.net.parameters()], spec.optimizer)
        if self.device.type == "cpu":
            _pick_cpu_threads(spec)
        self.device_name = str(self.device) + (f" ({torch.cuda.get_device_name(self.device)})"
                                               if self.device.type == "cuda" else "")

    # ------------------------------------------------------------------------------------------ weights

    def _regularizers(self):
        regs = []
        for info in self.spec.walk():
            for w in info.weights:
                if w.regularizer is not None:
                    kind, mod = self.net.by_name[info.layer.name]
                    regs.append((TL.tensor_for(mod, kind, w.name), w.regularizer))
            if getattr(info.layer, "activity_reg", None) is not None:
                self._activity_hook(self.net.by_name[info.layer.name][1], info.layer.activity_reg)
        return regs

    def _activity_hook(self, mod, r):
        """Keras 3 (Layer.__call__): loss += regularizer(layer output) / batch size, for every call, training and
        evaluation alike; the output is the module's (with the fused last activation left out, as in Keras)."""
        if not hasattr(self, "_acts"):
            self._acts = {}  # the latest forward's term per layer (stale ones are overwritten, never summed)

        def hook(_mod, _inp, out):
            self._acts[id(_mod)] = self._reg_term(out, r) / out.shape[0]

        mod.register_forward_hook(hook)

    def _activity_loss(self):
        acts = getattr(self, "_acts", None)
        if not acts:
            return None
        terms = list(acts.values())
        total = terms[0]
        for a in terms[1:]:
            total = total + a
        acts.clear()
        return total

    def set_weights(self, weights):
        with torch.no_grad():
            for lname, ws in weights.items():
                kind, mod = self.net.by_name[lname]
                for wname, arr in ws.items():
                    t = TL.tensor_for(mod, kind, wname)
                    t.copy_(torch.as_tensor(np.ascontiguousarray(TL.to_torch(kind, wname, arr)), dtype=self.dtype))

    def get_weights(self):
        out = {}
        for info in self.spec.walk():
            if not info.weights:
                continue
            kind, mod = self.net.by_name[info.layer.name]
            out[info.layer.name] = {
                w.name: TL.from_torch(kind, w.name, TL.tensor_for(mod, kind, w.name).detach().cpu().double().numpy().copy())
                for w in info.weights}
        return out

    # ------------------------------------------------------------------------------------------- losses

    def _reg_loss(self):
        total = None
        for t, r in self.regs:
            term = self._reg_term(t, r)
            if term is not None:
                total = term if total is None else total + term
        return total

    @staticmethod
    def _reg_term(t, r):
        term = None
        if r.l1:
            term = float(np.float32(r.l1)) * t.abs().sum()
        if r.l2:
            l2 = float(np.float32(r.l2)) * (t * t).sum()
            term = l2 if term is None else term + l2
        return term

    def _loss(self, out, y):
        name = self.spec.loss.name
        if name == "categorical_crossentropy":
            return -(y * F.log_softmax(out, dim=-1)).sum(dim=-1).mean()
        if name == "sparse_categorical_crossentropy":
            return F.cross_entropy(out, y)
        if name == "binary_crossentropy":
            return F.binary_cross_entropy_with_logits(out, y)
        if name == "mse":
            return ((y - out) ** 2).mean(dim=-1).mean()
        if name == "mae":
            return (y - out).abs().mean(dim=-1).mean()
        if name == "huber":
            d = self.spec.loss.delta
            err = (y - out).abs()
            return torch.where(err <= d, 0.5 * err * err, d * err - 0.5 * d * d).mean(dim=-1).mean()
        raise LoweringMissing(f"loss {name}", "torch")

    def _stats(self, out, y):
        if self.task == "regression":
            err = y - out
            return torch.stack([(err * err).sum(), err.abs().sum(),
                                torch.tensor(float(err.numel()), dtype=err.dtype, device=err.device)])
        if self.task == "binary":
            pred = (out > 0).long().view(-1) if self.fused else (out > 0.5).long().view(-1)
            true = y.long().view(-1)
            k = 2
        else:
            pred = out.argmax(dim=-1)
            true = y if y.dim() == 1 else y.argmax(dim=-1)
            k = out.shape[-1]
        return torch.bincount(true * k + pred, minlength=k * k).view(k, k).to(out.dtype)

    # ---------------------------------------------------------------------------------------- training

    def load_data(self, x: np.ndarray, y: np.ndarray):
        xt = torch.as_tensor(x, dtype=self.dtype).to(self.device)
        yt = torch.as_tensor(y).to(self.device)
        yt = yt.long() if yt.dtype in (torch.int64, torch.int32) else yt.to(self.dtype)
        return xt, yt

    def set_lr(self, lr: float):
        self.opt.lr = float(lr)

    def train_epoch(self, handle, perm: np.ndarray, batch_size: int, progress=None):
        x, y = handle
        self.net.train()
        n = len(perm)
        perm_t = torch.as_tensor(perm, dtype=torch.int64).to(self.device)
        steps = -(-n // batch_size)
        losses = torch.zeros(steps, dtype=self.dtype, device=self.device)
        stats = torch.zeros(stats_size(self.task, self.spec.output_shape()[-1]), dtype=self.dtype,
                            device=self.device)
        sizes = np.array([min(batch_size, n - i * batch_size) for i in range(steps)], dtype=np.float64)
        last = time.perf_counter()
        for i in range(steps):
            idx = perm_t[i * batch_size:(i + 1) * batch_size]
            xb, yb = x[idx], y[idx]
            out = self.net(xb)
            loss = self._loss(out, yb)
            act = self._activity_loss()
            if act is not None:
                loss = loss + act
            reg = self._reg_loss()
            if reg is not None:
                loss = loss + reg
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            for c in self.constraints:
                c.apply()
            self.counter.value += 1
            with torch.no_grad():
                losses[i] = loss.detach()
                stats += self._stats(out.detach(), yb)
            if progress is not None and time.perf_counter() - last > 0.2:
                progress(i + 1, steps)
                last = time.perf_counter()
        if progress is not None:
            progress(steps, steps)
        return losses.cpu().double().numpy(), stats.cpu().double().numpy(), sizes

    @torch.no_grad()
    def evaluate(self, handle, batch_size: int):
        x, y = handle
        self.net.eval()
        total = torch.zeros((), dtype=self.dtype, device=self.device)
        stats = torch.zeros(stats_size(self.task, self.spec.output_shape()[-1]), dtype=self.dtype,
                            device=self.device)
        n = len(x)
        for i in range(0, n, batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            out = self.net(xb)
            act = self._activity_loss()
            total += (self._loss(out, yb) if act is None else self._loss(out, yb) + act) * len(xb)
            stats += self._stats(out, yb)
        loss = float(total) / n
        reg = self._reg_loss()
        if reg is not None:
            loss += float(reg)
        return loss, stats.cpu().double().numpy()

    @torch.no_grad()
    def predict(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        self.net.eval()
        outs = []
        for i in range(0, len(x), batch_size):
            out = self.net(torch.as_tensor(x[i:i + batch_size], dtype=self.dtype).to(self.device))
            if self.fused:
                out = torch.softmax(out, -1) if self.final == "softmax" else torch.sigmoid(out)
            outs.append(out.cpu().double().numpy())
        return np.concatenate(outs)

    def save(self, directory: Path) -> list[str]:
        directory = Path(directory)
        torch.save(self.net.state_dict(), directory / "model.pt")
        (directory / "model.json").write_text(json.dumps(
            {"backend": "torch", "format": "state_dict", "file": "model.pt", "dtype": str(self.dtype),
             "load": "dlc.backends.torch.session.Session(spec).net.load_state_dict(torch.load('model.pt'))",
             "fused_output_activation": self.final if self.fused else None}, indent=2))
        return ["model.pt", "model.json"]

    def load(self, directory: Path):
        self.net.load_state_dict(torch.load(Path(directory) / "model.pt", map_location=self.device))

    # ------------------------------------------------------------------------------------- checkpoints

    def get_state(self) -> dict[str, np.ndarray]:
        """Weights, optimizer slots and counters: what a checkpoint holds to resume bit for bit."""
        out = flatten(self.get_weights(), "w/")
        out["opt/iterations"] = np.array(self.opt.iterations)
        out["opt/lr"] = np.array(self.opt.lr)
        for i, st in enumerate(self.opt.state):
            for k, t in st.items():
                out[f"opt/{i}/{k}"] = t.detach().cpu().numpy().copy()
        out["step"] = np.array(int(self.counter.value))
        return out

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.set_weights(unflatten(state, "w/"))
        self.opt.iterations = int(state["opt/iterations"])
        self.opt.lr = float(state["opt/lr"])
        with torch.no_grad():
            for i, st in enumerate(self.opt.state):
                for k, t in st.items():
                    t.copy_(torch.as_tensor(state[f"opt/{i}/{k}"]))
            self.counter.value.fill_(int(state["step"]))
