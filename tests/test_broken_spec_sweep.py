"""What a mutation sweep of broken specs found (specs/ and LANGUAGE.md's examples, each token or line deleted,
duplicated or swapped, truncated, brackets unbalanced, names misspelt, numbers and strings replaced by hostile
ones, encodings changed, two independent errors at once): one test per cluster, naming the input and what
`dlc check` printed before its fix. The last test is a small seeded fuzz of the same mutations asserting the
invariants every answer keeps: exit 0 or 2, never a traceback, each error at file:line:col with its caret
inside the line, no parser or validator internals, and quickly."""

from __future__ import annotations

import random
import re
import time

import pytest
from test_hostile_specs import assert_error_at, check, located, position

from conftest import ROOT, run_cli

LANGUAGE = ROOT.parent / "shared" / "LANGUAGE.md"
WHOLE = re.search(r"```\n(.*?)```", LANGUAGE.read_text() if LANGUAGE.is_file() else "", re.S)
DIGITS = (ROOT / "specs" / "digits_mlp.dlspec").read_text()


def edited(text: str, *edits: tuple[str, str]) -> str:
    """`text` with each (old, new) replaced once; an `old` not in it fails the test (the spec moved on)."""
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


# ------------------------------------------------------------------ a misspelt 'model' or 'block' keyword


@pytest.mark.parametrize("word", ["mdel", "modle", "modell", "Model"])
def test_a_misspelt_model_keyword_is_named_and_the_model_still_checked(tmp_path, word):
    """`mdel digits_mlp {` said only "unexpected 'mdel', expected 'block', 'model' or end of file" (no
    did-you-mean), and the whole model was dropped, so an error inside it (`rleu`) went unreported;
    `modell x {` was read as the keyword 'model' and a model named 'l' ("unexpected 'x'")."""
    text = edited(DIGITS, ("model digits_mlp", f"{word} digits_mlp"), ("activation=relu", "activation=rleu"))
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, word, rf"unknown keyword '{word}'")
    assert "did you mean 'model'?" in err
    assert_error_at(rc, err, text, "rleu", r"unknown activation 'rleu'")


def test_a_keyword_runs_into_no_name(tmp_path):
    """`modelfoo {` was read as a model named 'foo' and checked (`model 'foo' has no data`)."""
    rc, out, err = check(tmp_path, "modelfoo {\n}\n")
    assert_error_at(rc, err, "modelfoo {\n}\n", "modelfoo", r"unknown keyword 'modelfoo'")
    assert "'foo'" not in err


def test_a_misspelt_block_keyword_keeps_the_block(tmp_path):
    """`blok conv(filters) {` dropped the block: every use of it was an unknown layer."""
    text = edited(DIGITS, ("Dropout(0.3)", "conv(8)")) + "\nblok conv(filters) {\n  Dense(filters)\n}\n"
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, "blok", r"unknown keyword 'blok'")
    assert "did you mean 'block'?" in err
    assert "unknown layer" not in err


def test_the_model_name_after_a_rewritten_keyword_is_where_it_is_written(tmp_path):
    """The keyword is repaired in the text parsed; positions after it on its line stay the file's."""
    text = "mdl first {\n}\nmodel second {\n}\n"
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, "second", r"a file holds one model.*second")
    assert "the first is 'first'" in err


# ---------------------------------------------------------------- a misspelt section or key still checked


@pytest.mark.parametrize(("old", "new", "inside", "needle", "words"), [
    ("  data {", "  dta {", ("source: digits", "source: digitz"), "digitz", r"unknown data source 'digitz'"),
    ("  layers {", "  laeyrs {", ("Dropout(0.3)", "Dropout(0.3, nosie=1)"), "nosie", r"unknown argument"),
    ("  train {", "  trian {", ("epochs: 20", "epochs: 2.5"), "2.5", r"invalid value for 'epochs'"),
    ("  optimizer: RMSprop", "  optimzer: RMSpro", ("seed: 42", "seed: 42"), "RMSpro", r"unknown optimizer"),
])
def test_what_a_misspelt_section_or_key_holds_is_checked_too(tmp_path, old, new, inside, needle, words):
    """`dta { source: digitz }` reported only "unknown section 'dta'": what it held was never looked at, so
    fixing the name revealed the next error. It is now checked as the section its did-you-mean names."""
    text = edited(DIGITS, (old, new), inside)
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, new.split()[0].rstrip(":"), r"unknown (section|key)")
    assert_error_at(rc, err, text, needle, words)


