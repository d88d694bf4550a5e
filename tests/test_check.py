"""`dlc check`, `dlc compile --emit ir` and `dlc schema` on valid specs: exit 0, Keras' parameter counts, a
JSON IR that round-trips, and no deep-learning framework imported on the way."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dlc.compiler import compile_file
from dlc.compiler.spec import Spec

from conftest import ROOT, run_cli

SHARED = ROOT.parent / "shared"
VALID = sorted((ROOT / "tests" / "golden" / "valid").glob("*.dlspec"))


def _spec(tmp_path: Path, body: str, data: str = "source: digits", name: str = "m") -> Path:
    """A spec file around `body` (input, layers and friends); loss and optimizer default to a classifier's."""
    body = textwrap.dedent(body).strip("\n")
    if "loss:" not in body:
        body += "\nloss: categorical_crossentropy"
    if "optimizer:" not in body:
        body += "\noptimizer: Adam(lr=1e-3)"
    text = f"model {name} {{\n  data {{ {data} }}\n" + textwrap.indent(body, "  ") + "\n}\n"
    path = tmp_path / f"{name}.dlspec"
    path.write_text(text)
    return path


def _summary(path: Path) -> tuple[list[tuple[str, str, int]], tuple[int, int, int]]:
    """Run `dlc check`, read its summary: (layer name, type, params) rows and (total, trainable, frozen)."""
    rc, out, err = run_cli("check", str(path))
    assert rc == 0, err
    assert err == ""
    rows = []
    for line in out.splitlines():
        m = re.match(r"^\s*(\S+)\s+(\S+)\s+(\(.*\))\s+([\d,]+)$", line)
        if m:
            rows.append((m[1], m[2], int(m[4].replace(",", ""))))
    m = re.search(r"Total params: ([\d,]+)\s+\(trainable: ([\d,]+), non-trainable: ([\d,]+)\)", out)
    assert m, out
    totals = tuple(int(g.replace(",", "")) for g in m.groups())
    assert out.rstrip().endswith(f"{path}: ok")
    return rows[1:], totals  # rows[0] is the input


# (spec body, data source, {layer type: [Keras' count for each such layer]}, Keras' (total, trainable,
# frozen))
KERAS_COUNTS = {
    "dense_64_512": (
        """
        input: (64)
        layers {
          Dense(512, activation=relu)
          Dense(10, activation=softmax)
        }
        """, "source: digits", {"Dense": [33_280, 5_130]}, (38_410, 38_410, 0)),
    "conv2d_batchnorm": (
        """
        input: (8, 8, 1)
        layers {
          Conv2D(32, (3, 3), activation=relu)
          BatchNorm()
          Flatten()
          Dense(10, activation=softmax)
        }
        """, "source: digits", {"Conv2D": [320], "BatchNorm": [128], "Dense": [11_530]},
        (11_978, 11_914, 64)),
    "lstm_32_on_8": (
        """
        input: (8, 8)
        layers {
          LSTM(32)
          Dense(10, activation=softmax)
        }
        """, "source: digits", {"LSTM": [5_248], "Dense": [330]}, (5_578, 5_578, 0)),
    "gru_32_on_8_reset_after": (
        """
        input: (8, 8)
        layers {
          GRU(32)
          Dense(10, activation=softmax)
        }
        """, "source: digits", {"GRU": [4_032]}, (4_362, 4_362, 0)),
    "simplernn_16_on_8": (
        """
        input: (8, 8)
        layers {
          SimpleRNN(16, return_sequences=true)
          GlobalAvgPool1D()
          Dense(10, activation=softmax)
        }
        """, "source: digits", {"SimpleRNN": [400], "Dense": [170]}, (570, 570, 0)),
    "embedding_1000_64": (
        """
        input: (64)
        layers {
          Embedding(1000, 64)
          GlobalAvgPool1D()
          Dense(10, activation=softmax)
        }
        """, "source: digits", {"Embedding": [64_000], "Dense": [650]}, (64_650, 64_650, 0)),
    "conv1d_layernorm_prelu": (
        """
        input: (16, 4)
        layers {
          Conv1D(16, 3)
          LayerNorm()
          PReLU()
          Flatten()
          Dense(10, activation=softmax, use_bias=false)
        }
        """, "source: digits", {"Conv1D": [208], "LayerNorm": [32], "PReLU": [224], "Dense": [2_240]},
        (2_704, 2_704, 0)),
    # the Keras examples' mnist_mlp and mnist_cnn, whose summaries every Keras user has seen
    "keras_mnist_mlp": (
        """
        input: (784)
        layers {
          Dense(512, activation=relu)
          Dropout(0.2)
          Dense(512, activation=relu)
          Dropout(0.2)
          Dense(10, activation=softmax)
        }
        """, 'source: mnist(".")', {"Dense": [401_920, 262_656, 5_130]}, (669_706, 669_706, 0)),
    "keras_mnist_cnn": (
        """
        input: (28, 28, 1)
        layers {
          Conv2D(32, (3, 3), activation=relu)
          Conv2D(64, (3, 3), activation=relu)
          MaxPool2D((2, 2))
          Dropout(0.25)
          Flatten()
          Dense(128, activation=relu)
          Dropout(0.5)
          Dense(10, activation=softmax)
        }
        """, 'source: mnist(".")', {"Conv2D": [320, 18_496], "Dense": [1_179_776, 1_290]},
        (1_199_882, 1_199_882, 0)),
}


