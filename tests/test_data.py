"""dlc/runtime/data/: bundled sets, csv/npz/mnist files, seeded (stratified) holdout splits, normalisation
fitted on the training part only, targets shaped for the loss, and clear DataErrors for data that cannot be
used."""

from __future__ import annotations

import gzip
import struct
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dlc.compiler import compile_file
from dlc.runtime.data import DataError, load_raw, prepare, read_mnist

LOSS_OUT = {
    "categorical": ("categorical_crossentropy", "softmax"),
    "sparse": ("sparse_categorical_crossentropy", "softmax"),
    "binary": ("binary_crossentropy", "sigmoid"),
    "regression": ("mse", "linear"),
}


def make_spec(tmp_path: Path, source: str, input_shape: str, units: int, kind: str = "categorical",
              normalize: str = "standard", split: str = "holdout(val=0.2, test=0.2, stratify=true)",
              seed: int = 1, check: bool = True):
    loss, act = LOSS_OUT[kind]
    text = textwrap.dedent(f"""\
        model m {{
          seed: {seed}
          data {{
            source: {source}
            normalize: {normalize}
            split: {split}
          }}
          input: {input_shape}
          layers {{
            Flatten()
            Dense({units}, activation={act})
          }}
          loss: {loss}
          optimizer: Adam(lr=0.01)
        }}
        """)
    path = tmp_path / f"m{seed}.dlspec"
    path.write_text(text)
    result = compile_file(str(path))
    if check:
        assert result.ok, result.render()
    return result.spec


# ------------------------------------------------------------------------------------------------ bundled

BUNDLED = [("digits", "(64)", 10, 1797), ("iris", "(4)", 3, 150), ("wine", "(13)", 3, 178),
           ("breast_cancer", "(30)", 2, 569)]


@pytest.mark.parametrize(("name", "shape", "classes", "n"), BUNDLED, ids=[b[0] for b in BUNDLED])
def test_bundled_classification_sets(tmp_path, name, shape, classes, n):
    spec = make_spec(tmp_path, name, shape, classes)
    d = prepare(spec, tmp_path)
    assert d.num_classes == classes
    sizes = [len(d.train.x), len(d.val.x), len(d.test.x)]
    assert sum(sizes) == n
    assert abs(len(d.test.x) - 0.2 * n) <= 1 and abs(len(d.val.x) - 0.2 * n) <= 1  # fractions of the whole
    assert d.train.y.shape == (len(d.train.x), classes)  # one-hot for categorical_crossentropy
    assert np.array_equal(d.train.y.argmax(1), d.train.labels)


def test_diabetes_is_regression_with_float_targets(tmp_path):
    spec = make_spec(tmp_path, "diabetes", "(10)", 1, kind="regression", split="holdout(val=0.2, test=0.2)")
    d = prepare(spec, tmp_path)
    assert d.num_classes is None and d.train.labels is None
    assert d.train.y.shape == (len(d.train.x), 1) and d.train.y.dtype == np.float64
    assert d.train.y.min() >= 25 and d.train.y.max() <= 346  # the target is not normalised


def test_images_are_shaped_to_the_input(tmp_path):
    spec = make_spec(tmp_path, "digits", "(8, 8, 1)", 10, normalize="none")
    d = prepare(spec, tmp_path)
    assert d.train.x.shape[1:] == (8, 8, 1)
    raw, _ = load_raw(spec, tmp_path)
    # the 64 values of a sample become its 8x8 image, row by row
    assert any(np.array_equal(d.train.x[0].reshape(-1), r) for r in raw)


@pytest.mark.parametrize(("kind", "shape", "dtype"),
                         [("sparse", (None,), np.int64), ("binary", (None, 1), np.float64)])
def test_targets_follow_the_loss(tmp_path, kind, shape, dtype):
    units = 1 if kind == "binary" else 2
    d = prepare(make_spec(tmp_path, "breast_cancer", "(30)", units, kind=kind), tmp_path)
    assert d.train.y.ndim == len(shape) and d.train.y.dtype == dtype
    assert np.array_equal(d.train.y.reshape(-1).astype(np.int64), d.train.labels)


# ------------------------------------------------------------------------------------------------ splits


