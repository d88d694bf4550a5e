"""Checks of the features and the normalisation: finite values, statistics fitted on the training part (whole
or a chunk at a time, bit for bit the same), inputs the model's dtype can hold."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dlc.compiler.checkshared import layout_refusal
from dlc.compiler.csvtable import nonfinite_wording
from dlc.compiler.spec import Spec
from dlc.runtime.data.base import DataError, Rows, Samples


def check_finite_features(flat: np.ndarray, s: Samples) -> None:
    """Missing (nan) or infinite values would only show up later as a nan loss; name them now."""
    rows = chunk_rows(flat)
    if all(np.isfinite(flat[lo:lo + rows]).all() for lo in range(0, len(flat), rows)):
        return  # one pass, a chunk at a time: no copy of the data
    bad = ~np.isfinite(flat)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise nonfinite_features(s, int(bad.sum()), int(row), int(col))


def nonfinite_features(s: Samples, count: int, row: int, col: int) -> DataError:
    """The error for `count` missing or infinite feature values, the first at sample `row`, feature `col`
    (from 0): one wording for the data read whole, read as it goes (stream.py) and `dlc check`'s."""
    return DataError(f"{s.where}: {nonfinite_wording(count, s.row(row), col + 1)}")


def check_sample_shape(spec: Spec, sample: tuple[int, ...], where: str) -> None:
    """Samples of shape `sample` the input takes: as many values, in a layout a reshape does not scramble
    (layout_refusal: dlc check's E303), for the data read whole and read as it goes (stream.py)."""
    need, got = math.prod(spec.input), math.prod(sample)
    if got != need:
        raise DataError(f"{where}: samples have {got} features, input {tuple(spec.input)} needs {need}")
    if (refusal := layout_refusal(sample, tuple(spec.input))) is not None:
        raise DataError(f"{where}: {refusal}")


def check_finite_targets(s: Samples) -> None:
    if s.y.dtype.kind == "f" and not np.all(np.isfinite(s.y)):
        row = int(np.flatnonzero(~np.isfinite(s.y.reshape(len(s.y), -1)).any(axis=1))[0])
        raise DataError(f"{s.where}: a target is missing or not finite (the first in {s.row(row)})")


@dataclass(frozen=True)
class BadValue:
    """The first value of an array that a model cannot take (first_out_of_range): where, what, and why."""

    index: tuple[int, ...]  # () for a 0-d array
    value: float
    limit: float

    @property
    def why(self) -> str:
        return "not finite" if not math.isfinite(self.value) else f"beyond ±{self.limit:.3g}"


def dtype_limit(dtype: str) -> float:
    """The largest magnitude a float dtype holds: inputs and weights beyond it overflow in the model."""
    return float(np.finfo(dtype).max)


def first_out_of_range(x: np.ndarray, limit: float) -> BadValue | None:
    """The first value of `x` (in C order) that is not finite or beyond ±`limit`, else None: the one check
    behind the data path's inputs (DataError naming the sample and feature) and dlc.api's inputs and weights
    (ValueError naming the index), each wording its own error."""
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(x) | (np.abs(x) > limit)
    if not bad.any():
        return None
    index = tuple(int(i) for i in np.argwhere(bad)[0]) if bad.ndim else ()
    return BadValue(index, float(x[index]), limit)


