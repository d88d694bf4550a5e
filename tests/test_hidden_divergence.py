"""Weights that became nan while the loss stayed finite fail the run, as a nan loss does.

Found with a 300-block Dense+BatchNorm+Dropout spec in float32: both backends' gradients overflowed in
step 2 and left the first layers' weights nan; torch's loss became nan in step 3 (exit 1), but TensorFlow's
fused MatMul+BiasAdd+Relu kernel (a traced step on the CPU; eager gives nan) returns 0 for nan, so the
Keras run went on with finite losses and constant outputs and ended "ok". dlc.runtime.loop now reads the
weights after each epoch."""

from __future__ import annotations

import numpy as np
import pytest

from dlc import api
from dlc.runtime.loop import TrainingFailed

from conftest import ROOT


@pytest.mark.parametrize("backend,failure", [
    ("keras", "weights became nan in epoch 1 (layer 'dense_0', kernel) while the loss stayed finite"),
    ("torch", "loss became nan at epoch 1, step 1"),
])
def test_nan_weights_behind_a_relu_fail_the_run(backend, failure):
    model = api.Model(ROOT / "specs" / "iris.dlspec", backend=backend)
    weights = model.get_weights()
    weights["dense_0"]["kernel"][:] = np.nan
    model.session.set_weights(weights)  # (past Model.set_weights, which refuses them)
    with pytest.raises(TrainingFailed) as e:
        model.fit(epochs=1)
    assert str(e.value).startswith(failure) and "try a smaller learning rate" in str(e.value)
    assert model.history.rows == [] and len(e.value.history.step_losses) == 6

