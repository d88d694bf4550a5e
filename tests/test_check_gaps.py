"""Specs that `dlc check` passed although they were knowably wrong, or silently wasteful, before training:
a bias that a BatchNorm further on removes (W001 through the layers that carry it as a constant per
channel, and only those), a softmax of one value inside a recurrent layer (W011), an Embedding smaller than
the bundled data's largest token (E303), and data files that are not what their source reads (mnist("/")
without MNIST's files, npz("file.csv"), an archive without the arrays named: E401 at the path)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from dlc.compiler import compile_text
from dlc.compiler.diagnostics import Diagnostic
from dlc.compiler.spec import BUNDLED_FIRST_FRACTION, BUNDLED_LARGEST_TOKEN

from conftest import run_cli


def _text(layers: str, input: str = "(8, 8, 1)", source: str = "digits", extra: str = "") -> str:
    return f"""model t {{
  data {{
    source: {source}
{extra}  }}
  input: {input}
  layers {{
{layers}
  }}
  loss: sparse_categorical_crossentropy
  optimizer: Adam()
}}
"""


def _diags(text: str, base_dir: Path = Path(".")) -> list[Diagnostic]:
    return compile_text(text, "t.dlspec", base_dir).diagnostics.sorted()


def _lines(text: str, code: str, base_dir: Path = Path(".")) -> list[int]:
    return [x.span.line for x in _diags(text, base_dir) if x.code == code and x.span]


def _line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.split("\n"), 1) if needle in line)


TAIL = "    Flatten()\n    Dense(10, activation=softmax)"


# ----------------------------------------------------------------------------- W001: a bias BatchNorm removes


# (layers before BatchNorm, the layers whose bias is dead: marked "#dead"); each case was checked against a
# float64 gradient (tests of the maths: a per-channel shift through these layers, then a training BatchNorm)
DEAD_BIAS = {
    "separable, depthwise, conv: all three": """
    SeparableConv2D(8, (3, 3))  #dead
    DepthwiseConv2D((3, 3))  #dead
    Conv2D(8, (3, 3))  #dead
    BatchNorm()""",
    "through Flatten (BatchNorm per feature)": """
    Conv2D(8, (3, 3))  #dead
    Flatten()
    BatchNorm()""",
    "through Flatten and a linear Dense": """
    Conv2D(8, (3, 3))  #dead
    Flatten()
    Dense(16)  #dead
    BatchNorm()""",
    "through max and average pooling, padded or not": """
    Conv2D(8, (3, 3))  #dead
    MaxPool2D((2, 2), padding=same)
    AvgPool2D((2, 2), padding=same)
    BatchNorm()""",
    "a 1x1 convolution with padding=same pads nothing": """
    Conv2D(8, (3, 3), padding=same)  #dead
    Conv2D(8, (1, 1), padding=same)  #dead
    BatchNorm()""",
    "a padded 3x3 convolution: only its own bias": """
    Conv2D(8, (3, 3), padding=same)
    Conv2D(8, (3, 3), padding=same)  #dead
    BatchNorm()""",
    "Dropout scales the shift per sample": """
    Conv2D(8, (3, 3))
    Dropout(0.5)
    BatchNorm()""",
    "Dropout(0) is the identity": """
    Conv2D(8, (3, 3))  #dead
    Dropout(0)
    BatchNorm()""",
    "an activation": """
    Conv2D(8, (3, 3), activation=relu)
    BatchNorm()""",
    "an activity regularizer sees the bias": """
    Conv2D(8, (3, 3), activity_reg=l2(0.01))
    BatchNorm()""",
    "a transposed convolution spreads a shift unevenly": """
    Conv2D(8, (3, 3))
    Conv2DTranspose(8, (3, 3))  #dead
    BatchNorm()""",
    "a Reshape that keeps the channels": """
    Conv2D(8, (3, 3))  #dead
    Reshape((36, 8))
    BatchNorm()""",
    "a Reshape that mixes the channels": """
    Conv2D(8, (3, 3))
    Reshape((9, 32))
    BatchNorm()""",
    "global max pooling": """
    Conv2D(8, (3, 3))  #dead
    GlobalMaxPool2D()
    BatchNorm()
    Reshape((2, 2, 2))""",
    "bilinear upsampling": """
    Conv2D(8, (3, 3))  #dead
    UpSampling2D((2, 2), interpolation=bilinear)
    BatchNorm()""",
    "a residual of a 1x1 convolution adds a constant to a constant": """
    Conv2D(8, (3, 3))  #dead
    residual {
      Conv2D(8, (1, 1))  #dead
    }
    BatchNorm()""",
    "a residual of a padded convolution": """
    Conv2D(8, (3, 3))
    residual {
      Conv2D(8, (3, 3), padding=same)  #dead
    }
    BatchNorm()""",
    "a residual's BatchNorm removes the shift of its branch, not of the sum": """
    Conv2D(8, (3, 3))
    residual {
      Conv2D(8, (3, 3), padding=same)  #dead
      BatchNorm()
      Activation(relu)
    }
    BatchNorm()""",
}


@pytest.mark.parametrize("case", list(DEAD_BIAS))
def test_a_bias_is_dead_exactly_where_batchnorm_removes_it(case):
    text = _text(DEAD_BIAS[case].strip("\n") + "\n" + TAIL)
    want = [n for n, line in enumerate(text.split("\n"), 1) if "#dead" in line]
    assert _lines(text, "W001") == want, [(x.code, x.message) for x in _diags(text)]


def test_a_dead_bias_further_on_names_the_batchnorm_and_the_layers_between():
    text = _text(DEAD_BIAS["separable, depthwise, conv: all three"] + "\n" + TAIL)
    found = [x for x in _diags(text) if x.code == "W001"]
    bn = _line_of(text, "BatchNorm()")
    assert found[0].message == (f"the bias of SeparableConv2D has no effect before BatchNorm (line {bn}), "
                                "through DepthwiseConv2D, Conv2D")
    assert found[2].message == "the bias of Conv2D has no effect before BatchNorm"  # (the words it had)
    assert "use_bias=false" in (found[0].hint_text() or "")


def test_a_bias_in_a_residual_body_dies_in_the_batchnorm_after_the_residual():
    text = _text("""    Conv2D(8, (3, 3), padding=same, activation=relu)
    residual {
      Conv2D(8, (1, 1))
    }
    BatchNorm()
