"""Keras' callbacks every target runs alike: ReduceLROnPlateau and early stopping's improvement test."""

from __future__ import annotations

import math

import numpy as np

from dlc.compiler.training import higher_is_better


def monitor_mode(mode: str, monitor: str) -> str:
    """'auto' is 'max' for accuracy-like quantities and 'min' for losses and errors, as Keras decides."""
    if mode == "auto":
        return "max" if higher_is_better(monitor) else "min"
    return mode


def improved(current: float, best: float, mode: str, min_delta: float) -> bool:
    """Keras 3's test (MonitorCallback._is_improvement): `current ± min_delta` in Python floats, then both
    sides compared as float32 tensors, as keras.ops.less/greater convert Python floats (also with floatx
    float64). So a change below float32's resolution is no improvement, on every target alike."""
    if mode == "min":
        return bool(np.float32(current + min_delta) < np.float32(best))
    return bool(np.float32(current - min_delta) > np.float32(best))


class ReduceLROnPlateau:
    """Keras ReduceLROnPlateau, step for step: after `patience` epochs without an improvement by min_delta,
    lr·factor (not below min_lr), then `cooldown` epochs of rest."""

    def __init__(self, factor: float, patience: int, min_lr: float = 0.0, min_delta: float = 1e-4,
                 cooldown: int = 0, mode: str = "min"):
        self.factor, self.patience, self.min_lr = factor, patience, min_lr
        self.min_delta, self.cooldown_epochs, self.mode = min_delta, cooldown, mode
        self.best = math.inf if mode == "min" else -math.inf
        self.wait = 0
        self.cooldown = 0

    def update(self, current: float, lr: float) -> float:
        if self.cooldown > 0:
            self.cooldown -= 1
            self.wait = 0
        if improved(current, self.best, self.mode, self.min_delta):
            self.best = current
            self.wait = 0
        elif self.cooldown <= 0:
            self.wait += 1
            if self.wait >= self.patience and lr > self.min_lr:
                lr = max(lr * self.factor, self.min_lr)
                self.cooldown = self.cooldown_epochs
                self.wait = 0
        return lr


def plateau_for(sched) -> ReduceLROnPlateau:
    """The IR's plateau schedule as a Plateau. 'auto' is decided as for early stopping: Keras 3's
    ReduceLROnPlateau asks the monitored metric for its direction, so precision, recall and f1 are maximised
    too (Keras 2 looked for 'acc' in the name; tests/test_stock_keras.py checks it against stock Keras)."""
    return ReduceLROnPlateau(sched.factor, sched.patience, sched.min_lr, sched.min_delta, sched.cooldown,
                             monitor_mode(sched.mode, sched.monitor))
