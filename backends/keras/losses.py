"""Keras' losses as dlc computes them: the mean over the batch of the per-sample loss; crossentropies from the
logits (the output layer's softmax or sigmoid is left to them)."""

from __future__ import annotations

from . import quiet  # noqa: F401  (imports TensorFlow with its start-up notices silenced)

# isort: split
import tensorflow as tf


def categorical_crossentropy(y, logits):
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(y, logits))


def sparse_categorical_crossentropy(y, logits):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))


def binary_crossentropy(y, logits):
    return tf.reduce_mean(tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(y, logits), axis=-1))


def mean_squared_error(y, out):
    return tf.reduce_mean(tf.reduce_mean(tf.square(y - out), axis=-1))


def mean_absolute_error(y, out):
    return tf.reduce_mean(tf.reduce_mean(tf.abs(y - out), axis=-1))


def huber(y, out, delta: float = 1.0):
    d = tf.constant(delta, out.dtype)
    err = tf.abs(y - out)
    return tf.reduce_mean(tf.reduce_mean(tf.where(err <= d, 0.5 * err * err, d * err - 0.5 * d * d), axis=-1))