@pytest.mark.parametrize("case", list(KERAS_COUNTS))
def test_param_counts_match_keras(case: str, tmp_path: Path):
    body, data, per_kind, totals = KERAS_COUNTS[case]
    if "mnist" in data:  # (dlc check reads the MNIST folder's files: a small stand-in for them)
        import numpy as np

        images = np.zeros((10, 28, 28), np.uint8)
        np.savez(tmp_path / "mnist.npz", x_train=images, y_train=np.arange(10) % 10, x_test=images,
                 y_test=np.arange(10) % 10)
    rows, got_totals = _summary(_spec(tmp_path, body, data))
    for kind, counts in per_kind.items():
        assert [n for _, k, n in rows if k == kind] == counts, (kind, rows)
    assert got_totals == totals
    assert sum(n for *_, n in rows) == totals[0]


def test_residual_and_blocks_are_counted(tmp_path: Path):
    path = _spec(tmp_path, """
        input: (8, 8, 1)
        layers {
          Conv2D(8, (3, 3), padding=same)
          residual {
            pair(8)
          }
          GlobalMaxPool2D()
          Dense(10, activation=softmax)
        }
        block pair(f) {
          Conv2D(f, (3, 3), padding=same, activation=relu) * 2
        }
        """)
    rows, totals = _summary(path)
    assert [(k, n) for _, k, n in rows] == [("Conv2D", 80), ("Residual", 0), ("Conv2D", 584), ("Conv2D", 584),
                                            ("GlobalMaxPool2D", 0), ("Dense", 90)]
    assert totals == (1_338, 1_338, 0)


@pytest.mark.parametrize("spec", VALID, ids=[p.stem for p in VALID])
def test_valid_fixture_checks(spec: Path):
    rc, out, err = run_cli("check", str(spec))
    assert rc == 0, err
    assert err == ""
    assert out.startswith("model ")
    assert out.rstrip().endswith(f"{spec}: ok")


def _language_examples() -> list[str]:
    text = (SHARED / "LANGUAGE.md").read_text()
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    return [b for b in blocks if any(line.startswith("model ") for line in b.splitlines())]


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared/ (LANGUAGE.md) is not next to this checkout")
def test_language_md_examples_pass(tmp_path: Path):
    examples = _language_examples()
    assert examples, "LANGUAGE.md has no whole-spec example"
    for i, example in enumerate(examples):
        path = tmp_path / f"example_{i}.dlspec"
        path.write_text(example)
        rc, out, err = run_cli("check", "-q", str(path))
        assert rc == 0, f"LANGUAGE.md example {i} fails:\n{err}"
        assert out == f"{path}: ok\n"


