"""Plain words for the binder's diagnostics: Pydantic's errors as hints, a family's example value, a value
as written. Nothing here records an error; the binder, the layer expander and the model resolver do."""

from __future__ import annotations

import re
from typing import Any

from pydantic_core import ErrorDetails

from . import ast as A
from . import catalog
from .catalog import family_of_annotation
from .diagnostics import did_you_mean
from .syntax import quote

FAMILY_CODES = {
    "layer": "E101", "activation": "E102", "initializer": "E103", "regularizer": "E104", "constraint": "E104",
    "optimizer": "E105", "loss": "E106", "metric": "E107", "schedule": "E108", "source": "E109",
    "split": "E109", "augment": "E109",
}
FAMILY_WORDS = {"source": "data source", "split": "split", "augment": "augmentation"}

VALUE_WORDS: dict[type, str] = {A.Num: "a number", A.Str: "a string", A.Bool: "true or false",
                                A.Tuple: "a tuple", A.List: "a list", A.Phrase: "two names"}

# how a hint names a family's values, with an example (the first catalogue name when not listed)
FAMILY_EXAMPLES = {
    "activation": "an activation name such as relu", "loss": "a loss name such as categorical_crossentropy",
    "source": 'a data source such as iris or csv("file.csv")', "layer": "a layer such as Dense(64)",
    "optimizer": "an optimizer such as Adam(lr=1e-3)", "metric": "a metric name such as accuracy",
    "schedule": "a schedule such as cosine(epochs=10)", "regularizer": "a regularizer such as l2(1e-4)",
    "initializer": "an initializer name such as glorot_uniform", "split": "a split such as holdout(val=0.2)",
    "constraint": "a constraint such as max_norm(3)"}


def family_example(family: str) -> str:
    word = FAMILY_WORDS.get(family, family)
    return FAMILY_EXAMPLES.get(family) or f"{article(word)} {word} such as {catalog.CANONICAL[family][0]}"


def source_text(v: A.Value) -> str:
    """A simple value as written (`3`, `relu`, `"a.csv"`); `...` for anything longer."""
    if isinstance(v, A.Num):
        return v.text
    if isinstance(v, A.Name):
        return v.name
    if isinstance(v, A.Bool):
        return "true" if v.value else "false"
    if isinstance(v, A.Str):
        return quote(v.value)
    return "..."


def written_text(v: A.Value) -> str:
    """Any value as spec text, calls and tuples included (`SGD(lr=0.1, momentum=0.9)`): one text per value,
    however it was spaced, so a choice's call option is the same option in every compilation."""
    if isinstance(v, A.Call):
        return f"{v.name}({_inner(v.args, v.kwargs)})"
    if isinstance(v, A.Tuple):
        return f"({_inner(v.items, v.kwargs)})"
    if isinstance(v, A.List):
        return f"[{_inner(v.items, v.kwargs)}]"
    if isinstance(v, A.Phrase):
        return " ".join(w.name for w in v.words)
    return source_text(v)


def _inner(items: list[A.Value], kwargs: list[A.Kwarg]) -> str:
    return ", ".join([*(written_text(i) for i in items),
                      *(f"{k.key}={written_text(k.value)}" for k in kwargs)])


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


TYPE_WORDS = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "bool_parsing": "true or false", "string_type": "a string", "tuple_type": "a tuple",
    "list_type": "a list", "none_required": None, "model_type": None, "union_tag_invalid": None,
}


# a record's example for a hint (other records: `(key=value, ...)`)
RECORD_EXAMPLES = {"EarlyStopping": "(monitor=val_loss, patience=5)",
                    "Objective": "(direction=minimize, metric=val_loss)"}


