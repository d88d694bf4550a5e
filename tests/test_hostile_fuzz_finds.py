"""What a mutation fuzzer of `dlc check` and `dlc run` found: each test names the input and what happened
before its fix. The fuzzer (mutated specs of the repository, LANGUAGE.md's examples and generated layer
stacks, each checked, and the accepted ones trained for an epoch on both backends) is not kept; these are its
finds."""

from __future__ import annotations

import math
import time

import pytest
from test_hostile_specs import assert_error_at, check, located, position, spec_text

# a searched spec with `search { }`: no objective written, so the default val_loss
SEARCHED = spec_text(optimizer="Adam(lr=choice(1e-3, 1e-2))\n  search { }").replace(
    "source: iris", "source: iris\n    split: kfold(k=2)")

IMAGES = """model m {{
  data {{
    source: digits
    augment: [flip(horizontal=true), {crop}]
  }}
  input: (8, 8, 1)
  layers {{
    Flatten()
    Dense(10, activation=softmax)
  }}
  loss: categorical_crossentropy
  optimizer: Adam(lr=1e-3)
}}
"""


@pytest.mark.parametrize(("objective", "meant"), [
    ("", "cv_loss"), ("objective: minimize val_loss", "cv_loss"), ("objective: val_accuracy", "cv_accuracy"),
    ("objective: cv_accuracy", "cv_accuracy"), ("objective: val_mae", None)])
def test_a_validation_objective_under_kfold_is_the_mean_over_the_folds(tmp_path, objective, meant):
    """`split: kfold(k=2)` with `search { }` (the default val_loss) or LANGUAGE.md's `objective: minimize
    val_loss`: E504, "with a kfold split every trial is cross-validated", though LANGUAGE.md shows the two
    together. A validation objective under kfold is now its mean over the folds, cv_*, in the IR."""
    import dlc

    text = SEARCHED.replace("search { }", f"search {{ {objective} }}" if objective else "search { }")
    text = text.replace("  loss:", "  metrics: [accuracy]\n  loss:", 1)
    rc, out, err = check(tmp_path, text)
    if meant is None:  # (a metric the spec does not compute: said of the name written)
        assert rc == 2 and "unknown objective metric 'val_mae'" in err, err
        return
    assert rc == 0, err
    spec = dlc.load(tmp_path / "s.dlspec")
    assert spec.search is not None and spec.search.objective.metric == meant
    assert spec.search.objective.direction == ("maximize" if "accuracy" in meant else "minimize")
    again = type(spec).model_validate_json(spec.model_dump_json())  # (as ir.json reads back)
    assert again.search is not None and again.search.objective == spec.search.objective


def test_the_default_objective_without_a_validation_split_is_located(tmp_path):
    """`split: holdout(val=0, test=0.2)` with `search { }`: the same E504 without a position."""
    text = SEARCHED.replace("kfold(k=2)", "holdout(val=0, test=0.2)")
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, "search", r"the default objective 'val_loss' needs a validation split")


@pytest.mark.parametrize(("crop", "needle", "after"), [("crop(8, padding=1000000)", "1000000", "crop"),
                                                       ("crop(8, 8)", "8)", "crop(8, "),
                                                       ("crop(8, padding=choice(1, 9))", "9", "choice")])
def test_a_crop_padding_as_large_as_the_image_is_an_error(tmp_path, crop, needle, after):
    """`augment: [crop(8, padding=1000000)]` on 8x8 images passed `dlc check`; each training batch is padded
    in memory first, so `dlc run` asked numpy for petabytes and stopped with "out of memory; try a smaller
    batch_size or model" (and a padding of the image's size or more makes windows that hold no pixel of it).
    It is now E303 at the padding, a searched option too."""
    text = IMAGES.format(crop=crop)
    if "choice" in crop:
        text = text.replace("optimizer: Adam(lr=1e-3)", "optimizer: Adam(lr=1e-3)\n  search { }")
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, needle, r"crop padding \d+ is not smaller than the image \(8x8\)",
                    after=after)


