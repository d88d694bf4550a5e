"""Golden tests for spec errors: every broken spec under tests/golden/invalid/ must make `dlc check` exit 2
with exactly the stderr in its .expected file, in the format of LANGUAGE.md's "Errors" section, never a
traceback.

After an intended change, a failing test shows the unified diff between the committed .expected file and what
`dlc check` prints now. To collect the new outputs, run

    DLC_REGEN_GOLDEN=1 .venv/bin/pytest tests/test_golden_errors.py

which writes each spec's current output to tests/golden/regenerated/ (ignored by git) and still fails on every
difference: nothing committed is overwritten. Read the diffs, then copy what you accept:
`cp tests/golden/regenerated/NAME.expected tests/golden/invalid/`. A golden file is a promise about what a
user sees; its carets also stand under the token its message names (test_carets_point_at_the_named_token).
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

GOLDEN = ROOT / "tests" / "golden"
INVALID = sorted((GOLDEN / "invalid").glob("*.dlspec"))
VALID = sorted((GOLDEN / "valid").glob("*.dlspec"))
REGEN = os.environ.get("DLC_REGEN_GOLDEN") == "1"
REGENERATED = GOLDEN / "regenerated"  # where DLC_REGEN_GOLDEN=1 writes the current outputs (never committed)

# error[E102]: unknown activation 'rleu'
#  --> specs/digits_mlp.dlspec:14:27
#    |
# 14 |     Dense(512, activation=rleu)
#    |                           ^^^^ did you mean 'relu'?
HEAD = re.compile(r"^(error|warning)\[[EW]\d{3}\]: \S.*$")
ARROW = re.compile(r"^ --> (?P<file>[^:]+)(:(?P<line>\d+):(?P<col>\d+))?$")


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _check(paths: list[Path], *extra: str) -> subprocess.CompletedProcess:
    """`dlc check` in a fresh interpreter, from the repository root, on paths relative to it."""
    return subprocess.run([sys.executable, "-m", "dlc", "check", *extra, *(_rel(p) for p in paths)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def _check_in_process(path: Path, monkeypatch) -> tuple[int, str, str]:
    monkeypatch.chdir(ROOT)
    return run_cli("check", _rel(path))


@pytest.fixture(scope="module")
def invalid_batch() -> tuple[subprocess.CompletedProcess, dict[Path, str]]:
    """One real `dlc check` process over every fixture (one process each would take ~0.4 s of imports apiece);
    its stderr is cut into each file's part, which ends with the line `PATH: N error(s)`."""
    result = _check(INVALID)
    parts: dict[Path, str] = {}
    rest = result.stderr
    for spec in INVALID:
        m = re.search(rf"^{re.escape(_rel(spec))}: \d+ errors?\n", rest, re.MULTILINE)
        assert m, f"no summary line for {_rel(spec)} in:\n{rest[:2000]}"
        parts[spec], rest = rest[: m.end()], rest[m.end():]
    assert rest == ""
    return result, parts


def test_invalid_batch_process(invalid_batch):
    result, _ = invalid_batch
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def test_enough_fixtures():
    assert len(INVALID) >= 30
    missing = [p.name for p in INVALID if not p.with_suffix(".expected").exists()]
    assert not missing, f"no .expected file for {missing} (DLC_REGEN_GOLDEN=1 writes them to {REGENERATED})"


def _assert_format(stderr: str, spec: Path) -> None:
    """Every diagnostic: a header, an arrow naming the file (and line:col), the source line, a caret."""
    source = spec.read_text().splitlines()
    body, _, summary = stderr.rstrip("\n").rpartition("\n")
    assert re.fullmatch(rf"{re.escape(_rel(spec))}: \d+ errors?", summary), summary
    n_errors = 0
    for block in body.split("\n\n"):
        lines = block.split("\n")
        assert HEAD.match(lines[0]), block
        n_errors += lines[0].startswith("error")
        m = ARROW.match(lines[1])
        assert m and m["file"] == _rel(spec), block
        if m["line"] is None:
            continue
        line, col = int(m["line"]), int(m["col"])
        gutter = " " * len(str(line))
        assert lines[2] == f"{gutter} |", block
        assert lines[3] == f"{line} | {source[line - 1]}", block
        caret = lines[4]
        assert caret.startswith(f"{gutter} | "), block
        marks = caret[len(gutter) + 3:]
        assert marks.index("^") == col - 1, block
        assert len(lines) == 5, block
    assert summary.endswith(f": {n_errors} error" + ("s" if n_errors != 1 else "")), (summary, n_errors)


