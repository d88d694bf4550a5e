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


def run_cli(*argv) -> tuple[int, str, str]:
    """`dlc ARGV...` in this process (the frameworks stay imported): (exit code, stdout, stderr)."""
    from dlc.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


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