def structural(err: ErrorDetails) -> str | None:
    """Plain words for Pydantic's errors about a value's shape (a record, a tagged union, a tuple's length),
    whose own wording names Pydantic's internals; None for other errors."""
    ctx, kind = err.get("ctx") or {}, err.get("type")
    if kind == "model_type":
        name = str(ctx.get("class_name", ""))
        return "expected a record such as " + RECORD_EXAMPLES.get(name, "(key=value, ...)")
    if kind == "union_tag_invalid":
        tags = re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
        key = next((x for x in reversed(err["loc"]) if isinstance(x, str)), "this argument")
        listed = ", ".join(tags[:-1]) + " or " + tags[-1] if len(tags) > 1 else "".join(tags)
        return f"{key}= takes {listed}"
    if kind in ("too_long", "too_short") and "actual_length" in ctx:
        n = ctx.get("max_length" if kind == "too_long" else "min_length")
        word = "number" if ctx.get("field_type") == "Tuple" else "item"
        return f"expected {n} {word}{'s' * (n != 1)}, got {ctx['actual_length']}"
    if kind == "missing" and isinstance(err.get("input"), tuple) and err["loc"] \
            and isinstance(err["loc"][-1], int):
        # a tuple too short for a fixed-length one (`strides=(2)` where a pair belongs): Pydantic says "Field
        # required" of its missing position; the type's name in the location says how many it takes
        kinds = [x for x in err["loc"] if isinstance(x, str) and x.startswith("tuple[")]
        got = len(err["input"])
        if kinds and "..." not in kinds[-1]:
            n = kinds[-1].count(",") + 1
            one = err["input"][0] if got == 1 else None
            return f"expected {n} number{'s' * (n != 1)}, got {got}" + (
                f": ({', '.join([str(one)] * n)}) for {one} on every axis" if one is not None else "")
    if kind in ("model_attributes_type", "dataclass_type"):
        return "expected a name or a call here"
    return None


# a setting's value under another tool's or the tuning guides' name: (dlc's name, why)
_BAYESIAN = ("tpe", "dlc's Bayesian search: Optuna's Tree-structured Parzen Estimator")
KNOWN_AS = {"bayes": _BAYESIAN, "bayesian": _BAYESIAN, "bayesian_optimization": _BAYESIAN, "bo": _BAYESIAN,
            "gp": _BAYESIAN, "hyperopt": _BAYESIAN, "optuna": _BAYESIAN,
            "grid_search": ("grid", "every point of the grid"),
            "gridsearch": ("grid", "every point of the grid"),
            "random_search": ("random", "random points"), "randomsearch": ("random", "random points")}


def humane(msg: str, err: ErrorDetails) -> str:
    plain = structural(err)
    if plain is not None:
        return plain
    msg = msg.removeprefix("Value error, ")
    if err.get("type") == "literal_error":
        expected = msg.replace("Input should be", "expected")
        # a misspelt setting (`precision: mixed_bf16`): the nearest of the allowed names first
        allowed = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
        given = err.get("input")
        hint = did_you_mean(given, allowed) if isinstance(given, str) and allowed else None
        if isinstance(given, str) and KNOWN_AS.get(given.lower(), ("",))[0] in allowed:
            name, why = KNOWN_AS[given.lower()]
            hint = f"did you mean '{name}' ({why})?"
        return f"{hint} ({expected})" if hint else expected
    return msg.replace("Input should be", "must be")


def literal(value: Any) -> str:
    return value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else repr(value)


def explain(errs: list[ErrorDetails], annotation: Any = None) -> str:
    """One hint for a field's errors; a union's type errors become 'expected an integer or a tuple'. With the
    field's `annotation`, a value that is no catalogue name says which kind of name belongs there."""
    fam = family_of_annotation(annotation) if annotation is not None else None
    if fam is not None and any(e["type"] == "model_attributes_type" for e in errs):
        return "expected " + family_example(fam)
    if all(e["type"] in TYPE_WORDS for e in errs):
        words = list(dict.fromkeys(w for e in errs if (w := TYPE_WORDS[e["type"]])))
        if words:
            return "expected " + (words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1])
    concrete = [e for e in errs if e["type"] not in TYPE_WORDS] or errs
    return humane(concrete[0]["msg"], concrete[0])


