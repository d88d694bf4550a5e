"""Image augmentation for training batches, drawn from dlc's seeded stream: numpy on the host, once per epoch,
so both backends see bit-identical augmented images (evaluation data is never augmented).

Images are channels-last (N, H, W, C). Per sample and per epoch:
- flip(horizontal, vertical): each enabled axis is mirrored with probability 1/2;
- shift(fraction): a translation by whole pixels, uniform in [-round(fraction·H), round(fraction·H)] rows and
  likewise columns; pixels shifted in are 0;
- crop(size, padding): zero-pad by `padding` on every side, then a uniformly placed size×size window
  (size must equal the image's height and width: the classic pad-and-crop).
Operations apply in the order the spec lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from dlc.reference.rng import STREAM_AUGMENT, stream


def _shift(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(img)
    h, w = img.shape[:2]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = img[ys, xs]
    return out


def flip(out: np.ndarray, rng: np.random.Generator, horizontal: bool = True, vertical: bool = False) -> None:
    """Mirror each image's enabled axes with probability 1/2, in place."""
    n = len(out)
    if horizontal:
        m = rng.random(n) < 0.5
        out[m] = out[m][:, :, ::-1]
    if vertical:
        m = rng.random(n) < 0.5
        out[m] = out[m][:, ::-1, :]


def shift(out: np.ndarray, rng: np.random.Generator, fraction: float) -> None:
    """Translate each image by whole pixels, uniform in ±round(fraction·size) per axis, in place."""
    n, h, w = out.shape[:3]
    my, mx = round(fraction * h), round(fraction * w)
    dys = rng.integers(-my, my + 1, n)
    dxs = rng.integers(-mx, mx + 1, n)
    for i in range(n):
        if dys[i] or dxs[i]:
            out[i] = _shift(out[i], int(dys[i]), int(dxs[i]))


def crop(out: np.ndarray, rng: np.random.Generator, size: int, padding: int = 0) -> None:
    """Zero-pad by `padding`, then take a uniformly placed size×size window of each image, in place."""
    n = len(out)
    padded = np.pad(out, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    ys = rng.integers(0, padded.shape[1] - size + 1, n)
    xs = rng.integers(0, padded.shape[2] - size + 1, n)
    for i in range(n):
        out[i] = padded[i, ys[i]:ys[i] + size, xs[i]:xs[i] + size]


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


def augment(x: np.ndarray, ops: list, seed: int, epoch: int) -> np.ndarray:
    return apply_augmentations(x, [augmentation(op) for op in ops], seed, epoch)
