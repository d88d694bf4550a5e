"""The Keras half of `dlc compile --emit keras`: a Keras 3 model with Keras' own layers, regularizers and optimizers,
dlc's hashed dropout as the one custom layer, and a tf.function train step (see dlc/emit.py for the shared parts)."""

from __future__ import annotations

from .compiler.checks import final_activation
from .compiler.spec import Spec
from .rng import dropout_base


def _reg(r) -> str:
    if r is None:
        return "None"
    if r.name == "l1":
        return f"keras.regularizers.L1({r.l1!r})"
    if r.name == "l2":
        return f"keras.regularizers.L2({r.l2!r})"
    return f"keras.regularizers.L1L2(l1={r.l1!r}, l2={r.l2!r})"


def _act(name: str) -> str:
    return "keras.activations.silu" if name == "swish" else repr(name)


def _optimizer(o) -> str:
    lr = float(o.learning_rate)
    if o.kind == "SGD":
        return f"keras.optimizers.SGD({lr!r}, momentum={o.momentum!r}, nesterov={o.nesterov!r})"
    if o.kind == "RMSprop":
        return f"keras.optimizers.RMSprop({lr!r}, rho={o.rho!r}, momentum={o.momentum!r}, epsilon={o.epsilon!r})"
    return f"keras.optimizers.Adam({lr!r}, beta_1={o.beta_1!r}, beta_2={o.beta_2!r}, epsilon={o.epsilon!r})"


LOSS = {
    "categorical_crossentropy": "tf.nn.softmax_cross_entropy_with_logits(y, out)",
    "sparse_categorical_crossentropy": "tf.nn.sparse_softmax_cross_entropy_with_logits(y, out)",
    "binary_crossentropy": "tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(y, out), axis=-1)",
    "mse": "tf.reduce_mean(tf.square(y - out), axis=-1)",
    "mae": "tf.reduce_mean(tf.abs(y - out), axis=-1)",
}

DROPOUT = '''M32 = 0xFFFFFFFF


def mul32(x, c):
    """(x * c) mod 2^32 in int64 arithmetic (the multiplicand split in 16-bit halves)."""
    lo, hi = c & 0xFFFF, c >> 16
    high = tf.bitwise.left_shift(tf.bitwise.bitwise_and(x * hi, tf.constant(0xFFFF, tf.int64)), tf.constant(16, tf.int64))
    return tf.bitwise.bitwise_and(x * lo + high, tf.constant(M32, tf.int64))


def fmix32(x):
    """The lowbias32 hash finalizer on int64 tensors."""
    def xorshift(x, n):
        return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(n, tf.int64)))
    x = mul32(xorshift(x, 16), 0x7FEB352D)
    x = mul32(xorshift(x, 15), 0x846CA68B)
    return xorshift(x, 16)


class HashDropout(keras.layers.Layer):
    """Inverted dropout with dlc's hash mask: keep element i where fmix32(i ^ fmix32(base ^ step)) >> 8 >= threshold
    (i counts the elements in channels-last order; step is the optimizer step)."""

    def __init__(self, rate, base, step, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.base, self.step = rate, base, step
        self.threshold = math.ceil(rate * (1 << 24))
        self.scale = 1.0 / (1.0 - rate)

    def call(self, x, training=False):
        if not training or self.rate == 0:
            return x
        idx = tf.bitwise.bitwise_and(tf.range(tf.size(x, out_type=tf.int64), dtype=tf.int64), tf.constant(M32, tf.int64))
        step = tf.bitwise.bitwise_and(tf.convert_to_tensor(self.step), tf.constant(M32, tf.int64))
        key = fmix32(tf.bitwise.bitwise_xor(tf.constant(self.base, tf.int64), step))
        hashed = tf.bitwise.right_shift(fmix32(tf.bitwise.bitwise_xor(idx, key)), tf.constant(8, tf.int64))
        keep = tf.reshape(hashed >= self.threshold, tf.shape(x))
        return tf.where(keep, x * tf.constant(self.scale, x.dtype), tf.zeros((), x.dtype))


'''


