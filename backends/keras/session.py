"""A trainable Keras model for one spec: each IR node lowered through the registry (lower.py) and evaluated
against library.py; the training steps are library.Trainer's, this class adds what needs the IR (building,
saving, checkpoints)."""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from pathlib import Path

from . import quiet  # noqa: F401  (imports TensorFlow with its start-up notices silenced)

# isort: split
import keras
import numpy as np
import tensorflow as tf

from dlc.backends import lowering as lw
from dlc.backends.network import network_expr
from dlc.backends.session import BatchReader, DeviceUnavailable, check_device_name
from dlc.compiler.checks import precision_conflict
from dlc.compiler.checkshared import final_activation, fused_output
from dlc.compiler.spec import Spec
from dlc.compiler.training import LOSS_SCALE
from dlc.reference.evidence import probe_layers
from dlc.reference.metrics import stats_size
from dlc.reference.weights import flatten, unflatten

from . import library
from .library import Trainer
from .probe import Prober

TARGET = "keras"
LOAD_HINT = "import dlc.backends.keras.library; keras.saving.load_model('model.keras')"
lw.load_target(TARGET)  # registers backends/keras/lower.py's lowerings


def check_device(device: str | None, processes: int = 1) -> None:
    """ValueError for a name that is no device; RuntimeError (one line, worded as torch's) for a GPU: dlc's
    keras backend does not place a model on one (the processes share the CPU)."""
    check_device_name("auto" if device is None else device)
    if device not in ("auto", "cpu", None):
        raise DeviceUnavailable(device, f"{_why_no_gpu()}; use --backend torch for CUDA")


def _why_no_gpu() -> str:
    """Why keras does not take a GPU by name: TensorFlow sees none here, or (a GPU build that sees one) dlc
    leaves the placement to TensorFlow."""
    if not tf.config.list_physical_devices("GPU"):
        return "the keras backend trains on the CPU here (TensorFlow sees no GPU)"
    return "the keras backend does not choose a device (TensorFlow places the model itself: --device auto)"


# the Session calls that run the model's graphs
GRAPH_CALLS = ("train_epoch", "evaluate", "predict", "probe")


def placement(device: str) -> tuple[str, str | None]:
    """(what the run records as its device, the TensorFlow device to pin the model and its graphs to, or None
    to leave TensorFlow its placement). A TensorFlow that sees a GPU places the model on it by itself, so on
    such a build `--device cpu` must pin the model to the CPU, and `auto` is recorded as the GPU it takes;
    without a GPU both are the CPU."""
    if not tf.config.list_physical_devices("GPU"):
        return "cpu", None
    if device == "cpu":
        return "cpu", "/CPU:0"
    return "gpu:0 (TensorFlow's placement)", None


def _pinned(call, where: str):
    """`call` run under tf.device(where): a tf.function traced inside places its ops there."""
    @functools.wraps(call)
    def placed(*args, **kwargs):
        with tf.device(where):
            return call(*args, **kwargs)
    return placed


@contextlib.contextmanager
def cpu_float16_fusion_off():
    """Mixed precision: TensorFlow's graph optimizer fuses MatMul + BiasAdd + activation ("remapping"), and on
    the CPU its 16-bit fused kernels are slow beyond reason (a Dense(2048) network's predict on 64 rows: 11.7
    s, 0.16 s without it, 0.02 s called directly). The option is the process's, and a float32 model's fused
    elu, tanh or sigmoid round differently from the unfused ops (8 of 110 fixtures, 1 ulp), so it is off only
    while a mixed session's graphs run, and put back after."""
    before = tf.config.optimizer.get_experimental_options().get("remapping", True)
    tf.config.optimizer.set_experimental_options({"remapping": False})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"remapping": before})


def _without_fusion(call):
    """`call` run under cpu_float16_fusion_off."""
    @functools.wraps(call)
    def unfused(*args, **kwargs):
        with cpu_float16_fusion_off():
            return call(*args, **kwargs)
    return unfused


