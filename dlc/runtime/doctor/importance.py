"""Which hyperparameter matters: `dlc doctor` on a tune folder measures each searched parameter's importance
and the best region of the search, as the tuning guides' coarse-to-fine advice needs ("search lr in [3e-3,
2e-2] next; the units matter little: fix them"), and draws them (importance.png in the tune folder).

- Importance: Optuna's fANOVA (`FanovaImportanceEvaluator`, a random forest of IMPORTANCE_TREES trees fitted
  to the completed trials, seeded with IMPORTANCE_SEED so the numbers are the same on every call): the
  fraction of the objective's variance over the search space that each parameter explains on its own; the
  importances add up to 1. A `loguniform` parameter is judged in log scale (as it was searched), a `choice`
  as categories. It rests on the COMPLETE trials with a finite objective (pruned and failed trials have
  none), read from tune.json, so it needs neither the study's storage nor a framework; with fewer than
  IMPORTANCE_MIN_TRIALS of them it is not computed and the report says why.
- Best region: the values the top trials took, by the rule of `dlc tune --refine` (compiler/search.py: the
  best quarter of the completed trials, at least 3; a numeric range narrowed to the smallest holding their
  values, a choice to the options they took): exactly what `dlc tune --refine RUN` searches next.
- Advice: the parameters by importance, each with its best region; one whose importance is below
  IMPORTANCE_LOW matters little over this search: fix it at the best trial's value.

Nothing here imports a framework; Optuna (and scikit-learn, which its fANOVA uses) and matplotlib only when
called.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlc.compiler.search import TOP_FRACTION, TOP_MIN, Space, refine, space_size, top_trials
from dlc.runtime.rundir import figure, save_figure

IMPORTANCE_MIN_TRIALS = 4  # completed trials fANOVA needs before its numbers mean anything
IMPORTANCE_SEED = 0  # the seed of fANOVA's random forest: the same importances on every call
IMPORTANCE_TREES = 64  # the forest's trees (Optuna's default)
IMPORTANCE_LOW = 0.05  # below this a parameter "matters little" over the search: fix it
PLOT = "importance.png"
SCATTERS = 3  # objective-vs-parameter panels in the plot, for the most important parameters

__all__ = ["IMPORTANCE_LOW", "IMPORTANCE_MIN_TRIALS", "IMPORTANCE_SEED", "IMPORTANCE_TREES", "PLOT",
           "Importance", "analyse", "plot"]


@dataclass
class Importance:
    """The importance of each searched parameter (None when it could not be measured: `note` says why), the
    best region (the `--refine` ranges), the trials they rest on, and the plot written."""

    metric: str
    direction: str
    completed: int  # COMPLETE trials with a finite objective
    spaces: list[Space]
    importance: dict[str, float] | None  # most important first; adds up to 1
    best_region: dict[str, dict[str, Any]]
    top_trials: list[int]
    best_params: dict[str, Any]
    evaluator: str = "fanova"
    note: str | None = None
    plot: Path | None = None  # importance.png, once drawn (plot())
    advice: list[str] = field(default_factory=list)
    trials: list[dict] = field(default_factory=list, repr=False)  # the completed trials (tune.json's)

    def to_json(self) -> dict:
        return {"evaluator": self.evaluator, "seed": IMPORTANCE_SEED, "trees": IMPORTANCE_TREES,
                "metric": self.metric, "direction": self.direction, "completed": self.completed,
                "top_trials": self.top_trials, "searched": {sp.name: sp.describe() for sp in self.spaces},
                "note": self.note, "plot": str(self.plot) if self.plot is not None else None,
                "advice": self.advice}


# -------------------------------------------------------------------------------------------- the numbers


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _completed(trials: list, names: list[str]) -> list[dict]:
    return [t for t in trials
            if isinstance(t, dict) and t.get("state") == "COMPLETE" and _finite(t.get("value"))
            and isinstance(t.get("params"), dict) and all(n in t["params"] for n in names)]


def _region(sp: Space, narrowed: Space, best: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": sp.kind, "best": best}
    if sp.kind == "choice":
        out.update(options=list(narrowed.options), searched=list(sp.options),
                   text="{" + ", ".join(narrowed.option_texts) + "}")
    else:
        lo, hi = narrowed.bounds()
        out.update(low=lo, high=hi, searched=list(sp.bounds()), text=f"[{_g(lo)}, {_g(hi)}]")
    # the top trials took every option (or the whole range): nothing is narrowed yet
    out["whole"] = (len(out["options"]) == len(out["searched"]) if sp.kind == "choice"
                    else [out["low"], out["high"]] == out["searched"])
    return out


def _g(x: float) -> str:
    return f"{x:.3g}"


def _fanova(spaces: list[Space], done: list[dict], direction: str) -> dict[str, float]:
    """fANOVA importances (normalized, most important first) of the spaces over the completed trials;
    RuntimeError when the objective does not vary."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    def coded(sp: Space, v: Any) -> Any:
        return math.log10(v) if sp.kind == "loguniform" else v

    dists: dict[str, optuna.distributions.BaseDistribution] = {}
    for sp in spaces:
        values = [t["params"][sp.name] for t in done]
        if sp.kind == "choice":
            options = list(sp.options) + [v for v in dict.fromkeys(values) if v not in sp.options]
            dists[sp.name] = CategoricalDistribution(options)
        else:
            coded_values = [coded(sp, float(v)) for v in values]
            low, high = (coded(sp, b) for b in sp.bounds())
            dists[sp.name] = FloatDistribution(min([low, *coded_values]), max([high, *coded_values]))

    def params(t: dict) -> dict:
        got = t["params"]
        return {sp.name: got[sp.name] if sp.kind == "choice" else coded(sp, float(got[sp.name]))
                for sp in spaces}

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # ("A new study created in memory ...")
    try:
        study = optuna.create_study(direction="maximize" if direction == "maximize" else "minimize")
        study.add_trials([optuna.trial.create_trial(params=params(t), distributions=dists,
                                                    value=float(t["value"])) for t in done])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = get_param_importances(study, evaluator=FanovaImportanceEvaluator(
                n_trees=IMPORTANCE_TREES, seed=IMPORTANCE_SEED), normalize=True)
    finally:
        optuna.logging.set_verbosity(verbosity)
    if not got or not all(_finite(v) for v in got.values()) or sum(got.values()) <= 0:
        raise RuntimeError("no variance")
    return {k: float(v) for k, v in got.items()}


