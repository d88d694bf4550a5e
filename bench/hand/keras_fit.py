"""Hand-written Keras: the seed MLP on bench/data/mnist_synth.npz, a seeded 90/10 split, `model.fit`, then the
validation metrics. What one would write; the whole-process baseline of bench/bench_process.py.

    python bench/hand/keras_fit.py [--epochs 5]"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import numpy as np  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--epochs", type=int, default=5)
ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "data", "mnist_synth.npz"))
args = ap.parse_args()
with np.load(args.data) as f:
    x, y = f["x"], f["y"]
perm = np.random.default_rng(42).permutation(len(x))
n_val = len(x) // 10
xv, yv, xt, yt = x[perm[:n_val]], y[perm[:n_val]], x[perm[n_val:]], y[perm[n_val:]]
keras.utils.set_random_seed(42)
model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(512, activation="relu"),
                          keras.layers.Dropout(0.3), keras.layers.Dense(10, activation="softmax")])
model.compile(optimizer=keras.optimizers.RMSprop(0.001), loss="categorical_crossentropy",
              metrics=["accuracy"])
t = time.perf_counter()
yv1 = keras.utils.to_categorical(yv, 10)
model.fit(xt, keras.utils.to_categorical(yt, 10), batch_size=128, epochs=args.epochs, shuffle=True, verbose=0,
          validation_data=(xv, yv1))
print(f"train {time.perf_counter() - t:.2f} s", model.evaluate(xv, yv1, verbose=0))
