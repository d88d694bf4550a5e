"""`dlc compare`: train one spec on both backends from the same weights, batches and dropout masks, and report
how far apart they are, step by step. Tolerances are the ones measured as reachable in
shared/EQUIVALENCE.md."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

FLOAT64_LOSS_TOL = 1e-10
FLOAT64_WEIGHT_TOL = 1e-8


def float32_loss_bound(loss: float) -> float:
    return 2e-6 + 1e-6 * abs(loss)


@dataclass
class Comparison:
    steps: int
    dtype: str
    losses: dict[str, list[float]]
    max_abs_loss_diff: float
    initial_weight_max_abs_diff: float
    final_weight_max_abs_diff: float
    final_metrics: dict[str, dict]
    passed: bool
    reasons: list[str]
    # per-epoch validation loss (inference mode: BN moving stats, no dropout)
    max_abs_val_loss_diff: float = 0.0
    # per backend: steps, epochs, stopped_early, best_epoch, restored_best
    runs: dict[str, dict] | None = None
    val_losses: dict[str, list[float]] | None = None  # per backend, one per epoch

    def to_json(self) -> dict:
        return self.__dict__.copy()


def compare_spec(spec, base_dir: Path, steps: int | None, dtype: str,
                 backends=("keras", "torch")) -> Comparison:
    """Train `spec` on both backends for `steps` optimizer steps (more epochs than the spec asks for when
    needed; None: exactly the spec's own run, early stopping included) and compare step losses, validation
    losses, the training decisions (early stopping) and the weights before and after."""
    from dlc.backends import session_class
    from dlc.reference.weights import initial_weights, max_abs_diff
    from dlc.runtime.data import prepare
    from dlc.runtime.loop import train

    spec = spec.model_copy(update={"dtype": dtype})
    data = prepare(spec, base_dir)
    init = initial_weights(spec)
    bs = spec.train.batch_size
    epochs = spec.train.epochs if steps is None else max(spec.train.epochs,
                                                         -(-steps * bs // len(data.train.x)))
    losses, start, end, finals, val, runs = {}, {}, {}, {}, {}, {}
    for name in backends:
        session = session_class(name)(spec, dtype=dtype, device="cpu", weights=init)
        start[name] = session.get_weights()
        hist = train(session, spec, data, epochs=epochs, max_steps=steps)
        losses[name] = hist.step_losses
        end[name] = session.get_weights()
        finals[name] = hist.rows[-1] if hist.rows else {}
        val[name] = [r["val_loss"] for r in hist.rows if "val_loss" in r]
        runs[name] = {"steps": len(hist.step_losses), "epochs": len(hist.rows),
                      "stopped_early": hist.stopped_early,
                      "best_epoch": hist.best_epoch, "restored_best": hist.restored_best}
    a, b = backends
    n = min(len(losses[a]), len(losses[b]))
    la, lb = np.array(losses[a][:n]), np.array(losses[b][:n])
    diff = np.abs(la - lb)
    reasons = []
    init_diff = max_abs_diff(start[a], start[b])
    if init_diff != 0.0:
        reasons.append(f"initial weights differ by {init_diff:.3g} (must be bit-identical)")
    if len(losses[a]) != len(losses[b]):
        reasons.append(f"{a} ran {len(losses[a])} steps, {b} ran {len(losses[b])}")
    if dtype == "float64":
        if n and diff.max() > FLOAT64_LOSS_TOL:
            i = int(diff.argmax())
            reasons.append(f"loss differs by {diff[i]:.3g} at step {i + 1} (float64 bound "
                           f"{FLOAT64_LOSS_TOL:g})")
    else:
        bound = 2e-6 + 1e-6 * np.abs(la)
        over = np.flatnonzero(diff > bound)
        if over.size:
            i = int(over[0])
            reasons.append(f"loss differs by {diff[i]:.3g} at step {i + 1} (float32 bound {bound[i]:.3g})")
    if runs[a] != runs[b]:
        reasons.append(f"the runs took different courses: {a} {runs[a]}, {b} {runs[b]}")
    m = min(len(val[a]), len(val[b]))
    va, vb = np.array(val[a][:m]), np.array(val[b][:m])
    vdiff = np.abs(va - vb)
    vbound = FLOAT64_LOSS_TOL if dtype == "float64" else 2e-6 + 1e-6 * np.abs(va)
    vover = np.flatnonzero(vdiff > vbound)
    if vover.size:
        i = int(vover[0])
        reasons.append(f"val_loss differs by {vdiff[i]:.3g} after epoch {i + 1}")
    final_diff = max_abs_diff(end[a], end[b])
    if dtype == "float64" and final_diff > FLOAT64_WEIGHT_TOL:
        reasons.append(f"final weights differ by {final_diff:.3g} (float64 bound {FLOAT64_WEIGHT_TOL:g})")
    if not np.all(np.isfinite(la)) or not np.all(np.isfinite(lb)):
        reasons.append("a loss became non-finite")
    return Comparison(steps=n, dtype=dtype, losses=losses, max_abs_loss_diff=float(diff.max()) if n else 0.0,
                      initial_weight_max_abs_diff=init_diff, final_weight_max_abs_diff=final_diff,
                      final_metrics=finals, passed=not reasons, reasons=reasons,
                      max_abs_val_loss_diff=float(vdiff.max()) if m else 0.0, runs=runs,
                      val_losses=val)
