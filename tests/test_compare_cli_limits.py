"""`dlc compare`'s limits and failures as a user meets them: counts out of range are usage errors (exit 2)
before any training (`--steps 10**20` ran for ever), a diverging training names the backend(s) and the
optimizer step (the line said only "loss became inf at epoch 1, step 4"), and every `--json` (compare's and
lr-find's) is strict JSON written by one helper, byte-identical to json.dumps for finite values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dlc.cli import compare as cli
from dlc.cli import jsonout
from dlc.runtime import compare as rc_
from dlc.runtime.lr_find import LRFind

from conftest import ROOT, run_cli

IRIS = ROOT / "specs" / "iris.dlspec"

# ------------------------------------------------------------------------------------------- counts


@pytest.mark.parametrize("args,says", [
    (["--steps", "100000000000000000000"], "Invalid value for '--steps': must be at most 100000"),
    (["--steps", "100001"], "Invalid value for '--steps': must be at most 100000"),
    (["--steps", "0"], "Invalid value for '--steps': must be at least 1"),
    (["--steps", "-3"], "Invalid value for '--steps': must be at least 1"),
    (["--seeds", "100000000000000000000"], "Invalid value for '--seeds': must be at most 1000"),
    (["--seeds", "1"], "Invalid value for '--seeds': must be at least 2"),
    (["--seeds", "0"], "Invalid value for '--seeds': must be at least 2"),
])
def test_counts_out_of_range_are_usage_errors(args, says):
    """Said as every option range is (the usage lines, then one error line), before the spec is read."""
    code, out, err = run_cli("compare", IRIS, *args)
    assert code == 2 and out == "" and "Traceback" not in err, err
    assert err.splitlines()[-1] == f"dlc: error: {says}"


def test_counts_are_checked_before_the_spec_is_read(tmp_path):
    code, _, err = run_cli("compare", tmp_path / "missing.dlspec", "--steps", "100000000000000000000")
    assert code == 2 and "must be at most 100000" in err


@pytest.mark.parametrize("args", [["--steps", "1e20"], ["--steps", "nan"], ["--steps", "2.5"],
                                  ["--seeds", "inf"], ["--seeds", "3.5"]])
def test_counts_that_are_not_whole_numbers_are_usage_errors(args):
    code, out, err = run_cli("compare", IRIS, *args)
    assert code == 2 and out == "" and f"Invalid value for '{args[0]}'" in err and "Traceback" not in err


def test_cli_bounds_are_the_apis():
    assert (cli.MAX_STEPS, cli.MAX_SEEDS) == (rc_.MAX_STEPS, rc_.MAX_SEEDS)
    rc_.check_counts(rc_.MAX_STEPS, rc_.MAX_SEEDS)  # (the bounds themselves are allowed)
    with pytest.raises(ValueError, match="steps must be between 1 and 100000, got 100001"):
        rc_.check_counts(rc_.MAX_STEPS + 1, None)
    with pytest.raises(ValueError, match="at least 2 seeds .* at most 1000, got 1001"):
        rc_.check_counts(None, rc_.MAX_SEEDS + 1)


def test_the_api_refuses_counts_out_of_range_before_training():
    import dlc

    spec = dlc.load(IRIS)
    with pytest.raises(ValueError, match="steps must be between 1 and 100000"):
        dlc.compare(spec, steps=10**20)
    with pytest.raises(ValueError, match="at most 1000, got 100000000000000000000"):
        dlc.compare(spec, seeds=10**20)


# -------------------------------------------------------------------------------------------- strict JSON


def test_strict_json_turns_every_non_finite_number_into_null():
    c = {"a": math.inf, "b": [1.0, math.nan, {"c": -math.inf}], "d": "x", "e": 2, "f": (0.5, None, True)}
    want = '{"a": null, "b": [1.0, null, {"c": null}], "d": "x", "e": 2, "f": [0.5, null, true]}'
    assert jsonout.dumps(c) == want
    assert jsonout.dumps({"x": [np.float64("nan"), np.float64(0.25)]}) == '{"x": [null, 0.25]}'


def _finite_comparison() -> dict:
    return rc_.Comparison(
        steps=3, dtype="float64", losses={"keras": [2.5, 1.0 / 3, 1e-300], "torch": [2.5, 1.0 / 3, 1e-300]},
        max_abs_loss_diff=0.0, initial_weight_max_abs_diff=0.0, final_weight_max_abs_diff=1.2345678901234e-17,
        final_metrics={"keras": {"epoch": 1, "loss": 0.1, "accuracy": 0.9}}, passed=True, reasons=[],
        runs={"keras": {"steps": 3, "best_epoch": None}}, val_losses={"keras": [0.7]},
        summary="equivalent: ✓",
        mismatch_layers={"dense": 1e-7}).to_json()


def _lr_find(losses: list[float]) -> LRFind:
    r = LRFind("iris", "torch", "float32", 7, 1e-7, 10.0, 200, 16, "adam", "the training part",
               lrs=[1e-7 * 10 ** (i / 3) for i in range(len(losses))], losses=list(losses),
               smoothed=[v * 0.98 for v in losses], min_loss_lr=1e-6, min_loss=min(losses), suggested_lr=1e-3,
               steepest_lr=1e-3, notes=["a note"])
    return r


def test_strict_json_is_byte_identical_for_finite_values():
    """The shared helper changed nothing a parser of the old output would see: compare's dict and
    lr-find's to_json() print exactly as json.dumps printed them."""
    for obj in (_finite_comparison(), _lr_find([2.3, 2.0, 1.5, 0.75]).to_json()):
        assert jsonout.dumps(obj) == json.dumps(obj, allow_nan=False)