def test_a_misspelt_section_written_twice_is_not_checked_again(tmp_path):
    """When the section it means is written too, its body is not checked as a second one."""
    text = edited(DIGITS, ("  train {", "  trian {\n    epochs: 3\n  }\n  train {"))
    rc, out, err = check(tmp_path, text)
    assert rc == 2 and "duplicate" not in err and "unknown section 'trian'" in err


@pytest.mark.parametrize(("old", "new", "needle", "hint"), [
    ("  loss:", "  epochs: 3\n  loss:", "epochs: 3", "epochs belongs inside train { ... }"),
    ("    epochs: 20", "    epochs: 20\n    loss: mse", "loss: mse", "loss belongs in the model itself"),
    ("  optimizer:", "  split: holdout(val=0.2)\n  optimizer:", "split: holdout(val=0.2)\n",
     "split belongs inside data")])
def test_a_key_in_the_wrong_place_says_where_it_belongs(tmp_path, old, new, needle, hint):
    """`epochs: 3` in the model said "unknown key 'epochs'" and listed the model's keys, `loss: mse` in train
    listed train's: now the hint names where the key is written."""
    text = edited(DIGITS, (old, new))
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, needle, r"unknown key")
    assert hint in err


@pytest.mark.parametrize(("old", "new", "hint"), [
    ("metrics: [accuracy, recall]", "metrics: accuracy, recall", "metrics: [accuracy, recall]"),
    ("input: (64)", "input: 8, 8", "a shape is written in ( ): input: (8, 8)")])
def test_values_without_their_brackets_are_shown_with_them(tmp_path, old, new, hint):
    """`metrics: accuracy, recall` said "unexpected ','; expected '}' or end of line"."""
    text = edited(DIGITS, (old, new))
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, ",", r"unexpected ','", after=new.split(":")[0] + ":")
    assert hint in err


def test_a_misspelt_search_space_is_named(tmp_path):
    """`activation=choce(relu, elu)` said "unknown activation 'choce'" and listed the 14 activations: the
    search spaces were not among the names it could have meant."""
    text = edited(DIGITS, ("activation=relu", "activation=choce(relu, elu)"))
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, "choce", r"unknown activation 'choce'")
    assert "did you mean 'choice'?" in err


# --------------------------------------------------------- a syntax error hides no whole-spec error


def test_a_syntax_error_does_not_hide_a_misspelt_monitor(tmp_path):
    """`split: : holdout(...)` and `monitor=val_los` further down: only the syntax error was reported (the
    whole-spec checks were skipped after any syntax error). They now run on what no syntax error touched."""
    text = edited(DIGITS, ("seed: 42", "seed: : 42"), ("monitor=val_loss", "monitor=val_los"))
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, ": 42", r"unexpected ':'", after="seed: ")
    assert_error_at(rc, err, text, "val_los", r"cannot monitor 'val_los'")


def test_what_a_syntax_error_touched_is_not_judged(tmp_path):
    """A broken `metrics` line leaves the monitors unjudged (what may be monitored is not known), and a
    broken data section's defaults are not checked against the rest: only the syntax errors are reported."""
    text = edited(DIGITS, ("metrics: [accuracy, recall]", "metrics: [accuracy,, recall]"),
                  ("split: holdout(val=0.2,", "split: holdout(val=0.2,,"),
                  ("monitor=val_loss", "monitor=val_x"))
    rc, out, err = check(tmp_path, text)
    found = [m for m, *_ in located(err) if m.startswith("error")]
    assert rc == 2 and len(found) == 2 and all("syntax error" in m for m in found), err


# ------------------------------------------------------------------------------------ one brace too many


@pytest.mark.parametrize(("old", "new", "needle"), [
    ("  data {", "  data { {", "{ {"), ("source: digits", "source: digits{", "{"),
    ("Dropout(0.3)", "Dropout{(0.3)", "{"), ("model digits_mlp {", "model digits_mlp { {", "{ {")])
def test_one_brace_too_many_is_one_error_at_it(tmp_path, old, new, needle):
    """`data { {` gave three errors: "'{' opened here is never closed" at the first brace (it is closed),
    "unexpected '{'" at the second, and a third at column 18 of a 10-character line (the caret past its
    end: a column of the recovery's own text). Now one error, at the extra brace."""
    text = edited(DIGITS, (old, new))
    rc, out, err = check(tmp_path, text)
    found = [d for d in located(err) if d[0].startswith("error")]
    line, col = position(text, new)
    col += new.index(needle) + (len(needle) - 1)
    assert [(d[1], d[2]) for d in found] == [(line, col)], err
    assert "unexpected '{'" in found[0][0]


# ------------------------------------------------------------------------------- numbers, as written


