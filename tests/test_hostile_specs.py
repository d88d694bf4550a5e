"""Every hostile spec gets a clear answer from `dlc check`: a positioned spec error (exit 2, file:line:col, a
caret, never a traceback) or a warning, in seconds and bounded memory.

- numbers that overflow (1e999, a 5,000-digit integer) are reported at the literal, never trained as inf;
- zero or negative sizes (units, filters, kernels, strides, pools, ...) of every layer in the catalogue;
- nesting beyond the limits (brackets, residual blocks, block calls) instead of a RecursionError;
- string escapes the compiler does not know, and non-ASCII text read as written (UTF-8);
- resource limits: the file's size and kind, expanded layers, parameters, values per sample, and at most 50
  diagnostics shown of any number;
- holdout fractions that leave no training data, and a softmax applied twice (a warning).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import typing
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, run_cli

# ------------------------------------------------------------------------------------------------- helpers

MODEL = """model m {{
  data {{
    source: {source}
  }}
  input: {input}
  layers {{
{layers}
  }}
  loss: {loss}
  optimizer: {optimizer}
}}
"""


def spec_text(layers: str = "    Dense(3, activation=softmax)", *, source: str = "iris", input: str = "(4)",
              loss: str = "categorical_crossentropy", optimizer: str = "Adam(lr=1e-3)") -> str:
    return MODEL.format(layers=layers, source=source, input=input, loss=loss, optimizer=optimizer)


def check(tmp_path: Path, text: str, name: str = "s.dlspec") -> tuple[int, str, str]:
    """`dlc check` (in this process) on `text` written to a file."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return run_cli("check", "-q", path)


def located(stderr: str) -> list[tuple[str, int, int, str]]:
    """(message, line, col, caret line) of every located diagnostic."""
    out = []
    for block in stderr.split("\n\n"):
        lines = block.split("\n")
        m = re.match(r"^ --> .*:(\d+):(\d+)$", lines[1]) if len(lines) > 4 else None
        if m:
            out.append((lines[0], int(m[1]), int(m[2]), lines[4]))
    return out


def position(text: str, needle: str, after: str | None = None) -> tuple[int, int]:
    """(line, col), 1-based, of the first `needle` in `text` (the first after `after`, when given)."""
    i = text.index(needle, text.index(after) if after else 0)
    return text.count("\n", 0, i) + 1, i - (text.rfind("\n", 0, i) + 1) + 1


def assert_error_at(rc: int, stderr: str, text: str, needle: str, words: str,
                    after: str | None = None) -> str:
    """Exit 2, no traceback, and an error whose message holds `words` (a regex) located at `needle`."""
    assert rc == 2, stderr
    assert "Traceback" not in stderr
    where = position(text, needle, after)
    found = [d for d in located(stderr) if (d[1], d[2]) == where and d[0].startswith("error")]
    assert found, f"no error at {where} ({needle!r}) in:\n{stderr}"
    assert any(re.search(words, d[0]) for d in found), f"{words!r} not in {[d[0] for d in found]}"
    return found[0][0]


# ------------------------------------------------------------------------------------- non-finite numbers

OVERFLOWS = [
    ("kernel_constraint=max_norm(1e999)", "layers", "1e999"),
    ("optimizer clipnorm", "Adam(clipnorm=1e999)", "1e999"),
    ("optimizer lr", "Adam(lr=1e999)", "1e999"),
    ("negative", "Adam(lr=-1e999)", "-1e999"),
    ("just above the largest double", "SGD(lr=1.8e308)", "1.8e308"),
    ("400 digits", "SGD(lr=1" + "0" * 400 + ".5)", "1" + "0" * 400 + ".5"),
]


@pytest.mark.parametrize(("what", "where", "literal"), OVERFLOWS, ids=[o[0] for o in OVERFLOWS])
def test_a_number_that_overflows_is_an_error_at_the_literal(tmp_path, what, where, literal):
    if where == "layers":
        text = spec_text(f"    Dense(8, {what})\n    Dense(3, activation=softmax)")
    else:
        text = spec_text(optimizer=where)
    rc, out, err = check(tmp_path, text)
    message = assert_error_at(rc, err, text, literal, r"overflows")
    assert message.startswith("error[E209]")
    if "lr=" not in where:  # blamed on the right argument
        assert "learning_rate" not in err and "'lr'" not in err


@pytest.mark.parametrize("where", ["train_epochs", "holdout", "l2", "dropout", "search", "input", "repeat"])
def test_overflow_in_every_kind_of_place(tmp_path, where):
    big = "1e999"
    layers, extra_input = "    Dense(3, activation=softmax)", "(4)"
    if where == "l2":
        layers = f"    Dense(3, activation=softmax, kernel_reg=l2({big}))"
    elif where == "dropout":
        layers = f"    Dropout({big})\n    Dense(3, activation=softmax)"
    elif where == "input":
        extra_input = f"({big})"
    elif where == "repeat":
        big = "9" * 5000
        layers = f"    Dense(8) * {big}\n    Dense(3, activation=softmax)"
    text = spec_text(layers, input=extra_input)
    if where == "train_epochs":
        text = text.replace("  loss:", f"  train {{\n    epochs: {big}\n  }}\n  loss:")
    elif where == "holdout":
        text = text.replace("source: iris", f"source: iris\n    split: holdout(val={big})")
    elif where == "search":
        text = text.replace("Adam(lr=1e-3)", f"Adam(lr=loguniform(1e-4, {big}))").replace(
            "  loss:", "  search {\n    trials: 2\n  }\n  loss:")
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, big, r"overflows|too many layers")


def test_a_5000_digit_integer_is_positioned_not_internal(tmp_path):
    digits = "9" * 5000
    text = spec_text(f"    Dense({digits})\n    Dense(3, activation=softmax)")
    rc, out, err = check(tmp_path, text)
    message = assert_error_at(rc, err, text, digits, r"integer 9+\.\.\. \(5,000 characters\) overflows")
    assert "E000" not in err and "internal error" not in err
    assert len(message) < 200  # the literal is abbreviated in the message
    assert max(len(line) for line in err.splitlines()) < 400  # and the source line shown around the caret


def test_an_integer_beyond_64_bits_overflows(tmp_path):
    text = spec_text().replace("model m {", "model m {\n  seed: 9223372036854775808")
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, "9223372036854775808", r"does not fit in 64 bits")


def test_an_overflow_never_reaches_the_ir(tmp_path):
    text = spec_text(optimizer="Adam(clipnorm=1e999)")
    (tmp_path / "s.dlspec").write_text(text)
    rc, out, err = run_cli("compile", tmp_path / "s.dlspec", "--emit", "ir")
    assert rc == 2 and "overflows" in err and "null" not in out


def test_the_ir_refuses_non_finite_numbers_from_any_caller():
    from pydantic import ValidationError

    from dlc.compiler.training import Adam

    for bad in (float("inf"), float("-inf"), float("nan")):
        with pytest.raises(ValidationError):
            Adam(learning_rate=bad)


def test_a_literal_that_underflows_to_zero_is_a_warning(tmp_path):
    text = spec_text("    Dense(3, activation=softmax, kernel_reg=l2(1e-400))")
    rc, out, err = check(tmp_path, text)
    assert rc == 0, err
    assert "warning[W003]: number 1e-400 underflows to 0" in err
    assert located(err)[0][1:3] == position(text, "1e-400")


def test_a_literal_that_is_zero_in_float32_is_a_warning(tmp_path):
    """1e-320 is a float64 subnormal but 0 in float32: a learning rate that silently does nothing."""
    text = spec_text("    Dense(3, activation=softmax, kernel_reg=l2(1e-320))")
    rc, out, err = check(tmp_path, text)
    assert rc == 0, err
    assert "warning[W003]: number 1e-320 is 0 in float32" in err
    assert located(err)[0][1:3] == position(text, "1e-320")