def test_a_crop_padding_below_the_image_size_passes(tmp_path):
    rc, out, err = check(tmp_path, IMAGES.format(crop="crop(8, padding=7)"))
    assert rc == 0, err


# -------------------------------------------- numbers that are inf in float32 (W003), on the torch backend

def test_torch_constraint_activation_and_clipping_take_a_bound_beyond_float32():
    """`max_norm(1e39)`, `elu(alpha=1e39)`, `clipnorm=1e39`, `clipvalue=1e39` and an lr of 1e308 with a
    schedule pass `dlc check` with warning W003 (inf in float32): Keras trains them (the bound casts to inf),
    but `dlc run --backend torch` failed inside torch with "value cannot be converted to type float without
    overflow" (torch refuses such a Python scalar in clamp, elu and fill_). The constant now becomes inf
    in the tensor's dtype, as Keras' cast makes it, and is kept as written in float64."""
    torch = pytest.importorskip("torch")
    from dlc.backends.torch.activations import elu
    from dlc.backends.torch.losses import in_dtype, max_norm
    from dlc.backends.torch.optimizers import SGD

    w = torch.tensor([[3.0, -4.0]])
    max_norm(w, 1e39)
    assert torch.allclose(w, torch.tensor([[3.0, -4.0]]))  # no bound: the weights are kept
    out = elu(torch.tensor([-1.0, 2.0]), 1e39)
    assert out[0].item() == -math.inf and out[1].item() == 2.0
    assert in_dtype(1e39, torch.float32) == math.inf and in_dtype(-1e39, torch.float32) == -math.inf
    assert in_dtype(1e39, torch.float64) == 1e39 and in_dtype(0.5, torch.float32) == 0.5

    p = torch.nn.Parameter(torch.ones(2))
    opt = SGD([p], learning_rate=0.1, clipvalue=1e39)
    grads = opt._clip([torch.tensor([5.0, -7.0])])
    assert grads[0].tolist() == [5.0, -7.0]
    opt.lr = 2.5e307  # (a warm-up's share of lr=1e308: the device copy is refilled)
    assert opt.lr_tensor().item() == math.inf
    opt = SGD([p], learning_rate=0.1, clipnorm=1e39)
    opt._clip([torch.tensor([5.0, -7.0])])  # (inf/inf: nan, as tf.clip_by_norm gives; no exception)


def test_a_stratified_validation_part_smaller_than_the_classes_after_a_test_part(tmp_path):
    """`split: holdout(val=1e-9, test=0.45, stratify=true)` on digits passed `dlc check` (the rows per class
    left by the test part depend on a random tie-break, so the validation part was not checked), and `dlc run`
    failed: "988 rows split 987 / 1 cannot give each part a row of each of the 10 classes". The row count
    alone decides that: now E303 at `val`."""
    text = spec_text(source="digits", input="(64)", layers="    Dense(10, activation=softmax)").replace(
        "source: digits", "source: digits\n    split: holdout(val=1e-9, test=0.45, stratify=true)")
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, "1e-9",
                    r"988 rows split 987 / 1 cannot give each part a row of each of the 10 classes")


@pytest.mark.parametrize(("layer", "input", "hint"), [
    ("MaxPool1D(2147483648, strides=2, padding=same)", "(4, 1)",
     "a window of at most 4, or GlobalMaxPool1D()"),
    ("AvgPool2D((1, 2000000000), padding=same)", "(2, 2, 1)",
     "a window of at most (1, 2), or GlobalAvgPool2D()"),
])
def test_a_same_padded_pool_window_beyond_what_the_frameworks_index_is_an_error(tmp_path, layer, input, hint):
    """`MaxPool1D(2147483648, strides=2, padding=same)` on 4 steps passed `dlc check` (with padding=same every
    window size gives an output), and `dlc run --backend torch` asked for a terabyte to pad the batch to the
    window. A same-padded window whose padded sample holds more than 2^31 - 1 values is now a shape error."""
    text = spec_text(f"    {layer}\n    Flatten()\n    Dense(3, activation=softmax)", input=input)
    rc, out, err = check(tmp_path, text)
    message = assert_error_at(rc, err, text, layer.split("(")[0], r"window .* does not fit the input")
    assert "E301" in message
    assert hint in err and err.count("error[") == 1, err


