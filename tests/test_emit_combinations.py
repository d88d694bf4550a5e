"""`dlc compile --emit` on combinations no fixture has, found by a sweep of generated specs (layers,
optimizers, schedules, splits, sources and training options combined at random, each emitted script run
against `dlc run`'s per-step losses): targets stored as one column or as one-hot rows, a spec file whose
name a docstring cannot hold as it is, and scripts that a linter passes (no unused names)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_emit import _losses, assert_standalone

from conftest import ROOT

NPZ_SPEC = """\
model emit_targets {{
  seed: 4
  data {{
    source: npz("targets.npz")
    normalize: standard
    split: holdout(val=0.25, test=0.2, stratify=true)
  }}
  input: (5)
  layers {{
    Dense(4, activation=relu)
    Dense({units}, activation={activation})
  }}
  loss: {loss}
  metrics: [accuracy, f1]
  optimizer: Adam(lr=0.01)
  train {{
    epochs: 2
    batch_size: 16
    early_stopping: (monitor=val_loss, patience=0)
  }}
}}
"""

# y as the npz stores it -> the loss it is used with (one label per sample for dlc: a one-column array's
# column, one-hot rows' class)
TARGETS = {
    "column_categorical": ("column", "categorical_crossentropy"),
    "column_sparse": ("column", "sparse_categorical_crossentropy"),
    "onehot_categorical": ("onehot", "categorical_crossentropy"),
    "column_binary": ("column", "binary_crossentropy"),
}


def _write_targets(path: Path, stored: str, binary: bool) -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2 if binary else 3, 90)
    x = rng.normal(size=(90, 5)) + labels[:, None]
    y = np.eye(3)[labels] if stored == "onehot" else labels[:, None]
    np.savez(path, x=x, y=y)


def _emit(spec: Path, backend: str) -> str:
    from dlc.backends.emit.script import emit
    from dlc.compiler import compile_file

    return emit(compile_file(spec).raise_for_errors(), backend, spec)


def _script_losses(script: Path, tmp: Path) -> list[float]:
    out = tmp / f"{script.stem}.json"
    proc = subprocess.run([sys.executable, str(script), "--losses", str(out)], cwd=tmp, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("backend", ["torch", pytest.param("keras", marks=pytest.mark.slow)])
@pytest.mark.parametrize("case", list(TARGETS))
def test_targets_as_one_column_or_one_hot_rows(tmp_path, case, backend):
    """npz targets of shape (n, 1), or one-hot rows for categorical_crossentropy: dlc takes one label per
    sample from them; the script took them as they were (torch: an IndexError in the loss or metrics, one-hot
    rows one-hot encoded again; keras: a shape error for sparse labels)."""
    from dlc.compiler import compile_file

    stored, loss = TARGETS[case]
    binary = loss == "binary_crossentropy"
    _write_targets(tmp_path / "targets.npz", stored, binary)
    spec = tmp_path / "s.dlspec"
    spec.write_text(NPZ_SPEC.format(units=1 if binary else 3, activation="sigmoid" if binary else "softmax",
                                    loss=loss))
    script = tmp_path / f"s_{backend}.py"
    script.write_text(_emit(spec, backend))
    theirs = _script_losses(script, tmp_path)
    mine = _losses(compile_file(spec).raise_for_errors(), tmp_path, backend)
    assert len(theirs) == len(mine) > 0
    assert np.array_equal(np.array(theirs), np.array(mine))


def test_spec_file_name_is_escaped_in_the_docstring(tmp_path):
    """A spec file named with a backslash escape (\\N) or a triple quote gave a script that was a
    SyntaxError; the docstring now reads the name as it is, and the data path is the file's."""
    folder = tmp_path / "it's \"q\" ü"
    folder.mkdir()
    rows = "".join(f"{i % 3},{i % 5},{i % 2}\n" for i in range(20))
    (folder / "d'a\"ta.csv").write_text("a,b,label\n" + rows)
    spec = folder / 'sp\\N{x}"""q.dlspec'
    text = NPZ_SPEC.format(units=1, activation="sigmoid", loss="binary_crossentropy")
    text = text.replace('npz("targets.npz")', 'csv("d\'a\\"ta.csv", target="label")')
    spec.write_text(text.replace("(5)", "(2)"))
    for backend in ("torch", "keras"):
        text = _emit(spec, backend)
        assert_standalone(text, spec)
        doc = ast.get_docstring(ast.parse(text))
        assert doc.splitlines()[0] == f"emit_targets: train the model of {spec.name} with " \
            f"{'PyTorch' if backend == 'torch' else 'Keras'}."
        assert repr(str(folder / "d'a\"ta.csv")) in text


@pytest.mark.parametrize("restore_best", [False, True])
def test_scripts_pass_the_linter(tmp_path, restore_best):
    """No unused or undefined name in a script: early stopping without restore_best assigned a best_weights
    it never read (ruff F841); and imports in isort's order (I001: from-imports of one module on two lines,
    the standard library out of order)."""
    _write_targets(tmp_path / "targets.npz", "column", False)
    spec = tmp_path / "s.dlspec"
    text = NPZ_SPEC.format(units=3, activation="softmax", loss="sparse_categorical_crossentropy")
    if restore_best:
        text = text.replace("patience=0)", "patience=0, restore_best=true)")
    spec.write_text(text)
    scripts = []
    for backend in ("torch", "keras"):
        scripts.append(tmp_path / f"s_{backend}.py")
        scripts[-1].write_text(_emit(spec, backend))
    ruff = ROOT / ".venv" / "bin" / "ruff"
    if not ruff.exists():
        pytest.skip("ruff is not installed in .venv")
    proc = subprocess.run([str(ruff), "check", "--no-cache", "--isolated", "--select", "E9,F,I",
                           *map(str, scripts)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
