"""The training loop's rules with numbers written down by hand: Keras' ReduceLROnPlateau and EarlyStopping
(patience, min_delta, cooldown, min_lr, mode), restore_best, the epoch loss, the schedules' learning rates,
the dropout threshold and resuming from a checkpoint.

Both backends run the same loop (dlc/runtime/loop.py), so the equivalence suite cannot see a bug in it: a
wrong rule is wrong the same way on both. Here a scripted session (its losses and validation losses chosen
per epoch, its "weights" the number of epochs it trained) makes every decision checkable exactly, without a
framework; a few tests run a real backend where the rule lives in the backend (checkpointed optimizer state).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlc.compiler import compile_text
from dlc.compiler.training import EarlyStopping
from dlc.reference.callbacks import ReduceLROnPlateau, improved, monitor_mode, plateau_for
from dlc.reference.rng import dropout_threshold, epoch_permutation
from dlc.runtime import checkpoint
from dlc.runtime.data import Dataset, Split
from dlc.runtime.loop import train

from conftest import ROOT

SPEC = """
model scripted {{
  seed: 3
  data {{ source: iris }}
  input: (4)
  layers {{
    Dense(3, activation=softmax)
  }}
  loss: categorical_crossentropy
  metrics: [accuracy]
  optimizer: SGD(lr=1.0)
  {schedule}
  train {{
    epochs: {epochs}
    batch_size: 4
    {early_stopping}
  }}
}}
"""


def scripted_spec(epochs=8, schedule="", early_stopping=""):
    return compile_text(SPEC.format(epochs=epochs, schedule=schedule, early_stopping=early_stopping)) \
        .raise_for_errors()


class ScriptedSession:
    """A session whose epoch k (from 1) has the step losses `train[k - 1]`, validation loss `val[k - 1]` and
    validation accuracy `acc[k - 1]`; its weights are {"w": {"epochs": k}}: what was trained, and what a
    restore or a checkpoint gives back."""

    def __init__(self, val, train=None, acc=None):
        self.val, self.train, self.acc = list(val), train, acc
        self.k = 0
        self.lrs = []

    def load_data(self, x, y):
        return len(x)

    def set_lr(self, lr):
        self.lrs.append(lr)

    def train_epoch(self, n, perm, batch_size, progress=None):
        steps = -(-len(perm) // batch_size)
        sizes = np.array([min(batch_size, len(perm) - i * batch_size) for i in range(steps)], dtype=float)
        losses = np.array(self.train[self.k] if self.train else [1.0] * steps, dtype=float)
        self.k += 1
        return losses, self._stats(), sizes

    def evaluate(self, n, batch_size):
        return self.val[self.k - 1], self._stats()

    def _stats(self):
        a = self.acc[self.k - 1] if self.acc else 0.5
        return np.array([[100 * a, 100 * (1 - a), 0], [0, 0, 0], [0, 0, 0]])  # accuracy a

    def get_weights(self):
        return {"w": {"epochs": np.array(float(self.k))}}

    def set_weights(self, w):
        self.k = int(w["w"]["epochs"])

    def get_state(self):
        return {"k": np.array(self.k)}

    def set_state(self, state):
        self.k = int(state["k"])


def data(n_train=10, n_val=5):
    x = np.zeros((n_train + n_val, 4))
    y = np.eye(3)[np.zeros(n_train + n_val, dtype=int)]
    return Dataset(Split(x[:n_train], y[:n_train], None), Split(x[n_train:], y[n_train:], None), None, 3)


def untimed(rows):
    return [{k: v for k, v in r.items() if k not in ("time_s", "samples_per_s")} for r in rows]


def run(spec, session, epochs=None):
    hist = train(session, spec, data(), epochs=epochs)
    return hist, [r["lr"] for r in hist.rows]


# ------------------------------------------------------------------------------------ ReduceLROnPlateau


def plateau_lrs(losses, lr=1.0, **kw):
    p = ReduceLROnPlateau(**{"factor": 0.5, "patience": 2, "min_delta": 0.0, **kw})
    out = []
    for v in losses:
        lr = p.update(v, lr)
        out.append(lr)
    return out


def test_plateau_cuts_after_patience_epochs_without_improvement():
    # epoch 1 sets the best; epochs 2 and 3 do not improve: the cut comes after epoch 3 (wait reaches 2)
    assert plateau_lrs([1.0] * 7) == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125]
    assert plateau_lrs([1.0] * 4, patience=1) == [1.0, 0.5, 0.25, 0.125]
    assert plateau_lrs([1.0] * 4, patience=0) == [1.0, 0.5, 0.25, 0.125]  # every epoch without improvement
    # an improvement resets the wait
    assert plateau_lrs([1.0, 1.0, 0.9, 1.0, 1.0]) == [1.0, 1.0, 1.0, 1.0, 0.5]


def test_plateau_min_delta_min_lr_and_cooldown():
    # an improvement smaller than min_delta is none
    assert plateau_lrs([1.0, 0.995, 0.99, 0.98], min_delta=0.01) == [1.0, 1.0, 0.5, 0.5]
    assert plateau_lrs([1.0] * 7, factor=0.1, min_lr=0.05) == [1.0, 1.0, 0.1, 0.1, 0.05, 0.05, 0.05]
    # cooldown c: after a cut, c epochs of rest (Keras counts the cut's own epoch end: cooldown 1 rests none)
    assert plateau_lrs([1.0] * 6, patience=1, cooldown=1) == [1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125]
    assert plateau_lrs([1.0] * 7, patience=1, cooldown=2) == [1.0, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125]


def test_plateau_and_early_stopping_modes():
    assert monitor_mode("auto", "val_loss") == "min" and monitor_mode("auto", "loss") == "min"
    for name in ("val_accuracy", "accuracy", "val_precision", "val_recall", "val_f1"):
        assert monitor_mode("auto", name) == "max", name
    assert monitor_mode("min", "val_accuracy") == "min"
    assert improved(0.98, 1.0, "min", 0.01) and not improved(0.995, 1.0, "min", 0.01)
    assert improved(0.52, 0.5, "max", 0.01) and not improved(0.505, 0.5, "max", 0.01)
    spec = scripted_spec(schedule="schedule: plateau(monitor=val_accuracy, factor=0.5, patience=1)")
    p = plateau_for(spec.schedule)
    assert p.mode == "max"
    assert [p.update(a, 1.0) for a in (0.5, 0.6, 0.7)] == [1.0, 1.0, 1.0]  # rising accuracy: no cut


def test_plateau_in_the_loop_uses_the_validation_loss():
    spec = scripted_spec(epochs=6, schedule="schedule: plateau(factor=0.5, patience=2)")
    session = ScriptedSession(val=[1.0, 0.9, 0.95, 0.92, 0.91, 0.93])
    _, lrs = run(spec, session)
    # the cut after epoch 4 (2 epochs without beating 0.9) is the lr of epoch 5
    assert lrs == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5]
    assert session.lrs == lrs


# ------------------------------------------------------------------------------------- early stopping


def test_early_stopping_stops_after_patience_epochs_and_restores_the_best():
    spec = scripted_spec(epochs=10, early_stopping="early_stopping: (monitor=val_loss, patience=2, "
                                                     "restore_best=true)")
    session = ScriptedSession(val=[1.0, 0.8, 0.85, 0.9, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    hist, _ = run(spec, session)
    assert [r["epoch"] for r in hist.rows] == [1, 2, 3, 4]  # epochs 3 and 4 do not improve on epoch 2
    assert hist.stopped_early and hist.best_epoch == 2
    assert hist.restored_best and session.k == 2  # the weights are epoch 2's, not epoch 4's


def test_early_stopping_without_restore_keeps_the_last_weights():
    spec = scripted_spec(epochs=10, early_stopping="early_stopping: (patience=1)")
    session = ScriptedSession(val=[1.0, 0.8, 0.85, 0.7])
    hist, _ = run(spec, session)
    assert len(hist.rows) == 3 and hist.best_epoch == 2 and not hist.restored_best and session.k == 3


def test_early_stopping_min_delta_and_a_reset_wait():
    spec = scripted_spec(epochs=10, early_stopping="early_stopping: (patience=2, min_delta=0.05)")
    # 0.97 and 0.93 are improvements smaller than 0.05 on 1.0; 0.9 is one (1.0 - 0.05 > 0.9)
    session = ScriptedSession(val=[1.0, 0.97, 0.9, 0.88, 0.87, 0.5])
    hist, _ = run(spec, session)
    assert len(hist.rows) == 5 and hist.best_epoch == 3


def test_early_stopping_on_accuracy_maximises_it():
    spec = scripted_spec(epochs=8, early_stopping="early_stopping: (monitor=val_accuracy, patience=2, "
                                                    "restore_best=true)")
    session = ScriptedSession(val=[1.0] * 8, acc=[0.5, 0.6, 0.7, 0.65, 0.6, 0.9, 0.9, 0.9])
    hist, _ = run(spec, session)
    assert len(hist.rows) == 5 and hist.best_epoch == 3 and session.k == 3


def test_restore_best_on_a_real_backend_restores_the_weights():
    """The torch model after an early stop evaluates to exactly the best epoch's validation loss."""
    import dlc

    spec = dlc.load(ROOT / "specs" / "iris.dlspec")
    es = EarlyStopping(monitor="val_loss", patience=2, restore_best=True)
    spec = spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": 60,
                                                                         "early_stopping": es})})
    model = dlc.Model(spec, backend="torch", dtype="float64", device="cpu")
    hist = model.fit()
    assert hist.stopped_early and hist.restored_best and hist.best_epoch < len(hist.rows)
    best = hist.rows[hist.best_epoch - 1]["val_loss"]
    assert min(r["val_loss"] for r in hist.rows) == best
    val = model.data.val
    assert model.evaluate(val.x, val.y)["loss"] == pytest.approx(best, rel=1e-12)