def emit_keras(spec: Spec) -> tuple[str, str]:
    final = final_activation(spec)
    fused = type(spec.loss).output_activation == final and final in ("softmax", "sigmoid")
    last = spec.layers[-1].name
    task = type(spec.loss).task
    k = spec.output_shape()[-1]
    uses_dropout = any(info.layer.kind == "Dropout" for info in spec.walk())
    L = ["# -------------------------------------------------------------------------------------------------- model",
         "", ""]
    if uses_dropout:
        L.append(DROPOUT.rstrip("\n"))
        L += ["", ""]
    L += ["def build_model(step):",
          '    """The Keras model; the last activation is left to the loss (from logits) when it is fused."""',
          f"    inputs = keras.Input({tuple(spec.input)!r}, dtype=DTYPE)",
          "    x = inputs"]
    for info in spec.walk():
        layer, name, kind = info.layer, info.layer.name, info.layer.kind
        act = getattr(layer, "activation", None)
        act_name = act.name if act is not None else None
        if fused and name == last and act_name is not None:
            act_name = "linear"
        common = f"dtype=DTYPE, name={name!r}"
        if kind in ("Dense", "Conv2D"):
            kw = (f"activation={_act(act_name)}, use_bias={layer.use_bias!r}, "
                  f"kernel_regularizer={_reg(layer.kernel_reg)}, bias_regularizer={_reg(layer.bias_reg)}, {common}")
            if kind == "Dense":
                expr = f"keras.layers.Dense({layer.units}, {kw})"
            else:
                expr = (f"keras.layers.Conv2D({layer.filters}, {layer.kernel_size!r}, strides={layer.strides!r}, "
                        f"padding={layer.padding!r}, {kw})")
        elif kind == "MaxPool2D":
            expr = (f"keras.layers.MaxPooling2D({layer.pool_size!r}, strides={layer.strides!r}, "
                    f"padding={layer.padding!r}, {common})")
        elif kind == "Flatten":
            expr = f"keras.layers.Flatten({common})"
        elif kind == "Dropout":
            expr = f"HashDropout({layer.rate!r}, {dropout_base(spec.seed, info.index)}, step, {common})"
        elif kind == "Activation":
            expr = f"keras.layers.Activation({_act(act_name)}, {common})"
        elif kind == "BatchNorm":
            expr = (f"keras.layers.BatchNormalization(momentum={layer.momentum!r}, epsilon={layer.epsilon!r}, "
                    f"center={layer.center!r}, scale={layer.scale!r}, {common})")
        else:  # pragma: no cover - _check rejects it first
            raise ValueError(kind)
        L.append(f"    x = {expr}(x)  # {tuple(info.in_shape)} -> {tuple(info.out_shape)}")
    if fused:
        L.append(f"    # the final {final} is applied inside the loss (from logits)")
    L += ["    return keras.Model(inputs, x)", "", ""]
    L += ["class Model:",
          '    """The Keras model, its loss and optimizer: what one training step and one evaluation need."""', "",
          "    def __init__(self, weights):",
          "        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)  # keys the dropout masks",
          "        self.model = build_model(self.step)",
          "        self.set_weights(weights)",
          f"        self.opt = {_optimizer(spec.optimizer)}",
          "        self.opt.build(self.model.trainable_variables)",
          "        self.train_step = self.eval_step = None", "",
          "    def set_lr(self, lr):", "        self.opt.learning_rate = float(lr)", "",
          "    def set_weights(self, weights):",
          "        for lname, ws in weights.items():",
          "            for wname, arr in ws.items():",
          "                getattr(self.model.get_layer(lname), wname).assign(arr.astype(DTYPE))", "",
          "    def get_weights(self):",
          f"        names = {[(i.layer.name, [w.name for w in i.weights]) for i in spec.walk() if i.weights]!r}",
          "        return {ln: {wn: np.array(getattr(self.model.get_layer(ln), wn).numpy(), dtype=np.float64)",
          "                     for wn in wns} for ln, wns in names}", "",
          "    def loss(self, y, out):",
          f'        """{spec.loss.name}, mean over the batch."""',
          f"        return tf.reduce_mean({LOSS[spec.loss.name]})", "",
          "    def regularization(self):",
          '        """The layers\' kernel/bias penalties (Keras\' regularizers), or None."""',
          "        losses = self.model.losses",
          "        return tf.add_n(losses) if losses else None", "",
          "    def stats(self, y, out):"]
    if task == "regression":
        size = "(3,)"
        L += ['        """[Σ(y−ŷ)², Σ|y−ŷ|, count] for the regression metrics."""',
              "        err = y - out",
              ("        return tf.stack([tf.reduce_sum(err * err), tf.reduce_sum(tf.abs(err)), "
              "tf.cast(tf.size(err), out.dtype)])")]
    else:
        L.append('        """The confusion matrix (rows: true class, columns: predicted)."""')
        if task == "binary":
            size, kk = "(2, 2)", 2
            L += [f"        pred = tf.cast(tf.reshape(out > {0.0 if fused else 0.5}, [-1]), tf.int64)",
                  "        true = tf.cast(tf.reshape(y, [-1]), tf.int64)"]
        else:
            size, kk = f"({k}, {k})", k
            L += ["        pred = tf.argmax(out, axis=-1)",
                  "        true = tf.cast(y, tf.int64) if len(y.shape) == 1 else tf.argmax(y, axis=-1)"]
        L += [(f"        cm = tf.math.bincount(true * {kk} + pred, minlength={kk * kk}, maxlength={kk * kk}, "
              "dtype=out.dtype)"),
              f"        return tf.reshape(cm, ({kk}, {kk}))"]
    L += ["",
          "    def make_steps(self, x, y):",
          '        """One traced train step (gather a batch, loss + penalties, gradients, optimizer.apply) and one',
          '        evaluation step; the batch dimension is left open so the last, smaller batch reuses the graph."""',
          "        model, opt, variables = self.model, self.opt, self.model.trainable_variables",
          f"        stats = self.stats_var = tf.Variable(tf.zeros({size}, dtype=DTYPE), trainable=False)",
          "        xs = tf.TensorSpec([None, *x.shape[1:]], x.dtype)",
          "        ys = tf.TensorSpec([None, *y.shape[1:]], y.dtype)", "",
          "        @tf.function(input_signature=[xs, ys, tf.TensorSpec([None], tf.int64)])",
          "        def train_step(x, y, idx):",
          "            xb, yb = tf.gather(x, idx), tf.gather(y, idx)",
          "            with tf.GradientTape() as tape:",
          "                out = model(xb, training=True)",
          "                loss = self.loss(yb, out)",
          "                reg = self.regularization()",
          "                if reg is not None:",
          "                    loss = loss + reg",
          "            opt.apply(tape.gradient(loss, variables), variables)",
          "            self.step.assign_add(1)",
          "            stats.assign_add(self.stats(yb, out))",
          "            return loss", "",
          "        @tf.function(input_signature=[xs, ys])",
          "        def eval_step(xb, yb):",
          "            out = model(xb, training=False)",
          "            return self.loss(yb, out) * tf.cast(tf.shape(xb)[0], out.dtype), self.stats(yb, out)", "",
          "        self.train_step, self.eval_step = train_step, eval_step", "",
          "    def tensors(self, x, y):",
          ("        return tf.constant(x.astype(DTYPE)), tf.constant(y) if y.dtype.kind in 'iu' else "
          "tf.constant(y.astype(DTYPE))"), "",
          "    def train_epoch(self, x, y, perm):",
          '        """One epoch of steps over the batches of `perm`; per-step losses, metric statistics, batch sizes."""',
          "        x, y = self.tensors(x, y)",
          "        if self.train_step is None:",
          "            self.make_steps(x, y)",
          "        n = len(perm)",
          "        steps = -(-n // BATCH_SIZE)",
          f"        self.stats_var.assign(tf.zeros({size}, dtype=DTYPE))",
          "        sizes = np.array([min(BATCH_SIZE, n - i * BATCH_SIZE) for i in range(steps)], dtype=np.float64)",
          "        perm = tf.constant(perm, dtype=tf.int64)",
          "        losses = [self.train_step(x, y, perm[i * BATCH_SIZE:(i + 1) * BATCH_SIZE]) for i in range(steps)]",
          "        return tf.stack(losses).numpy().astype(np.float64), self.stats_var.numpy().astype(np.float64), sizes",
          "",
          "    def evaluate(self, x, y):",
          '        """Mean loss (plus the penalties) and metric statistics over batches, in inference mode."""',
          "        x, y = self.tensors(x, y)",
          "        if self.eval_step is None:",
          "            self.make_steps(x, y)",
          "        n = int(x.shape[0])",
          f"        total, stats = 0.0, np.zeros({size})",
          "        for i in range(0, n, BATCH_SIZE):",
          "            loss, st = self.eval_step(x[i:i + BATCH_SIZE], y[i:i + BATCH_SIZE])",
          "            total += float(loss)",
          "            stats = stats + st.numpy()",
          "        reg = self.regularization()",
          "        return total / n + (float(reg) if reg is not None else 0.0), stats", "", ""]
    imports = ("import os\n\nos.environ.setdefault(\"TF_CPP_MIN_LOG_LEVEL\", \"2\")\n\nimport keras\n"
               "import tensorflow as tf\n\n"
               f"DTYPE = {spec.dtype!r}\nkeras.config.set_floatx(DTYPE)  # optimizer constants follow floatx\n")
    return imports, "\n".join(L)