def test_a_literal_that_is_inf_in_float32_is_a_warning(tmp_path):
    """1e39 is finite in float64 but inf in float32: a max-norm or clip norm that turns updates into nan."""
    text = spec_text("    Dense(3, activation=softmax, kernel_constraint=max_norm(1e39))")
    rc, out, err = check(tmp_path, text)
    assert rc == 0, err
    assert "warning[W003]: number 1e39 is inf in float32" in err
    assert located(err)[0][1:3] == position(text, "1e39")
    largest = spec_text("    Dense(3, activation=softmax, kernel_constraint=max_norm(3e38))")
    rc, out, err = check(tmp_path, largest)
    assert rc == 0 and "W003" not in err, err


# --------------------------------------------------------------------- zero and negative sizes, every layer

LAYER_FAMILY = "layer"
# a valid value for each required argument, as spec text
REQUIRED = {"units": "4", "filters": "4", "kernel_size": "3", "input_dim": "17", "output_dim": "4",
            "target_shape": "(-1)", "layer": "LSTM(4)", "activation": "relu", "rate": "0.5"}
# the arguments for which 0 or -1 is a valid value (why), and the values tried instead; None: none
SPECIAL_VALUES: dict[str, list[str] | None] = {
    "axis": None,  # 0 and -1 name axes (out-of-range axes are tested below)
    "output_padding": ["-1", "(0, -1)"],  # 0 is no padding
    "target_shape": ["0", "(-2)", "(4, 0, -1)", "(-1, -1)"],  # -1 (once) is the inferred dimension
}
INPUTS = ["(64)", "(8, 8)", "(8, 8, 1)"]  # digits has 64 features: each of these takes them


def _int_fields(cls) -> list[str]:
    out = []
    for name, info in cls.model_fields.items():
        stack = [info.annotation]
        while stack:
            a = stack.pop()
            if a is int:
                out.append(name)
                break
            stack.extend(typing.get_args(a))
    return [f for f in out if f not in ("at",)]


def _tuple_length(cls, field: str) -> int | None:
    """The length of the tuple a field also takes (kernel_size=(3, 3)), or None."""
    stack = [cls.model_fields[field].annotation]
    while stack:
        a = stack.pop()
        if typing.get_origin(a) is tuple and ... not in typing.get_args(a):
            return len(typing.get_args(a))
        stack.extend(typing.get_args(a))
    return None


def _layer_cases():
    from dlc.compiler import catalog

    seen = set()
    for cls in catalog.REGISTRY[LAYER_FAMILY].values():
        if cls in seen or cls.__name__ == "Residual":
            continue
        seen.add(cls)
        for field in _int_fields(cls):
            values = SPECIAL_VALUES.get(field, ["0", "-1"])
            if values is None:
                continue
            n = _tuple_length(cls, field)
            if n and field not in SPECIAL_VALUES:  # a tuple with one 0: (2, 0)
                values = [*values, "(" + ", ".join(["2"] * (n - 1) + ["0"]) + ")"]
            for v in values:
                yield pytest.param(cls, field, v, id=f"{cls.spec_names[0]}-{field}={v}")


def _layer_call(cls, field: str | None, value: str | None) -> str:
    args = [f"{f}={REQUIRED[f]}" for f, info in cls.model_fields.items()
            if info.is_required() and f not in ("at", field)]
    if field is not None:
        args.append(f"{field}={value}")
    return f"{cls.spec_names[0]}({', '.join(args)})"


def _digits_spec(layer: str, input: str) -> str:
    return spec_text(f"    {layer}\n    Flatten()\n    Dense(10, activation=softmax)", source="digits",
                     input=input)


def _baseline(tmp_path, cls) -> str:
    """An input shape the layer takes with valid arguments (the spec checks ok)."""
    for shape in INPUTS:
        rc, _, err = check(tmp_path, _digits_spec(_layer_call(cls, None, None), shape))
        if rc == 0:
            return shape
    raise AssertionError(f"no input shape works for {_layer_call(cls, None, None)}: {err}")


@pytest.mark.parametrize(("cls", "field", "value"), list(_layer_cases()))
def test_zero_and_negative_sizes_of_every_layer(tmp_path, cls, field, value):
    shape = _baseline(tmp_path, cls)
    call = _layer_call(cls, field, value)
    text = _digits_spec(call, shape)
    rc, out, err = check(tmp_path, text)
    alias = [a for a, f in cls.aliases.items() if f == field]
    message = assert_error_at(rc, err, text, value, r".", after=f"{field}={value}")
    assert any(f"'{name}'" in message for name in [field, *alias]), message


def test_every_layer_kind_is_covered():
    from dlc.compiler import catalog

    kinds = {p.values[0] for p in _layer_cases()}
    with_sizes = {cls for cls in catalog.REGISTRY[LAYER_FAMILY].values()
                  if set(_int_fields(cls)) - {"axis"}}
    assert kinds == with_sizes and len(kinds) >= 15


@pytest.mark.parametrize(("where", "value"), [
    ("schedule: step(every=0)", "0"), ("schedule: step(-1)", "-1"),
    ("schedule: exponential(0.5, every=0)", "0"), ("schedule: cosine(0)", "0"),
    ("schedule: warmup(-1)", "-1"), ("schedule: plateau(patience=-1)", "-1"),
    ("schedule: plateau(cooldown=-1)", "-1"),
])
def test_zero_and_negative_schedule_arguments(tmp_path, where, value):
    text = spec_text().replace("  loss:", f"  {where}\n  loss:")
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, value + ")", r"invalid value", after=where)


@pytest.mark.parametrize(("line", "value"), [
    ("epochs: 0", "0"), ("epochs: -1", "-1"), ("batch_size: 0", "0"), ("batch_size: -5", "-5"),
    ("early_stopping: (patience=-1)", "-1"),
])
def test_zero_and_negative_training_settings(tmp_path, line, value):
    text = spec_text().replace("  loss:", f"  train {{\n    {line}\n  }}\n  loss:")
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, value, r"invalid value", after=line)


def test_softmax_axis_out_of_range(tmp_path):
    text = spec_text("    Dense(3)\n    Softmax(axis=5)")
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, "Softmax", r"axis 5 is out of range")


def test_constraint_axis_out_of_range_is_positioned_at_the_constraint(tmp_path):
    text = spec_text("    Dense(3, activation=softmax, kernel_constraint=max_norm(2, axis=7))")
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, "max_norm", r"max_norm\(axis=7\) on the kernel")


# ------------------------------------------------------------------------------------------------ nesting


def _nested_cases():
    """(what, spec text, the text up to the bracket or brace one level too deep (the model's brace counts),
    the words of the message)."""
    yield "lists", spec_text().replace("  input: (4)", "  input: (4)\n  metrics: " + "[" * 1000 + "accuracy"
                                       + "]" * 1000), "metrics: " + "[" * 64, "levels of brackets"
    yield "parentheses", spec_text(input="(" * 1000 + "4" + ")" * 1000), "input: " + "(" * 64, \
        "levels of brackets"
    yield "call arguments", spec_text(optimizer="Adam(lr=" + "(" * 300 + "1" + ")" * 300 + ")"), \
        "Adam(lr=" + "(" * 63, "levels of brackets"
    residual = "    " + "residual { " * 250 + "Dense(4)" + " }" * 250 + "\n    Dense(3, activation=softmax)"
    yield "residual braces", spec_text(residual), "    " + "residual { " * 62 + "residual {", \
        "levels of brackets"
    blocks = "block r0() {\n  Dense(4)\n}\n" + "".join(
        f"block r{i}() {{\n  residual {{\n    r{i - 1}()\n  }}\n}}\n" for i in range(1, 251))
    yield "residual blocks", blocks + spec_text("    r250()\n    Dense(3, activation=softmax)"), None, \
        "levels of (residual blocks|block calls)"
    chain = "block b0() {\n  Dense(4)\n}\n" + "".join(
        f"block b{i}() {{\n  b{i - 1}()\n}}\n" for i in range(1, 1001))
    yield "block calls", chain + spec_text("    b1000()\n    Dense(3, activation=softmax)"), None, \
        "levels of block calls"


