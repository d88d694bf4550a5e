"""Spec errors found by a second mutation sweep (typos in every kind of name, wrong value types, brackets,
other languages' habits, several errors in one file), each with the error dlc gives now: exit 2, no
traceback, file:line:col, the caret under the text at fault and as wide as it, the words of its hint, and
every error of the file. The comment on a case says what `dlc check` printed before its fix."""

from __future__ import annotations

import re

import pytest

from conftest import ROOT, run_cli

IRIS = (ROOT / "specs" / "iris.dlspec").read_text()
RESIDUAL = (ROOT / "specs" / "guide" / "cnn_bn_residual.dlspec").read_text()
TUNE = (ROOT / "specs" / "tune" / "iris_tune.dlspec").read_text()
DENSE = "Dense(16, activation=relu, kernel_init=he_normal)"  # iris, line 17, column 5
OUT = "Dense(3, activation=softmax)"  # iris, line 18, column 5
OPT = "optimizer: Adam(lr=0.01)"  # iris, line 24, column 3
SPLIT = "split: holdout(val=0.2, test=0.2, stratify=true)"  # iris, line 11, column 5
LOSS = "loss: sparse_categorical_crossentropy"  # iris, line 22, column 3


def edited(text: str, *edits: tuple[str, str]) -> str:
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


_HEAD = re.compile(r"^(error|warning)\[(E\d+|W\d+)\]: (.*)$")
_WHERE = re.compile(r"^ --> .*:(\d+):(\d+)$")


def errors(stderr: str) -> list[tuple[int, int, int, str]]:
    """(line, col, caret width, message and hint) of each error printed."""
    out = []
    lines = stderr.split("\n")
    for i, line in enumerate(lines):
        head = _HEAD.match(line)
        if not head or head.group(1) != "error":
            continue
        where = _WHERE.match(lines[i + 1])
        assert where, lines[i + 1]
        caret = lines[i + 4]
        width = caret.count("^")
        out.append((int(where.group(1)), int(where.group(2)), width, head.group(3) + " | " + caret))
    return out


def check(tmp_path, text: str) -> list[tuple[int, int, int, str]]:
    path = tmp_path / "sweep.dlspec"
    path.write_text(text)
    rc, _, err = run_cli("check", path)
    assert rc == 2, err
    assert "Traceback" not in err
    found = errors(err)
    assert found, err
    return found


def assert_at(found, line: int, col: int, width: int | None, *words: str) -> None:
    hits = [f for f in found if (f[0], f[1]) == (line, col)]
    assert hits, f"no error at {line}:{col} in {found}"
    line_, col_, w, said = hits[0]
    if width is not None:
        assert w == width, f"caret width {w} != {width}: {said}"
    for word in words:
        assert word in said, f"{word!r} not in {said!r}"


# ---- (1) a dict as a value: said "a section takes no ':': write optimizer { ... }" (wrong: it is a key)

def test_python_dict_optimizer(tmp_path):
    text = edited(IRIS, (OPT, "optimizer: {'name': 'adam'}\n  schedule: cosin(epochs=3)"))
    found = check(tmp_path, text)
    assert_at(found, 24, 14, 16, "unexpected '{' after 'optimizer:'",
              "dlc has no dicts: write optimizer: Adam")
    assert_at(found, 25, 13, 5, "did you mean 'cosine'?")  # the rest of the file is still read
    assert len(found) == 2


def test_yaml_mapping_optimizer_with_arguments(tmp_path):
    found = check(tmp_path, edited(IRIS, (OPT, "optimizer: {name: adam, lr: 0.1}")))
    assert_at(found, 24, 14, 21, "write optimizer: Adam(lr=0.1)")
    assert len(found) == 1


def test_keras_config_dict_over_lines(tmp_path):
    keras = ('optimizer: {\n    "class_name": "Adam",\n'
             '    "config": {"learning_rate": 0.001, "amsgrad": False}\n  }\n  metrics: [acuracy]')
    text = edited(IRIS, (OPT, keras), ("  metrics: [accuracy]\n", ""))
    found = check(tmp_path, text)
    assert_at(found, 23, 14, 1, "write optimizer: Adam(learning_rate=0.001, amsgrad=false)")
    assert_at(found, 27, 13, 7, "did you mean 'accuracy'?")


