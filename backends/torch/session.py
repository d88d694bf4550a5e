"""A trainable torch model for one spec: data kept on the device, losses and metric statistics accumulated on
the device and read once per epoch (or per progress refresh)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from dlc.backends.lowering import Context, evaluate
from dlc.backends.network import network_expr
from dlc.backends.session import BatchReader, DeviceUnavailable, check_device_name
from dlc.compiler.checks import precision_conflict
from dlc.compiler.checkshared import final_activation, fused_output
from dlc.compiler.layers import Bidirectional
from dlc.compiler.spec import Spec
from dlc.compiler.training import LOSS_SCALE
from dlc.reference.evidence import probe_layers
from dlc.reference.weights import flatten, unflatten

from . import graphs, library, memory
from . import lower as TL
from . import threads as governor
from .eager import disable_registered
from .layers import StepCounter
from .probe import Prober
from .training import (
    DynamicLossScale,
    Trainer,
    get_weights,
    layer_modules,
    set_weights,
    to_tensors,
    weight_tensor,
)

DTYPES = {"float32": torch.float32, "float64": torch.float64}
COMPUTE_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}  # train { precision: mixed_... }
LOAD_HINT = ("dlc.backends.torch.session.Session(spec).net.load_state_dict("
             "torch.load('model.pt', weights_only=True))")


def _foreign_archive(path: Path) -> str | None:
    """What a model.pt that torch cannot read is, when it is a zip archive but not torch's (whose files are
    all in one folder): a Keras .keras archive, or another zip; None otherwise."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
    except (OSError, zipfile.BadZipFile):
        return None
    if {"metadata.json", "config.json"} <= names:
        return "a Keras .keras archive?"
    if any("/" not in name for name in names):
        return "a zip archive of other files"
    return None


