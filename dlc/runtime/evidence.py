"""The training evidence (`dlc doctor` reads it): per layer and per epoch the gradient norm, the weight norm,
the epoch's update-to-weight ratio, the activations' mean and standard deviation and the dead or saturated
fraction, with every step's loss; recorded after every epoch, written to RUN/evidence.json when the run
folder's files are (dlc.runtime.epochfiles: atomically; a run that stops with a non-finite loss keeps the
evidence up to it, that epoch included) and to TensorBoard after every epoch (`evidence/<layer>/<field>`,
the same tags on both backends).

Backend-neutral: the per-layer numbers come from `Session.probe` on a fixed seeded probe set (definitions:
dlc/reference/evidence.py); weight norms and update ratios from `Session.get_weights`, here, in float64 numpy.

evidence.json (version 1):
  {"version": 1, "probe_samples": N, "definitions": {...},
   "layers": [{"name", "kind", "activation", "family": "relu"|"sigmoid"|"tanh"|null}, ...],
   "epochs": [{"epoch", "first_step", "last_step", "lr",
               "layers": {name: {"grad_norm", "weight_norm", "update_ratio", "act_mean", "act_std",
                                 "dead_fraction", "saturated_fraction"}}}, ...],
   "step_losses": [...]}
Non-finite numbers are written as null. Epochs count from 1, steps from 1 over the whole run (a resumed run
continues both); step_losses[i] is step i + 1's loss.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from dlc.reference.evidence import DEFINITIONS, ProbeLayer, probe_indices, probe_layers

FILE = "evidence.json"
VERSION = 1
FIELDS = ("grad_norm", "weight_norm", "update_ratio", "act_mean", "act_std", "dead_fraction",
          "saturated_fraction")


def finite(v: Any) -> float | None:
    """A JSON number, or None for None, NaN and ±inf."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _norm(arrays: list[np.ndarray]) -> float:
    return math.sqrt(sum(float(np.sum(np.square(a, dtype=np.float64))) for a in arrays))


