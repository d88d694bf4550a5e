"""Habits from Keras, PyTorch, Python, YAML and JSON written in a .dlspec: each gets one error in dlc's usual
form (file:line:col, a caret, how dlc writes it), exit 2 and no traceback. Each case edits specs/iris.dlspec
or specs/digits_cnn.dlspec as a user coming from another tool would; the comment says what `dlc check`
printed before its fix. The last tests keep habits that were answered well already (or are valid dlc) so."""

from __future__ import annotations

import pytest

from conftest import ROOT, run_cli

IRIS = (ROOT / "specs" / "iris.dlspec").read_text()
CNN = (ROOT / "specs" / "digits_cnn.dlspec").read_text()
DENSE = "Dense(16, activation=relu, kernel_init=he_normal)"  # iris, line 17, column 5
CONV = "Conv2D(16, (3, 3), padding=same, activation=relu, kernel_init=he_normal)"  # digits_cnn, line 19
TRAIN_END = "batch_size: 16 "  # iris, line 28: a line added after it is line 29


def edited(text: str, *edits: tuple[str, str]) -> str:
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def check(tmp_path, text: str) -> tuple[int, str, str]:
    path = tmp_path / "habit.dlspec"
    path.write_text(text)
    rc, out, err = run_cli("check", path)
    return rc, out, err


