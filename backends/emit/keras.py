"""The model part of an emitted Keras script: the keras backend's own lowering of the spec, rendered."""

from __future__ import annotations

from dlc.backends.lowering import Context, render
from dlc.backends.network import network_expr
from dlc.compiler.checkshared import fused_output
from dlc.compiler.spec import Spec
from dlc.reference.metrics import stats_size

TARGET = "emit_keras"
LIBRARY = ("dlc.backends.keras.library",)

MODEL = '''class Model:
    """The Keras model, loss, optimizer and training steps dlc's keras backend builds for this spec."""

    def __init__(self, weights):
        keras.config.set_floatx(DTYPE)  # optimizer constants and lr variables follow floatx
        # the optimizer step, which keys the dropout masks
        step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.trainer = Trainer(
            {net},
            INPUT_SHAPE,
            {optimizer},
            {loss},
            task=TASK,
            n_stats={n_stats!r},
            weight_shapes={shapes},
            step=step,
            output={output!r},
            dtype=DTYPE,
            name={name!r},
        )
        self.trainer.set_weights(weights)

    def set_lr(self, lr):
        self.trainer.set_lr(lr)

    def train_epoch(self, x, y, perm):
        return self.trainer.train_epoch(self.trainer.load_data(x, y), perm, BATCH_SIZE)

    def evaluate(self, x, y):
        return self.trainer.evaluate(self.trainer.load_data(x, y), BATCH_SIZE)

    def get_weights(self):
        return self.trainer.get_weights()

    def set_weights(self, weights):
        self.trainer.set_weights(weights)'''


def model_code(spec: Spec) -> tuple[str, tuple[str, ...]]:
    ctx = Context(TARGET, spec)
    task = spec.task
    shapes = {i.layer.name: {w.name: tuple(w.shape) for w in i.weights} for i in spec.walk() if i.weights}
    code = MODEL.format(
        net=render(network_expr(spec, TARGET, container="network"), 12, used=1),
        optimizer=render(ctx.lower(spec.optimizer), 12, used=1),
        loss=render(ctx.lower(spec.loss), 12, used=1),
        n_stats=stats_size(task, spec.output_shape()[-1], [m.name for m in spec.metrics]),
        shapes=render(shapes, 12, used=len("weight_shapes=,")),
        output=fused_output(spec), name=spec.name)
    return code, LIBRARY