""" + TAIL)
    (w,) = [x for x in _diags(text) if x.code == "W001"]
    assert w.span is not None and w.span.line == _line_of(text, "Conv2D(8, (1, 1))")
    assert w.message.endswith("through residual")


def test_a_block_used_twice_warns_once_at_its_line():
    text = _text("""    pair()
    pair()
""" + TAIL) + """
block pair() {
  Conv2D(8, (1, 1))
  Dense(8)
  BatchNorm()
}
"""
    assert _lines(text, "W001") == [_line_of(text, "Conv2D(8, (1, 1))"), _line_of(text, "Dense(8)")]


def test_a_dead_bias_is_the_maths():
    """The rule's cases, computed: the gradient of a per-channel bias through each chain into a training
    BatchNorm is zero (to rounding) exactly where W001 says so."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 7, 7, 4))
    w = rng.normal(size=(3, 3, 4, 4))

    def conv_same(h):
        p = np.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)))
        return np.einsum("nhwijc,ijcd->nhwd", np.lib.stride_tricks.sliding_window_view(
            p, (3, 3), axis=(1, 2)).transpose(0, 1, 2, 4, 5, 3), w)

    def bn(h):
        axes = tuple(range(h.ndim - 1))
        return (h - h.mean(axes)) / np.sqrt(h.var(axes) + 1e-3)

    def moved(f) -> float:  # how far the output moves when a bias of [1, 2, 3, 4] is added
        return float(np.abs(bn(f(x + np.arange(1, 5))) - bn(f(x))).max())

    assert moved(lambda h: h.reshape(5, -1)) < 1e-9  # Flatten
    assert moved(lambda h: h.reshape(5, -1, 4)) < 1e-9  # Reshape keeping the channels
    assert moved(lambda h: h.reshape(5, 14, 14)) > 0.1  # Reshape mixing them
    assert moved(lambda h: h[:, :6, :6].reshape(5, 3, 2, 3, 2, 4).max((2, 4))) < 1e-9  # MaxPool2D
    assert moved(conv_same) > 0.1  # a padded 3x3 convolution
    assert moved(lambda h: h + conv_same(h)) > 0.1  # a residual of one
    mask = rng.random(x.shape) > 0.5
    assert moved(lambda h: h * mask * 2) > 0.1  # Dropout(0.5)


