"""`dlc check` rules about what a spec will do when it runs: a split the data's rows cannot make (the
runtime's rule, compiler/splitsizes.py, applied to the rows dlc check knows: a bundled set's, an .npy or .npz
header's), a choice of one value (W009), a schedule that outlasts the training (W010), and a search space
whose first option or low end does not fit its argument (said as for its other options, at that option)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dlc.compiler import compile_text
from dlc.compiler.diagnostics import Diagnostic
from dlc.compiler.spec import BUNDLED_CLASS_ROWS, BUNDLED_ROWS
from dlc.runtime.data import DataError, holdout_indices, kfold_indices

from conftest import ROOT, edited_spec, run_cli

IRIS = ROOT / "specs" / "iris.dlspec"
TUNE = ROOT / "specs" / "tune" / "iris_tune.dlspec"
IRIS_SPLIT = "split: holdout(val=0.2, test=0.2, stratify=true)"


def _diags(text: str, base_dir: Path = IRIS.parent) -> list[Diagnostic]:
    return compile_text(text, "t.dlspec", base_dir).diagnostics.sorted()


def _at(text: str, needle: str, line_with: str) -> tuple[int, int]:
    """(line, col), 1-based, of `needle` on the first line holding `line_with`."""
    for n, line in enumerate(text.split("\n"), 1):
        if line_with in line and needle in line:
            return n, line.index(needle, line.index(line_with)) + 1
    raise AssertionError(f"{needle!r} not in the spec")


def _one(items: list[Diagnostic], code: str) -> Diagnostic:
    found = [x for x in items if x.code == code]
    assert len(found) == 1, [(x.code, x.message) for x in items]
    return found[0]


def _where(d: Diagnostic) -> tuple[int, int]:
    assert d.span is not None
    return d.span.line, d.span.col


# ------------------------------------------------------------------------------------------ splits vs rows


def test_bundled_row_counts_are_scikit_learns():
    from sklearn import datasets

    for name, rows in BUNDLED_ROWS.items():
        y = getattr(datasets, f"load_{name}")().target
        assert len(y) == rows, name
        if name in BUNDLED_CLASS_ROWS:
            assert tuple(np.bincount(y).tolist()) == BUNDLED_CLASS_ROWS[name], name
    assert set(BUNDLED_CLASS_ROWS) == set(BUNDLED_ROWS) - {"diabetes"}


def test_kfold_larger_than_the_data_is_an_error_at_k(tmp_path):
    text = edited_spec(IRIS, (IRIS_SPLIT, "split: kfold(k=391)"))
    path = tmp_path / "iris_k.dlspec"
    path.write_text(text)
    rc, _, err = run_cli("check", path)
    assert rc == 2
    line, col = _at(text, "391", "kfold")
    assert "error[E303]: 391-fold split: only 150 rows" in err
    assert f"{path}:{line}:{col}" in err
    lines = err.splitlines()
    shown = next(x for x in lines if x.startswith(f"{line} |"))
    caret = next(x for x in lines if "^" in x)
    assert caret.index("^") == shown.index("391")
    assert caret.endswith("^^^ each fold needs at least one; k can be 150 at most")


def test_kfold_after_a_test_part_counts_the_rows_left():
    text = edited_spec(IRIS, (IRIS_SPLIT, "split: kfold(k=130, test=0.2)"))
    e = _one(_diags(text), "E303")
    assert e.message == "130-fold split: only 120 rows (after the 30 test rows) ('iris' has 150 rows)"
    assert _where(e) == _at(text, "130", "kfold")
    assert "k can be 120 at most" in (e.hint or "")
    assert not [x for x in _diags(edited_spec(IRIS, (IRIS_SPLIT, "split: kfold(k=120, test=0.2)")))
                if x.severity == "error"]


@pytest.mark.parametrize(("split", "bad"), [
    ("kfold(k=51, stratify=true)", True), ("kfold(k=50, stratify=true)", False),
    ("kfold(k=41, stratify=true, test=0.2)", True), ("kfold(k=40, stratify=true, test=0.2)", False),
    ("holdout(val=0.01, stratify=true)", True), ("holdout(val=0.02, stratify=true)", False),
    ("holdout(val=0.2, test=0.01, stratify=true)", True), ("holdout(val=0.99, test=0.0)", False),
])
def test_stratified_splits_of_iris(split, bad):
    text = edited_spec(IRIS, (IRIS_SPLIT, f"split: {split}"))
    errors = [x for x in _diags(text) if x.severity == "error"]
    assert [x.code for x in errors] == (["E303"] if bad else []), [x.message for x in errors]
    if bad and "kfold" in split:
        assert "stratified" in errors[0].message and "rows per class" in errors[0].message
        assert _where(errors[0]) == _at(text, split.split("=")[1].split(",")[0], "split:")


def _runtime_refuses(name: str, split: str, k: int, val: float, test: float, stratify: bool) -> bool:
    """Whether dlc.runtime's split of the bundled set `name` raises, on its real labels."""
    from sklearn import datasets

    y = getattr(datasets, f"load_{name}")().target
    try:
        if split == "kfold":
            kfold_indices(len(y), y, k, True, stratify, test, 7)
        else:
            holdout_indices(len(y), y, val, test, stratify, 7)
    except DataError:
        return True
    return False