@pytest.mark.parametrize(("what", "text", "at", "words"), list(_nested_cases()),
                         ids=[c[0] for c in _nested_cases()])
def test_deep_nesting_is_a_positioned_error(tmp_path, what, text, at, words):
    rc, out, err = check(tmp_path, text)
    assert rc == 2, err
    assert "Traceback" not in err and "recursion" not in err.lower()
    errors = [d for d in located(err) if "nested too deeply" in d[0]]
    assert errors, err
    message, line, col, _ = errors[0]
    assert re.search(words, message) and "64" in message
    if at is not None:  # the bracket or brace one level too deep
        i = text.index(at) + len(at) - 1
        assert (line, col) == (text.count("\n", 0, i) + 1, i - text.rfind("\n", 0, i)), err


def _bracket_floods():
    """(what, spec text): a line of tens of thousands of brackets, nested or side by side, paired or not."""
    yield "nested", spec_text(input="(4)\n  metrics: " + "[" * 100_000 + "]" * 100_000)
    yield "side by side", spec_text(input="(4)\n  metrics: [" + "(1)," * 30_000 + "]")
    yield "closers with nothing to close", spec_text(input="(4)" + ")" * 100_000)
    yield "braces, one too many", spec_text(input="(4) " + "{}" * 60_000 + "}")
    yield "braces inside calls", spec_text(input="(4" + "({})" * 40_000 + ")")


@pytest.mark.parametrize(("what", "text"), list(_bracket_floods()), ids=[c[0] for c in _bracket_floods()])
def test_a_flood_of_brackets_is_checked_in_linear_time(tmp_path, what, text):
    """The syntax repairs look at each bracket once: a line of 100,000 brackets took minutes when each one
    scanned its whole line again (now about a second; the bound leaves room for a busy machine)."""
    start = time.monotonic()
    rc, _, err = check(tmp_path, text)
    elapsed = time.monotonic() - start
    assert rc == 2 and "Traceback" not in err
    assert elapsed < 20, elapsed


def test_nesting_up_to_the_limit_works(tmp_path):
    blocks = "block r0() {\n  Dense(4)\n}\n" + "".join(
        f"block r{i}() {{\n  residual {{\n    r{i - 1}()\n  }}\n}}\n" for i in range(1, 60))
    text = blocks + spec_text("    Dense(4)\n    r59()\n    Dense(3, activation=softmax)")
    rc, out, err = check(tmp_path, text)
    assert rc == 0, err
    text = spec_text(input="(" * 60 + "4" + ")" * 60)  # read, and then found to be no shape
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, "(", "input must be a shape of positive integers")
    assert "nested" not in err


# ----------------------------------------------------------------------------------------- strings, UTF-8


@pytest.mark.parametrize("escape", ["\\q", "\\x", "\\x41", "\\ ", "\\u00e9", "\\d"])
def test_an_unknown_escape_is_positioned(tmp_path, escape):
    text = spec_text(source=f'csv("data{escape}.csv")')
    rc, out, err = check(tmp_path, text)
    message = assert_error_at(rc, err, text, escape[:2], rf"unknown escape '{re.escape(escape[:2])}'")
    assert "E000" not in err and "internal" not in err
    assert message.startswith("error[E001]")


def test_a_backslash_before_the_closing_quote(tmp_path):
    text = spec_text(source='csv("C:\\data\\")')
    rc, out, err = check(tmp_path, text)
    assert rc == 2 and "Traceback" not in err
    assert "unterminated string" in err and "write \\\\ for a backslash" in err


def test_non_ascii_and_escapes_round_trip(tmp_path):
    name = 'é "ü".csv'
    (tmp_path / name).write_text("a,b,c,d,label\n" + "1,2,3,4,0\n" * 5, encoding="utf-8")  # (rows to split)
    text = spec_text(source='csv("é \\"ü\\".csv")')
    rc, out, err = check(tmp_path, text)
    assert rc == 0, err
    rc, out, err = run_cli("compile", tmp_path / "s.dlspec", "--emit", "ir")
    assert rc == 0, err
    assert json.loads(out)["data"]["source"]["path"] == name


def test_known_escapes_and_quote_are_inverse():
    from dlc.compiler.search import literal_of
    from dlc.compiler.syntax import quote, unescape

    for value in ['plain', 'é.csv', 'a "b"', 'C:\\data\\x.csv', 'tab\there', 'line\nbreak', '\\']:
        text = quote(value)
        assert unescape(text[1:-1]) == (value, [])
        assert literal_of(value) in (text, value)
    assert literal_of("é") == '"é"'  # a name is ASCII: anything else is written as a string


def test_a_spec_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin.dlspec"
    path.write_bytes(spec_text(source='csv("caf\xe9.csv")').encode("latin-1"))
    rc, out, err = run_cli("check", path)
    assert rc == 2 and "Traceback" not in err
    assert "not UTF-8 text (byte 0xE9)" in err and re.search(r":3:\d+$", err.splitlines()[1])


# ------------------------------------------------------------------------------------------------ resources


def _timed_check(*paths, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "dlc", "check", "-q", *map(str, paths)], cwd=ROOT,
                            capture_output=True, text=True, timeout=timeout, check=False)
    return result, time.monotonic() - start


def test_a_huge_repeat_count_is_refused_at_once(tmp_path):
    text = spec_text("    Dense(8) * 100000000\n    Dense(3, activation=softmax)")
    start = time.monotonic()
    rc, out, err = check(tmp_path, text)
    assert time.monotonic() - start < 5
    assert_error_at(rc, err, text, "100000000", r"too many layers: Dense repeated 100,000,000 times")
    assert "10,000" in err


def test_exponential_block_expansion_stops_at_the_layer_limit(tmp_path):
    blocks = "block b0() {\n  Dense(4)\n}\n" + "".join(
        f"block b{i}() {{\n  b{i - 1}()\n  b{i - 1}()\n}}\n" for i in range(1, 60))
    text = blocks + spec_text("    b59()\n    Dense(3, activation=softmax)")
    start = time.monotonic()
    rc, out, err = check(tmp_path, text)
    assert time.monotonic() - start < 10
    assert_error_at(rc, err, text, "b59()", r"more than 10,000 layers", after="layers {")


def test_exponential_expansion_of_empty_or_broken_blocks_is_bounded(tmp_path):
    blocks = "block b0() {\n  Nope(4)\n}\n" + "".join(
        f"block b{i}() {{\n  b{i - 1}()\n  b{i - 1}()\n}}\n" for i in range(1, 60))
    text = blocks + spec_text("    b59()\n    Dense(3, activation=softmax)")
    start = time.monotonic()
    rc, out, err = check(tmp_path, text)
    assert time.monotonic() - start < 10
    assert rc == 2 and "unknown layer 'Nope'" in err and "more than 10,000 layers" in err


def test_too_many_parameters(tmp_path):
    text = spec_text("    Dense(100000)\n    Dense(100000)\n    Dense(3, activation=softmax)")
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, "Dense", r"too many parameters: 10,000,600,000",
                    after="\n    Dense(100000)\n    Dense(3")
    assert "2,147,483,648" in err