@pytest.mark.parametrize(("digits", "hint"), [("１２", "full-width '1'"), ("١٢", "digit of another script")])
def test_digits_of_other_scripts_are_no_number(tmp_path, digits, hint):
    """`epochs: １２` (full-width) and `epochs: ١٢` (Arabic-Indic) were read as 12 and passed: the grammar's
    `\\d` matches any script's digits, and Python's int() reads them."""
    text = edited(DIGITS, ("epochs: 20", f"epochs: {digits}"))
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, digits[0], r"unexpected character")
    assert hint in err


def test_a_sign_before_a_foreign_digit_points_at_the_digit(tmp_path):
    text = edited(DIGITS, ("Dropout(0.3)", "Dropout(-０.3)"))
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, "０", r"unexpected character '０'")


@pytest.mark.parametrize(("literal", "hint"), [
    ("0x10", "write 16"), ("0b101", "write 5"), ("-0x1f", "write -31"), ("1_000", "write 1000"),
    ("1e", "an exponent needs digits"), ("1e+", "an exponent needs digits"), ("1.2.3", "at most one '.'"),
    ("3e3e3", "written like")])
def test_a_malformed_number_is_one_word_that_is_no_number(tmp_path, literal, hint):
    """`epochs: 0x10` said "unexpected 'x10'" (the '0' read as a number, then a name), `1_000` "unexpected
    '_000'", `1e` "unexpected 'e'": the error is now at the whole literal, with how to write it."""
    text = edited(DIGITS, ("epochs: 20", f"epochs: {literal}"))
    rc, out, err = check(tmp_path, text)
    message = assert_error_at(rc, err, text, literal, rf"'{re.escape(literal)}' is not a number",
                              after="epochs: ")
    assert message.startswith("error[E001]")
    assert hint in err


def test_a_number_after_a_name_is_not_taken_for_a_malformed_one(tmp_path):
    text = edited(DIGITS, ("epochs: 20", "epochs: a1.5"))
    rc, out, err = check(tmp_path, text)
    assert rc == 2 and "is not a number" not in err


@pytest.mark.parametrize(("source", "what"), [('csv("", target="y")', "file"), ('npz("")', "file"),
                                              ('mnist("")', "folder")])
def test_an_empty_data_path_is_called_empty(tmp_path, source, what):
    """`csv("")` said "cannot read data file '': it is a folder, not a file" (it read the spec's own folder),
    `mnist("")` "'' holds no MNIST files"."""
    text = edited(DIGITS, ("source: digits ", f"source: {source} "))
    rc, out, err = check(tmp_path, text)
    assert_error_at(rc, err, text, '""', r"the data path is empty")
    assert f"write the data {what}'s path" in err and "folder, not a file" not in err


# --------------------------------------------------------------------- a long valid model, in linear time


def test_the_dead_bias_check_follows_each_layer_once(tmp_path, monkeypatch):
    """5,000 Dense layers without an activation took 16 s in `dlc check`: each bias was followed through every
    linear layer after it (12.5 million steps) looking for a BatchNorm. Each (layer, shift) is now followed
    once; the warning names the first layers it went through and counts the rest."""
    from dlc.compiler import deadbias

    calls = []
    through = deadbias._through
    monkeypatch.setattr(deadbias, "_through", lambda *a: calls.append(1) or through(*a))
    n = 40
    text = edited(DIGITS, ("    Dropout(0.3)\n", "    Dense(16)\n" * n + "    BatchNorm()\n"))
    rc, out, err = check(tmp_path, text)
    assert rc == 0, err
    assert len(calls) < 4 * n  # (it was n * n / 2)
    warned = [m for m, *_ in located(err) if "W001" in m]
    assert len(warned) == n
    assert f"and {n - 1 - deadbias.NAMED_BETWEEN:,} more" in warned[0]


# ----------------------------------------------------------------------------- the seeded fuzz, in short

_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|[A-Za-z_][A-Za-z0-9_]*|[0-9.]+(?:[eE][+-]?[0-9]+)?|#[^\n]*|\S')
_NUMBERS = ["1e400", "-1", "0", "NaN", "inf", "0x10", "1_000", "007", "1e", "1.2.3", "9" * 400, "１２"]
_STRINGS = ['"é☃😀"', '"a\x00b"', '"' + "x" * 5000 + '"', '"\\q"', '""', '"\u202e"']
_INTERNALS = re.compile(r"Token\(|Tree\(|Field required|validation error|<class|object at 0x|Unexpected token"
                        r"|pydantic|\blark\b|NoneType|KeyError|TypeError|AttributeError|__\w+__|Traceback"
                        r"|\[E000\]|Input should be")


