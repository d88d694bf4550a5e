"""`precision:` in train { }: mixed_bfloat16 / mixed_float16 compute the layers in 16 bits with float32
weights on both backends (outside the equivalence contract). Checked here: the setting and its errors, that
the layers really compute in 16 bits while the weights stay float32, that digits still trains to the float32
run's accuracy, dynamic loss scaling (float16) with its checkpoint state, and what compare, emit and run
say."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dlc.compiler import compile_text

from conftest import ROOT, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DIGITS = (ROOT / "specs" / "digits_mlp.dlspec").read_text()

# small and fast: dropout (dlc's hash masks), an l2 kernel penalty, an activity penalty and BatchNorm all run
# under the mixed policies
SMALL = """
model small {
  seed: 3
  data {
    source: digits
    normalize: standard
    split: holdout(val=0.2, test=0.2, stratify=true)
  }
  input: (64)
  layers {
    Dense(32, activation=relu, kernel_reg=l2(1e-4), activity_reg=l1(1e-5))
    BatchNorm()
    Dropout(0.2)
    Dense(10, activation=softmax)
  }
  loss: categorical_crossentropy
  metrics: [accuracy, precision]
  optimizer: Adam(lr=0.003)
  train {
    epochs: 2
    batch_size: 64
    precision: PRECISION
  }
}
"""


def _with_precision(text: str, precision: str) -> str:
    if "precision: PRECISION" in text:
        return text.replace("PRECISION", precision)
    return text.replace("    batch_size: 128\n", f"    batch_size: 128\n    precision: {precision}\n")


def _spec(text: str):
    return compile_text(text, base_dir=ROOT).raise_for_errors()


def _write(tmp_path: Path, text: str, name: str = "spec.dlspec") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def _train(spec, backend: str, epochs: int | None = None, weights=None):
    """(session, history, final metrics) of `spec` trained on `backend` from dlc's initial weights."""
    from dlc.backends import session_class
    from dlc.reference.weights import initial_weights
    from dlc.runtime.data import prepare
    from dlc.runtime.loop import train
    from dlc.runtime.run import final_metrics

    data = prepare(spec, ROOT)
    session = session_class(backend)(spec, device="cpu", weights=weights or initial_weights(spec))
    hist = train(session, spec, data, epochs=epochs)
    return session, hist, final_metrics(session, spec, data)


# ------------------------------------------------------------------------------------------- the setting


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_check_accepts_each_precision(precision):
    spec = _spec(_with_precision(DIGITS, precision))
    assert spec.train.precision == precision
    assert spec.train.mixed == (precision != "float32")
    assert _spec(DIGITS).train.precision == "float32"  # the default


def test_the_metric_named_precision_is_still_a_metric():
    spec = _spec(SMALL.replace("PRECISION", "mixed_bfloat16"))
    assert [m.name for m in spec.metrics] == ["accuracy", "precision"]
    assert spec.train.precision == "mixed_bfloat16"


def test_a_misspelt_precision_is_a_positioned_error_with_the_nearest_name(tmp_path):
    path = _write(tmp_path, _with_precision(DIGITS, "mixed_bf16"))
    rc, _, err = run_cli("check", path)
    assert rc == 2
    assert "error[E201]: invalid value for 'precision' of train" in err
    assert f"{path}:{_line_of(path, 'precision:')}:16" in err
    assert "did you mean 'mixed_bfloat16'? (expected 'float32', 'mixed_bfloat16' or 'mixed_float16')" in err


def test_float64_with_mixed_precision_is_an_error(tmp_path):
    # in the spec: a spec error at the precision setting
    path = _write(tmp_path, _with_precision(DIGITS, "mixed_bfloat16").replace("  seed: 42\n",
                                                                            "  seed: 42\n  dtype: float64\n"))
    rc, _, err = run_cli("check", path)
    assert rc == 2
    assert "error[E305]: precision: mixed_bfloat16 computes in bfloat16 with float32 weights; it cannot " \
           "train in float64" in err
    assert f"{path}:{_line_of(path, 'precision:')}:16" in err
    # on the command line: the same, before any run directory is made
    path = _write(tmp_path, _with_precision(DIGITS, "mixed_float16"), "cli.dlspec")
    rc, _, err = run_cli("run", path, "--dtype", "float64", "--out", tmp_path / "run")
    assert rc == 2
    assert "error[E305]: --dtype float64: precision: mixed_float16 computes in float16" in err
    assert "leave out --dtype float64" in err
    assert not (tmp_path / "run").exists()


def test_emit_says_mixed_precision_is_not_supported(tmp_path):
    path = _write(tmp_path, _with_precision(DIGITS, "mixed_bfloat16"))
    for target in ("torch", "keras"):
        rc, out, err = run_cli("compile", path, "--emit", target)
        assert rc == 2 and out == ""
        assert f"--emit {target} does not support precision: mixed_bfloat16" in err


