"""`dlc lr-find`: the learning-rate range test (Leslie Smith, "Cyclical Learning Rates for Training Neural
Networks", 2017; fastai's `lr_find`), framework-free: it talks to a backend only through the Session
protocol (set_lr before each step, train_epoch over one batch).

From the spec's seeded initial weights, with the spec's optimizer (its other settings kept) and dlc's seeded
batch order (consecutive epochs' permutations, as the training loop takes them, augmentation included), step
i of N trains one batch at the learning rate

    lr_i = start · (end / start)^(i / (N − 1))        i = 0 .. N − 1 (the last step runs at `end`)

The spec's schedule, validation, plateau and early stopping are off. Each step's training loss is smoothed
as fastai does, an exponential moving average with bias correction (beta = 0.98):

    avg_i = beta · avg_{i−1} + (1 − beta) · loss_i,  avg_{−1} = 0;  smoothed_i = avg_i / (1 − beta^(i+1))

and the test stops early (`stopped_at_step`) at the first step whose loss is not finite or whose smoothed
loss exceeds 4 × the smallest smoothed loss so far.

The suggestion (`suggested_lr`, rule STEEPEST): the learning rate where the smoothed loss falls fastest
against log10(lr). The slope is measured over half a decade of lr (each pair of steps i, i + w with w the
steps that span half a decade: (smoothed_{i+w} − smoothed_i) / (log10 lr_{i+w} − log10 lr_i)), so that the
batch-to-batch wobble of the curve does not pass for a descent; the search runs from the end of the first
tenth of the steps (where the bias-corrected average still follows single batches) to the smoothed loss's
minimum, and the geometric middle of the steepest pair, √(lr_i · lr_{i+w}), is suggested. Also given:
`min_loss_lr`, where the smoothed loss is smallest, and the minimum/10 rule's value, min_loss_lr / 10 (the
average lags the raw loss by about 1/(1 − beta) = 50 steps, so the minimum sits right of the raw loss's: a
tenth of it is the classic margin). When no half-decade before the minimum falls (the loss never fell, or
fell only in the first tenth), the minimum/10 value is suggested instead (at least `start`), and the rule
says so.
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlc.compiler.diagnostics import DlcError
from dlc.compiler.spec import Spec
from dlc.runtime.rundir import cannot_write_in, nearest_existing, save_figure

BETA = 0.98  # the smoothing of the loss (fastai's)
DIVERGED = 4.0  # stop when the smoothed loss exceeds this many times its minimum
SKIP_START = 0.1  # the first tenth of the steps is not searched for the steepest slope
SLOPE_DECADES = 0.5  # the span of lr the slope is measured over
DEFAULT_START = 1e-7
DEFAULT_END = 10.0
DEFAULT_STEPS = 200
MIN_STEPS = 10
MAX_STEPS = 100_000  # (more is no finer a curve, and 1e20 steps failed in numpy with an internal error)
LR_PATH = "optimizer.learning_rate"  # the search space the test replaces

STEEPEST = ("steepest: the middle of the half-decade of lr over which the smoothed loss falls fastest, "
            "between the first tenth of the steps and the smoothed loss's minimum")
MIN_OVER_10 = "minimum/10: a tenth of the lr where the smoothed loss is smallest"


class LRFindError(DlcError, ValueError):
    """Options the test cannot run with (start ≥ end, too few steps, a spec with other search spaces)."""


@dataclass
class LRFind:
    """The range test's curve and suggestion (to_json: what `dlc lr-find --json` prints)."""

    spec_name: str
    backend: str
    dtype: str
    seed: int
    start: float
    end: float
    steps: int  # asked for
    batch_size: int
    optimizer: str
    data: str  # which samples the steps draw from
    lrs: list[float] = field(default_factory=list)  # per step run
    losses: list[float] = field(default_factory=list)  # raw training loss per step
    smoothed: list[float] = field(default_factory=list)
    stopped_at_step: int | None = None  # 1-based step of the early stop; None: every step ran
    stop_reason: str | None = None
    suggested_lr: float | None = None
    rule: str = STEEPEST
    steepest_lr: float | None = None
    min_loss_lr: float | None = None
    min_loss: float | None = None
    notes: list[str] = field(default_factory=list)
    plot: Path | None = None

    def __repr__(self) -> str:
        """The test in a line and its suggestion, not every step's lr and loss."""
        from dlc.runtime.reprs import number

        ran = len(self.lrs)
        stop = f", stopped at step {self.stopped_at_step}" if self.stopped_at_step else ""
        said = "no suggestion" if self.suggested_lr is None else \
            f"suggested lr {number(self.suggested_lr)} ({self.rule.split(':')[0]})"
        return (f"LRFind({self.spec_name} on {self.backend}, {ran} of {self.steps} steps, lr "
                f"{number(self.start)}→{number(self.end)}{stop}: {said})")

    @property
    def min_over_10_lr(self) -> float | None:
        return None if self.min_loss_lr is None else self.min_loss_lr / 10

    def to_json(self) -> dict:
        """The fields `dlc lr-find --json` prints, the numbers as they are (a diverged step's loss is nan:
        dlc.cli.jsonout writes it as null)."""
        return {"spec": self.spec_name, "backend": self.backend, "dtype": self.dtype, "seed": self.seed,
                "start": self.start, "end": self.end, "steps": self.steps, "batch_size": self.batch_size,
                "optimizer": self.optimizer, "data": self.data,
                "lrs": list(self.lrs), "losses": list(self.losses), "smoothed_losses": list(self.smoothed),
                "suggested_lr": self.suggested_lr, "rule": self.rule, "steepest_lr": self.steepest_lr,
                "min_loss_lr": self.min_loss_lr, "min_loss_lr_over_10": self.min_over_10_lr,
                "min_smoothed_loss": self.min_loss,
                "stopped_at_step": self.stopped_at_step, "stop_reason": self.stop_reason,
                "notes": list(self.notes), "plot": None if self.plot is None else str(self.plot)}