def analyse(run: Path, tune: dict) -> Importance | None:
    """The importance and best region of the tune folder `run` (its tune.json `tune`); None when tune.json
    lists no search spaces (a tune run of an older dlc)."""
    spaces = [Space.from_json(d) for d in tune.get("spaces") or [] if isinstance(d, dict)]
    if not spaces:
        return None
    objective = tune.get("objective") or {}
    metric, direction = str(objective.get("metric", "objective")), str(objective.get("direction", "minimize"))
    trials = [t for t in tune.get("trials") or [] if isinstance(t, dict)]
    done = _completed(trials, [sp.name for sp in spaces])
    top = top_trials(done, direction)
    best = dict(top[0]["params"]) if top else {}
    region = {}
    if top:  # the ranges `dlc tune --refine` would search
        region = {sp.name: _region(sp, narrowed, best.get(sp.name))
                  for sp, narrowed in zip(spaces, refine(spaces, top), strict=True)}
    numbers = [t["number"] for t in top if isinstance(t.get("number"), int)]
    out = Importance(metric, direction, len(done), spaces, None, region, numbers, best, trials=done)
    if len(done) < IMPORTANCE_MIN_TRIALS:
        out.note = (f"only {len(done)} completed trial{'s' * (len(done) != 1)} with a finite {metric}: too "
                    "few to measure which hyperparameter matters (fANOVA needs at least "
                    f"{IMPORTANCE_MIN_TRIALS}); run more trials (dlc tune with the same --out continues the "
                    "search)")
    else:
        try:
            out.importance = _fanova(spaces, done, direction)
        except (RuntimeError, ValueError) as e:
            out.note = (f"the {metric} did not vary over the {len(done)} completed trials: no parameter's "
                        "importance can be measured" if "variance" in str(e) else
                        f"fANOVA could not be fitted to the {len(done)} completed trials: {e}")
    out.advice = _advice(out, run)
    return out