# -------------------------------------------------------------------- W011: a recurrent softmax of one value


RECURRENT = {
    "SimpleRNN(1, activation=softmax)": "always 1.0, so nothing can be learnt",
    "Bidirectional(SimpleRNN(1, activation=softmax))": "always 1.0, so nothing can be learnt",
    "LSTM(1, activation=softmax)": "candidate values are constant and only its gates learn",
    "GRU(1, activation=softmax, return_sequences=true)": "candidate values are constant",
    "GRU(1, recurrent_activation=softmax)": "keeps the state at its initial 0",
}


@pytest.mark.parametrize("layer", list(RECURRENT))
def test_a_recurrent_softmax_of_one_unit_is_a_warning_at_its_argument(layer):
    text = _text(f"    Reshape((64, 1))\n    {layer}\n" + TAIL, input="(64)")
    (w,) = [x for x in _diags(text) if x.code == "W011"]
    assert RECURRENT[layer] in w.message
    arg = "recurrent_activation" if "recurrent_activation" in layer else "activation"
    line = text.split("\n")[_line_of(text, layer) - 1]
    assert w.span is not None and (w.span.line, w.span.col) == (_line_of(text, layer),
                                                                line.index(f"{arg}=softmax") + len(arg) + 2)


@pytest.mark.parametrize("layer", ["SimpleRNN(2, activation=softmax)", "LSTM(1)", "GRU(1, activation=relu)",
                                   "LSTM(1, recurrent_activation=softmax)"])
def test_a_recurrent_layer_that_learns_is_no_warning(layer):
    assert not _lines(_text(f"    Reshape((64, 1))\n    {layer}\n" + TAIL, input="(64)"), "W011")


# ------------------------------------------------------------------------------- Embedding vs bundled tokens


def test_the_bundled_token_facts_are_scikit_learns():
    from sklearn import datasets

    for name, largest in BUNDLED_LARGEST_TOKEN.items():
        x = getattr(datasets, f"load_{name}")().data
        assert (x == np.trunc(x)).all() and x.min() >= 0 and x.max() == largest, name
    for name, first in BUNDLED_FIRST_FRACTION.items():
        x = getattr(datasets, f"load_{name}")().data
        assert x[0, 0] == first and not math.isclose(first, round(first)), name
    assert set(BUNDLED_LARGEST_TOKEN) | set(BUNDLED_FIRST_FRACTION) == {"digits", "iris", "wine",
                                                                         "breast_cancer", "diabetes"}


@pytest.mark.parametrize("call", ["Embedding(16, 4)", "Embedding(input_dim=16, output_dim=4)",
                                  "Embedding(output_dim=4, input_dim=3)"])
def test_an_embedding_smaller_than_the_digits_tokens_is_an_error_at_input_dim(call):
    text = _text(f"    {call}\n" + TAIL, input="(64)")
    (e,) = [x for x in _diags(text) if x.severity == "error"]
    assert e.code == "E303" and "'digits' features are whole numbers 0..16" in e.message
    line = text.split("\n")[_line_of(text, call) - 1]
    value = call.split("input_dim=")[1].split(",")[0].rstrip(")") if "input_dim=" in call else "16"
    assert e.span is not None and (e.span.line, e.span.col) == (_line_of(text, call),
                                                                line.index(value, line.index("(")) + 1)
    assert e.hint_text() == "use input_dim=17 or more (input_dim >= 17)"


def test_an_embedding_of_seventeen_reads_the_digits():
    assert not _diags(_text("    Embedding(17, 4)\n" + TAIL, input="(64)"))
    assert not _diags(_text("    Reshape((8, 8))\n    Embedding(17, 4)\n" + TAIL, input="(64)"))


def test_an_embedding_of_measurements_is_an_error():
    text = _text("    Embedding(100, 4)\n    Flatten()\n    Dense(3, activation=softmax)", input="(4)",
                 source="iris")
    (e,) = [x for x in _diags(text) if x.severity == "error"]
    assert e.code == "E303" and "'iris' features are not token indices (they hold 5.1)" in e.message