# ------------------------------------------------------------------------------------------------ checks

def check_options(steps: int, start: float, end: float) -> None:
    """LRFindError (one line) for options the test cannot run with; TypeError for a count or a rate of another
    type (the API's `steps="5"` failed in a comparison, "'<' not supported between ...")."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"steps must be a whole number, not {type(steps).__name__}")
    for name, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be a number (a learning rate), not {type(value).__name__}")
    if not (math.isfinite(start) and math.isfinite(end)) or start <= 0:
        raise LRFindError(f"--start and --end must be positive numbers, finite and above 0 (got --start "
                          f"{start:g}, --end {end:g})")
    if start >= end:
        raise LRFindError(f"--start must be below --end (got --start {start:g}, --end {end:g}): the learning "
                          "rate increases from one to the other")
    if steps < MIN_STEPS:
        raise LRFindError(f"--steps must be at least {MIN_STEPS} (got {steps}): the curve needs points to "
                          "smooth")
    if steps > MAX_STEPS:
        raise LRFindError(f"--steps must be at most {MAX_STEPS} (got {steps}): the default {DEFAULT_STEPS} "
                          "already spans the range finely; the test stops where the loss diverges anyway")


def _why_no_folder(folder: Path, e: OSError) -> str:
    """Why `folder` cannot be made: a file in the way of it ("File exists" said of the folder itself, which is
    not there), else the system's words."""
    there = nearest_existing(folder)
    if there.exists() and not there.is_dir():
        return f"{os.path.abspath(there)} is a file, not a folder"
    return str(e.strerror or e)