def limit_threads(threads: int) -> None:
    """TensorFlow's thread pools (only before its first op; later calls are ignored, as they must be)."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
    except RuntimeError:
        pass


def namespace(dtype: str, step) -> dict:
    """What lowered expressions may name: library.py's top level (keras, tf, np, math, partial included), the
    float dtype and the dropout step variable."""
    return {**vars(library), "DTYPE": dtype, "step": step}


def _torch_archive(path: Path) -> bool:
    """Whether `path` is a zip as torch.save writes them (every entry in one folder, a data.pkl in it)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any(name.endswith("/data.pkl") for name in names) and all("/" in name for name in names)


class HostBatches:
    """Features read on the host a batch at a time (an npy source's rows, dlc.runtime.data.StreamedRows:
    `rows[indices]` and `rows[a:b]` give normalised numpy rows), each batch a tensor in `dtype`. The
    Trainer reads them by their `on_host` mark (it knows no HostBatches: emitted scripts never stream)."""

    on_host = True

    def __init__(self, rows, dtype: str):
        self.rows, self.np_dtype = rows, np.dtype(dtype)
        self.dtype = tf.as_dtype(self.np_dtype)
        self.reader = BatchReader(rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.rows.shape)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        return tf.constant(np.asarray(self.reader.read(key), dtype=self.np_dtype))


# Python frames Keras takes per layer to build a functional model: keras.src.ops.function's
# _build_map_helper recurses from the output through every node (a chain of 2,000 Dense layers needs about
# 2,000 frames; residual blocks add their Add layers), so a spec of 1,000 layers or more failed with "maximum
# recursion depth exceeded" on keras (torch builds no such graph). dlc allows 10,000 layers.
FRAMES_PER_LAYER = 4


def allow_deep_models(layers: int) -> None:
    """Raise Python's recursion limit (never lower it) so that Keras can build a model of `layers` layers
    (its Python-to-Python recursion takes no C stack in Python 3.11 and later)."""
    need = FRAMES_PER_LAYER * layers + 2000
    if sys.getrecursionlimit() < need:
        sys.setrecursionlimit(need)


