"""One network's train and evaluation steps on torch, from plain parts (the session and the emitted script
share it): losses and metric statistics accumulate on the device and are read once per epoch."""

from __future__ import annotations

import time

import numpy as np
import torch

from dlc.backends.session import batch_sizes


class DynamicLossScale:
    """Keras' LossScaleOptimizer rule (compiler.training.LossScale) around one of dlc's optimizers: the loss
    is scaled before backward and the gradients divided by the scale before the optimizer's step (its
    clipping and weight decay see the true gradients); a step with a non-finite gradient is skipped and halves
    the scale; `growth_steps` finite steps in a row double it. (torch.amp.GradScaler needs a
    torch.optim.Optimizer.) Reading whether the gradients are finite costs one host sync per step."""

    def __init__(self, initial_scale: float = 2.0**15, growth_steps: int = 2000):
        self.scale, self.growth_steps, self.good_steps = float(initial_scale), int(growth_steps), 0

    def step(self, loss, optimizer) -> bool:
        """Backward of the scaled loss and, when every gradient is finite, the optimizer's step: whether it
        was taken."""
        (loss * self.scale).backward()
        # (an Embedding's sparse gradient: its rows, in place)
        grads = [p.grad._values() if p.grad.is_sparse else p.grad for p in optimizer.params
                 if p.grad is not None]
        finite = bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()) if grads else True
        if not finite:
            self.scale, self.good_steps = self.scale * 0.5, 0
            return False
        with torch.no_grad():
            for g in grads:
                g.div_(self.scale)
        optimizer.step()
        if self.good_steps == self.growth_steps - 1:
            self.scale, self.good_steps = self.scale * 2.0, 0
        else:
            self.good_steps += 1
        return True