def test_dlc_check_refuses_the_small_embedding(tmp_path):
    spec = tmp_path / "s.dlspec"
    spec.write_text(_text("    Embedding(16, 4)\n" + TAIL, input="(64)"))
    rc, _, err = run_cli("check", "-q", spec)
    assert rc == 2 and "error[E303]" in err and f"{spec}:7:15" in err and "input_dim >= 17" in err


# ------------------------------------------------------------------------------------- data files' kinds


def _file_spec(tmp_path: Path, source: str, input: str = "(2)") -> str:
    return _text("    Dense(10, activation=softmax)", input=input, source=source)


def _error(text: str, tmp_path: Path) -> Diagnostic:
    (e,) = [x for x in _diags(text, tmp_path) if x.severity == "error"]
    return e


def _col(text: str, needle: str) -> tuple[int, int]:
    n = _line_of(text, needle)
    return n, text.split("\n")[n - 1].index(needle) + 1


def test_mnist_of_a_folder_without_its_files_is_an_error_at_the_path(tmp_path):
    (tmp_path / "empty").mkdir()
    text = _file_spec(tmp_path, 'mnist("empty")', "(784)")
    e = _error(text, tmp_path)
    assert (e.code, e.message) == ("E401", "'empty' holds no MNIST files")
    assert e.span is not None and (e.span.line, e.span.col) == _col(text, '"empty"')
    assert "train-images-idx3-ubyte" in (e.hint_text() or "")
    rc, _, err = run_cli("check", "-q", _written(tmp_path, 'mnist("/")', "(784)"))
    assert rc == 2 and "error[E401]: '/' holds no MNIST files" in err


def _written(tmp_path: Path, source: str, input: str = "(2)") -> Path:
    spec = tmp_path / "s.dlspec"
    spec.write_text(_file_spec(tmp_path, source, input))
    return spec


def test_mnist_with_a_file_missing_or_foreign(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    head = bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    (folder / "train-images-idx3-ubyte").write_bytes(head + bytes(2 * 784))
    e = _error(_file_spec(tmp_path, 'mnist("m")', "(784)"), tmp_path)
    assert e.message == "'m' has no train-labels-idx1-ubyte[.gz] (or mnist.npz)"
    for stem in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        (folder / stem).write_bytes(bytes([0, 0, 8, 1]) + (2).to_bytes(4, "big") + bytes([0, 1]))
    (folder / "t10k-images-idx3-ubyte").write_bytes(b"a,b,label\n1,2,0\n")
    e = _error(_file_spec(tmp_path, 'mnist("m")', "(784)"), tmp_path)
    assert e.message == "'m/t10k-images-idx3-ubyte': not an IDX file"
    (folder / "t10k-images-idx3-ubyte").write_bytes(head + bytes(2 * 784))
    assert not _diags(_file_spec(tmp_path, 'mnist("m")', "(28, 28, 1)").replace("Dense(10", "Flatten()\n"
                                                                                 "    Dense(10"), tmp_path)
    e = _error(_file_spec(tmp_path, 'mnist("m")', "(64)"), tmp_path)
    assert e.code == "E303"
    assert e.message == "input (64) has 64 values, but MNIST's images have 784 features (shape (28, 28))"


def test_mnist_of_a_file_that_is_no_npz(tmp_path):
    (tmp_path / "file.csv").write_text("a,b,label\n1,2,0\n")
    e = _error(_file_spec(tmp_path, 'mnist("file.csv")', "(784)"), tmp_path)
    assert e.message == "cannot read data file 'file.csv': it is not an .npz archive"
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((4, 28, 28), np.uint8), y_train=np.zeros(4))
    e = _error(_file_spec(tmp_path, 'mnist("mnist.npz")', "(784)"), tmp_path)
    assert e.message == "'mnist.npz' has no array 'x_test' (arrays: x_train, y_train)"


