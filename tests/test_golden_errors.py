"""Golden tests for spec errors: every broken spec under tests/golden/invalid/ must make `dlc check` exit 2
with exactly the stderr in its .expected file, in the format of LANGUAGE.md's "Errors" section, never a
traceback.

Regenerate the expected files after an intended change with

    DLC_REGEN_GOLDEN=1 .venv/bin/pytest tests/test_golden_errors.py

and read every diff: a golden file is a promise about what a user sees.
"""

from __future__ import annotations

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
    assert all(p.with_suffix(".expected").exists() or REGEN for p in INVALID)


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
        expected_file.write_text(stderr)
    assert stderr == expected_file.read_text()
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
