"""What every `--json` prints: strict JSON. JSON has no NaN or Infinity (jq and most parsers refuse them),
so a non-finite number (the loss of a diverged run) is written as null; every other value is written as
`json.dumps` writes it."""

from __future__ import annotations

import json
import math
from typing import Any


def strict(obj: Any) -> Any:
    """`obj` with every non-finite float, at any depth of dicts, lists and tuples, as None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """`obj` as strict JSON (json.dumps' keyword arguments, such as indent, pass through)."""
    return json.dumps(strict(obj), allow_nan=False, **kwargs)


def print_json(obj: Any, **kwargs: Any) -> None:
    """Print `obj` as strict JSON on stdout."""
    print(dumps(obj, **kwargs))