def test_too_many_values_per_sample(tmp_path):
    text = spec_text("    UpSampling2D(100000)\n    Flatten()\n    Dense(10, activation=softmax)",
                     source="digits", input="(8, 8, 1)")
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, "UpSampling2D", r"outputs 640,000,000,000 values per sample")
    text = spec_text(input="(100000, 100000, 100000)")
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, "(100000", r"1,000,000,000,000,000 values per sample")


def test_too_many_axes(tmp_path):
    text = spec_text(input="(" + ", ".join(["1"] * 20_000) + ")")
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, "(1, 1", r"the input has 20000 axes")
    assert max(len(line) for line in err.splitlines()) < 400  # long shapes are abbreviated
    reshape = "Reshape((" + ", ".join(["1"] * 20) + ", 4))"
    text = spec_text(f"    {reshape}\n    Flatten()\n    Dense(3, activation=softmax)")
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, "Reshape", r"too many axes: Reshape outputs 21 axes per sample")


def test_many_keyword_arguments_are_answered_quickly_and_capped(tmp_path):
    kwargs = ", ".join(f"x{i}=1" for i in range(20_000))
    text = spec_text(f"    Dense(8, {kwargs})\n    Dense(3, activation=softmax)")
    start = time.monotonic()
    rc, out, err = check(tmp_path, text)
    elapsed = time.monotonic() - start
    assert rc == 2 and "Traceback" not in err
    assert err.count("error[E112]") == 50
    assert "... and 19,950 more errors (only the first 50 are shown)" in err
    assert err.rstrip().endswith("s.dlspec: 20000 errors")
    assert elapsed < 30, elapsed


def test_many_bad_layers_are_answered_quickly_and_capped(tmp_path):
    text = spec_text("\n".join("    Nope(1)" for _ in range(20_000)))
    start = time.monotonic()
    rc, out, err = check(tmp_path, text)
    elapsed = time.monotonic() - start
    assert rc == 2 and "Traceback" not in err
    assert len(located(err)) == 50 and "... and " in err
    assert located(err)[0][1:3] == position(text, "Nope")
    n = int(re.search(r"(\d+) errors\n$", err)[1])
    assert n > 10_000 and f"{n - 50:,} more errors" in err
    assert elapsed < 30, elapsed


@pytest.mark.parametrize("kind", ["device", "fifo", "directory", "too large"])
def test_files_that_are_no_spec_are_refused_at_once(tmp_path, kind):
    if kind == "device":
        path = Path("/dev/zero")
    elif kind == "fifo":
        path = tmp_path / "pipe.dlspec"
        os.mkfifo(path)  # opening it to read would wait for a writer forever
    elif kind == "directory":
        path = tmp_path
    else:
        path = tmp_path / "big.dlspec"
        path.write_text(spec_text() + ("# padding\n" * 40_000))
    result, elapsed = _timed_check(path, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert elapsed < 20
    words = {"device": "not a regular file", "fifo": "not a regular file", "directory": "it is a directory",
             "too large": r"the file has 4\d\d,\d\d\d bytes; a spec may have at most 262,144"}[kind]
    assert re.search(f"error\\[E400\\]: cannot read spec file '.*': {words}", result.stderr), result.stderr


# ------------------------------------------------------------------------------------ data splits, seeds


@pytest.mark.parametrize(("split", "words"), [
    ("holdout(val=0.5, test=0.5)", r"val \+ test = 0\.5 \+ 0\.5 = 1 leaves no training data"),
    ("holdout(0.7, 0.6)", r"= 1\.3 leaves no training data"),
])
def test_holdout_fractions_that_leave_no_training_data(tmp_path, split, words):
    text = spec_text().replace("source: iris", f"source: iris\n    split: {split}")
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, "holdout", r"invalid holdout")
    assert re.search(words, err), err


@pytest.mark.parametrize("k", ["1", "0", "-3"])
def test_kfold_needs_two_folds(tmp_path, k):
    text = spec_text().replace("source: iris", f"source: iris\n    split: kfold(k={k})")
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, k, r"invalid value for 'k' of kfold", after="k=")


def test_a_negative_seed_is_a_spec_error(tmp_path):
    text = spec_text().replace("model m {", "model m {\n  seed: -1")
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, "-1", r"invalid value for 'seed'")


# ----------------------------------------------------------------------------------------- double softmax


@pytest.mark.parametrize(("layers", "loss", "second"), [
    ("    Dense(3, activation=softmax)\n    Activation(softmax)", "categorical_crossentropy", "Activation"),
    ("    Dense(3, activation=softmax)\n    Softmax()", "categorical_crossentropy", "Softmax"),
    ("    Dense(3)\n    Softmax()\n    Activation(softmax)", "categorical_crossentropy", "Activation"),
    ("    Dense(1, activation=sigmoid)\n    Activation(sigmoid)", "binary_crossentropy", "Activation"),
])
def test_an_activation_applied_twice_is_a_warning(tmp_path, layers, loss, second):
    source = "breast_cancer" if "sigmoid" in layers else "iris"
    text = spec_text(layers, loss=loss, source=source, input="(30)" if source == "breast_cancer" else "(4)")
    rc, out, err = check(tmp_path, text)
    assert rc == 0, err
    warnings = [d for d in located(err) if d[0].startswith("warning[W002]")]
    assert len(warnings) == 1, err
    assert "applied twice" in warnings[0][0]
    assert warnings[0][1:3] == position(text, second, after=layers.splitlines()[-2])


def test_a_single_softmax_is_no_warning(tmp_path):
    layers = "    Dense(8, activation=softmax)\n    Dense(3, activation=softmax)"
    rc, out, err = check(tmp_path, spec_text(layers))
    assert rc == 0 and err == ""


# ------------------------------------------------------------------------------------ search-space options

def test_every_option_of_a_search_space_is_checked_not_only_the_first(tmp_path):
    """`dlc check` resolves a search space to its first option; the others (and a range's far end) would
    only fail inside a `dlc tune` trial. Each is checked against the argument it fills, all reported at once,
    each at its own option."""
    text = spec_text("    Reshape((4, 1))\n"
                     "    Conv1D(4, 3, padding=choice(same, vaild))\n"
                     "    Flatten()\n"
                     "    Dropout(uniform(0.2, 1.5))\n"
                     "    Dense(choice(8, 0), activation=choice(relu, rleu),\n"
                     "          kernel_reg=l2(choice(0.1, -1)))\n"
                     "    Dense(3, activation=softmax)",
                     optimizer="Adam(lr=loguniform(1e-4, 10), beta_1=uniform(0.5, 1.2))")
    text = text.replace("    source: iris", "    source: iris\n    normalize: choice(standard, bogus)")
    text = text.replace("  loss:", "  train {\n    batch_size: choice(16, 0)\n  }\n"
                                   "  search {\n    trials: 2\n  }\n  loss:")
    rc, _, err = check(tmp_path, text)
    assert rc == 2 and "Traceback" not in err
    found = {(line, col): message for message, line, col, _ in located(err)}
    lines = text.split("\n")

    def at(needle: str, context: str | None = None) -> tuple[int, int]:
        """(line, column) of `needle` in the line holding `context` (the needle itself by default)."""
        n, line = next((n, line) for n, line in enumerate(lines, 1) if (context or needle) in line)
        return n, line.index(needle, line.index(context or needle)) + 1

    expected = {at("bogus"): "'normalize' of data", at("vaild"): "'padding' of Conv1D",
                at("1.5"): "'rate' of Dropout", at("0)", "choice(8, 0)"): "'units' of Dense",
                at("rleu"): "unknown activation", at("-1"): "'l2' of l2", at("1.2"): "'beta_1' of Adam",
                at("0)", "choice(16, 0)"): "'batch_size' of train"}
    for where, words in expected.items():
        assert where in found and words in found[where], (where, words, err)
    assert "did you mean 'valid'" in err and "did you mean 'relu'" in err
    assert f"{len(expected)} errors" in err  # the valid range ends (lr up to 10) are not errors


