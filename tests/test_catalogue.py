"""`dlc catalogue`: generated from the IR classes, the lowering registry and the measured results shipped in
the package (dlc/equivalence_results.json); docs/CATALOGUE.md must equal a fresh generation, and a fixture's
coverage comes from the IR it compiles to."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlc.cli import main
from dlc.compiler import compile_file, compile_text
from dlc.runtime.catalogue import (
    RESULTS_FILE,
    fixtures_using,
    items,
    items_used,
    load_results,
    measured,
    render,
    results,
)

from conftest import EQUIVALENCE_SPECS, ROOT

REGENERATE = ("docs/CATALOGUE.md is stale (a catalogue class, a field default, a lowering or the measured "
              "results changed). Regenerate it: .venv/bin/dlc catalogue --markdown > docs/CATALOGUE.md")
REMEASURE = ("dlc/{} does not match the fixtures (one was added, removed or changed). Re-measure: "
             ".venv/bin/python tests/equivalence/measure.py (-k NAME for one), then regenerate the catalogue "
             "page")


def _id(path: Path) -> str:
    return f"specs/{path.stem}" if path.parent.name == "specs" else path.stem


def test_committed_catalogue_page_is_current():
    assert (ROOT / "docs" / "CATALOGUE.md").read_text() == render(markdown=True), REGENERATE


def test_every_registered_name_is_listed():
    import dlc.compiler  # noqa: F401
    from dlc.compiler.catalog import REGISTRY

    listed = {(fam, n) for fam, _, entries in items() for e in entries for n in e["names"]}
    for fam, table in REGISTRY.items():
        for name in table:
            assert (fam, name) in listed, f"{fam} {name} missing from `dlc catalogue`"


def test_every_item_has_a_target_column_per_target():
    from dlc.backends.lowering import TARGETS

    page = render(markdown=True)
    header = next(line for line in page.splitlines() if line.startswith("| item |"))
    for t in TARGETS:
        assert f" {t} |" in header
    dense = next(line for line in page.splitlines() if line.startswith("| Dense |"))
    assert dense.count("✓") == len(TARGETS), dense
    zeros = next(line for line in page.splitlines() if line.startswith("| zeros |"))
    assert "shared" in zeros


def test_results_ship_in_the_package():
    import importlib.resources

    assert importlib.resources.files("dlc").joinpath(RESULTS_FILE).is_file()
    res = results()
    assert res, f"dlc/{RESULTS_FILE} has no fixtures"
    assert res["dense"]["f64_step_loss"] <= 1e-10
    assert ["layer", "Dense"] in res["dense"]["items"]
    assert load_results()["meta"]["torch"]


def test_results_cover_exactly_the_equivalence_fixtures():
    res = results()
    assert sorted(res) == sorted(_id(p) for p in EQUIVALENCE_SPECS), REMEASURE.format(RESULTS_FILE)


def test_recorded_items_are_the_fixtures_ir():
    res = results()
    for path in EQUIVALENCE_SPECS:
        fid = _id(path)
        if fid not in res:
            continue  # the test above names it
        spec = compile_file(path).raise_for_errors()
        assert sorted(list(i) for i in items_used(spec)) == res[fid]["items"], (
            f"{fid}: " + REMEASURE.format(RESULTS_FILE))


def test_coverage_is_computed_from_the_ir_not_the_file_name():
    # specs/digits_lstm's name says lstm; a fixture called anything that compiles to an LSTM counts for LSTM
    spec = compile_text("""
model some_classifier {
  data { source: digits }
  input: (8, 8)
  layers {
    residual { Dense(8, activation=gelu) }
    Bidirectional(LSTM(4))
    Dense(10, activation=softmax)
  }
  loss: categorical_crossentropy
  metrics: [f1]
  optimizer: Adam(lr=0.01)
  schedule: warmup(2, then=cosine(10))
}
""").raise_for_errors()
    used = items_used(spec)
    # nested: the residual body, Bidirectional's inner layer, warmup's then; defaults: LSTM's initializers
    for item in [("layer", "residual"), ("layer", "Dense"), ("activation", "gelu"),
                 ("layer", "Bidirectional"),
                 ("layer", "LSTM"), ("initializer", "orthogonal"), ("initializer", "glorot_uniform"),
                 ("initializer", "zeros"), ("activation", "tanh"), ("activation", "sigmoid"),
                 ("schedule", "warmup"), ("schedule", "cosine"), ("metric", "f1"), ("optimizer", "Adam"),
                 ("loss", "categorical_crossentropy"), ("source", "digits"), ("split", "holdout")]:
        assert item in used, item
    assert ("source", "iris") not in used and ("layer", "GRU") not in used
    fake = {"some_classifier": {"items": sorted(list(i) for i in used), "f64_step_loss": 3e-16,
                                "f64_weights": 1e-16, "f32_step_loss": 2e-7},
            "lstm_named_but_dense": {"items": [["layer", "Dense"]], "f64_step_loss": 1.0, "f64_weights": 1.0,
                                     "f32_step_loss": 1.0}}
    m = measured(("layer", "LSTM"), fake)
    assert m["fixtures"] == ["some_classifier"] and m["f64"] == 3e-16 and m["f32"] == 2e-7
    # (fixtures named after an item are listed first: display order only)
    assert fixtures_using(("layer", "Dense"), fake) == ["lstm_named_but_dense", "some_classifier"]
    assert measured(("layer", "Dense"), fake)["f64"] == 1.0


def test_measured_fixtures_count_by_ir():
    """Shipped results: fixtures not named after an item still count for it (a Dense in every act_*)."""
    res = results()
    dense = fixtures_using(("layer", "Dense"), res)
    assert dense[0] == "dense" and "act_relu" in dense
    lstm = fixtures_using(("layer", "LSTM"), res)
    assert "bidirectional_lstm" in lstm and "specs/digits_lstm" in lstm
    assert "reg_l1" in fixtures_using(("initializer", "glorot_uniform"), res)  # a default, never written


@pytest.mark.parametrize("fam,name", [("source", "iris"), ("source", "digits")])
def test_named_class_items_are_told_apart_by_name(fam, name):
    res = results()
    for f in fixtures_using((fam, name), res):
        assert [fam, name] in res[f]["items"]
    other = "digits" if name == "iris" else "iris"
    assert not set(fixtures_using((fam, name), res)) & set(fixtures_using((fam, other), res))


def test_cli_prints_families(capsys):
    assert main(["catalogue"]) == 0
    out = capsys.readouterr().out
    for title in ("Layers:", "Activations:", "Initializers:", "Regularizers:", "Constraints:", "Optimizers:",
                  "Schedules:", "Losses:", "Metrics:", "Data sources:", "Splits:", "Augmentations:"):
        assert title in out
    assert "Nadam(learning_rate=0.001" in out and "huber(delta=1.0)" in out
    assert "targets keras / torch / emit_keras / emit_torch" in out
