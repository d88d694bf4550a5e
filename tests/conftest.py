"""What the test modules share: the repository's paths, the command line run in-process, and one torch thread
for modules that train many tiny models.

Modules import the names (`from conftest import ROOT, run_cli`): tests/ is not a package, so pytest puts it
on sys.path before importing them (its default "prepend" import mode); tests/equivalence/measure.py, run as
a script, does the same before it imports test_equivalence."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]  # the repository
FIXTURE_DIR = ROOT / "tests" / "equivalence" / "fixtures"
# the equivalence suite's specs: its fixtures, then the example specs
EQUIVALENCE_SPECS = sorted(FIXTURE_DIR.glob("*.dlspec")) + sorted((ROOT / "specs").glob("*.dlspec"))


def edited_spec(path: Path, *edits: tuple[str, str]) -> str:
    """A spec file's text with each (old, new) replaced once; an `old` not in it fails the test."""
    text = path.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def run_cli(*argv) -> tuple[int, str, str]:
    """`dlc ARGV...` in this process (the frameworks stay imported): (exit code, stdout, stderr)."""
    from dlc.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def kill_after_epochs(proc, run: Path, epochs: int, timeout: float, signum: int | None = None) -> None:
    """SIGKILL (or `signum`) the `dlc run` process `proc` once `epochs` epochs of its run folder `run` are
    checkpointed (as a user's kill -9 or Ctrl-C would land); the test fails if the run ends first."""
    import json
    import os
    import signal
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            done = len(json.loads((run / "history.json").read_text())) if (run / "checkpoint.npz").is_file() \
                else 0
        except (OSError, ValueError):
            done = 0
        if done >= epochs:
            break
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be killed: {proc.stderr.read()}")
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL if signum is None else signum)
    proc.wait(timeout=120)


@pytest.fixture(scope="module")
def one_torch_thread():
    """For a module of tiny models (`pytestmark = pytest.mark.usefixtures("one_torch_thread")`): torch's
    intra-op thread pool costs more than it gives there (10x slower on a busy 2-core machine). Results do not
    depend on it (the float64 bounds hold either way)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