def test_dicts_for_other_keys(tmp_path):
    text = edited(IRIS, (SPLIT, "split: {type: 'kfold', k: 5}"),
                  ("epochs: 40", "early_stopping: {patience: 3}"),
                  (LOSS, "loss: {name: huber, delta: 2}"), (OPT, "optimizer: {lr: 0.1}"))
    found = check(tmp_path, text)
    assert_at(found, 11, 12, 21, "write split: kfold(k=5)")
    assert_at(found, 22, 9, 23, "write loss: huber(delta=2)")
    assert_at(found, 24, 14, 9, "NAME(lr=0.1)", "optimizer's name")
    assert_at(found, 27, 21, 13, "write early_stopping: (patience=3)")
    assert len(found) == 4


# ---- (2) a Python list of layers: said "unexpected '['; expected 'block', '}', a name or end of line"

def test_list_of_layers_on_one_line(tmp_path):
    text = edited(IRIS, (DENSE + "\n", "[Dense(16), Dense(8, activation=rleu)] " + "\n"),
                  (OPT, "optimizer: Adma()"))
    found = check(tmp_path, text)
    assert_at(found, 17, 5, 1, "unexpected '['", "one per line, without [ ] or ','",
              "Dense(16) and Dense(8, activation=rleu)")
    assert_at(found, 24, 14, 4, "did you mean 'Adam'?")


def test_list_of_layers_over_lines_reads_each(tmp_path):
    listed = "[\n      Dense(16, activation=rleu),\n      Dense(3),\n    ]"
    text = edited(IRIS, (DENSE + "\n    " + OUT, listed))
    found = check(tmp_path, text)
    assert_at(found, 17, 5, 1, "put Dense(16, activation=rleu) and Dense(3) on lines of their own")
    assert_at(found, 18, 28, 4, "did you mean 'relu'?")  # the layers inside are read, at their columns
    assert len(found) == 2


def test_one_layer_in_brackets(tmp_path):
    found = check(tmp_path, edited(IRIS, (OUT, f"[{OUT}]")))
    assert_at(found, 18, 5, 1, "a layer is written without [ ]")


# ---- (3) layers chained with arrows: said "unexpected character '-'; expected '*', '}' or end of line"

@pytest.mark.parametrize("arrow", ["->", "=>", ">>", "|", "|>", "\u2192"])
def test_arrow_between_layers(tmp_path, arrow):
    found = check(tmp_path, edited(IRIS, (DENSE, f"Dense(16) {arrow} Dense(8) {arrow} Dense(4)"),
                                   (OPT, "optimizer: Adma()")))
    assert_at(found, 17, 15, len(arrow), f"unexpected '{arrow}'", "in the order they are written",
              "put Dense(8) and Dense(4) on lines of their own")
    assert_at(found, 24, 14, 4, "did you mean 'Adam'?")
    assert len(found) == 2


def test_chain_over_lines_is_one_error(tmp_path):
    text = edited(IRIS, (DENSE, "Dense(16, activation=rleu) ->\n    Dense(8) ->\n    Dense(4)"))
    found = check(tmp_path, text)
    assert_at(found, 17, 32, 2, "delete the '->'")
    assert_at(found, 17, 26, 4, "did you mean 'relu'?")
    assert len(found) == 2


def test_chain_with_leading_arrows(tmp_path):
    found = check(tmp_path, edited(IRIS, (DENSE, "Dense(16)\n      -> Dense(8)\n      -> Dense(4)")))
    assert_at(found, 18, 7, 2, "delete the '->'")
    assert len(found) == 1


def test_arrow_between_schedules(tmp_path):
    found = check(tmp_path, edited(IRIS, (OPT, OPT + "\n  schedule: warmup(epochs=5) -> cosine(epochs=10)")))
    assert_at(found, 25, 30, 2, "warmup's then=")


# ---- (4) an alias's caret: `MaxPooling2D` was underlined as wide as MaxPool2D (9 of its 12 characters)

def test_caret_under_an_alias_is_as_wide_as_written(tmp_path):
    found = check(tmp_path, edited(IRIS, (OUT, "MaxPooling2D((2, 2))\n    " + OUT)))
    assert_at(found, 18, 5, len("MaxPooling2D"), "shape error")


def test_caret_under_an_alias_in_a_block(tmp_path):
    block = "block pool() {\n  GlobalAveragePooling1D()\n}\nmodel iris {"
    text = edited(IRIS, (OUT, "pool()\n    " + OUT), ("model iris {", block))
    found = check(tmp_path, text)
    assert_at(found, 6, 3, len("GlobalAveragePooling1D"), "shape error")


# ---- every error of a statement: one bad argument hid the errors of the others

def test_every_bad_argument_of_a_call(tmp_path):
    # said only "unknown activation 'rleu'"
    found = check(tmp_path, edited(IRIS, (DENSE, "Dense(0, activation=rleu, use_bias=3)")))
    assert_at(found, 17, 11, 1, "'units'", "greater than 0")
    assert_at(found, 17, 25, 4, "did you mean 'relu'?")
    assert_at(found, 17, 40, 1, "'use_bias'", "true or false")
    assert len(found) == 3


