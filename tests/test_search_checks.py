"""`dlc check` on specs with search spaces: every error of a search block is reported at once (a bad method
hides no misspelt objective), and each option of each search space is checked in context, as a trial of
`dlc tune` will compile it (`loss: choice(sparse_categorical_crossentropy, binary_crossentropy)` on a
three-class set is a spec error at the option binary_crossentropy, not a failed trial)."""

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
                       "loss: choice(sparse_categorical_crossentropy, binary_crossentropy)"))
    diags = _check(text)
    bce = _at(text, "binary_crossentropy)")
    errors = [d for d in diags if d.severity == "error"]
    assert [(d.code, _where(d)) for d in errors] == [("E302", bce)]
    assert errors[0].message == \
        "when loss is binary_crossentropy: binary_crossentropy needs two classes; the data has 3"
    assert errors[0].span is not None and errors[0].span.end_col == bce[1] + len("binary_crossentropy")
    path = tmp_path / "t.dlspec"
    path.write_text(text)
    rc, _, err = run_cli("check", path)
    assert rc == 2 and "when loss is binary_crossentropy" in err and f"t.dlspec:{bce[0]}:{bce[1]}" in err


def test_a_regression_loss_option_on_class_labels_is_checked_as_a_classification():
    """mse on iris's labels is a classification (one-hot targets of the three softmax outputs, Spec.task):
    no E302, accuracy applies (no E304), stratify=true has its effect (no W004)."""
    text = _tune_spec(("loss: sparse_categorical_crossentropy",
                       "loss: choice(sparse_categorical_crossentropy, mse)"))
    assert [(d.code, d.message) for d in _check(text)] == []


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


# ----------------------------------------------------------------------------------- an option listed twice


@pytest.mark.parametrize(("old", "new", "second", "hint"), [
    ("optimizer: Adam(lr=loguniform(1e-3, 1e-1))", "optimizer: choice(Adam, Adam())", "Adam()",
     "the same optimizer as Adam at column"),
    ("optimizer: Adam(lr=loguniform(1e-3, 1e-1))", "optimizer: choice(Adam(lr=0.001), Adam)", "Adam)",
     "the same optimizer as Adam(lr=0.001) at column"),
    ("optimizer: Adam(lr=loguniform(1e-3, 1e-1))", "optimizer: choice(SGD(lr=0.01), SGD(learning_rate=0.01))",
     "SGD(learning_rate", "the same optimizer as SGD(lr=0.01) at column"),
    ("optimizer: Adam(lr=loguniform(1e-3, 1e-1))", "optimizer: Adam(lr=choice(0.1, 0.10))", "0.10",
     "the same value as 0.1 at column"),
    ("activation=choice(relu, tanh, elu)", "activation=choice(relu, tanh, relu)", "relu)",
     "the first at column"),
    ("kernel_init=he_normal", "kernel_reg=choice(l2(1e-3), l2(0.001))", "l2(0.001)",
     "the same regularizer as l2(1e-3) at column"),
    ("Dropout(uniform(0.0, 0.3))", "choice(Dropout(0.2), Dropout(rate=0.2))", "Dropout(rate",
     "the same layer as Dropout(0.2) at column"),
])
def test_an_option_listed_twice_is_an_error_at_the_second_naming_the_first(old, new, second, hint):
    """`choice(Adam, Adam())`, `choice(l2(1e-3), l2(0.001))`: two texts of one point, which a grid runs twice
    and a tpe search draws twice as often, were accepted; a number written twice was reported without
    naming the first."""
    text = _tune_spec((old, new))
    errors = [d for d in _check(text) if d.severity == "error"]
    assert [(d.code, _where(d)) for d in errors] == [("E501", _at(text, second, new))], errors
    assert errors[0].message.startswith("choice() lists ") and errors[0].message.endswith(" twice")
    assert (errors[0].hint_text() or "").startswith(hint)


BLOCK_TWICE = """
block b(f) {
  Dense(choice(f, 8), activation=relu)
}
"""


def test_a_later_use_of_a_block_may_map_two_options_to_one_value():
    """`choice(f, 8)` in `b(4)` then `b(8)`: the first use tells the options apart (a trial's option is one
    of the first use's), so the second use's 8 and 8 are no search point twice; the first use's are."""
    text = BLOCK_TWICE + _tune_spec(("Dense(choice(8, 16, 32, 64), activation=choice(relu, tanh, elu), "
                                     "kernel_init=he_normal)", "b(4)\n    b(8)"))
    assert [d for d in _check(text) if d.severity == "error"] == []
    text = BLOCK_TWICE + _tune_spec(("Dense(choice(8, 16, 32, 64), activation=choice(relu, tanh, elu), "
                                     "kernel_init=he_normal)", "b(8)\n    b(4)"))
    (d,) = [d for d in _check(text) if d.severity == "error"]
    assert (d.message, _where(d)) == ("choice() lists 8 twice", _at(text, "8)", "choice(f, 8)"))
    assert d.hint_text() == (f"the same value as f = 8 (given on line {_at(text, 'b(8)')[0]}) at column "
                             f"{_at(text, 'f, 8')[1]}: list each option once")