def test_valid_search_options_pass_check(tmp_path):
    text = spec_text("    Dense(choice(8, 16), activation=choice(relu, elu, leaky_relu))\n"
                     "    Dropout(uniform(0.0, 0.5))\n    Dense(3, activation=softmax)",
                     optimizer="Adam(lr=loguniform(1e-4, 1e-1))")
    text = text.replace("  loss:", "  search {\n    trials: 2\n  }\n  loss:")
    rc, out, err = check(tmp_path, text)
    assert rc == 0, err


# ------------------------------------------------------------------ diagnostics found by the hostile sweep

SEARCH_BLOCK = "  search {\n    trials: 3\n  }\n  loss:"
# Pydantic's own wording, which names its internals: never shown to a user
PYDANTIC = re.compile(r"valid dictionary|instance of|Input tag|expected tags|after validation|Input should|"
                      r"extract fields")


def with_search(text: str) -> str:
    return text.replace("  loss:", SEARCH_BLOCK, 1)


def error_hint(rc: int, err: str, text: str, needle: str, words: str, hint: str,
               after: str | None = None) -> None:
    """An error whose message holds `words` at `needle`, with `hint` (a regex) after its caret, in plain
    words."""
    assert_error_at(rc, err, text, needle, words, after)
    where = position(text, needle, after)
    carets = [d[3] for d in located(err) if (d[1], d[2]) == where and re.search(words, d[0])]
    assert any(re.search(hint, c) for c in carets), (hint, carets)
    assert not PYDANTIC.search(err), err


NESTED = [("Dense(choice(4, choice(8, 16)), activation=relu)", "choice(8"),
          ("Dropout(uniform(choice(0.1, 0.2), 0.5))", "choice(0.1"),
          ("Dense(int_uniform(2, loguniform(4, 8)))", "loguniform")]


@pytest.mark.parametrize(("layer", "inner"), NESTED, ids=["choice", "uniform", "int_uniform"])
def test_a_search_space_inside_another_is_an_error_at_the_inner_call(tmp_path, layer, inner):
    """`dlc tune` draws one value per call: the inner call would be trained as its first value and written
    back broken into best.dlspec."""
    text = with_search(spec_text(f"    {layer}\n    Dense(3, activation=softmax)"))
    rc, _, err = check(tmp_path, text)
    assert_error_at(rc, err, text, inner, r"^error\[E501\]: a search space cannot contain another search "
                    "space")


def test_a_search_space_passed_into_a_search_space_through_a_block(tmp_path):
    text = with_search("block b(n) {\n  Dense(choice(n, 32))\n}\n" + spec_text(
        "    b(choice(8, 16))\n    Dense(3, activation=softmax)"))
    rc, _, err = check(tmp_path, text)
    assert_error_at(rc, err, text, "choice(8", "cannot contain another search space")


PLAIN_WORDS = [
    ("activation=3", dict(layers="    Dense(3, activation=3)"), "3)", "expected an activation",
     r"expected an activation name such as relu$"),
    ("quoted activation", dict(layers='    Dense(3, activation="softmax")'), '"softmax"',
     "expected an activation", "write softmax without quotes"),
    ("quoted unknown activation", dict(layers='    Dense(3, activation="sofmax")'), '"sofmax"',
     "expected an activation", r"an activation name such as relu \(without quotes\)"),
    ("loss as a list", dict(loss="[sparse_categorical_crossentropy]"), "[sparse",
     "expected a loss", "a loss name such as categorical_crossentropy"),
    ("quoted source", dict(source='"iris"'), '"iris"', "expected a data source", "write iris without quotes"),
    ("number source", dict(source="3"), "3\n", "expected a data source",
     r'a data source such as iris or csv\("file.csv"\)'),
    ("schedule then=plateau", dict(optimizer="Adam(lr=1e-3)\n  schedule: warmup(epochs=1, "
                                   "then=plateau(patience=1))"), "plateau(", "'then' of warmup",
     "then= takes step, exponential or cosine$"),
    ("schedule then=warmup", dict(optimizer="Adam(lr=1e-3)\n  schedule: warmup(epochs=1, "
                                  "then=warmup(epochs=1))"), "warmup(epochs=1))", "'then' of warmup",
     "then= takes step, exponential or cosine$"),
    ("kernel of 3 numbers", dict(layers="    Reshape((2, 2, 1))\n    Conv2D(2, (1, 1, 1))\n    Flatten()\n"
                                 "    Dense(3, activation=softmax)"), "(1, 1, 1)", "'kernel_size' of Conv2D",
     "expected 2 numbers, got 3"),
]


@pytest.mark.parametrize(("what", "parts", "needle", "words", "hint"), PLAIN_WORDS,
                         ids=[p[0] for p in PLAIN_WORDS])
def test_a_wrong_kind_of_value_is_explained_in_plain_words(tmp_path, what, parts, needle, words, hint):
    text = spec_text(**parts)
    rc, _, err = check(tmp_path, text)
    error_hint(rc, err, text, needle, words, hint, after="model")


@pytest.mark.parametrize("value", ["true", "(val_loss, 2)", "5"])
def test_early_stopping_that_is_no_record(tmp_path, value):
    text = spec_text().replace("  loss:", f"  train {{\n    early_stopping: {value}\n  }}\n  loss:")
    rc, _, err = check(tmp_path, text)
    error_hint(rc, err, text, value, "'early_stopping' of train",
               r"expected a record such as \(monitor=val_loss, patience=5\)", after="early_stopping")


def test_a_block_argument_where_a_name_belongs(tmp_path):
    text = "block b(a) {\n  Dense(3, activation=a)\n}\n" + spec_text("    b(3)")
    rc, _, err = check(tmp_path, text)
    error_hint(rc, err, text, "3)", "expected an activation", "an activation name such as relu",
               after="b(3")


def test_a_search_option_where_a_name_belongs(tmp_path):
    text = with_search(spec_text("    Dense(3, activation=choice(softmax, 4))"))
    rc, _, err = check(tmp_path, text)
    error_hint(rc, err, text, "4))", "may choose 4", "an activation name such as relu")


LATE_POSITIONAL = [
    ("layer", dict(layers="    Dense(activation=softmax, 3)"), "3)", "units=3"),
    ("optimizer", dict(optimizer="Adam(lr=0.01, 0.9)"), "0.9", r"name it, e\.g\. beta_1=0\.9"),
    ("schedule", dict(optimizer="Adam(lr=1e-3)\n  schedule: warmup(then=cosine(10), 2)"), "2)", "epochs=2"),
    ("regularizer", dict(layers="    Dense(3, activation=softmax, kernel_reg=l2(l2=0.1, 0.2))"), "0.2",
     r"key=0\.2"),
]


@pytest.mark.parametrize(("what", "parts", "needle", "hint"), LATE_POSITIONAL,
                         ids=[c[0] for c in LATE_POSITIONAL])
def test_a_positional_argument_after_a_keyword_is_an_error(tmp_path, what, parts, needle, hint):
    """Python refuses `f(a=1, 2)`: which parameter the 2 is for is unclear (Dense took it as its units)."""
    text = spec_text(**parts)
    rc, _, err = check(tmp_path, text)
    error_hint(rc, err, text, needle, "a positional argument cannot follow keyword arguments", hint,
               after="model")
    assert "given twice" not in err and "1 error" in err


