"""Identical windows give bit-identical outputs in the torch lowering of every 2-D convolution (float64).

TensorFlow computes every output position of Conv2D, DepthwiseConv2D, SeparableConv2D and Conv2DTranspose with
the same arithmetic, so two equal windows (constant areas, tiled or integer-valued images, a token repeated
through an Embedding and a Reshape) give exactly equal outputs: an exact tie, which a max-pool after the
convolution breaks towards the first position. F.conv2d in float64 on the CPU (im2col and an MKL product;
grouped for the depthwise kernel) rounds some such positions 1 ulp apart, and so does a plain matmul whose
number of output columns is not a multiple of 4: the max-pool's gradient then goes to another position, and
Embedding → Reshape → Conv2D / DepthwiseConv2D / SeparableConv2D → max-pool parted from Keras at step 1 under
Adam, Adagrad and RMSprop (relative loss differences 0.004 to 0.17 within 90 steps). On inputs like these
(1,059 groups of equal windows for Conv2D, 627 for DepthwiseConv2D, 418 for SeparableConv2D, 3,019 for
Conv2DTranspose), F.conv2d broke 49, 14 and 14 groups, F.conv_transpose2d none; so float64 computes the first
three with conv_layers.TiedConv and Conv2DTranspose still with F.conv_transpose2d (float32 keeps F.conv2d,
whose oneDNN kernel broke none).

Each case is lowered through the registry, as the torch backend lowers it, given random float64 weights, and
run on inputs whose windows repeat; the outputs of each group of positions with bit-equal windows (including
the zero padding; for the transposed convolution, the same input pixels under the same kernel taps) must be
bit-equal in every channel."""

from __future__ import annotations

import collections

import numpy as np
import pytest

pytest.importorskip("torch")

from dlc.backends.lowering import Context, evaluate, load_target
from dlc.compiler import layers as L
from dlc.compiler.spec import LayerInfo
from dlc.reference.semantics import same_pad

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CASES = [
    (L.Conv2D(filters=5, kernel_size=(3, 3), padding="same"), (12, 12, 3)),
    (L.Conv2D(filters=8, kernel_size=(3, 3), padding="valid"), (12, 12, 1)),
    (L.Conv2D(filters=3, kernel_size=(5, 5), strides=(2, 2), padding="same"), (12, 12, 3)),
    (L.Conv2D(filters=3, kernel_size=(2, 3), strides=(1, 2), padding="valid"), (16, 16, 8)),
    (L.Conv2D(filters=32, kernel_size=(3, 3), padding="same"), (12, 12, 1)),
    (L.Conv2D(filters=8, kernel_size=(3, 3), padding="valid"), (13, 11, 2)),  # (396 positions: not 8k)
    (L.Conv2D(filters=16, kernel_size=(3, 3), padding="same"), (9, 9, 3)),
    (L.DepthwiseConv2D(kernel_size=(3, 3), strides=(2, 2), padding="same", depth_multiplier=2), (16, 16, 8)),
    (L.DepthwiseConv2D(kernel_size=(3, 3), padding="same"), (12, 12, 3)),
    (L.DepthwiseConv2D(kernel_size=(5, 5), padding="valid", depth_multiplier=3), (12, 12, 2)),
    (L.SeparableConv2D(filters=16, kernel_size=(3, 3), strides=(2, 2), padding="same", depth_multiplier=2),
     (16, 16, 8)),
    (L.SeparableConv2D(filters=5, kernel_size=(3, 3), padding="same"), (12, 12, 3)),
    (L.SeparableConv2D(filters=8, kernel_size=(2, 2), padding="valid"), (10, 9, 3)),
    (L.Conv2DTranspose(filters=3, kernel_size=(3, 3), strides=(2, 2), padding="same"), (12, 12, 3)),
    (L.Conv2DTranspose(filters=4, kernel_size=(3, 3), padding="valid"), (12, 12, 1)),
    (L.Conv2DTranspose(filters=5, kernel_size=(4, 4), strides=(2, 2), padding="valid"), (10, 10, 2)),
]