def _mutate(r: random.Random, text: str) -> str:
    toks = [m for m in _TOKEN.finditer(text) if not m.group().startswith("#")]
    t = r.choice(toks)
    a, b, s = t.start(), t.end(), t.group()
    lines = text.split("\n")
    i = r.randrange(len(lines))
    kind = r.randrange(10)
    if kind == 0:
        return text[:a] + text[b:]
    if kind == 1:
        return text[:a] + s + " " + s + text[b:]
    if kind == 2:
        return text[:r.randrange(len(text))]
    if kind == 3:
        j = r.randrange(len(text))
        return text[:j] + r.choice("()[]{}\"") + text[j:]
    if kind == 4 and s.isidentifier() and len(s) > 2:
        k = r.randrange(len(s))
        return text[:a] + s[:k] + s[k + 1:] + text[b:]
    if kind == 5:
        return text[:a] + r.choice(_NUMBERS) + text[b:]
    if kind == 6:
        return text[:a] + r.choice(_STRINGS) + text[b:]
    if kind == 7:
        return "\n".join(lines[:i] + lines[i + 1:])
    if kind == 8:
        return "\n".join(lines[:i] + [lines[i], lines[i]] + lines[i + 1:])
    return r.choice(["\ufeff", ""]) + text.replace("\n", r.choice(["\r\n", "\r", "\n"])) + r.choice(
        ["", "# end", "\\"])


def test_a_seeded_fuzz_of_broken_specs_keeps_every_invariant(tmp_path):
    """600 mutants of the example specs: each answered with exit 0 or 2, never a traceback, every error at
    file:line:col with its caret inside the quoted line, no parser or validator internals, within 2 s."""
    r = random.Random(20261130)
    bases = [p.read_text() for p in sorted((ROOT / "specs").rglob("*.dlspec"))]
    if WHOLE is not None and WHOLE.group(1).strip():
        bases.append(WHOLE.group(1))
    path = tmp_path / "m.dlspec"
    for n in range(600):
        text = _mutate(r, r.choice(bases))
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        t0 = time.perf_counter()
        rc, out, err = run_cli("check", "-q", path)
        took = time.perf_counter() - t0
        why = f"mutant {n}:\n{text[:3000]}\n--- stderr:\n{err[:3000]}"
        assert rc in (0, 2), why
        assert took < 2, why
        assert not _INTERNALS.search(out + err), why
        blocks = [b for b in err.split("\n\n") if re.match(r"^error\[", b)]
        assert (rc == 2) == bool(blocks), why
        for block in blocks:
            head, where, _, quoted, caret = (block.split("\n") + [""] * 5)[:5]
            assert re.match(r"^ --> .+:\d+:\d+$", where) or "E400" in head, why
            if quoted:
                src = quoted.split(" | ", 1)[1] if " | " in quoted else ""
                mark = caret.split(" | ", 1)[1] if " | " in caret else caret
                assert mark.lstrip(" ").startswith("^"), why
                assert len(mark) - len(mark.lstrip(" ")) <= len(src), why


# ------------------------------------------------------------------ two statements on one line


@pytest.mark.parametrize("line, written, hint", [
    ("    source: digits", "    source: digits, normalize: standard",
     "statements end at a newline, not with ',': put 'normalize: standard' on a line of its own"),
    ("    source: digits", "    source: digits; normalize: standard",
     "statements end at a newline, not with ';': put 'normalize: standard' on a line of its own"),
    ("    source: digits", "    source: digits  normalize: standard",
     "one statement per line: put 'normalize: standard' on a line of its own"),
    ("    Dropout(0.3)", "    Dropout(0.3), Dense(32)",
     "statements end at a newline, not with ',': put 'Dense(32)' on a line of its own"),
    ("    Dropout(0.3)", "    Dropout(0.3) Dense(32)",
     "one layer per line: put 'Dense(32)' on a line of its own"),
    ("    epochs: 20", "    epochs: 20, batch_size: 8",
     "statements end at a newline, not with ',': put 'batch_size: 8' on a line of its own"),
])
def test_two_statements_on_one_line_say_to_put_the_second_on_its_own(tmp_path, line, written, hint):
    """`data { source: iris, normalize: standard }` (JSON's or C's habit) said "expected '}' or end of line"
    at the ',' (at the ':' when only blanks stood between: `iris normalize` read as one two-word value)."""
    rc, _, err = check(tmp_path, edited(DIGITS, (line, written)))
    assert rc == 2 and "Traceback" not in err
    assert hint in err, err