# ------------------------------------------------------------------------ 16-bit layers, float32 weights


def test_torch_layers_compute_in_16_bits_with_float32_weights():
    torch = pytest.importorskip("torch")
    from dlc.backends import session_class
    from dlc.reference.weights import initial_weights

    x = np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32)
    outs = {}
    for precision, dtype in (("float32", torch.float32), ("mixed_bfloat16", torch.bfloat16),
                             ("mixed_float16", torch.float16)):
        spec = _spec(SMALL.replace("PRECISION", precision))
        s = session_class("torch")(spec, device="cpu", weights=initial_weights(spec))
        seen = []
        s.layers["dense_0"].register_forward_hook(lambda m, i, o, seen=seen: seen.append(o.dtype))
        outs[precision] = s.predict(x)
        assert seen == [dtype]  # the hidden layer's output
        assert {p.dtype for p in s.net.parameters()} == {torch.float32}  # master weights
    for precision in ("mixed_bfloat16", "mixed_float16"):
        diff = np.abs(outs[precision] - outs["float32"]).max()
        assert 0 < diff < 0.05, (precision, diff)  # 16-bit rounding: different, not wrong


def test_keras_layers_compute_in_16_bits_with_float32_weights():
    pytest.importorskip("tensorflow")
    import keras

    from dlc.backends import session_class
    from dlc.reference.weights import initial_weights

    x = np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32)
    outs = {}
    for precision in ("float32", "mixed_bfloat16"):
        spec = _spec(SMALL.replace("PRECISION", precision))
        s = session_class("keras")(spec, device="cpu", weights=initial_weights(spec))
        dense = s.klayers["dense_0"]
        hidden = keras.Model(s.train_model.inputs, dense.output)([x])
        want = "bfloat16" if precision != "float32" else "float32"
        assert dense.compute_dtype == want and keras.backend.standardize_dtype(hidden.dtype) == want
        assert {v.dtype for v in s.train_model.trainable_variables} == {"float32"}
        assert s.train_model.outputs[0].dtype == "float32"  # the loss sees float32 logits
        outs[precision] = s.predict(x)
    diff = np.abs(outs["mixed_bfloat16"] - outs["float32"]).max()
    assert 0 < diff < 0.05, diff


# ------------------------------------------------------------------------------------------ training digits


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_digits_trains_in_mixed_bfloat16_as_well_as_in_float32(backend):
    pytest.importorskip("torch" if backend == "torch" else "tensorflow")
    finals = {}
    for precision in ("float32", "mixed_bfloat16"):
        spec = _spec(_with_precision(DIGITS, precision))
        _, hist, final = _train(spec, backend, epochs=4)
        losses = [r["loss"] for r in hist.rows]
        assert losses == sorted(losses, reverse=True) and losses[-1] < 0.6 * losses[0], losses
        finals[precision] = final["test"]["accuracy"]
    assert finals["mixed_bfloat16"] > 0.85
    assert abs(finals["mixed_bfloat16"] - finals["float32"]) < 0.03, finals


# -------------------------------------------------------------------------------------------- loss scaling


def test_torch_mixed_float16_trains_and_resumes_with_its_loss_scale():
    pytest.importorskip("torch")
    from dlc.backends import session_class
    from dlc.runtime.data import prepare

    spec = _spec(SMALL.replace("PRECISION", "mixed_float16"))
    a, hist, _ = _train(spec, "torch", epochs=2)
    assert hist.rows[-1]["loss"] < hist.rows[0]["loss"]
    state = a.get_state()
    assert float(state["loss_scale/scale"]) == 2.0**15  # no overflow in 2 epochs; growth every 2000 steps
    assert int(state["loss_scale/good_steps"]) == a.opt.iterations > 0
    # a checkpoint restores the scale with the weights: both continue with the same steps
    b = session_class("torch")(spec, device="cpu")
    b.set_state(state)
    assert (b.trainer.loss_scale.scale, b.trainer.loss_scale.good_steps) == (2.0**15, a.opt.iterations)
    data = prepare(spec, ROOT)
    perm = np.random.default_rng(1).permutation(len(data.train.x))
    la, _, _ = a.train_epoch(a.load_data(data.train.x, data.train.y), perm, 64)
    lb, _, _ = b.train_epoch(b.load_data(data.train.x, data.train.y), perm, 64)
    np.testing.assert_array_equal(la, lb)