class Recorder:
    """The evidence of one training run: `begin` before the first epoch (or the first resumed one), `record`
    after each epoch (also after the one that failed), which writes evidence.json too unless `paced` (then
    dlc.runtime.epochfiles calls `write` when the run's files are due; `unwritten`: whether an epoch was
    recorded since). `folder`: where evidence.json goes (None: kept in memory only, `.to_json()`); `tb`: an
    EventWriter for the TensorBoard scalars."""

    def __init__(self, spec, folder: Path | None = None, tb=None):
        self.spec, self.folder, self.tb = spec, folder, tb
        self.layers: list[ProbeLayer] = probe_layers(spec)
        self.epochs: list[dict] = []
        self.step_losses: list[float | None] = []
        self.x = self.y = None
        self._start: dict[str, list[np.ndarray]] = {}
        self._seen = 0  # the history's step losses already taken
        # evidence.json's epochs and step losses as encoded so far (each encoded once: write() only joins)
        self._epoch_text: list[str] = []
        self._loss_text: list[str] = []
        self._losses_encoded = 0
        self.unwritten = False
        self.paced = False

    # ------------------------------------------------------------------------------------------ the run

    def begin(self, session, data, epochs_done: int, hist) -> None:
        """Pick the probe set from the training part, keep the weights the next epoch starts from; when
        resuming (`epochs_done` > 0), keep the evidence.json epochs up to it."""
        n = len(data.train.x)
        idx = probe_indices(self.spec.seed, n)
        self.x, self.y = data.train.x[idx], data.train.y[idx]
        self._seen = len(hist.step_losses)
        self.epochs, self.step_losses = [], [finite(v) for v in hist.step_losses]
        self._epoch_text, self._loss_text, self._losses_encoded = [], [], 0
        if epochs_done > 0:
            self._continue(epochs_done, n)
        self._start = self._trainable(session.get_weights())

    def _continue(self, epochs_done: int, n: int) -> None:
        """The saved epochs up to `epochs_done` (a resumed run); steps of epochs not in the file count as
        unknown (null losses), so the step numbering stays the run's."""
        saved = self.read(self.folder) if self.folder is not None else None
        if saved is not None:
            self.epochs = [e for e in saved.get("epochs", []) if e["epoch"] <= epochs_done]
            last = self.epochs[-1]["last_step"] if self.epochs else 0
            self.step_losses = list(saved.get("step_losses", []))[:last]
        elif self.step_losses:  # a model trained on in this process: its history has them
            return
        if not self.epochs or self.epochs[-1]["epoch"] < epochs_done:
            per_epoch = -(-n // self.spec.train.batch_size)
            done = len(self.step_losses) + per_epoch * (epochs_done - (self.epochs[-1]["epoch"]
                                                                       if self.epochs else 0))
            self.step_losses += [None] * (done - len(self.step_losses))

    def record(self, session, epoch: int, lr: float, hist) -> dict:
        """The evidence of epoch `epoch` (from 0), just trained: kept, written unless paced, returned."""
        new = hist.step_losses[self._seen:]
        self._seen = len(hist.step_losses)
        first = len(self.step_losses) + 1
        self.step_losses += [finite(v) for v in new]
        probe = session.probe(self.x, self.y)
        end = self._trainable(session.get_weights())
        layers = {}
        for pl in self.layers:
            numbers = dict(probe.get(pl.name, {}))
            w0, w1 = self._start.get(pl.name, []), end.get(pl.name, [])
            if w1:
                start_norm = _norm(w0)
                numbers["weight_norm"] = _norm(w1)
                with np.errstate(all="ignore"):
                    change = _norm([b - a for a, b in zip(w0, w1, strict=True)])
                numbers["update_ratio"] = change / start_norm if start_norm > 0 else None
            layers[pl.name] = {k: finite(numbers.get(k)) for k in FIELDS}
        entry = {"epoch": epoch + 1, "first_step": first, "last_step": len(self.step_losses),
                 "lr": finite(lr), "layers": layers}
        self.epochs.append(entry)
        self._start = end
        self.unwritten = True
        if not self.paced:
            self.write()
        if self.tb is not None:
            self.tb.tagged(epoch + 1, {f"evidence/{name}/{k}": v for name, vals in layers.items()
                                       for k, v in vals.items()})
        return entry

    def _trainable(self, weights: dict) -> dict[str, list[np.ndarray]]:
        return {pl.name: [weights[pl.name][w] for w in pl.trainable] for pl in self.layers if pl.trainable}

    # ----------------------------------------------------------------------------------------- the file

    def to_json(self) -> dict:
        return {"version": VERSION, "probe_samples": 0 if self.x is None else len(self.x),
                "definitions": dict(DEFINITIONS),
                "layers": [{"name": pl.name, "kind": pl.kind, "activation": pl.activation,
                            "family": pl.family} for pl in self.layers],
                "epochs": self.epochs, "step_losses": self.step_losses}

    def write(self) -> None:
        """evidence.json, atomically (a temporary file renamed over it); step_losses on one line."""
        self.unwritten = False
        if self.folder is None:
            return
        from dlc.runtime.rundir import write_text

        self.folder.mkdir(parents=True, exist_ok=True)
        obj = self.to_json()
        del obj["epochs"], obj["step_losses"]
        text = json.dumps(obj, indent=2, allow_nan=False)[:-2]  # (the small part, indented; then an epoch a
        # line and the losses on one: as rundir.json_rows lays them out, each encoded once, when it is new;
        # encoding them all again after every epoch made a long run quadratic)
        self._epoch_text += [json.dumps(e, allow_nan=False) for e in self.epochs[len(self._epoch_text):]]
        if self._losses_encoded < len(self.step_losses):
            self._loss_text.append(json.dumps(self.step_losses[self._losses_encoded:], allow_nan=False)[1:-1])
            self._losses_encoded = len(self.step_losses)
        # (joined once: adding up the pieces copied the whole text at each +, 3 ms an epoch after 2000)
        epochs = ["[\n    ", ",\n    ".join(self._epoch_text), "\n  ]"] if self._epoch_text else ["[]"]
        write_text(self.folder / FILE, "".join([text, ',\n  "epochs": ', *epochs, ',\n  "step_losses": [',
                                                ", ".join(self._loss_text), "]\n}\n"]))

    @staticmethod
    def read(folder: Path) -> dict | None:
        """A run folder's evidence.json, or None when it has none (or an unreadable one)."""
        try:
            obj = json.loads((Path(folder) / FILE).read_text())
        except (OSError, ValueError):
            return None
        return obj if isinstance(obj, dict) and obj.get("version") == VERSION else None