def test_npz_of_a_csv_file_is_an_error_at_the_path(tmp_path):
    (tmp_path / "file.csv").write_text("a,b,label\n1,2,0\n3,4,1\n")
    text = _file_spec(tmp_path, 'npz("file.csv")')
    e = _error(text, tmp_path)
    assert (e.code, e.message) == ("E401", "cannot read data file 'file.csv': it is not an .npz archive")
    assert e.span is not None and (e.span.line, e.span.col) == _col(text, '"file.csv"')
    assert "np.savez" in (e.hint_text() or "")


def test_npz_arrays_named_and_sized(tmp_path):
    np.savez(tmp_path / "ab.npz", a=np.zeros((10, 2)), b=np.arange(10) % 10)
    text = _file_spec(tmp_path, 'npz("ab.npz", x="a", y="c")')
    e = _error(text, tmp_path)
    assert e.message == "'ab.npz' has no array 'c' (arrays: a, b)"
    assert e.span is not None and (e.span.line, e.span.col) == _col(text, '"c"')
    assert _error(_file_spec(tmp_path, 'npz("ab.npz")'), tmp_path).message == \
        "'ab.npz' has no array 'x' (arrays: a, b)"
    assert not _diags(_file_spec(tmp_path, 'npz("ab.npz", x="a", y="b")'), tmp_path)
    e = _error(_file_spec(tmp_path, 'npz("ab.npz", x="a", y="b")', "(3)"), tmp_path)
    assert e.code == "E303" and e.message.startswith("input (3) has 3 values, but 'ab.npz' samples have 2")
    np.savez(tmp_path / "text.npz", x=np.array([["a", "b"]] * 10), y=np.zeros(10))
    e = _error(_file_spec(tmp_path, 'npz("text.npz")'), tmp_path)
    assert "holds <U1 values, not numbers" in e.message


# --------------------------------------------------------------------------- labels known before training


def _labels_csv(tmp_path: Path, labels: list) -> None:
    rows = [f"{i % 7 * 0.5:.1f},{i % 3 - 1:.1f},{label}" for i, label in enumerate(labels)]
    (tmp_path / "d.csv").write_text("a,b,label\n" + "\n".join(rows) + "\n")


def _csv_spec(loss: str, head: str) -> str:
    return _text(f"    {head}", input="(2)", source='csv("d.csv")').replace(
        "sparse_categorical_crossentropy", loss)


LABELS = {  # (labels, loss, output layer): the E302's message, and whether it is at the loss (else the layer)
    "labels past the outputs": (
        [i % 5 for i in range(40)], "sparse_categorical_crossentropy", "Dense(3, activation=softmax)",
        "the target column of 'd.csv' (its last) holds class labels 0..4, but the last layer has 3 outputs "
        "(classes 0..2)", False),
    "one-hot from labels past the outputs": (
        [i % 5 for i in range(40)], "categorical_crossentropy", "Dense(4, activation=softmax)",
        "holds class labels 0..4, but the last layer has 4 outputs (classes 0..3)", False),
    "a fraction": (
        [(i % 3) / 2 for i in range(40)], "sparse_categorical_crossentropy", "Dense(3, activation=softmax)",
        "holds 0.5, not a whole number, but sparse_categorical_crossentropy needs integer class labels 0..2",
        True),
    "a negative label": (
        [i % 3 - 1 for i in range(40)], "sparse_categorical_crossentropy", "Dense(3, activation=softmax)",
        "holds -1, a negative label, but sparse_categorical_crossentropy needs integer class labels 0..2",
        True),
    "three classes for binary": (
        [i % 3 for i in range(40)], "binary_crossentropy", "Dense(1, activation=sigmoid)",
        "holds labels 0..2, but binary_crossentropy needs labels 0 and 1", True),
    "a regression target against three outputs": (
        [i * 0.25 for i in range(40)], "mse", "Dense(3)",
        "holds one number per sample, but the last layer has 3 outputs; mse compares one target with each "
        "output", False),
}


@pytest.mark.parametrize("case", list(LABELS))
def test_a_small_csv_files_labels_against_the_loss_and_the_output(tmp_path, case):
    labels, loss, head, message, at_loss = LABELS[case]
    _labels_csv(tmp_path, labels)
    text = _csv_spec(loss, head)
    e = _error(text, tmp_path)
    assert e.code == "E302" and message in e.message
    assert e.span is not None
    assert (e.span.line, e.span.col) == (_col(text, loss) if at_loss else _col(text, head.split("(")[0]))


