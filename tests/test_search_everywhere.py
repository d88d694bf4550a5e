"""Search spaces in unusual places, as `dlc check` and a trial of `dlc tune` see them: a block's parameter
among a choice's options is the same option in every use of the block (in the trial as in best.dlspec), a call
among the options is an option (`optimizer: choice(SGD(lr=0.1), Adam)`), an option that fails only with
another space's first value is a warning (the other combinations train), and a choice of a thousand options is
checked in one pass per resolve."""

from __future__ import annotations

import pytest

from dlc.compiler import compile_text, spaces
from dlc.compiler.diagnostics import Diagnostic
from dlc.compiler.search import concretize, spaces_of

from conftest import ROOT

IRIS = """model s {
  seed: 7
  data {
    source: iris
    split: holdout(val=0.2)
  }
  input: (4)
  layers {
LAYERS
    Dense(3, activation=softmax)
  }
BLOCKS
  loss: LOSS
  metrics: [accuracy]
  optimizer: Adam(lr=0.01)
  train {
    epochs: 1
    batch_size: 16
  }
  search {
    method: grid
    objective: minimize val_loss
  }
}
"""

SEQUENCE = IRIS.replace("source: iris", "source: digits").replace("input: (4)", "input: (8, 8)") \
    .replace("Dense(3, activation=softmax)", "GlobalMaxPool1D()\n    Dense(10, activation=softmax)")


def _spec(template: str = IRIS, layers: str = "    Dense(8, activation=relu)", blocks: str = "",
          loss: str = "sparse_categorical_crossentropy") -> str:
    return template.replace("LAYERS", layers).replace("BLOCKS", blocks).replace("LOSS", loss)


def _compile(text: str, overrides: dict | None = None):
    return compile_text(text, "t.dlspec", ROOT, overrides)


def _at(text: str, needle: str) -> tuple[int, int]:
    """(line, col), 1-based, of the first `needle`."""
    for n, line in enumerate(text.split("\n"), 1):
        if needle in line:
            return n, line.index(needle) + 1
    raise AssertionError(f"{needle!r} not in the spec")


def _where(d: Diagnostic) -> tuple[int, int] | None:
    return (d.span.line, d.span.col) if d.span else None


# ------------------------------------------------------------------------- a block's parameter as an option

PAIR = _spec(layers="    pair(4, tanh)\n    pair(6, elu)",
             blocks="  block pair(n, act) {\n    Dense(choice(n, 8), activation=choice(act, relu))\n  }")


def _units_and_activations(compiled) -> list[tuple]:
    return [(lay.units, lay.activation.name) for lay in compiled.spec.layers]


def test_a_block_parameter_option_is_the_same_option_in_every_use():
    """`choice(n, 8)` in a block used as pair(4) and pair(6): the option `n` is 4 in one use and 6 in the
    other. A trial's override (the first use's value, 4) set both uses to 4, while best.dlspec, which writes
    the option `n`, trained 4 and 6: the best spec was not the trial that won."""
    units, act = _at(PAIR, "choice(n"), _at(PAIR, "choice(act")
    trial = _compile(PAIR, {units: 4, act: "tanh"})
    assert trial.ok, trial.render()
    assert _units_and_activations(trial)[:2] == [(4, "tanh"), (6, "elu")]
    other = _compile(PAIR, {units: 8, act: "relu"})
    assert _units_and_activations(other)[:2] == [(8, "relu"), (8, "relu")]
    compiled = _compile(PAIR)
    values = {"layers[0][0].units": 4, "layers[0][0].activation": "tanh"}
    text = concretize(compiled, spaces_of(compiled), values)
    assert "Dense(n, activation=act)" in text
    best = _compile(text)
    assert best.ok, best.render()
    assert _units_and_activations(best) == _units_and_activations(trial)


# --------------------------------------------------------------------------------- a call as an option


def _regularizers(compiled) -> list[tuple]:
    return [(type(lay.kernel_reg).__name__, lay.kernel_reg.model_dump()) for lay in compiled.spec.layers
            if getattr(lay, "kernel_reg", None) is not None]


CALLS = _spec(layers="    Dense(8, activation=relu, kernel_reg=choice(l1(1e-4), l2( 1e-3 )))").replace(
    "  optimizer: Adam(lr=0.01)", "  optimizer: choice(SGD(lr=0.1, momentum=0.9, nesterov=true), Adam)")


