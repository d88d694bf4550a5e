"""`dlc check` on specs with search spaces: every error of a search block is reported at once (a bad method
hides no misspelt objective), and each option of each search space is checked in context, as a trial of
`dlc tune` will compile it (`loss: choice(sparse_categorical_crossentropy, mse)` on a classification set is a
spec error at the option mse, not a failed trial)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlc.compiler import compile_text, options
from dlc.compiler.diagnostics import Diagnostic

from conftest import ROOT, run_cli

TUNE = ROOT / "specs" / "tune" / "iris_tune.dlspec"


def _tune_spec(*edits: tuple[str, str]) -> str:
    """specs/tune/iris_tune.dlspec with each (old, new) replaced once (each old must be there)."""
    text = TUNE.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def _at(text: str, needle: str, line_with: str | None = None) -> tuple[int, int]:
    """(line, col), 1-based, of `needle` on the first line holding `line_with` (default: `needle`)."""
    for n, line in enumerate(text.split("\n"), 1):
        if (line_with or needle) in line and needle in line:
            return n, line.index(needle) + 1
    raise AssertionError(f"{needle!r} not in the spec")


def _where(d: Diagnostic) -> tuple[int, int] | None:
    return (d.span.line, d.span.col) if d.span else None


def _check(text: str) -> list[Diagnostic]:
    return compile_text(text, "t.dlspec", TUNE.parent).diagnostics.sorted()


# ------------------------------------------------------------------------------------- the search block


def test_every_bad_field_of_a_search_block_is_reported_at_once():
    """An invalid method made the whole search record fail, and the objective and storage were then never
    checked: each field's error is reported, each at its own value."""
    text = _tune_spec(("method: tpe ", "method: tpee "), ("trials: 30", "trials: 0"),
                      ("objective: minimize val_loss", "objective: maximize val_acuracy"),
                      ("prune: median", "prune: mediann\n    storage: \"sqlite:///:memory:\""))
    found = {(d.code, _where(d)): d for d in _check(text) if d.severity == "error"}
    assert set(found) == {("E201", _at(text, "tpee")), ("E201", _at(text, "0", "trials:")),
                          ("E504", _at(text, "val_acuracy")), ("E201", _at(text, "mediann")),
                          ("E506", _at(text, '"sqlite'))}, found
    assert found["E504", _at(text, "val_acuracy")].hint_text() == "did you mean 'val_accuracy'?"
    assert "did you mean 'tpe'?" in (found["E201", _at(text, "tpee")].hint_text() or "")


def test_a_misspelt_direction_leaves_its_metric_checked():
    text = _tune_spec(("objective: minimize val_loss", "objective: maximise val_acuracy"))
    assert [(d.code, _where(d)) for d in _check(text)] == [
        ("E201", _at(text, "maximise")), ("E504", _at(text, "val_acuracy"))]


def test_an_error_outside_the_search_block_hides_no_misspelt_objective():
    text = _tune_spec(("activation=choice(relu, tanh, elu)", "activation=choice(relu, tanh, eluu)"),
                      ("objective: minimize val_loss", "objective: minimize val_los"))
    assert [(d.code, _where(d)) for d in _check(text)] == [
        ("E102", _at(text, "eluu")), ("E504", _at(text, "val_los"))]


def test_an_objective_that_cannot_be_read_is_reported_once():
    """A quoted objective is no record: that is its error, and no second one about the metric it quotes."""
    text = _tune_spec(("method: tpe ", "method: bogus "),
                      ("objective: minimize val_loss", 'objective: "val_los"'))
    assert [(d.code, _where(d)) for d in _check(text)] == [
        ("E201", _at(text, "bogus")), ("E201", _at(text, '"val_los"'))]


@pytest.mark.parametrize(("old", "new"), [
    ("trials: 30", "trials: choice(2, 3)"), ("method: tpe ", "method: choice(grid, random) "),
    ("prune: median", "prune: choice(median, none)"),
    ("objective: minimize val_loss", "objective: choice(val_loss, val_accuracy)")])
def test_the_search_block_itself_cannot_be_searched(old, new):
    """`trials: choice(2, 3)` was a parameter of the study (`search.trials` in the trials' table), which no
    trial uses, and best.dlspec, whose search block is dropped, came out with a `{` never closed: E501 at the
    space, the only error."""
    text = _tune_spec((old, new))
    diags = _check(text)
    assert [(d.code, _where(d)) for d in diags] == [("E501", _at(text, "choice(", new.split(":")[0]))]
    assert "cannot be searched" in diags[0].message


# ------------------------------------------------------------------------------- each option in context