@pytest.mark.parametrize(("layer", "input", "hint"), [
    ("MaxPool1D(2, strides=2147483648)", "(4, 1)", "use strides of at most 4"),
    ("AvgPool2D((2, 2), strides=(4294967296, 1), padding=same)", "(2, 2, 1)",
     "use strides of at most (2, 1)"),
    ("Conv1D(2, 2, strides=2147483648, padding=same)", "(4, 1)", "use strides of at most 4"),
    ("DepthwiseConv2D((1, 1), strides=9223372036854775807)", "(2, 2, 1)", "use strides of at most (2, 2)"),
])
def test_a_stride_beyond_what_the_frameworks_index_is_an_error(tmp_path, layer, input, hint):
    """`MaxPool1D(2, strides=2147483648)` passed `dlc check` (one window fits, as with any stride above the
    input's length), and `dlc run --backend torch` failed inside torch: "value cannot be converted to type int
    without overflow"; `Conv2D(2, (2, 2), strides=4294967296)` and every other convolution with such a stride
    failed inside TensorFlow ("Attr strides has value 4294967296 out of range for an int32"). A stride beyond
    2^31 - 1 is now a shape error that says the largest one that takes the same window."""
    text = spec_text(f"    {layer}\n    Flatten()\n    Dense(3, activation=softmax)", input=input)
    rc, out, err = check(tmp_path, text)
    message = assert_error_at(rc, err, text, layer.split("(")[0], r"strides .* are beyond 2,147,483,647")
    assert "E301" in message
    assert hint in err and err.count("error[") == 1, err


@pytest.mark.parametrize(("layer", "input"), [
    ("Conv1D(4, 3, strides=2, padding=same)", "(1, 4)"),
    ("SeparableConv2D(2, (1, 1), strides=3)", "(2, 2, 1)"),
    ("DepthwiseConv2D((3, 3), strides=(2, 2), padding=same)", "(1, 4, 1)"),
    ("MaxPool2D((2, 2), padding=same)", "(1, 1, 4)"),
    ("AvgPool1D(5, padding=same)", "(2, 2)"),
])
def test_a_stride_or_same_padded_window_above_the_input_s_size_is_fine(tmp_path, layer, input):
    """What Keras takes stays a valid spec: a stride above the input's size (one window), a same-padded pool
    window above it (the 1x1 map a deep CNN on 8x8 digits reaches after three pools). The first versions of
    the two rules above refused these, which trained and compared equal before them."""
    text = spec_text(f"    {layer}\n    Flatten()\n    Dense(3, activation=softmax)", input=input)
    rc, out, err = check(tmp_path, text)
    assert rc == 0 and "error[" not in err, err


def test_an_empty_residual_is_a_warning(tmp_path):
    """`residual { }` (and a bare `residual`, or a body of a block that adds no layer) passed silently and
    trained as output = 2·input. It is now warning W012 at the residual, once per residual written."""
    text = "block nothing() {\n}\nblock twice() {\n  residual {\n    nothing()\n  }\n}\n" + spec_text(
        "    residual { }\n    twice()\n    twice()\n    residual {\n      Dense(4)\n    }\n"
        "    Dense(3, activation=softmax)")
    rc, out, err = check(tmp_path, text)
    assert rc == 0, err
    assert err.count("warning[W012]: residual with an empty body") == 2, err
    found = [d for d in located(err) if "W012" in d[0]]
    assert [d[1:3] for d in found] == [position(text, "residual"),
                                       position(text, "residual", after="layers {")]