def _id(case) -> str:
    layer, shape = case
    extra = f"-f{layer.filters}" if hasattr(layer, "filters") else f"-m{layer.depth_multiplier}"
    return (f"{layer.kind}{extra}-k{'x'.join(map(str, L._pair(layer.kernel_size)))}"
            f"-s{'x'.join(map(str, L._pair(layer.strides)))}-{layer.padding}-{'x'.join(map(str, shape))}")


def _module(layer, shape, rng, dtype: str = "float64"):
    """The torch module the registry lowers `layer` to, in `dtype`, with random weights (by IR name)."""
    import torch

    from dlc.backends.torch import library

    info = LayerInfo(0, layer, shape, layer.out_shape(shape), layer.weights(shape), 0)
    load_target("torch")
    expr = Context("torch", None).for_layer(info).lower(layer)
    module = evaluate(expr, library.namespace()).to(getattr(torch, dtype))
    with torch.no_grad():
        for w in info.weights:
            getattr(module, w.name).copy_(torch.as_tensor(0.3 * rng.standard_normal(w.shape)))
    return module, info.out_shape


def _inputs(shape, rng) -> np.ndarray:
    """Two images of a few large constant areas and two tiled with a 4x4 pattern, of random normal values
    (small integers would hide a difference in rounding: their products are exact)."""
    h, w, c = shape
    v = rng.standard_normal((4, c))
    flat = np.zeros((2, h, w, c))
    flat[:, : h // 2] = v[0]
    flat[:, h // 2:, : w // 3] = v[1]
    flat[1, :, w // 2:] = v[2]
    tile = rng.standard_normal((2, 4, 4, c))
    tiled = np.tile(tile, (1, -(-h // 4), -(-w // 4), 1))[:, :h, :w]
    return np.concatenate([flat, tiled])


def _window_keys(layer, x: np.ndarray, out_shape) -> np.ndarray:
    """For every output position (n, row, col): the bytes of what it is computed from."""
    (kh, kw), (sh, sw) = L._pair(layer.kernel_size), L._pair(layer.strides)
    n, h, w, _ = x.shape
    keys = np.empty((n,) + tuple(out_shape[:2]), dtype=object)
    if isinstance(layer, L.Conv2DTranspose):
        from dlc.backends.torch.lower import transpose_crop

        axes = zip((h, w), (kh, kw), (sh, sw), out_shape[:2], strict=True)
        (top, _), (left, _) = (transpose_crop(size, k, s, o, layer.padding) for size, k, s, o in axes)
        for idx in np.ndindex(keys.shape):
            i, fy, fx = idx[0], idx[1] - top, idx[2] - left  # the position in the full transposed output
            parts = []
            for ky in range(kh):
                for kx in range(kw):
                    (iy, ry), (ix, rx) = divmod(fy - ky, sh), divmod(fx - kx, sw)
                    inside = ry == 0 and rx == 0 and 0 <= iy < h and 0 <= ix < w
                    parts.append(x[i, iy, ix].tobytes() if inside else b"-")
            keys[idx] = b"|".join(parts)
        return keys
    if layer.padding == "same":
        (top, bottom), (left, right) = same_pad(h, kh, sh), same_pad(w, kw, sw)
        x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    for i, r, c in np.ndindex(keys.shape):
        keys[i, r, c] = x[i, r * sh:r * sh + kh, c * sw:c * sw + kw].tobytes()
    return keys


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_identical_windows_give_identical_outputs(case):
    import torch

    layer, shape = case
    rng = np.random.default_rng(len(_id(case)))
    module, out_shape = _module(layer, shape, rng)
    x = _inputs(shape, rng)
    with torch.no_grad():
        y = module(torch.as_tensor(x)).numpy()
    assert y.shape[1:] == tuple(out_shape)
    groups = collections.defaultdict(list)
    for idx, key in np.ndenumerate(_window_keys(layer, x, out_shape)):
        groups[key].append(idx)
    repeated = [g for g in groups.values() if len(g) > 1]
    assert sum(len(g) - 1 for g in repeated) >= 50, "the inputs repeat too few windows to test anything"
    broken = [g for g in repeated if not all(np.array_equal(y[g[0]], y[p]) for p in g[1:])]
    worst = max((float(np.abs(y[g[0]] - y[p]).max()) for g in broken for p in g[1:]), default=0.0)
    assert not broken, (f"{len(broken)} of {len(repeated)} groups of identical windows give unequal outputs "
                        f"(up to {worst:.3g} apart), e.g. positions {broken[0][:4]}")


def test_rows_matmul_keeps_equal_rows_equal():
    """conv_layers.rows_matmul (Conv2D's and SeparableConv2D's product, float64) on shapes where a plain
    matmul rounds equal rows apart: row counts that are not a multiple of 8, column counts that are not a
    multiple of 4; rows of random normals (rows of small integers would hide it: their products are exact)."""
    import torch

    from dlc.backends.torch.conv_layers import rows_matmul

    rng = np.random.default_rng(0)
    plain_broken = 0
    for dtype in (torch.float64, torch.float32):
        for rows, depth in ((398, 8), (50, 9), (37, 48), (1352, 27)):
            row = torch.as_tensor(rng.standard_normal(depth), dtype=dtype)
            a = row.expand(rows, depth).contiguous()
            for cols in (1, 3, 5, 6, 7, 12, 16, 33):
                w = torch.as_tensor(rng.standard_normal((depth, cols)), dtype=dtype)
                y = rows_matmul(a.reshape(2, rows // 2, depth) if rows % 2 == 0 else a, w)
                assert y.shape == ((2, rows // 2) if rows % 2 == 0 else (rows,)) + (cols,)
                y = y.reshape(rows, cols)
                assert bool((y == y[0]).all()), (dtype, rows, depth, cols)
                assert torch.allclose(y, a @ w, rtol=1e-5 if dtype == torch.float32 else 1e-12)
                plain_broken += bool(((a @ w) != (a @ w)[0]).any())
    assert plain_broken > 0, "no shape here breaks a plain matmul's ties: the test tests nothing"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("filters", [3, 5, 7, 16, 64])
def test_conv1d_identical_windows_give_identical_outputs(filters, dtype):
    """Conv1D (layers.Conv1D; float64: windows × kernel through rows_matmul, float32: F.conv2d on a 1×L
    image, as Conv2D): a sequence of a few tokens repeated, as an Embedding gives it; with a plain product,
    odd filter counts broke 57 to 78 of ~177 groups (float64)."""
    import torch

    layer, shape = L.Conv1D(filters=filters, kernel_size=3, padding="same"), (45, 6)
    rng = np.random.default_rng(filters)
    module, out_shape = _module(layer, shape, rng, dtype)
    tokens = rng.standard_normal((3, shape[1]))
    x = tokens[rng.integers(0, 3, (4, shape[0]))]  # (4 sequences of 45 steps, each step one of 3 vectors)
    with torch.no_grad():
        y = module(torch.as_tensor(x, dtype=getattr(torch, dtype))).numpy()
    padded = np.pad(x, ((0, 0), (1, 1), (0, 0)))
    groups = collections.defaultdict(list)
    for i, t in np.ndindex(y.shape[:2]):
        groups[padded[i, t:t + 3].tobytes()].append((i, t))
    repeated = [g for g in groups.values() if len(g) > 1]
    assert sum(len(g) - 1 for g in repeated) >= 50
    broken = [g for g in repeated if not all(np.array_equal(y[g[0]], y[p]) for p in g[1:])]
    assert not broken, f"{len(broken)} of {len(repeated)} groups of identical windows give unequal outputs"