def option_shown(arg: A.Value, value: Any) -> str:
    """A search space's option as a "when X is ..." names it: as written (a call's text included); a block's
    parameter (`choice(n, 8)` in its body) by the value given for it (`n = 4`)."""
    if isinstance(arg, A.Name) and arg.name != value:
        return f"{arg.name} = {literal(value)}"
    text = written_text(arg)
    return literal(value) if text == "..." else text


def number_text(x: float) -> str:
    """A number as a spec or a file writes it: 3, not 3.0; beyond 2**53 (where a float no longer holds every
    whole number) the float's own 1e+300, not its 301 digits."""
    if float(x).is_integer() and abs(float(x)) < 2.0**53:
        return str(int(x))
    return repr(float(x))


# another framework's names for what dlc names otherwise (PyTorch's, Keras' classes), by family and the name
# lowercased: how dlc writes it. (Names that differ in case or spelling only are did-you-mean's.)
_CROSS_ENTROPY = ("did you mean 'sparse_categorical_crossentropy' (integer labels, as PyTorch's "
                  "CrossEntropyLoss takes them) or 'categorical_crossentropy' (one-hot labels)?")
_INPUT = "the input shape is a key of the model, not a layer: input: (...)"
OTHER_NAMES: dict[str, dict[str, str]] = {
    "layer": {"linear": "did you mean 'Dense' (PyTorch's Linear)? It takes only the output size: Dense(16)",
              "lazylinear": "did you mean 'Dense' (PyTorch's LazyLinear)?",
              "input": _INPUT, "inputlayer": _INPUT,
              "sequential": "a model's layers are listed in layers { ... }, one per line",
              "adaptiveavgpool2d": "did you mean 'GlobalAvgPool2D' (an output size of 1)?",
              "adaptivemaxpool2d": "did you mean 'GlobalMaxPool2D' (an output size of 1)?",
              "adaptiveavgpool1d": "did you mean 'GlobalAvgPool1D' (an output size of 1)?",
              "adaptivemaxpool1d": "did you mean 'GlobalMaxPool1D' (an output size of 1)?"},
    "loss": {"crossentropyloss": _CROSS_ENTROPY, "crossentropy": _CROSS_ENTROPY,
             "cross_entropy": _CROSS_ENTROPY, "nllloss": _CROSS_ENTROPY, "nll_loss": _CROSS_ENTROPY,
             "bceloss": "did you mean 'binary_crossentropy' (PyTorch's BCELoss)?",
             "bcewithlogitsloss": "did you mean 'binary_crossentropy' (on a sigmoid output)?",
             "l1loss": "did you mean 'mae' (PyTorch's L1Loss)?", "l1_loss": "did you mean 'mae'?",
             "smoothl1loss": "did you mean 'huber' (PyTorch's SmoothL1Loss)?",
             "huberloss": "did you mean 'huber'?"},
    "split": {"train_test_split": "did you mean 'holdout' (scikit-learn's train_test_split)? "
                                  "holdout(test=0.2)",
              "stratifiedkfold": "did you mean 'kfold'? kfold(k=5, stratify=true)"},
    "schedule": {"reducelronplateau": "did you mean 'plateau' (Keras' ReduceLROnPlateau)?",
                 "steplr": "did you mean 'step' (PyTorch's StepLR)?",
                 "exponentiallr": "did you mean 'exponential' (PyTorch's ExponentialLR)?",
                 "exponentialdecay": "did you mean 'exponential' (Keras' ExponentialDecay)?",
                 "cosineannealinglr": "did you mean 'cosine' (PyTorch's CosineAnnealingLR)?",
                 "cosinedecay": "did you mean 'cosine' (Keras' CosineDecay)?"},
}
# arguments under another framework's names: (the argument lowercased) -> how dlc writes it ({} the value)
_INPUT_ARG = "the input shape is given once, for the model: input: {}; each layer infers its own"
OTHER_ARGUMENTS: dict[str, str] = {
    "input_shape": _INPUT_ARG, "input_dim": _INPUT_ARG, "batch_input_shape": _INPUT_ARG,
    "in_features": _INPUT_ARG, "in_channels": _INPUT_ARG,
    "out_features": "the output size is the first argument: Dense({})",
    "out_channels": "the number of filters is the first argument: Conv2D({}, (3, 3))",
    "betas": "write beta_1=..., beta_2=... (Keras' names for PyTorch's betas)",
    "p": "the dropout rate is rate, or the first argument: Dropout({})",
    "n_splits": "the number of folds is k: kfold(k={})",
    "name": "dlc names each layer itself (dense_0, dense_1, ...): leave name out",
    "from_logits": "dlc's losses take the last layer's output as it is (probabilities, after its softmax or "
                   "sigmoid): leave from_logits out",
}


