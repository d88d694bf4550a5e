"""Equivalence suite: every catalogue item of the spine scope, as a small spec fixture, trained on Keras and
on PyTorch from the same initial weights, batches and dropout masks, compared step by step
(shared/EQUIVALENCE.md).

Per fixture (tests/equivalence/fixtures/*.dlspec, plus the example specs in specs/):
  (a) initial weights bit-identical on both backends (max |Δ| == 0), in float64 and float32;
  (b) float64: per-step training loss |Δ| ≤ 1e-10·max(1, |loss|) at every step, per-epoch val_loss likewise,
      final weights (BatchNorm moving statistics included) ≤ 1e-8, and the same course (epochs, early stop,
      best epoch);
  (c) float32 over ≥ 200 steps: |Δ| ≤ 2e-6 + 1e-6·|loss| at every step until the first near-tie (a value
      within rounding of a ReLU kink or a pooling tie, decided one way by each backend; EQUIVALENCE.md). Which
      fixtures meet one depends on the CPU's kernels (depthwiseconv2d_same_s2 jumps from 1e-7 to 1e-4 at step
      55 on an AVX-512 EPYC, not on the CPU the suite was first measured on), so a fixture that leaves its
      bound must have done so in one jump, the float64 rerun through that step must agree (`dlc compare`'s
      equivalent_near_tie), and where its training ends must be equivalent over NEAR_TIE_SEEDS seeds.
The long variants (1000 steps, bigger models in fixtures/slow/) run with `pytest -m slow`.
Measured numbers: tests/equivalence/RESULTS.md (tests/equivalence/measure.py writes it).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("tensorflow")

from dlc.compiler import compile_file, compile_text
from dlc.runtime.compare import FLOAT64_WEIGHT_TOL, compare_spec, float32_loss_bound, float64_loss_bound

from conftest import FIXTURE_DIR, ROOT

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # the fixtures are tiny

FIXTURES = sorted(FIXTURE_DIR.glob("*.dlspec"))
EXAMPLES = sorted((ROOT / "specs").glob("*.dlspec"))
SLOW_FIXTURES = sorted((FIXTURE_DIR / "slow").glob("*.dlspec"))

FLOAT64_STEPS = 40
FLOAT32_STEPS = 200
LONG_STEPS = 1000

# float32 runs whose step losses agree but whose validation loss cannot, and why (measured on this CPU)
FLOAT32_VAL_DRIFT = {
    "batchnorm_after_bias": (
        "a bias right before BatchNorm has a true gradient of zero: Adam (eps 1e-7) turns the backends' "
        "different float32 rounding noise (~1e-8) into steps of ~lr, so the bias and the BN moving mean "
        "random-walk apart (measured after 200 steps: bias/moving mean |Δ| 3.9e-3, val_loss |Δ| 2.8e-5, "
        "while every step loss agrees to 1.5e-7); inference uses the moving mean, so the validation loss "
        "differs. Not fixable short of bit-identical float32 gradients; the compiler warns (W001): use "
        "use_bias=false before BatchNorm"),
}


def _id(path: Path) -> str:
    return f"specs/{path.stem}" if path.parent.name == "specs" else path.stem


ALL = FIXTURES + EXAMPLES  # = conftest.EQUIVALENCE_SPECS


@functools.cache
def load(path: Path):
    return compile_file(path).raise_for_errors()


def has_maxpool(spec) -> bool:
    return any(info.layer.kind in ("MaxPool1D", "MaxPool2D") for info in spec.walk())


def is_es_fixture(path: Path) -> bool:
    return path.parent == FIXTURE_DIR and load(path).train.early_stopping is not None


def plan(path: Path, dtype: str, long: bool = False):
    """(spec, steps) for one run. The early-stopping fixture runs as written (it stops by itself, after > 200
    steps); other specs with early stopping run without it in float32, so that ≥ 200 steps are compared (early
    stopping itself is proven in float64 and by its own fixture)."""
    spec = load(path)
    if is_es_fixture(path):
        return spec, None
    steps = LONG_STEPS if long else (FLOAT64_STEPS if dtype == "float64" else FLOAT32_STEPS)
    if dtype == "float32" and spec.train.early_stopping is not None:
        spec = spec.model_copy(update={"train": spec.train.model_copy(update={"early_stopping": None})})
    return spec, steps


@functools.cache
def run(path: Path, dtype: str, long: bool = False):
    spec, steps = plan(path, dtype, long)
    return compare_spec(spec, path.parent, steps, dtype)


def _where(c, diff) -> str:
    i = int(np.argmax(diff))
    return f"step {i + 1}: keras {c.losses['keras'][i]!r}, torch {c.losses['torch'][i]!r}"


def step_diffs(c) -> np.ndarray:
    k, t = np.array(c.losses["keras"]), np.array(c.losses["torch"])
    assert len(k) == len(t), f"keras ran {len(k)} steps, torch {len(t)}"
    return np.abs(k - t)


def _within_float64_bound(c, diff) -> None:
    """Every step's loss and every epoch's val_loss within 1e-10·max(1, |loss|)."""
    over = diff / float64_loss_bound(np.array(c.losses["keras"]))
    assert over.max() <= 1, f"max loss |Δ| {diff.max():.3g} at {_where(c, diff)}"
    vk, vt = np.array(c.val_losses["keras"]), np.array(c.val_losses["torch"])
    assert np.all(np.abs(vk - vt) <= float64_loss_bound(vk)), f"val_loss |Δ| {c.max_abs_val_loss_diff:.3g}"


# ------------------------------------------------------------------------------------------ the fixtures


def test_every_fixture_says_what_it_proves():
    assert len(FIXTURES) >= 30
    for path in FIXTURES + SLOW_FIXTURES:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# Proves: "), f"{path.name}: the first line must be '# Proves: ...'"


@pytest.mark.parametrize("path", ALL, ids=_id)
def test_initial_weights_bit_identical(path):
    for dtype in ("float64", "float32"):
        diff = run(path, dtype).initial_weight_max_abs_diff
        assert diff == 0.0, f"{dtype}: initial weights differ by {diff!r}"


@pytest.mark.parametrize("path", ALL, ids=_id)
def test_float64_step_for_step(path):
    c = run(path, "float64")
    diff = step_diffs(c)
    assert c.steps >= FLOAT64_STEPS, f"only {c.steps} steps were compared"
    _within_float64_bound(c, diff)
    worst = c.final_weight_max_abs_diff
    assert worst <= FLOAT64_WEIGHT_TOL, f"final weights |Δ| {worst:.3g}"
    assert c.runs["keras"] == c.runs["torch"], c.runs
    assert c.passed, c.reasons


@pytest.mark.parametrize("path", ALL, ids=_id)
def test_float32_step_for_step(path):
    c = run(path, "float32")
    diff = step_diffs(c)
    k = np.array(c.losses["keras"])
    assert c.steps >= FLOAT32_STEPS, f"only {c.steps} steps were compared"
    bound = float32_loss_bound(k)
    over = np.flatnonzero(diff > bound)
    if over.size:
        _a_near_tie_then_the_same_ends(path, c, f"loss |Δ| {diff[over[0]]:.3g} > {bound[over[0]]:.3g} at "
                                                f"{_where(c, diff * (diff > bound))}")
        return
    assert c.runs["keras"] == c.runs["torch"], c.runs
    vk, vt = np.array(c.val_losses["keras"]), np.array(c.val_losses["torch"])
    vover = np.flatnonzero(np.abs(vk - vt) > float32_loss_bound(vk))
    if vover.size and _id(path) in FLOAT32_VAL_DRIFT:
        measured = (f"val_loss |Δ| {c.max_abs_val_loss_diff:.2g}, "
                    f"final weights |Δ| {c.final_weight_max_abs_diff:.2g}")
        pytest.xfail(f"{FLOAT32_VAL_DRIFT[_id(path)]} (this run: {measured})")
    assert vover.size == 0, f"val_loss |Δ| {np.abs(vk - vt).max():.3g} after epoch {vover[0] + 1}"
    assert c.passed, c.reasons


NEAR_TIE_SEEDS = 10


def _a_near_tie_then_the_same_ends(path: Path, c, first_over: str) -> None:
    """A float32 run over its per-step bound: it must have separated in one jump (every step before it within
    the bound), float64 must agree through it, and the final test metrics over NEAR_TIE_SEEDS seeds must be
    equivalent (accuracy within 0.02, the loss within 5%: compare_seeds' TOST)."""
    from dlc.runtime.compare import compare_seeds

    assert c.verdict == "equivalent_near_tie" and c.separation == "jump", (first_over, c.summary)
    spec, _ = plan(path, "float32")
    seeds = compare_seeds(spec, path.parent, NEAR_TIE_SEEDS)
    assert seeds["verdict"] == "equivalent", (first_over, c.summary, seeds["summary"])


def test_early_stopping_fixture_really_stops_and_restores():
    path = FIXTURE_DIR / "early_stopping.dlspec"
    c = run(path, "float64")
    r = c.runs["keras"]
    assert r["stopped_early"] and r["restored_best"] and r["best_epoch"] < r["epochs"], r
    # Keras stops once `patience` epochs in a row have not improved on the best one
    assert r["epochs"] == r["best_epoch"] + load(path).train.early_stopping.patience, r
    assert r["steps"] >= FLOAT32_STEPS, r
    assert run(path, "float32").runs["torch"] == r


def test_schedule_fixture_spans_many_epochs():
    c = run(FIXTURE_DIR / "schedule_step.dlspec", "float64")
    assert c.runs["keras"]["epochs"] >= 5
    lrs = [c.final_metrics["keras"]["lr"], c.final_metrics["torch"]["lr"]]
    assert lrs[0] == lrs[1] == 0.1 * 0.5 ** (c.runs["keras"]["epochs"] - 1)


# --------------------------------------------------------------------------------------------- dropout

DROPOUT_SPEC = """
model masks {
  seed: 7
  data { source: digits }
  input: (8, 8, 1)
  layers {
    Conv2D(3, (3, 3))
    Dropout(0.3)
    Flatten()
    Dropout(0.5)
    Dense(10, activation=softmax)
  }
  loss: categorical_crossentropy
  optimizer: SGD()
}
"""


@pytest.mark.parametrize("which,shape", [("4-D", (5, 6, 6, 3)), ("2-D", (7, 108))], ids=["4d", "2d"])
@pytest.mark.parametrize("step", [0, 1, 12345])
def test_dropout_masks_bit_identical(which, shape, step):
    import tensorflow as tf
    import torch

    from dlc.backends import session_class
    from dlc.reference.rng import dropout_keep_numpy

    spec = compile_text(DROPOUT_SPEC).raise_for_errors()
    infos = [i for i in spec.walk() if i.layer.kind == "Dropout"]
    info = infos[0] if which == "4-D" else infos[1]
    assert math.prod(info.in_shape) == math.prod(shape[1:])
    rate = info.layer.rate
    want = dropout_keep_numpy(spec.seed, info.index, step, shape, rate)
    assert 0.2 < 1 - want.mean() < 0.6

    x = np.random.default_rng(0).uniform(0.5, 1.5, size=shape)
    ts = session_class("torch")(spec, dtype="float64", device="cpu")
    tmod = ts.layers[info.layer.name]
    tmod.train()
    ts.counter.set(step)
    tout = tmod(torch.as_tensor(x)).numpy()

    ks = session_class("keras")(spec, dtype="float64", device="cpu")
    klayer = ks.klayers[info.layer.name]
    ks.step_var.assign(step)
    kout = klayer(tf.constant(x), training=True).numpy()

    scale = 1.0 / (1.0 - rate)
    for name, out in (("torch", tout), ("keras", kout)):
        np.testing.assert_array_equal(out != 0, want, err_msg=f"{name} mask")
        np.testing.assert_array_equal(out[want], x[want] * scale, err_msg=f"{name} kept values")
    # inference: identity
    tmod.eval()
    np.testing.assert_array_equal(tmod(torch.as_tensor(x)).numpy(), x)
    np.testing.assert_array_equal(klayer(tf.constant(x), training=False).numpy(), x)


# ------------------------------------------------------------------------------------------ long runs


# Long float64 runs that separate at a near-tie (a value within rounding of a kink or a tie, decided one way
# by each framework), measured with tests/equivalence/measure_bounds.py --steps 1000: the step where the
# per-step |Δ| jumps from ~1e-16 (upsampling2d_bilinear: 4e-16 -> 4.8e-12 at step 570, 5.9e-8 by step 1000).
# They are compared up to the step before it; `dlc compare` reports later steps as a float64 mismatch.
FLOAT64_NEAR_TIES = {"upsampling2d_bilinear": 570}


@pytest.mark.slow
@pytest.mark.parametrize("path", ALL + SLOW_FIXTURES, ids=_id)
def test_long_float64(path):
    cut = FLOAT64_NEAR_TIES.get(_id(path))
    if cut is None:
        c = run(path, "float64", long=True)
    else:
        spec, steps = plan(path, "float64", long=True)
        c = compare_spec(spec, path.parent, min(steps or cut, cut - 1), "float64")
    diff = step_diffs(c)
    assert c.initial_weight_max_abs_diff == 0.0
    _within_float64_bound(c, diff)
    worst = c.final_weight_max_abs_diff
    assert worst <= FLOAT64_WEIGHT_TOL, f"final weights |Δ| {worst:.3g}"
    assert c.runs["keras"] == c.runs["torch"], c.runs


# Long float32 runs whose training sits on the edge of stability: it amplifies rounding step after step (no
# single near-tie), ~10x every 50-100 steps in float64 and float32 alike, so float32 leaves its per-step bound
# after a few hundred steps and one seed's final loss is as far between the backends as between two Keras runs
# whose initial weights differ by 1 ulp (measured over 1000 steps, seeds 205-224). They are compared per step
# until float32 separates (the float64 rerun through that step, at least 200, must agree:
# `equivalent_near_tie`), then where training ends over LONG_SEEDS seeds (`compare_seeds`): test accuracy
# equivalent within 0.02, the loss not shown different (its paired differences spread too much, sd 0.13, for
# a 5% margin at this count).
FLOAT32_LONG_CHAOTIC = {
    "separableconv2d_same_s2": (
        "SGD(lr=0.05, momentum=0.9): step losses still range 1e-5 to 0.5 at step 1000; float64 |Δ| 1.6e-15 "
        "at step 200, 1.9e-11 at 800 (a float64 mismatch by step 1000 on 8 of seeds 206-214); float32 past "
        "its bound at step 254 (seeds 205-224: steps 110-400), 6e-3 by 500, 0.26 by 600; final loss keras "
        "0.111, torch 0.010, keras from a 1-ulp-nudged conv kernel 0.117; within 1e-3 on 0 of 20 seeds, "
        "keras-torch and keras-keras alike. Over 20 seeds, 30 epochs: test accuracy Δ +0.003, 90% CI "
        "[-0.005, 0.011]"),
}
LONG_SEEDS = 20


def _where_training_ends_over_seeds(path: Path, epochs: int, why: str) -> None:
    """Both backends trained in float32 for `epochs` epochs (the long run's) on LONG_SEEDS seeds: the test
    accuracy equivalent within 0.02 (TOST, α 0.05), the test loss not shown different."""
    from dlc.runtime.compare import compare_seeds

    spec = load(path)
    spec = spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": epochs})})
    tests = compare_seeds(spec, path.parent, LONG_SEEDS)["tests"]
    assert tests["accuracy"]["verdict"] == "equivalent", (tests["accuracy"], why)
    assert tests["loss"]["verdict"] != "different", (tests["loss"], why)


@pytest.mark.slow
@pytest.mark.parametrize("path", ALL + SLOW_FIXTURES, ids=_id)
def test_long_float32_metrics(path):
    """Over 1000 float32 steps a single near-tie can make the step losses jump apart (EQUIVALENCE.md: wine at
    step ~762), so long float32 runs compare where training ends up: the first 200 steps within the per-step
    bound (MLP-type models), then the final epoch's loss and val_loss within 1e-3 relative, val accuracy
    within 2 points; a training that amplifies rounding (FLOAT32_LONG_CHAOTIC) is compared over seeds."""
    c = run(path, "float32", long=True)
    diff = step_diffs(c)
    assert c.initial_weight_max_abs_diff == 0.0
    if not has_maxpool(load(path)):
        k = np.abs(np.array(c.losses["keras"][:FLOAT32_STEPS]))
        first = diff[:FLOAT32_STEPS]
        assert np.all(first <= 2e-6 + 1e-6 * k), f"max loss |Δ| {first.max():.3g}"
    why = FLOAT32_LONG_CHAOTIC.get(_id(path))
    if why is not None:
        assert c.verdict in ("equivalent", "equivalent_near_tie"), c.summary
        _where_training_ends_over_seeds(path, c.runs["keras"]["epochs"], why)
        return
    fk, ft = c.final_metrics["keras"], c.final_metrics["torch"]
    for key in ("loss", "val_loss"):
        if key in fk:
            assert abs(fk[key] - ft[key]) <= 1e-3 * max(1.0, abs(fk[key])), (key, fk[key], ft[key])
    for key in ("val_accuracy", "accuracy"):
        if key in fk:
            assert abs(fk[key] - ft[key]) <= 0.02, (key, fk[key], ft[key])


# ------------------------------------------------------------------------------------------ initializers

INIT_CASES = [
    ("glorot_uniform", (120, 80)),
    ("he_normal", (3, 3, 16, 32)),
    ("he_normal", (200, 100)),
    ("random_normal", (200, 100)),
    ("zeros", (50, 40)),
]


@pytest.mark.parametrize("name,shape", INIT_CASES,
                         ids=[f"{n}-{'x'.join(map(str, s))}" for n, s in INIT_CASES])
def test_initializer_draws_follow_keras(name, shape):
    """Both backends get dlc's numpy draws (bit-identical, above); this checks that those draws come from the
    distribution Keras' own initializer samples (two-sample Kolmogorov-Smirnov, support bounds, spread)."""
    import keras
    from scipy.stats import ks_2samp

    from dlc.compiler import functions as Fn
    from dlc.reference.rng import stream

    ir = {"glorot_uniform": Fn.GlorotUniform(), "he_normal": Fn.HeNormal(),
          "random_normal": Fn.RandomNormal(), "zeros": Fn.Zeros()}[name]
    ref = {"glorot_uniform": keras.initializers.GlorotUniform, "he_normal": keras.initializers.HeNormal,
           "random_normal": keras.initializers.RandomNormal, "zeros": keras.initializers.Zeros}[name]
    ours = np.concatenate([np.ravel(ir.draw(stream(s, 1, 0, 0), shape)) for s in range(4)])
    kw = {} if name == "zeros" else {"seed": 0}
    theirs = np.concatenate([np.ravel(np.asarray((ref(seed=s) if kw else ref())(shape, dtype="float64")))
                             for s in range(4)])
    if name == "zeros":
        assert not ours.any() and not theirs.any()
        return
    assert ks_2samp(ours, theirs).pvalue > 1e-3
    assert abs(ours.std() / theirs.std() - 1) < 0.03
    fan_in = math.prod(shape[:-1])
    fan_out = shape[-1] * math.prod(shape[:-2])
    bound = {"glorot_uniform": math.sqrt(6 / (fan_in + fan_out)),  # uniform(-limit, limit)
             "he_normal": 2 * math.sqrt(2 / fan_in) / 0.87962566103423978}.get(name)  # truncated at 2 sigma
    if bound is not None:
        assert np.abs(ours).max() <= bound and np.abs(theirs).max() <= bound
        assert np.abs(ours).max() > 0.97 * bound