def test_a_positional_argument_after_a_keyword_in_a_block_call(tmp_path):
    text = "block b(n, a) {\n  Dense(n, activation=a)\n}\n" + spec_text("    b(n=3, softmax)")
    rc, _, err = check(tmp_path, text)
    error_hint(rc, err, text, "softmax)", "a positional argument cannot follow keyword arguments",
               "a=softmax", after="b(n=3")


def test_equals_for_a_colon_suggests_the_value(tmp_path):
    text = spec_text().replace("  loss:", "  seed = 1\n  loss:")
    rc, _, err = check(tmp_path, text)
    error_hint(rc, err, text, "= 1", "missing ':' after 'seed'", "seed: 1")
    assert "seed: =" not in err


def test_an_overflowing_only_layer_is_not_also_an_empty_layers_block(tmp_path):
    text = spec_text("    Dense(99999999999999999999, activation=softmax)")
    rc, _, err = check(tmp_path, text)
    assert_error_at(rc, err, text, "99999999999999999999", r"E209.*overflows")
    assert "E208" not in err and "is empty" not in err and "1 error" in err


def test_an_empty_block_call_still_leaves_layers_empty(tmp_path):
    text = "block b() {\n}\n" + spec_text("    b()")
    rc, _, err = check(tmp_path, text)
    assert_error_at(rc, err, text, "layers", r"E208.*layers \{ \} is empty", after="model")


def test_many_syntax_errors_say_that_checking_stopped(tmp_path):
    text = spec_text("\n".join(["    Dense(3,,)"] * 300))
    rc, _, err = check(tmp_path, text)
    assert rc == 2 and "Traceback" not in err
    assert err.rstrip().endswith("50 errors")
    assert "syntax checking stopped after 50 errors; there may be more" in err


def test_a_large_file_of_syntax_errors_says_that_checking_stopped(tmp_path):
    """The parser's budget (not the count) stops recovery in a file near the size limit: said too."""
    text = spec_text("\n".join(["    Dense(3,,)" + " " * 800] * 300))
    rc, _, err = check(tmp_path, text)
    assert rc == 2 and "Traceback" not in err
    assert re.search(r"syntax checking stopped early in this large file, after \d+ errors?; there may be "
                     "more", err)


def test_a_search_block_without_search_spaces_is_refused_by_check(tmp_path):
    """`dlc tune` refuses it (E505): `dlc check` says so first."""
    text = with_search(spec_text())
    rc, _, err = check(tmp_path, text)
    assert_error_at(rc, err, text, "search", r"E505.*no search spaces")


@pytest.mark.parametrize("space", ["uniform(2, 8)", "loguniform(2, 8)"])
def test_a_fractional_search_space_for_an_integer(tmp_path, space):
    text = with_search(spec_text(f"    Dense({space})\n    Dense(3, activation=softmax)"))
    rc, _, err = check(tmp_path, text)
    error_hint(rc, err, text, space, rf"E501\]: {space[:space.index('(')]}\(\) draws fractional numbers, but "
               "units takes whole numbers", r"use int_uniform\(2, 8\)")


def test_an_integer_search_space_for_an_integer_passes(tmp_path):
    text = with_search(spec_text("    Dense(int_uniform(2, 8))\n    Dense(3, activation=softmax)",
                                 optimizer="Adam(lr=uniform(0.001, 0.1))"))
    rc, _, err = check(tmp_path, text)
    assert rc == 0, err


def test_a_name_in_a_block_that_is_no_parameter(tmp_path):
    text = "block b(units) {\n  Dense(unit)\n  Dense(m)\n}\n" + spec_text(
        "    b(4)\n    Dense(3, activation=softmax)")
    rc, _, err = check(tmp_path, text)
    error_hint(rc, err, text, "unit)", "'unit' is not a parameter of block b", "did you mean 'units'")
    error_hint(rc, err, text, "m)", "'m' is not a parameter of block b", "block b takes: units")


def test_a_name_given_to_a_block_is_not_called_a_parameter(tmp_path):
    text = "block b(n) {\n  Dense(n)\n}\n" + spec_text("    b(foo)\n    Dense(3, activation=softmax)")
    rc, _, err = check(tmp_path, text)
    assert rc == 2 and "not a parameter" not in err


def test_a_block_argument_given_twice(tmp_path):
    text = "block b(n) {\n  Dense(n)\n}\n" + spec_text("    b(4, n=5)\n    Dense(3, activation=softmax)")
    rc, _, err = check(tmp_path, text)
    error_hint(rc, err, text, "n=5", "argument 'n' given twice", "already given by position")
    assert "takes 1 argument" not in err


def test_an_unknown_layer_in_an_unused_block(tmp_path):
    text = "block b(n) {\n  Bogus(n)\n  residual {\n    Dens(n)\n  }\n}\n" + spec_text()
    rc, _, err = check(tmp_path, text)
    assert_error_at(rc, err, text, "Bogus", "unknown layer 'Bogus'")
    error_hint(rc, err, text, "Dens(", "unknown layer 'Dens'", "did you mean 'Dense'")


def test_an_unknown_layer_s_misspelt_names_are_said_with_it(tmp_path):
    """`Dnese(4, activation=rleu)` said only 'Dnese': 'rleu' came at the next check. Every catalogue name
    among its keywords is checked as a layer's (its other arguments belong to a layer not known)."""
    text = spec_text("    Dnese(4, activation=rleu, kernel_init=he_normall, rate=9)\n"
                     "    Dense(3, activation=softmax)")
    rc, _, err = check(tmp_path, text)
    error_hint(rc, err, text, "Dnese", "unknown layer 'Dnese'", "did you mean 'Dense'")
    error_hint(rc, err, text, "rleu", "unknown activation 'rleu'", "did you mean 'relu'")
    error_hint(rc, err, text, "he_normall", "unknown initializer 'he_normall'", "did you mean 'he_normal'")
    assert err.count("error[") == 3, err


def test_names_misspelt_in_an_unused_block_are_said(tmp_path):
    """`activation=rleu` in a block no layer calls passed `dlc check` (only its layer names were looked
    up); a block parameter as a value is no name to look up."""
    block = ("block unused(q) {\n  Dense(q, activation=rleu, kernel_reg=l22(q), bias_init=q)\n"
             "  residual {\n    Dense(q, kernel_init=he_nrmal, kernel_reg=none)\n  }\n}\n")
    text = block + spec_text()
    rc, _, err = check(tmp_path, text)
    error_hint(rc, err, text, "rleu", "unknown activation 'rleu'", "did you mean 'relu'")
    error_hint(rc, err, text, "l22", "unknown regularizer 'l22'", "did you mean 'l2'")
    error_hint(rc, err, text, "he_nrmal", "unknown initializer 'he_nrmal'", "did you mean 'he_normal'")
    assert err.count("error[") == 3, err


def test_a_layer_of_an_unused_block_that_needs_no_parameter_is_checked_whole(tmp_path):
    """`Dropout(7)` in a block no layer calls passed `dlc check`: a layer whose arguments use none of the
    block's parameters is checked as it will be when the block is used; one that uses them, by its names
    and keywords."""
    block = "block unused(q) {\n  Dropout(7)\n  Dense(q, activaton=relu)\n  Dense(choice(2, 3))\n}\n"
    text = block + spec_text()
    rc, _, err = check(tmp_path, text)
    assert_error_at(rc, err, text, "7)", "invalid value for 'rate' of Dropout")
    error_hint(rc, err, text, "activaton", "unknown argument 'activaton' for Dense",
               "did you mean 'activation'")
    assert err.count("error[") == 2, err