def test_an_option_that_conflicts_with_the_data_is_an_error_at_the_option(tmp_path: Path):
    text = _tune_spec(("loss: sparse_categorical_crossentropy",
                       "loss: choice(sparse_categorical_crossentropy, mse)"))
    diags = _check(text)
    mse = _at(text, "mse)")
    errors = [d for d in diags if d.severity == "error"]
    assert [(d.code, _where(d)) for d in errors] == [("E302", mse), ("E304", mse)]
    assert errors[0].message == \
        "when loss is mse: mse is a regression loss, but 'iris' is a classification set"
    assert errors[0].span is not None and errors[0].span.end_col == mse[1] + len("mse")
    # a warning-class rule stays a warning (stratify=true with a regression loss), its own line named
    warning, = [d for d in diags if d.severity == "warning"]
    assert (warning.code, _where(warning)) == ("W004", mse)
    assert warning.message.startswith("when loss is mse: stratify=true has no effect")
    assert (warning.hint_text() or "").endswith(f"see line {_at(text, 'stratify=true')[0]}")
    path = tmp_path / "t.dlspec"
    path.write_text(text)
    rc, _, err = run_cli("check", path)
    assert rc == 2 and "when loss is mse" in err and f"t.dlspec:{mse[0]}:{mse[1]}" in err


def test_a_misspelt_name_among_the_options_is_an_error_at_it():
    """A top-level choice of names binds only its first option when the spec is built: the others are
    bound as a trial binds them."""
    text = _tune_spec(("optimizer: Adam(lr=loguniform(1e-3, 1e-1))", "optimizer: choice(Adam, Adamm)"))
    d, = _check(text)
    assert (d.code, _where(d), d.hint_text()) == ("E105", _at(text, "Adamm"), "did you mean 'Adam'?")
    assert d.message == "when optimizer is Adamm: unknown optimizer 'Adamm'"


def test_a_range_is_checked_at_its_high_end():
    """int_uniform(3, 5) output units: 3 fits the three iris classes, 5 does not."""
    text = _tune_spec(("Dense(3, activation=softmax)", "Dense(int_uniform(3, 5), activation=softmax)"))
    d, = _check(text)
    assert (d.code, _where(d)) == ("E302", _at(text, "5)", "int_uniform(3, 5)"))
    assert d.message.startswith("when layers[2].units is 5: ")


def test_an_option_its_argument_rejects_is_reported_once():
    """Dropout(choice(0.2, 1.5)): the argument's own check reports 1.5; the option check adds nothing."""
    text = _tune_spec(("Dropout(uniform(0.0, 0.3))", "Dropout(choice(0.2, 1.5))"))
    d, = _check(text)
    assert (d.code, _where(d)) == ("E501", _at(text, "1.5"))


def test_valid_search_specs_check_clean():
    assert compile_text(TUNE.read_text(), str(TUNE), TUNE.parent).diagnostics.items == []


def test_a_trials_spec_is_not_checked_option_by_option():
    """With a trial's values (overrides) the spec is concrete: each option is checked by its own trial."""
    text = _tune_spec(("loss: sparse_categorical_crossentropy",
                       "loss: choice(sparse_categorical_crossentropy, mse)"))
    at = _at(text, "choice(sparse")
    r = compile_text(text, "t.dlspec", TUNE.parent, overrides={at: "sparse_categorical_crossentropy"})
    assert r.ok and not r.diagnostics.items, r.render()


def test_the_options_checked_are_bounded(monkeypatch: pytest.MonkeyPatch):
    """At most MAX_OPTION_CHECKS options are resolved again: `dlc check` stays fast on long choices."""
    monkeypatch.setattr(options, "MAX_OPTION_CHECKS", 1)
    text = _tune_spec(("loss: sparse_categorical_crossentropy",
                       "loss: choice(sparse_categorical_crossentropy, categorical_crossentropy, mse, mae)"))
    # the first space, the first Dense's units, takes the one check allowed: no loss option is resolved
    assert [d for d in _check(text) if "when loss is" in d.message] == []


@pytest.mark.parametrize(("written", "hint"), [
    ("quniform(8, 32, 4)", "dlc writes this search space int_uniform(...)"),
    ("int_unifrom(8, 32)", "did you mean 'int_uniform'?"),
    ("suggest_int(8, 32)", "dlc writes this search space int_uniform(...)"),
])
def test_a_search_space_misspelt_or_from_another_tuner_is_named(written, hint):
    """`Dense(quniform(8, 32, 4))` (hyperopt's spelling) or a misspelt `int_unifrom`: the error said only
    "expected a number, a name, a string or a tuple"; it now names dlc's search space and lists them."""
    text = _tune_spec(("Dense(choice(8, 16, 32, 64),", f"Dense({written},"))
    errors = [d for d in _check(text) if d.severity == "error"]
    assert [d.code for d in errors] == ["E201"]
    assert hint in errors[0].hint
    assert "choice(...), uniform(...), loguniform(...), int_uniform(...)" in errors[0].hint


@pytest.mark.parametrize(("written", "meant"), [("bayes", "tpe"), ("Bayesian", "tpe"), ("hyperopt", "tpe"),
                                                ("grid_search", "grid"), ("random_search", "random")])
def test_another_tools_name_for_a_search_method_names_dlcs(written, meant):
    """`method: bayes` (the guides' "Bayesian search") said only "expected 'grid', 'random' or 'tpe'"."""
    text = _tune_spec(("method: tpe", f"method: {written}"))
    (d,) = _check(text)
    assert d.code == "E201" and _where(d) == _at(text, written)
    assert d.hint is not None and d.hint.startswith(f"did you mean '{meant}' (")