def _overflowing_step(session) -> None:
    """One training step with a loss scale of 2^40: float16 gradients overflow."""
    from dlc.runtime.data import prepare

    data = prepare(session.spec, ROOT)
    handle = session.load_data(data.train.x[:64], data.train.y[:64])
    session.train_epoch(handle, np.arange(64), 64)


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_a_non_finite_float16_step_is_skipped_and_halves_the_scale(backend):
    pytest.importorskip("torch" if backend == "torch" else "tensorflow")
    from dlc.backends import session_class
    from dlc.reference.weights import initial_weights

    spec = _spec(SMALL.replace("PRECISION", "mixed_float16").replace("Dense(32", "Dense(8"))
    init = initial_weights(spec)
    s = session_class(backend)(spec, device="cpu", weights=init)
    if backend == "torch":
        s.trainer.loss_scale.scale = 2.0**40
    else:
        s.opt.dynamic_scale.assign(2.0**40)
    _overflowing_step(s)
    w = s.get_weights()
    for layer in ("dense_0", "dense_3"):
        for name, arr in init[layer].items():
            np.testing.assert_array_equal(w[layer][name], arr.astype(np.float32))  # the step was skipped
    iterations = s.opt.iterations if backend == "torch" else int(s.opt.iterations.numpy())
    assert (_scale(s, backend), iterations) == (2.0**39, 0)
    _overflowing_step(s)  # 2^39 still overflows; the scale keeps halving until a step fits
    assert _scale(s, backend) == 2.0**38
    # the scale is part of a checkpoint (`--resume`)
    resumed = session_class(backend)(spec, device="cpu")
    resumed.set_state(s.get_state())
    assert _scale(resumed, backend) == 2.0**38


def _scale(session, backend: str) -> float:
    if backend == "torch":
        return session.trainer.loss_scale.scale
    return float(session.opt.dynamic_scale.numpy())


# ------------------------------------------------------------------------------------- run, compare

def test_run_records_the_precision(tmp_path):
    pytest.importorskip("torch")
    path = _write(tmp_path, SMALL.replace("PRECISION", "mixed_bfloat16").replace("epochs: 2", "epochs: 1"))
    rc, _, err = run_cli("run", path, "--out", tmp_path / "run")
    assert rc == 0, err
    assert json.loads((tmp_path / "run" / "run.json").read_text())["precision"] == "mixed_bfloat16"
    assert json.loads((tmp_path / "run" / "model.json").read_text())["precision"] == "mixed_bfloat16"
    assert "small on torch (cpu, mixed_bfloat16)" in (tmp_path / "run" / "log.txt").read_text()


def test_compare_proves_the_full_precision_model_and_says_so(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    path = _write(tmp_path, SMALL.replace("PRECISION", "mixed_bfloat16"))
    rc, out, err = run_cli("compare", path, "--steps", "3")
    assert rc == 0, err
    assert "steps in float64" in out
    assert ("note: precision: mixed_bfloat16 is outside the equivalence contract; compared the same model in "
            "full precision (float64), as if precision: float32") in out
    assert "=> equivalent" in out
    assert "(the model in full precision; its mixed precision is not compared)" in out


def test_a_keras_mixed_run_on_the_cpu_turns_tensorflow_s_16_bit_fusion_off_while_it_runs(monkeypatch):
    """TensorFlow fuses MatMul + BiasAdd + activation, and on the CPU its float16 fused kernels made a mixed
    digits epoch 1,270 ms against 46 ms in float32: a mixed keras session's graphs run with the fusion off
    where there is no GPU. The option is the process's, and a float32 model's fused elu rounds differently
    from the unfused ops: it is put back after each call, so a float32 model after a mixed one trains to the
    same bits (it turned the fusion off for the rest of the process: 8 of 110 fixtures moved by 1 ulp)."""
    tf = pytest.importorskip("tensorflow")
    import dlc
    from dlc.backends.keras import library

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("the fusion is kept on a GPU")
    spec = dlc.load(ROOT / "tests" / "equivalence" / "fixtures" / "act_elu.dlspec")
    before = dlc.Model(spec, backend="keras", dtype="float32").fit(max_steps=8).step_losses
    seen = []
    epoch = library.Trainer.train_epoch

    def train_epoch(self, *args, **kwargs):
        seen.append(tf.config.optimizer.get_experimental_options().get("remapping"))
        return epoch(self, *args, **kwargs)

    monkeypatch.setattr(library.Trainer, "train_epoch", train_epoch)
    text = DIGITS.replace("    batch_size: 128", "    batch_size: 128\n    precision: mixed_float16")
    mixed = compile_text(text, "m.dlspec", ROOT / "specs").spec
    dlc.Model(mixed, backend="keras").fit(max_steps=4)
    assert seen == [False]
    assert tf.config.optimizer.get_experimental_options().get("remapping", True) is True
    after = dlc.Model(spec, backend="keras", dtype="float32").fit(max_steps=8).step_losses
    assert len(seen) > 1 and False not in seen[1:]
    assert after == before