def test_labels_that_fit_are_no_error(tmp_path):
    _labels_csv(tmp_path, [i % 5 for i in range(40)])
    assert not _diags(_csv_spec("sparse_categorical_crossentropy", "Dense(5, activation=softmax)"), tmp_path)
    assert not _diags(_csv_spec("sparse_categorical_crossentropy", "Dense(8, activation=softmax)"), tmp_path)
    assert not _diags(_csv_spec("mse", "Dense(1)"), tmp_path)
    _labels_csv(tmp_path, [i % 2 for i in range(40)])
    assert not _diags(_csv_spec("binary_crossentropy", "Dense(1, activation=sigmoid)"), tmp_path)


def test_mnist_labels_against_the_outputs(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    for prefix, n in (("train", 20), ("t10k", 10)):
        head = bytes([0, 0, 8, 3]) + n.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(head + bytes(n * 784))
        labels = bytes(i % 10 for i in range(n))
        head = bytes([0, 0, 8, 1]) + n.to_bytes(4, "big")
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(head + labels)
    text = _text("    Dense(5, activation=softmax)", input="(784)", source='mnist("m")')
    e = _error(text, tmp_path)
    assert (e.code, e.message) == ("E302", "the MNIST folder 'm' holds class labels 0..9, but the last layer "
                                           "has 5 outputs (classes 0..4)")
    assert not _diags(text.replace("Dense(5", "Dense(10"), tmp_path)


# ------------------------------------------- W013, W014, W015: constant, batch-mixing or unreachable outputs


def _warned(text: str, code: str) -> list[Diagnostic]:
    return [x for x in _diags(text) if x.code == code]


def test_a_layernorm_over_one_value_is_constant():
    text = _text("    Dense(8)\n    Dense(1)\n    LayerNorm()\n    Dense(10, activation=softmax)",
                 input="(64)")
    (w,) = _warned(text, "W013")
    assert w.span is not None and w.span.line == _line_of(text, "LayerNorm()")
    assert "LayerNorm over a last axis of size 1 (input (1))" in w.message
    assert not _warned(text.replace("Dense(1)", "Dense(2)"), "W013")


def test_a_batchnorm_of_features_with_batches_of_one_is_constant():
    layers = "    Dense(8)\n    BatchNorm()\n    Dense(10, activation=softmax)"
    text = _text(layers, input="(64)") + "\n"
    one = text.replace("optimizer: Adam()", "optimizer: Adam()\n  train { batch_size: 1 }")
    (w,) = _warned(one, "W013")
    assert "BatchNorm with batch_size: 1 over input (8)" in w.message
    assert not _warned(one.replace("batch_size: 1", "batch_size: 2"), "W013")
    # (over images a batch of one still has every position of a channel to average)
    image = _text("    Conv2D(2, (3, 3))\n    BatchNorm()\n" + TAIL).replace(
        "optimizer: Adam()", "optimizer: Adam()\n  train { batch_size: 1 }")
    assert not _warned(image, "W013")


def test_a_softmax_over_the_batch_axis_is_a_warning():
    text = _text("    Reshape((8, 8))\n    Softmax(axis=0)\n" + TAIL, input="(64)")
    (w,) = _warned(text, "W014")
    assert w.span is not None and w.span.line == _line_of(text, "Softmax(axis=0)")
    assert not _warned(text.replace("axis=0", "axis=1"), "W014")
    assert _warned(text.replace("axis=0", "axis=-3"), "W014")  # (rank 2 and the batch axis: -3 is it)


@pytest.mark.parametrize(("act", "warned"), [("sigmoid", True), ("tanh", True), ("relu6", True),
                                             ("hard_sigmoid", True), ("relu", False), ("linear", False),
                                             ("softplus", False), ("elu", False)])
def test_an_output_activation_that_cannot_reach_diabetes_targets(act, warned):
    text = _text(f"    Dense(8, activation=relu)\n    Dense(1, activation={act})", input="(10)",
                 source="diabetes").replace("sparse_categorical_crossentropy", "mse")
    found = _warned(text, "W015")
    assert bool(found) == warned
    if warned:
        assert found[0].message.startswith(f"the output ends in {act}, whose values lie in")
        assert "but the target of 'diabetes' holds 25..346" in found[0].message
        assert found[0].span is not None and found[0].span.line == _line_of(text, f"activation={act}")


def test_the_bundled_target_range_is_scikit_learns():
    from sklearn import datasets

    from dlc.compiler.spec import BUNDLED_TARGET_RANGE

    for name, (lo, hi) in BUNDLED_TARGET_RANGE.items():
        y = getattr(datasets, f"load_{name}")().target
        assert (y.min(), y.max()) == (lo, hi)


def test_a_small_csv_regression_target_below_a_relu_output(tmp_path):
    _labels_csv(tmp_path, [i * 0.5 - 3 for i in range(40)])
    text = _csv_spec("mse", "Dense(1, activation=relu)")
    (w,) = [x for x in _diags(text, tmp_path) if x.code == "W015"]
    assert "relu, whose values are 0 or more, but the target column of 'd.csv' (its last) holds -3..16.5" \
        in w.message


# ------------------------------------------------------------------ targets whose shape a header says


TARGET_SHAPES = {  # (y, loss, output layer): the E302's message (None: no error)
    "one target, three outputs": (np.zeros(30), "mse", "Dense(3)",
                                  "holds 1 target value(s) per sample (shape (30)), but the last layer has 3 "
                                  "outputs"),
    "two targets, one output": (np.zeros((30, 2)), "mse", "Dense(1)",
                                "holds 2 target value(s) per sample (shape (30, 2)), but the last layer has "
                                "1 output;"),
    "two targets, two outputs": (np.zeros((30, 2)), "mse", "Dense(2)", None),
    "one-hot rows for a sparse loss": (
        np.eye(3)[np.arange(30) % 3], "sparse_categorical_crossentropy", "Dense(3, activation=softmax)",
        "has shape (30, 3) (one-hot rows?), but sparse_categorical_crossentropy needs one label per sample"),
    "one-hot rows of another width": (
        np.eye(3)[np.arange(30) % 3], "categorical_crossentropy", "Dense(4, activation=softmax)",
        "has shape (30, 3), but the last layer has 4 outputs"),
    "one-hot rows that fit": (np.eye(3)[np.arange(30) % 3], "categorical_crossentropy",
                              "Dense(3, activation=softmax)", None),
    "a column of labels": ((np.arange(30) % 3).reshape(30, 1), "sparse_categorical_crossentropy",
                           "Dense(3, activation=softmax)", None),
}


def _saved_arrays(folder: Path, kind: str, x, y) -> str:
    """x and y saved in `folder` as an npz file or two npy files: the spec's source for them."""
    if kind == "npz":
        np.savez(folder / "d.npz", x=x, y=y)
        return 'npz("d.npz")'
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y)
    return 'npy("x.npy", "y.npy")'