class Trainer:
    """`loss(out, y)`; `stats(out, y)` the metric statistics; `penalties` [(tensor, penalty)] and
    `activity` [(module, penalty)] add Keras' regularizers, `constraints` [(tensor, constraint)] run after
    each step; `step` is the counter that keys the dropout masks. Mixed precision: `compute_dtype` (a 16-bit
    torch dtype) runs the network under autocast, its output cast back to the parameters' dtype before the
    loss; `loss_scale` (a DynamicLossScale, for float16) scales the loss."""

    def __init__(self, net, loss, optimizer, stats, stats_shape, step, penalties=(), activity=(),
                 constraints=(), compute_dtype=None, loss_scale=None, compiled=False, graph_steps=None):
        self.net, self.loss, self.opt, self.stats, self.step = net, loss, optimizer, stats, step
        self.compute_dtype, self.loss_scale = compute_dtype, loss_scale
        self.stats_shape = tuple(stats_shape)
        self.penalties, self.constraints = list(penalties), list(constraints)
        # the latest forward's activity term per module (stale ones are overwritten, never summed)
        self._acts = {}
        for module, penalty in activity:
            module.register_forward_hook(self._activity_hook(penalty))
        # `compiled` (dlc run --compile): the forward pass, the loss and its backward as one torch.compile
        # graph (any batch size: one compilation); dlc's optimizers keep host counters, so they run eagerly
        self.compiled = compiled
        self._objective = torch.compile(self.objective) if compiled else self.objective
        if compiled:
            step.on_device()  # (the compiled dropout keys read the step from the device: StepCounter)
            # inductor otherwise keeps a fused 16-bit sum (a bias add) in float32 and recomputes it in the
            # backward: a max's `input == output` mask then matched nothing (a Maxout under mixed_bfloat16
            # got 0/0, NaN, at step 3); rounded as eager rounds it, compiled equals eager
            import torch._inductor.config as inductor_config

            inductor_config.emulate_precision_casts = True
        # `graph_steps(trainer, x, y, batch_size)`: a graphs.StepGraph (DLC_CUDA_GRAPHS=1 on CUDA), which
        # replays the full batches' steps as one graph (passed in: an emitted script has no graphs module)
        self.graph_steps, self.graph = graph_steps, None

    def _activity_hook(self, penalty):
        """Keras 3 (Layer.__call__): loss += regularizer(layer output) / batch size on every call, training
        and evaluation alike; the output is the module's (with a fused last activation left out, as in
        Keras)."""

        def hook(module, _inputs, out):
            term = penalty(out)  # (None for a zero penalty: l2(0), l1_l2(l1=0, l2=0))
            if term is not None:
                self._acts[id(module)] = term / out.shape[0]

        return hook

    def activity_loss(self):
        terms = list(self._acts.values())
        self._acts.clear()
        total = terms[0] if terms else None
        for a in terms[1:]:
            total = total + a
        return total

    def penalty_loss(self):
        total = None
        for tensor, penalty in self.penalties:
            term = penalty(tensor)
            if term is not None:
                total = term if total is None else total + term
        return total

    def forward(self, xb):
        """The network's output in the input's dtype: under mixed precision the layers run under autocast
        in the compute dtype and the output comes back to float32 (the loss and the metrics use it)."""
        if self.compute_dtype is None:
            return self.net(xb)
        with torch.autocast(xb.device.type, dtype=self.compute_dtype):
            out = self.net(xb)
        return out.to(xb.dtype)

    def objective(self, xb, yb):
        """(the network's output, the loss the step minimizes: data loss, activity and weight penalties)."""
        out = self.forward(xb)
        loss = self.loss(out, yb)
        act = self.activity_loss()
        if act is not None:
            loss = loss + act
        reg = self.penalty_loss()
        if reg is not None:
            loss = loss + reg
        return out, loss

    def train_step(self, xb, yb):
        if self.compiled:  # (only the batch size varies: see _batch_dynamic)
            _batch_dynamic(xb, yb)
        out, loss = self._objective(xb, yb)
        self.opt.zero_grad()
        if self.loss_scale is None:
            loss.backward()
            self.opt.step()
            stepped = True
        else:
            stepped = self.loss_scale.step(loss, self.opt)
        if stepped:
            for tensor, constraint in self.constraints:
                constraint(tensor)
        self.step.advance()
        return out, loss

    def train_epoch(self, x, y, perm: np.ndarray, batch_size: int, progress=None):
        """Steps over the batches of `perm`: (per-step losses, metric statistics, batch sizes) as numpy."""
        self.net.train()
        perm_t, steps, losses, stats, sizes = epoch_buffers(x, perm, batch_size, self.stats_shape)
        graph = self._step_graph(x, y, batch_size)
        last = time.perf_counter()
        for i in range(steps):
            idx = perm_t[i * batch_size:(i + 1) * batch_size]
            if graph is not None and graph.ready(len(idx)):
                loss, step_stats = graph.step(idx)
                with torch.no_grad():
                    losses[i] = loss
                    stats += step_stats
            elif graph is not None:
                with graph.warming(len(idx)):  # (a warm-up step, on the stream the capture will use)
                    self._eager_step(x[idx], y, idx, losses, stats, i)
            else:  # (features on the host, marked `on_host`, are asked for by the order's numpy rows: no read
                # back from a GPU)
                xb = x[perm[i * batch_size:(i + 1) * batch_size]] if getattr(x, "on_host", False) else x[idx]
                self._eager_step(xb, y, idx, losses, stats, i)
            if progress is not None and time.perf_counter() - last > 0.2:
                progress(i + 1, steps, self._peek(losses, stats, i + 1))
                last = time.perf_counter()
        if progress is not None:
            progress(steps, steps, self._peek(losses, stats, steps))
        return losses.cpu().double().numpy(), stats.cpu().double().numpy(), sizes

    def _eager_step(self, xb, y, idx, losses, stats, i: int) -> None:
        yb = y[idx]
        out, loss = self.train_step(xb, yb)
        with torch.no_grad():
            losses[i] = loss.detach()
            stats += self.stats(out.detach(), yb)

    def _step_graph(self, x, y, batch_size: int):
        """The graph of this data's full batches (graphs.StepGraph), made on first use; None without one."""
        if self.graph_steps is None:
            return None
        if self.graph is None or not self.graph.serves(x, y, batch_size):
            self.graph = self.graph_steps(self, x, y, batch_size)
        return self.graph

    @staticmethod
    def _peek(losses, stats, done: int):
        """The step losses and metric statistics of the first `done` steps, read when asked (the display's
        running values)."""
        return lambda: (losses[:done].cpu().double().numpy(), stats.cpu().double().numpy())

    @torch.no_grad()
    def evaluate(self, x, y, batch_size: int):
        """(mean loss + penalties, metric statistics) in inference mode."""
        self.net.eval()
        total = torch.zeros((), dtype=x.dtype, device=x.device)
        stats = torch.zeros(self.stats_shape, dtype=x.dtype, device=x.device)
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            out = self.forward(xb)
            act = self.activity_loss()
            loss = self.loss(out, yb)
            total += (loss if act is None else loss + act) * len(xb)
            stats += self.stats(out, yb)
        loss = float(total) / len(x)
        reg = self.penalty_loss()
        if reg is not None:
            loss += float(reg)
        return loss, stats.cpu().double().numpy()


