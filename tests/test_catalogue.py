"""`dlc catalogue`: generated from the IR and RESULTS.md; docs/CATALOGUE.md must equal a fresh generation."""

from __future__ import annotations

from pathlib import Path

from dlc.catalogue import covers, items, render, results
from dlc.cli import main

ROOT = Path(__file__).resolve().parent.parent
REGENERATE = ("docs/CATALOGUE.md is stale (a catalogue class, a field default or tests/equivalence/RESULTS.md "
              "changed). Regenerate it: .venv/bin/dlc catalogue --markdown > docs/CATALOGUE.md")


def test_committed_catalogue_page_is_current():
    assert (ROOT / "docs" / "CATALOGUE.md").read_text() == render(markdown=True), REGENERATE


def test_every_registered_name_is_listed():
    import dlc.compiler  # noqa: F401
    from dlc.compiler.catalog import REGISTRY

    listed = {(fam, n) for fam, _, entries in items() for e in entries for n in e["names"]}
    for fam, table in REGISTRY.items():
        for name in table:
            assert (fam, name) in listed, f"{fam} {name} missing from `dlc catalogue`"


def test_fixture_rule():
    assert covers("opt_adam_amsgrad", "optimizer", ["Adam"])
    assert not covers("opt_adamw", "optimizer", ["Adam"])
    assert covers("opt_adamw", "optimizer", ["AdamW"])
    assert covers("conv2d_same_s2", "layer", ["Conv2D", "Convolution2D"])
    assert not covers("conv2d_same_s2", "layer", ["Conv1D"])
    assert covers("reg_l1_l2", "regularizer", ["l1_l2"]) and covers("reg_l1_l2", "regularizer", ["l1"])
    assert not covers("loss_mse", "metric", ["mse"])
    assert covers("act_relu", "activation", ["relu"]) and not covers("act_relu", "activation", ["relu6"])


def test_results_table_is_read():
    res = results()
    assert res, "tests/equivalence/RESULTS.md has no per-fixture rows"
    f64, _ = res["dense"]
    assert f64 is not None and f64 <= 1e-10


def test_cli_prints_families(capsys):
    assert main(["catalogue"]) == 0
    out = capsys.readouterr().out
    for title in ("Layers:", "Activations:", "Initializers:", "Regularizers:", "Constraints:", "Optimizers:",
                  "Schedules:", "Losses:", "Metrics:", "Data sources:", "Splits:", "Augmentations:"):
        assert title in out
    assert "Nadam(learning_rate=0.001" in out and "huber(delta=1.0)" in out
