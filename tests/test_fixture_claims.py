"""Equivalence fixtures that can see the bug they claim to prove, computed from each fixture's IR (no
framework, no training).

TensorFlow's 'same' padding puts the odd extra row/column/step after the input. A fixture whose total padding
is even on every axis pads symmetrically, so it agrees with a backend that puts the extra before (or swaps
the axes, or reverses the pad tuple): it proves nothing about the split. So every layer kind with a `padding`
argument has a fixture whose 'same' layer pads an odd total on some axis, and every fixture whose `# Proves:`
header claims 'same' padding has one.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

from dlc.compiler import compile_file
from dlc.compiler import layers as L
from dlc.compiler.catalog import REGISTRY
from dlc.reference.semantics import same_pad

from conftest import FIXTURE_DIR

FIXTURES = sorted(FIXTURE_DIR.glob("*.dlspec")) + sorted((FIXTURE_DIR / "slow").glob("*.dlspec"))
# a header claiming something about 'same' padding (not "the same epoch", "the same bits")
CLAIMS_SAME = re.compile(r"padding=same|same padding|valid and same|'same'|asymmetric", re.IGNORECASE)


def header(path: Path) -> str:
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# "))
    return " ".join(lines)


def kernel_and_strides(layer) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return layer._ps() if isinstance(layer, L._Pool) else layer._ks()


def pads(info) -> list[tuple[int, int]] | None:
    """(before, after) per spatial axis of a 'same' layer as TF pads (a transposed convolution: as it crops
    the full output), None for other layers."""
    layer = info.layer
    if getattr(layer, "padding", None) != "same":
        return None
    ks, ss = kernel_and_strides(layer)
    spatial = info.in_shape[:-1]
    if isinstance(layer, L.Conv2DTranspose):
        axes = zip(spatial, ks, ss, info.out_shape[:-1], strict=True)
        totals = [(n - 1) * s + k - o for n, k, s, o in axes]
        return [(t // 2, t - t // 2) for t in totals]
    return [same_pad(n, k, s) for n, k, s in zip(spatial, ks, ss, strict=True)]


@functools.cache
def odd_same_layers(path: Path) -> list[tuple[str, list[tuple[int, int]]]]:
    """(kind, per-axis pads) of the fixture's 'same' layers whose total padding is odd on some axis."""
    spec = compile_file(path).raise_for_errors()
    found = []
    for info in spec.walk():
        p = pads(info)
        if p is not None and any((a + b) % 2 for a, b in p):
            found.append((info.layer.kind, p))
    return found


def padded_kinds() -> list[str]:
    """Every catalogue layer with a `padding` argument."""
    return sorted({cls.model_fields["kind"].default for cls in REGISTRY["layer"].values()
                   if "padding" in cls.model_fields})


def test_same_pad_is_tensorflow_s_split():
    # the odd extra after; the total from the output size ceil(n / s)
    assert same_pad(16, 3, 2) == (0, 1)
    assert same_pad(7, 4, 2) == (1, 2)
    assert same_pad(8, 3, 1) == (1, 1)
    assert same_pad(8, 2, 1) == (0, 1)
    assert same_pad(8, 1, 2) == (0, 0)


def test_the_padded_layer_kinds_are_found():
    assert set(padded_kinds()) >= {"Conv1D", "Conv2D", "Conv2DTranspose", "DepthwiseConv2D",
                                   "SeparableConv2D", "MaxPool1D", "MaxPool2D", "AvgPool1D", "AvgPool2D"}


@pytest.mark.parametrize("kind", padded_kinds())
def test_every_padded_layer_has_a_fixture_with_an_odd_same_padding(kind):
    where = {p.stem: [pp for k, pp in odd_same_layers(p) if k == kind] for p in FIXTURES}
    assert any(where.values()), f"no fixture pads a {kind} with an odd 'same' total on any axis"


@pytest.mark.parametrize("path", [p for p in FIXTURES if CLAIMS_SAME.search(header(p))], ids=lambda p: p.stem)
def test_a_fixture_claiming_same_padding_pads_an_odd_total(path):
    assert odd_same_layers(path), (f"{path.name} claims 'same' padding, but every 'same' layer pads an even "
                                   "total on every axis: a before/after mix-up would pass")


def test_some_fixture_tells_the_two_axes_apart():
    """A 2-D 'same' layer whose rows and columns pad differently: swapping the axes of the pad tuple shows."""
    two_d = [pp for p in FIXTURES for _, pp in odd_same_layers(p) if len(pp) == 2]
    assert any(rows != cols for rows, cols in two_d), two_d


@pytest.mark.parametrize("kind", [k for k in padded_kinds() if k.endswith("2D") or k == "Conv2DTranspose"])
def test_every_2d_padded_layer_has_a_fixture_that_tells_its_axes_apart(kind):
    """Per layer kind, since each lowers its padding on its own: rows and columns pad differently, so a swap
    of the pad tuple's axes changes the numbers."""
    two_d = [pp for p in FIXTURES for k, pp in odd_same_layers(p) if k == kind and len(pp) == 2]
    assert any(rows != cols for rows, cols in two_d), f"{kind}: every odd 'same' padding is square: {two_d}"