def test_split_is_seeded_disjoint_and_complete(tmp_path):
    a = prepare(make_spec(tmp_path, "iris", "(4)", 3, normalize="none", seed=1), tmp_path)
    b = prepare(make_spec(tmp_path, "iris", "(4)", 3, normalize="none", seed=1), tmp_path)
    c = prepare(make_spec(tmp_path, "iris", "(4)", 3, normalize="none", seed=2), tmp_path)
    for part in ("train", "val", "test"):
        assert np.array_equal(getattr(a, part).x, getattr(b, part).x)  # same seed, same split
    assert not np.array_equal(a.test.x, c.test.x)  # another seed, another split
    rows = [tuple(r) for p in (a.train, a.val, a.test) for r in p.x]
    raw, _ = load_raw(make_spec(tmp_path, "iris", "(4)", 3, seed=1), tmp_path)
    assert sorted(rows) == sorted(tuple(r) for r in raw)  # every sample in exactly one part


def test_stratified_split_keeps_class_proportions(tmp_path):
    d = prepare(make_spec(tmp_path, "breast_cancer", "(30)", 2), tmp_path)
    overall = np.bincount(np.concatenate([d.train.labels, d.val.labels, d.test.labels])) / 569
    for part in (d.train, d.val, d.test):
        share = np.bincount(part.labels) / len(part.labels)
        assert np.allclose(share, overall, atol=1.5 / len(part.labels))


def test_no_validation_or_test_part(tmp_path):
    d = prepare(make_spec(tmp_path, "iris", "(4)", 3, split="holdout(val=0.2)"), tmp_path)
    assert d.test is None and len(d.val.x) == 30 and len(d.train.x) == 120


# ------------------------------------------------------------------------------------------------
# normalisation


def test_standard_uses_training_statistics_only(tmp_path):
    d = prepare(make_spec(tmp_path, "wine", "(13)", 3, normalize="standard"), tmp_path)
    assert np.allclose(d.train.x.mean(0), 0, atol=1e-9)
    assert np.allclose(d.train.x.std(0), 1, atol=1e-9)
    assert not np.allclose(d.test.x.mean(0), 0, atol=1e-3)  # fitted on train, applied to test: no leakage
    assert np.allclose(d.shift.shape, (13,))


def test_minmax_uses_training_statistics_only(tmp_path):
    d = prepare(make_spec(tmp_path, "digits", "(64)", 10, normalize="minmax"), tmp_path)
    live = d.train.x.max(0) > d.train.x.min(0)  # digits has always-blank pixels
    assert np.allclose(d.train.x.min(0)[live], 0) and np.allclose(d.train.x.max(0)[live], 1)
    assert np.all(d.train.x[:, ~live] == 0)  # constant features are shifted, not divided by zero
    assert np.isfinite(d.test.x).all()
    # wine's features do not start at 0 (digits' pixels do): (x - min) / (max - min), fitted on train
    w = prepare(make_spec(tmp_path, "wine", "(13)", 3, normalize="minmax"), tmp_path)
    assert np.all(w.shift > 0)
    np.testing.assert_allclose(w.train.x.min(0), 0, atol=1e-12)
    np.testing.assert_allclose(w.train.x.max(0), 1, atol=1e-12)


def test_none_keeps_the_raw_values(tmp_path):
    d = prepare(make_spec(tmp_path, "digits", "(64)", 10, normalize="none"), tmp_path)
    assert d.train.x.max() == 16 and d.train.x.min() == 0


# ------------------------------------------------------------------------------------------------ files


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n")
    return path


def test_csv_with_named_target_and_string_labels(tmp_path):
    rows = ["label,a,b"] + [f"{'yes' if i % 3 else 'no'},{i},{i * 2}" for i in range(30)]
    write_csv(tmp_path / "d.csv", rows)
    spec = make_spec(tmp_path, 'csv("d.csv", target="label")', "(2)", 2, normalize="none",
                     split="holdout(val=0.2)")
    x, y = load_raw(spec, tmp_path)
    assert x.shape == (30, 2) and list(x[4]) == [4, 8]  # the target column is taken out, wherever it is
    assert list(y[:3]) == [0, 1, 1]  # names sorted: no=0, yes=1


def test_csv_target_defaults_to_the_last_column(tmp_path):
    write_csv(tmp_path / "d.csv", ["a,b,y"] + [f"{i},{-i},{i % 2}" for i in range(20)])
    spec = make_spec(tmp_path, 'csv("d.csv")', "(2)", 2, normalize="none", split="holdout(val=0.2)")
    x, y = load_raw(spec, tmp_path)
    assert x.shape == (20, 2) and list(y[:4]) == [0, 1, 0, 1]


