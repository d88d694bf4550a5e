"""`dlc compare`: train one spec on both backends from the same weights, batches and dropout masks, and say
whether they compute the same thing. Three checks (the numbers are measured: README.md, "Equivalence"):

1. float64, step by step: the proof of the semantics. Every step's loss |Δ| ≤ 1e-10·max(1, |loss|) (the
   per-epoch validation loss alike), the final weights within 1e-8·max(1, |w|) and the same course
   (epochs, early stop, best epoch); initial weights bit-identical.
2. float32, step by step: |Δ| ≤ 2e-6 + 1e-6·|loss| holds only until float32 rounding decides a near-tie
   differently in the two frameworks (a ReLU input or a max-pool window ~1e-8 from a tie, a clip threshold,
   a plateau decision) or a training amplifies rounding: from then on the trajectories differ as two seeds
   do. When the bound breaks, the step K where it first broke is found and the same comparison (same seed,
   weights and batches) is repeated in float64 for min(steps compared, max(K, FLOAT64_RERUN_MIN_STEPS))
   steps (float64_rerun_steps). float64 within its bound: "equivalent_near_tie"
   (float32 rounding, not a formula, separated them); float64 outside it: "mismatch", with the first step
   and the first layer whose weights disagree.
3. float32 over seeds (`compare_seeds`): both backends trained to the end of the spec's training on N seeds,
   the final metrics tested for equivalence within a margin with two one-sided paired t-tests (TOST,
   dlc/reference/tost.py).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# float64: |Δ| ≤ FLOAT64_REL_TOL·max(1, |loss|) at every step. Measured: ≤ 4.6e-15 on every equivalence
# fixture over 200 and 1000 steps; a training on the edge of stability (a ReLU MLP, SGD-nesterov lr=0.1 on
# digits) amplifies rounding up to 1.3e-13 within 200 steps and 2e-11 within 1000 (README, "Equivalence").
# Errors of Keras' float32-cast constants (an l2 factor, a momentum: ≥ 1e-9) stay above it.
FLOAT64_REL_TOL = 1e-10
# the final weights, |Δ| ≤ FLOAT64_WEIGHT_TOL·max(1, |w|), where a parameter without a gradient random-walks
# under Adam (a bias right before BatchNorm: 6.8e-12 after 200 steps)
FLOAT64_WEIGHT_TOL = 1e-8
# locating a mismatch: a layer's weights disagree when max |Δ| > LOCATE_WEIGHT_TOL·max(1, max |w|)
LOCATE_WEIGHT_TOL = 1e-12
# float32, until the first near-tie: |Δ| ≤ FLOAT32_ABS_TOL + FLOAT32_REL_TOL·|loss|
FLOAT32_ABS_TOL = 2e-6
FLOAT32_REL_TOL = 1e-6
# the float64 rerun of a float32 comparison that left its bound at step K covers at least this many steps
# (never more than the comparison did): a rerun of only K steps (K = 2 after an early near-tie) would say
# nothing of the formulas the later steps use (a second epoch, a schedule, a restored best). 200 is the length
# float64 was measured sound over on every fixture and example spec (≤ 2.2e-15) and on the stress model
# (≤ 1.3e-13, 80 seeds), so a float64 disagreement within it is a formula, not rounding; float64 near-ties
# came only later (step 570). It costs at most as much as the float32 comparison itself.
FLOAT64_RERUN_MIN_STEPS = 200

VERDICTS = ("equivalent", "equivalent_near_tie", "mismatch")
# the most steps and seeds a comparison takes: beyond them it runs for days (`--steps 10**20` never ended)
MAX_STEPS = 100_000  # (as `dlc lr-find`'s; float64 was measured over 200 and 1000 steps)
MAX_SEEDS = 1_000  # (each seed is two whole trainings)
SNAPSHOT_BYTES = 256 * 2**20  # weights kept per step while locating a mismatch


# who hears what a comparison is training now (a comparison takes seconds to minutes, in several trainings)
_PHASES: contextvars.ContextVar[Callable[[str], None] | None] = contextvars.ContextVar("phases", default=None)


@contextlib.contextmanager
def reporting(on_phase: Callable[[str], None] | None):
    """Within it, every training a comparison starts is said to `on_phase` first ("keras, float64, 200
    steps"), for a display; None: nothing is said."""
    token = _PHASES.set(on_phase)
    try:
        yield
    finally:
        _PHASES.reset(token)


def _phase(text: str) -> None:
    said = _PHASES.get()
    if said is not None:
        said(text)


def float64_loss_bound(loss: Any) -> Any:
    """The float64 per-step bound on |Δloss| (a number or an array of losses)."""
    return FLOAT64_REL_TOL * np.maximum(1.0, np.abs(loss))


def float32_loss_bound(loss: Any) -> Any:
    """The float32 per-step bound on |Δloss| (a number or an array of losses)."""
    return FLOAT32_ABS_TOL + FLOAT32_REL_TOL * np.abs(loss)


def loss_bound(dtype: str, loss: Any) -> Any:
    return float64_loss_bound(loss) if dtype == "float64" else float32_loss_bound(loss)


def bound_text(dtype: str) -> str:
    if dtype == "float64":
        return (f"|Δloss| ≤ {FLOAT64_REL_TOL:g}·max(1, |loss|) per step; final weights "
                f"|Δ| ≤ {FLOAT64_WEIGHT_TOL:g}·max(1, |w|)")
    return f"|Δloss| ≤ {FLOAT32_ABS_TOL:g} + {FLOAT32_REL_TOL:g}·|loss| per step"


def rel_diffs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a − b| / max(1, |a|), elementwise."""
    return np.abs(a - b) / np.maximum(1.0, np.abs(a))


def over_bound(a: Any, b: Any, dtype: str) -> tuple[np.ndarray, int | None]:
    """(|a − b| elementwise, the first index whose |Δ| is over `dtype`'s loss bound, None when none): step
    losses or validation losses, of the two backends or of one against itself. Equal values are 0 apart, inf
    included (inf − inf is NaN)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(invalid="ignore"):
        diff = np.where(a == b, 0.0, np.abs(a - b))
    over = np.flatnonzero(diff > loss_bound(dtype, a))
    return diff, (int(over[0]) if over.size else None)


def check_counts(steps: int | None, seeds: int | None) -> None:
    """ValueError for a number of steps or seeds a comparison does not take (None: not given); `dlc compare`
    says it in its options' words first."""
    if steps is not None and not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be between 1 and {MAX_STEPS}, got {steps}")
    if seeds is not None and not 2 <= seeds <= MAX_SEEDS:
        raise ValueError(f"comparing over seeds needs at least 2 seeds (a paired t-test) and at most "
                         f"{MAX_SEEDS}, got {seeds}")


@dataclass
class Comparison:
    steps: int
    dtype: str
    losses: dict[str, list[float]]
    max_abs_loss_diff: float
    initial_weight_max_abs_diff: float
    final_weight_max_abs_diff: float
    final_metrics: dict[str, dict]
    passed: bool  # verdict != "mismatch"
    reasons: list[str]  # where this run broke its bounds (with a near-tie verdict, float64 explains them)
    # per-epoch validation loss (inference mode: BN moving stats, no dropout)
    max_abs_val_loss_diff: float = 0.0
    # per backend: steps, epochs, stopped_early, best_epoch, restored_best
    runs: dict[str, dict] | None = None
    val_losses: dict[str, list[float]] | None = None  # per backend, one per epoch
    mode: str = "steps"  # compare_seeds' reports say "seeds"
    verdict: str = "equivalent"  # one of VERDICTS
    summary: str = ""  # the verdict in a sentence
    bound: str = ""  # the per-step bound this dtype is held to
    max_rel_loss_diff: float = 0.0  # max over steps of |Δ| / max(1, |loss|)
    # float32: the first step over the bound, and what it looked like: "jump" (one step took the trajectories
    # apart: a near-tie), "growth" (rounding amplified step after step), "isolated" (single steps over the
    # bound, the rest within it), "course" (an epoch decision or validation loss, not a step loss)
    separated_at_step: int | None = None
    separation: str | None = None
    # the float64 evidence: this run (dtype float64) or its float64 rerun, `float64_steps` steps (a rerun:
    # float64_rerun_steps of separated_at_step and `steps`)
    float64_steps: int | None = None
    float64_max_abs_diff: float | None = None
    float64_max_rel_diff: float | None = None
    # a mismatch: the first step whose loss (over the float64 bound) or weights (|Δ| > LOCATE_WEIGHT_TOL·
    # max(1, |w|) in a layer) disagree, 0 for the initial weights; the first layer, in model order, whose
    # weights disagree there, and every disagreeing layer's max |Δ|/max(1, max |w|) at that step
    first_mismatch_step: int | None = None
    first_loss_mismatch_step: int | None = None
    first_weight_mismatch_step: int | None = None
    first_mismatch_layer: str | None = None
    mismatch_layers: dict[str, float] = field(default_factory=dict)
    # what was compared when it is not the spec as written (a mixed-precision spec: its full-precision model;
    # a kfold spec: the training of its fold 1)
    note: str = ""
    # a float64 mismatch after agreement: the first backend against itself from initial weights 1 ulp apart,
    # the first step over the float64 bound (None: none) and the max |Δ|/max(1, |loss|) (None: not run)
    self_separation_step: int | None = None
    self_max_rel_diff: float | None = None
    self_weight_diff: float | None = None  # its final weights' max |Δ|/max(1, |w|) (None: not run)

    def to_json(self) -> dict:
        return self.__dict__.copy()


# ------------------------------------------------------------------------------------------------ training

@dataclass
class _Runs:
    """Both backends' runs of one spec: what compare_spec judges."""

    losses: dict[str, list[float]]
    start: dict[str, dict]
    end: dict[str, dict]
    finals: dict[str, dict]
    val: dict[str, list[float]]
    runs: dict[str, dict]
    steps_per_epoch: int


class _EveryStep:
    """A session whose epochs run one step at a time (the same batches, the same arithmetic), calling
    `on_step(step, weights)` after each; raising from it ends the training."""

    def __init__(self, session, on_step):
        self._session, self._on_step, self._step = session, on_step, 0

    def __getattr__(self, name):
        return getattr(self._session, name)

    def train_epoch(self, handle, perm: np.ndarray, batch_size: int, progress=None):
        losses, sizes, stats = [], [], None
        for i in range(0, len(perm), batch_size):
            loss, st, size = self._session.train_epoch(handle, perm[i:i + batch_size], batch_size)
            losses.append(loss)
            sizes.append(size)
            stats = st if stats is None else stats + st
            self._step += 1
            self._on_step(self._step, self._session.get_weights())
        return np.concatenate(losses), stats, np.concatenate(sizes)


@dataclass
class _Divergence:
    """Where one backend's training diverged: the first optimizer step (1-based) whose loss was not finite."""

    step: int
    loss: float


def _train_or_diverge(session, spec, data, **kwargs):
    """train()'s History, or the _Divergence where the loss stopped being finite (so that the comparison
    goes on to the other backend and can say whether both diverged, and where)."""
    from dlc.runtime.loop import TrainingFailed, train

    try:
        return train(session, spec, data, **kwargs)
    except TrainingFailed as e:
        losses = e.history.step_losses if e.history is not None else []
        bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
        if bad is None:  # (another failure: an early_stopping monitor the run does not compute)
            raise
        return _Divergence(bad + 1, losses[bad])


def _diverged_line(diverged: dict[str, _Divergence], trained: dict[str, int], dtype: str,
                   steps: int | None, seed: int | None = None) -> str:
    """The one line of a comparison a non-finite loss stopped: which backend diverged (or both), at which
    step, and what to do. `trained`: the steps each backend that did not diverge ran."""
    where = f" in {dtype}" + (f" with seed {seed}" if seed is not None else "")
    of = f" of the {steps} compared" if steps is not None else ""
    kinds = {name: "nan" if math.isnan(d.loss) else "inf" for name, d in diverged.items()}
    at = {d.step for d in diverged.values()}
    first = min(at)
    who = "both backends" if len(diverged) > 1 else next(iter(diverged))  # (_locate trains one backend)
    if trained:
        (name, d), = diverged.items()
        (other, ran), = trained.items()
        what = (f"training diverged{where} on {name} only, at step {d.step}{of} (its loss became "
                f"{kinds[name]}); {other}'s loss stayed finite over its {ran} steps")
    elif len(at) == 1:
        kind = next(iter(kinds.values()))
        loss = (f"the loss became {kind}" + (" on both" if len(kinds) > 1 else "")
                if len(set(kinds.values())) == 1 else ", ".join(f"{k} on {n}" for n, k in kinds.items()))
        what = f"training diverged{where} on {who} at step {first}{of} ({loss})"
    else:
        what = (f"training diverged{where} on {who}: " + ", ".join(
            f"on {n} at step {d.step} (loss {kinds[n]})" for n, d in diverged.items()) + of)
    return f"{what}; {_compare_before(first) if seed is None else ''}try a smaller learning rate"


def _compare_before(first: int) -> str:
    """The advice to compare the steps before the first divergence (none before step 1)."""
    if first == 1:
        return ""
    earlier = "the step" if first == 2 else f"the {first - 1} steps"
    return f"compare {earlier} before it with --steps {first - 1}, or "


def _kfold(spec) -> int | None:
    """k of a kfold split, else None."""
    from dlc.compiler.spec import KFold

    split = spec.data.split if spec.data is not None else None
    return split.k if isinstance(split, KFold) else None


def _data(spec, base_dir: Path):
    """The data a comparison trains on: a kfold spec's fold 1 (its train and held-out validation part, as
    `dlc cv` builds it), so that early stopping, a plateau and the val_ metrics run and are compared; else
    the spec's split."""
    from dlc.runtime.data import folds, prepare

    return folds(spec, base_dir)[0] if _kfold(spec) else prepare(spec, base_dir)


def _fold_note(spec) -> str:
    """What a comparison of a kfold spec compares (empty for any other split)."""
    k = _kfold(spec)
    if k is None:
        return ""
    return (f"the split is kfold(k={k}): compared the training of fold 1 of {k} (its train and validation "
            "parts, as `dlc cv` builds them)")


def _train_both(spec, base_dir: Path, steps: int | None, dtype: str, backends, on_step=None,
                init=None) -> _Runs:
    """Train `spec` in `dtype` on each backend for `steps` steps (None: the spec's own run) from `init`
    (default: dlc's initial weights); `on_step[name]`, when given, is called after every step of that
    backend."""
    from dlc.backends import session_class
    from dlc.reference.weights import initial_weights
    from dlc.runtime.loop import TrainingFailed

    spec = spec.model_copy(update={"dtype": dtype})
    data = _data(spec, base_dir)
    init = initial_weights(spec) if init is None else init
    bs = spec.train.batch_size
    n = len(data.train.x)
    epochs = spec.train.epochs if steps is None else max(spec.train.epochs, -(-steps * bs // n))
    out = _Runs({}, {}, {}, {}, {}, {}, -(-n // bs))
    diverged: dict[str, _Divergence] = {}
    for name in backends:
        _phase(f"training {name} in {dtype}, " + (f"{steps} steps" if steps is not None else
                                                   f"{epochs} epochs"))
        session = session_class(name)(spec, dtype=dtype, device="cpu", weights=init)
        out.start[name] = session.get_weights()
        if on_step is not None:
            session = _EveryStep(session, on_step[name])
        hist = _train_or_diverge(session, spec, data, epochs=epochs, max_steps=steps)
        if isinstance(hist, _Divergence):
            diverged[name] = hist
            continue
        out.losses[name] = hist.step_losses
        out.end[name] = session.get_weights()
        out.finals[name] = hist.rows[-1] if hist.rows else {}
        out.val[name] = [r["val_loss"] for r in hist.rows if "val_loss" in r]
        out.runs[name] = {"steps": len(hist.step_losses), "epochs": len(hist.rows),
                          "stopped_early": hist.stopped_early,
                          "best_epoch": hist.best_epoch, "restored_best": hist.restored_best}
    if diverged:
        trained = {name: len(losses) for name, losses in out.losses.items()}
        raise TrainingFailed(_diverged_line(diverged, trained, dtype, steps))
    return out


# ------------------------------------------------------------------------------------------------- judging

@dataclass
class _Findings:
    """What broke the bounds in one pair of runs: the reasons, and the first step each kind broke at."""

    reasons: list[str] = field(default_factory=list)
    init_layer: str | None = None  # the first layer whose initial weights differ
    loss_step: int | None = None  # first step whose loss is over the bound
    course_step: int | None = None  # the last step of the first epoch whose val_loss or decision differs
    weights: bool = False  # final weights over the float64 bound
    rel: np.ndarray | None = None  # per step |Δ| / max(1, |loss|)

    @property
    def first_step(self) -> int | None:
        steps = [s for s in (self.loss_step, self.course_step) if s is not None]
        return min(steps) if steps else None


def _layer_diffs(a: dict, b: dict) -> dict[str, float]:
    """Per layer (in `a`'s order, the model's): max |Δ| / max(1, max |w|) over its weights."""
    out = {}
    for lname, ws in a.items():
        worst = 0.0
        for wname, arr in ws.items():
            x, y = np.asarray(arr, np.float64), np.asarray(b[lname][wname], np.float64)
            if x.shape != y.shape:
                worst = float("inf")
            elif x.size:
                worst = max(worst, float(np.max(np.abs(x - y)) / max(1.0, float(np.max(np.abs(x))))))
        out[lname] = worst
    return out


def _judge(r: _Runs, dtype: str, backends) -> tuple[_Findings, dict[str, Any]]:
    """The findings and the figures (|Δ| maxima) of a pair of runs held to `dtype`'s bounds."""
    from dlc.reference.weights import max_abs_diff, max_scaled_diff

    a, b = backends
    f = _Findings()
    n = min(len(r.losses[a]), len(r.losses[b]))
    la, lb = np.array(r.losses[a][:n]), np.array(r.losses[b][:n])
    diff, i = over_bound(la, lb, dtype)
    f.rel = rel_diffs(la, lb)
    init_diff = max_abs_diff(r.start[a], r.start[b])
    if init_diff != 0.0:
        f.init_layer = next(k for k, v in _layer_diffs(r.start[a], r.start[b]).items() if v > 0)
        f.reasons.append(f"initial weights differ by {init_diff:.3g} (must be bit-identical), first in layer "
                         f"'{f.init_layer}'")
    if i is not None:
        f.loss_step = i + 1
        f.reasons.append(f"loss differs by {diff[i]:.3g} at step {i + 1} ({dtype} bound "
                         f"{loss_bound(dtype, la[i]):.3g})")
    if not np.all(np.isfinite(la)) or not np.all(np.isfinite(lb)):
        f.reasons.append("a loss became non-finite")
    m = min(len(r.val[a]), len(r.val[b]))
    vdiff, e = over_bound(r.val[a][:m], r.val[b][:m], dtype)
    if e is not None:
        f.course_step = min(n, (e + 1) * r.steps_per_epoch)
        f.reasons.append(f"val_loss differs by {vdiff[e]:.3g} after epoch {e + 1}")
    if r.runs[a] != r.runs[b]:
        f.course_step = min(f.course_step or n, n)
        f.reasons.append(f"the runs took different courses: {a} {r.runs[a]}, {b} {r.runs[b]}")
    final_diff = max_abs_diff(r.end[a], r.end[b])
    scaled = max_scaled_diff(r.end[a], r.end[b])
    if dtype == "float64" and scaled > FLOAT64_WEIGHT_TOL:
        f.weights = True
        f.reasons.append(f"final weights differ by {final_diff:.3g} ({scaled:.3g} of max(1, |w|); float64 "
                         f"bound {FLOAT64_WEIGHT_TOL:g})")
    figures = {"steps": n, "max_abs_loss_diff": float(diff.max()) if n else 0.0,
               "max_rel_loss_diff": float(f.rel.max()) if n else 0.0,
               "initial_weight_max_abs_diff": init_diff, "final_weight_max_abs_diff": final_diff,
               "max_abs_val_loss_diff": float(vdiff.max()) if m else 0.0}
    return f, figures


def _separation(r: _Runs, f: _Findings, backends) -> str:
    """How a float32 run left its bound (see Comparison.separation)."""
    a, b = backends
    if f.loss_step is None or (f.course_step is not None and f.course_step < f.loss_step):
        return "course"
    n = min(len(r.losses[a]), len(r.losses[b]))
    la, lb = np.array(r.losses[a][:n]), np.array(r.losses[b][:n])
    d, k = np.abs(la - lb), f.loss_step - 1
    after = d[k + 1:] > float32_loss_bound(la[k + 1:])
    if after.size and after.mean() < 0.5 and not after[-1]:
        return "isolated"
    before = float(d[:k].max()) if k else 0.0
    return "jump" if d[k] >= 10 * max(before, 1e-12) else "growth"


def _locate(spec, base_dir: Path, steps: int, backends) -> tuple[int | None, dict[str, float]]:
    """Train both backends in float64 one step at a time for `steps` steps: the first step after which some
    layer's weights disagree (|Δ| > LOCATE_WEIGHT_TOL·max(1, |w|)), with every disagreeing layer's relative
    |Δ|; (None, {}) when none does. The first backend's weights are kept per step (up to SNAPSHOT_BYTES)."""
    a, b = backends
    snaps: list[dict] = []
    found: dict[str, Any] = {}

    class _Found(Exception):
        pass

    def keep(step: int, weights: dict) -> None:
        size = sum(arr.nbytes for ws in weights.values() for arr in ws.values())
        if size * (len(snaps) + 1) <= SNAPSHOT_BYTES:
            snaps.append(weights)

    def check(step: int, weights: dict) -> None:
        if step > len(snaps):
            raise _Found  # past what was kept: nothing more to compare
        diffs = _layer_diffs(snaps[step - 1], weights)
        bad = {k: v for k, v in diffs.items() if v > LOCATE_WEIGHT_TOL}
        if bad:
            found.update(step=step, layers=bad)
            raise _Found

    _phase(f"locating the first step whose weights differ, over {steps} steps")
    _train_both(spec, base_dir, steps, "float64", (a,), on_step={a: keep})
    with contextlib.suppress(_Found):
        _train_both(spec, base_dir, steps, "float64", (b,), on_step={b: check})
    return found.get("step"), found.get("layers", {})


# ----------------------------------------------------------------------------------------------- comparing

def compare_spec(spec, base_dir: Path, steps: int | None, dtype: str,
                 backends=("keras", "torch")) -> Comparison:
    """Train `spec` on both backends for `steps` optimizer steps (more epochs than the spec asks for when
    needed; None: exactly the spec's own run, early stopping included) and compare step losses, validation
    losses, the training decisions (early stopping) and the weights before and after; in float32, a broken
    bound is judged by a float64 rerun (the module's docstring). ValueError for steps out of range;
    TrainingFailed, naming the backend and step, when a loss is not finite."""
    check_counts(steps, None)
    c = _compare(spec, base_dir, steps, dtype, tuple(backends))
    if spec.train.mixed:  # the verdict is about the full-precision model, not the spec's mixed precision
        c.summary += " (the model in full precision; its mixed precision is not compared)"
    return c


def _compare(spec, base_dir: Path, steps: int | None, dtype: str, backends: tuple) -> Comparison:
    """compare_spec's comparison (its summary says nothing of mixed precision yet)."""
    note = ""
    if spec.train.mixed:
        # 16-bit arithmetic has no step-by-step bound between the backends (their kernels round differently):
        # what can be proven is the model's semantics, in full precision
        note = (f"precision: {spec.train.precision} is outside the equivalence contract; compared the same "
                f"model in full precision ({dtype}), as if precision: float32")
        spec = spec.model_copy(update={"train": spec.train.model_copy(update={"precision": "float32"})})
    note = "; ".join(n for n in (_fold_note(spec), note) if n)
    runs = _train_both(spec, base_dir, steps, dtype, backends)
    f, fig = _judge(runs, dtype, backends)
    c = Comparison(steps=fig["steps"], dtype=dtype, losses=runs.losses,
                   max_abs_loss_diff=fig["max_abs_loss_diff"],
                   initial_weight_max_abs_diff=fig["initial_weight_max_abs_diff"],
                   final_weight_max_abs_diff=fig["final_weight_max_abs_diff"], final_metrics=runs.finals,
                   passed=True, reasons=list(f.reasons), max_abs_val_loss_diff=fig["max_abs_val_loss_diff"],
                   runs=runs.runs, val_losses=runs.val, bound=bound_text(dtype),
                   max_rel_loss_diff=fig["max_rel_loss_diff"], note=note)
    if dtype == "float64":
        c.float64_steps, c.float64_max_abs_diff = c.steps, c.max_abs_loss_diff
        c.float64_max_rel_diff = c.max_rel_loss_diff
        if f.reasons:
            _mismatch(c, f, spec, base_dir, backends, reference=runs)
        else:
            c.summary = (f"equivalent: float64 agrees within {c.max_rel_loss_diff:.2g}·max(1, |loss|) per "
                         f"step over {c.steps} steps (bound {FLOAT64_REL_TOL:g})")
        return _done(c)
    if not f.reasons:
        c.summary = (f"equivalent: float32 agrees within {FLOAT32_ABS_TOL:g} + {FLOAT32_REL_TOL:g}·|loss| "
                     f"per step over {c.steps} steps")
        return _done(c)
    if f.init_layer is not None or f.first_step is None:  # nothing rounding could explain
        _mismatch(c, f, spec, base_dir, backends)
        return _done(c)
    k = f.first_step
    c.separated_at_step, c.separation = k, _separation(runs, f, backends)
    rerun = float64_rerun_steps(k, c.steps)
    r64 = _train_both(spec, base_dir, rerun, "float64", backends)
    f64, fig64 = _judge(r64, "float64", backends)
    c.float64_steps, c.float64_max_abs_diff = fig64["steps"], fig64["max_abs_loss_diff"]
    c.float64_max_rel_diff = fig64["max_rel_loss_diff"]
    if f64.reasons:
        c.reasons += [f"float64 rerun ({rerun} steps): {reason}" for reason in f64.reasons]
        _mismatch(c, f64, spec, base_dir, backends, steps=rerun, reference=r64)
        return _done(c)
    c.verdict = "equivalent_near_tie"
    how = {"jump": f"separated at step {k} by rounding at a near-tie",
           "growth": f"drifted past its bound at step {k}: rounding amplified by the training",
           "isolated": f"went past its bound at step {k} and came back: rounding",
           "course": f"took another course at step {k}: an epoch decision on a near-tie"
           if runs.runs[backends[0]] != runs.runs[backends[1]] else
           f"left its bound in the validation loss after step {k}, its training steps within theirs and no "
           "epoch decision different: rounding"
           }[c.separation]
    c.summary = (f"equivalent: float64 agrees within {c.float64_max_rel_diff:.2g}·max(1, |loss|) (bound "
                 f"{FLOAT64_REL_TOL:g}) over {_float64_span(c.float64_steps, k, c.steps)}; float32 {how}")
    return _done(c)


def float64_rerun_steps(separated_at: int, compared: int) -> int:
    """How many steps the float64 rerun of a float32 comparison of `compared` steps that left its bound at
    step `separated_at` trains: through that step and at least FLOAT64_RERUN_MIN_STEPS, within `compared`."""
    return min(compared, max(separated_at, FLOAT64_RERUN_MIN_STEPS))


def _float64_span(steps: int, separated_at: int, compared: int) -> str:
    """How far the float64 rerun's agreement reaches, against the float32 comparison, for the summary."""
    past = steps - separated_at
    beyond = f", {past} past step {separated_at}" if past > 0 else ""
    return f"{steps} of the {compared} steps compared{beyond}"


def _mismatch(c: Comparison, f: _Findings, spec, base_dir: Path, backends, steps: int | None = None,
              reference: _Runs | None = None) -> None:
    """Mark `c` a mismatch and locate it in float64: the first step and layer whose weights disagree; and, for
    a mismatch after some steps of agreement, whether the first backend leaves the same bounds against
    itself from weights 1 ulp apart (`reference`: the float64 runs judged, when they are float64)."""
    c.verdict = "mismatch"
    c.first_loss_mismatch_step = f.loss_step
    if f.init_layer is not None:
        c.first_mismatch_step, c.first_weight_mismatch_step = 0, 0
        c.first_mismatch_layer = f.init_layer
        c.summary = f"mismatch: the initial weights differ, first in layer '{f.init_layer}'"
        return
    horizon = f.loss_step if f.loss_step is not None else (steps if steps is not None else c.float64_steps)
    if horizon:
        step, layers = _locate(spec, base_dir, horizon, backends)
        c.first_weight_mismatch_step, c.mismatch_layers = step, layers
        c.first_mismatch_layer = next(iter(layers), None)
    found = [s for s in (f.loss_step, c.first_weight_mismatch_step) if s is not None]
    c.first_mismatch_step = min(found) if found else None
    where = [f"first at step {c.first_mismatch_step}"] if c.first_mismatch_step is not None else []
    if f.loss_step is not None:
        where.append(f"the loss from step {f.loss_step}")
    if c.first_mismatch_layer is not None:
        where.append(f"the weights of layer '{c.first_mismatch_layer}' after step "
                     f"{c.first_weight_mismatch_step}")
    c.summary = "mismatch in float64: " + ("; ".join(where) if where else "; ".join(f.reasons))
    if f.loss_step is not None and f.loss_step > 1 and f.rel is not None:
        # a formula that differs shows from the first step that uses it; agreement to rounding before a late
        # separation can also be a float64 near-tie or rounding amplified over a long run (README)
        c.summary += (f" (the {f.loss_step - 1} steps before agreed within "
                      f"{float(f.rel[:f.loss_step - 1].max()):.2g}·max(1, |loss|))")
    if reference is not None and (f.loss_step is None or f.loss_step > 1):
        _self_sensitivity(c, spec, base_dir, backends[0], reference)


def _nudged(weights: dict) -> dict:
    """Every weight moved by 1 ulp (towards +inf): a rounding difference at the very start."""
    return {layer: {name: np.nextafter(np.asarray(w, np.float64), np.inf) for name, w in ws.items()}
            for layer, ws in weights.items()}


def _self_sensitivity(c: Comparison, spec, base_dir: Path, backend: str, reference: _Runs) -> None:
    """Train `backend` again in float64 from its initial weights nudged by 1 ulp, as far as its `reference`
    run went, and hold the two to the bounds the backends are held to (step losses, validation losses,
    final weights): where it leaves them against itself, the training amplifies rounding, and a mismatch
    after some steps of agreement may be that rather than a formula (a formula that differs shows from the
    first step that uses it, and stays within the bounds against itself). Said in the summary; the verdict
    stays a mismatch."""
    from dlc.reference.weights import initial_weights, max_scaled_diff

    spec64 = spec.model_copy(update={"dtype": "float64"})
    own = reference.losses[backend]
    _phase(f"holding {backend} against itself, from initial weights 1 ulp apart")
    try:
        runs = _train_both(spec, base_dir, len(own), "float64", (backend,),
                           init=_nudged(initial_weights(spec64)))
    except Exception:  # (the nudged run diverged, or failed otherwise: nothing to say about rounding)
        return
    nudged = np.array(runs.losses[backend][:len(own)])
    ref = np.array(own[:len(nudged)])
    rel = rel_diffs(ref, nudged)
    c.self_max_rel_diff = float(rel.max()) if rel.size else 0.0
    c.self_weight_diff = float(max_scaled_diff(reference.end[backend], runs.end[backend]))
    left = []
    _, i = over_bound(ref, nudged, "float64")
    if i is not None:
        c.self_separation_step = i + 1
        left.append(f"the loss bound at step {c.self_separation_step} (up to "
                    f"{c.self_max_rel_diff:.2g}·max(1, |loss|))")
    val, val_nudged = reference.val[backend], runs.val[backend]
    m = min(len(val), len(val_nudged))
    _, e = over_bound(val[:m], val_nudged[:m], "float64")
    if e is not None:
        left.append(f"the val_loss bound after epoch {e + 1}")
    if c.self_weight_diff > FLOAT64_WEIGHT_TOL:
        left.append(f"the final-weight bound ({c.self_weight_diff:.2g} of max(1, |w|))")
    if left:
        c.summary += (f"; {backend} against itself from initial weights 1 ulp apart leaves "
                      f"{_listed(left)}: this training amplifies rounding, so this may be that rather than a "
                      "formula; compare at a smaller learning rate, or where the trainings end (--seeds N)")


def _listed(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _done(c: Comparison) -> Comparison:
    c.passed = c.verdict != "mismatch"
    return c


# --------------------------------------------------------------------------------------------------- seeds

# metrics on a 0..1 scale get an absolute margin; the loss and error metrics one relative to their size
BOUNDED_METRICS = ("accuracy", "precision", "recall", "f1")
SEED_MAX = 2**32 - 1


def _margin(metric: str, values: list[float], margin: float, rel_margin: float) -> tuple[float, str]:
    if metric in BOUNDED_METRICS:
        return margin, "absolute"
    scale = float(np.mean(np.abs(values))) if values else 0.0
    return rel_margin * max(scale, 1e-12), f"relative: {rel_margin:g} × mean |{metric}| {scale:.6g}"


def compare_seeds(spec, base_dir: Path, seeds: int, margin: float = 0.02, rel_margin: float = 0.05,
                  alpha: float = 0.05, backends=("keras", "torch"), dtype: str = "float32") -> dict:
    """Train `spec` to the end of its training (epochs, early stopping and restoring as it says) on both
    backends for `seeds` seeds (the spec's seed, then + 1, ...), in `dtype`, and test whether the final loss
    and metrics (on the test part of the split, else the validation part, else the training data; inference
    mode; a kfold spec trains each seed's fold 1) are equivalent: TOST on the paired differences (second
    backend − first) with `margin` (absolute) for accuracy, precision, recall and f1 and `rel_margin` × the
    mean value for the loss, mse and mae, each at level `alpha`. Equivalent overall when every metric is
    (intersection-union: no multiplicity correction needed)."""
    from dlc.backends import session_class
    from dlc.reference.tost import tost_paired
    from dlc.reference.weights import initial_weights
    from dlc.runtime.loop import TrainingFailed
    from dlc.runtime.run import final_metrics

    check_counts(None, seeds)
    backends = tuple(backends)
    seed_list = [(spec.seed + i) % (SEED_MAX + 1) for i in range(seeds)]
    metrics: dict[str, list[dict]] = {name: [] for name in backends}
    courses: dict[str, list[dict]] = {name: [] for name in backends}
    split = ""
    for seed in seed_list:
        s = spec.model_copy(update={"seed": seed, "dtype": dtype})
        data = _data(s, base_dir)  # a kfold spec: this seed's fold 1
        init = initial_weights(s)
        diverged, trained = {}, {}
        for name in backends:
            _phase(f"training {name} in {dtype} with seed {seed} to the end of its training")
            session = session_class(name)(s, dtype=dtype, device="cpu", weights=init)
            hist = _train_or_diverge(session, s, data)
            if isinstance(hist, _Divergence):
                diverged[name] = hist
                continue
            trained[name] = len(hist.step_losses)
            parts = final_metrics(session, s, data)
            split = split or next(p for p in ("test", "val", "train") if p in parts)
            metrics[name].append(parts[split])
            courses[name].append({"steps": len(hist.step_losses), "epochs": len(hist.rows),
                                  "stopped_early": hist.stopped_early, "best_epoch": hist.best_epoch})
        if diverged:
            raise TrainingFailed(_diverged_line(diverged, trained, dtype, None, seed))
    a, b = backends
    tests = {}
    for metric in metrics[a][0]:
        va = [m[metric] for m in metrics[a]]
        vb = [m[metric] for m in metrics[b]]
        delta, kind = _margin(metric, va + vb, margin, rel_margin)
        t = tost_paired([y - x for x, y in zip(va, vb, strict=True)], delta, alpha)
        t["margin_kind"] = kind
        tests[metric] = t
    verdicts = {t["verdict"] for t in tests.values()}
    verdict = ("equivalent" if verdicts == {"equivalent"} else "different" if "different" in verdicts
               else "inconclusive")
    note = _fold_note(spec)
    if spec.train.mixed:
        note = "; ".join(n for n in (note, (
            f"trained with precision: {spec.train.precision}, as the spec says: mixed precision is "
            "outside the step-by-step contract, so only where the trainings end is compared")) if n)
    worst = max(tests, key=lambda k: tests[k]["p_value"])
    summary = (f"{verdict}: {b} − {a} final {split} metrics over {seeds} seeds, TOST at α = {alpha:g}; "
               + ", ".join(f"{k} mean Δ {t['mean_difference']:+.3g} (margin ±{t['margin']:.3g}, "
                           f"p = {t['p_value']:.3g})" for k, t in tests.items()))
    return {"mode": "seeds", "dtype": dtype, "backends": list(backends), "seeds": seed_list, "split": split,
            "alpha": alpha, "margin": margin, "rel_margin": rel_margin, "metrics": metrics, "runs": courses,
            "differences": {k: t["differences"] for k, t in tests.items()},
            "p_values": {k: t["p_value"] for k, t in tests.items()}, "tests": tests,
            "least_shown": worst, "verdict": verdict, "passed": verdict == "equivalent", "summary": summary,
            "note": note}