def test_check_imports_no_framework():
    """`dlc check` and `dlc compile --emit ir` stay on the near side of the backends."""
    code = textwrap.dedent(f"""
        import contextlib, io, sys
        from dlc.cli import main
        specs = {[str(p) for p in VALID]!r}
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["check", *specs]) == 0
            assert main(["compile", specs[0], "--emit", "ir"]) == 0
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "tensorflow", "keras", "jax"))
        assert not bad, bad
        assert "torch" not in sys.modules and "tensorflow" not in sys.modules and "keras" not in sys.modules
        print("clean")
        """)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "clean"


@pytest.mark.parametrize("spec", VALID, ids=[p.stem for p in VALID])
def test_compile_emit_ir_round_trips(spec: Path):
    rc, out, err = run_cli("compile", str(spec), "--emit", "ir")
    assert rc == 0, err
    ir = Spec.model_validate_json(out)
    original = compile_file(spec).raise_for_errors()
    assert ir.model_dump_json() == original.model_dump_json()
    assert ir.param_counts() == original.param_counts()
    assert Spec.model_validate_json(ir.model_dump_json()) == ir


def test_compile_reports_errors_like_check():
    bad = ROOT / "tests" / "golden" / "invalid" / "unknown_activation.dlspec"
    rc, out, err = run_cli("compile", str(bad), "--emit", "ir")
    assert rc == 2
    assert out == ""
    assert "error[E102]: unknown activation 'rleu'" in err


def test_schema_is_json():
    rc, out, err = run_cli("schema")
    assert rc == 0, err
    schema = json.loads(out)
    assert schema["type"] == "object"
    assert {"input", "layers", "loss", "optimizer"} <= set(schema["properties"])
    assert {"input", "layers", "loss", "optimizer", "name"} <= set(schema["required"])


def test_an_embedding_input_under_standard_normalisation_is_found_by_check():
    """`dlc run` always failed reading the data (token indices made fractions); check says so at normalize:
    an error for standard, a warning for minmax (features of two values stay whole)."""
    from dlc.compiler import compile_text

    spec = """model e {
  data {
    source: digits
    normalize: HOW
  }
  input: (64)
  layers {
    Embedding(17, 4)
    Flatten()
    Dense(10, activation=softmax)
  }
  loss: sparse_categorical_crossentropy
  optimizer: Adam(lr=0.01)
}
"""
    r = compile_text(spec.replace("HOW", "standard"))
    (err,) = r.diagnostics.errors
    assert err.code == "E303" and (err.span.line, err.span.col) == (4, 16)
    assert "Embedding(17, ...), takes token indices, whole numbers 0..16" in err.message
    r = compile_text(spec.replace("HOW", "minmax"))  # (digits' features are known: the run would fail)
    (err,) = r.diagnostics.errors
    assert err.code == "E303" and "turns the 'digits' features into fractions" in err.message
    assert compile_text(spec.replace("HOW", "none")).ok


@pytest.mark.parametrize("before, after", [
    ("Dense(8)", "Dense"), ("Dropout(0.1)", "Dropout"), ("Embedding(17, 2)\n    Flatten()", "Embedding"),
    ("Reshape((8, 8))\n    LSTM(4, return_sequences=true)", "LSTM"),
])
def test_an_embedding_that_does_not_read_the_input_is_a_spec_error(before, after):
    """`Dense(8)` then `Embedding(17, 4)` passed `dlc check` and failed in training (torch: "IndexError: index
    out of range in self", keras: "InvalidArgumentError: Graph execution error"): an Embedding takes token
    indices, which only the model's input holds. Flatten and Reshape may come before it."""
    from dlc.compiler import compile_text

    spec = """model e {
  data {
    source: digits
    normalize: none
  }
  input: (64)
  layers {
    BEFORE
    Embedding(17, 4)
    Flatten()
    Dense(10, activation=softmax)
  }
  loss: sparse_categorical_crossentropy
  optimizer: Adam(lr=0.01)
}
"""
    r = compile_text(spec.replace("BEFORE", before))
    (err,) = r.diagnostics.errors
    assert err.code == "E301" and (err.span.line, err.span.col) == (9 + before.count("\n"), 5)
    assert ("Embedding takes token indices (whole numbers), so it must read the model's input, but it comes "
            f"after {after}") in err.message
    assert err.hint == "make it the first layer (only Flatten or Reshape may come before it)"
    assert compile_text(spec.replace("BEFORE", "Reshape((8, 8))\n    Flatten()")).ok


