"""specs/mnist/*: MNIST from local IDX (plain or gzipped) or mnist.npz files; tiny files made here."""

import gzip
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlc.runtime.data import DataError, read_mnist

from conftest import ROOT


def _images(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n).astype(np.uint8)
    x = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(y):  # a learnable bright bar per class
        x[i, 2 + 2 * label: 4 + 2 * label, 4:24] = 250
    return x, y


def _idx(path: Path, arr: np.ndarray, gz: bool):
    header = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = header + arr.tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def write_idx_folder(folder: Path, gz: bool, n_train=300, n_test=100):
    folder.mkdir(parents=True, exist_ok=True)
    xt, yt = _images(n_train, 0)
    xs, ys = _images(n_test, 1)
    _idx(folder / "train-images-idx3-ubyte", xt, gz)
    _idx(folder / "train-labels-idx1-ubyte", yt, gz)
    _idx(folder / "t10k-images-idx3-ubyte", xs, gz)
    _idx(folder / "t10k-labels-idx1-ubyte", ys, gz)
    return np.concatenate([xt, xs]), np.concatenate([yt, ys])


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx(tmp_path, gz):
    x, y = write_idx_folder(tmp_path, gz)
    gx, gy = read_mnist(tmp_path)
    assert gx.shape == (400, 784)
    np.testing.assert_array_equal(gx, x.reshape(400, -1))
    np.testing.assert_array_equal(gy, y)


def test_read_npz(tmp_path):
    xt, yt = _images(50, 0)
    xs, ys = _images(20, 1)
    np.savez(tmp_path / "mnist.npz", x_train=xt, y_train=yt, x_test=xs, y_test=ys)
    gx, gy = read_mnist(tmp_path)
    assert gx.shape == (70, 784) and gy.tolist() == list(yt) + list(ys)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(DataError, match="cannot find MNIST file .*train-images-idx3-ubyte"):
        read_mnist(tmp_path)
    write_idx_folder(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"junk")
    with pytest.raises(DataError, match="not an IDX file"):
        read_mnist(tmp_path)


def _raw_idx(path: Path, arr: np.ndarray, kind: int = 8) -> None:
    head = struct.pack(">BBBB", 0, 0, kind, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    path.write_bytes(head + arr.astype(np.uint8).tobytes())


@pytest.mark.parametrize("case, want", [
    ("sizes", "t10k-images-idx3-ubyte holds samples of shape (5, 5), but train-images-idx3-ubyte of shape "
              "(28, 28); they must be one size"),
    ("labels2d", "t10k-labels-idx1-ubyte: 2 dimension(s), but MNIST's labels (one per image) have 1"),
    ("count", "t10k-labels-idx1-ubyte holds labels of shape (99,), but t10k-images-idx3-ubyte has 100 "
              "samples: one label per sample is needed"),
    ("float32", "t10k-images-idx3-ubyte: IDX type 0x0D (float32) is not read; MNIST's files hold unsigned "
                "bytes (type 0x08)"),
    ("gzip", "t10k-images-idx3-ubyte.gz: a damaged gzip file"),
    ("short", "t10k-images-idx3-ubyte: truncated IDX file (78,300 of 78,400 values)"),
])
def test_mismatched_or_damaged_idx_files_are_one_line_naming_the_file(tmp_path, case, want):
    write_idx_folder(tmp_path, gz=False)
    images = tmp_path / "t10k-images-idx3-ubyte"
    x = np.zeros((100, 28, 28), np.uint8)
    if case == "sizes":
        _raw_idx(images, np.zeros((100, 5, 5)))
    elif case == "labels2d":
        _raw_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros((100, 1)))
    elif case == "count":
        _raw_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(99))
    elif case == "float32":
        _raw_idx(images, x, kind=0x0D)
    elif case == "gzip":
        data = images.read_bytes()
        images.unlink()
        images.with_name(images.name + ".gz").write_bytes(gzip.compress(data)[:-20])  # cut short
    else:
        images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(DataError) as e:
        read_mnist(tmp_path)
    assert want in str(e.value) and "\n" not in str(e.value)


def test_mismatched_npz_arrays_are_one_line(tmp_path):
    xt, yt = _images(50, 0)
    np.savez(tmp_path / "mnist.npz", x_train=xt, y_train=yt, x_test=xt[:, :5, :5], y_test=yt)
    with pytest.raises(DataError, match=r"x_test holds samples of shape \(5, 5\), but x_train of shape"):
        read_mnist(tmp_path)


def _spec_copy(tmp_path: Path, name: str) -> Path:
    """The shipped spec, pointed at a tiny MNIST folder beside it."""
    text = (ROOT / "specs" / "mnist" / f"{name}.dlspec").read_text()
    assert 'mnist("~/.keras/datasets")' in text
    spec = tmp_path / f"{name}.dlspec"
    spec.write_text(text.replace('mnist("~/.keras/datasets")', 'mnist("mnist")'))
    return spec


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_mnist_mlp_spec_runs(tmp_path, backend):
    write_idx_folder(tmp_path / "mnist", gz=True)
    spec = _spec_copy(tmp_path, "mnist_mlp")
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "dlc", "run", str(spec), "--backend", backend, "--epochs", "3",
                        "--out", str(out), "--quiet"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "metrics.json").read_text())["test"]["accuracy"] > 0.5


def test_mnist_cnn_spec_checks(tmp_path):
    write_idx_folder(tmp_path / "mnist", gz=False)
    spec = _spec_copy(tmp_path, "mnist_cnn")
    r = subprocess.run([sys.executable, "-m", "dlc", "check", str(spec)], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert "1,199,882" in r.stdout  # Keras' parameter count for its mnist_cnn example


def test_missing_mnist_folder_is_a_spec_error(tmp_path):
    spec = _spec_copy(tmp_path, "mnist_mlp")
    r = subprocess.run([sys.executable, "-m", "dlc", "check", str(spec)], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 2 and "cannot read data file 'mnist': no such folder" in r.stderr
    shutil.rmtree(tmp_path, ignore_errors=True)
