"""`dlc compile SPEC --emit torch|keras`: see backends/emit/script.py (the emitted scripts are two more targets
of the lowering registry)."""

from __future__ import annotations

from .backends.emit.script import EmitUnsupported, emit

__all__ = ["EmitUnsupported", "emit"]