# (spec text, "line:col" of the error, words its message and hint say, how many errors the file has)
FIXED = [
    # Python's strings: `'relu'` said "unexpected character "'"; expected '(', '[', a name, a number or a
    # string" (no word of quotes); the rest of the line was dropped unchecked
    pytest.param(edited(IRIS, (DENSE, "Dense(16, activation='relu', kernel_init=he_nromal)")), "17:26",
                 ["single quote", "names are written without quotes: write relu"], 2,
                 id="single-quoted-name"),
    pytest.param(edited(IRIS, ("loss: sparse_categorical_crossentropy", "loss: 'mse'")), "22:9",
                 ["write mse"], 1, id="single-quoted-loss"),
    pytest.param(edited(IRIS, ("metrics: [accuracy]", "metrics: ['accuracy']")), "23:13",
                 ["write accuracy"], 1, id="single-quoted-metric"),
    pytest.param(edited(IRIS, ("source: iris ", "source: csv('heart.csv') ")), "9:17",
                 ['double quotes: "heart.csv"'], 1, id="single-quoted-path"),
    # module paths: `keras.layers.Dense(16)` said "unexpected character '.'; expected '(', '*', ':', '{', '}'
    # or end of line"
    pytest.param(edited(IRIS, (DENSE, "keras.layers.Dense(16)")), "17:5",
                 ["'keras.layers.Dense' is a Python path", "no module path: write Dense"], 1,
                 id="keras-layers"),
    pytest.param(edited(IRIS, (DENSE, "tf.keras.layers.Dense(16)")), "17:5", ["write Dense"], 1,
                 id="tf-keras"),
    pytest.param(edited(IRIS, (DENSE, "Dense(16, activation=tf.nn.relu)")), "17:26", ["write relu"], 1,
                 id="tf-nn-relu"),
    pytest.param(edited(IRIS, ("Adam(lr=0.01)", "torch.optim.SGD(lr=0.01)")), "24:14", ["write SGD"], 1,
                 id="torch-optim"),
    # PyTorch's names: `Linear(16)` listed 12 layers; `ReLU()` said "did you mean 'PReLU'?";
    # `CrossEntropyLoss` said "did you mean 'binary_crossentropy'?" (the wrong loss for 3 classes)
    pytest.param(edited(IRIS, (DENSE, "Linear(16)")), "17:5", ["unknown layer 'Linear'", "'Dense'"], 1,
                 id="torch-linear"),
    pytest.param(edited(IRIS, (DENSE, "nn.Linear(4, 16)")), "17:5", ["Python path", "write Linear"], 2,
                 id="torch-nn-linear"),
    pytest.param(edited(IRIS, (DENSE, "Dense(16)\n    ReLU()")), "18:5",
                 ["unknown layer 'ReLU'", "Activation(relu)"], 1, id="activation-layer"),
    pytest.param(edited(IRIS, (DENSE, "Dense(16)\n    Sigmoid()")), "18:5", ["Activation(sigmoid)"], 1,
                 id="activation-layer-sigmoid"),
    pytest.param(edited(IRIS, (DENSE, "Input(shape=(4,))\n    Dense(16)")), "17:5", ["not a layer", "input:"],
                 1, id="input-layer"),
    pytest.param(edited(IRIS, ("loss: sparse_categorical_crossentropy", "loss: CrossEntropyLoss")), "22:9",
                 ["'sparse_categorical_crossentropy'", "integer labels"], 1, id="cross-entropy-loss"),
    pytest.param(edited(IRIS, ("loss: sparse_categorical_crossentropy", "loss: BCELoss")), "22:9",
                 ["'binary_crossentropy'"], 1, id="bce-loss"),
    pytest.param(edited(IRIS, ("Adam(lr=0.01)", "Adam(lr=0.01)\n  schedule: ReduceLROnPlateau(factor=0.5)")),
                 "25:13", ["'plateau'"], 1, id="reduce-lr-on-plateau"),
    # arguments under other names: `input_shape=(4,)` listed Dense's 15 arguments; `betas=` said "did you
    # mean 'beta_2'?"
    pytest.param(edited(IRIS, (DENSE, "Dense(16, activation=relu, input_shape=(4,))")), "17:32",
                 ["unknown argument 'input_shape'", "input: (4)"], 1, id="input-shape-argument"),
    pytest.param(edited(IRIS, (DENSE, "Dense(16, input_dim=4)")), "17:15", ["input: (4)"], 1, id="input-dim"),
    pytest.param(edited(IRIS, ("Adam(lr=0.01)", "Adam(lr=0.01, betas=(0.9, 0.999))")), "24:28",
                 ["beta_1=", "beta_2="], 1, id="torch-betas"),
    # Python's constants: `stratify=True` said "expected true or false"; `activation=None` listed 14 names
    pytest.param(edited(IRIS, ("stratify=true", "stratify=True")), "11:48", ["write true", "lowercase"], 1,
                 id="python-true"),
    pytest.param(edited(IRIS, (DENSE, "Dense(16, use_bias=False)")), "17:24", ["write false"], 1,
                 id="python-false"),
    pytest.param(edited(IRIS, (DENSE, "Dense(16, activation=None)")), "17:26",
                 ["no None", "leave activation out"], 1, id="python-none"),
    # `epochs=10` said "unexpected '='; expected '(', '*', ':', '{', '}' or end of line" (`epochs = 10` was
    # answered already)
    pytest.param(edited(IRIS, ("epochs: 40", "epochs=10")), "27:11", ["missing ':' after 'epochs'",
                                                                     "epochs: 10"], 1, id="key-equals"),
    # `Dense(16, activation: relu)` said "expected '(', ')', ',', '=' or a name"
    pytest.param(edited(IRIS, (DENSE, "Dense(16, activation: relu)")), "17:25",
                 ["unexpected ':' after 'activation'", "name=value: write activation=relu"], 1,
                 id="argument-colon"),
    pytest.param(edited(CNN, (CONV, "Conv2D(16, kernel_size: (3, 3), padding=sme)")), "19:27",
                 ["write kernel_size=(3, 3)"], 2, id="argument-colon-checked-on"),
    pytest.param(edited(IRIS, (DENSE, "Dense(16,\n          activation: relu)")), "18:21",
                 ["write activation=relu"], 1, id="argument-colon-next-line"),
    # `early_stopping: patience=3` said "expected '(', '}', a name or end of line"
    pytest.param(edited(IRIS, (TRAIN_END, TRAIN_END + "\n    early_stopping: monitor=val_loss, patience=3")),
                 "29:28", ["grouped in ( ): write early_stopping: (monitor=val_loss, patience=3)"], 1,
                 id="bare-record"),
    pytest.param(edited(IRIS, ("Adam(lr=0.01)", "lr=0.01")), "24:16", ["optimizer: NAME(lr=0.01)"], 1,
                 id="bare-arguments"),
    # `early_stopping: EarlyStopping(patience=3)` said "expected a number, a name, a string or a tuple"
    pytest.param(edited(IRIS, (TRAIN_END, TRAIN_END + "\n    early_stopping: EarlyStopping(patience=3)")),
                 "29:21", ["without a name: (patience=3)"], 1, id="keras-callback-record"),
    # keys of other tools: listed the section's keys
    pytest.param(edited(IRIS, (TRAIN_END, TRAIN_END + "\n    learning_rate: 0.01")), "29:5",
                 ["argument of the optimizer"], 1, id="learning-rate-in-train"),
    pytest.param(edited(IRIS, (TRAIN_END, TRAIN_END + "\n    validation_split: 0.2")), "29:5",
                 ["holdout(val=0.2)"], 1, id="validation-split"),
    pytest.param(edited(IRIS, ("split: holdout(val=0.2, test=0.2, stratify=true)",
                               "split: holdout(val=0.2)\n    stratify: true")), "12:5",
                 ["argument of the split"], 1, id="stratify-in-data"),
    # Keras' compile/fit: `compile { loss: ... }` also said "model 'iris' has no loss"; `fit { }` listed
    # the sections
    pytest.param(edited(IRIS, ("  loss: sparse_categorical_crossentropy",
                               "  compile {\n    loss: sparse_categorical_crossentrop\n  }")), "22:3",
                 ["unknown section 'compile'", "key of the model itself"], 2, id="compile-section"),
    pytest.param(edited(IRIS, ("train {", "fit {")), "26:3", ["did you mean 'train'"], 1, id="fit-section"),
    # input shapes: `[4]` and `(None, 4)` said "for example input: (64) or input: (8, 8, 1)"
    pytest.param(edited(IRIS, ("input: (4)", "input: [4]")), "14:10", ["input: (4)"], 1, id="input-list"),
    pytest.param(edited(IRIS, ("input: (4)", "input: (None, 4)")), "14:10", ["batch axis", "input: (4)"], 1,
                 id="input-batch-axis"),
    # YAML and JSON: `"seed": 7` and `- Dense(16)` said "expected 'block', '}' or a name"; `// ...` said
    # "unexpected character '/'"; `seed: 7,` said "several values are written as a list: seed: [7,]"
    pytest.param(edited(IRIS, ("seed: 7", '"seed": 7')), "6:3", ["without quotes: seed:"], 1, id="json-key"),
    pytest.param(edited(IRIS, ("train {", '"train": {')), "26:3", ["train { ... }"], 1, id="json-section"),
    pytest.param(edited(IRIS, (DENSE, "- Dense(16)\n    - Dense(8, activation=rleu)")), "17:5",
                 ["'-'", "one statement per line", "did you mean 'relu'"], 3, id="yaml-dash"),
    pytest.param(edited(IRIS, ("seed: 7", "seed: 7  // the seed")), "6:12", ["comments start with '#'"], 1,
                 id="slash-comment"),
    pytest.param(edited(IRIS, ("seed: 7", "seed: 7,")), "6:10", ["delete the ','"], 1, id="trailing-comma"),
    pytest.param(edited(IRIS, (DENSE, "Dense(16, activation=relu),")), "17:31", ["delete the ','"], 1,
                 id="trailing-comma-layer"),
    pytest.param(edited(IRIS, ("seed: 7", "seed: 7;")), "6:10", ["delete the ';'"], 1,
                 id="trailing-semicolon"),
    # `layers:` (YAML) said "unexpected end of line" and, with its '}' kept, also "unmatched '}'"; without
    # it, each layer was "outside a layers { } section"
    pytest.param(edited(IRIS, ("layers {", "layers:")), "16:9", ["section is written in braces",
                                                                 "layers { ... }"], 1, id="yaml-section"),
    pytest.param(edited(IRIS, ("  layers {\n", "  layers:\n"),
                        ("    Dense(3, activation=softmax)    # one probability per species\n  }\n",
                         "    Dense(3, activation=softmax)\n")), "16:9", ["layers { ... }"], 1,
                 id="yaml-section-no-braces"),
    # `model: iris {` said "expected a name"; `model iris:` (its '}' kept) also "unmatched '}'"
    pytest.param(edited(IRIS, ("model iris {", "model: iris {")), "5:6", ["write model iris { ... }"], 1,
                 id="model-colon"),
    pytest.param(edited(IRIS, ("model iris {", "model iris:")), "5:11", ["model iris { ... }"], 1,
                 id="model-yaml-header"),
    # an argument of another class of the family: `Adam(momentum=0.9)` listed Adam's 10 arguments;
    # `Dense(16, padding=same)` Dense's 15
    pytest.param(edited(IRIS, ("Adam(lr=0.01)", "Adam(lr=0.01, momentum=0.9)")), "24:28",
                 ["argument of SGD and RMSprop, not of Adam"], 1, id="momentum-for-adam"),
    pytest.param(edited(IRIS, (DENSE, "Dense(16, padding=same)")), "17:15", ["argument of Conv2D"], 1,
                 id="padding-for-dense"),
    pytest.param(edited(IRIS, (DENSE, "Dense(16, name=hidden)")), "17:15", ["leave name out"], 1,
                 id="keras-layer-name"),
    pytest.param(edited(IRIS, ("holdout(val=0.2, test=0.2, stratify=true)",
                               "train_test_split(test_size=0.2)")), "11:12", ["'holdout'"], 1,
                 id="train-test-split"),
    # a YAML key's value on the next line said "unexpected end of line" and "layer
    # 'sparse_categorical_crossentropy' outside a layers { } section"
    pytest.param(edited(IRIS, ("loss: sparse_categorical_crossentropy",
                               "loss:\n    sparse_categorical_crossentropy")),
                 "22:7", ["on its line: loss: sparse_categorical_crossentropy"], 1, id="yaml-value-below"),
    pytest.param(edited(IRIS, ("metrics: [accuracy]", "metrics:\n    - accuracy\n    - f1")),
                 "23:10", ["a list is written in [ ]", "metrics: [accuracy, f1]"], 1, id="yaml-list-below"),
    pytest.param(edited(IRIS, ("  layers {", "  layers:"), (DENSE, "- Dense(16, activation=relu)"),
                        ("    Dense(3, activation=softmax)    # one probability per species\n  }\n",
                         "    - Dense(3, activation=softmax)\n")), "16:9",
                 ["layers { ... }", "without '-'"], 1, id="yaml-section-of-dashes"),
    # `Dense(16) x 3` said "expected '*', '}' or end of line"
    pytest.param(edited(IRIS, (DENSE, "Dense(16, activation=relu) x 3")), "17:32", ["repeated with '*'"], 1,
                 id="times-x"),
]


