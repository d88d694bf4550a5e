"""`Dense(u) * n` inside a block: a repeat count may be one of the block's parameters (it was a syntax error,
"expected an integer"), so a block can stack a depth it is given; and a depth may be searched (`* choice(1, 2,
3)`, or a parameter given one). A name that is no parameter, a value that is no whole number, and a search
space of fractions are errors at the count."""

from __future__ import annotations

from pathlib import Path

import pytest

import dlc
from dlc.compiler.diagnostics import SpecError

from conftest import run_cli

SPEC = """\
model b {
  data {
    source: iris
    normalize: standard
    split: holdout(val=0.2)
  }
  input: (4)
  layers {
    CALLS
    Dense(3, activation=softmax)
  }
  loss: sparse_categorical_crossentropy
  optimizer: Adam(lr=0.01)
  train {
    epochs: 2
    batch_size: 16
  }
}

block stack(units, n) {
  Dense(units, activation=relu) * n
  residual {
    Dense(units)
  } * n
}
"""


def _write(tmp_path: Path, calls: str, text: str = SPEC) -> Path:
    path = tmp_path / "b.dlspec"
    path.write_text(text.replace("CALLS", calls))
    return path


def test_a_block_parameter_repeats_layers_and_residual_blocks(tmp_path):
    spec = dlc.load(_write(tmp_path, "stack(16, 2)\n    stack(units=8, n=1)"))
    kinds = [layer.kind for layer in spec.layers]
    assert kinds == ["Dense", "Dense", "Residual", "Residual", "Dense", "Residual", "Dense"]
    assert [layer.units for layer in spec.layers if layer.kind == "Dense"] == [16, 16, 8, 3]
    report = dlc.compare(spec, steps=10)
    assert report["passed"] and report["max_abs_loss_diff"] < 1e-12


@pytest.mark.parametrize("calls, edit, line, col, message, hint", [
    ("stack(16, 2)\n    Dense(4) * m", None, 10, 16, "'m' is no repeat count", "Dense(64) * 3"),
    ("stack(16, 2)", ("relu) * n", "relu) * nn"), 21, 35, "'nn' is not a parameter of block stack",
     "did you mean 'n'?"),
    ("stack(16, choice(0, 2))", None, 9, 22, "a searched repeat count takes whole numbers from 1 to 10,000, "
     "not 0", "choice(1, 2, 3)"),
    ("stack(16, 2)\n    Dense(4) * uniform(1, 3)", None, 10, 16,
     "a repeat count is a whole number: uniform() draws fractions", "int_uniform(1, 4)"),
    ("stack(16, 2)\n    Dense(4) * foo(2)", None, 10, 16, "a repeat count is a whole number, not foo(2)",
     "choice(1, 2, 3)"),
    ("stack(16, 1.5)", None, 24, 7, "a repeat count is a whole number (n = 1.5, given on line 9)",
     "give n a whole number"),
    ("stack(16, 0)", None, 24, 7, "a repeat count must be at least 1", ""),
])
def test_a_count_that_is_no_parameter_or_no_whole_number_is_an_error(tmp_path, calls, edit, line, col,
                                                                      message, hint):
    text = SPEC if edit is None else SPEC.replace(*edit)
    path = _write(tmp_path, calls, text)
    with pytest.raises(SpecError) as e:
        dlc.load(path)
    said = [(d.message, d.span.line, d.span.col, d.hint) for d in e.value.diagnostics]
    assert any(m == message and (ln, c) == (line, col) and hint in str(h or "") for m, ln, c, h in said), said
    rc, _, err = run_cli("check", path)
    assert rc == 2 and message in err and "Traceback" not in err


def test_a_searched_depth_is_tuned_and_written_concrete(tmp_path):
    """`Dense(16) * choice(1, 2)` and a block's depth given `int_uniform(1, 2)`: a grid of 4 trials, each
    with its own number of layers; best.dlspec writes the counts."""
    text = SPEC.replace("  train {", "  search {\n    method: grid\n    trials: 10\n  }\n  train {")
    path = _write(tmp_path, "Dense(16, activation=relu) * choice(1, 2)\n    stack(16, int_uniform(1, 2))",
                  text)
    spec = dlc.load(path)
    # (the block's n is used twice, `Dense(units) * n` and `residual { } * n`: one space, at its choice)
    assert {s.at for s in spec.search_spaces} == {(9, 34), (10, 15)}
    assert {"layers[0].repeat", "layers[1][0].repeat"} <= {s.path for s in spec.search_spaces}
    rc, _, err = run_cli("tune", path, "--out", tmp_path / "t", "--quiet")
    assert rc == 0, err
    import json

    trials = json.loads((tmp_path / "t" / "tune.json").read_text())["trials"]
    assert sorted(tuple(t["params"].values()) for t in trials) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    best = (tmp_path / "t" / "best.dlspec").read_text()
    assert "choice" not in best and "int_uniform" not in best
    assert len(dlc.load(tmp_path / "t" / "best.dlspec").layers) in (4, 5, 6, 7)
