"""`dlc run` as a user runs it (a subprocess: `python -m dlc run ...`): the run directory and its files, the
--out/--epochs/--seed options, the console output, runtime failures (one line, exit 1, run directory kept),
spec errors at run time (exit 2), and a saved model that loads again and predicts what was measured."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT

BACKENDS = ("torch", "keras")
MODEL_FILE = {"torch": "model.pt", "keras": "model.keras"}
EPOCHS = 4
SEED = 5

SPEC = """\
# cli.dlspec — a small spec for the command-line tests
model cli {
  seed: 1
  data {
    source: iris
    normalize: standard
    split: holdout(val=0.2, test=0.2, stratify=true)
  }
  input: (4)
  layers {
    Dense(16, activation=relu, kernel_reg=l2(1e-4))
    Dropout(0.2)
    Dense(3, activation=softmax)
  }
  loss: categorical_crossentropy
  metrics: [accuracy, precision]
  optimizer: OPTIMIZER
  schedule: SCHEDULE
  train {
    epochs: 40
    batch_size: 16
  }
}
"""


def write_spec(folder: Path, name: str = "cli", optimizer: str = "Adam(lr=0.01)",
               schedule: str = "step(every=2, factor=0.5)") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.dlspec"
    path.write_text(SPEC.replace("OPTIMIZER", optimizer).replace("SCHEDULE", schedule)
                    .replace("model cli", f"model {name}"))
    return path


def dlc(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="80")
    env.pop("DLC_TRACEBACK", None)
    return subprocess.run([sys.executable, "-m", "dlc", *args], check=False, capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=300)


def dlc_lines(stderr: str) -> list[str]:
    """stderr without the C++ log lines TensorFlow prints on its own (absl/oneDNN notices)."""
    noise = re.compile(r"^(WARNING: All log messages before absl|[IWE]\d{4} |To enable the following "
                       r"instructions)")
    return [line for line in stderr.splitlines() if not noise.match(line)]


def run_in_process(*argv: str) -> tuple[int, str, str]:
    from dlc.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    """One short run per backend: `dlc run cli.dlspec --backend B --out DIR --epochs 4 --seed 5`."""
    base = tmp_path_factory.mktemp("cli_runs")
    spec = write_spec(base / "spec")
    out = {}
    for backend in BACKENDS:
        run = base / f"run-{backend}"
        proc = dlc("run", str(spec), "--backend", backend, "--out", str(run), "--epochs", str(EPOCHS),
                   "--seed", str(SEED))
        assert proc.returncode == 0, proc.stderr
        out[backend] = (run, proc)
    return out


# ------------------------------------------------------------------------------------------ the run directory


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_directory_has_every_file(runs, backend):
    run, proc = runs[backend]
    assert proc.stdout.strip() == str(run)  # --out is used as given; stdout is the run directory alone
    names = {p.name for p in run.iterdir()}
    assert names >= {"cli.dlspec", "ir.json", "history.csv", "history.json", "curves.png", "metrics.json",
                     "env.json", MODEL_FILE[backend], "model.json"}, names
    assert not [n for n in names if n.endswith(".tmp")]
    assert (run / "cli.dlspec").read_text() == write_spec(run.parent / "spec").read_text()
    ir = json.loads((run / "ir.json").read_text())
    # overrides recorded
    assert ir["name"] == "cli" and ir["seed"] == SEED and ir["train"]["epochs"] == EPOCHS
    env = json.loads((run / "env.json").read_text())
    assert env["backend"] == backend and env["python"] and env["numpy"]
    assert env["torch" if backend == "torch" else "tensorflow"]
    model = json.loads((run / "model.json").read_text())
    assert model["backend"] == backend and model["file"] == MODEL_FILE[backend] and model["load"]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_history_has_per_epoch_loss_metrics_and_lr(runs, backend):
    run, _ = runs[backend]
    hist = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in hist] == list(range(1, EPOCHS + 1))  # --epochs 4 overrides the spec's 40
    for row in hist:
        for key in ("loss", "val_loss", "accuracy", "val_accuracy", "precision", "val_precision", "lr",
                    "time_s"):
            assert isinstance(row[key], float) and np.isfinite(row[key]), (key, row)
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["val_precision"] <= 1
    assert [r["lr"] for r in hist] == pytest.approx([0.01, 0.01, 0.005, 0.005])  # step(every=2, factor=0.5)
    assert hist[-1]["loss"] < hist[0]["loss"]
    with open(run / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == EPOCHS
    assert set(rows[0]) == set(hist[0])
    for row, ref in zip(rows, hist, strict=True):
        for key, value in ref.items():
            assert float(row[key]) == pytest.approx(value, rel=1e-12), key


@pytest.mark.parametrize("backend", BACKENDS)
def test_metrics_json_has_train_val_test(runs, backend):
    run, _ = runs[backend]
    m = json.loads((run / "metrics.json").read_text())
    for part in ("train", "val", "test"):
        assert set(m[part]) == {"loss", "accuracy", "precision"}, m[part]
        assert 0 <= m[part]["accuracy"] <= 1
    assert m["epochs_run"] == EPOCHS and m["stopped_early"] is False


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG, after checking its signature and the CRC of every chunk up to IEND."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        chunks.append(kind)
        pos += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND" and b"IDAT" in chunks
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("backend", BACKENDS)
def test_curves_png_is_a_valid_png(runs, backend):
    run, _ = runs[backend]
    w, h = _png_size(run / "curves.png")
    assert w >= 400 and h >= 250
    import matplotlib.image

    img = matplotlib.image.imread(run / "curves.png")
    assert img.shape[:2] == (h, w) and img.std() > 0.01  # decodes, and is not blank
    rgb = np.round(img[..., :3] * 255).astype(int)
    for name, colour in (("train", (0x1F, 0x77, 0xB4)), ("validation", (0xFF, 0x7F, 0x0E))):
        assert (np.abs(rgb - colour).sum(axis=-1) < 30).sum() > 200, f"no {name} curve (tab colour {colour})"


def test_curves_draw_each_quantity_train_and_validation(tmp_path, monkeypatch):
    """curves.png's panels, read from the figure: loss and each metric (train, validation), the lr, the best
    epoch marked."""
    import matplotlib.figure

    from dlc.runtime.rundir import plot_curves

    figures = []
    save = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda fig, *a, **kw: (figures.append(fig), save(fig, *a, **kw)))
    rows = [{"epoch": e, "loss": 1.0 / e, "accuracy": 0.5 + e / 20, "val_loss": 1.2 / e,
             "val_accuracy": 0.45 + e / 20, "lr": 0.1 * 0.5 ** (e // 2), "time_s": 0.1, "samples_per_s": 9.0}
            for e in range(1, 6)]
    plot_curves(tmp_path, rows, "t", best_epoch=4)
    assert (tmp_path / "curves.png").is_file() and len(figures) == 1
    axes = {ax.get_title(): ax for ax in figures[0].axes if ax.get_visible()}
    assert list(axes) == ["loss", "accuracy", "learning rate"]
    for key in ("loss", "accuracy"):
        lines = {line.get_label(): line for line in axes[key].get_lines()}
        assert list(lines["train"].get_xdata()) == [1, 2, 3, 4, 5]
        assert list(lines["train"].get_ydata()) == [r[key] for r in rows]
        assert list(lines["validation"].get_ydata()) == [r[f"val_{key}"] for r in rows]
        assert list(lines["best epoch (4)"].get_xdata()) == [4, 4]
    lr_lines = axes["learning rate"].get_lines()
    assert any(list(line.get_ydata()) == [r["lr"] for r in rows] for line in lr_lines)


@pytest.mark.parametrize("backend", BACKENDS)
def test_console_output_is_compact_and_ends_with_test_metrics(runs, backend):
    _, proc = runs[backend]
    lines = [line for line in dlc_lines(proc.stderr) if line.strip()]
    assert lines[0].startswith("cli on ") and backend in lines[0]
    assert lines[1].startswith("run directory: ")
    rows = [line for line in lines if re.match(rf"^\s*\d+/{EPOCHS}\s", line)]
    assert len(rows) == EPOCHS  # one row per epoch
    assert all(len(line) <= 80 for line in lines[2:]), "the epoch table must fit 80 columns"
    assert re.match(r"^final\s+loss\s+accuracy\s+precision$", lines[-4])
    assert [line.split()[0] for line in lines[-3:]] == ["train", "val", "test"]
    m = json.loads((runs[backend][0] / "metrics.json").read_text())
    assert float(lines[-1].split()[2]) == pytest.approx(m["test"]["accuracy"], abs=1e-4)


# ------------------------------------------------------------------------------------------ seeds


def _losses(run: Path) -> list[tuple[float, float]]:
    return [(r["loss"], r["val_loss"]) for r in json.loads((run / "history.json").read_text())]


@pytest.mark.parametrize("backend", [
    "torch", pytest.param("keras", marks=pytest.mark.slow)])  # keras: also in test_backends_agree_on_examples
def test_same_seed_gives_identical_history(runs, backend, tmp_path):
    run, _ = runs[backend]
    again = tmp_path / "again"
    proc = dlc("run", str(run / "cli.dlspec"), "--backend", backend, "--out", str(again), "--epochs",
               str(EPOCHS), "--seed", str(SEED), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert _losses(again) == _losses(run)  # bit for bit
    assert json.loads((again / "metrics.json").read_text())["test"] == \
        json.loads((run / "metrics.json").read_text())["test"]


def test_other_seed_gives_other_history_in_a_fresh_run_directory(runs, tmp_path):
    """Without --out, each run gets a fresh runs/<model>-<backend>-<time>/ under the working directory."""
    run, _ = runs["torch"]
    proc = dlc("run", str(run / "cli.dlspec"), "--backend", "torch", "--epochs", str(EPOCHS), "--seed",
               str(SEED + 1), "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    other = tmp_path / proc.stdout.strip()
    assert other.parent == tmp_path / "runs" and other.name.startswith("cli-torch-")
    assert (other / "metrics.json").is_file()
    assert _losses(other) != _losses(run)
    assert json.loads((other / "ir.json").read_text())["seed"] == SEED + 1


# ------------------------------------------------------------------------------------------ failures


def _one_error_line(stderr: str) -> str:
    lines = [line for line in dlc_lines(stderr) if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("dlc: error: ")
    return lines[0]


@pytest.mark.parametrize("backend", ["torch", pytest.param("keras", marks=pytest.mark.slow)])
def test_divergence_is_one_line_exit_1_and_keeps_the_history(tmp_path, backend):
    # lr 0.01 for the first epoch, then x1000 per epoch: the loss becomes nan after a few good epochs
    spec = write_spec(tmp_path, "diverge", optimizer="SGD(lr=0.01)",
                      schedule="exponential(rate=1000, every=1)")
    run = tmp_path / "run"
    proc = dlc("run", str(spec), "--backend", backend, "--out", str(run), "--quiet")
    assert proc.returncode == 1, proc.stderr
    line = _one_error_line(proc.stderr)
    m = re.search(r"loss became (nan|inf) at epoch (\d+), step (\d+)", line)
    assert m, line
    assert "smaller learning rate" in line and "lr=0.001" in line
    assert str(run) in line  # says where the run directory is
    epoch = int(m[2])
    assert epoch >= 2
    hist = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in hist] == list(range(1, epoch))  # every epoch before the failing one
    assert all(np.isfinite(r["loss"]) for r in hist)
    assert (run / "history.csv").is_file() and (run / "curves.png").is_file()
    assert not (run / "metrics.json").exists() and not (run / MODEL_FILE[backend]).exists()


def test_divergence_in_the_first_epoch(tmp_path):
    spec = write_spec(tmp_path, "diverge", optimizer="SGD(lr=1e4)", schedule="step(every=10)")
    run = tmp_path / "run"
    rc, _, err = run_in_process("run", str(spec), "--backend", "torch", "--out", str(run), "--quiet")
    assert rc == 1
    line = _one_error_line(err)
    assert re.search(r"at epoch 1, step \d+ \(learning rate 10000\).*smaller learning rate.*"
                     r"lr=0.1 or lr=0.01", line), line
    assert json.loads((run / "history.json").read_text()) == []  # the run directory is there, empty history


CSV_SPEC = """\
model from_csv {
  data {
    source: csv("points.csv", target="label")
    split: holdout(val=0.25, test=0.25)
  }
  input: (2)
  layers {
    Dense(1, activation=sigmoid)
  }
  loss: binary_crossentropy
  optimizer: Adam(lr=0.05)
  train {
    epochs: 2
    batch_size: 8
  }
}
"""


def _csv_spec(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    lines = ["a,b,label"] + [f"{a:.4f},{b:.4f},{int(a + b > 0)}" for a, b in x]
    (folder / "points.csv").write_text("\n".join(lines) + "\n")
    spec = folder / "from_csv.dlspec"
    spec.write_text(CSV_SPEC)
    return spec


def test_csv_deleted_after_check_is_a_spec_error_naming_the_file(tmp_path):
    spec = _csv_spec(tmp_path)
    assert dlc("check", "-q", str(spec)).returncode == 0
    (tmp_path / "points.csv").unlink()
    proc = dlc("run", str(spec), "--backend", "torch", "--out", str(tmp_path / "run"))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "points.csv" in proc.stderr and "from_csv.dlspec:3:" in proc.stderr
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written


def test_csv_vanishing_after_compile_is_one_line_exit_1(tmp_path, monkeypatch):
    """The file is there when `dlc run` compiles the spec and gone when the data is loaded."""
    from dlc.cli import run as run_command

    spec = _csv_spec(tmp_path)
    compile_then_delete = run_command.training_spec

    def training_spec(*a, **kw):
        out = compile_then_delete(*a, **kw)
        (tmp_path / "points.csv").unlink()
        return out

    monkeypatch.setattr(run_command, "training_spec", training_spec)
    rc, _, err = run_in_process("run", str(spec), "--backend", "torch", "--out", str(tmp_path / "run"))
    assert rc == 1
    line = _one_error_line(err)
    assert "points.csv" in line and "cannot read" in line


def test_bad_values_in_csv_are_named(tmp_path):
    spec = _csv_spec(tmp_path)
    text = (tmp_path / "points.csv").read_text().splitlines()
    text[3] = "nan,0.5,1"
    (tmp_path / "points.csv").write_text("\n".join(text) + "\n")
    rc, _, err = run_in_process("run", str(spec), "--backend", "torch", "--out", str(tmp_path / "run"))
    assert rc == 2  # (`dlc run` checks every cell of a small file first: E401 at the source)
    assert "points.csv" in err and "row 4, feature 1" in err  # as numbered in the file (row 1: the header)


def test_search_spaces_are_refused_by_run(tmp_path):
    path = tmp_path / "tuned.dlspec"
    path.write_text(textwrap.dedent("""\
        model tuned {
          data {
            source: iris
            split: holdout(val=0.2, test=0.2)
          }
          input: (4)
          layers {
            Dense(choice(8, 16), activation=relu)
            Dense(3, activation=softmax)
          }
          loss: categorical_crossentropy
          optimizer: Adam(lr=loguniform(1e-4, 1e-1))
          train {
            epochs: 3
          }
          search {
            method: random
            trials: 4
            objective: minimize val_loss
          }
        }
        """))
    proc = dlc("run", str(path), "--backend", "torch", "--out", str(tmp_path / "run"))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "search space" in proc.stderr and "dlc tune" in proc.stderr
    assert "tuned.dlspec:8:" in proc.stderr  # points at the first search space
    assert not (tmp_path / "run").exists()


def test_unknown_backend_and_missing_spec_are_usage_errors(tmp_path):
    proc = dlc("run", str(tmp_path / "nope.dlspec"), "--backend", "torch")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "nope.dlspec" in proc.stderr
    proc = dlc("run", str(tmp_path / "nope.dlspec"), "--backend", "jax")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------------ the saved model


def _test_split(run: Path):
    from dlc.compiler.spec import Spec
    from dlc.runtime.data import prepare

    spec = Spec.model_validate_json((run / "ir.json").read_text())  # ir.json is the run's exact spec
    return spec, prepare(spec, run).test


def test_torch_model_loads_into_a_fresh_session(runs):
    import torch

    from dlc.backends.torch.session import Session
    from dlc.runtime.loop import evaluate

    run, _ = runs["torch"]
    spec, test = _test_split(run)
    session = Session(spec, device="cpu")  # fresh weights
    before = session.predict(test.x)
    session.net.load_state_dict(torch.load(run / "model.pt", map_location="cpu"))
    probs = session.predict(test.x)
    assert not np.allclose(before, probs)
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)  # probabilities: the softmax is applied
    m = json.loads((run / "metrics.json").read_text())["test"]
    assert (probs.argmax(1) == test.labels).mean() == pytest.approx(m["accuracy"], abs=1e-9)
    again = evaluate(session, spec, session.load_data(test.x, test.y), spec.train.batch_size)
    assert again["loss"] == pytest.approx(m["loss"], rel=1e-5)


def test_keras_model_loads_with_load_model(runs):
    import keras

    import dlc.backends.keras.library  # noqa: F401 — registers dlc's custom Keras objects

    run, _ = runs["keras"]
    _, test = _test_split(run)
    model = keras.saving.load_model(run / "model.keras")
    probs = np.asarray(model.predict(test.x.astype("float32"), verbose=0), dtype=np.float64)
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    m = json.loads((run / "metrics.json").read_text())["test"]
    assert (probs.argmax(1) == test.labels).mean() == pytest.approx(m["accuracy"], abs=1e-9)
    loss = -np.mean(np.log(np.clip(probs[np.arange(len(probs)), test.labels], 1e-7, 1)))
    reg = m["loss"] - loss  # the l2 penalty is part of the reported loss: 1e-4 · Σ kernel² of the first Dense
    kernel = np.asarray(model.get_layer("dense_0").kernel.numpy(), dtype=np.float64)
    assert kernel.shape == (4, 16)
    assert reg == pytest.approx(1e-4 * float((kernel ** 2).sum()), rel=1e-3)


def test_both_saved_models_predict_the_same(runs):
    """Trained from the same weights on the same batches, the two saved models agree to float32 rounding."""
    import keras
    import torch

    import dlc.backends.keras.library  # noqa: F401
    from dlc.backends.torch.session import Session

    spec, test = _test_split(runs["torch"][0])
    session = Session(spec, device="cpu")
    session.net.load_state_dict(torch.load(runs["torch"][0] / "model.pt", map_location="cpu"))
    model = keras.saving.load_model(runs["keras"][0] / "model.keras")
    kp = np.asarray(model.predict(test.x.astype("float32"), verbose=0), dtype=np.float64)
    np.testing.assert_allclose(session.predict(test.x), kp, atol=1e-4)
