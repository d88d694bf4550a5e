"""The data path's speed and memory work must not move a single index or value: today's holdout and k-fold
indices are pinned here (hashes taken before the split stopped importing scikit-learn), and the float32,
in-place data path is checked against the float64 one, bit for bit."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from dlc.runtime.data import holdout_indices, kfold_indices


def _digest(parts) -> str:
    m = hashlib.sha256()
    for part in parts:
        for a in part:
            m.update(np.asarray(a, dtype=np.int64).tobytes())
            m.update(b"|")
    return m.hexdigest()[:16]


def _labels(n: int, k: int | None, s: int):
    return np.random.default_rng(s).integers(0, k, n) if k else None


# (n, classes, val, test, stratify, seed) -> digest of [(train, val, test)], as computed with scikit-learn's
# train_test_split (scikit-learn 1.x)
HOLDOUT = [
    ((150, 3, 0.1, 0.0, False, 42), "37339d2d6374689b"),
    ((150, 3, 0.2, 0.1, True, 7), "fb0b84cd1505ead1"),
    ((1000, None, 0.1, 0.0, False, 0), "e2e516b339931968"),
    ((1000, 10, 0.1, 0.2, True, 123), "edcbdb4f48731905"),
    ((50000, 10, 0.1, 0.0, False, 42), "85ef7a0f08584e6a"),
    ((50000, 10, 0.1, 0.0, True, 42), "ba3af472752010cf"),
    ((37, None, 0.3, 0.25, False, 5), "aca1b5851ec16511"),
    ((10, 2, 0.0, 0.5, False, 9), "7cc8a0eaf424f31a"),
    ((999, 4, 0.15, 0.0, True, 2**31), "505a3f2029aad0d2"),
]
# (n, classes, k, shuffle, stratify, test, seed) -> digest
KFOLD = [
    ((150, 3, 5, True, False, 0.0, 42), "81f11e52af672e58"),
    ((150, 3, 5, True, True, 0.0, 42), "9fea67bfe95639b7"),
    ((1000, None, 3, False, False, 0.1, 1), "210e90aa74ddd229"),
    ((1000, 10, 4, True, True, 0.2, 11), "385a6c56ae740cd2"),
    ((97, 2, 7, True, False, 0.0, 3), "ed2917c21d523aa0"),
    ((97, 2, 7, False, True, 0.0, 3), "562f7fdad5cc6f77"),
]


@pytest.mark.parametrize("case,digest", HOLDOUT)
def test_holdout_indices_pinned(case, digest):
    n, k, val, test, stratify, seed = case
    assert _digest(holdout_indices(n, _labels(n, k, n + seed), val, test, stratify, seed)) == digest


@pytest.mark.parametrize("case,digest", KFOLD)
def test_kfold_indices_pinned(case, digest):
    n, k, folds, shuffle, stratify, test, seed = case
    assert _digest(kfold_indices(n, _labels(n, k, n + seed), folds, shuffle, stratify, test, seed)) == digest


def test_splits_equal_scikit_learns():
    """The holdout and k-fold splits dlc computes itself give scikit-learn's indices exactly."""
    from sklearn.model_selection import KFold, train_test_split

    from dlc.runtime.data import holdout, kfold_splits

    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 3000))
        frac = float(rng.choice([0.1, 0.2, 0.25, 1 / 3, 0.5, 0.9, rng.uniform(0.01, 0.99)]))
        seed = int(rng.integers(0, 2**32))
        idx = np.sort(rng.choice(10 * n, n, replace=False))
        if math.ceil(frac * n) >= n:
            continue
        rest, held = train_test_split(idx, test_size=frac, random_state=seed)
        got = holdout(idx, frac, None, False, seed)
        assert np.array_equal(got[0], np.sort(rest)) and np.array_equal(got[1], np.sort(held))
        k = int(rng.integers(2, min(n, 12) + 1))
        for fold_seed in (None, seed):
            want = KFold(k, shuffle=fold_seed is not None, random_state=fold_seed).split(np.arange(n))
            for (tr, va), (gtr, gva) in zip(want, kfold_splits(n, k, fold_seed), strict=True):
                assert np.array_equal(tr, gtr) and np.array_equal(va, gva)


