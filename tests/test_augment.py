"""Augmentation: seeded per epoch, the documented semantics, training batches only, equal on both backends."""

from pathlib import Path

import numpy as np

from dlc.compiler import compile_text
from dlc.compiler.spec import Crop, Flip, Shift
from dlc.runtime.augment import augment

SPEC = """
model aug {
  seed: 1
  data {
    source: digits
    normalize: minmax
    split: holdout(val=0.2)
    augment: [flip(horizontal=true), shift(0.125), crop(8, padding=1)]
  }
  input: (8, 8, 1)
  layers {
    Conv2D(4, (3, 3), padding=same, activation=relu)
    Flatten()
    Dropout(0.2)
    Dense(10, activation=softmax)
  }
  loss: categorical_crossentropy
  metrics: [accuracy]
  optimizer: Adam(lr=0.003)
  train {
    epochs: 2
    batch_size: 128
  }
}
"""


def _imgs(n=64):
    return np.random.default_rng(0).random((n, 8, 8, 1))


def test_seeded_per_epoch():
    ops = [Flip(), Shift(fraction=0.25), Crop(size=8, padding=2)]
    x = _imgs()
    a, b, c = augment(x, ops, 5, 0), augment(x, ops, 5, 0), augment(x, ops, 5, 1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == x.shape and not np.shares_memory(a, x)


def test_flip_mirrors_about_half():
    x = _imgs(400)
    y = augment(x, [Flip(horizontal=True)], 3, 0)
    flipped = [np.array_equal(y[i], x[i, :, ::-1]) and not np.array_equal(y[i], x[i]) for i in range(len(x))]
    kept = [np.array_equal(y[i], x[i]) for i in range(len(x))]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 150 < sum(flipped) < 250


def test_shift_moves_whole_pixels_and_fills_zeros():
    x = np.ones((200, 8, 8, 1))
    y = augment(x, [Shift(fraction=0.25)], 2, 0)
    zeros = (y == 0).reshape(200, -1).sum(axis=1)
    assert zeros.max() > 0 and set(np.unique(y)) <= {0.0, 1.0}
    assert zeros.max() <= 8 * 8 - 6 * 6  # at most 2 rows and 2 columns shifted out


def test_crop_keeps_size():
    x = np.ones((50, 8, 8, 1))
    y = augment(x, [Crop(size=8, padding=2)], 4, 0)
    assert y.shape == x.shape and (y == 0).any()


def _offsets(x, y, candidates):
    """The (dy, dx) of `candidates(img, dy, dx)` that gives each output image (exactly one each)."""
    found = []
    for i in range(len(x)):
        hits = [(dy, dx) for dy, dx, img in candidates(x[i]) if np.array_equal(img, y[i])]
        assert len(hits) == 1, (i, hits)
        found.append(hits[0])
    return found


def test_crop_takes_every_window_of_the_padded_image():
    """crop(8, padding=2): a uniformly placed 8x8 window of the zero-padded 12x12 image, offsets 0..4."""
    x = _imgs(300) + 1.0  # no zeros of its own

    def windows(img):
        padded = np.pad(img, ((2, 2), (2, 2), (0, 0)))
        return [(dy, dx, padded[dy:dy + 8, dx:dx + 8]) for dy in range(5) for dx in range(5)]

    found = _offsets(x, augment(x, [Crop(size=8, padding=2)], 4, 0), windows)
    assert {dy for dy, _ in found} == set(range(5)) and {dx for _, dx in found} == set(range(5))


def test_shift_takes_every_offset_up_to_the_fraction():
    """shift(0.25) on 8x8: whole-pixel moves of -2..2 rows and -2..2 columns, zeros shifted in."""
    x = _imgs(300) + 1.0

    def moved(img):
        out = []
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                m = np.zeros_like(img)
                for r in range(8):
                    for c in range(8):
                        if 0 <= r - dy < 8 and 0 <= c - dx < 8:
                            m[r, c] = img[r - dy, c - dx]
                out.append((dy, dx, m))
        return out

    found = _offsets(x, augment(x, [Shift(fraction=0.25)], 2, 0), moved)
    assert {dy for dy, _ in found} == set(range(-2, 3)) and {dx for _, dx in found} == set(range(-2, 3))


def test_vertical_flip_mirrors_top_to_bottom():
    x = _imgs(400)
    y = augment(x, [Flip(horizontal=False, vertical=True)], 3, 0)
    flipped = [np.array_equal(y[i], x[i, ::-1]) for i in range(len(x))]
    kept = [np.array_equal(y[i], x[i]) for i in range(len(x))]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 150 < sum(flipped) < 250


def test_training_only_and_equal_on_both_backends():
    from dlc.runtime.compare import compare_spec

    r = compile_text(SPEC)
    assert r.ok, r.render()
    c = compare_spec(r.spec, Path("."), steps=20, dtype="float64")
    assert c.passed, c.reasons
    assert c.max_abs_loss_diff <= 1e-10


def test_validation_is_not_augmented():
    from dlc.backends import session_class
    from dlc.reference.weights import initial_weights
    from dlc.runtime.data import prepare
    from dlc.runtime.loop import evaluate, train

    spec = compile_text(SPEC).spec
    plain = spec.model_copy(update={"data": spec.data.model_copy(update={"augment": []})})
    data = prepare(spec, Path("."))
    s = session_class("torch")(spec, dtype="float64", device="cpu", weights=initial_weights(spec))
    train(s, spec, data, epochs=1)
    w = s.get_weights()
    t = session_class("torch")(plain, dtype="float64", device="cpu", weights=w)
    a = evaluate(s, spec, s.load_data(data.val.x, data.val.y), 128)
    b = evaluate(t, plain, t.load_data(data.val.x, data.val.y), 128)
    assert a == b


def test_augment_errors():
    bad = SPEC.replace("crop(8, padding=1)", "crop(6, padding=1)")
    r = compile_text(bad)
    assert not r.ok and "crop(6, ...) must keep the image size 8x8" in r.render()
    (err,) = r.diagnostics.errors  # the caret under the crop call, not the whole augment list
    line = bad.splitlines()[err.span.line - 1]
    assert line[err.span.col - 1:err.span.end_col - 1] == "crop(6, padding=1)"
    flat = SPEC.replace("input: (8, 8, 1)", "input: (64)").replace("Conv2D(4, (3, 3), padding=same, "
                                                                    "activation=relu)", "Dense(8)")
    r = compile_text(flat)
    assert not r.ok and "augment applies to image data" in r.render()
