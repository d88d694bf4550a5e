"""Keras activations with a parameter, as objects Keras saves and loads (a lambda or a partial it cannot)."""

from __future__ import annotations

from . import quiet  # noqa: F401  (imports TensorFlow with its start-up notices silenced)

# isort: split
import keras


@keras.saving.register_keras_serializable(package="dlc")
class LeakyRelu:
    """keras.activations.leaky_relu with its slope, as an object Keras saves and loads (no lambda)."""

    def __init__(self, negative_slope: float):
        self.negative_slope = negative_slope

    def __call__(self, x):
        return keras.activations.leaky_relu(x, negative_slope=self.negative_slope)

    def get_config(self):
        return {"negative_slope": self.negative_slope}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="dlc")
class Elu:
    """keras.activations.elu with its alpha, as an object Keras saves and loads."""

    def __init__(self, alpha: float):
        self.alpha = alpha

    def __call__(self, x):
        return keras.activations.elu(x, alpha=self.alpha)

    def get_config(self):
        return {"alpha": self.alpha}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