@pytest.mark.parametrize("case", list(TARGET_SHAPES))
@pytest.mark.parametrize("kind", ["npz", "npy"])
def test_targets_of_a_known_shape_against_the_loss_and_the_output(tmp_path, case, kind):
    y, loss, head, message = TARGET_SHAPES[case]
    source = _saved_arrays(tmp_path, kind, np.zeros((30, 2)), y)
    text = _text(f"    {head}", input="(2)", source=source).replace("sparse_categorical_crossentropy", loss)
    errors = [x for x in _diags(text, tmp_path) if x.severity == "error"]
    if message is None:
        assert not errors, [x.message for x in errors]
    else:
        (e,) = errors
        assert e.code == "E302" and message in e.message, e.message


# ---------------------------------------------------------------- W016: bias settings without a bias


@pytest.mark.parametrize("setting", ["bias_reg=l2(0.1)", "bias_init=ones", "bias_constraint=max_norm(2)"])
def test_a_bias_setting_on_a_layer_without_bias_is_a_warning_at_it(setting):
    call = f"Dense(8, use_bias=false, {setting})"
    text = _text(f"    {call}\n    Dense(10, activation=softmax)", input="(64)")
    (w,) = _warned(text, "W016")
    field = setting.split("=")[0]
    assert w.message == f"{field} has no effect: Dense has use_bias=false, so it has no bias"
    line = text.split("\n")[_line_of(text, call) - 1]
    assert w.span is not None and w.span.col == line.index(setting) + len(field) + 2
    assert not _warned(text.replace("use_bias=false, ", ""), "W016")


