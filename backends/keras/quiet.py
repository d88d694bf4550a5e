"""Imports TensorFlow and Keras with their start-up notices silenced; library.py and session.py import this
first.

TensorFlow's native libraries print start-up notices on stderr (absl and oneDNN lines) before any log level
applies; they are silenced here by pointing file descriptor 2 elsewhere while TensorFlow is first imported, so
a failing `dlc run --backend keras` still prints exactly one line. (Not in the package's __init__: lower.py,
in the same package, must import no framework.)
"""

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator

# TensorFlow's native ERROR lines too (level 3): grappler's "remapper failed" and oneDNN's notices come
# from runs that succeed; a real failure reaches dlc as a Python exception and is reported as one line
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _import_tensorflow_quietly() -> None:
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null, _without_sklearn():
            os.dup2(null.fileno(), 2)
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _without_sklearn() -> Iterator[None]:
    """In the `dlc` command's process (dlc.backends.COMMAND), scikit-learn hidden while Keras is imported:
    Keras imports it (0.7-1.1 s of a 6 s iris run) for its scikit-learn wrappers alone, which the command
    never uses, and defines them without it (`import sklearn` fails: keras.wrappers' own fallback).
    scikit-learn imports as usual afterwards. A notebook or script importing dlc keeps Keras' wrappers
    whole."""
    from dlc import backends

    if not backends.COMMAND or "sklearn" in sys.modules:
        yield
        return
    sys.modules["sklearn"] = None  # type: ignore[assignment]  # (an import of it raises ImportError)
    try:
        yield
    finally:
        if "sklearn" in sys.modules and sys.modules["sklearn"] is None:
            del sys.modules["sklearn"]


_import_tensorflow_quietly()

# Keras' Python warnings about a spec that dlc's own check already words (W011: a softmax over one value):
# printed raw they would give the user a file path inside Keras instead of the spec's line
warnings.filterwarnings("ignore", message=r"You are using a softmax over axis", category=UserWarning)