# ------------------------------------------------------------------- a call option's error names the option


@pytest.mark.parametrize(("old", "new", "needle", "when"), [
    ("optimizer: Adam(lr=loguniform(1e-3, 1e-1))", "optimizer: choice(SGD(lr=-1), Adam)", "-1",
     "when optimizer is SGD(lr=-1): invalid value for 'lr' of SGD"),
    ("optimizer: Adam(lr=loguniform(1e-3, 1e-1))", "optimizer: choice(Adam, SGD(lr=-1))", "-1",
     "when optimizer is SGD(lr=-1): invalid value for 'lr' of SGD"),
    ("kernel_init=he_normal", "kernel_reg=choice(l2(-1), l1(1e-3))", "-1",
     "when layers[0].kernel_reg is l2(-1): invalid value for 'l2' of l2"),
    ("kernel_init=he_normal", "kernel_reg=choice(l1(1e-3), l2(-1))", "-1",
     "when layers[0].kernel_reg is l2(-1): invalid value for 'l2' of l2"),
    ("activation=choice(relu, tanh, elu)", "activation=choice(relu, leaky_relu(alpha=-5))", "-5",
     "when layers[0].activation is leaky_relu(alpha=-5): invalid value for 'alpha' of leaky_relu"),
    ("optimizer: Adam(lr=loguniform(1e-3, 1e-1))", "optimizer: choice(Adamm, Adam)", "Adamm",
     "when optimizer is Adamm: unknown optimizer 'Adamm'"),
])
def test_an_invalid_call_option_says_which_option_wherever_it_is(old, new, needle, when):
    """An invalid call option said "when optimizer is SGD(lr=-1): ..." as the second option of a top-level
    choice, but only "invalid value for 'lr' of SGD" as the first, or as any option of a choice inside a
    layer; each now says which option, at the argument it is about."""
    text = _tune_spec((old, new))
    (d,) = [d for d in _check(text) if d.severity == "error"]
    assert (d.message, _where(d)) == (when, _at(text, needle, new))


def test_a_plain_option_an_argument_rejects_is_named_as_written():
    """`Dropout(choice(0.1, "0.2"))` said "choice() may choose 0.2", a number, for the string "0.2"."""
    text = _tune_spec(("Dropout(uniform(0.0, 0.3))", 'Dropout(choice(0.1, "0.2"))'))
    (d,) = [d for d in _check(text) if d.severity == "error"]
    assert d.message == "choice() may choose \"0.2\", which is not a valid 'rate' of Dropout"
    text = _tune_spec(("Dropout(uniform(0.0, 0.3))", "Dropout(choice(1e3, 0.1))"))
    (d,) = [d for d in _check(text) if d.severity == "error"]
    assert d.message.startswith("choice() may choose 1e3, ") and _where(d) == _at(text, "1e3")


# --------------------------------------------------------------------------------------- odd ranges


def test_a_range_where_a_name_belongs_is_one_error():
    """`activation=uniform(0, 1)` was two errors, one per end ("uniform() may choose 0 ...")."""
    text = _tune_spec(("activation=choice(relu, tanh, elu)", "activation=uniform(0, 1)"))
    (d,) = [d for d in _check(text) if d.severity == "error"]
    assert d.message == "uniform() draws numbers, but activation takes an activation"
    assert _where(d) == _at(text, "uniform(0, 1)")


@pytest.mark.parametrize(("written", "message", "hint"), [
    ("loguniform(0, 0.3)", "loguniform(0, 0.3): need 0 < low < high",
     "a log scale has no 0: start above it, e.g. loguniform(0.0003, 0.3)"),
    ("loguniform(1e-400, 0.3)", "loguniform(1e-400, 0.3): need 0 < low < high",
     "1e-400 is 0 as a 64-bit number"),
    ("uniform(0.3, 0.30)", "uniform(0.3, 0.30): need low < high",
     "a range of one value searches nothing: write 0.3, or widen it"),
    ("uniform(0.3, 0.1)", "uniform(0.3, 0.1): need low < high",
     "the ends the other way round: uniform(0.1, 0.3)"),
])
def test_a_range_with_ends_out_of_order_is_shown_as_written(written, message, hint):
    """`loguniform(1e-400, 0.3)` said "loguniform(0.0, 0.3): need 0 < low < high": not what was written."""
    text = _tune_spec(("Dropout(uniform(0.0, 0.3))", f"Dropout({written})"))
    (d,) = [d for d in _check(text) if d.severity == "error"]
    assert (d.message, d.hint_text(), _where(d)) == (message, hint, _at(text, written))