@pytest.mark.parametrize(("text", "at", "words", "count"), FIXED)
def test_a_habit_gets_one_clear_error(tmp_path, text, at, words, count):
    rc, out, err = check(tmp_path, text)
    assert rc == 2, out + err
    assert "Traceback" not in err
    assert f"habit.dlspec:{at}\n" in err, err
    for word in words:
        assert word in err, err
    assert f"{count} error{'s' * (count != 1)}" in err, err


# habits answered well before (or valid dlc): kept so
WORKED = [
    pytest.param(edited(IRIS, (DENSE, 'Dense(16, activation="relu")')), "17:26", "write relu without quotes",
                 id="double-quoted-name"),
    pytest.param(edited(IRIS, ("Adam(lr=0.01)", "adam")), "24:14", "did you mean 'Adam'?",
                 id="lowercase-adam"),
    pytest.param(edited(IRIS, ("batch_size: 16", "batch_size = 32")), "28:16", "use ':' instead of '='",
                 id="key-spaced-equals"),
    pytest.param(edited(IRIS, ("train {", "train: {")), "26:10", "a section takes no ':'",
                 id="section-colon"),
    pytest.param(edited(CNN, (CONV, "Conv2d(1, 16, 3)")), "19:5", "did you mean 'Conv2D'?",
                 id="torch-conv2d"),
    pytest.param(edited(IRIS, ("Adam(lr=0.01)", "Adam(lr=0.01, eps=1e-8)")), "24:28",
                 "did you mean 'epsilon'?", id="torch-eps"),
    pytest.param(edited(IRIS, ("metrics: [accuracy]", "metrics: accuracy, f1")), "23:20",
                 "metrics: [accuracy, f1]", id="bare-list"),
]