def _advice(imp: Importance, run: Path) -> list[str]:
    """The coarse-to-fine advice: each parameter by importance with its best region; the command that
    searches it."""
    if not imp.best_region:
        return []
    order = list(imp.importance) if imp.importance else [sp.name for sp in imp.spaces]
    k = len(imp.top_trials)
    top = "the best trial" if k == 1 else f"the top {k} trials"
    lines, fixed = [], False
    for name in order:
        r = imp.best_region[name]
        share = imp.importance.get(name) if imp.importance else None
        if share is not None and share < IMPORTANCE_LOW and len(order) > 1:
            lines.append(f"{name} matters little here ({share:.2f}): fix it at the best trial's value "
                         f"{_value(r['best'])}")
            fixed = True
        elif r.get("whole"):
            every = "every option" if r["kind"] == "choice" else "values across the whole range"
            lines.append(f"{name}: {top} took {every}, so nothing narrows it yet; more trials tell more")
        else:
            took = "the options" if r["kind"] == "choice" else "the range of values"
            matters = f" (importance {share:.2f})" if share is not None else ""
            lines.append(f"search {name} in {r['text']} next{matters}: {took} {top} took")
    if all(imp.best_region[name].get("whole") for name in order):
        points = space_size(imp.spaces)
        lines.append(f"every one of the space's {points} points was tried: its best trial is this search's "
                     "answer" if points is not None and imp.completed >= points else
                     f"`dlc tune --refine {run}` would search the same space again: a larger --trials "
                     "continues this search instead")
        return lines
    lines.append(f"`dlc tune --refine {run}` searches exactly these best regions (of {top}: the "
                 f"best {TOP_FRACTION:.0%} of the completed ones, at least {TOP_MIN})"
                 + ("; to fix a parameter, write its value in the spec instead of its search space" if fixed
                    else ""))
    return lines


def _value(v: Any) -> str:
    return _g(v) if isinstance(v, float) else str(v)


# ----------------------------------------------------------------------------------------------- the plot


def plot(run: Path, imp: Importance) -> Path | None:
    """Write run/importance.png (and set `imp.plot`): a bar chart of the importances and, for the most
    important parameters, the objective of every completed trial against the parameter's value (the top
    trials marked, the best region shaded). None when there is no importance to draw."""
    if imp.importance is None:
        return None
    done = imp.trials
    names = list(imp.importance)
    shown = names[:SCATTERS]
    by_name = {sp.name: sp for sp in imp.spaces}
    top = set(imp.top_trials)
    fig, axes = figure(1, 1 + len(shown), figsize=(4.6 * (1 + len(shown)), 4.2))
    ax = axes[0][0]
    ax.barh(range(len(names))[::-1], [imp.importance[n] for n in names], color="tab:blue")
    ax.set_yticks(range(len(names))[::-1], [_short(n) for n in names], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("importance (fANOVA, sums to 1)")
    ax.set_title(f"which hyperparameter matters ({imp.completed} trials)")
    ax.grid(alpha=0.3, axis="x")
    for i, n in enumerate(names):
        ax.text(min(imp.importance[n] + 0.02, 0.85), len(names) - 1 - i, f"{imp.importance[n]:.2f}",
                va="center", fontsize=8)
    for ax, name in zip(axes[0][1:], shown, strict=True):
        sp = by_name[name]
        region = imp.best_region.get(name, {})
        values = [t["params"][name] for t in done]
        ys = [float(t["value"]) for t in done]
        if sp.kind == "choice":
            labels = list(dict.fromkeys([*sp.options, *values]))
            xs = [float(labels.index(v)) for v in values]
            ax.set_xticks(range(len(labels)), [str(v) for v in labels])
            # (categories at 0..n-1, each with room on both sides: no option pressed against an edge, no
            # band running off it)
            ax.set_xlim(-0.6, len(labels) - 0.4)
            best = [i for i, v in enumerate(labels) if v in region.get("options", [])]
            for i in best:  # one band per option the top trials took, one legend entry for them all
                ax.axvspan(i - 0.4, i + 0.4, color="tab:green", alpha=0.12,
                           label=f"best region {region['text']}" if i == best[0] else None)
        else:
            xs = [float(v) for v in values]
            if sp.kind == "loguniform":
                ax.set_xscale("log")
            if "low" in region:
                ax.axvspan(region["low"], region["high"], color="tab:green", alpha=0.12,
                           label=f"best region {region['text']}")
        is_top = [t.get("number") in top for t in done]
        ax.scatter([x for x, b in zip(xs, is_top, strict=True) if not b],
                   [y for y, b in zip(ys, is_top, strict=True) if not b], s=18, color="tab:gray",
                   label="trials")
        ax.scatter([x for x, b in zip(xs, is_top, strict=True) if b],
                   [y for y, b in zip(ys, is_top, strict=True) if b], s=28, color="tab:green",
                   label=f"top {len(top)}")
        if ys and min(ys) > 0 and max(ys) / min(ys) > 10:
            ax.set_yscale("log")
        ax.set_xlabel(_short(name))
        ax.set_ylabel(imp.metric)
        ax.set_title(f"{_short(name)}: importance {imp.importance[name]:.2f}", fontsize=10)
        ax.grid(alpha=0.3)
        # (below the axes: inside, it covered the trials it explains wherever they lay)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    fig.tight_layout()
    imp.plot = save_figure(fig, run / PLOT)
    return imp.plot


def _short(name: str) -> str:
    return name if len(name) <= 28 else "…" + name[-27:]
