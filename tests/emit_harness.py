"""Run emitted training scripts in one process (a framework imports once, not once per script): for every
`*.py` in DIR, load it as a module, train its model for at most EPOCHS epochs on every split it loads, and
write `{script stem: per-step losses}` to OUT as JSON. Used by tests/test_emit.py."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path


def run(script: Path, epochs: int) -> list[float]:
    ns = runpy.run_path(str(script), run_name="emitted")
    losses: list[float] = []
    for train_part, val_part, _test in ns["load_data"]():
        model = ns["Model"](ns["initial_weights"]())
        ns["train"](model, train_part, val_part, min(epochs, ns["EPOCHS"]), losses)
    return losses


def main() -> None:
    folder, epochs, out = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    results: dict[str, list[float] | str] = {}
    for script in sorted(folder.glob("*.py")):
        try:
            results[script.stem] = run(script, epochs)
        except Exception as e:  # noqa: BLE001 - reported per script, the others still run
            results[script.stem] = f"{type(e).__name__}: {e}"
    out.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