# --------------------------------------------------------------------------------- the epoch's numbers


def test_epoch_loss_is_the_sample_weighted_mean_of_the_step_losses():
    spec = scripted_spec(epochs=1)
    session = ScriptedSession(val=[1.0], train=[[1.0, 1.0, 4.0]])  # batches of 4, 4 and 2 samples
    hist, _ = run(spec, session)
    assert hist.rows[0]["loss"] == pytest.approx((4 * 1.0 + 4 * 1.0 + 2 * 4.0) / 10, rel=1e-15)  # not 2.0
    assert hist.step_losses == [1.0, 1.0, 4.0]


SCHEDULES = {  # base lr 1.0; the lr of epochs 0, 1, 2, ...
    "step(every=2, factor=0.5)": [1.0, 1.0, 0.5, 0.5, 0.25, 0.25],
    "exponential(rate=0.25, every=2)": [1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125],
    "cosine(epochs=4, min_lr=0.2)": [1.0, 0.2 + 0.8 * (1 + math.sqrt(0.5)) / 2, 0.6,
                                     0.2 + 0.8 * (1 - math.sqrt(0.5)) / 2, 0.2, 0.2],
    "warmup(epochs=4)": [0.25, 0.5, 0.75, 1.0, 1.0, 1.0],
    "warmup(epochs=2, then=step(every=1, factor=0.5))": [0.5, 1.0, 1.0, 0.5, 0.25, 0.125],
    "warmup(epochs=2, then=cosine(epochs=2))": [0.5, 1.0, 1.0, 0.5, 0.0, 0.0],
}


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedule_learning_rates_by_hand(schedule):
    spec = scripted_spec(epochs=6, schedule=f"schedule: {schedule}")
    session = ScriptedSession(val=[1.0] * 6)
    _, lrs = run(spec, session)
    assert lrs == pytest.approx(SCHEDULES[schedule], rel=1e-12, abs=1e-15)
    assert session.lrs == lrs  # what the session was told is what the history says