def other_argument(key: str, value: A.Value, cls: type, siblings: bool = False) -> str | None:
    """How dlc writes an argument of another framework's (`input_shape=(4,)`, `betas=...`) given to `cls`,
    or None; with `siblings`, an argument of other classes of its family instead (`Adam(momentum=0.9)`:
    SGD's and RMSprop's)."""
    family = getattr(cls, "family", "") if issubclass(cls, catalog.Catalogued) else ""
    said = None if siblings or (key == "name" and family != "layer") else OTHER_ARGUMENTS.get(key.lower())
    if siblings and family:
        owners = [name for name, other in catalog.REGISTRY.get(family, {}).items()
                  if name == other.spec_names[0] and other is not cls and key in other.model_fields
                  and key not in ("at", "kind", "name")]
        if owners:
            listed = (", ".join(owners[:3]) + " and others" if len(owners) > 3 else
                      " and ".join([", ".join(owners[:-1]), owners[-1]]) if len(owners) > 1 else owners[0])
            return f"{key} is an argument of {listed}, not of {getattr(cls, 'spec_names', ('this',))[0]}"
    if said is None:
        return None
    written = written_text(value)
    if said is _INPUT_ARG and not written.startswith("("):
        written = f"({written})"
    return said.format(written)


# Python's constants, as dlc writes them
PYTHON_CONSTANTS = {"True": "true", "False": "false", "TRUE": "true", "FALSE": "false"}
NO_VALUE = ("None", "null", "NULL", "nil")


def other_name(family: str, name: str) -> str | None:
    """How dlc writes a name of another framework's in `family` (`Linear`, `CrossEntropyLoss`), or None.
    An activation's name as a layer (`ReLU()`, PyTorch's and Keras' activation layers) is Activation(...)."""
    known = OTHER_NAMES.get(family, {}).get(name.lower())
    if known is not None:
        return known
    if family == "layer" and name not in catalog.REGISTRY.get("layer", {}):
        # (`LeakyRelu()`: the layer LeakyReLU, of another case, before the activation of the same letters)
        layer = next((n for n in catalog.names("layer") if n.lower() == name.lower()), None)
        if layer is not None:
            return f"did you mean '{layer}'?"
        act = next((a for a in catalog.names("activation") if a.replace("_", "") == name.lower()), None)
        if act is not None:
            return f"an activation as a layer is written Activation({act})"
    if family == "activation" and catalog.lookup("layer", name) is not None:
        # (`activation=LeakyReLU`: the activation of the same letters, leaky_relu)
        act = next((a for a in catalog.names("activation") if a.replace("_", "") == name.lower()), None)
        if act is not None:
            return f"did you mean '{act}'? ({name} is a layer: as an activation it is written {act})"
    if family == "metric" and name.startswith("val_") and catalog.lookup("metric", name[4:]) is not None:
        # `metrics: [val_accuracy]`: Keras' name for the metric on the validation part
        return f"write {name[4:]}: each metric is also reported on the validation part, as {name}"
    if name in NO_VALUE:
        return no_value_hint(family)
    return None


