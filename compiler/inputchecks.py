"""The data's features as the model's input takes them, checked before training: an Embedding that reads the
input takes whole-number token indices (so normalisation must leave them whole, and the values a bundled set
or a small CSV file holds must lie in 0..input_dim-1), and an augmentation's crops must keep the image's size
with a padding smaller than the image. Apart from the checks of a source's files (sourcechecks.py) because
these are about what the first layer and the augmentation accept, whatever file the features come from."""

from __future__ import annotations

from pathlib import Path

from . import ast as A
from .checkshared import argument_span, find_assign, layer_span, positional_span, resolve_path
from .datarows import csv_feature_range
from .diagnostics import Diagnostics, Span
from .spec import BUNDLED_FIRST_FRACTION, BUNDLED_LARGEST_TOKEN, AugmentT, Bundled, Crop, Csv, Spec
from .wording import number_text


def check_augment(spec: Spec, augment: list[AugmentT], m: A.Model, d: Diagnostics) -> None:
    aug = find_assign(m, "augment", "data")
    where = aug.value.span if aug else None
    if len(spec.input) != 3:
        d.add("E303", "augment applies to image data; input must be (height, width, channels)", where)
        return
    h, w = spec.input[0], spec.input[1]
    written = aug.value.items if aug is not None and isinstance(aug.value, A.List) else []
    for i, op in enumerate(augment):
        if not isinstance(op, Crop):
            continue
        at = written[i].span if i < len(written) else where  # (the call itself, not the whole list)
        if op.window != (h, w):
            d.add("E303", f"crop({_size_text(op.size)}, ...) must keep the image size {h}x{w}", at,
                  f"pad-and-crop: crop({_size_text(h if h == w else (h, w))}, padding=...)")
        elif op.padding >= min(h, w):
            _crop_padding_error(op, h, w, written[i] if i < len(written) else None, at, d)


def _size_text(size: int | tuple[int, ...]) -> str:
    """A crop's size as a spec writes it: 8, or (6, 8) for a window that is not square."""
    return str(size) if isinstance(size, int) else "(" + ", ".join(map(str, size)) + ")"


def _crop_padding_error(op: Crop, h: int, w: int, call: A.Value | None, at: Span | None,
                        d: Diagnostics) -> None:
    """A crop's padding as large as the image: a window could hold padding only (no pixel of the image), and
    every batch is padded in memory first (padding=100000 would ask for terabytes)."""
    d.add("E303", f"crop padding {op.padding} is not smaller than the image ({h}x{w}): a window could hold "
          "no pixel of the image", getattr(A.argument(call, "padding", 1), "span", None) or at,
          f"a padding below {min(h, w)}, e.g. crop({_size_text(op.size)}, padding={max(1, min(h, w) // 8)})")


def check_token_inputs(spec: Spec, m: A.Model, d: Diagnostics, base_dir: Path) -> None:
    """An Embedding reading the model's input takes whole-number token indices: standard normalisation makes
    fractions of them (an error: the run would fail when it reads its data); minmax does unless every feature
    takes two values only (a warning; an error for a bundled set, whose features are known)."""
    how = spec.data.normalize if spec.data is not None else "none"
    first = spec.input_embedding()
    if first is None:
        return
    if how == "none":
        _check_token_values(spec, first, m, d, base_dir)
        return
    st = find_assign(m, "normalize", "data")
    what = (f"the first layer, Embedding({first.input_dim}, ...), takes token indices, whole numbers "
            f"0..{first.input_dim - 1}")
    if how == "standard":
        d.add("E303", f"normalize: standard turns token indices into fractions, but {what}",
              st.value.span if st else None, "normalize: none keeps token indices whole")
    elif isinstance(src := spec.data.source if spec.data is not None else None, Bundled):
        # (a bundled set's features are known: none takes two values only, so the run would fail reading
        # them, as `source: digits` with `normalize: minmax` did after a W005)
        d.add("E303", f"normalize: {how} turns the '{src.name}' features into fractions, but {what}",
              st.value.span if st else None, "normalize: none keeps token indices whole")
    else:
        d.warn("W005", f"normalize: {how} turns token indices into fractions (unless every feature takes two "
               f"values only), but {what}", st.value.span if st else None,
               "normalize: none keeps token indices whole")


def _check_token_values(spec: Spec, first, m: A.Model, d: Diagnostics, base_dir: Path) -> None:
    """An Embedding reading the features as they are (normalize: none): the runtime refuses a value that is
    not a whole number 0..input_dim-1 (dlc/runtime/data/normalize.py). Where the values are known (a bundled
    set's: spec.BUNDLED_LARGEST_TOKEN, BUNDLED_FIRST_FRACTION; a small CSV file's, parsed) it is E303 now,
    not when the data is read."""
    src = spec.data.source if spec.data is not None else None
    if isinstance(src, Bundled):
        name = f"'{src.name}'"
        largest = BUNDLED_LARGEST_TOKEN.get(src.name)
        lo, hi = (0.0, float(largest)) if largest is not None else (0.0, 0.0)
        fraction = BUNDLED_FIRST_FRACTION.get(src.name)
    elif isinstance(src, Csv):
        known = csv_feature_range(resolve_path(base_dir, src.path), src.target)
        if known is None:
            return
        name, (lo, hi, fraction) = f"'{src.path}'", known
    else:
        return
    where = (argument_span(m, first, "input_dim") or positional_span(m, first, "input_dim", 0)
             or layer_span(first))
    takes = f"Embedding({first.input_dim}, ...) takes token indices, whole numbers 0..{first.input_dim - 1}"
    if fraction is not None:
        d.add("E303", f"{name} features are not token indices (they hold {number_text(fraction)}), but the "
              f"first layer, {takes}", layer_span(first),
              "an Embedding reads whole-number tokens; begin with Dense(...) for measurements")
    elif lo < 0:
        d.add("E303", f"{name} features hold {number_text(lo)}, a negative number, but the first layer, "
              f"{takes}", layer_span(first), "number the tokens 0, 1, 2, ...")
    elif hi >= first.input_dim:
        top = int(hi)
        d.add("E303", f"{name} features are whole numbers {number_text(lo)}..{top}, but the first layer, "
              f"{takes}", where, f"use input_dim={top + 1} or more (input_dim >= {top + 1})")