@pytest.mark.parametrize("written,said", [
    ("    LeakyRelu()", "did you mean 'LeakyReLU'?"),
    ("    Dense(4, activation=LeakyReLU)", "did you mean 'leaky_relu'?"),
])
def test_a_layer_and_an_activation_of_the_same_letters_are_told_apart(tmp_path, written, said):
    """`LeakyRelu()` was sent to Activation(leaky_relu), not to the layer LeakyReLU."""
    rc, _, err = check(tmp_path, spec_text(written + "\n    Dense(3, activation=softmax)"))
    assert rc == 2 and said in err, err


def test_silu_is_keras_name_of_swish(tmp_path):
    """Keras 3 calls it silu (swish its alias): `activation=silu` was "did you mean 'selu'?"."""
    rc, _, err = check(tmp_path, spec_text("    Dense(4, activation=silu)\n    Dense(3, activation=softmax)"))
    assert rc == 0, err


@pytest.mark.parametrize("after", ["Dropout(0.3)", "Reshape((3))"])
def test_a_layer_after_the_output_activation_is_named(tmp_path, after):
    """Dense(3, activation=softmax) then Dropout: not 'the last layer ends in linear' but which layer comes
    after the softmax and why it must be last (dlc computes it inside the loss)."""
    text = spec_text(f"    Dense(3, activation=softmax)\n    {after}")
    rc, _, err = check(tmp_path, text)
    name = after.split("(")[0]
    assert rc == 2 and f"needs the softmax to come last, but {name} comes after the Dense" in err, err
    assert "ends in 'linear'" not in err


@pytest.mark.parametrize("split", ["holdout(val=0.2, stratify=true)", "kfold(k=3, stratify=true)"])
def test_stratify_on_a_regression_set_is_a_warning_not_silence(tmp_path, split):
    text = spec_text("    Dense(1)", source="diabetes", input="(10)", loss="mse")
    text = text.replace("    source: diabetes", f"    source: diabetes\n    split: {split}")
    rc, _, err = check(tmp_path, text)
    assert rc == 0 and "warning[W004]: stratify=true has no effect: mse is a regression loss" in err, err


@pytest.mark.parametrize("section", ["search {\n  trials: 2\n}", "train {\n  epochs: 2\n}", "loss: mse"])
def test_a_model_section_after_the_model_says_where_it_belongs(tmp_path, section):
    rc, _, err = check(tmp_path, spec_text() + section + "\n")
    word = section.split()[0].rstrip(":")
    assert rc == 2 and f"'{word}' belongs inside the model" in err, err


def test_a_100k_character_name_is_not_echoed_in_full(tmp_path):
    rc, _, err = check(tmp_path, spec_text(f"    {'Q' * 100_000}(3)\n    Dense(3, activation=softmax)"))
    assert rc == 2 and len(err) < 2_000 and "(100,000 characters)" in err, len(err)


def test_a_bad_value_given_to_a_block_names_the_call(tmp_path):
    """b(-4) with block b(n) { Dense(n) }: the error at Dense(n) says n = -4 and the line of the call."""
    text = spec_text("    b(-4)\n    Dense(3, activation=softmax)") + "block b(n) {\n  Dense(n)\n}\n"
    rc, _, err = check(tmp_path, text)
    call_line = next(i for i, line in enumerate(text.splitlines(), 1) if "b(-4)" in line)
    assert rc == 2 and f"invalid value for 'units' of Dense (n = -4, given on line {call_line})" in err, err


# -------------------------------------------------------------------------------------------- .npy headers

def _npy_with_shape(path: Path, shape: str) -> None:
    """A version-1 .npy file whose header says `shape` (written as is: it may be no valid shape), no data."""
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }"
    header += " " * (-(len(header) + 11) % 64) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode())


@pytest.mark.parametrize(("what", "shape"), [
    ("negative", "(-5, 4)"), ("fractional", "(2.5, 4)"), ("a bool", "(True, 4)"), ("a list", "[2, 4]"),
    ("deep enough to exhaust the parser's recursion", "(" + "-" * 3000 + "2, 4)"),
    ("deep enough to exhaust the parser's memory", "(" + "-" * 9000 + "2, 4)"),
    ("longer than numpy reads", "(2, 4)" + " " * 12_000)])
def test_a_crafted_npy_header_is_a_damaged_header(tmp_path, what, shape):
    """Not "out of memory" (exit 1), nor -5 samples, nor 2.5 read as 2: a spec error at the file."""
    _npy_with_shape(tmp_path / "x.npy", shape)
    _npy_with_shape(tmp_path / "y.npy", "(2,)")
    text = spec_text(source='npy("x.npy", "y.npy")')
    rc, _, err = check(tmp_path, text)
    assert_error_at(rc, err, text, '"x.npy"', r"E401.*'x\.npy': damaged \.npy header")
    assert "memory" not in err and "samples but" not in err
    assert len(err) < 2_000


def test_an_npy_header_numpy_accepts_passes(tmp_path):
    _npy_with_shape(tmp_path / "x.npy", "(2, 4)")
    _npy_with_shape(tmp_path / "y.npy", "(2,)")
    for name, values in (("x.npy", np.zeros(8)), ("y.npy", np.arange(2))):  # (a file cut short is E401)
        with open(tmp_path / name, "ab") as fh:
            fh.write(values.astype("<f4").tobytes())
    rc, _, err = check(tmp_path, spec_text(source='npy("x.npy", "y.npy")'))
    assert rc == 0 and "npy" not in err, err


# ------------------------------------------------------------------------------- min_lr and the optimizer

def _with_schedule(schedule: str, optimizer: str = "Adam(lr=0.01)") -> str:
    return spec_text(optimizer=optimizer).replace("  loss:", f"  schedule: {schedule}\n  loss:")


@pytest.mark.parametrize(("optimizer", "schedule", "needle", "words", "hint"), [
    ("Adam(lr=0.01)", "cosine(3, min_lr=5)", "5)", r"min_lr 5 is not below the optimizer's lr 0\.01$",
     "would raise the learning rate"),
    ("Adam(lr=0.01)", "cosine(3, min_lr=0.01)", "0.01)", r"min_lr 0\.01 is not below", "constant"),
    ("SGD()", "plateau(min_lr=0.5)", "0.5)", r"min_lr 0\.5 is not below the optimizer's lr 0\.01",
     "plateau would never lower the learning rate"),
    ("Adam(lr=0.01)", "warmup(2, then=cosine(5, min_lr=1))", "1))", r"min_lr 1 is not below", "raise"),
    ("Adam(lr=loguniform(1e-4, 1e-1))", "cosine(3, min_lr=1e-3)", "1e-3", r"lr 0\.0001 \(the low end of "
     r"loguniform\(\)\)", "raise"),
    ("Adam(lr=0.01)", "cosine(3, min_lr=choice(0.001, 0.1))", "choice", r"min_lr 0\.1 \(an option of its "
     r"choice\(\)\) is not below", "raise"),
])
def test_a_min_lr_not_below_the_lr_is_an_error_at_min_lr(tmp_path, optimizer, schedule, needle, words, hint):
    """A cosine decay toward a min_lr above the lr raises the lr (0.01 -> 1.26 -> 3.75); a plateau never
    lowers it. With search spaces, every option (both ends of a range) is compared."""
    text = _with_schedule(schedule, optimizer)
    if "(" in optimizer.partition("=")[2] or "choice" in schedule:
        text = with_search(text)
    rc, _, err = check(tmp_path, text)
    error_hint(rc, err, text, needle, words, hint, after="schedule:")


