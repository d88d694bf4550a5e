"""The live doctor judges after every epoch with scans that go on from the epoch before (rules.Scans): its
findings must be those of judging the whole run so far from scratch (rules.live_findings on Case.until), at
every epoch, on randomized runs that show every pathology (spikes, non-finite losses, plateaus, rising
val_loss, growing or vanishing gradients, dead and saturated units, tiny updates), fresh and resumed; and
the report after the run (no scans) is unchanged by them."""

from __future__ import annotations

import json
import math
import random

import pytest

from dlc.runtime.doctor import LiveDoctor, warning_line
from dlc.runtime.doctor.rules import Case, Model, Scans, diagnose_case, live_case, live_findings

FAMILIES = ("relu", "sigmoid", "tanh", None)
STEPS = 3  # step losses per epoch


def _layers(rng: random.Random) -> list[dict]:
    """2-4 layers of random activation families, sometimes with an Activation layer (no weights) between."""
    out = []
    for i in range(rng.randint(2, 4)):
        family = rng.choice(FAMILIES)
        out.append({"name": f"dense_{i}", "kind": "Dense", "activation": family or "softmax",
                    "family": family})
        if rng.random() < 0.3:
            out.append({"name": f"act_{i}", "kind": "Activation", "activation": "relu", "family": "relu"})
    return out


def _odd(rng: random.Random, value: float, p: float) -> float | None:
    """`value`, or with probability p a NaN, an infinity or a None."""
    return rng.choice([math.nan, math.inf, None]) if rng.random() < p else value


class RandomRun:
    """A run's rows and evidence, epoch by epoch, as a random walk through regimes: the loss falling, flat or
    spiking, val_loss falling or rising, gradients growing or vanishing, units dying or saturating."""

    def __init__(self, seed: int, accuracy: bool = True):
        self.rng = rng = random.Random(seed)
        self.layers = _layers(rng)
        self.accuracy = accuracy
        self.loss, self.val, self.lr, self.acc = rng.uniform(0.5, 3), rng.uniform(0.5, 3), 0.1, rng.random()
        self.grads = {x["name"]: 10 ** rng.uniform(-3, 1) for x in self.layers}
        self.regime = "fall"
        # the regimes this run goes through (a few: most runs show some pathologies, not all at once)
        others = ["flat", "overfit", "spike", "slow", "vanish", "grow"]
        self.regimes = ["fall", *rng.sample(others, rng.randint(0, 4))]
        self.rows: list[dict] = []
        self.epochs: list[dict] = []
        self.steps: list[float | None] = []
        self.odd = rng.choice([0.0, 0.0, 0.0, 0.01, 0.05])  # how often a number is non-finite or missing
        self.dying = rng.random() < 0.4  # units dead or saturated now and then

    def evidence(self) -> dict:
        return {"version": 1, "probe_samples": 8, "layers": self.layers, "epochs": self.epochs,
                "step_losses": self.steps}

    def epoch(self) -> dict:
        rng, e = self.rng, len(self.rows) + 1
        if rng.random() < 0.15:
            self.regime = rng.choice(self.regimes)
        factor = {"fall": rng.uniform(0.7, 0.97), "flat": rng.uniform(0.997, 1.0), "overfit":
                  rng.uniform(0.8, 0.95), "spike": rng.uniform(1.5, 20), "slow": rng.uniform(0.95, 0.99),
                  "vanish": rng.uniform(0.9, 1.0), "grow": rng.uniform(0.9, 1.05)}[self.regime]
        self.loss *= factor
        self.val *= rng.uniform(1.01, 1.2) if self.regime == "overfit" else rng.uniform(0.85, 1.05)
        self.acc = min(1.0, max(0.0, self.acc + rng.uniform(-0.05, 0.1)))
        if rng.random() < 0.05:
            self.lr *= 0.5
        row = {"epoch": e, "loss": _odd(rng, self.loss, self.odd / 4)}
        if self.accuracy:
            row["accuracy"] = 0.995 if rng.random() < 0.05 else self.acc
        row.update(val_loss=_odd(rng, self.val, self.odd / 4), lr=self.lr)
        if self.accuracy:
            row["val_accuracy"] = max(0.0, self.acc - rng.uniform(-0.02, 0.3))
        row = {k: v for k, v in row.items() if v is not None or rng.random() < 0.5}
        first = len(self.steps) + 1
        self.steps += [_odd(rng, self.loss * rng.uniform(0.8, 1.2), self.odd) for _ in range(STEPS)]
        self.epochs.append({"epoch": e, "first_step": first, "last_step": len(self.steps), "lr": self.lr,
                            "layers": {x["name"]: self._stats(x) for x in self.layers}})
        self.rows.append(row)
        return row

    def _stats(self, layer: dict) -> dict:
        rng, name = self.rng, layer["name"]
        if layer["kind"] == "Activation":
            grad = update = None
        else:
            self.grads[name] *= {"grow": rng.uniform(1, 4), "vanish": rng.uniform(0.3, 1)}.get(self.regime, 1)
            grad = _odd(rng, self.grads[name] * rng.uniform(0.5, 2), self.odd)
            update = _odd(rng, 10 ** rng.uniform(-6 if self.regime == "slow" else -4, -1), self.odd)
        dead = saturated = 0.0
        if self.dying and layer["family"] == "relu":
            dead = rng.choice([0.0, 0.1, 0.6, 0.95, 1.0])
        if self.dying and layer["family"] in ("sigmoid", "tanh"):
            saturated = rng.choice([0.0, 0.2, 0.6, 0.95])
        return {"grad_norm": grad, "weight_norm": 1.0, "update_ratio": update, "act_mean": 0.0,
                "act_std": 1.0, "dead_fraction": _odd(rng, dead, self.odd), "saturated_fraction": saturated}