def test_a_call_among_a_choice_s_options_is_an_option():
    """`choice(l1(1e-4), l2(1e-4))` and `optimizer: choice(SGD(lr=0.1, momentum=0.9), Adam)` (comparing
    optimizers, the tuning guides' first search) were E501 errors: a call where a catalogue item belongs is
    now an option like a name. A trial's value is the call's text, however the spec spaced it; the trial
    compiles that call, and best.dlspec writes it as the spec wrote it."""
    compiled = _compile(CALLS)
    assert compiled.ok, compiled.render()
    found = {sp.name: sp for sp in spaces_of(compiled)}
    assert found["layers[0].kernel_reg"].options == ["l1(1e-4)", "l2(1e-3)"]
    assert found["optimizer"].options == ["SGD(lr=0.1, momentum=0.9, nesterov=true)", "Adam"]
    assert type(compiled.spec.optimizer).__name__ == "SGD" and compiled.spec.optimizer.nesterov
    reg, opt = _at(CALLS, "choice(l1"), _at(CALLS, "choice(SGD")
    trial = _compile(CALLS, {reg: "l2(1e-3)", opt: "Adam"})
    assert trial.ok, trial.render()
    assert _regularizers(trial)[0][1]["l2"] == 1e-3 and type(trial.spec.optimizer).__name__ == "Adam"
    chosen = {"layers[0].kernel_reg": "l2(1e-3)", "optimizer": "Adam"}
    text = concretize(compiled, list(found.values()), chosen)
    assert "kernel_reg=l2( 1e-3 ))" in text and "optimizer: Adam\n" in text
    best = _compile(text)
    assert best.ok, best.render()
    assert _regularizers(best) == _regularizers(trial)


def test_a_call_option_in_a_block_is_bound_with_each_use_s_arguments():
    """`choice(l1(r), l2(r))` in a block used with r=0.01 and r=0.02: the option `l2(r)` is one option (one
    parameter), bound in each use with that use's r, in the trial as in best.dlspec."""
    text = _spec(layers="    reg(0.01)\n    reg(0.02)",
                 blocks="  block reg(r) {\n    Dense(8, kernel_reg=choice(l1(r), l2(r)))\n  }")
    trial = _compile(text, {_at(text, "choice(l1"): "l2(r)"})
    assert trial.ok, trial.render()
    assert [(kind, d.get("l2")) for kind, d in _regularizers(trial)] == [("L2", 0.01), ("L2", 0.02)]


@pytest.mark.parametrize("where, written, message", [
    ("loss", "choice(sparse_categorical_crossentropy, huber(delta=uniform(0.5, 2)))",
     "a choice's option cannot hold a search space: huber() holds uniform()"),
    ("units", "choice(8, l2(3))", "a search space chooses plain values here, not a call to 'l2'"),
    ("range", "uniform(l2(3), 4)", "uniform() takes two numbers, not a call to 'l2'"),
])
def test_a_call_option_that_cannot_be_one_is_a_clear_error(where, written, message):
    """A call option holding a search space of its own (one value is drawn per call, so the inner space would
    be searched only in some trials), a call where a plain number belongs (units), a call as a range's end:
    each one E501, where it is written."""
    if where == "loss":
        text = _spec(loss=written)
    else:
        text = _spec(layers=f"    Dense({written if where == 'units' else 8}, activation=relu)")
        if where == "range":
            text = text.replace("Adam(lr=0.01)", f"Adam(lr={written})")
    errors = [d for d in _compile(text).diagnostics.sorted() if d.severity == "error"]
    assert [d.message for d in errors] == [message]
    assert _where(errors[0]) == _at(text, "uniform(0.5" if where == "loss" else "l2(")


# ------------------------------------------------------------------ an option that fails with one pairing


def test_an_option_that_fails_only_with_another_spaces_first_value_is_a_warning():
    """A kernel of 9 does not fit 8 steps with padding=valid, the first option of padding, but does with
    padding=same: the check reported an error, and `dlc tune` refused a search whose other trials train. It
    is now warning W008, naming both; with padding fixed at valid it is still an error."""
    text = _spec(SEQUENCE, "    Conv1D(4, choice(3, 9), padding=choice(valid, same))")
    found = _compile(text).diagnostics.sorted()
    assert not [d for d in found if d.severity == "error"], found
    (w,) = [d for d in found if d.code == "W008"]
    assert _where(w) == _at(text, "9)")
    assert w.message.startswith("when layers[0].kernel_size is 9 and layers[0].padding is valid: shape error")
    assert "only the trials that draw both fail" in (w.hint_text() or "")
    fixed = text.replace("padding=choice(valid, same)", "padding=valid")
    errors = [d for d in _compile(fixed).diagnostics.sorted() if d.severity == "error"]
    assert [(d.code, _where(d)) for d in errors] == [("E301", _at(fixed, "9)"))]