def test_every_bad_key_of_a_section(tmp_path):
    # `teest=` in the split hid `normalize: standrd`
    found = check(tmp_path, edited(IRIS, ("normalize: standard", "normalize: standrd"),
                                   ("test=0.2", "teest=0.2")))
    assert_at(found, 10, 16, 7, "did you mean 'standard'?")
    assert_at(found, 11, 29, 5, "did you mean 'test'?")
    assert len(found) == 2


def test_every_bad_argument_of_an_optimizer_and_a_record(tmp_path):
    text = edited(IRIS, (OPT, "optimizer: Adam(lr=-1, beta_1=2, bta_2=0.9)"),
                  ("epochs: 40", "early_stopping: (patience=-1, monitr=val_loss)"))
    found = check(tmp_path, text)
    assert [(f[0], f[1]) for f in found] == [(24, 22), (24, 33), (24, 36), (27, 31), (27, 35)]


# ---- wrong value types: the caret under the item at fault, and how to write it

def test_caret_under_a_tuples_bad_item(tmp_path):
    # the caret was under the whole tuple `(8, 0, 1)`, `(3, relu)`
    text = edited(IRIS, ("input: (4)", "input: (4, 0)"), (DENSE, "Conv2D(8, (3, relu))"))
    found = check(tmp_path, text)
    assert_at(found, 14, 14, 1, "input must be a shape of positive integers")
    assert_at(found, 17, 19, 4, "expected an integer")


def test_a_tuple_too_long(tmp_path):
    # said "expected 1 numbers, got 2"
    found = check(tmp_path, edited(IRIS, (DENSE, "Conv1D(8, (3, 3))")))
    assert_at(found, 17, 15, 6, "expected 1 number, got 2")


@pytest.mark.parametrize(("value", "width", "words"), [
    ('"16"', 4, "a number is written without quotes: 16"),  # said "expected an integer"
    ("[16]", 4, "one number is written without [ ]: 16"),
    ("16.0", 4, "an integer is written without '.' or an exponent: 16"),
    ("1.6e1", 5, "an integer is written without '.' or an exponent: 16"),
])
def test_a_number_written_otherwise(tmp_path, value, width, words):
    found = check(tmp_path, edited(IRIS, (DENSE, f"Dense({value})")))
    assert_at(found, 17, 11, width, "invalid value for 'units' of Dense", words)


@pytest.mark.parametrize(("edit", "at", "words"), [
    ((DENSE, "Dense(16, activation=xavier_uniform)"), (17, 26),
     "'xavier_uniform' is an initializer, not an activation: it is written kernel_init=xavier_uniform"),
    ((DENSE, "Dense(16, kernel_init=relu)"), (17, 27), "'relu' is an activation, not an initializer"),
    ((LOSS, "loss: accuracy"), (22, 9),
     "'accuracy' is a metric, not a loss: it is written metrics: [accuracy]"),
    (("metrics: [accuracy]", "metrics: [mse, categorical_crossentropy]"), (23, 18),
     "is a loss, not a metric"),
])
def test_a_name_of_another_family(tmp_path, edit, at, words):
    # said "known: linear, sigmoid, ..." (the activations), or a did-you-mean of an unrelated name
    found = check(tmp_path, edited(IRIS, edit))
    assert_at(found, *at, None, words)


# ---- other slips of the sweep

@pytest.mark.parametrize(("edit", "at", "width", "words"), [
    # said "unexpected character '-'; expected '{'"
    (("model iris {", "model iris-v2 {"), (5, 7), 7, "not '-': write iris_v2"),
    (("batch_size: 16", "batch-size: 16"), (28, 5), 10, "write batch_size"),
    # said "unexpected '\"iris\"'; expected a name"
    (("model iris {", 'model "iris" {'), (5, 7), 6,
     "a model's name is written without quotes: model iris"),
    (("model iris {", "model {"), (5, 7), 1, "a model needs a name: model NAME { ... }"),
    # said "several values are written as a list: split: [holdout(val=0.2,, ...)]"
    ((SPLIT, "split: holdout(val=0.2,, test=0.2)"), (11, 28), 1,
     "an argument is missing between the commas"),
    # said "unexpected 'test'; expected ')' or ','"
    ((SPLIT, "split: holdout(val=0.2 test=0.2)"), (11, 28), 4, "missing ',' before 'test'"),
    # said "unexpected character '%'; expected ')' or ','"
    ((SPLIT, "split: holdout(val=20%, test=0.2)"), (11, 24), 3, "0.2 for 20%"),
    # said "write model: b"
    (("  input: (4)", "  model b {\n  }\n  input: (4)"), (14, 3), 5, "a model cannot stand inside another"),
    # said "Dense takes no arguments" ... for a loss: "takes no arguments"
    ((LOSS, LOSS + "(from_logits=True)"), (22, 41), 11, "leave from_logits out"),
    # said "duplicate key 'layers'"
    (("  # sparse_", "  layers {\n    Dense(3)\n  }\n  # sparse_"), (21, 3), 6, "duplicate section 'layers'"),
])
def test_other_slips(tmp_path, edit, at, width, words):
    found = check(tmp_path, edited(IRIS, edit))
    assert_at(found, *at, width, words)
    assert len(found) == 1, found


