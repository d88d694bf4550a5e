"""The doctor's rules: the tuning guides' diagnoses, measured on a run's history (history.json: loss, metrics,
val_*, lr per epoch), its per-layer evidence (evidence.json: gradient norm, update/weight ratio, activation
statistics, dead and saturated fractions per layer and epoch, and every step's loss) and how it ended
(run.json's `failed`, metrics.json). docs/DOCTOR.md states every rule with its threshold; the constants below
are those thresholds, and `dlc doctor --help` lists them.

Each rule looks at the run up to an epoch (a `Case`, cut with `Case.until(epoch)`), so the same rules serve
the report after the run (`diagnose`) and the live warnings during it (dlc.runtime.doctor.LiveDoctor). Nothing
here reads files, prints or imports a framework.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeGuard

# ------------------------------------------------------------------------------------------------ the ids

IDS = ("underfitting", "overfitting", "divergence", "vanishing_gradients", "exploding_gradients", "dead_relu",
       "saturation", "plateau", "lr_too_low", "healthy")
TITLES = {"underfitting": "underfitting", "overfitting": "overfitting", "divergence": "divergence",
          "vanishing_gradients": "vanishing gradients", "exploding_gradients": "exploding gradients",
          "dead_relu": "dead ReLUs", "saturation": "saturated units", "plateau": "plateau",
          "lr_too_low": "learning rate too low", "healthy": "healthy"}
# most severe first; within a level, a cause before its symptom (the order --fix picks in)
LEVELS = ("critical", "high", "medium", "low", "none")
PRIORITY = ("divergence", "exploding_gradients", "vanishing_gradients", "dead_relu", "saturation",
            "lr_too_low", "plateau", "overfitting", "underfitting", "healthy")

# --------------------------------------------------------------------------------------------- thresholds

# overfitting: val_loss rising this many epochs in a row while the training loss falls (by more than
# PLATEAU_IMPROVEMENT, relative, over those epochs: a loss flat on a plateau does not fall), or ...
OVERFIT_RISING_EPOCHS = 3
# ... val_loss this fraction above its minimum, reached at least OVERFIT_RISING_EPOCHS epochs before the end,
# while the training loss kept falling, or ...
OVERFIT_VAL_RISE = 0.10
# ... the train accuracy above the validation accuracy by more than this (high above OVERFIT_GAP_HIGH)
OVERFIT_GAP = 0.05
OVERFIT_GAP_HIGH = 0.15
# ... and, when the number of validation samples n is known, larger than this many standard errors of the
# validation accuracy p, sqrt(p (1 - p) / n) (3 errors in 30 samples are not a gap)
OVERFIT_GAP_SE = 2.0
# underfitting with --target-accuracy T: train accuracy below T - UNDERFIT_MARGIN; without a target the train
# metric is its own reference (a model with the capacity fits its training data): train error (1 - accuracy)
# above UNDERFIT_TRAIN_ERROR; without an accuracy metric: the final training loss above UNDERFIT_LOSS_FRACTION
# of the first step's (or first epoch's) loss. High when the shortfall is above UNDERFIT_HIGH.
UNDERFIT_MARGIN = 0.02
UNDERFIT_TRAIN_ERROR = 0.05
UNDERFIT_LOSS_FRACTION = 0.5
UNDERFIT_HIGH = 0.20
# ... and the regularization it names as a likely cause (and --fix lowers first): a Dropout rate above
# HEAVY_DROPOUT, an L1 or L2 factor on a kernel of HEAVY_WEIGHT_DECAY or more (the guides: dropout 0.2-0.5,
# L2 1e-5-1e-3)
HEAVY_DROPOUT = 0.5
HEAVY_WEIGHT_DECAY = 1e-2
# ... and few updates: fewer than FEW_STEPS_PER_EPOCH optimizer steps an epoch (a batch as large as a quarter
# of the training data or more); --fix then cuts the batch size toward FIX_STEPS_PER_EPOCH steps an epoch
FEW_STEPS_PER_EPOCH = 4
FIX_STEPS_PER_EPOCH = 10
# dead_relu and underfitting name a hidden layer whose kernel starts constant (every unit the same: they get
# the same gradient and stay the same, the symmetry that random initialization breaks) as the likely cause
SYMMETRIC_INITS = ("zeros", "ones", "constant")
# divergence: a non-finite loss, a step loss above DIVERGE_STEP_FACTOR x the first step's, or an epoch's
# loss above DIVERGE_EPOCH_FACTOR x the first epoch's; it "began" at the first step above
# DIVERGE_ONSET_FACTOR x the first step's loss
DIVERGE_STEP_FACTOR = 10.0
DIVERGE_EPOCH_FACTOR = 3.0
DIVERGE_ONSET_FACTOR = 2.0
LR_DOWN = 10.0  # the divergence fix: the learning rate divided by this (the guides: 3-10x)
# vanishing gradients: the first weighted layer's gradient norm VANISH_RATIO x smaller than the last's; high
# from VANISH_HIGH x, or when the first layer's update/weight ratio is below LR_LOW_RATIO (it barely moves)
VANISH_RATIO = 100.0
VANISH_HIGH = 1000.0
# exploding gradients: a layer's gradient norm non-finite, EXPLODE_GROWTH x its first epoch's, or the first
# layer's EXPLODE_RATIO x the last's
EXPLODE_GROWTH = 100.0
EXPLODE_RATIO = 100.0
# dead ReLUs / saturation: a layer with more than this fraction of its units dead (never firing over the probe
# samples) / saturated (sigmoid or tanh in its flat tails); high above SEVERE_FRACTION
DEAD_FRACTION = 0.5
SATURATED_FRACTION = 0.5
SEVERE_FRACTION = 0.9
# plateau: the training loss improving by less than PLATEAU_IMPROVEMENT (relative) over PLATEAU_EPOCHS epochs
# at a constant learning rate, while the model does not fit its training data yet (train accuracy below
# FIT_ACCURACY when measured)
PLATEAU_EPOCHS = 5
PLATEAU_IMPROVEMENT = 0.01
FIT_ACCURACY = 0.99
# ... and at a rate a schedule had cut PLATEAU_DECAYED x or more below the first epoch's, the remedy is to
# decay later and less, not more
PLATEAU_DECAYED = 100.0
# lr_too_low: the training loss falling in each of the last LR_LOW_EPOCHS epochs, every layer's
# update/weight ratio below LR_LOW_RATIO, and the train metric far from the target (underfitting's test); the
# fix raises the rate toward an update ratio of HEALTHY_UPDATE_RATIO, by 3-10x
LR_LOW_EPOCHS = 3
LR_LOW_RATIO = 1e-4
HEALTHY_UPDATE_RATIO = 1e-3
# ... or (whatever the update ratios) the loss fell in each of those epochs yet barely moved over the whole
# run: the last epoch's training loss still above LR_LOW_STUCK of the first step's (a slow, steady fall from
# the start: the guides' curve of a rate too low), with no per-layer cause (vanishing gradients, dead ReLUs,
# saturation, a divergence) that explains a stuck loss instead, and a rate that never rose (not a warm-up)
LR_LOW_STUCK = 0.9

THRESHOLDS = {name: value for name, value in globals().items()
              if name.isupper() and isinstance(value, (int, float)) and not isinstance(value, bool)}


# ------------------------------------------------------------------------------------------- the findings


@dataclass
class Diagnosis:
    """One finding: `evidence` (the numbers and epochs it rests on), `remedy` (the guides' advice, for this
    run), `line` (the one-line live warning), the epoch it showed at, `facts` (the numbers, for machines)
    and, once planned, `spec_change` (what --fix would write)."""

    id: str
    severity: str
    evidence: str
    remedy: str
    line: str = ""
    epoch: int | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    spec_change: dict | None = None

    @property
    def title(self) -> str:
        return TITLES[self.id]

    def rank(self) -> tuple[int, int]:
        return LEVELS.index(self.severity), PRIORITY.index(self.id)

    def to_json(self) -> dict:
        return {"id": self.id, "severity": self.severity, "evidence": self.evidence, "remedy": self.remedy,
                "spec_change": self.spec_change, "epoch": self.epoch, "facts": self.facts}


# what a stuck optimization shows in the curves: listed after a cause that explains it (below)
CONSEQUENCES = ("underfitting", "plateau")
CAUSES = ("divergence", "exploding_gradients", "vanishing_gradients", "dead_relu", "saturation", "lr_too_low")


def ranked(found: list[Diagnosis]) -> list[Diagnosis]:
    """Most severe first; underfitting and a plateau after any cause found with them (vanishing gradients,
    dead ReLUs, ...), which is what to treat first; overfitting after underfitting found with it (the bias
    first: regularizing a model that does not fit its training data adds to its bias)."""
    if any(d.id == "underfitting" for d in found):
        for d in found:
            if d.id == "overfitting" and "bias_first" not in d.facts:
                d.facts["bias_first"] = True
                d.evidence += (" (but the model does not fit its training data yet, the underfitting above: "
                               "reduce the bias first; regularizing now adds to it)")
    causes = [d for d in found if d.id in CAUSES]
    if not causes:
        return sorted(found, key=lambda d: (_bias_first(d), *d.rank()))
    for d in found:
        if d.id in CONSEQUENCES and "explained" not in d.facts:
            d.facts["explained"] = causes[0].id
            d.evidence += f" (likely a consequence of the {causes[0].title} above: treat that first)"
    return sorted(found, key=lambda d: (2 if _bias_first(d) else d.id in CONSEQUENCES, *d.rank()))


def _bias_first(d: Diagnosis) -> bool:
    """An overfitting found with underfitting: ranked after it."""
    return d.id == "overfitting" and bool(d.facts.get("bias_first"))


# ------------------------------------------------------------------------------------------------ the run


@dataclass
class Model:
    """What the rules need to know of the spec (from its IR, no framework): the loss's task, the metric names,
    the optimizer's learning rate, whether it clips, the schedule's kind, early stopping, the normalisation,
    and the weighted layers in order (name, kind, activation, units)."""

    task: str = "categorical"
    metrics: tuple[str, ...] = ()
    lr: float | None = None
    optimizer: str = ""
    clips: bool = False
    schedule: str | None = None
    early_stopping: bool = False
    normalize: str | None = None
    layers: list[dict] = field(default_factory=list)
    # the strong regularization (HEAVY_DROPOUT, HEAVY_WEIGHT_DECAY): (layer, "dropout" | "l1" | "l2", value)
    heavy: list[tuple[str, str, float]] = field(default_factory=list)
    batch_size: int | None = None

    @staticmethod
    def of(spec) -> Model:
        if spec is None:
            return Model()
        layers, heavy = [], []
        for info in spec.walk():
            layer = info.layer
            heavy.extend(_heavy(layer))
            act = getattr(getattr(layer, "activation", None), "name", None)
            if info.weights or layer.kind == "Activation":
                init = getattr(getattr(layer, "kernel_init", None), "name", None)
                layers.append({"name": layer.name, "kind": layer.kind, "activation": act,
                               "units": getattr(layer, "units", None) or getattr(layer, "filters", None),
                               "weighted": bool(info.weights), "kernel_init": init})
        opt = spec.optimizer
        return Model(task=spec.task, metrics=tuple(m.name for m in spec.metrics),
                     lr=opt.learning_rate, optimizer=opt.kind,
                     clips=any(getattr(opt, k, None) is not None for k in ("clipnorm", "clipvalue",
                                                                           "global_clipnorm")),
                     schedule=spec.schedule.kind if spec.schedule is not None else None,
                     early_stopping=spec.train.early_stopping is not None,
                     normalize=spec.data.normalize if spec.data is not None else None, layers=layers,
                     heavy=heavy, batch_size=spec.train.batch_size)


def _symmetric(model: Model) -> list[dict]:
    """The hidden weighted layers whose kernel starts constant (SYMMETRIC_INITS)."""
    weighted = [x for x in model.layers if x.get("weighted")]
    return [x for x in weighted[:-1] if x.get("kernel_init") in SYMMETRIC_INITS]


def _symmetry_text(same: list[dict]) -> str:
    names = ", ".join(f"{x['name']} (kernel_init={x['kernel_init']})" for x in same)
    kernels = f"the kernels of {names} start" if len(same) > 1 else f"the kernel of {names} starts"
    return (f"{kernels} constant: every unit of the layer computes the same and gets the same gradient, so "
            "they stay the same (the symmetry random initialization breaks)")


def _heavy(layer) -> list[tuple[str, str, float]]:
    """A layer's strong regularization: a Dropout rate above HEAVY_DROPOUT, a kernel L1/L2 factor of
    HEAVY_WEIGHT_DECAY or more."""
    out = []
    rate = getattr(layer, "rate", None) if layer.kind == "Dropout" else None
    if isinstance(rate, (int, float)) and rate > HEAVY_DROPOUT:
        out.append((layer.name, "dropout", float(rate)))
    reg = getattr(layer, "kernel_reg", None)
    for key in ("l1", "l2"):
        v = getattr(reg, key, None)
        if isinstance(v, (int, float)) and v >= HEAVY_WEIGHT_DECAY:
            out.append((layer.name, key, float(v)))
    return out


class Scans:
    """What the rules found scanning a live run's lists (its rows, evidence epochs and step losses), kept from
    one epoch's Case to the next: the live doctor judges after every epoch, and scanning the whole history
    each time made a long run quadratic (600 epochs: 3 of 23 s). A scan is continued from where it stopped
    while its list is the same object and no shorter (a live run's lists only grow); else it starts again."""

    def __init__(self) -> None:
        self._done: dict[object, tuple[Sequence, int, Any]] = {}

    def fold(self, key: object, items: Sequence, step: Callable[[Any, Any], Any], start: Any) -> Any:
        """`start` folded with `step(state, item)` over `items`, the items folded before (under `key`)
        skipped."""
        state, n = start, 0
        kept = self._done.get(key)
        if kept is not None and kept[0] is items and len(items) >= kept[1]:
            _, n, state = kept
        for i in range(n, len(items)):
            state = step(state, items[i])
        self._done[key] = (items, len(items), state)
        return state

    def first(self, key: object, items: Sequence, test: Callable[[Any], bool], start: int = 0) -> int | None:
        """The index of the first of `items` from `start` that passes `test`; None when none does."""
        kept = self._done.get(key)
        n = start
        if kept is not None and kept[0] is items and len(items) >= kept[1]:
            if kept[2] is not None:
                return kept[2]
            n = max(n, kept[1])
        found = next((i for i in range(n, len(items)) if test(items[i])), None)
        self._done[key] = (items, len(items), found)
        return found


@dataclass
class Case:
    """A run as the rules see it, up to an epoch: the history rows, the evidence (None: not recorded), why it
    failed (run.json), the final metrics (metrics.json; None while it trains), the spec's Model and the
    target accuracy (--target-accuracy). `live`: judged while it trains (no end-of-run rule). `scans`: a live
    run's Scans, carried from epoch to epoch (None: every list is scanned whole)."""

    rows: list[dict]
    evidence: dict | None = None
    failure: str | None = None
    final: dict | None = None
    model: Model = field(default_factory=Model)
    target_accuracy: float | None = None
    live: bool = False
    val_samples: int | None = None  # how many samples the validation metrics are measured on, when known
    train_samples: int | None = None  # how many samples it trains on, when known
    scans: Scans | None = None

    def until(self, epoch: int) -> Case:
        """The run as it was at the end of `epoch` (while training: no final metrics, no failure)."""
        ev = self.evidence
        if ev is not None:
            epochs = [e for e in _epochs(ev) if e.get("epoch", 0) <= epoch]
            last = epochs[-1].get("last_step") if epochs else 0
            steps = ev.get("step_losses") or []
            ev = {**ev, "epochs": epochs, "step_losses": steps[:last] if isinstance(last, int) else steps}
        return replace(self, rows=[r for r in self.rows if r.get("epoch", 0) <= epoch], evidence=ev,
                       failure=None, final=None, live=True)

    @property
    def last_epoch(self) -> int:
        return self.rows[-1]["epoch"] if self.rows else 0


# -------------------------------------------------------------------------------------------- helpers


def epochs(n: int) -> str:
    """'1 epoch', '3 epochs'."""
    return f"{n} epoch{'s' * (n != 1)}"


epochs_text = epochs  # (for a function whose local `epochs` is a list)


def num(x: float | None) -> str:
    """A number as the report shows it: 4 significant digits."""
    if x is None:
        return "n/a"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return f"{x:.4g}"


def _finite(x: object) -> TypeGuard[float]:
    if type(x) is float:  # (first: the live doctor asks it of every step loss after every epoch)
        return math.isfinite(x)
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _num_or(x, default: float) -> float:
    return float(x) if _finite(x) else default


def _epochs(ev: dict | None) -> list[dict]:
    if not ev:
        return []
    return [e for e in ev.get("epochs") or [] if isinstance(e, dict)]


def _first(case: Case, key: object, items: Sequence, test: Callable[[Any], bool],
           start: int = 0) -> tuple[int, Any] | None:
    """(index, item) of the first of `items` from `start` that passes `test` (None: none does); a live run's
    scan (case.scans, under `key`, which names everything `test` depends on) goes on where it stopped."""
    if case.scans is None or type(items) is not list or not _hashable(key):
        return next(((i, v) for i, v in enumerate(items) if i >= start and test(v)), None)
    i = case.scans.first(key, items, test, start)
    return None if i is None else (i, items[i])


def _fold(case: Case, key: object, items: Sequence, step: Callable[[Any, Any], Any], start: Any) -> Any:
    """`start` folded with `step(state, item)` over `items`; a live run's fold (case.scans) goes on."""
    if case.scans is None or type(items) is not list or not _hashable(key):
        for item in items:
            start = step(start, item)
        return start
    return case.scans.fold(key, items, step, start)


def _hashable(key: object) -> bool:
    """A key a scan can be kept under (a hostile evidence.json's epoch or layer name may be a list)."""
    try:
        hash(key)
    except TypeError:
        return False
    return True


def _case_epochs(case: Case) -> list[dict]:
    """_epochs(case.evidence): in a live run the evidence's own list when every entry is a dict (no copy,
    so the scans of it go on from epoch to epoch)."""
    ev = case.evidence
    items = ev.get("epochs") if ev else None
    if case.scans is None or type(items) is not list \
            or _first(case, "not_a_dict", items, lambda e: not isinstance(e, dict)) is not None:
        return _epochs(ev)
    return items


def _ev_layers(ev: dict | None) -> list[dict]:
    """The evidence's layers, in the model's order."""
    if not ev:
        return []
    return [x for x in ev.get("layers") or [] if isinstance(x, dict) and "name" in x]


def _stat(epoch: dict, layer: str, key: str):
    v = ((epoch.get("layers") or {}).get(layer) or {}).get(key)
    return v if v is None or _finite(v) else None


def _loss(r: dict, key: str = "loss") -> float | None:
    v = r.get(key)
    return float(v) if _finite(v) else None


def _train_val_accuracy(case: Case) -> tuple[float | None, float | None, str]:
    """The train and validation accuracy the bias/variance rules compare, and where they come from: the
    final inference-mode metrics when the run finished (a `dlc run`'s or a cv fold's metrics.json; the
    train and validation measured alike), else the last epoch's row."""
    rows = case.rows
    if "accuracy" not in case.model.metrics and not (rows and "accuracy" in rows[-1]):
        return None, None, ""
    fin = case.final or {}
    tr, va = (fin.get("train") or {}).get("accuracy"), (fin.get("val") or {}).get("accuracy")
    if _finite(tr):
        if not _finite(va) and rows:
            va = rows[-1].get("val_accuracy")
        return float(tr), float(va) if _finite(va) else None, "metrics.json, inference mode"
    if not rows:
        return None, None, ""
    r = rows[-1]
    tr = r.get("accuracy")
    where = f"epoch {r['epoch']}"
    if _finite(va):  # (a cv fold from before dlc measured its train part: the running, training-mode figure)
        where += "'s running figure, in training mode; validation from metrics.json"
    else:
        va = r.get("val_accuracy")
    return float(tr) if _finite(tr) else None, float(va) if _finite(va) else None, where


def _first_step_loss(case: Case) -> float | None:
    steps = (case.evidence or {}).get("step_losses") or []
    found = _first(case, "finite_step", steps, _finite)
    return None if found is None else float(found[1])


def _bias(case: Case) -> dict | None:
    """How far the train metric is from its reference (underfitting's test, shared with lr_too_low): a dict
    with the shortfall, the threshold and a sentence; None when it cannot be judged."""
    train, _val, where = _train_val_accuracy(case)
    target = case.target_accuracy
    if train is not None and target is not None:
        short = round(target - train, 12)  # (0.95 short of 1 is 0.05, not 0.050000000000000044)
        return {"metric": "accuracy", "train": train, "reference": target, "shortfall": short,
                "fires": short > UNDERFIT_MARGIN,
                "text": f"train accuracy {num(train)} ({where}) against the target {num(target)}: "
                        f"{num(short)} short (the avoidable bias; the rule: more than {UNDERFIT_MARGIN})"}
    if train is not None:
        err = round(1 - train, 12)
        return {"metric": "accuracy", "train": train, "reference": 1.0, "shortfall": err,
                "fires": err > UNDERFIT_TRAIN_ERROR,
                "text": f"train accuracy {num(train)} ({where}), a train error of {num(err)}: with no "
                        "--target-accuracy the train metric is its own reference (the rule: a train error "
                        f"above {UNDERFIT_TRAIN_ERROR})"}
    rows = case.rows
    found = _first(case, "finite_loss", rows, lambda r: _loss(r) is not None)  # (the first and last of them)
    if found is None:
        return None
    start, start_where = _first_step_loss(case), "the first step's"
    if start is None:
        start, start_where = _loss(found[1]), "the first epoch's"
    if start is None or start <= 0:
        return None
    last = next(v for r in reversed(rows) if (v := _loss(r)) is not None)
    end = _num_or(((case.final or {}).get("train") or {}).get("loss"), last)
    frac = end / start
    return {"metric": "loss", "train": end, "reference": start, "shortfall": frac,
            "fires": frac > UNDERFIT_LOSS_FRACTION,
            "text": f"the training loss ended at {num(end)}, {num(frac)} of {start_where} {num(start)} (the "
                    f"rule without an accuracy metric: above {UNDERFIT_LOSS_FRACTION})"}


# ------------------------------------------------------------------------------------------------ rules


FAILED = re.compile(r"loss became (nan|inf) at epoch (\d+), step (\d+) \(learning rate ([-+0-9.e]+|nan|inf)")


def _where(case: Case, g: int) -> tuple[int | None, int]:
    """(epoch, step within it) of global step g (from 1), from the evidence's epoch step ranges."""
    epochs = _case_epochs(case)
    hit = _first(case, ("epoch_of_step", g), epochs, lambda e: isinstance(e.get("first_step"), int)
                 and isinstance(e.get("last_step"), int) and e["first_step"] <= g <= e["last_step"])
    if hit is not None:
        return hit[1]["epoch"], g - hit[1]["first_step"] + 1
    if epochs and isinstance(epochs[-1].get("last_step"), int):
        return epochs[-1]["epoch"] + 1, g - epochs[-1]["last_step"]  # the epoch that did not finish
    if not case.rows:
        return 1, g
    return None, g


def _at(epoch: int | None, step: int) -> str:
    return f"epoch {epoch}, step {step}" if epoch is not None else f"step {step} (overall)"


def _try_float(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


def _non_finite(case: Case, steps: list) -> tuple[dict, str] | None:
    """The first non-finite loss: training's own message (run.json), else the evidence's step losses, else
    the history."""
    m = FAILED.search(case.failure or "")
    if m:
        facts: dict[str, Any] = {"kind": m.group(1), "epoch": int(m.group(2)), "step": int(m.group(3))}
        lr = _try_float(m.group(4))
        if _finite(lr):
            facts["lr"] = lr
        return facts, (f"the loss became {m.group(1)} at epoch {m.group(2)}, step {m.group(3)}"
                       + (f" (learning rate {num(lr)})" if _finite(lr) else ""))
    found = _first(case, "non_finite_step", steps, lambda v: not _finite(v))
    if found is not None:
        bad = found[0] + 1  # (a step from 1)
        e, s = _where(case, bad)
        return ({"kind": "non-finite", "epoch": e, "step": s, "global_step": bad},
                f"the loss became non-finite at {_at(e, s)}")
    found = _first(case, "non_finite_row", case.rows, lambda r: "loss" in r and not _finite(r["loss"]))
    if found is not None:
        row = found[1]
        return ({"kind": "non-finite", "epoch": row["epoch"]},
                f"the loss of epoch {row['epoch']} is not finite")
    return None


def _exploded(case: Case, steps: list, first: float | None) -> tuple[dict, str] | None:
    """A finite loss that blew up: a step's (evidence) or an epoch's (history)."""
    if first is not None and first > 0:
        found = _first(case, ("step_over", first), steps,
                       lambda v: _finite(v) and v > DIVERGE_STEP_FACTOR * first)
        if found is not None:
            over = found[0] + 1
            e, s = _where(case, over)
            return ({"kind": "exploding", "epoch": e, "step": s, "global_step": over,
                     "loss": float(steps[over - 1]), "first_step_loss": first},
                    f"the step loss rose to {num(steps[over - 1])} at {_at(e, s)}, more than "
                    f"{num(DIVERGE_STEP_FACTOR)}x the first step's {num(first)}")
    l0 = _loss(case.rows[0]) if case.rows else None
    if l0 is None or l0 <= 0:
        return None
    found = _first(case, ("epoch_over", l0), case.rows,
                   lambda r: (v := _loss(r)) is not None and v > DIVERGE_EPOCH_FACTOR * l0, start=1)
    if found is None:
        return None
    # after the run: a spike the training loss came back from (below the first epoch's again, as a model that
    # fits its data in one epoch shows on a noisy step) is no divergence; while training it is not known yet
    if not case.live and any((v := _loss(r)) is not None and v < l0 for r in case.rows[found[0] + 1:]):
        return None
    row = found[1]
    return ({"kind": "exploding", "epoch": row["epoch"], "loss": row["loss"], "first_epoch_loss": l0},
            f"the training loss of epoch {row['epoch']} is {num(row['loss'])}, more than "
            f"{num(DIVERGE_EPOCH_FACTOR)}x the first epoch's {num(l0)}")


def divergence(case: Case) -> Diagnosis | None:
    steps = (case.evidence or {}).get("step_losses") or []
    first = _first_step_loss(case)
    found = _non_finite(case, steps) or _exploded(case, steps, first)
    if found is None:
        return None
    facts, text = found
    parts = [text]
    # where it began: the first step of the stretch above DIVERGE_ONSET_FACTOR x the first step's loss that
    # led to the blow-up (a spike in the first steps, which the run got over, is not where it began)
    upto = facts.get("global_step") or len(steps)
    onset = _onset(steps, min(upto, len(steps)), DIVERGE_ONSET_FACTOR * first) \
        if first is not None and first > 0 else None
    if onset is not None:
        e, s = _where(case, onset)
        facts.update(began_epoch=e, began_step=s, began_loss=float(steps[onset - 1]))
        parts.append(f"it began at {_at(e, s)}, where the step loss ({num(steps[onset - 1])}) passed "
                     f"{num(DIVERGE_ONSET_FACTOR)}x the first step's ({num(first)}) to stay above it")
    finite = _last_finite(steps, upto, 4)
    if finite and facts["kind"] != "exploding":
        parts.append("the last finite step losses: " + ", ".join(num(v) for v in finite))
    epoch = facts.get("began_epoch") or facts.get("epoch")
    step = facts.get("began_step") or facts.get("step")
    where = _at(epoch, step) if step is not None else f"epoch {epoch}"
    lr = case.model.lr
    lower = f"from {num(lr)} to {num(lr / LR_DOWN)}" if lr else f"by {num(LR_DOWN)}x"
    remedy = (f"Lower the learning rate 3-10x ({lower}): the updates overshoot and the loss blows up, "
              f"beginning at {where}. If it still diverges, lower it again, or add gradient clipping "
              "(clipnorm=1.0 on the optimizer) or a warm-up (schedule: warmup(epochs=5)); unscaled inputs "
              "(normalize: standard) or targets can also blow it up.")
    what = "the loss exploded" if facts["kind"] == "exploding" else f"the loss became {facts['kind']}"
    line = f"{what} at step {facts['step']}" if facts.get("step") is not None else what
    return Diagnosis("divergence", "critical", "; ".join(parts), remedy, line=line, epoch=facts.get("epoch"),
                     facts=facts)


def _onset(steps: Sequence, end: int, limit: float) -> int | None:
    """The step (from 1) that began the stretch of step losses above `limit` ending at steps[end - 1]: the one
    after the last finite loss at or below it; None when that one is not finite (no finite step led up)."""
    i = end - 1
    while i >= 0 and not (_finite(steps[i]) and steps[i] <= limit):
        i -= 1
    return i + 2 if i + 1 < end and _finite(steps[i + 1]) else None


def _last_finite(steps: Sequence, upto: int, n: int) -> list[float]:
    """[float(v) for v in steps[:upto] if _finite(v)][-n:], looked for from the end of a list (a live run's
    step losses are many)."""
    if type(steps) is not list:
        return [float(v) for v in steps[:upto] if _finite(v)][-n:]
    out: list[float] = []
    for i in reversed(range(len(steps))[:upto]):
        if len(out) == n:
            break
        if _finite(steps[i]):
            out.append(float(steps[i]))
    return out[::-1]


def _weighted(case: Case) -> list[dict]:
    """The evidence's layers with a finite gradient norm in some epoch (the layers with weights), in the
    model's order."""
    epochs = _case_epochs(case)

    def graded(name: str) -> Callable[[dict], bool]:
        return lambda e: _stat(e, name, "grad_norm") is not None

    return [layer for layer in _ev_layers(case.evidence)
            if _first(case, ("graded", layer["name"]), epochs, graded(layer["name"])) is not None]


def _last_norms(case: Case) -> tuple[dict | None, list[tuple[str, float]]]:
    """The last evidence epoch and its (layer, gradient norm) of every weighted layer with a finite one."""
    epochs = _case_epochs(case)
    if not epochs:
        return None, []
    e = epochs[-1]
    return e, [(x["name"], g) for x in _weighted(case) if (g := _stat(e, x["name"], "grad_norm")) is not None]


def _all_dead(case: Case, e: dict) -> str | None:
    """A ReLU layer none of whose units fire in evidence epoch `e`: it passes no gradient back at all, so a
    zero gradient below it is dead_relu's finding, not a vanishing one."""
    return next((x["name"] for x in _ev_layers(case.evidence)
                 if x.get("family") == "relu" and (_stat(e, x["name"], "dead_fraction") or 0) >= 1.0), None)


def vanishing_gradients(case: Case) -> Diagnosis | None:
    e, norms = _last_norms(case)
    if e is None or len(norms) < 2:
        return None
    (first, g1), (last, gn) = norms[0], norms[-1]
    if gn <= 0 or g1 > 0 and gn / g1 < VANISH_RATIO or g1 == 0 and _all_dead(case, e):
        return None
    ratio = gn / g1 if g1 > 0 else math.inf
    upd, upd_last = _stat(e, first, "update_ratio"), _stat(e, last, "update_ratio")
    shown = ", ".join(f"{n} {num(g)}" for n, g in norms)
    acts = sorted({x["activation"] for x in _ev_layers(case.evidence)
                   if x.get("family") in ("sigmoid", "tanh") and x.get("activation")})
    smaller = f"{num(ratio)}x smaller than" if g1 > 0 else "no gradient at all, against"
    evidence = (f"at epoch {e['epoch']} the first layer's ({first}) gradient norm is {num(g1)}, "
                f"{smaller} the last layer's ({last}) {num(gn)} (the rule: "
                f"{num(VANISH_RATIO)}x); gradient norms by layer: {shown}")
    if upd is not None and upd_last is not None:
        evidence += f"; update/weight ratio {num(upd)} in {first} against {num(upd_last)} in {last}"
    why = f" ({' and '.join(acts)} squash{'es' * (len(acts) == 1)} the gradient by up to 4x per layer)" \
        if acts else ""
    remedy = ("Use the ReLU family (relu, leaky_relu, elu) in the hidden layers with He initialization "
              f"(kernel_init=he_normal){why}; Glorot initialization for a sigmoid or tanh layer that stays; "
              "BatchNorm after the hidden layers and residual connections keep the gradient flowing through "
              "a deep net.")
    still = upd is not None and upd < LR_LOW_RATIO
    if still:
        evidence += f" (the first layer barely moves: below {num(LR_LOW_RATIO)})"
    severity = "high" if ratio >= VANISH_HIGH or still else "medium"
    return Diagnosis("vanishing_gradients", severity, evidence, remedy,
                     line=f"the first layer's gradient is {num(ratio)}x smaller than the last's" if g1 > 0
                     else "no gradient reaches the first layer",
                     epoch=e["epoch"],
                     facts={"epoch": e["epoch"], "first_layer": first, "last_layer": last,
                            "first_grad_norm": g1, "last_grad_norm": gn, "ratio": ratio,
                            "grad_norms": dict(norms)})


def _grown(case: Case, layer: str, epochs: list[dict]) -> tuple[str, dict] | None:
    """A layer whose gradient norm went non-finite, or grew EXPLODE_GROWTH x over its first epoch's."""
    def norm(e: dict) -> tuple[Any, Any]:
        return e["epoch"], ((e.get("layers") or {}).get(layer) or {}).get("grad_norm")

    def known(state: tuple, e: dict) -> tuple:
        """(the first finite norm, the largest after it: the first of the largest), as (epoch, norm)."""
        ep, g = norm(e)
        if g is None or not _finite(g):
            return state
        first, top = state
        if first is None:
            return (ep, float(g)), None
        return first, (ep, float(g)) if top is None or float(g) > top[1] else top

    first, top = _fold(case, ("grad_norms", layer), epochs, known, (None, None))
    if first is None:
        return None
    found = _first(case, ("lost", layer, first[0]), epochs,
                   lambda e: not _finite(norm(e)[1]) and norm(e)[0] > first[0])
    if found is not None:
        lost = found[1]["epoch"]
        return f"{layer}'s gradient norm is not finite at epoch {lost}", {"epoch": lost, "layer": layer,
                                                                          "non_finite": True}
    if top is None or first[1] <= 0:
        return None
    (first_ep, g0), (top_ep, top) = first, top
    growth = top / g0
    if growth < EXPLODE_GROWTH:
        return None
    return (f"{layer}'s gradient norm grew {num(growth)}x, from {num(g0)} at epoch {first_ep} to "
            f"{num(top)} at epoch {top_ep}", {"epoch": top_ep, "layer": layer, "growth": growth})


def exploding_gradients(case: Case) -> Diagnosis | None:
    epochs = _case_epochs(case)
    found: list[str] = []
    facts: dict[str, Any] = {}
    for layer in _weighted(case):
        hit = _grown(case, layer["name"], epochs)
        if hit is not None:
            found.append(hit[0])
            facts = {**hit[1], **facts}
    e, norms = _last_norms(case)
    if e is not None and len(norms) >= 2 and norms[-1][1] > 0 and norms[0][1] / norms[-1][1] >= EXPLODE_RATIO:
        r = norms[0][1] / norms[-1][1]
        found.append(f"at epoch {e['epoch']} the first layer's ({norms[0][0]}) gradient norm "
                     f"{num(norms[0][1])} is {num(r)}x the last layer's ({norms[-1][0]}) {num(norms[-1][1])}")
        facts.setdefault("epoch", e["epoch"])
        facts["first_to_last"] = r
    if not found:
        return None
    evidence = "; ".join(found) + (f" (the rules: non-finite, {num(EXPLODE_GROWTH)}x growth, or the first "
                                   f"layer {num(EXPLODE_RATIO)}x the last)")
    clip = "" if case.model.clips else "gradient clipping (clipnorm=1.0 on the optimizer), "
    remedy = (f"Tame the gradient: {clip}a lower learning rate, He or Glorot initialization instead of large "
              "random weights, BatchNorm after the hidden layers, residual connections in a deep net, and "
              "the ReLU family for the activations.")
    return Diagnosis("exploding_gradients", "critical" if facts.get("non_finite") else "high", evidence,
                     remedy, line="the gradient norms are exploding", epoch=facts.get("epoch"), facts=facts)


def _fraction_rule(case: Case, key: str, families: tuple[str, ...], limit: float, hidden_only: bool = False):
    """The last evidence epoch and the layers (of these activation families) whose `key` fraction is over the
    limit in it: (layer, fraction, the first epoch it was over). `hidden_only`: not the output layer."""
    epochs = _case_epochs(case)
    if not epochs:
        return None, []
    e = epochs[-1]
    hit = []
    layers = _ev_layers(case.evidence)
    for layer in layers[:-1] if hidden_only else layers:
        if layer.get("family") in families:
            v = _stat(e, layer["name"], key)
            if v is not None and v > limit:
                since = _since(case, epochs, layer["name"], key, limit, e)
                hit.append((layer, v, since))
    return e, hit


def _since(case: Case, epochs: list[dict], layer: str, key: str, limit: float, last: dict):
    """The first evidence epoch whose `key` fraction of `layer` is over `limit` (else `last`'s)."""
    def over(x: dict) -> bool:
        return (w := _stat(x, layer, key)) is not None and w > limit

    hit = _first(case, ("over_since", layer, key, limit), epochs, over)
    return (last if hit is None else hit[1])["epoch"]


def dead_relu(case: Case) -> Diagnosis | None:
    e, hit = _fraction_rule(case, "dead_fraction", ("relu",), DEAD_FRACTION)
    if not hit or e is None:
        return None
    shown = "; ".join(f"{x['name']} ({x.get('kind')}, {x.get('activation')}): {num(100 * v)}% of its units "
                      f"never fire (over the limit since epoch {since})" for x, v, since in hit)
    worst = max(v for _, v, _ in hit)
    n = (case.evidence or {}).get("probe_samples")
    over = f", over {n} probe samples" if n else ""
    evidence = f"at epoch {e['epoch']}{over}: {shown} (the rule: more than {num(100 * DEAD_FRACTION)}%)"
    lr = f"({num(case.model.lr)}) " if case.model.lr else ""
    remedy = ("Use leaky_relu (or elu) instead of relu in those layers, so a unit pushed negative still gets "
              f"a gradient, or lower the learning rate {lr}3-10x: one large update can push a unit's inputs "
              "below zero for every sample, for good. He initialization and zero biases start the units "
              "alive.")
    facts: dict[str, Any] = {"epoch": e["epoch"], "layers": {x["name"]: v for x, v, _ in hit}}
    same = _symmetric(case.model)
    if same:
        evidence += f"; {_symmetry_text(same)}"
        remedy = ("Initialize the kernels at random (kernel_init=he_normal for the ReLU family): a constant "
                  "kernel gives every unit the same input, so they are all dead or all alive together, and "
                  "a leaky_relu or a lower learning rate does not make them differ. " + remedy)
        facts["symmetric"] = [x["name"] for x in same]
    return Diagnosis("dead_relu", "high" if worst > SEVERE_FRACTION else "medium", evidence, remedy,
                     line=f"{num(100 * worst)}% of {hit[0][0]['name']}'s ReLUs are dead",
                     epoch=min(s for *_, s in hit), facts=facts)


def saturation(case: Case) -> Diagnosis | None:
    # (an output sigmoid near 0 or 1 is a confident prediction, what a trained binary classifier gives)
    e, hit = _fraction_rule(case, "saturated_fraction", ("sigmoid", "tanh"), SATURATED_FRACTION,
                            hidden_only=True)
    if not hit or e is None:
        return None
    shown = "; ".join(f"{x['name']} ({x.get('activation')}): {num(100 * v)}% saturated (since epoch {since})"
                      for x, v, since in hit)
    worst = max(v for _, v, _ in hit)
    norm = case.model.normalize
    first = (f"Standardize the inputs (normalize: standard in data {{ }}; it is '{norm}' now)"
             if norm not in (None, "standard") else "Keep the inputs standardized")
    remedy = (f"{first}, and start the weights small: Glorot (Xavier) initialization for sigmoid and tanh "
              "layers instead of large random ones. A saturated unit passes almost no gradient; BatchNorm "
              "before the activation, or the ReLU family, avoids the flat tails.")
    return Diagnosis("saturation", "high" if worst > SEVERE_FRACTION else "medium",
                     f"at epoch {e['epoch']}: {shown} (the rule: more than {num(100 * SATURATED_FRACTION)}%)",
                     remedy, line=f"{num(100 * worst)}% of {hit[0][0]['name']}'s units are saturated",
                     epoch=min(s for *_, s in hit),
                     facts={"epoch": e["epoch"], "layers": {x["name"]: v for x, v, _ in hit}})


def _rising_run(rows: list[dict], end: int) -> bool:
    """val_loss rose in each of the OVERFIT_RISING_EPOCHS epochs up to row `end`, while the training loss
    fell over them."""
    k = OVERFIT_RISING_EPOCHS
    if end < k:
        return False
    window = rows[end - k:end + 1]
    vals = [v for r in window if (v := _loss(r, "val_loss")) is not None]
    losses = [v for r in window if (v := _loss(r)) is not None]
    if len(vals) != k + 1 or len(losses) != k + 1:
        return False
    return all(b > a for a, b in zip(vals, vals[1:], strict=False)) and _fell(losses[0], losses[-1])


def _fell(before: float, after: float) -> bool:
    """The training loss fell by more than PLATEAU_IMPROVEMENT of itself."""
    return before > 0 and (before - after) / before > PLATEAU_IMPROVEMENT


def _standard_error(p: float | None, n: int | None) -> float:
    """The standard error of an accuracy p measured on n samples (0 when either is unknown)."""
    if p is None or not n or n <= 0:
        return 0.0
    return math.sqrt(max(p * (1 - p), 0.0) / n)


def _val_above_minimum(rows: list[dict], best_i: int) -> tuple[dict, str] | None:
    """val_loss ended OVERFIT_VAL_RISE above its minimum, reached OVERFIT_RISING_EPOCHS or more epochs before
    the end, while the training loss fell."""
    if len(rows) - 1 - best_i < OVERFIT_RISING_EPOCHS:
        return None
    best, last = rows[best_i], rows[-1]
    bv, lv, bl, ll = _loss(best, "val_loss"), _loss(last, "val_loss"), _loss(best), _loss(last)
    if bv is None or lv is None or bl is None or ll is None:
        return None
    if not (lv > (1 + OVERFIT_VAL_RISE) * bv and _fell(bl, ll)):
        return None
    rise = lv / bv - 1
    return ({"best_epoch": best["epoch"], "val_rise": rise},
            f"val_loss was lowest at epoch {best['epoch']} ({num(bv)}) and ended {num(100 * rise)}% higher "
            f"({num(lv)} at epoch {last['epoch']}) while the training loss fell from {num(bl)} to {num(ll)}")


def _lowest_val_loss(case: Case) -> int | None:
    """The row of the lowest finite val_loss (the first of equals); None when none is finite."""
    def lower(state: tuple, r: dict) -> tuple:
        i, best, v = state[0] + 1, state[1], _loss(r, "val_loss")
        return i, (i, v) if v is not None and (best is None or v < best[1]) else best

    return (_fold(case, "lowest_val_loss", case.rows, lower, (-1, None))[1] or (None,))[0]


def overfitting(case: Case) -> Diagnosis | None:
    rows = case.rows
    if not rows or "val_loss" not in rows[-1]:
        return None
    parts: list[str] = []
    facts: dict[str, Any] = {}
    best_i = _lowest_val_loss(case)
    k = OVERFIT_RISING_EPOCHS
    # 1. val_loss rising k epochs in a row while the training loss falls (live: up to this epoch; after the
    # run: the first such epochs, unless val_loss reached a new low after them)
    ends = [len(rows) - 1] if case.live else list(range(k, len(rows)))
    hit = next((i for i in ends if _rising_run(rows, i) and (best_i is None or best_i <= i - k)), None)
    if hit is not None:
        a, b = rows[hit - k], rows[hit]
        facts.update(epoch=b["epoch"], rising_from=a["epoch"])
        parts.append(f"val_loss rose in each of epochs {a['epoch'] + 1}-{b['epoch']} "
                     f"({num(a['val_loss'])} -> {num(b['val_loss'])}) while the training loss fell "
                     f"({num(a['loss'])} -> {num(b['loss'])})")
    # 2. val_loss well above its minimum at the end (after the run)
    above = _val_above_minimum(rows, best_i) if not case.live and best_i is not None else None
    if above is not None:
        facts.update(above[0])
        facts.setdefault("epoch", rows[-1]["epoch"])
        parts.append(above[1])
    # 3. the train-validation gap of the accuracy (after the run)
    train, val, where = _train_val_accuracy(case)
    # rounded to 12 places: 1.0 - 0.95 is 0.05000000000000004 in floats, and exactly the rule is no finding
    gap = round(train - val, 12) if train is not None and val is not None else None
    se = _standard_error(val, case.val_samples)
    if not case.live and gap is not None and gap > OVERFIT_GAP and gap > OVERFIT_GAP_SE * se:
        facts.update(gap=gap, train_accuracy=train, val_accuracy=val)
        facts.setdefault("epoch", rows[-1]["epoch"])
        resolved = "" if not case.val_samples else f" and {OVERFIT_GAP_SE:g} standard errors, " \
            f"{num(OVERFIT_GAP_SE * se)}, of the validation accuracy on {case.val_samples} samples"
        parts.append(f"train accuracy {num(train)} against validation {num(val)} ({where}): a gap of "
                     f"{num(gap)} (the variance; the rule: more than {OVERFIT_GAP}{resolved})")
    if not parts:
        return None
    if case.target_accuracy is not None and gap is not None and train is not None:
        parts.append(f"bias {num(max(0.0, case.target_accuracy - train))} against the target "
                     f"{num(case.target_accuracy)}, variance {num(gap)}")
    fin = case.final or {}
    severity = "high" if (gap or 0) > OVERFIT_GAP_HIGH or facts.get("val_rise", 0) > 1.0 else "medium"
    if fin.get("restored_best") and (gap is None or gap <= OVERFIT_GAP):
        severity = "low"
        parts.append(f"early stopping restored the weights of epoch {fin.get('best_epoch')}")
    elif severity == "medium" and not case.live and gap is not None and "gap" not in facts:
        # the validation loss rose, but no more errors show (on a small validation set, a rise of 0.07 to
        # 0.09 at 100% accuracy is the confidence of a few samples): to watch, not yet a variance problem
        severity = "low"
        parts.append(f"but the accuracy shows no gap beyond the rule (train {num(train)}, validation "
                     f"{num(val)}): the rise is in the confidence, not yet in the errors")
        facts["no_accuracy_gap"] = True
    remedy = ("Reduce the variance: more training data or augmentation (image data: augment: [flip(...), "
              "shift(0.1)]), dropout 0.2-0.5 after the widest hidden layers, L2 weight decay "
              "(kernel_reg=l2(1e-4)), a smaller model, and early stopping on val_loss "
              "(early_stopping: (monitor=val_loss, patience=5, restore_best=true)).")
    line = (f"val_loss rising for {k} epochs while loss falls" if hit is not None
            else "val_loss well above its minimum while loss falls")
    return Diagnosis("overfitting", severity, "; ".join(parts), remedy, line=line, epoch=facts.get("epoch"),
                     facts=facts)


def underfitting(case: Case) -> Diagnosis | None:
    if case.live or not case.rows:
        return None
    b = _bias(case)
    if b is None or not b["fires"]:
        return None
    parts = [b["text"]]
    facts = {k: b[k] for k in ("metric", "train", "reference", "shortfall")}
    trend, words = _loss_trend(case.rows)
    if trend is not None and words is not None:
        parts.append(words)
        facts[trend] = True
    still = trend == "still_improving"
    first = _held_back(case, b, parts, facts)
    _train, val, _where = _train_val_accuracy(case)
    if b["metric"] == "accuracy" and val is not None:
        gap = b["train"] - val  # (the guides' variance: train minus validation; below 0, none to speak of)
        said = f"variance {num(gap)}" if gap >= 0 else f"{num(-gap)} above the training accuracy: no variance"
        parts.append(f"validation accuracy {num(val)} ({said})")
    weighted = [x for x in case.model.layers if x.get("weighted") and x.get("units")]
    slim = min(weighted[:-1], key=lambda x: x["units"]) if len(weighted) > 1 else None
    size = ""
    if slim is not None and slim["units"] < weighted[-1]["units"]:
        size = f" (the narrowest hidden layer, {slim['name']} with {slim['units']} units, is a bottleneck)"
        facts["bottleneck"] = slim["name"]
    less = "" if "regularized" in facts else "; less regularization (lower dropout rates and L2 factors)"
    remedy = (f"Reduce the bias: {first}a bigger model, wider or deeper{size}; train longer"
              f"{' (the loss was still falling)' if still else ''}{less}. A better optimizer set-up (Adam, "
              "a tuned learning rate) also helps; more data does not.")
    if facts.get("stuck"):
        remedy += (" But a loss that barely moved from the start is an optimization problem before a size "
                   "one: a learning rate too low (or too high), vanishing gradients, dead or saturated units"
                   + ("" if case.evidence is not None else
                      " (with no evidence.json the doctor cannot tell which: train without --no-evidence)")
                   + "; a bigger model or more epochs will not cure it.")
    if b["metric"] == "accuracy":
        severity = "high" if b["shortfall"] > UNDERFIT_HIGH else "medium"
    else:  # the loss barely moved
        severity = "high" if b["shortfall"] > 1 - UNDERFIT_HIGH / 2 else "medium"
    return Diagnosis("underfitting", severity, "; ".join(parts), remedy,
                     line="the training metric is far from the target", epoch=case.rows[-1]["epoch"],
                     facts=facts)


def _held_back(case: Case, b: dict, parts: list[str], facts: dict) -> str:
    """What holds an underfitting model back, added to its evidence and facts: a loss that barely moved
    (`stuck`), a hidden kernel that starts constant (`symmetric`), few steps an epoch (`few_steps`), strong
    regularization (`regularized`); and the remedies for them, to come first."""
    first = ""
    start = _first_step_loss(case) or _loss(case.rows[0])
    last = _loss(case.rows[-1])
    if start is not None and start > 0 and last is not None and last >= LR_LOW_STUCK * start:
        facts["stuck"] = True
        if b["metric"] != "loss":  # (the loss's own test says it)
            parts.append(f"the training loss barely moved ({num(start)} -> {num(last)})")
    same = _symmetric(case.model)
    if same:
        parts.append(_symmetry_text(same))
        facts["symmetric"] = [x["name"] for x in same]
        first += ("a random initialization first (kernel_init=he_normal for the ReLU family, glorot_uniform "
                  "otherwise), so the units differ; then ")
    heavy = case.model.heavy
    if heavy:
        shown = ", ".join(f"Dropout({v:g}) ({name})" if kind == "dropout" else
                          f"{kind}({v:g}) on {name}'s kernel" for name, kind, v in heavy)
        parts.append(f"strong regularization: {shown} (the guides: dropout at most {HEAVY_DROPOUT:g}, an "
                     f"L1/L2 factor below {HEAVY_WEIGHT_DECAY:g})")
        facts["regularized"] = [name for name, _, _ in heavy]
        first += ("weaker regularization (the dropout rates and L1/L2 factors above hold the model back from "
                  "its training data); then ")
    few = _few_steps(case)
    if few is not None:
        per, total = few
        parts.append(f"only {per} optimizer step{'s' * (per != 1)} an epoch at batch_size "
                     f"{case.model.batch_size}, {total} in all (the rule: fewer than {FEW_STEPS_PER_EPOCH} "
                     "an epoch is few updates)")
        facts["few_steps"] = {"per_epoch": per, "batch_size": case.model.batch_size,
                              "samples": case.train_samples}
        first += ("a smaller batch size (more updates an epoch: a batch that is a large part of the data "
                  "makes few steps); then ")
    return first


def _few_steps(case: Case) -> tuple[int, int] | None:
    """(optimizer steps an epoch, steps in all) when the run made fewer than FEW_STEPS_PER_EPOCH steps an
    epoch (the evidence's step ranges); None otherwise or when unknown."""
    epochs = _epochs(case.evidence)
    e = epochs[-1] if epochs else {}
    first, last = e.get("first_step"), e.get("last_step")
    if type(first) is not int or type(last) is not int or last < first or not case.model.batch_size:
        return None
    per = last - first + 1
    return (per, last) if per < FEW_STEPS_PER_EPOCH and case.model.batch_size > 1 else None


def _loss_trend(rows: list[dict]) -> tuple[str | None, str | None]:
    """How the training loss ended, for underfitting: ("still_improving", its words) when it fell by more than
    PLATEAU_IMPROVEMENT an epoch over the last LR_LOW_EPOCHS epochs (lr_too_low's window; the last 2 in a
    3-epoch run); ("short_run", its words) for a run of 1 or 2 epochs, whose one epoch-to-epoch drop cannot
    tell a loss still falling from the first epochs' fall; (None, None) otherwise."""
    fewest = 2  # epoch-to-epoch drops: one is no trend
    k = min(LR_LOW_EPOCHS, len(rows) - 1)
    if k < fewest:
        return ("short_run", f"the run trained only {epochs(len(rows))}, too few to tell whether the "
                f"training loss was still falling") if rows else (None, None)
    tail = [v for r in rows[-k - 1:] if (v := _loss(r)) is not None]
    if len(tail) != k + 1 or tail[0] <= 0 or (tail[0] - tail[-1]) / tail[0] / k <= PLATEAU_IMPROVEMENT:
        return None, None
    return "still_improving", (f"the training loss was still falling at the end ({num(tail[0])} -> "
                               f"{num(tail[-1])} over the last {epochs(k)})")


def plateau(case: Case) -> Diagnosis | None:
    rows = case.rows
    n = PLATEAU_EPOCHS
    if len(rows) < n + 1:
        return None
    window = rows[-n - 1:]
    losses = [v for r in window if (v := _loss(r)) is not None]
    acc = _num_or(rows[-1].get("accuracy"), 0.0)
    if len({r.get("lr") for r in window}) != 1 or len(losses) != n + 1:
        return None
    if acc >= FIT_ACCURACY:  # it fits its training data: nothing left to gain there
        return None
    before, best = losses[0], min(losses[1:])
    # (a loss that only rose is no plateau: it is not flat, and rising at a constant rate is instability)
    if before <= 0 or best > before or (before - best) / before >= PLATEAU_IMPROVEMENT:
        return None
    lr = window[-1].get("lr")
    a, b = window[0]["epoch"], window[-1]["epoch"]
    gain = (before - best) / before
    evidence = (f"the training loss went from {num(before)} at epoch {a} to at best {num(best)} over epochs "
                f"{a + 1}-{b}: {num(100 * gain)}% better (the rule: less than "
                f"{num(100 * PLATEAU_IMPROVEMENT)}% over {n} epochs) at a constant learning rate {num(lr)}")
    facts: dict[str, Any] = {"epoch": b, "from_epoch": a, "improvement": gain, "lr": lr}
    first = _loss(rows[0])
    if first is not None and first > 0 and before >= LR_LOW_STUCK * first:
        # no progress before the plateau either: a loss stuck from the start, which a decay does not cure
        facts["from_start"] = True
        evidence += (f"; it was {num(first)} at epoch {rows[0]['epoch']}: flat from the start, not a plateau "
                     "after progress")
    sched = case.model.schedule
    now = f" (the schedule now is {sched})" if sched and sched != "plateau" else ""
    remedy = ("Decay the learning rate when the loss plateaus: schedule: plateau(factor=0.1-0.5, "
              f"patience=2-5) multiplies it by the factor after `patience` epochs without improvement{now}; "
              "a step or cosine schedule does it on a timetable. A loss stuck from the start points to a "
              "rate too low or vanishing gradients instead.")
    start_lr = rows[0].get("lr")
    if _finite(start_lr) and _finite(lr) and lr * PLATEAU_DECAYED <= start_lr:
        # the schedule decayed it already: decaying it more (or sooner) is not the cure
        facts["decayed_from"] = start_lr
        evidence += f" (decayed from {num(start_lr)} at epoch {rows[0]['epoch']})"
        remedy = (f"The learning rate was decayed already, from {num(start_lr)} to {num(lr)}: decaying it "
                  "more does not help. A schedule that cuts the rate too soon or too low (a small patience "
                  "or factor, a low min_lr) freezes the training: decay it later and less, or give it a "
                  "higher min_lr; then a bigger model or better features, if the loss still stalls.")
    return Diagnosis("plateau", "medium", evidence, remedy,
                     line=f"the loss improved {num(100 * gain)}% over {n} epochs at lr {num(lr)}", epoch=b,
                     facts=facts)


def lr_too_low(case: Case) -> Diagnosis | None:
    epochs = _case_epochs(case)
    rows = case.rows
    k = LR_LOW_EPOCHS
    if not epochs or len(rows) < k + 1:
        return None
    losses = [v for r in rows[-k - 1:] if (v := _loss(r)) is not None]
    if len(losses) != k + 1 or not all(b < a for a, b in zip(losses, losses[1:], strict=False)):
        return None
    e = epochs[-1]
    ratios = [v for x in _weighted(case) if (v := _stat(e, x["name"], "update_ratio")) is not None]
    if not ratios:
        return None
    top = max(ratios)
    stuck = _stuck(case, losses[-1]) if top >= LR_LOW_RATIO else None
    if top >= LR_LOW_RATIO and stuck is None:
        return None
    b = _bias(case)
    if b is None or not b["fires"]:
        return None
    # (a loss that barely moved from the start: the most the guides give)
    factor = 10.0 if stuck is not None or top <= 0 else min(10.0, max(3.0, HEALTHY_UPDATE_RATIO / top))
    lr = case.model.lr
    fell = (f"the training loss fell steadily over epochs {rows[-k - 1]['epoch']}-{rows[-1]['epoch']} "
            f"({num(losses[0])} -> {num(losses[-1])})")
    if stuck is None:
        evidence = (f"{fell}, but at epoch {e['epoch']} the largest update/weight ratio of any layer is "
                    f"{num(top)} (the rule: below {num(LR_LOW_RATIO)}; about {num(HEALTHY_UPDATE_RATIO)} is "
                    f"healthy); {b['text']}")
        why = (f"every step moves the weights by less than {num(LR_LOW_RATIO)} of their size, so the loss "
               "falls, but far too slowly for the epochs given")
        line = f"the updates are {num(top)} of the weights while the loss falls slowly"
    else:
        start, frac = stuck
        evidence = (f"{fell}, yet over the whole run it barely moved: {num(losses[-1])} is {num(frac)} of "
                    f"the first step's {num(start)} after {epochs_text(len(rows))} (the rule: a steady fall "
                    f"that stays above {num(LR_LOW_STUCK)} of it; the largest update/weight ratio of any "
                    f"layer at epoch {e['epoch']} is {num(top)})")
        if b["metric"] != "loss":  # (the loss's own bias test says the same again)
            evidence += f"; {b['text']}"
        why = ("a loss that falls a little every epoch from the start, and never fast, is the curve of a "
               "rate too low (the gradients reach every layer: no vanishing gradients, dead or saturated "
               "units were found)")
        line = f"the loss fell steadily but only to {num(frac)} of the first step's"
    up = f"from {num(lr)} to {num(lr * factor)}" if lr else f"{num(factor)}x"
    remedy = (f"Raise the learning rate 3-10x ({up}): {why}. Raise it until the loss falls fast without "
              "spiking; a plateau schedule can bring it down later. Decaying it now (a plateau schedule) "
              "would make it worse.")
    facts: dict[str, Any] = {"epoch": e["epoch"], "max_update_ratio": top, "factor": factor}
    if stuck is not None:
        facts.update(stuck=True, loss_fraction=stuck[1])
    return Diagnosis("lr_too_low", "medium", evidence, remedy, line=line, epoch=e["epoch"], facts=facts)


def _stuck(case: Case, last: float) -> tuple[float, float] | None:
    """(the first step's loss, the last epoch's fraction of it) when the training loss barely moved over the
    whole run (above LR_LOW_STUCK of the first step's) and no per-layer rule explains a stuck loss; else
    None."""
    start = _first_step_loss(case)
    if start is None or start <= 0 or last / start <= LR_LOW_STUCK:
        return None
    rates = [float(v) for r in case.rows if _finite(v := r.get("lr"))]
    if any(b > a for a, b in zip(rates, rates[1:], strict=False)):
        return None  # (a warm-up: the rate was low on purpose, and rose)
    if any(rule(case) is not None for rule in (divergence, vanishing_gradients, dead_relu, saturation)):
        return None  # (a loss that blew up and came down is no rate too low, as the live doctor sees it)
    return start, last / start


RULES: tuple[Callable[[Case], Diagnosis | None], ...] = (
    divergence, exploding_gradients, vanishing_gradients, dead_relu, saturation, lr_too_low, plateau,
    overfitting, underfitting)


# the rules on the per-layer evidence (judged also when the loss diverged)
PER_LAYER = (exploding_gradients, vanishing_gradients, dead_relu, saturation)


def diagnose_case(case: Case) -> list[Diagnosis]:
    """Every rule that fires on the case, most severe first; `healthy` (with what was checked) when none
    does. A run that diverged is judged on that and its per-layer evidence (its curves say nothing more)."""
    div = divergence(case)
    if div is None:
        found = [d for rule in RULES if (d := rule(case)) is not None]
        return ranked(found) if found else [healthy(case)]
    # the per-layer numbers of the epoch whose loss went non-finite come from broken weights: the other
    # per-layer rules look at the epochs before it
    before = case
    if div.facts.get("kind") != "exploding" and isinstance(div.epoch, int) and case.evidence is not None:
        before = replace(case, evidence={**case.evidence, "epochs": [
            e for e in _epochs(case.evidence) if e.get("epoch", 0) < div.epoch]})
    return ranked([div] + [_after_divergence(d) for rule in PER_LAYER if (d := rule(before)) is not None])


def _after_divergence(d: Diagnosis) -> Diagnosis:
    """A per-layer finding of a run that diverged: the blow-up's large updates can cause it (kill ReLUs,
    saturate units), so the divergence is what to treat first."""
    d.facts["after_divergence"] = True
    d.evidence += " (the divergence above can cause this: treat that first)"
    return d


def live_findings(case: Case) -> list[Diagnosis]:
    """The rules that can fire while a run trains (all but underfitting, which judges the end)."""
    return ranked([d for rule in RULES if rule is not underfitting and (d := rule(case)) is not None])


def live_case(rows: list[dict], evidence: dict | None, model: Model, scans: Scans) -> Case:
    """Case(rows, evidence, model=model, scans=scans).until(the last row's epoch): the run so far, as the live
    doctor judges it after each epoch. Without until's copies when it would cut nothing (a live run's rows
    and evidence end at the epoch just trained), so that the scans go on from the epoch before; whether it
    would is itself scanned once per row and evidence epoch."""
    epoch = rows[-1]["epoch"]
    case = Case(rows, evidence, model=model, scans=scans)
    if type(epoch) is not int or _latest(scans, "row_epochs", rows) > epoch:
        return case.until(epoch)
    if evidence is None:
        return replace(case, live=True)
    epochs = evidence.get("epochs") or []
    if type(epochs) is not list or _latest(scans, "evidence_epochs", epochs) > epoch:
        return case.until(epoch)
    steps = evidence.get("step_losses") or []
    if type(steps) is not list:
        return case.until(epoch)
    last = epochs[-1].get("last_step") if epochs else 0
    if isinstance(last, int) and last < len(steps):
        steps = steps[:last]
    return replace(case, evidence={**evidence, "epochs": epochs, "step_losses": steps}, live=True)


def _latest(scans: Scans, key: str, items: list) -> float:
    """The latest `epoch` of the rows or evidence epochs `items` (0 for one without); infinity when one is
    not a dict or its epoch not an int (until() then sorts them out)."""
    def later(top: float, item) -> float:
        ep = item.get("epoch", 0) if isinstance(item, dict) else None
        return max(top, ep) if type(ep) is int else math.inf

    return scans.fold(key, items, later, 0)


def healthy(case: Case) -> Diagnosis:
    parts = []
    rows = case.rows
    if rows:
        first, last = num(_loss(rows[0])), num(_loss(rows[-1]))
        parts.append(f"{epochs(len(rows))}, the training loss {first} -> {last}")
        vals = [(r["epoch"], v) for r in rows if (v := _loss(r, "val_loss")) is not None]
        if vals:
            ep, v = min(vals, key=lambda t: t[1])
            parts.append(f"val_loss lowest at epoch {ep} ({num(v)}) of {rows[-1]['epoch']}")
    train, val, where = _train_val_accuracy(case)
    if train is not None:
        se = OVERFIT_GAP_SE * _standard_error(val, case.val_samples)
        limit = f"the limit {OVERFIT_GAP}" if se <= OVERFIT_GAP else \
            f"within {OVERFIT_GAP_SE:g} standard errors, {num(se)}, on {case.val_samples} samples"
        gap = "" if val is None else f", validation {num(val)} (gap {num(train - val)}; {limit})"
        parts.append(f"train accuracy {num(train)}{gap} ({where})")
    e, norms = _last_norms(case)
    if e is not None and len(norms) >= 2 and norms[0][1] > 0:
        parts.append(f"last-to-first layer gradient ratio {num(norms[-1][1] / norms[0][1])} at epoch "
                     f"{e['epoch']}")
    if case.evidence is not None and _epochs(case.evidence):
        parts.append("no dead layer, no saturated hidden layer")
    also = "" if case.target_accuracy is not None else \
        ", or give --target-accuracy to judge the bias against a target"
    return Diagnosis("healthy", "none", "; ".join(parts) or "no rule fired",
                     "Nothing to fix by the guides' rules. To do better, tune the learning rate and the size "
                     f"(dlc tune){also}.", epoch=rows[-1]["epoch"] if rows else None)