def _model(run: RandomRun) -> Model:
    return Model(metrics=("accuracy",) if run.accuracy else (), lr=0.1,
                 schedule=run.rng.choice([None, "plateau"]),
                 layers=[{**x, "units": 16, "weighted": x["kind"] != "Activation"} for x in run.layers])


def _said(found) -> str:
    """Findings as comparable text (NaN included): every field the report and the warning line use."""
    return json.dumps([(d.to_json(), d.line, d.title) for d in found])


def _from_scratch(rows: list[dict], ev: dict | None, model: Model, warned: set[str]) -> list:
    """What the live doctor said before it kept its scans: the whole run so far judged again."""
    return [d for d in live_findings(Case(list(rows), ev, model=model).until(rows[-1]["epoch"]))
            if d.id not in warned]


@pytest.mark.parametrize("seed", range(30))
def test_live_findings_are_those_of_the_whole_run_at_every_epoch(seed):
    run = RandomRun(seed, accuracy=seed % 4 != 0)
    model = _model(run)
    # the doctor as `dlc run` uses it: the recorder's lists, grown in place; half of the runs resumed
    resume_at = run.rng.choice([0, 0, 5, 17])
    for _ in range(resume_at):
        run.epoch()
    doctor = LiveDoctor(None, before=list(run.rows), evidence=run.evidence)
    doctor.model = model
    warned: set[str] = set()
    if resume_at:
        warned = {d.id for d in live_findings(Case(list(run.rows), json.loads(json.dumps(run.evidence())),
                                                   model=model).until(run.rows[-1]["epoch"]))}
    for _ in range(100):
        row = run.epoch()
        snapshot = json.loads(json.dumps(run.evidence()))  # (NaN survives json)
        want = _from_scratch(run.rows, snapshot, model, warned)
        got = doctor.epoch(row)
        assert got == [warning_line(d, row["epoch"]) for d in want], (seed, row["epoch"])
        warned.update(d.id for d in want)
        assert doctor.warned == warned
        # the findings themselves (their words and facts too), the said ones included
        scratch = live_findings(Case(list(run.rows), snapshot, model=model).until(row["epoch"]))
        kept = live_findings(live_case(doctor.rows, run.evidence(), model, doctor.scans))
        assert _said(kept) == _said(scratch), (seed, row["epoch"])


def _cut_fields(case: Case):
    return json.dumps([case.rows, case.evidence, case.failure, case.final, case.live, case.target_accuracy])


@pytest.mark.parametrize("seed", range(30))
def test_live_case_is_until(seed):
    """live_case gives what Case.until gives, whether it cuts (evidence ahead of the rows, as after a resume;
    step losses past the last epoch's; rows out of order; entries that are not dicts) or not."""
    rng = random.Random(seed)
    run = RandomRun(seed)
    model = _model(run)
    scans = Scans()
    rows: list = []
    for _ in range(40):
        rows.append(run.epoch())
        ev = run.evidence()
        shown = rows
        if rng.random() < 0.2:  # evidence of an epoch past the rows
            shown = rows[:-1] or rows
        if rng.random() < 0.1:
            shown = [*shown[:-1], {"epoch": 0.5}, shown[-1]]  # an epoch not an int: until sorts it out
        if rng.random() < 0.1:
            ev = {**ev, "step_losses": [*run.steps, 1.0, 2.0]}  # steps of an epoch not recorded
        if rng.random() < 0.05:
            ev = {**ev, "epochs": [*run.epochs[:-1], "x", run.epochs[-1]]}
        if rng.random() < 0.05:
            ev = None
        want = Case(shown, ev, model=model).until(shown[-1]["epoch"])
        got = live_case(shown, ev, model, scans)
        assert _cut_fields(got) == _cut_fields(want)
        assert got.scans is scans and want.model is got.model


@pytest.mark.parametrize("seed", range(20))
def test_the_report_after_the_run_is_unchanged_by_scans(seed):
    """diagnose_case (`dlc doctor RUN`) has no scans: the same findings as a case judged with them."""
    run = RandomRun(seed, accuracy=seed % 3 != 0)
    model = _model(run)
    for _ in range(80):
        run.epoch()
    plain = Case(run.rows, run.evidence(), model=model)
    with_scans = Case(run.rows, run.evidence(), model=model, scans=Scans())
    assert _said(diagnose_case(plain)) == _said(diagnose_case(with_scans))
    assert _said(diagnose_case(plain)) == _said(diagnose_case(with_scans))  # (the scans kept: the same)


def test_a_scan_starts_again_on_another_list_or_a_shorter_one():
    scans = Scans()
    items = [1, 2, 3]
    assert scans.first("big", items, lambda v: v > 2) == 2
    other = [5]
    assert scans.first("big", other, lambda v: v > 2) == 0
    items = [1, 1]
    assert scans.first("big", items, lambda v: v > 2) is None
    items.append(9)
    assert scans.first("big", items, lambda v: v > 2) == 2
    assert scans.fold("sum", items, lambda s, v: s + v, 0) == 11
    items.append(1)
    assert scans.fold("sum", items, lambda s, v: s + v, 0) == 12
    del items[1:]
    assert scans.fold("sum", items, lambda s, v: s + v, 0) == 1