def test_a_plain_holdout_does_not_import_scikit_learn():
    import subprocess
    import sys

    code = ("import sys, numpy as np; from dlc.runtime.data import holdout_indices, kfold_indices; "
            "holdout_indices(1000, np.zeros(1000, int), 0.1, 0.1, False, 3); "
            "kfold_indices(1000, None, 5, True, False, 0.1, 3); print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("how", ["standard", "minmax"])
@pytest.mark.parametrize("shape,chunk", [((1000, 2), 7), ((513, 3), 64), ((300, 784), 50), ((97, 5), 1000)])
def test_streamed_statistics_equal_the_float64_ones(how, shape, chunk):
    from dlc.runtime.data import normalizer, streamed_normalizer

    rng = np.random.default_rng(shape[0])
    x32 = (rng.standard_normal(shape) * rng.uniform(0.1, 50, shape[1]) + rng.uniform(-5, 5, shape[1]))
    x32 = x32.astype(np.float32)
    x32[:, 1] = 3.0  # a constant feature
    rows = np.sort(rng.choice(shape[0], int(0.9 * shape[0]), replace=False))
    for x in (x32, x32.astype(np.float64)):
        want = normalizer(how, x.astype(np.float64)[rows])
        got = streamed_normalizer(how, x, rows, chunk)
        for a, b in zip(want, got, strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b)


def test_reorder_rows_in_place():
    from dlc.runtime.data import reorder_rows

    rng = np.random.default_rng(1)
    for n in (1, 2, 10, 101):
        x = rng.standard_normal((n, 3))
        perm = rng.permutation(n)
        a, b = np.sort(perm[: n // 2]), np.sort(perm[n // 2:])
        for order in (np.concatenate([a, b]), np.concatenate([b, a]), np.arange(n)):
            y = x.copy()
            reorder_rows(y, order, 3)
            assert np.array_equal(y, x[order])


@pytest.mark.parametrize("normalize", ["standard", "minmax", "none"])
@pytest.mark.parametrize("split", ["holdout(val=0.2, test=0.1)", "holdout(val=0.25, stratify=true)",
                                   "kfold(k=3, test=0.2)"])
@pytest.mark.parametrize("file_dtype", ["float32", "float64", "uint8"])
def test_in_place_data_path_gives_the_float64_values(tmp_path, normalize, split, file_dtype):
    """prepare(..., dtype=D) holds the data once, in place; its arrays are the float64 path's rounded to D."""
    from test_data import make_spec

    from dlc.runtime import data as D

    rng = np.random.default_rng(7)
    x = (rng.standard_normal((400, 6, 5)) * 40 + 100).clip(0, 255).astype(file_dtype)
    x[:, 0, 0] = 9  # a constant feature
    np.savez(tmp_path / "d.npz", x=x, y=rng.integers(0, 3, 400))
    spec = make_spec(tmp_path, 'npz("d.npz")', "(6, 5)", 3, normalize=normalize, split=split)
    from dlc.runtime.data import normalize as N

    old = N.CHUNK_BYTES
    N.CHUNK_BYTES = 8 * 30 * 17  # chunks of 17 rows: many chunks, one short
    try:
        want = D.prepare(spec, tmp_path)
        for dtype in ("float32", "float64"):
            got = D.prepare(spec, tmp_path, dtype=dtype)
            for part in ("train", "val", "test"):
                w, g = getattr(want, part), getattr(got, part)
                assert (w is None) == (g is None)
                if w is None:
                    continue
                assert g.x.dtype == (np.float32 if dtype == "float32" and file_dtype == "float32"
                                     else np.float64)
                assert np.array_equal(g.x.astype(dtype), w.x.astype(dtype))
                assert np.array_equal(g.y, w.y) and np.array_equal(g.labels, w.labels)
            for a, b in ((want.shift, got.shift), (want.scale, got.scale)):
                assert (a is None and b is None) or np.array_equal(a, b)
    finally:
        N.CHUNK_BYTES = old


@pytest.mark.parametrize("normalize", ["standard", "none"])
@pytest.mark.parametrize("file_dtype", ["float32", "float64"])
def test_folds_in_the_run_dtype_give_the_float64_values_one_fold_at_a_time(tmp_path, normalize, file_dtype):
    """folds(..., dtype=D), as `dlc cv` asks for them, are the float64 folds rounded to D; each fold is
    assembled when asked for (a copy normalised in place), so the data is never overwritten between folds."""
    from test_data import make_spec

    from dlc.runtime import data as D

    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 4, 3)).astype(file_dtype) * 5 + 2
    np.savez(tmp_path / "d.npz", x=x, y=rng.integers(0, 3, 300))
    spec = make_spec(tmp_path, 'npz("d.npz")', "(4, 3)", 3, normalize=normalize,
                     split="kfold(k=4, test=0.1)")
    want = D.folds(spec, tmp_path)
    got = D.folds(spec, tmp_path, dtype="float32")
    assert len(got) == len(want) == 4
    made = []
    original = D.dataset.assemble_in_place
    try:
        D.dataset.assemble_in_place = lambda *a: made.append(1) or original(*a)
        folds = D.folds(spec, tmp_path, dtype="float32")
        assert not made  # nothing is assembled before a fold is asked for
        folds[2]
        assert len(made) == 1
    finally:
        D.dataset.assemble_in_place = original
    for i in (0, 3, 1, 0):  # any order, twice: each fold from the data as read
        w, g = want[i], got[i]
        for part in ("train", "val", "test"):
            wp, gp = getattr(w, part), getattr(g, part)
            assert gp.x.dtype == np.dtype(file_dtype)
            assert np.array_equal(gp.x.astype("float32"), wp.x.astype("float32"))
            assert np.array_equal(gp.y, wp.y)
    with pytest.raises(IndexError):
        got[4]


@pytest.mark.parametrize("file_dtype", ["float32", "uint8"])
@pytest.mark.parametrize("compressed", [False, True])
def test_npz_features_are_read_aligned_and_held_once_by_keras(tmp_path, file_dtype, compressed):
    """An npz's features are read into a 64-byte-aligned buffer (and a conversion to float64 makes one), so
    the training part the data path hands over is the array the keras backend wraps without a copy: peak
    memory 1.16x the data instead of 2x (bench/bench_data.py)."""
    from test_data import make_spec

    from dlc.runtime import data as D

    rng = np.random.default_rng(3)
    x = (rng.random((300, 8, 8)) * 255).astype(file_dtype)
    save = np.savez_compressed if compressed else np.savez
    save(tmp_path / "d.npz", x=x, y=rng.integers(0, 3, 300))
    got, _ = D.read_npz(tmp_path / "d.npz", keep_float32=True)
    assert got.ctypes.data % 64 == 0 and np.array_equal(got, x) and got.flags.writeable
    spec = make_spec(tmp_path, 'npz("d.npz")', "(8, 8)", 3, normalize="standard", split="holdout(val=0.2)")
    data = D.prepare(spec, tmp_path, dtype="float32")
    assert data.train.x.ctypes.data % 64 == 0

    pytest.importorskip("tensorflow")
    from dlc.backends.keras.training import host_tensor

    tensor = host_tensor(data.train.x, "float32" if file_dtype == "float32" else "float64")
    data.train.x[0, 0, 0] = 12345.0  # (only a test changes the data under a tensor)
    assert float(tensor[0, 0, 0]) == 12345.0  # the same memory: no copy


def test_first_out_of_range_finds_the_first_bad_value():
    """The one finite-and-in-dtype check behind the data path's inputs and dlc.api's inputs and weights."""
    from dlc.runtime.data.normalize import dtype_limit, first_out_of_range

    f32 = dtype_limit("float32")
    assert f32 == float(np.finfo(np.float32).max)
    assert dtype_limit("float64") == float(np.finfo(np.float64).max)
    assert first_out_of_range(np.zeros((3, 2)), f32) is None
    x = np.array([[0.0, 1.0], [2.0, 1e39], [np.nan, np.inf]])
    bad = first_out_of_range(x, f32)
    assert bad is not None and bad.index == (1, 1) and bad.value == 1e39 and bad.why == "beyond ±3.4e+38"
    nan = first_out_of_range(x, math.inf)
    assert nan is not None and nan.index == (2, 0) and math.isnan(nan.value) and nan.why == "not finite"
    scalar = first_out_of_range(np.array(-np.inf), f32)
    assert scalar is not None and scalar.index == () and scalar.value == -math.inf


def test_both_callers_word_their_own_error_from_it():
    """check_model_inputs names the sample and feature (DataError), dlc.api the index (ValueError): the
    messages as they were before they shared the check."""
    from types import SimpleNamespace

    from dlc.api import _finite
    from dlc.runtime.data import DataError
    from dlc.runtime.data.normalize import check_model_inputs

    spec = SimpleNamespace(dtype="float32", data=SimpleNamespace(normalize="standard"),
                           input_vocabulary=lambda: None)
    flat = np.array([[0.0, 1.0], [3.0, -2e39]])
    with pytest.raises(DataError) as e:
        check_model_inputs(spec, flat, "d.csv", lambda i: f"row {i + 1}")
    assert str(e.value) == ("d.csv: row 2, feature 2 is -2e+39 after normalize: standard, beyond what "
                            "float32 holds (±3.4e+38); rescale that feature")
    check_model_inputs(spec, flat[:1], "d.csv", lambda i: f"row {i + 1}")  # (all fine: no error)
    with pytest.raises(ValueError) as v:
        _finite(flat, "the inputs", 3.4e38)
    assert str(v.value) == ("the inputs hold values that are not finite or beyond ±3.4e+38 (the first at "
                            "index (1, 1))")
    with pytest.raises(ValueError) as v:
        _finite(np.array(np.nan), "dense_0.bias", 1.0)
    assert str(v.value) == "dense_0.bias hold values that are not finite or beyond ±1"
