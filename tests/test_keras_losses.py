"""The one Keras behaviour backends/keras/training.py relies on beyond the documented API: `Layer.losses`
lists the add_loss terms of a model and its layers (the activity regularizers') first, then one fresh penalty
per regularized trainable weight, in weight order. The trainer splits the list by that position (evaluation
adds the activity terms per batch and the weight penalties once); if a Keras release changes the order, this
test says so before the equivalence fixtures report a loss that is off."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")


def test_layer_losses_list_activity_terms_then_weight_penalties():
    x = keras.Input((3,))
    hidden = keras.layers.Dense(4, kernel_regularizer=keras.regularizers.L2(0.5),
                                activity_regularizer=keras.regularizers.L1(0.25))
    out = keras.layers.Dense(2, bias_regularizer=keras.regularizers.L1(0.125),
                             bias_initializer="ones")
    model = keras.Model(x, out(hidden(x)))
    data = np.linspace(-1, 1, 15, dtype="float32").reshape(5, 3)
    h = hidden(data)
    activity = 0.25 * np.abs(np.asarray(h)).sum() / len(data)
    model(data)
    penalties = [0.5 * np.square(np.asarray(hidden.kernel)).sum(), 0.125 * np.abs(np.asarray(out.bias)).sum()]
    losses = [float(v) for v in model.losses]
    message = (f"Keras {keras.__version__} lists Layer.losses as {losses}, not the activity term "
               f"{activity:.6g} followed by the weight penalties {penalties}: backends/keras/training.py "
               "(Trainer._activity_reg) must split them another way")
    assert len(losses) == 3, message
    assert losses == pytest.approx([activity, *penalties], rel=1e-6), message