def test_semicolons_between_arguments_are_one_error(tmp_path):
    # said "unexpected character ';'; expected ')' or ','" at each
    found = check(tmp_path, edited(IRIS, (SPLIT, "split: holdout(val=0.2; test=0.2; stratify=true)")))
    assert_at(found, 11, 27, 1, "arguments are separated by ',', not ';'")
    assert len(found) == 1


def test_several_layers_on_one_line(tmp_path):
    # said "put 'Dense(4) Dense(2)' on a line of its own"
    found = check(tmp_path, edited(IRIS, (DENSE, "Dense(8) Dense(4) Dense(2)")))
    assert_at(found, 17, 14, 5, "put Dense(4) and Dense(2) on lines of their own")


@pytest.mark.parametrize(("edit", "at", "width", "words"), [
    # said "unexpected '['; expected '(', '*', ':', '{', '}' or end of line"
    ((DENSE, "Dense[16]"), (17, 10), 1, "arguments are written in ( ): Dense(16)"),
    ((DENSE, "Dense 16"), (17, 11), 2, "arguments are written in ( ): Dense(16)"),
    # said "unexpected '('; expected '*', '}' or end of line"
    ((DENSE, "Dense(16)(x)"), (17, 14), 3, "write it without (x) (Keras' functional API)"),
    # said "unexpected '-1'; expected an integer"
    ((DENSE, "Dense(16) * -1"), (17, 17), 2, "a repeat count is a whole number, at least 1"),
    # said "'2.5' is not a number"
    ((DENSE, "Dense(16) * 2.5"), (17, 17), 3, "'2.5' is not a whole number"),
    # said "name the argument: key=value"
    ((DENSE, "Reshape(2, 2)"), (17, 16), 1, "a shape is one tuple: Reshape((2, 2))"),
    # said "expected true or false"
    ((DENSE, "Dense(16, use_bias=ture)"), (17, 24), 4, "did you mean 'true'?"),
    (("stratify=true", "stratify=yes"), (11, 48), 3, "write true: dlc's booleans are true and false"),
    # said "expected an integer or a tuple"
    ((DENSE, "Conv1D(8, kernel_size=[3])"), (17, 27), 3, "a tuple is written in ( ): (3)"),
    # said "train takes: epochs, batch_size, shuffle, early_stopping, precision"
    (("epochs: 40", "epochs: 40\n    normalize: standard"), (28, 5), 9,
     "normalize belongs inside data { ... }, not in train { }"),
    # said "unexpected statement inside train"
    (("epochs: 40", "epochs: 40\n    layers { Dense(3) }"), (28, 5), 6,
     "layers { } belongs in the model itself, not inside train { }"),
    # said "expected a metric name such as accuracy"
    (("metrics: [accuracy]", "metrics: (accuracy, recall)"), (23, 12), 18,
     "a list is written in [ ]: [accuracy, recall]"),
    # said "known keys: dtype, input, ..."
    (("seed: 7", "name: iris"), (6, 3), 4, "a model's name is written after 'model': model NAME { ... }"),
    # said "several values are written as a list: batch_size: [16, 32]"
    (("batch_size: 16", "batch_size: 16, 32"), (28, 19), 1, "batch_size takes one value; to search several"),
])
def test_more_slips(tmp_path, edit, at, width, words):
    found = check(tmp_path, edited(IRIS, edit))
    assert_at(found, *at, width, words)
    assert len(found) == 1, found


