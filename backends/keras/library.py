"""The names Keras lowerings (lower.py) refer to besides keras.* and tf.*, gathered in one namespace to
evaluate them. Importing it registers dlc's custom objects with Keras (needed before keras.saving.load_model
on a dlc model)."""

from __future__ import annotations

import json  # noqa: F401 — the namespace lowered expressions and copied definitions may use
import math  # noqa: F401
from functools import partial  # noqa: F401

from . import quiet  # noqa: F401  (imports TensorFlow with its start-up notices silenced)

# isort: split
import keras  # noqa: F401
import numpy as np  # noqa: F401
import tensorflow as tf  # noqa: F401

from .activations import Elu, LeakyRelu  # noqa: F401
from .layers import (  # noqa: F401
    HashDropout,
    Maxout,
    Residual,
    SimpleRNN,
    apply_layers,
    build_models,
    check_weights,
    fmix32_u32,
    keras_layers,
    network,
)
from .losses import (  # noqa: F401
    binary_crossentropy,
    categorical_crossentropy,
    huber,
    mean_absolute_error,
    mean_squared_error,
    sparse_categorical_crossentropy,
)
from .training import Trainer  # noqa: F401