def test_lr_finds_diverged_step_is_null():
    d = json.loads(jsonout.dumps(_lr_find([2.3, 2.0, math.inf, math.nan]).to_json()))
    assert d["losses"][2:] == [None, None] and d["smoothed_losses"][2:] == [None, None]
    assert d["min_smoothed_loss"] == 2.0


# ---------------------------------------------------------------------------------------------- divergence


def test_the_diverged_line_names_the_backends_and_the_step():
    D = rc_._Divergence
    both = rc_._diverged_line({"keras": D(4, math.inf), "torch": D(4, math.inf)}, {}, "float64", 30)
    assert both == ("training diverged in float64 on both backends at step 4 of the 30 compared (the loss "
                    "became inf on both); compare the 3 steps before it with --steps 3, or try a smaller "
                    "learning rate")
    mixed = rc_._diverged_line({"keras": D(4, math.inf), "torch": D(4, math.nan)}, {}, "float32", 30)
    assert "on both backends at step 4 of the 30 compared (inf on keras, nan on torch)" in mixed
    apart = rc_._diverged_line({"keras": D(4, math.inf), "torch": D(6, math.nan)}, {}, "float64", 30)
    assert ("on both backends: on keras at step 4 (loss inf), on torch at step 6 (loss nan) of the 30 "
            "compared; compare the 3 steps before it with --steps 3") in apart
    second = rc_._diverged_line({"keras": D(2, math.inf), "torch": D(2, math.inf)}, {}, "float64", 30)
    assert "; compare the step before it with --steps 1, or try" in second
    one = rc_._diverged_line({"torch": D(1, math.nan)}, {"keras": 30}, "float64", 30)
    assert one == ("training diverged in float64 on torch only, at step 1 of the 30 compared (its loss "
                   "became nan); keras's loss stayed finite over its 30 steps; try a smaller learning rate")
    alone = rc_._diverged_line({"torch": D(5, math.nan)}, {}, "float64", 10)  # (_locate: one backend)
    assert alone.startswith("training diverged in float64 on torch at step 5 of the 10 compared (the loss "
                            "became nan); compare the 4 steps before it")
    seeds = rc_._diverged_line({"keras": D(9, math.inf), "torch": D(9, math.inf)}, {}, "float32", None,
                               seed=8)
    assert "in float32 with seed 8 on both backends at step 9 (" in seeds and "--steps" not in seeds


DIVERGES = """
model diverges {
  seed: 5
  data {
    source: npz("d.npz")
    split: holdout(val=0.2)
  }
  input: (4)
  layers {
    Dense(64, activation=relu)
    Dense(64, activation=relu)
    Dense(1)
  }
  loss: mse
  optimizer: SGD(lr=LR)
  train {
    epochs: 2
    batch_size: 4
  }
}
"""


def _spec(tmp_path, lr: str):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype("float32")
    np.savez(tmp_path / "d.npz", x=x, y=(x[:, 0] > 0).astype("int64"))
    path = tmp_path / "d.dlspec"
    path.write_text(DIVERGES.replace("LR", lr))
    return path


@pytest.mark.usefixtures("one_torch_thread")
def test_a_spec_diverging_on_both_backends_says_so_and_where(tmp_path):
    pytest.importorskip("tensorflow")
    code, out, err = run_cli("compare", _spec(tmp_path, "1e6"), "--steps", "8", "--json")
    assert code == 1 and out == "" and err.count("\n") == 1, err
    assert err.startswith("dlc: error: training diverged in float64 on both backends at step 4 of the 8 "
                          "compared (the loss became inf on both); compare the 3 steps before it with "
                          "--steps 3")


@pytest.mark.usefixtures("one_torch_thread")
def test_a_spec_diverging_on_one_backend_names_it(tmp_path, monkeypatch):
    """torch's loss made nan from step 3 (keras trains as it should): the line names torch alone."""
    pytest.importorskip("tensorflow")
    from dlc.backends import session_class

    torch_session = session_class("torch")
    original = torch_session.train_epoch
    done = {"steps": 0}

    def train_epoch(self, handle, perm, batch_size, progress=None):
        losses, stats, sizes = original(self, handle, perm, batch_size, progress)
        first = done["steps"]
        done["steps"] += len(losses)
        losses = np.array(losses, dtype=np.float64)
        losses[max(0, 2 - first):] = math.nan
        return losses, stats, sizes

    monkeypatch.setattr(torch_session, "train_epoch", train_epoch)
    code, out, err = run_cli("compare", _spec(tmp_path, "0.01"), "--steps", "6")
    assert code == 1 and out == "" and err.count("\n") == 1, err
    assert err.startswith("dlc: error: training diverged in float64 on torch only, at step 3 of the 6 "
                          "compared (its loss became nan); keras's loss stayed finite over its 6 steps"), err