def no_value_hint(what: str) -> str:
    """`activation=None`: dlc has no None; an argument left out takes its default."""
    if what == "activation":
        return "dlc has no None: leave activation out (or write activation=linear) for no activation"
    return "dlc has no None: leave the argument out for its default"


def constant_hint(value: Any) -> str | None:
    """`True` written for true (`stratify=True`), `None` for a default: how dlc writes it, or None."""
    if isinstance(value, str) and value in PYTHON_CONSTANTS:
        return f"write {PYTHON_CONSTANTS[value]}: dlc's booleans are lowercase"
    if isinstance(value, str) and value in NO_VALUE:
        return no_value_hint("")
    return None


_NUMBER_TEXT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_NUMBER_TYPES = {"int_type", "int_parsing", "int_from_float", "float_type", "float_parsing"}


_YAML_BOOLEANS = {"yes": "true", "no": "false", "on": "true", "off": "false", "y": "true", "n": "false"}


def literal_hint(v: A.Value | None, errs: list[ErrorDetails]) -> str | None:
    """A number written as a string (`Dense("16")`, YAML's and JSON's habit) or in a list of one (`[16]`)
    where a number belongs, a misspelt or YAML boolean (`ture`, `yes`): how to write it; None otherwise."""
    if isinstance(v, A.Name) and errs and all(e["type"] in ("bool_type", "bool_parsing") for e in errs):
        said = _YAML_BOOLEANS.get(v.name.lower())
        return f"write {said}: dlc's booleans are true and false" if said else \
            did_you_mean(v.name, ["true", "false"])
    if v is None or not errs or not all(e["type"] in _NUMBER_TYPES | {"tuple_type"} for e in errs):
        return None
    if isinstance(v, A.Str) and _NUMBER_TEXT.fullmatch(v.value.strip()):
        return f"a number is written without quotes: {v.value.strip()}"
    if isinstance(v, A.Num) and isinstance(v.value, float) and v.value.is_integer() and abs(v.value) < 1e18 \
            and any(e["type"] in ("int_type", "int_from_float") for e in errs):  # `epochs: 4e1`, `10.0`
        return f"an integer is written without '.' or an exponent: {int(v.value)}"
    if isinstance(v, A.List) and v.items and not v.kwargs and any(e["type"] == "tuple_type" for e in errs):
        return f"a tuple is written in ( ): {written_text(A.Tuple(v.items, [], v.span))}"  # `[2, 2]`
    if isinstance(v, A.List) and len(v.items) == 1 and not v.kwargs and isinstance(v.items[0], A.Num):
        return f"one number is written without [ ]: {v.items[0].text}"
    return None


# how a spec writes a name of each family: where a name of another family belongs
FAMILY_PLACES = {"activation": "activation={}", "initializer": "kernel_init={}",
                 "regularizer": "kernel_reg={}(...)", "constraint": "kernel_constraint={}(...)",
                 "optimizer": "optimizer: {}", "loss": "loss: {}", "metric": "metrics: [{}]",
                 "schedule": "schedule: {}(...)", "layer": "{}(...) in layers {{ }}", "source": "source: {}",
                 "split": "split: {}(...)", "augment": "augment: [{}(...)]"}


def other_family(family: str, name: str) -> str | None:
    """`activation=xavier_uniform`, `loss: accuracy`: a name of another family where one of `family`
    belongs (and no name of `family` is the same but for case): what it is and where it is written."""
    if any(n.lower() == name.lower() for n in catalog.names(family)):
        return None
    others = [f for f in FAMILY_PLACES if f != family and catalog.lookup(f, name) is not None]
    if not others:
        return None
    other = others[0]
    word, here = FAMILY_WORDS.get(other, other), FAMILY_WORDS.get(family, family)
    return f"'{name}' is {article(word)} {word}, not {article(here)} {here}: it is written " \
           f"{FAMILY_PLACES[other].format(name)}"