def test_an_option_that_fails_whatever_the_others_is_still_an_error():
    """binary_crossentropy on a three-class set fails whatever the learning rate: another space does not make
    it a warning."""
    text = _spec(loss="choice(sparse_categorical_crossentropy, binary_crossentropy)").replace(
        "Adam(lr=0.01)", "Adam(lr=loguniform(1e-3, 1e-1))")
    errors = [d for d in _compile(text).diagnostics.sorted() if d.severity == "error"]
    assert {(d.code, _where(d)) for d in errors} == {("E302", _at(text, "binary_crossentropy)"))}


def test_an_error_of_the_first_values_is_reported_at_the_space_that_causes_it():
    """`holdout(val=uniform(0, 0.3))`: the spec is checked at the low end, val=0, and the early stopping
    monitor and the objective then need a validation split. Both were reported at their own lines, with no
    word of the range; they are now at its 0, "when data.split.val is 0: ...". A pairing of two first values
    that another pairing avoids stays an error (the spec as checked is that pairing), with both named."""
    text = _spec().replace("holdout(val=0.2)", "holdout(val=uniform(0, 0.3))").replace(
        "batch_size: 16", "batch_size: 16\n    early_stopping: (monitor=val_loss, patience=2)")
    errors = [d for d in _compile(text).diagnostics.sorted() if d.severity == "error"]
    low = _at(text, "0, 0.3")
    assert {(d.code, _where(d)) for d in errors} == {("E201", low), ("E504", low)}
    assert all(d.message.startswith("when data.split.val is 0: ") for d in errors), errors
    paired = _spec(SEQUENCE, "    Conv1D(4, choice(9, 3), padding=choice(valid, same))")
    (e,) = [d for d in _compile(paired).diagnostics.sorted() if d.severity == "error"]
    assert (e.code, _where(e)) == ("E301", _at(paired, "9, 3"))
    assert e.message.startswith("when layers[0].kernel_size is 9 and layers[0].padding is valid: shape error")
    assert "list one that fits first" in (e.hint_text() or "")


# ------------------------------------------------------------------------------ lists and the input shape


def test_a_choice_among_a_lists_names_is_bound_like_the_names():
    """`metrics: [choice(accuracy, recall)]` and `augment: [choice(flip, crop)]` were "invalid value for
    'metrics'" at the whole list: the chosen name was left a string. It is bound as the names around it are;
    an option that cannot be one (crop without a size) is reported at that option."""
    text = _spec().replace("metrics: [accuracy]", "metrics: [choice(accuracy, recall)]")
    r = _compile(text)
    assert r.ok, r.render()
    assert [m.name for m in r.spec.metrics] == ["accuracy"]
    trial = _compile(text, {_at(text, "choice(accuracy"): "recall"})
    assert [m.name for m in trial.spec.metrics] == ["recall"]
    image = _spec().replace("source: iris", "source: digits\n    augment: [choice(flip, crop)]") \
        .replace("input: (4)", "input: (8, 8, 1)").replace("Dense(3,", "Flatten()\n    Dense(10,")
    errors = [d for d in _compile(image).diagnostics.sorted() if d.severity == "error"]
    assert [(d.code, _where(d)) for d in errors] == [("E202", _at(image, "crop)]"))]
    assert errors[0].message == "when data.augment[0] is crop: crop is missing its required argument 'size'"


def test_a_searched_input_shape_says_so():
    """`input: (choice(4, 8))` said "input must be a shape of positive integers"."""
    text = _spec().replace("input: (4)", "input: (choice(4, 8))")
    errors = [d for d in _compile(text).diagnostics.sorted() if d.severity == "error"]
    assert [(d.code, _where(d)) for d in errors] == [("E501", _at(text, "choice(4, 8)"))]
    assert errors[0].message.startswith("the input shape cannot be searched")


# -------------------------------------------------------------------------------------- a long choice


def test_a_long_choice_is_checked_in_one_pass(monkeypatch):
    """Each option was compared with every earlier one (to find one listed twice), in each of the 65
    resolves of `dlc check`: 32 million comparisons, 3 s, for a choice of 1000 widths."""
    calls = [0]
    key = spaces._option_key

    def counted(a):
        calls[0] += 1
        return key(a)

    monkeypatch.setattr(spaces, "_option_key", counted)
    widths = ", ".join(str(i) for i in range(1, 1001))
    r = _compile(_spec(layers=f"    Dense(choice({widths}), activation=relu)"))
    assert r.ok, r.render()
    assert calls[0] < 1_000_000, calls[0]
    twice = _spec(layers="    Dense(choice(4, 8, 4.0), activation=relu)")
    errors = [d for d in _compile(twice).diagnostics.sorted() if d.severity == "error"]
    assert [(d.message, _where(d)) for d in errors] == [("choice() lists 4.0 twice", _at(twice, "4.0"))]