def pick_device(device: str | None, processes: int | None = None) -> torch.device:
    """The torch device for one of dlc's device names (ValueError for another); RuntimeError, one line, for a
    GPU PyTorch does not see, or one GPU named for several data-parallel processes (`processes`; None: this
    process's group, when it has joined one): never the CPU instead of a GPU asked for."""
    if device is None:
        device = "auto"
    check_device_name(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    # cuda[:N], N read here: torch's parser refuses "cuda:007" and an index beyond an int in its own words
    index = int(device.partition(":")[2]) if ":" in device else None
    _require_gpu(device, index)
    _one_gpu_each(device, index, _group_size() if processes is None else processes)
    return torch.device("cuda") if index is None else torch.device("cuda", index)


def _group_size() -> int:
    """The processes of this one's data-parallel group (1 outside one)."""
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _one_gpu_each(device: str, index: int | None, processes: int) -> None:
    """RuntimeError for cuda:N with several data-parallel processes: process r trains on GPU r
    (distributed.start pins it), and a GPU named would put them all on that one (NCCL refuses two ranks on
    one GPU, in every worker)."""
    if index is not None and processes > 1:
        raise RuntimeError(f"--device {device} names one GPU, and the {processes} data-parallel processes "
                           "train on a GPU each (process r on cuda:r): use --device cuda")


def _require_gpu(device: str, index: int | None) -> None:
    """DeviceUnavailable when PyTorch sees no GPU, or not GPU `index` (torch's own error for cuda:5 on a
    machine of one GPU came at the first tensor moved: "CUDA error: invalid device ordinal", with no device
    named)."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise DeviceUnavailable(device, f"PyTorch sees no CUDA device{_hidden_gpus()}")
    if index is not None and index >= count:
        seen = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
        raise DeviceUnavailable(device, f"PyTorch sees {count} CUDA device{'s' if count > 1 else ''} "
                                        f"({seen}){_hidden_gpus()}")


def _hidden_gpus() -> str:
    """CUDA_VISIBLE_DEVICES, where it is set: what chooses the GPUs PyTorch sees (an empty one hides all).
    Not said by a PyTorch built without CUDA (`+cpu`), which sees no GPU whatever it says."""
    shown = os.environ.get("CUDA_VISIBLE_DEVICES")
    if shown is None or torch.version.cuda is None:
        return ""
    if not shown.strip():
        return " (CUDA_VISIBLE_DEVICES is empty, which hides every GPU)"
    return f" (CUDA_VISIBLE_DEVICES={shown!r} chooses the GPUs it sees)"


# the share of a GPU's free memory the features may take on it; above it they stay on the host, in batches
RESIDENT_SHARE = 0.5


def fits_on_device(device: torch.device, nbytes: int) -> bool:
    """Whether features of `nbytes` are kept on `device` (always on the CPU, where they already are), leaving
    the rest of the GPU's free memory to the model, its activations and the optimizer."""
    if device.type != "cuda":
        return True
    free, _total = torch.cuda.mem_get_info(device)
    return nbytes <= RESIDENT_SHARE * free


def _nbytes(x: np.ndarray, dtype: torch.dtype) -> int:
    return int(np.prod(x.shape)) * dtype.itemsize


class HostBatches:
    """Features read on the host a batch at a time (an npy source's rows, dlc.runtime.data.StreamedRows, or
    an array too big for the GPU: `rows[indices]` and `rows[a:b]` give normalised numpy rows), each batch a
    tensor on the device: `x[idx]` (an index tensor, as train_epoch takes a batch of its order) and `x[a:b]`
    (evaluate). On CUDA each batch is put in pinned memory by the reading thread, so its copy to the device
    runs asynchronously, behind the step before it. The Trainer reads them by their `on_host` mark (it
    knows no HostBatches: emitted scripts never stream)."""

    on_host = True

    def __init__(self, rows, dtype, device=None):
        self.rows, self.dtype = rows, dtype
        self.device = torch.device(device if device is not None else "cpu")
        self.reader = BatchReader(_HostTensors(rows, dtype, pin=self.device.type == "cuda"))

    def __len__(self) -> int:
        return len(self.rows)

    def plan(self, perm: np.ndarray, batch_size: int) -> None:
        """The epoch's order: each batch is read while the one before it trains."""
        self.reader.plan(perm, batch_size)

    def __getitem__(self, key):
        if isinstance(key, torch.Tensor):
            key = key.cpu().numpy()  # (a read back from the GPU: train_epoch passes numpy rows instead)
        return self.reader.read(key).to(device=self.device, non_blocking=self.device.type == "cuda")


class _HostTensors:
    """`rows[key]` as a host tensor in the run's dtype, pinned where `pin` (made in the reader's thread)."""

    def __init__(self, rows, dtype, pin: bool):
        self.rows, self.dtype, self.pin = rows, dtype, pin

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key) -> torch.Tensor:
        batch = torch.from_numpy(np.ascontiguousarray(self.rows[key])).to(self.dtype)
        return batch.pin_memory() if self.pin else batch


def check_device(device: str, processes: int = 1) -> None:
    """RuntimeError (one line) when `device` cannot be used here, or when `processes` data-parallel
    processes (each on its own GPU, process r on GPU r: distributed.start) need more GPUs than there are."""
    picked = pick_device(device, processes)
    if picked.type == "cuda" and processes > (count := torch.cuda.device_count()):
        raise RuntimeError(f"{processes} data-parallel processes train on a GPU each, and PyTorch sees "
                           f"{count}: use at most {count} processes, or --device cpu")


def limit_threads(threads: int) -> None:
    torch.set_num_threads(threads)