@pytest.mark.parametrize("spec", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_spec(spec: Path, invalid_batch, monkeypatch):
    rc, stdout, stderr = _check_in_process(spec, monkeypatch)
    assert "Traceback" not in stderr + stdout
    assert rc == 2, stderr
    assert stdout == ""
    expected_file = spec.with_suffix(".expected")
    if REGEN:
        REGENERATED.mkdir(exist_ok=True)
        (REGENERATED / expected_file.name).write_text(stderr)
    expected = expected_file.read_text() if expected_file.exists() else ""
    assert stderr == expected, "dlc check's output differs from the golden file:\n" + "".join(
        difflib.unified_diff(expected.splitlines(True), stderr.splitlines(True), str(_rel(expected_file)),
                             "dlc check (now)"))
    assert invalid_batch[1][spec] == stderr  # the real process says the same
    _assert_format(stderr, spec)


def test_several_files_all_reported():
    """Checking several files reports each file's errors, says ok for the good one and exits 2."""
    picks = [GOLDEN / "invalid" / "unknown_layer.dlspec", VALID[0],
             GOLDEN / "invalid" / "missing_loss.dlspec"]
    result = _check(picks, "-q")
    assert result.returncode == 2
    expected = [p.with_suffix(".expected").read_text() for p in (picks[0], picks[2])]
    assert result.stderr == "".join(expected)
    assert result.stdout == f"{_rel(picks[1])}: ok\n"


def test_valid_specs_pass():
    result = _check(VALID)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    for spec in VALID:
        assert f"{_rel(spec)}: ok" in result.stdout


# ------------------------------------------------------------------------------- carets under the named token

QUOTED = re.compile(r"'([^']+)'")
# messages whose quoted names are not the token the carets mark, and what the carets mark instead
INVALID_VALUE = re.compile(r"^invalid value for '(?P<arg>[^']+)' of ")  # the value given for that argument
# where the ':' or '=' belongs (or the key lacking it)
MISSING_AFTER = re.compile(r"^syntax error: missing '.' after '(?P<key>[^']+)'")
MISSING_ARGUMENT = re.compile(r"^(?P<call>\w+) is missing its required argument")  # the call lacking it
CONTEXT_ONLY = {  # message start -> why its quoted name is context, not the marked token
    "input (": "the quoted name is the data source; the carets mark the input shape that does not fit it",
    "syntax error: missing '{'": "the carets mark the end of the header line where the '{' belongs",
}


def diagnostics(stderr: str, spec: Path):
    """(message, source line, caret column from 0, caret count) of every diagnostic with a location."""
    source = spec.read_text().splitlines()
    body = stderr.rstrip("\n").rpartition("\n")[0]
    for block in body.split("\n\n"):
        lines = block.split("\n")
        m = ARROW.match(lines[1])
        if m["line"] is None:
            continue
        message = HEAD.match(lines[0]).group(0).split("]: ", 1)[1]
        marks = lines[4][len(str(m["line"])) + 3:]
        start = marks.index("^")
        width = len(marks) - start - len(marks[start:].lstrip("^"))
        yield message, source[int(m["line"]) - 1], int(m["col"]) - 1, width


def _caret_problem(message: str, line: str, col: int, width: int) -> str | None:
    """Why the carets are not where the message says, or None."""
    marked, before = line[col:col + width], line[:col].rstrip()
    if any(message.startswith(k) for k in CONTEXT_ONLY):
        return None
    if m := INVALID_VALUE.match(message):
        ok = before.endswith((f"{m['arg']}=", f"{m['arg']}:", "(", ","))
        return None if ok and marked.strip() else f"the carets mark {marked!r}, not the value of {m['arg']!r}"
    if m := MISSING_AFTER.match(message):
        ok = before.endswith(m["key"]) or marked == m["key"]  # right after the key, or under it
        return None if ok else f"the carets neither follow nor mark {m['key']!r}"
    if m := MISSING_ARGUMENT.match(message):
        return None if marked == m["call"] else f"the carets mark {marked!r}, not the call {m['call']!r}"
    names = QUOTED.findall(message)
    if not names:
        return None  # nothing named: the message describes the marked construct
    if any(name in marked for name in names):
        return None
    return f"the carets mark {marked!r}, which holds none of {names}"


@pytest.mark.parametrize("spec", INVALID, ids=[p.stem for p in INVALID])
def test_carets_point_at_the_named_token(spec: Path):
    """In "unknown activation 'rleu'" the carets are under rleu; in "invalid value for 'units' of Dense" under
    the value given for units; in "missing ':' after 'seed'" right after seed."""
    expected = spec.with_suffix(".expected").read_text()
    found = list(diagnostics(expected, spec))
    assert found, "no located diagnostic"
    for message, line, col, width in found:
        assert width >= 1, message
        problem = _caret_problem(message, line, col, width)
        assert problem is None, f"{message}\n  {line}\n  {' ' * col}{'^' * width}\n{problem}"


def test_caret_check_sees_a_misplaced_caret():
    line = "    Dense(16, activation=rleu)"
    assert _caret_problem("unknown activation 'rleu'", line, 25, 4) is None
    assert _caret_problem("unknown activation 'rleu'", line, 24, 4) is not None  # one column off
    assert _caret_problem("unknown activation 'rleu'", line, 4, 5) is not None  # the layer, not the name
    units = "invalid value for 'units' of Dense"
    assert _caret_problem(units, "    Dense(0, activation=relu)", 10, 1) is None
    assert _caret_problem(units, "    Dense(0, activation=relu)", 4, 5) is not None
    assert _caret_problem("syntax error: missing ':' after 'seed'", "  seed 42", 7, 2) is None
    assert _caret_problem("syntax error: missing ':' after 'seed'", "  seed 42", 8, 1) is not None