@pytest.mark.parametrize(("text", "edit", "at", "width", "words"), [
    # said "unexpected '{'; expected '}' or end of line"
    (RESIDUAL, ("residual {  ", "residual * 2 {"), (21, 18), 1, "residual { ... } * 2"),
    # said "unexpected '{'; expected '('"
    (RESIDUAL, ("block conv_bn(filters) {", "block conv_bn {"), (5, 15), 1, "block conv_bn() { ... }"),
    # said "several values are written as a list: objective: [val_loss, minimize]"
    (TUNE, ("objective: minimize val_loss", "objective: val_loss, minimize"), (36, 24), 1,
     "an objective is a direction and a metric: objective: minimize val_loss"),
])
def test_slips_in_blocks_residuals_and_searches(tmp_path, text, edit, at, width, words):
    found = check(tmp_path, edited(text, edit))
    assert_at(found, *at, width, words)


@pytest.mark.parametrize(("written", "width", "words"), [
    # said "unexpected character '/'; expected '(', ')', ',', '=' or a name"
    ("csv(data/heart.csv)", 14, 'a path is written in double quotes: "data/heart.csv"'),
    # said "'heart.csv' is a Python path ... write csv"
    ("csv(heart.csv)", 9, 'a path is written in double quotes: "heart.csv"'),
    ("npz(~/x.npz)", 7, 'a path is written in double quotes: "~/x.npz"'),
    # said "arguments are written name=value: write C=\data\x.csv"
    ("csv(C:\\data\\x.csv)", 13, 'with / for \\: "C:/data/x.csv"'),
])
def test_a_path_without_quotes(tmp_path, written, width, words):
    found = check(tmp_path, edited(IRIS, ("source: iris ", f"source: {written} ")))
    assert_at(found, 9, 17, width, words)
    assert len(found) == 1


def test_a_url_without_quotes(tmp_path):
    # said "one statement per line: put 'sqlite:///runs/x.db' on a line of its own"
    text = edited(TUNE, ("prune: median ", "prune: median\n    storage: sqlite:///runs/x.db "))
    found = check(tmp_path, text)
    assert_at(found, 38, 14, 19, 'a URL is written in double quotes: "sqlite:///runs/x.db"')


def test_a_validation_metric_in_metrics(tmp_path):
    # said "did you mean 'accuracy'?"
    found = check(tmp_path, edited(IRIS, ("metrics: [accuracy]", "metrics: [val_accuracy]")))
    assert_at(found, 23, 13, 12, "write accuracy: each metric is also reported on the validation part")


@pytest.mark.parametrize("units", ["1e999", "99999999999999999999"])
def test_a_number_that_overflows_in_a_layer_hides_nothing_and_adds_nothing(tmp_path, units):
    # said also "the data has 3 classes but the last layer has 16 outputs" (the layer dropped, the one
    # before it checked as the last)
    found = check(tmp_path, edited(IRIS, (OUT, f"Dense({units}, activation=softmax)")))
    assert_at(found, 18, 11, len(units), "overflows")
    assert len(found) == 1, found


def test_a_block_argument_is_quoted_as_written(tmp_path):
    # said "(filters = ..., given on line 20)"
    text = edited(RESIDUAL, ("    conv_bn(16)\n    residual", "    conv_bn([16])\n    residual"))
    found = check(tmp_path, text)
    assert_at(found, 6, 10, 7, "(filters = [16], given on line 20)")


@pytest.mark.parametrize(("edit", "at"), [
    # said "unexpected ':'; expected '(', '[', a name, a number or a string"
    (("metrics: [accuracy]", "metrics:: [accuracy]"), (23, 11)),
    (("val=0.2", "val==0.2"), (11, 24)),
])
def test_a_colon_or_equals_typed_twice(tmp_path, edit, at):
    found = check(tmp_path, edited(IRIS, edit, (LOSS, "loss: sparse_categorical_crossentropyy")))
    assert_at(found, *at, 1, "is enough: delete this one")
    assert_at(found, 22, 9, None, "did you mean 'sparse_categorical_crossentropy'?")  # the rest is read
    assert len(found) == 2


def test_a_dict_never_closed_is_one_error(tmp_path):
    # said "unmatched '{'" and then "one statement per line: put 'name: adam' on a line of its own"
    found = check(tmp_path, edited(IRIS, (OPT, "optimizer: {name: adam, lr: 0.1\n  schedule: cosin()")))
    assert_at(found, 24, 14, 1, "dlc has no dicts: write optimizer: Adam(lr=0.1)")
    assert_at(found, 25, 13, 5, "did you mean 'cosine'?")
    assert len(found) == 2


def test_alternatives_copied_from_a_signature(tmp_path):
    # said "unexpected character '|'; expected '(', ')', ',' or a name"
    found = check(tmp_path, edited(IRIS, (DENSE, "Dense(16, activation=relu|tanh)")))
    assert_at(found, 17, 30, 1, "write one value, relu; or search them: choice(relu, tanh)")