def test_a_recurrent_layer_inside_bidirectional_without_bias():
    text = _text("    Reshape((16, 4))\n    Bidirectional(GRU(4, use_bias=false, bias_init=ones))\n"
                 "    Dense(10, activation=softmax)", input="(64)")
    (w,) = _warned(text, "W016")
    assert w.message == "bias_init has no effect: GRU has use_bias=false, so it has no bias"
    assert not _warned(text.replace(", bias_init=ones", ""), "W016")


@pytest.mark.parametrize("kind", ["npz", "npy"])
def test_a_small_target_arrays_labels_are_read(tmp_path, kind):
    x = np.zeros((30, 2))
    for y, loss, head, message in [
            (np.arange(30) % 5, "sparse_categorical_crossentropy", "Dense(3, activation=softmax)",
             "holds class labels 0..4, but the last layer has 3 outputs (classes 0..2)"),
            ((np.arange(30) % 3) / 2, "categorical_crossentropy", "Dense(3, activation=softmax)",
             "holds 0.5, not a whole number"),
            (np.arange(30) % 3, "binary_crossentropy", "Dense(1, activation=sigmoid)",
             "holds labels 0..2, but binary_crossentropy needs labels 0 and 1"),
            (np.arange(30) % 3 + 0.5, "mse", "Dense(1, activation=sigmoid)", None)]:
        source = _saved_arrays(tmp_path, kind, x, y)
        text = _text(f"    {head}", input="(2)", source=source)
        text = text.replace("sparse_categorical_crossentropy", loss)
        found = _diags(text, tmp_path)
        if message is None:  # (a regression target beyond a sigmoid: W015, no error)
            assert [x.code for x in found] == ["W015"], [x.message for x in found]
        else:
            (e,) = found
            assert e.code == "E302" and message in e.message, e.message


@pytest.mark.parametrize(("values", "call", "message", "at_dim"), [
    ([0, 3, 9, 2], "Embedding(8, 2)", "'d.csv' features are whole numbers 0..9, but the first layer, "
     "Embedding(8, ...) takes token indices, whole numbers 0..7", True),
    ([0, 3, -1, 2], "Embedding(10, 2)", "'d.csv' features hold -1, a negative number", False),
    ([0, 3, 2.5, 2], "Embedding(10, 2)", "'d.csv' features are not token indices (they hold 2.5)", False),
    ([0, 3, 9, 2], "Embedding(10, 2)", None, False),
])
def test_an_embedding_against_a_small_csv_files_tokens(tmp_path, values, call, message, at_dim):
    rows = [f"{values[i % 4]},{values[(i + 1) % 4]},{i % 2}" for i in range(20)]
    (tmp_path / "d.csv").write_text("a,b,label\n" + "\n".join(rows) + "\n")
    text = _text(f"    {call}\n    Flatten()\n    Dense(2, activation=softmax)", input="(2)",
                 source='csv("d.csv")')
    errors = [x for x in _diags(text, tmp_path) if x.severity == "error"]
    if message is None:
        assert not errors, [x.message for x in errors]
        return
    (e,) = errors
    assert e.code == "E303" and message in e.message, e.message
    line = text.split("\n")[_line_of(text, call) - 1]
    want = line.index("(") + 2 if at_dim else line.index("Embedding") + 1
    assert e.span is not None and e.span.col == want


@pytest.mark.parametrize(("source", "message"), [
    ('npz("file.csv")', "cannot read data file 'file.csv': it is not an .npz archive"),
    ('mnist("empty")', "'empty' holds no MNIST files")])
def test_a_data_file_of_the_wrong_kind_is_reported_beside_another_error(tmp_path, source, message):
    """Every error at once: a misspelt activation (the spec cannot be built) hides no data file error."""
    (tmp_path / "file.csv").write_text("a,b,label\n1,2,0\n")
    (tmp_path / "empty").mkdir()
    text = _text("    Dense(10, activation=sofmax)", input="(2)", source=source)
    found = [(x.code, x.message) for x in _diags(text, tmp_path)]
    assert ("E401", message) in found and any(code == "E102" for code, _ in found), found