CASES = [("iris", "kfold", k, 0.0, t, s) for k in (40, 41, 50, 51, 120, 121, 150, 151) for t in (0.0, 0.2)
         for s in (False, True)]
CASES += [("wine", "kfold", k, 0.0, t, True) for k in (38, 39, 48, 49) for t in (0.0, 0.2)]
CASES += [("iris", "holdout", 0, v, t, True) for v in (0.01, 0.02, 0.5) for t in (0.0, 0.01, 0.02, 0.98)
          if v + t < 1]


@pytest.mark.parametrize("case", CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_check_refuses_what_the_runtime_refuses(case):
    """The same rule both sides: `dlc check` errs exactly when the runtime's split of the data fails."""
    name, split, k, val, test, stratify = case
    written = (f"kfold(k={k}, test={test}, stratify={str(stratify).lower()})" if split == "kfold"
               else f"holdout(val={val}, test={test}, stratify={str(stratify).lower()})")
    feats = {"iris": 4, "wine": 13}[name]
    text = edited_spec(IRIS, (IRIS_SPLIT, f"split: {written}"), ("source: iris", f"source: {name}"),
                   ("input: (4)", f"input: ({feats})"))
    errors = [x for x in _diags(text) if x.severity == "error"]
    assert bool(errors) == _runtime_refuses(name, split, k, val, test, stratify), [x.message for x in errors]


def test_runtime_and_check_say_the_same():
    from sklearn import datasets

    text = edited_spec(IRIS, (IRIS_SPLIT, "split: kfold(k=51, stratify=true)"))
    e = _one(_diags(text), "E303")
    y = datasets.load_iris().target
    with pytest.raises(DataError) as raised:
        kfold_indices(len(y), y, 51, True, True, 0.0, 7)
    assert e.message.split(" ('iris'")[0] == str(raised.value).split("; ")[0]
    assert (e.hint or "").startswith(str(raised.value).split("; ")[1])


def test_a_searched_k_is_checked_at_each_option():
    text = edited_spec(TUNE, (IRIS_SPLIT, "split: kfold(k=choice(5, 400))"),
                   ("objective: minimize val_loss", "objective: minimize cv_loss"))
    e = _one(_diags(text, TUNE.parent), "E303")
    assert e.message.startswith("when data.split.k is 400: 400-fold split: only 150 rows")
    assert _where(e) == _at(text, "400", "kfold")


@pytest.mark.parametrize("kind", ["npy", "npz"])
def test_file_sources_rows_from_their_headers(tmp_path, kind):
    x, y = np.zeros((12, 4), np.float32), np.arange(12) % 3
    if kind == "npy":
        np.save(tmp_path / "x.npy", x)
        np.save(tmp_path / "y.npy", y)
        source = 'npy("x.npy", "y.npy")'
    else:
        np.savez_compressed(tmp_path / "d.npz", x=x, y=y)
        source = 'npz("d.npz")'
    text = edited_spec(IRIS, ("source: iris", f"source: {source}"), (IRIS_SPLIT, "split: kfold(k=13)"))
    e = _one(_diags(text, tmp_path), "E303")
    assert e.message.startswith("13-fold split: only 12 rows"), e.message
    assert _where(e) == _at(text, "13", "kfold")
    ok = edited_spec(IRIS, ("source: iris", f"source: {source}"), (IRIS_SPLIT, "split: kfold(k=12)"))
    assert not [x for x in _diags(ok, tmp_path) if x.severity == "error"]


# ------------------------------------------------------------------------------------------ choice of one


def test_a_choice_of_one_value_is_a_warning():
    text = edited_spec(TUNE, ("Dense(choice(8, 16, 32, 64)", "Dense(choice(8)"))
    w = _one(_diags(text, TUNE.parent), "W009")
    assert w.severity == "warning"
    assert w.message == "a choice of one value searches nothing: every trial takes it"
    assert w.hint == "write 8, or list the other options"
    assert _where(w) == _at(text, "choice(8)", "Dense(")
    assert not [x for x in _diags(TUNE.read_text(), TUNE.parent) if x.code == "W009"]


# ------------------------------------------------------------------------------------------ schedule length


def _scheduled(schedule: str, epochs: int) -> str:
    return edited_spec(IRIS,
                       ("optimizer: Adam(lr=0.01)", f"optimizer: Adam(lr=0.01)\n  schedule: {schedule}"),
                       ("epochs: 40", f"epochs: {epochs}"))


@pytest.mark.parametrize(("schedule", "epochs", "at", "words"), [
    ("cosine(epochs=100)", 20, "100",
     "cosine(epochs=100) is longer than the training: training stops after 20 epochs, 0.2 of the way "
     "through the cosine"),
    ("warmup(epochs=50, then=cosine(epochs=100))", 20, "50", "the warm-up never ends: training stops after "
                                                             "20 epochs, 0.4 of the way through"),
    ("warmup(5, cosine(epochs=45))", 20, "45", "15 after the warm-up, 0.333 of the way through the cosine"),
    ("warmup(epochs=20, then=step(10))", 20, "20", "then=step(...) never starts"),
    ("step(every=30)", 20, "30", "step(every=30) never lowers the lr: training stops after 20 epochs"),
    ("plateau(patience=20)", 20, "20", "plateau(patience=20) never lowers the lr"),
    ("plateau(patience=19)", 20, "19", "the earliest epoch it can lower it for is epoch 21"),
])
def test_a_schedule_longer_than_the_training_is_a_warning(schedule, epochs, at, words):
    text = _scheduled(schedule, epochs)
    w = _one(_diags(text), "W010")
    assert w.severity == "warning"
    assert words in w.message
    assert _where(w) == _at(text, at, "schedule:")


def test_a_schedule_warning_gives_the_lr_it_ends_at():
    w = _one(_diags(_scheduled("cosine(epochs=100)", 20)), "W010")
    assert w.hint == ("the lr ends at 0.00914 (from 0.01), not min_lr 0: use cosine(epochs=20) to decay "
                      "over the whole training")
    w = _one(_diags(_scheduled("warmup(epochs=50, then=cosine(epochs=100))", 20)), "W010")
    assert w.message.endswith("0.4 of the way through warmup(epochs=50): then=cosine(...) never starts")
    assert (w.hint or "").startswith("the lr ends at 0.004, not the optimizer's 0.01")


def test_a_searched_lr_does_not_repeat_a_schedule_warning():
    text = edited_spec(TUNE, ("  train {", "  schedule: warmup(5, cosine(epochs=100))\n  train {"))
    assert [x.code for x in _diags(text, TUNE.parent)] == ["W010"]


@pytest.mark.parametrize(("schedule", "epochs"), [
    ("cosine(epochs=20)", 20), ("warmup(5, cosine(epochs=15))", 20), ("step(every=19)", 20),
    ("plateau(patience=18)", 20), ("exponential(rate=0.5, every=30)", 20), ("warmup(epochs=20)", 20),
])
def test_a_schedule_that_fits_the_training_is_quiet(schedule, epochs):
    assert not [x for x in _diags(_scheduled(schedule, epochs)) if x.code == "W010"]


# ------------------------------------------------------------------------------------------ range ends


def _shift(space: str) -> str:
    return edited_spec(TUNE, ("normalize: standard", f"normalize: standard\n    augment: [shift({space})]"),
                   ("input: (4)", "input: (2, 2, 1)"),
                   ("Dense(choice(8, 16, 32, 64)", "Flatten()\n    Dense(16"))


@pytest.mark.parametrize(("space", "value"), [("uniform(0.0, 0.2)", "0.0"), ("uniform(-0.1, 0.2)", "-0.1"),
                                              ("choice(0, 0.1)", "0")])
def test_a_low_end_that_does_not_fit_is_said_at_it(space, value):
    text = _shift(space)
    e = _one(_diags(text, TUNE.parent), "E501")
    func = space.split("(")[0]
    assert e.message == f"{func}() may choose {value}, which is not a valid 'fraction' of shift"
    assert e.hint == "must be greater than 0"
    assert _where(e) == _at(text, value, "shift(")


def test_both_ends_that_do_not_fit_are_each_said():
    text = _shift("uniform(-0.1, 1.5)")
    errors = [x for x in _diags(text, TUNE.parent) if x.severity == "error"]
    assert [(x.message, _where(x)) for x in errors] == [
        ("uniform() may choose -0.1, which is not a valid 'fraction' of shift", _at(text, "-0.1", "shift(")),
        ("uniform() may choose 1.5, which is not a valid 'fraction' of shift", _at(text, "1.5", "shift(")),
    ]


def test_a_split_error_is_reported_with_the_other_errors():
    """A spec that does not build (a misspelt activation) still has its split checked: all errors at once."""
    text = edited_spec(IRIS, (IRIS_SPLIT, "split: kfold(k=51, stratify=true)"),
                   ("activation=relu", "activation=rleu"))
    assert sorted(x.code for x in _diags(text)) == ["E102", "E303"]
    # the loss unknown, whether the split is stratified is not known: only the rules without classes apply
    text = edited_spec(IRIS, (IRIS_SPLIT, "split: kfold(k=151, stratify=true)"),
                   ("loss: sparse_categorical_crossentropy", "loss: sparse_categorical_crossentropyy"))
    assert sorted(x.code for x in _diags(text)) == ["E106", "E303"]
