"""Image augmentation for training batches, drawn from dlc's seeded stream: numpy on the host, once per epoch,
so both backends see bit-identical augmented images (evaluation data is never augmented).

Images are channels-last (N, H, W, C). Per sample and per epoch:
- flip(horizontal, vertical): each enabled axis is mirrored with probability 1/2;
- shift(fraction): a translation by whole pixels, uniform in [-round(fraction·H), round(fraction·H)] rows and
  likewise columns; pixels shifted in are 0;
- crop(size, padding): zero-pad by `padding` on every side, then a uniformly placed window of `size` (one
  number: size×size; or (height, width)), the image's own size: the classic pad-and-crop.
Operations apply in the order the spec lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from dlc.backends.session import StreamedFeatures
from dlc.reference.rng import STREAM_AUGMENT, stream


def _shift(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(img)
    h, w = img.shape[:2]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = img[ys, xs]
    return out


# Each operation is its draws (the random numbers of every sample of the epoch, taken from the stream in a
# fixed order, independent of the images) and their application to images: the whole training part at once,
# or (streamed data) the rows of one batch with their samples' draws; both give the same images.


def flip_draws(rng: np.random.Generator, shape: tuple, horizontal: bool = True, vertical: bool = False):
    """(horizontal mask, vertical mask), None for an axis not flipped."""
    n = shape[0]
    return (rng.random(n) < 0.5 if horizontal else None, rng.random(n) < 0.5 if vertical else None)


def flip_apply(out: np.ndarray, draws) -> None:
    h, v = draws
    if h is not None:
        out[h] = out[h][:, :, ::-1]
    if v is not None:
        out[v] = out[v][:, ::-1, :]


def flip(out: np.ndarray, rng: np.random.Generator, horizontal: bool = True, vertical: bool = False) -> None:
    """Mirror each image's enabled axes with probability 1/2, in place."""
    flip_apply(out, flip_draws(rng, out.shape, horizontal, vertical))


def shift_draws(rng: np.random.Generator, shape: tuple, fraction: float):
    """(row shifts, column shifts), uniform in ±round(fraction·size)."""
    n, h, w = shape[:3]
    my, mx = round(fraction * h), round(fraction * w)
    return rng.integers(-my, my + 1, n), rng.integers(-mx, mx + 1, n)


def shift_apply(out: np.ndarray, draws) -> None:
    dys, dxs = draws
    for i in range(len(out)):
        if dys[i] or dxs[i]:
            out[i] = _shift(out[i], int(dys[i]), int(dxs[i]))


def shift(out: np.ndarray, rng: np.random.Generator, fraction: float) -> None:
    """Translate each image by whole pixels, uniform in ±round(fraction·size) per axis, in place."""
    shift_apply(out, shift_draws(rng, out.shape, fraction))


def crop_draws(rng: np.random.Generator, shape: tuple, size, padding: int = 0):
    """(window tops, window lefts) in the padded images; `size` one number (square) or (height, width)."""
    n = shape[0]
    sh, sw = (size, size) if isinstance(size, int) else size
    return (rng.integers(0, shape[1] + 2 * padding - sh + 1, n),
            rng.integers(0, shape[2] + 2 * padding - sw + 1, n), size, padding)


def crop_apply(out: np.ndarray, draws) -> None:
    ys, xs, size, padding = draws
    sh, sw = (size, size) if isinstance(size, int) else size
    padded = np.pad(out, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    for i in range(len(out)):
        out[i] = padded[i, ys[i]:ys[i] + sh, xs[i]:xs[i] + sw]


def crop(out: np.ndarray, rng: np.random.Generator, size, padding: int = 0) -> None:
    """Zero-pad by `padding`, then take a uniformly placed window of `size` (one number: square) of each
    image, in place."""
    crop_apply(out, crop_draws(rng, out.shape, size, padding))


def apply_augmentations(x: np.ndarray, ops: list, seed: int, epoch: int) -> np.ndarray:
    """`ops`: functions (images, rng) applied in order to a copy of `x`, with epoch `epoch`'s stream."""
    if not ops:
        return x
    rng = stream(seed, STREAM_AUGMENT, epoch)
    out = np.array(x, copy=True)
    for op in ops:
        op(out, rng)
    return out


# each (images, rng, its fields) -> None, changing the images in place
AUGMENTATIONS: dict[str, Callable[..., None]] = {"flip": flip, "shift": shift, "crop": crop}


def augmentation(op) -> partial:
    """An IR augmentation as the function (images, rng) it runs (its fields are the function's arguments)."""
    return partial(AUGMENTATIONS[op.name], **op.model_dump(exclude={"name"}))


def augment(x: np.ndarray | StreamedFeatures, ops: list, seed: int,
            epoch: int) -> np.ndarray | StreamedFeatures:
    """x with epoch `epoch`'s augmentations; a streamed x (rows read on request) gives AugmentedRows, which
    augments each batch as it is read."""
    if isinstance(x, np.ndarray):
        return apply_augmentations(x, [augmentation(op) for op in ops], seed, epoch)
    return AugmentedRows(x, ops, seed, epoch) if ops else x


# each operation's (draws, apply), for augmenting a batch at a time
DRAWN: dict[str, tuple[Callable[..., tuple], Callable[[np.ndarray, tuple], None]]] = {
    "flip": (flip_draws, flip_apply), "shift": (shift_draws, shift_apply), "crop": (crop_draws, crop_apply)}


def _rows_of(draws: tuple, idx: np.ndarray) -> tuple:
    """The draws of the samples `idx` (per-sample arrays indexed, other values kept)."""
    return tuple(d[idx] if isinstance(d, np.ndarray) else d for d in draws)


class AugmentedRows:
    """A streamed training part (rows read on request: `take(indices)`, an npy source's StreamedRows) with
    epoch `epoch`'s augmentations, applied to each batch as it is read: every sample's draws are taken up
    front, in the order augment() takes them, so a batch's images are those rows of augment()'s output."""

    streamed = True

    def __init__(self, rows, ops: list, seed: int, epoch: int):
        self.rows = rows
        self.dtype, self.shape = rows.dtype, tuple(rows.shape)
        rng = stream(seed, STREAM_AUGMENT, epoch)
        self.steps = []
        for op in ops:
            draw, apply = DRAWN[op.name]
            self.steps.append((apply, draw(rng, self.shape, **op.model_dump(exclude={"name"}))))

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def take(self, indices) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        out = np.array(self.rows.take(idx), copy=True)
        for apply, draws in self.steps:
            apply(out, _rows_of(draws, idx))
        return out

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            return self.take(np.arange(len(self))[key])
        if isinstance(key, (int, np.integer)):
            return self.take([int(key)])[0]
        return self.take(key)