def test_an_error_found_while_reading_is_not_blamed_on_a_search_space():
    """`Dense(int_uniform(1, 1e400))`: the overflow, which no resolve finds again, was reported as "when
    optimizer.learning_rate is 1e-3: number 1e400 overflows", at the learning rate."""
    text = _tune_spec(("Dense(choice(8, 16, 32, 64),", "Dense(int_uniform(1, 1e400),"))
    (d,) = [d for d in _check(text) if d.severity == "error"]
    assert (d.code, d.message, _where(d)) == \
        ("E209", "number 1e400 overflows: it is too large for a 64-bit float", _at(text, "1e400"))


# ------------------------------------------------------------------------------- the search block's values


def test_an_objective_of_a_direction_alone_asks_for_its_metric():
    text = _tune_spec(("objective: minimize val_loss", "objective: maximize"))
    (d,) = _check(text)
    assert (d.code, d.message, _where(d)) == ("E504", "objective 'maximize' names no metric",
                                              _at(text, "maximize"))
    assert d.hint_text() == "write the metric after it, e.g. objective: maximize val_accuracy"


@pytest.mark.parametrize(("storage", "hint"), [
    ("", "an empty storage names no database"),
    ("sqlite:///~dlc_no_such_user_x/s.db", "there is no user 'dlc_no_such_user_x' on this machine"),
    ("sqlite:///:memory:?cache=shared", "an in-memory SQLite database cannot be shared"),
])
def test_a_storage_that_names_no_file_is_a_spec_error(storage, hint):
    """`storage: ""` was taken as no storage; `sqlite:///~nobody/s.db` made a folder `~nobody` beside the
    spec, as `mkdir -p` would (~user is now expanded as a shell expands it); an in-memory database with a
    query (`?cache=shared`) was taken for a file, and every trial failed."""
    text = _tune_spec(("prune: median", f'prune: median\n    storage: "{storage}"'))
    (d,) = _check(text)
    assert (d.code, _where(d)) == ("E506", _at(text, f'"{storage}"'))
    assert (d.hint_text() or "").startswith(hint)


def test_a_home_that_does_not_exist_is_not_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from dlc.compiler.search import home_problem

    monkeypatch.setenv("HOME", str(tmp_path))
    assert home_problem("~/runs/s.db") is None and home_problem("runs/~/s.db") is None
    monkeypatch.setenv("HOME", str(tmp_path / "gone"))
    assert (home_problem("~/s.db") or "").startswith(f"~ is {tmp_path / 'gone'}, which does not exist")


def test_a_grid_over_a_range_a_few_floats_wide_holds_each_point_once():
    """`loguniform(0.001, 0.0010000000000000002)` (one float apart) gave the grid the high end 4 times."""
    from dlc.compiler.search import Space, grid_points

    space = Space("lr", "loguniform", (1, 1), (1, 2), low=0.001, high=0.0010000000000000002)
    assert grid_points(space) == [0.001, 0.0010000000000000002]


def test_an_option_listed_twice_hides_no_other_options_error():
    """`choice(glorot_uniform, GlorotUniform, glorot_uniform())`: both the misspelt name and the repeat."""
    text = _tune_spec(("kernel_init=he_normal",
                       "kernel_init=choice(glorot_uniform, GlorotUniform, glorot_uniform())"))
    errors = [d for d in _check(text) if d.severity == "error"]
    assert [(d.code, _where(d)) for d in errors] == [("E103", _at(text, "GlorotUniform")),
                                                     ("E501", _at(text, "glorot_uniform()"))]


@pytest.mark.parametrize("quoted,metric_error", [('"minimize val_loss"', None), ('"val_loss"', None),
                                                 ('"maximize val_acuracy"', "E504")])
def test_a_quoted_objective_says_to_drop_the_quotes_and_its_metric_is_checked(quoted, metric_error):
    text = _tune_spec(("objective: minimize val_loss", f"objective: {quoted}"))
    errors = compile_text(text).diagnostics.errors
    d = errors[0]
    assert (d.code, d.message, _where(d)) == ("E201", "expected an objective here, not a string",
                                              _at(text, quoted))
    assert d.hint_text() == f"write {quoted[1:-1]} without quotes: objective: {quoted[1:-1]}"
    assert [e.code for e in errors[1:]] == ([metric_error] if metric_error else [])