def test_every_epoch_has_its_own_order():
    orders = [epoch_permutation(7, e, 50) for e in range(4)]
    assert all(sorted(o) == list(range(50)) for o in orders)
    assert len({o.tobytes() for o in orders}) == 4
    np.testing.assert_array_equal(epoch_permutation(7, 2, 50), orders[2])
    np.testing.assert_array_equal(epoch_permutation(7, 2, 50, shuffle=False), np.arange(50))


@pytest.mark.parametrize("rate", [0.1, 0.25, 0.3, 1 / 3, 0.5, 0.9])
def test_dropout_keeps_exactly_where_u_reaches_the_rate(rate):
    """keep where u = (hash >> 8)·2^-24 >= rate: the threshold is the smallest such integer."""
    t = dropout_threshold(rate)
    assert t * 2.0 ** -24 >= rate > (t - 1) * 2.0 ** -24


# ------------------------------------------------------------------------------------------ resuming

RESUME_ES = "early_stopping: (monitor=val_loss, patience=3, restore_best=true)"
RESUME_VAL = [1.0, 0.8, 0.9, 0.85, 0.95, 0.7, 0.75, 0.72]


def test_resume_from_a_checkpoint_continues_every_counter(tmp_path):
    """Cut after epoch 3, when the plateau and early stopping are both waiting and the best weights are from
    epoch 2: the resumed run ends as the uninterrupted one (lr cut at the same epoch, the same stop, the best
    weights restored)."""
    spec = scripted_spec(epochs=8, schedule="schedule: plateau(factor=0.5, patience=2)",
                         early_stopping=RESUME_ES)

    def save_at_3(state):
        if state.epoch == 3:
            checkpoint.save(tmp_path, whole, state)

    whole = ScriptedSession(val=RESUME_VAL)
    ref = train(whole, spec, data(), on_checkpoint=save_at_3)
    assert [r["lr"] for r in ref.rows] == [1.0, 1.0, 1.0, 1.0, 0.5] and ref.stopped_early
    assert ref.best_epoch == 2 and ref.restored_best and whole.k == 2

    session_state, state = checkpoint.load(tmp_path)
    assert state.epoch == 3 and state.es_wait == 1 and state.plateau["wait"] == 1
    resumed = ScriptedSession(val=RESUME_VAL)
    resumed.set_state(session_state)
    hist = train(resumed, spec, data(), resume=state)
    assert untimed(hist.rows) == untimed(ref.rows)
    assert (hist.stopped_early, hist.best_epoch, hist.restored_best) == (True, 2, True)
    assert resumed.k == 2