def _pick_cpu_threads(spec: Spec) -> governor.Governor | None:
    """One thread for small models (lower.one_thread_is_faster); bigger ones start at one and use more only
    while other processes leave cores idle (backends/torch/threads.py; not where /proc/stat cannot be read,
    or with DLC_THREAD_GOVERNOR=0). OMP_NUM_THREADS, when set, always wins."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    if TL.one_thread_is_faster(spec):
        torch.set_num_threads(1)
        return None
    if os.environ.get("DLC_THREAD_GOVERNOR", "1") == "0":
        return None
    return governor.start(torch.get_num_threads(), torch.set_num_threads)


class Session:
    name = "torch"
    compile_refusal = None  # compile=True: torch.compile of the step's forward, loss and backward (Trainer)

    def __init__(self, spec: Spec, dtype: str | None = None, device: str = "auto", weights=None,
                 compile: bool = False):
        self.spec = spec
        self.dtype = DTYPES[dtype or spec.dtype]
        problem = precision_conflict(spec, dtype)
        if problem:
            raise ValueError(problem)
        self.device = pick_device(device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False  # TF32 changes results (EQUIVALENCE.md)
            torch.backends.cudnn.allow_tf32 = False
        self.task = spec.task
        self.final = final_activation(spec)
        self.fused = fused_output(spec) is not None
        self.counter = StepCounter(self.device)
        ns = library.namespace(step=self.counter)
        self.net = evaluate(network_expr(spec, "torch"), ns).to(device=self.device, dtype=self.dtype)
        self.layers = layer_modules(self.net)
        if weights is not None:
            self.set_weights(weights)
        ctx = Context("torch", spec)
        stats, stats_shape = TL.metric_stats(spec, fused_output(spec))
        self.opt = evaluate(ctx.lower(spec.optimizer), ns)(list(self.net.parameters()))
        compute = spec.train.compute_dtype
        if compile:  # (the functions that run eagerly inside a compiled step: eager.py)
            disable_registered()
            # dynamo keeps 8 compiled entries per function, one per Trainer: a notebook's 9th compiled model
            # ran eagerly without a word. Each compiled session starts afresh (an earlier one trained again
            # compiles again: the same numbers)
            torch.compiler.reset()
        self.trainer = Trainer(self.net, evaluate(ctx.lower(spec.loss), ns), self.opt, evaluate(stats, ns),
                               stats_shape, self.counter, *self._regularization(ctx, ns),
                               compute_dtype=COMPUTE_DTYPES[compute] if compute else None,
                               loss_scale=DynamicLossScale(LOSS_SCALE.initial_scale, LOSS_SCALE.growth_steps)
                               if compute == "float16" else None, compiled=compile,
                               graph_steps=graphs.on_cuda if graphs.wanted(self.device) else None)
        self.governor = _pick_cpu_threads(spec) if self.device.type == "cpu" else None
        if self.device.type == "cpu":
            memory.keep_freed_memory()  # (a step's activations reused, not faulted in afresh: memory.py)
        self.device_name = str(self.device) + (f" ({torch.cuda.get_device_name(self.device)})"
                                               if self.device.type == "cuda" else "")
        if compile:
            self.device_name += ", torch.compile"
        if self.trainer.graph_steps is not None:
            self.device_name += ", CUDA graphs"

    def _regularization(self, ctx: Context, ns: dict) -> tuple[list, list, list]:
        """(penalties, activity, constraints) for the Trainer, lowered from the layers' weight specs."""
        penalties, activity, constraints = [], [], []
        for info in self.spec.walk():
            module = self.layers[info.layer.name]
            for w in info.weights:
                if w.regularizer is not None:
                    penalties.append((weight_tensor(module, w.name), evaluate(ctx.lower(w.regularizer), ns)))
                if w.constraint is not None:
                    constraints.append((weight_tensor(module, w.name), evaluate(ctx.lower(w.constraint), ns)))
            reg = getattr(info.layer, "activity_reg", None)  # (Dense, Conv*, the RNNs, ...)
            if reg is not None:
                activity.append((module, evaluate(ctx.lower(reg), ns)))
            # Bidirectional: each direction's output, as Keras
            if isinstance(info.layer, Bidirectional) and info.layer.layer.activity_reg is not None:
                term = evaluate(ctx.lower(info.layer.layer.activity_reg), ns)
                activity += [(module.forward_layer, term), (module.backward_layer, term)]
        return penalties, activity, constraints

    # ------------------------------------------------------------------------------------------ weights

    def set_weights(self, weights):
        set_weights(self.net, weights)

    def get_weights(self, native: bool = False):
        return get_weights(self.net,
                           {i.layer.name: [w.name for w in i.weights] for i in self.spec.walk() if i.weights},
                           native)

    # ---------------------------------------------------------------------------------------- training

    def load_data(self, x: np.ndarray, y: np.ndarray):
        """The data on the device, or its features read a batch at a time from the host (HostBatches): an npy
        source's streamed rows, or an array that would take more than half the GPU's free memory."""
        if getattr(x, "streamed", False) or not fits_on_device(self.device, _nbytes(x, self.dtype)):
            return HostBatches(x, self.dtype, self.device), to_tensors(x[:0], y, self.dtype, self.device)[1]
        return to_tensors(x, y, self.dtype, self.device)

    def set_lr(self, lr: float):
        self.opt.lr = float(lr)

    def train_epoch(self, handle, perm: np.ndarray, batch_size: int, progress=None):
        if self.governor is not None:
            progress = self.governor.wrap(progress)
        x, y = handle
        if isinstance(x, HostBatches):  # streamed features: each batch read ahead, in a thread
            x.plan(perm, batch_size)
        return self.trainer.train_epoch(x, y, perm, batch_size, progress)

    def evaluate(self, handle, batch_size: int):
        x, y = handle
        return self.trainer.evaluate(x, y, batch_size)

    def probe(self, x: np.ndarray, y: np.ndarray) -> dict[str, dict[str, float | None]]:
        """The training evidence's per-layer numbers on (x, y) in inference mode (backends/torch/probe.py)."""
        if getattr(self, "_prober", None) is None:
            self._prober = Prober(self.net, self.layers, self.trainer.loss, probe_layers(self.spec),
                                  self.trainer)
        return self._prober(*self.load_data(x, y))

    @torch.no_grad()
    def predict(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        self.net.eval()
        outs = []
        for i in range(0, len(x), batch_size):
            out = self.trainer.forward(torch.as_tensor(x[i:i + batch_size], dtype=self.dtype).to(self.device))
            if self.fused:
                out = torch.softmax(out, -1) if self.final == "softmax" else torch.sigmoid(out)
            outs.append(out.cpu().double().numpy())
        return np.concatenate(outs)

    def save(self, directory: Path) -> list[str]:
        directory = Path(directory)
        torch.save(self.net.state_dict(), directory / "model.pt")
        (directory / "model.json").write_text(json.dumps(
            {"backend": "torch", "format": "state_dict", "file": "model.pt", "dtype": str(self.dtype),
             "precision": self.spec.train.precision,
             "load": LOAD_HINT,
             "fused_output_activation": self.final if self.fused else None}, indent=2))
        return ["model.pt", "model.json"]

    def load(self, directory: Path):
        """model.pt's state_dict, read with weights_only=True: tensors only, never pickled code. A zip of
        another kind (a Keras archive saved or copied as model.pt) is named, not torch's archive internals."""
        path = Path(directory) / "model.pt"
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except RuntimeError:
            kind = _foreign_archive(path)
            if kind is None:
                raise
            raise ValueError(f"model.pt is not a PyTorch model file ({kind})") from None
        self.net.load_state_dict(state)

    # ------------------------------------------------------------------------------------- checkpoints

    def get_state(self) -> dict[str, np.ndarray]:
        """Weights, optimizer slots and counters: what a checkpoint holds to resume bit for bit (each in the
        run's own dtype)."""
        out = flatten(self.get_weights(native=True), "w/")
        out["opt/iterations"] = np.array(self.opt.iterations)
        out["opt/lr"] = np.array(self.opt.lr)
        for name, t in self.opt.counters().items():
            out[f"opt/{name}"] = t.detach().cpu().numpy().copy()
        for i, st in enumerate(self.opt.state):
            for k, t in st.items():
                out[f"opt/{i}/{k}"] = t.detach().cpu().numpy().copy()
        out["step"] = np.array(self.counter.value)
        scale = self.trainer.loss_scale
        if scale is not None:  # mixed_float16
            out["loss_scale/scale"] = np.array(scale.scale)
            out["loss_scale/good_steps"] = np.array(scale.good_steps)
        return out

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.set_weights(unflatten(state, "w/"))
        self.opt.iterations = int(state["opt/iterations"])
        self.opt.lr = float(state["opt/lr"])
        with torch.no_grad():
            for i, st in enumerate(self.opt.state):
                for k, t in st.items():
                    t.copy_(torch.as_tensor(state[f"opt/{i}/{k}"]))
            for name, t in self.opt.counters().items():
                if f"opt/{name}" in state:  # (checkpoints before 2026-11-30 lack Nadam's u_product)
                    t.copy_(torch.as_tensor(state[f"opt/{name}"]))
        self.counter.set(int(state["step"]))
        scale = self.trainer.loss_scale
        if scale is not None and "loss_scale/scale" in state:
            scale.scale = float(state["loss_scale/scale"])
            scale.good_steps = int(state["loss_scale/good_steps"])