class Session(Trainer):
    name = "keras"

    # the step is always one tf.function; XLA (jit_compile) was measured to change dlc's results
    compile_refusal = ("--compile is torch.compile, for --backend torch: the keras step is already one "
                       "compiled tf.function (XLA's jit_compile changes dlc's results, so it is not offered)")

    def __init__(self, spec: Spec, dtype: str | None = None, device: str = "auto", weights=None,
                 compile: bool = False):
        if compile:
            raise ValueError(self.compile_refusal)
        check_device(device)
        self.spec = spec
        problem = precision_conflict(spec, dtype)
        if problem:
            raise ValueError(problem)
        dtype = dtype or spec.dtype
        keras.config.set_floatx(dtype)  # optimizer constants and lr variables follow floatx
        self.final = final_activation(spec)
        output = fused_output(spec)
        recorded, pin = placement(device)
        with tf.device(pin) if pin else contextlib.nullcontext():
            step = tf.Variable(0, dtype=tf.int64, trainable=False)
        # mixed precision: the layers get Keras' mixed dtype policy (float32 variables, 16-bit compute); the
        # data, the loss, the metric statistics and the optimizer stay in float32
        ns = namespace(spec.train.precision if spec.train.mixed else dtype, step)
        ctx = lw.Context(TARGET, spec)
        layers = lw.evaluate(network_expr(spec, TARGET, container="network"), ns)
        optimizer = lw.evaluate(ctx.lower(spec.optimizer), ns)
        if spec.train.precision == "mixed_float16":  # dynamic loss scaling, Keras' own
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=LOSS_SCALE.initial_scale,
                                                            dynamic_growth_steps=LOSS_SCALE.growth_steps)
        loss = lw.evaluate(ctx.lower(spec.loss), ns)
        task = spec.task
        shapes = {i.layer.name: {w.name: tuple(w.shape) for w in i.weights} for i in spec.walk() if i.weights}
        allow_deep_models(sum(1 for _ in spec.walk()))
        n_stats = stats_size(task, spec.output_shape()[-1], [m.name for m in spec.metrics])
        with tf.device(pin) if pin else contextlib.nullcontext():  # (the variables are made here)
            super().__init__(layers, spec.input, optimizer, loss, task=task, n_stats=n_stats,
                             weight_shapes=shapes, step=step, output=output, dtype=dtype, name=spec.name)
        self.device_name = recorded
        if pin:  # (the data's tensors as well, made by load_data)
            for name in ("load_data", *GRAPH_CALLS):
                setattr(self, name, _pinned(getattr(self, name), pin))
        if spec.train.mixed and recorded == "cpu":
            for name in GRAPH_CALLS:
                setattr(self, name, _without_fusion(getattr(self, name)))
        if weights is not None:
            self.set_weights(weights)

    def load_data(self, x: np.ndarray, y: np.ndarray):
        """Trainer.load_data; streamed features (an npy source) stay on the host, read a batch at a time."""
        if getattr(x, "streamed", False):
            return HostBatches(x, self.dtype), super().load_data(x[:0], y)[1]
        return super().load_data(x, y)

    def probe(self, x: np.ndarray, y: np.ndarray) -> dict[str, dict[str, float | None]]:
        """The training evidence's per-layer numbers on (x, y) in inference mode (backends/keras/probe.py)."""
        if getattr(self, "_prober", None) is None:
            self._prober = Prober(self.train_model, self.variables, self.loss_fn, probe_layers(self.spec),
                                  self.spec.train.epochs)
        return self._prober(*self.load_data(x, y))

    # ------------------------------------------------------------------------------------------- files

    def save(self, directory: Path) -> list[str]:
        directory = Path(directory)
        self.model.save(directory / "model.keras")
        (directory / "model.json").write_text(json.dumps(
            {"backend": "keras", "format": "keras", "file": "model.keras", "dtype": self.dtype,
             "precision": self.spec.train.precision,
             "load": LOAD_HINT},
            indent=2))
        return ["model.keras", "model.json"]

    def load(self, directory: Path):
        """model.keras's weights into this session's model, which was built from the run's IR: only the
        weights are read (Keras' load_weights on a .keras archive), never the saved architecture, so nothing
        of the saved config is deserialized (no custom object to find, no lambda refused) and the model is
        exactly the lowering that trained. A file of another architecture is a ValueError."""
        path = Path(directory) / "model.keras"
        try:
            self.model.load_weights(path)
        except ValueError as e:
            why = str(e).strip().splitlines()[0].split(" Example error message")[0] if str(e).strip() else ""
            raise ValueError(f"model.keras does not hold the weights of ir.json's model ({why})") from None
        except KeyError:  # a zip without model.weights.h5: torch's archive, not Keras'
            if not _torch_archive(path):
                raise
            raise ValueError("model.keras is not a Keras model file (a PyTorch model.pt?)") from None

    # ------------------------------------------------------------------------------------- checkpoints

    def _optimizer_variables(self) -> list:
        """The optimizer's state: its variables, then any variable of the optimizer a LossScaleOptimizer
        (mixed_float16) wraps that neither lists. Keras' Nadam keeps its momentum-cache product `_u_product`
        in a variable of its own, which Nadam.variables holds, but which a Nadam built by a LossScaleOptimizer
        does not track: left out of the checkpoint, it restarted at 1 on --resume (the resumed run's losses
        differed from the first resumed epoch on)."""
        found = list(self.opt.variables)
        inner = getattr(self.opt, "inner_optimizer", None)
        if inner is not None:
            seen = {id(v) for v in found}
            for v in list(inner.variables) + list(vars(inner).values()):
                if isinstance(v, keras.Variable) and id(v) not in seen:
                    seen.add(id(v))
                    found.append(v)
        return found

    def get_state(self) -> dict[str, np.ndarray]:
        """Weights, optimizer variables (slots, iterations, lr), the dropout step: a checkpoint's content."""
        out = flatten(self.get_weights(native=True), "w/")
        for i, v in enumerate(self._optimizer_variables()):
            out[f"opt/{i}"] = np.array(v.numpy(), copy=True)
        out["step"] = np.array(int(self.step_var.numpy()))
        return out

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.set_weights(unflatten(state, "w/"))
        for i, v in enumerate(self._optimizer_variables()):
            if f"opt/{i}" in state or i < len(self.opt.variables):  # (a checkpoint written before the
                v.assign(state[f"opt/{i}"])                          # inner optimizer's were kept)
        self.step_var.assign(int(state["step"]))