CHECKPOINT_SPEC = """
model checkpointed {
  seed: 4
  data {
    source: iris
    normalize: standard
    split: holdout(val=0.2)
  }
  input: (4)
  layers {
    Dense(8, activation=relu)
    Dropout(0.3)
    Dense(3, activation=softmax)
  }
  loss: categorical_crossentropy
  optimizer: Adam(lr=0.01)
  train {
    epochs: 2
    batch_size: 8
  }
}
"""


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_checkpoint_restores_the_optimizer_and_dropout_step(backend, tmp_path):
    """A fresh session given a checkpoint continues exactly as the session that wrote it: the same next
    epoch, bit for bit (Adam's moments and iteration count and the dropout step are in the checkpoint)."""
    from dlc.backends import session_class
    from dlc.reference.weights import initial_weights
    from dlc.runtime.data import prepare
    from dlc.runtime.loop import LoopState

    spec = compile_text(CHECKPOINT_SPEC).raise_for_errors()
    d = prepare(spec, ROOT)
    a = session_class(backend)(spec, dtype="float64", device="cpu", weights=initial_weights(spec))
    train(a, spec, d, epochs=1)
    checkpoint.save(tmp_path, a, LoopState(epoch=1, lr=0.01))
    b = session_class(backend)(spec, dtype="float64", device="cpu", weights=initial_weights(spec))
    b.set_state(checkpoint.load(tmp_path)[0])
    perm = epoch_permutation(spec.seed, 1, len(d.train.x))
    la = a.train_epoch(a.load_data(d.train.x, d.train.y), perm, 8)[0]
    lb = b.train_epoch(b.load_data(d.train.x, d.train.y), perm, 8)[0]
    np.testing.assert_array_equal(la, lb)