@pytest.mark.parametrize(("text", "at", "words"), WORKED)
def test_a_habit_answered_well_before_still_is(tmp_path, text, at, words):
    rc, out, err = check(tmp_path, text)
    assert rc == 2 and "Traceback" not in err
    assert f"habit.dlspec:{at}\n" in err and words in err, err


VALID = [
    pytest.param(edited(IRIS, (DENSE, "Dense(units=16, kernel_initializer=he_normal, "
                                      "kernel_regularizer=l2(0.01))")), id="keras-argument-names"),
    pytest.param(edited(CNN, (CONV, 'Conv2D(16, kernel_size=3, padding="same", activation=relu)')),
                 id="keras-kernel-size"),
    pytest.param(edited(IRIS, ("Adam(lr=0.01)", "SGD(learning_rate=0.01, momentum=0.9)")), id="sgd-momentum"),
    pytest.param(edited(IRIS, ("input: (4)", "input: (4,)"), ("seed: 7", "seed:7")), id="python-tuple"),
    pytest.param(edited(IRIS, (DENSE, "Dense(16, activation=relu,)"), ("    " + "Dense(3", "\tDense(3"),
                        ("holdout(val=0.2, test=0.2, stratify=true)", "holdout(0.2)")),
                 id="trailing-comma-in-call"),
]


@pytest.mark.parametrize("text", VALID)
def test_a_habit_that_is_valid_dlc_stays_valid(tmp_path, text):
    rc, out, err = check(tmp_path, text)
    assert rc == 0, out + err
