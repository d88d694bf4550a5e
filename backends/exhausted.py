"""Out of memory, in one line whichever library ran out: numpy (drawing the initial weights), PyTorch (CPU or
CUDA) and TensorFlow each say it in their own words (an allocator's assert, a `ResourceExhaustedError` with
its op's graph name), which a user would otherwise get raw. Recognised by type name and text, so that this
module imports no framework."""

from __future__ import annotations

import re

_UNITS = (("GB", 1e9), ("MB", 1e6), ("kB", 1e3))

_TF_DTYPES = {"float": "float32", "double": "float64", "half": "float16", "bfloat16": "bfloat16",
              "int32": "int32", "int64": "int64", "uint8": "uint8", "bool": "bool"}


def _size(n: int) -> str:
    for unit, scale in _UNITS:
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def _shape(text: str) -> str:
    dims = [d for d in re.split(r"[,\s]+", text.strip("()[] ")) if d]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _numpy(text: str) -> str | None:
    m = re.search(r"Unable to allocate ([\d.]+ \w+) for an array with shape (\([^)]*\)) and data type (\w+)",
                  text)
    if m is None:
        return None
    return f"could not allocate {m[1]} for a {m[3]} array of shape {_shape(m[2])}"


def _torch(text: str) -> str | None:
    if m := re.search(r"you tried to allocate (\d+) bytes", text):
        return f"PyTorch could not allocate {_size(int(m[1]))} on the CPU"
    if m := re.search(r"CUDA out of memory\. Tried to allocate ([\d.]+ \w+)", text):
        gpu = re.search(r"GPU (\d+)", text)
        free = re.search(r"of which ([\d.]+ \w+) is free", text)
        where = f"cuda:{gpu[1]}" if gpu else "the GPU"
        return f"PyTorch could not allocate {m[1]} on {where}" + (f" ({free[1]} free)" if free else "")
    return None


def _tensorflow(text: str) -> str | None:
    m = re.search(r"OOM when allocating tensor with shape\s*\[([^\]]*)\] and type (\w+) "
                  r"on \S*?device:(\w+:\d+)", text)
    if m is None:
        return None
    dtype = _TF_DTYPES.get(m[2], m[2])
    return f"TensorFlow could not allocate a {dtype} tensor of shape {_shape(m[1])} on {m[3]}"


def out_of_memory(exc: BaseException) -> str | None:
    """What ran out, in dlc's words (`PyTorch could not allocate 256 MB on the CPU`; "" when the error says
    no more than that memory ran out), when `exc` is an allocation failure of numpy, PyTorch or TensorFlow;
    None for any other error."""
    text = str(exc)
    if isinstance(exc, MemoryError):
        return _numpy(text) or ""
    named = type(exc).__name__ in ("OutOfMemoryError", "ResourceExhaustedError")
    if not (named or isinstance(exc, RuntimeError)):
        return None
    if found := _torch(text) or _tensorflow(text):
        return found
    said = text.lower()
    if named or "out of memory" in said or "can't allocate memory" in said or "not enough memory" in said:
        return text.strip().splitlines()[0] if text.strip() else ""
    return None


def out_of_memory_line(what: str) -> str:
    """The whole error line for an allocation failure."""
    return f"out of memory{': ' + what if what else ''}; try a smaller batch_size or model"