def check_out(path: str | Path) -> Path:
    """The plot's path, its folder made now (before any training); LRFindError when it cannot be written."""
    if not str(path).strip():  # (Path("") is ".": "--out . is a folder" named no folder the user gave)
        raise LRFindError("--out: an empty name is not a file: name the PNG file to write, e.g. lr_find.png")
    path = Path(path)
    # the folder named as an absolute path: the default lr_find.png's folder is the current one, unnamed
    folder, instead = os.path.abspath(path.parent), "give --out a file in a folder you can write"
    try:
        is_dir = path.is_dir()
    except OSError as e:  # (a name too long, a folder it may not look in: is_dir raises rather than say no)
        fix = "give a shorter name" if e.errno == errno.ENAMETOOLONG else instead
        raise LRFindError(f"--out {path}: {e.strerror or e}; {fix}") from None
    if is_dir:
        raise LRFindError(f"--out {path} is a folder: name the PNG file to write, e.g. "
                          f"{path / 'lr_find.png'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LRFindError(f"--out {path}: cannot make its folder {folder} ({_why_no_folder(path.parent, e)}"
                          f"); {instead}") from None
    if (why := cannot_write_in(path.parent)) is not None:
        raise LRFindError(f"--out {path}: cannot write a file in its folder {folder} ({why}); {instead}")
    return path


def other_search_spaces(spec: Spec) -> list:
    """The spec's search spaces other than the learning rate's (which the test replaces anyway)."""
    return [s for s in spec.search_spaces if s.path != LR_PATH]


def blockers(result) -> list:
    """What stops the range test on a compiled spec: `dlc run`'s blockers, except a search space over the
    optimizer's learning rate (the test sets the lr itself); a search space of anything else is an error
    positioned on it."""
    from dlc.compiler.diagnostics import Diagnostic, Span
    from dlc.runtime.support import run_blockers

    spec = result.spec
    out = [d for d in run_blockers(result) if d.code != "E502"]
    others = other_search_spaces(spec) if spec is not None else []
    if others:
        s = others[0]
        first: dict[tuple[int, int], str] = {}  # a call's first use names it: a call in a block used twice
        for o in others:                        # is one parameter, as `dlc tune` has it
            first.setdefault(o.at, o.path)
        names = ", ".join(first.values())
        out.append(Diagnostic(
            "E502", f"this spec searches {names}; `dlc lr-find` needs a concrete model (a search space of "
            "the learning rate alone is fine: the test replaces it)",
            Span(s.at[0], s.at[1], s.end[0], s.end[1]),
            "run it on a concrete spec: `dlc tune`'s best.dlspec, or this one with the search spaces "
            "replaced by values"))
    return out


def data_used(spec: Spec, n_train: int, n_total: int) -> str:
    """Which samples the steps draw from, in words."""
    from dlc.compiler.spec import KFold

    split = spec.data.split if spec.data is not None else None
    if isinstance(split, KFold):
        what = "every row but the test part" if split.test else "every row"
        return f"{what} ({n_train} of {n_total}): the spec's split is kfold({split.k}); no fold is held out"
    return f"the training part of the holdout split ({n_train} of {n_total} rows; validation and test unused)"


# ----------------------------------------------------------------------------------------------- the test

def lr_schedule(start: float, end: float, steps: int) -> np.ndarray:
    """The learning rate of each step: exponential from `start` to `end`, both included."""
    t = np.arange(steps) / (steps - 1)
    if math.isfinite(end / start):
        lrs = start * (end / start) ** t
    else:  # (1e-320 → 1 overflows the ratio: every lr past the first was inf; in logs it does not)
        lrs = np.exp(math.log(start) + (math.log(end) - math.log(start)) * t)
    lrs[0], lrs[-1] = start, end  # exactly, not within rounding
    return lrs


def batches(spec: Spec, n: int, steps: int):
    """(epoch, indices) of each of `steps` steps in dlc's seeded order: each epoch's permutation cut into
    batches of batch_size (its last one smaller, as the training loop takes them), epoch after epoch."""
    from dlc.reference.rng import epoch_permutation

    bs = spec.train.batch_size
    done, epoch = 0, 0
    while done < steps:
        perm = epoch_permutation(spec.seed, epoch, n, spec.train.shuffle)
        for i in range(0, n, bs):
            if done == steps:
                return
            yield epoch, perm[i:i + bs]
            done += 1
        epoch += 1


def run_test(session, spec: Spec, data, *, steps: int = DEFAULT_STEPS, start: float = DEFAULT_START,
             end: float = DEFAULT_END, on_step: Callable[[int, float, float], None] | None = None,
             backend: str = "", notes: list[str] | None = None) -> LRFind:
    """The range test on a fresh session (the spec's initial weights): one batch per step at an exponentially
    rising lr, stopping when the smoothed loss diverges; `on_step(step, lr, loss)` after each step."""
    from dlc.runtime.augment import augment

    check_options(steps, start, end)
    lrs = lr_schedule(start, end, steps)
    n = len(data.train.x)
    augments = spec.data.augment if spec.data is not None else []
    total = sum(len(p.x) for p in (data.train, data.val, data.test) if p is not None)
    out = LRFind(spec.name, backend or getattr(session, "name", ""), spec.dtype, spec.seed, start, end, steps,
                 spec.train.batch_size, spec.optimizer.kind, data_used(spec, n, total),
                 notes=list(notes or []))
    handle, handle_epoch = None, -1
    avg, best = 0.0, math.inf
    for i, (epoch, idx) in enumerate(batches(spec, n, steps)):
        if handle is None or (augments and epoch != handle_epoch):
            x = augment(data.train.x, augments, spec.seed, epoch) if augments else data.train.x
            handle, handle_epoch = session.load_data(x, data.train.y), epoch
        lr = float(lrs[i])
        session.set_lr(lr)
        losses, _, _ = session.train_epoch(handle, idx, spec.train.batch_size)
        loss = float(losses[0])
        out.lrs.append(lr)
        out.losses.append(loss)
        if on_step is not None:
            on_step(i + 1, lr, loss)
        if not math.isfinite(loss):
            out.smoothed.append(math.nan)
            out.stopped_at_step = i + 1
            out.stop_reason = f"the loss became {'nan' if math.isnan(loss) else 'inf'} at lr {lr:.3g}"
            break
        avg = BETA * avg + (1 - BETA) * loss
        smooth = avg / (1 - BETA ** (i + 1))
        out.smoothed.append(smooth)
        if not math.isfinite(smooth) or smooth > DIVERGED * best:
            out.stopped_at_step = i + 1
            out.stop_reason = (f"the smoothed loss {smooth:.4g} exceeded {DIVERGED:g} × its minimum "
                               f"{best:.4g} at lr {lr:.3g}")
            break
        best = min(best, smooth)
    suggest(out)
    return out


def suggest(r: LRFind) -> None:
    """Fill in min_loss_lr, steepest_lr and the suggestion from the recorded curve (module docstring)."""
    s = np.asarray(r.smoothed, dtype=np.float64)
    lrs = np.asarray(r.lrs, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(s))
    if not finite.size:
        r.rule = "none: no finite loss was recorded"
        r.notes.append("no step gave a finite loss: nothing to suggest; try a smaller --start")
        return
    lo = int(finite[np.argmin(s[finite])])
    r.min_loss_lr, r.min_loss = float(lrs[lo]), float(s[lo])
    lag = round(1 / (1 - BETA))
    if r.steps < 2 * lag:  # (30 steps over 8 decades suggested 2.4e-6 where 200 steps suggest 0.015)
        r.notes.append(f"only {r.steps} steps: the smoothed loss lags each step's by about {lag} steps, so "
                       f"the suggestion is unreliable below {2 * lag} steps; use --steps {2 * lag} or more "
                       f"(default {DEFAULT_STEPS})")
    first = int(r.steps * SKIP_START)
    logs = np.log10(lrs)
    per_step = (math.log10(r.end) - math.log10(r.start)) / (r.steps - 1)
    w = max(1, round(SLOPE_DECADES / per_step))
    if lo - first >= w:
        left = np.arange(first, lo - w + 1)
        slopes = (s[left + w] - s[left]) / (logs[left + w] - logs[left])
        i = int(left[int(np.argmin(slopes))])
        if s[i] - s[i + w] > 1e-9 * max(1.0, abs(s[i])):  # a fall, not rounding on a flat curve
            r.steepest_lr = float(10 ** ((logs[i] + logs[i + w]) / 2))
    if r.steepest_lr is not None:
        r.suggested_lr, r.rule = r.steepest_lr, STEEPEST
    else:
        r.suggested_lr = max(r.min_loss_lr / 10, r.start)
        clamped = ", raised to --start, the lowest lr tested" if r.min_loss_lr / 10 < r.start else ""
        r.rule = (MIN_OVER_10 + clamped + " (no half-decade of lr between the first tenth of the steps and "
                  "the minimum lowers the smoothed loss: there is no steepest descent to measure)")
        r.notes.append("the loss barely fell before it rose: try a smaller --start, or more --steps")


# ----------------------------------------------------------------------------------------------- the plot

def plot(r: LRFind, path: str | Path) -> Path:
    """The PNG: the smoothed loss (and each step's loss, faint) against the learning rate on a log axis, the
    suggestion and the minimum marked; written atomically (its folder made if missing)."""
    from dlc.runtime.rundir import figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lrs = np.asarray(r.lrs, dtype=np.float64)
    raw = np.asarray(r.losses, dtype=np.float64)
    smooth = np.asarray(r.smoothed, dtype=np.float64)
    fig, axes = figure(figsize=(7.5, 4.6))
    ax = axes[0][0]
    ok = np.isfinite(raw)
    ax.plot(lrs[ok], raw[ok], color="tab:blue", alpha=0.25, linewidth=0.9, label="loss per step")
    ok = np.isfinite(smooth)
    ax.plot(lrs[ok], smooth[ok], color="tab:blue", linewidth=1.8, label=f"smoothed (EMA, beta {BETA:g})")
    ax.set_xscale("log")
    if r.min_loss_lr is not None and r.min_loss is not None:
        ax.plot([r.min_loss_lr], [r.min_loss], "o", color="tab:gray", markersize=6,
                label=f"minimum: lr {r.min_loss_lr:.3g} (/10: {r.min_over_10_lr:.3g})")
    if r.suggested_lr is not None:
        ax.axvline(r.suggested_lr, color="tab:red", linestyle="--", linewidth=1.3,
                   label=f"suggested lr {r.suggested_lr:.3g} ({r.rule.split(':')[0]})")
        ok = np.isfinite(smooth)
        y = float(np.interp(math.log10(r.suggested_lr), np.log10(lrs[ok]), smooth[ok]))
        ax.plot([r.suggested_lr], [y], "o", color="tab:red", markersize=6)
    finite = smooth[np.isfinite(smooth)]
    if finite.size:  # the raw loss may spike far above the smoothed curve at the end: keep the curve readable
        lo = min(float(finite.min()), float(raw[np.isfinite(raw)].min(initial=finite.min())))
        # the top: the smoothed curve up to its minimum, not the divergence after it (a last smoothed loss
        # of 62 flattened a descent from 2.3 to 1.5 into the axis), which runs off the top instead
        upto = smooth[: int(np.nanargmin(np.where(np.isfinite(smooth), smooth, np.nan))) + 1]
        hi = max(float(upto[np.isfinite(upto)].max()),
                 float(raw[np.isfinite(raw)][: max(1, len(raw) // 10)].max(initial=0)))
        pad = (hi - lo) * 0.05 or abs(hi) * 0.1 or 1.0
        ax.set_ylim(max(lo - pad, 0) if lo >= 0 else lo - pad, hi + pad)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    end = (f"stopped at step {r.stopped_at_step}" if r.stopped_at_step is not None
           else f"all {r.steps} steps")
    ax.set_title(f"lr range test: {r.spec_name} ({r.backend}, {r.dtype}, {r.optimizer}, "
                 f"batch {r.batch_size}; {end})", fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return save_figure(fig, path)