def check_model_inputs(spec: Spec, flat: np.ndarray, where: str, row) -> None:
    """Normalised inputs the model can take: finite in its dtype (1e308 is a float64 but overflows float32 or
    a normalisation), and whole-number indices 0..input_dim-1 for an Embedding that reads them (a larger one
    is an index error inside the backend). `row(i)` names sample i."""
    bad_value = first_out_of_range(flat, dtype_limit(spec.dtype))
    if bad_value is not None:
        i, j = bad_value.index
        raise DataError(f"{where}: {row(i)}, feature {j + 1} is {bad_value.value:.3g} after normalize: "
                        f"{data_normalize(spec)}, beyond what {spec.dtype} holds (±{bad_value.limit:.3g}); "
                        "rescale that feature")
    vocab = spec.input_vocabulary()
    if vocab is not None:
        bad = (flat != np.trunc(flat)) | (flat < 0) | (flat >= vocab)
        if bad.any():
            i, j = (int(v) for v in np.argwhere(bad)[0])
            hint = "" if data_normalize(spec) == "none" else " (normalize: none keeps token indices whole)"
            raise DataError(f"{where}: {row(i)}, feature {j + 1} is {flat[i, j]:g}, but the first layer, "
                            f"Embedding({vocab}, ...), takes token indices: whole numbers 0..{vocab - 1}"
                            + hint)


def data_normalize(spec: Spec) -> str:
    return spec.data.normalize if spec.data is not None else "none"


def check_statistics(spec: Spec, shift: np.ndarray | None, scale: np.ndarray | None, where: str) -> None:
    """Statistics that overflowed (features near 1e308) would scale every value to 0 or nan, silently."""
    if shift is None or scale is None:
        return
    bad = ~(np.isfinite(shift) & np.isfinite(scale))
    if bad.any():
        j = int(np.argmax(bad))
        raise DataError(f"{where}: normalize: {data_normalize(spec)} overflows on feature {j + 1} (its "
                        "values are too large to average); rescale that feature")


def normalizer(how: str, fit: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(shift, scale) per feature: standard = mean, std; minmax = min, range; constant features scale 1."""
    if how == "standard":
        mu, sd = fit.mean(axis=0), fit.std(axis=0)
        return mu, np.where(sd > 0, sd, 1.0)
    if how == "minmax":
        lo, hi = fit.min(axis=0), fit.max(axis=0)
        return lo, np.where(hi > lo, hi - lo, 1.0)
    return None, None


def normalized(x: np.ndarray, shift: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(x - shift) / scale in float64, as a new array: the one normalisation arithmetic, shared by the
    in-memory, in-place and streamed paths so that they stay bit for bit the same."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        out = x.astype(np.float64)
        out -= shift
        out /= scale
    return out


CHUNK_BYTES = 1 << 24  # the float64 working set of the data path's chunked passes


def chunk_rows(x: np.ndarray | Rows) -> int:
    """Rows per chunk of the chunked passes over x (at least one)."""
    return max(1, CHUNK_BYTES // (8 * max(1, math.prod(x.shape[1:]))))


def streamed_normalizer(how: str, x: np.ndarray | Rows, rows: np.ndarray, chunk: int | None = None):
    """normalizer(how, x[rows].astype(np.float64)), bit for bit, a chunk of rows at a time (no copy of the
    data): numpy sums a 2-D array over axis 0 row after row, so each chunk's rows are added to the running
    sums in the same order (tests/test_data_path.py checks the equality; x needs 2 or more columns)."""
    if how not in ("standard", "minmax"):
        return None, None
    chunk = chunk or chunk_rows(x)

    def chunks():
        for lo in range(0, len(rows), chunk):
            yield x[rows[lo:lo + chunk]].astype(np.float64)

    if how == "minmax":
        parts = chunks()
        first = next(parts)
        lo_, hi_ = first.min(axis=0), first.max(axis=0)
        for c in parts:
            lo_, hi_ = np.minimum(lo_, c.min(axis=0)), np.maximum(hi_, c.max(axis=0))
        return lo_, np.where(hi_ > lo_, hi_ - lo_, 1.0)
    n = len(rows)

    def running_sum(parts):
        total = None
        for c in parts:
            total = c.sum(axis=0) if total is None else np.concatenate([total[None], c]).sum(axis=0)
        return total

    mu = np.true_divide(running_sum(chunks()), n)

    def squares():
        for c in chunks():
            c -= mu
            yield np.multiply(c, c, out=c)

    sd = np.sqrt(np.true_divide(running_sum(squares()), n))
    return mu, np.where(sd > 0, sd, 1.0)