def test_csv_problems_are_data_errors_naming_the_file(tmp_path):
    csv = write_csv(tmp_path / "d.csv", ["a,b,y"] + [f"{i},{-i},{i % 2}" for i in range(20)])
    spec = make_spec(tmp_path, 'csv("d.csv", target="y")', "(2)", 2, split="holdout(val=0.2)")
    csv.unlink()  # gone after the spec was checked
    with pytest.raises(DataError, match=r"cannot read data file .*d\.csv"):
        prepare(spec, tmp_path)
    write_csv(csv, ["a,b,y"] + [f"{i},x{i},{i % 2}" for i in range(20)])
    with pytest.raises(DataError, match=r"d\.csv.*not a number"):
        prepare(spec, tmp_path)
    write_csv(csv, ["a,b,y"] + [f"{i},{'nan' if i == 4 else i},{i % 2}" for i in range(20)])
    with pytest.raises(DataError, match=r"d\.csv: 1 feature value.*row 6, feature 2"):  # row 1: the header
        prepare(spec, tmp_path)
    write_csv(csv, ["a,b,y"] + [f"{i},{i},{i % 3}" for i in range(20)])
    with pytest.raises(DataError, match=r"label 2 in row 4, but binary_crossentropy needs labels 0 and 1"):
        prepare(make_spec(tmp_path, 'csv("d.csv", target="y")', "(2)", 1, kind="binary",
                          split="holdout(val=0.2)", check=False), tmp_path)  # (dlc check says it too: E302)
    write_csv(csv, ["a,b,y"] + [f"{i},{i},{i / 7}" for i in range(20)])
    with pytest.raises(DataError, match=r"integer class labels.*regression loss"):
        prepare(spec, tmp_path)


def test_csv_with_the_wrong_number_of_features(tmp_path):
    write_csv(tmp_path / "d.csv", ["a,b,y"] + [f"{i},{i},{i % 2}" for i in range(20)])
    spec = make_spec(tmp_path, 'csv("d.csv")', "(2)", 2, split="holdout(val=0.2)")  # `dlc check` compares too
    write_csv(tmp_path / "d.csv", ["a,b,c,y"] + [f"{i},{i},{i},{i % 2}" for i in range(20)])  # changed since
    with pytest.raises(DataError, match=r"samples have 3 features, input \(2,\) needs 2"):
        prepare(spec, tmp_path)


def test_npz_with_custom_array_names(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", images=rng.random((40, 4, 4)), labels=np.arange(40) % 4)
    spec = make_spec(tmp_path, 'npz("d.npz", x="images", y="labels")', "(4, 4, 1)", 4, normalize="none",
                     split="holdout(val=0.25, test=0.25, stratify=true)")
    d = prepare(spec, tmp_path)
    assert d.train.x.shape == (20, 4, 4, 1) and d.num_classes == 4
    np.savez(tmp_path / "d.npz", x=rng.random((40, 4, 4)), y=np.arange(40) % 4)
    with pytest.raises(DataError, match=r"no array 'images' \(arrays: x, y\)"):
        prepare(spec, tmp_path)


def _idx(path: Path, arr: np.ndarray) -> None:
    header = b"\0\0\x08" + bytes([arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def test_mnist_from_idx_files_and_npz(tmp_path):
    rng = np.random.default_rng(0)
    xtr, ytr = rng.integers(0, 256, (6, 28, 28)), np.arange(6) % 10
    xte, yte = rng.integers(0, 256, (4, 28, 28)), np.arange(4) % 10
    folder = tmp_path / "mnist"
    folder.mkdir()
    _idx(folder / "train-images-idx3-ubyte.gz", xtr)
    _idx(folder / "train-labels-idx1-ubyte.gz", ytr)
    _idx(folder / "t10k-images-idx3-ubyte", xte)
    _idx(folder / "t10k-labels-idx1-ubyte", yte)
    x, y = read_mnist(folder)
    assert x.shape == (10, 784) and np.array_equal(x[7], xte[1].reshape(-1)) and list(y) == [*ytr, *yte]
    np.savez(tmp_path / "mnist.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    x2, y2 = read_mnist(tmp_path / "mnist.npz")
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        read_mnist(folder)
