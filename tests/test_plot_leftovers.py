"""`dlc doctor --plot`'s axes, read from the matplotlib figures (not from pixels).

- gradients.png of a run of one epoch: the x axis is that one epoch, one tick centred (rundir.epoch_axis, as
  curves.png has it), not matplotlib's 0.945 to 1.050 with the points between ticks; longer runs get whole
  epochs.
- importance.png of a `choice` parameter: its options stand at 0..n-1 with room on both sides (no option
  pressed against an edge, no "best" band running off it), and the band of the options the top trials took
  has its legend entry, as a numeric parameter's band has.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dlc.runtime.doctor import gradients, importance


def _figures(monkeypatch, module) -> list:
    """The figures `module` saves, kept (save_figure still writes the PNG)."""
    saved = []
    real = module.save_figure

    def keep(fig, path: Path) -> Path:
        saved.append(fig)
        return real(fig, path)

    monkeypatch.setattr(module, "save_figure", keep)
    return saved


# ------------------------------------------------------------------------------------------ gradients.png


def _evidence(epochs: list[int]) -> dict:
    layers = ["dense_0", "dense_1", "dense_2"]
    return {"layers": [{"name": n} for n in layers],
            "epochs": [{"epoch": e,
                        "layers": {n: {"grad_norm": 0.3 * (i + 1) / e, "update_ratio": 0.05 * (i + 1)}
                                   for i, n in enumerate(layers)}} for e in epochs]}


def test_gradients_of_one_epoch_have_that_epoch_as_the_one_centred_tick(tmp_path, monkeypatch):
    saved = _figures(monkeypatch, gradients)
    assert gradients.plot_gradients(tmp_path, _evidence([1]), "one") == tmp_path / gradients.PLOT
    assert (tmp_path / gradients.PLOT).stat().st_size > 0
    (fig,) = saved
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == len(gradients.PANELS)
    for ax in panels:
        assert list(ax.get_xticks()) == [1]
        assert ax.get_xlim() == (0.0, 2.0)  # the point in the middle, not between ticks at an edge
        assert ax.get_xlabel() == "epoch"
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1"]


def test_gradients_of_several_epochs_have_whole_epoch_ticks(tmp_path, monkeypatch):
    saved = _figures(monkeypatch, gradients)
    gradients.plot_gradients(tmp_path, _evidence([1, 2, 3, 4, 5]), "five")
    (fig,) = saved
    for ax in (ax for ax in fig.axes if ax.get_title()):
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks)
        assert lo < 1 and hi > 5


# ----------------------------------------------------------------------------------------- importance.png


def _tune() -> dict:
    """A tune.json of 8 trials over a choice of units and a log-uniform lr; the top 3 (the best quarter, at
    least 3) took units 16 and 64, the last option."""
    units = [8, 16, 64, 32, 16, 8, 64, 32]
    lrs = [0.003, 0.01, 0.02, 0.05, 0.004, 0.08, 0.006, 0.002]
    values = [0.40, 0.21, 0.15, 0.35, 0.16, 0.30, 0.22, 0.33]
    trials = [{"number": i, "state": "COMPLETE", "value": v,
               "params": {"layers[0].units": u, "optimizer.learning_rate": lr}}
              for i, (u, lr, v) in enumerate(zip(units, lrs, values, strict=True))]
    return {"objective": {"metric": "val_loss", "direction": "minimize"}, "trials": trials,
            "spaces": [{"name": "layers[0].units", "kind": "choice", "at": [3, 11], "end": [3, 30],
                        "options": [8, 16, 32, 64], "option_texts": ["8", "16", "32", "64"]},
                       {"name": "optimizer.learning_rate", "kind": "loguniform", "at": [6, 20],
                        "end": [6, 40], "low": 0.001, "high": 0.1}]}


@pytest.fixture
def drawn(tmp_path, monkeypatch):
    """The importance figure's scatter panels by parameter (fANOVA replaced by fixed numbers: the plot is
    what is tested here)."""
    fixed = {"layers[0].units": 0.7, "optimizer.learning_rate": 0.3}
    monkeypatch.setattr(importance, "_fanova", lambda spaces, done, direction: fixed)
    saved = _figures(monkeypatch, importance)
    imp = importance.analyse(tmp_path, _tune())
    assert imp is not None and imp.importance is not None
    assert importance.plot(tmp_path, imp) == tmp_path / importance.PLOT
    (fig,) = saved
    return imp, {ax.get_xlabel(): ax for ax in fig.axes[1:]}


def _bands(ax) -> list[tuple[float, float]]:
    """The x extents of the shaded bands (axvspan's rectangles)."""
    return [(p.get_x(), p.get_x() + p.get_width()) for p in ax.patches]


def test_a_choice_panel_leaves_room_beside_its_first_and_last_option(drawn):
    imp, panels = drawn
    ax = panels["layers[0].units"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["8", "16", "32", "64"]
    assert list(ax.get_xticks()) == [0, 1, 2, 3]
    lo, hi = ax.get_xlim()
    assert (lo, hi) == pytest.approx((-0.6, 3.4 + 0.2))
    assert imp.best_region["layers[0].units"]["options"] == [16, 64]
    bands = _bands(ax)
    assert bands == [pytest.approx((0.6, 1.4)), pytest.approx((2.6, 3.4))]  # 16 and the last option, 64
    assert all(lo < a and b < hi for a, b in bands)  # no band runs off the axes
    xs = [x for c in ax.collections for x, _ in c.get_offsets()]
    assert xs and lo < min(xs) - 0.5 and max(xs) + 0.5 < hi  # the options' points away from the edges


def test_a_choice_panels_best_band_has_one_legend_entry(drawn):
    _, panels = drawn
    texts = [t.get_text() for t in panels["layers[0].units"].get_legend().get_texts()]
    assert texts == ["best region {16, 64}", "trials", "top 3"]


def test_a_numeric_panel_keeps_its_band_and_legend(drawn):
    imp, panels = drawn
    ax = panels["optimizer.learning_rate"]
    assert ax.get_xscale() == "log"
    region = imp.best_region["optimizer.learning_rate"]
    assert _bands(ax) == [pytest.approx((region["low"], region["high"]))]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[0] == f"best region {region['text']}" and texts[1:] == ["trials", "top 3"]


@pytest.mark.parametrize("lo,hi,most", [(5e-6, 2.0, 8), (0.04, 1.7, 7), (0.08, 0.95, 6), (1e-30, 1e6, 12),
                                         (1e-4, 0.3, 9)])
def test_curves_log_axis_labels_do_not_pile_up(monkeypatch, tmp_path, lo, hi, most):
    """curves.png's loss from 2 to 5e-6 (iris, 1,500 epochs) had a label at 1, 2, 3 and 5 of every decade:
    24 on top of each other. Now as many as the span holds (rundir.log_y, shared with `dlc runs --plot` and
    gradients.png), at least two, each a different text."""
    import numpy as np

    from dlc.runtime import rundir

    saved = _figures(monkeypatch, rundir)
    loss = np.geomspace(hi, lo, 200)
    rows = [{"epoch": i + 1, "loss": float(v), "lr": 0.01} for i, v in enumerate(loss)]
    rundir.plot_curves(tmp_path, rows, "t")
    ax = saved[0].axes[0]
    saved[0].canvas.draw()
    bottom, top = ax.get_ylim()
    labels = [t.get_text() for t, v in zip(ax.get_yticklabels(), ax.get_yticks(), strict=True)
              if bottom <= v <= top and t.get_text()]
    assert ax.get_yscale() == "log" and 2 <= len(labels) <= most and len(set(labels)) == len(labels), labels
    if hi == 0.3:  # (an update ratio's span: the powers of 10 alone left no label above 0.1)
        assert "0.3" in labels, labels