def _batch_dynamic(*tensors) -> None:
    """A compiled step's inputs: their batch axis dynamic (the last batch of an epoch is smaller: one graph
    for every batch size), their other sizes static. torch.compile(dynamic=True) made every size symbolic,
    and inductor then failed to order the strides of a convolution's NHWC activations seen as NCHW ("cannot
    determine truth value of Relational: 1 < s97": a Conv2D with padding=valid, or a 1x1 one, or a
    DepthwiseConv2D, reading the model's input or a residual branch) wherever two strides compare only
    through the image's symbolic sizes; with the sizes known they compare. (maybe_: a batch of one stays
    specialised rather than failing.)"""
    for t in tensors:
        torch._dynamo.maybe_mark_dynamic(t, 0)


def epoch_buffers(x, perm: np.ndarray, batch_size: int, stats_shape):
    """An epoch's order on the device, its step count, the device buffers its step losses and metric
    statistics accumulate in, and its batch sizes (the last one short)."""
    sizes = batch_sizes(len(perm), batch_size)
    steps = len(sizes)
    perm_t = torch.as_tensor(perm, dtype=torch.int64).to(x.device)
    losses = torch.zeros(steps, dtype=x.dtype, device=x.device)
    stats = torch.zeros(stats_shape, dtype=x.dtype, device=x.device)
    return perm_t, steps, losses, stats, sizes


def to_tensors(x: np.ndarray, y: np.ndarray, dtype, device=None):
    """Features in the float dtype; integer labels as int64 (sparse crossentropy), other targets as floats."""
    xt = torch.as_tensor(x, dtype=dtype).to(device)
    yt = torch.as_tensor(y).to(device)
    return xt, (yt.long() if yt.dtype in (torch.int64, torch.int32) else yt.to(dtype))


def layer_modules(net) -> dict:
    """Layer name -> module, residual bodies included (the network's submodules are named as the layers)."""
    return {path.split(".")[-1]: m for path, m in net.named_modules() if path}


def weight_tensor(module, wname: str):
    """The parameter or buffer holding weight `wname` (named as the IR's weight, in Keras' layout)."""
    obj = module
    for part in wname.split("/"):
        obj = getattr(obj, part)
    return obj


def set_weights(net, weights: dict) -> None:
    """Copy {layer: {weight: array}} (Keras layouts) into the network."""
    layers = layer_modules(net)
    with torch.no_grad():
        for lname, ws in weights.items():
            for wname, arr in ws.items():
                weight_tensor(layers[lname], wname).copy_(torch.as_tensor(np.ascontiguousarray(arr)))


def get_weights(net, names: dict, native: bool = False) -> dict:
    """{layer: {weight: float64 array}} for `names` = {layer: [weight, ...]}; `native`: in the weights' own
    dtype (a checkpoint: a float32 run's in float64 were twice the file and its write time)."""
    layers = layer_modules(net)

    def array(t):
        t = t.detach().cpu()
        return (t if native else t.double()).numpy().copy()

    return {lname: {w: array(weight_tensor(layers[lname], w)) for w in ws} for lname, ws in names.items()}