@pytest.mark.parametrize("schedule", ["cosine(3, min_lr=0.001)", "plateau(min_lr=1e-5)", "cosine(3)",
                                      "warmup(2, then=cosine(5, min_lr=0.0001))"])
def test_a_min_lr_below_the_lr_passes(tmp_path, schedule):
    rc, _, err = check(tmp_path, _with_schedule(schedule))
    assert rc == 0, err


# -------------------------------------------------------------- a bad argument hides no independent error

def test_a_bad_plateau_argument_does_not_hide_its_unknown_monitor(tmp_path):
    text = _with_schedule("plateau(factor=1, patience=-1, min_lr=-1, monitor=val_acc)")
    rc, _, err = check(tmp_path, text)
    for needle in ("1,", "-1,", "-1, m"):
        assert_error_at(rc, err, text, needle, "invalid value", after="plateau")
    error_hint(rc, err, text, "val_acc", r"cannot monitor 'val_acc'", "expected one of loss, val_loss",
               after="plateau")
    assert err.rstrip().endswith("4 errors"), err


def test_a_bad_argument_elsewhere_does_not_hide_a_bad_early_stopping_monitor(tmp_path):
    text = spec_text(optimizer="Adam(lr=-1)").replace(
        "  loss:", "  train {\n    early_stopping: (monitor=val_los)\n  }\n  loss:")
    rc, _, err = check(tmp_path, text)
    assert_error_at(rc, err, text, "-1", "invalid value")
    error_hint(rc, err, text, "val_los", r"cannot monitor 'val_los'", "did you mean 'val_loss'")


@pytest.mark.parametrize("source", ['csv("missing.csv", target=label, sep=1)',
                                    'csv(path="missing.csv", sep=1)', 'npy("missing.npy", "y.npy", z=1)',
                                    'npz("missing.npz", x=3)'])
def test_a_bad_source_argument_does_not_hide_a_missing_file(tmp_path, source):
    text = spec_text(source=source)
    rc, _, err = check(tmp_path, text)
    assert rc == 2 and "Traceback" not in err
    assert "cannot read data file 'missing." in err and "no such file" in err, err
    assert "E112" in err or "E201" in err, err


def test_a_bad_argument_elsewhere_does_not_hide_a_missing_file(tmp_path):
    text = spec_text(source='csv("missing.csv")', optimizer="Adam(lr=-1)")
    rc, _, err = check(tmp_path, text)
    assert_error_at(rc, err, text, '"missing.csv"', "cannot read data file 'missing.csv': no such file")
    assert_error_at(rc, err, text, "-1", "invalid value")


# ------------------------------------------------------------ what a diagnostic shows of the source's text

def _cells(text: str) -> int:
    """The terminal cells `text` takes: CJK and emoji 2, combining marks 0, others 1."""
    import unicodedata

    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
               for c in text)


def _block_at(err: str, line: int, col: int) -> list[str]:
    """The lines of the diagnostic located at (line, col)."""
    return next(b.split("\n") for b in err.split("\n\n") if f":{line}:{col}\n" in b)


@pytest.mark.parametrize("control", ["\x1b", "\x07", "\x7f", "\x9b", "\x00"])
def test_control_characters_are_shown_escaped_with_the_caret_under_them(tmp_path, control):
    """An ESC in a quoted line would turn the terminal red or change its title: shown as \\x1b, in the
    line, the message and a quoted file name alike, with the caret under the escape."""
    seed = f"  seed: x{control}[31mRED{control}]0;T\n"
    text = spec_text(source=f'csv("a{control}.csv")').replace("  input:", seed + "  input:")
    rc, _, err = check(tmp_path, text)
    assert rc == 2 and "Traceback" not in err
    assert not any(c in err for c in "\x1b\x07\x7f\x9b\x00"), repr(err)
    shown = f"\\x{ord(control):02x}"
    line, col = position(text, control, after="seed")
    block = _block_at(err, line, col)
    assert f"unexpected character '{shown}'" in block[0]
    assert block[3].index(shown) == block[4].index("^"), "\n".join(block)


@pytest.mark.parametrize("name", ["数据😀", "e\u0301te", "ｆｕｌｌ"])
def test_the_caret_stands_under_its_token_after_wide_characters(tmp_path, name):
    """CJK and emoji take two cells of a terminal, combining marks none: the caret counts cells."""
    text = spec_text(source=f'csv("{name}.csv", target=label, sep=1)')
    rc, _, err = check(tmp_path, text)
    line, col = position(text, "sep")
    block = _block_at(err, line, col)
    source, caret = block[3], block[4]
    prefix = source[: source.index("sep")]
    assert _cells(prefix) == caret.index("^"), "\n".join(block)
    assert caret[caret.index("^"):].startswith("^^^ ")


def test_the_caret_follows_escapes_an_ascii_output_writes(monkeypatch):
    """With PYTHONIOENCODING=ascii, Python writes '（' as \\uff08: the caret is placed for that text."""
    import io

    from dlc.compiler import compile_text

    text = spec_text("    Dense\uff088, activation=relu)\n    Dense(3, activation=softmax)")
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(io.BytesIO(), encoding="ascii",
                                                        errors="backslashreplace"))
    out = compile_text(text, "s.dlspec").render()
    line, col = position(text, "relu)")
    block = _block_at(out, line, col + 4)  # the unmatched ')'
    assert "\\uff088, activation" in block[3]
    assert block[3].index("relu)") + 4 == block[4].index("^"), "\n".join(block)


def test_a_tab_in_a_quoted_line_keeps_the_caret_under_its_token(tmp_path):
    text = spec_text("\tDense(8, activation=rleu)\n    Dense(3, activation=softmax)")
    rc, _, err = check(tmp_path, text)
    block = _block_at(err, *position(text, "rleu"))
    assert "\t" not in block[3] and block[3].index("rleu") == block[4].index("^"), "\n".join(block)


@pytest.mark.parametrize(("layer", "char", "hint"), [
    ("Dense(8, activation=r\u0435lu)", "\u0435", "'е' is a Cyrillic letter that looks like Latin 'e'"),
    ("Dense(8, activation=\u0440elu)", "\u0440", "looks like Latin 'p'"),
    ("Dense(8,\u00a0activation=relu)", "\u00a0", "a non-breaking space; write a plain space"),
    ("Dense(8, activation=re\u200blu)", "\u200b", "a zero-width space, which shows as nothing; delete it"),
    ("Dense\uff088, activation=relu)", "\uff08", "a full-width '\\('; write '\\('"),
    ("Dense(8, activation=\u201crelu\u201d)", "\u201c", "a curly quote"),
])
def test_a_character_that_looks_like_another_is_named(tmp_path, layer, char, hint):
    text = spec_text(f"    {layer}\n    Dense(3, activation=softmax)")
    rc, _, err = check(tmp_path, text)
    error_hint(rc, err, text, char, "unexpected character", hint)


@pytest.mark.parametrize("call, says, hint", [
    ("int_uniform(1.5, 1.9)", "int_uniform(1.5, 1.9) draws whole numbers, so its ends must be whole numbers",
     "for example int_uniform(2, 3)"),
    ("choice(4, 8, 4)", "choice() lists 4 twice", "list each option once"),
])
def test_a_search_space_a_tuner_cannot_search_is_a_spec_error(tmp_path, call, says, hint):
    """int_uniform(1.5, 1.9) passed check, then crashed grid search and drew 1 under random; a repeated
    choice() option made a grid of 8 points out of 4, a search that never ended."""
    text = spec_text(f"    Dense({call}, activation=relu)\n    Dense(3, activation=softmax)") \
        .rstrip().removesuffix("}") + "  search { method: grid }\n}\n"
    rc, _, err = check(tmp_path, text)
    assert rc == 2 and says in err and hint in err, err