def test_a_regression_loss_on_a_two_class_set_is_a_binary_classification():
    """mse on breast_cancer's labels with one sigmoid output: Keras' compile(loss="mse") on 0/1 labels, a
    binary task (a 0/1 column, accuracy at 0.5), not E302 (tests/test_regression_loss_on_classes.py)."""
    from dlc.compiler import compile_text

    r = compile_text((ROOT / "specs" / "breast_cancer.dlspec").read_text()
                     .replace("loss: binary_crossentropy", "loss: mse"))
    assert not r.diagnostics.errors, r.render()
    assert (r.spec.task, r.spec.targets) == ("binary", "float")


@pytest.mark.parametrize("objective, direction, warning", [
    ("val_accuracy", "maximize", None), ("val_loss", "minimize", None),
    ("(metric=val_accuracy)", "maximize", None), ("minimize val_accuracy", "minimize", "W006"),
    ("maximize val_loss", "maximize", "W006"), ("maximize val_accuracy", "maximize", None),
])
def test_an_objective_without_a_direction_takes_its_metric_s(objective, direction, warning):
    """`objective: val_accuracy` minimised accuracy (the worst trial was 'best'); a written direction against
    its metric is a warning."""
    from dlc.compiler import compile_text

    text = (ROOT / "specs" / "iris.dlspec").read_text().replace("Adam(lr=0.01)", "Adam(lr=choice(0.01, 0.1))")
    assert "choice(" in text
    search = f"  search {{\n    method: grid\n    objective: {objective}\n  }}\n}}\n"
    text = text.rstrip().removesuffix("}") + search
    r = compile_text(text, "t.dlspec")
    assert r.ok, r.render()
    assert r.spec.search.objective.direction == direction
    assert [w.code for w in r.diagnostics.sorted()] == ([warning] if warning else [])


@pytest.mark.parametrize("old, new, warned", [
    ("split: holdout(val=0.2", "split: holdout(val=uniform(0.1, 0.3)", True),
    ("seed: 7", "seed: int_uniform(1, 5)", True),
    ("normalize: standard", "normalize: choice(standard, minmax)", False),
])
def test_a_search_over_the_rows_a_trial_is_judged_on_is_a_warning(old, new, warned):
    """Searching the split or the seed ranks trials measured on different validation rows (W007); a
    preprocessing choice keeps the rows."""
    from dlc.compiler import compile_text

    text = (ROOT / "specs" / "iris.dlspec").read_text()
    assert old in text
    text = text.replace(old, new).rstrip().removesuffix("}") + "  search { method: random }\n}\n"
    r = compile_text(text, "t.dlspec")
    assert r.ok, r.render()
    assert ("W007" in [w.code for w in r.diagnostics.sorted()]) == warned


@pytest.mark.parametrize("init, ok", [
    ("random_uniform(minval=1, maxval=-1)", False), ("random_uniform(maxval=-1)", False),
    ("random_uniform(1, 1)", True), ("random_uniform(-1, 1)", True),
])
def test_random_uniform_bounds_in_the_wrong_order_are_a_spec_error(init, ok):
    """`kernel_init=random_uniform(minval=1, maxval=-1)` passed `dlc check` and failed drawing the weights on
    both backends ("ValueError: high - low < 0", exit 1); reversed bounds are now E201 at the call."""
    from dlc.compiler import compile_text

    text = (ROOT / "specs" / "iris.dlspec").read_text()
    text = text.replace("kernel_init=he_normal", f"kernel_init={init}")
    r = compile_text(text)
    assert r.ok == ok
    if not ok:
        (err,) = r.diagnostics.errors
        assert err.code == "E201" and err.message == "invalid random_uniform"
        assert err.hint is not None and "is above maxval" in err.hint and "minval <= maxval" in err.hint