# ------------------------------------------------------------------------------------------- data sources

def _csv_spec(source: str) -> str:
    return spec_text(source=source, input="(2)", layers="    Dense(2, activation=softmax)")


@pytest.mark.parametrize("source", ['csv("~nobody_dlc_fuzz/x.csv")', 'npy("~nobody_dlc_fuzz/x.npy", "y.npy")',
                                    'mnist("~nobody_dlc_fuzz")'])
def test_a_home_folder_of_a_user_that_does_not_exist(tmp_path, source):
    """`csv("~nobody/x.csv")` (a user that does not exist) raised pathlib's RuntimeError inside `dlc check`:
    exit 1, "dlc: error: Could not determine home directory.", no position. The path is now kept as written,
    as a shell keeps it, and reported as a missing file at the path (E401, exit 2)."""
    text = _csv_spec(source)
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, '"~nobody_dlc_fuzz', r"cannot read data file '~nobody_dlc_fuzz.*no such")


@pytest.mark.parametrize("source", ['csv("{long}")', 'npz("{long}")', 'mnist("{long}")',
                                    'npy("{long}", "y.npy")'])
def test_a_data_file_name_too_long_for_the_file_system(tmp_path, source):
    """`csv("aaa...")` with a 5,000-character name raised OSError inside `dlc check` (Path.is_file lets
    "File name too long" through): exit 1, "dlc: error: OSError: [Errno 36] File name too long: ...", no
    position. It is now E401 at the path (exit 2): it cannot be looked at."""
    text = _csv_spec(source.format(long="a" * 5000))
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, '"aaa',
                    r"cannot read data file .* cannot be looked at \(File name too long\)")


def test_a_split_the_rows_cannot_make_is_located_when_the_split_is_not_written(tmp_path):
    """A CSV file of one row and no `split:` (the default holdout(val=0.2)): the E303 "leaves 0 to train on"
    had no file:line:col. It now points at the source whose rows cannot make the split."""
    (tmp_path / "one.csv").write_text("a,b,label\n1,2,0\n")
    text = _csv_spec('csv("one.csv")')
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, 'csv("one.csv")',
                    r"holdout\(val=0.2, test=0\) of 1 row leaves 0 to train on")


# --------------------------------------------------------------------------------------------------- time

def test_a_choice_of_40000_options_is_checked_in_seconds(tmp_path):
    """`seed: choice(0,1,...,39999)` (a 230 KB spec) took about a minute in `dlc check` (2,000 options:
    over 5 s): every other option was resolved again, up to 64 of them, and each resolve read every option.
    The options checked again are now also bounded by the values they read (options.MAX_OPTION_CHECK_VALUES),
    so a spec this large gets a few of them."""
    options = ",".join(str(i) for i in range(40000))
    text = spec_text(optimizer=f"Adam(lr=1e-3)\n  seed: choice({options})\n  search {{ }}")
    assert len(text.encode()) < 256 * 1024
    start = time.monotonic()
    rc, out, err = check(tmp_path, text)
    # (3.4 s in-process on this VM idle, 6.3 s in CI beside other jobs: the bound only tells a minute apart)
    assert time.monotonic() - start < 20, err
    assert rc == 0 and "W007" in err, err


def test_a_small_spec_still_gets_every_option_checked():
    """The bound by values leaves MAX_OPTION_CHECKS resolves to a spec of usual size."""
    from dlc.compiler import options
    from dlc.compiler.diagnostics import Diagnostics
    from dlc.compiler.syntax import parse

    tree = parse(spec_text("    Dense(choice(3, 4, 5), activation=softmax)"), Diagnostics())
    assert tree is not None
    assert options._option_checks(tree) == options.MAX_OPTION_CHECKS
