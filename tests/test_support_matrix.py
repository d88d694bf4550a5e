"""The support matrix: every registered IR class × every target is lowered, computed in dlc's shared numpy
code, or explicitly unsupported with a reason; nothing is silently missing. A missing lowering is an error
that names the item and the target, and `dlc run` turns it into one line."""

from __future__ import annotations

from pathlib import Path

import pytest

import dlc.compiler  # noqa: F401  (registers every catalogue class)
from dlc.backends.lowering import REGISTRY, TARGETS, Context, LoweringMissing, load_target
from dlc.compiler.catalog import REGISTRY as CATALOGUE

BACKENDS = ("keras", "torch")
STATUSES = ("lowered", "shared", "unsupported", "missing")

for _t in TARGETS:
    load_target(_t)


def registered_classes() -> list[tuple[str, type]]:
    """(family, class) for every class of the catalogue, each once."""
    seen: dict[type, str] = {}
    for fam, table in CATALOGUE.items():
        for cls in table.values():
            seen.setdefault(cls, fam)
    return [(fam, cls) for cls, fam in seen.items()]


CELLS = [(fam, cls, t) for fam, cls in registered_classes() for t in TARGETS]


def _cell_id(cell) -> str:
    fam, cls, t = cell
    return f"{fam}-{cls.__name__}-{t}"


def test_every_family_has_classes():
    fams = {fam for fam, _ in registered_classes()}
    assert {"layer", "activation", "initializer", "regularizer", "constraint", "optimizer", "schedule",
            "loss", "metric", "source", "split", "augment"} <= fams


@pytest.mark.parametrize("cell", CELLS, ids=_cell_id)
def test_cell(cell):
    fam, cls, target = cell
    where = f"{fam} class {cls.__name__} ({', '.join(cls.spec_names)}) on target {target}"
    status, detail = REGISTRY.status(target, cls)
    assert status in STATUSES, f"{where}: unknown status {status!r}"
    if target in BACKENDS:
        assert status in ("lowered", "shared"), (
            f"{where} is {status}{': ' + detail if detail else ''}; every item must train on both backends")
    else:
        assert status != "missing", (
            f"{where} is missing: register a lowering, mark it shared, or mark_unsupported it with a reason")
    if status == "unsupported":
        assert detail.strip(), f"{where} is unsupported without a reason"
    if status == "shared":
        assert detail.strip(), f"{where} is shared without saying where dlc computes it"


def test_status_counts_cover_the_whole_matrix():
    counts = {s: 0 for s in STATUSES}
    for _, cls, target in CELLS:
        counts[REGISTRY.status(target, cls)[0]] += 1
    assert sum(counts.values()) == len(registered_classes()) * len(TARGETS)
    assert counts["missing"] == 0, counts


# ------------------------------------------------------------------------------------------ missing lowering

SMALL = """
model tiny {
  seed: 3
  data {
    source: iris
    normalize: standard
    split: holdout(val=0.2)
  }
  input: (4)
  layers {
    Dense(8, activation=relu)
    Dense(3, activation=softmax)
  }
  loss: categorical_crossentropy
  optimizer: SGD(lr=0.05)
  train {
    epochs: 1
    batch_size: 32
  }
}
"""


def _drop(monkeypatch, target: str, cls: type) -> None:
    table = dict(REGISTRY.table[target])
    del table[cls]
    monkeypatch.setitem(REGISTRY.table, target, table)


def test_missing_lowering_raises_naming_item_and_target(monkeypatch):
    from dlc.compiler import compile_text
    from dlc.compiler.layers import Dense

    spec = compile_text(SMALL).raise_for_errors()
    dense = spec.layers[0]
    _drop(monkeypatch, "torch", Dense)
    assert REGISTRY.status("torch", Dense)[0] == "missing"
    with pytest.raises(LoweringMissing) as err:
        REGISTRY.lower("torch", dense, Context("torch", spec))
    msg = str(err.value)
    assert "Dense" in msg and "torch" in msg, msg
    assert err.value.backend == "torch" and "Dense" in err.value.item
    # the other targets are untouched
    assert REGISTRY.status("keras", Dense)[0] == "lowered"


def test_run_turns_a_missing_lowering_into_one_line(monkeypatch, tmp_path: Path, capsys):
    pytest.importorskip("torch")
    from dlc.cli import main
    from dlc.compiler.layers import Dense

    spec = tmp_path / "tiny.dlspec"
    spec.write_text(SMALL)
    _drop(monkeypatch, "torch", Dense)
    monkeypatch.delenv("DLC_TRACEBACK", raising=False)
    code = main(["run", str(spec), "--backend", "torch", "--out", str(tmp_path / "runs"), "--quiet"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code in (1, 2), (code, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("dlc: error: "), err
    assert "Dense" in lines[0] and "torch" in lines[0], err
