"""The compiler: .dlspec text → validated IR, all errors collected. Imports neither TensorFlow nor PyTorch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import ast as A
from .diagnostics import Diagnostic, Diagnostics, SpecError
from .resolve import Overrides, resolve
from .spec import Spec
from .syntax import parse


@dataclass
class Compiled:
    spec: Spec | None
    diagnostics: Diagnostics
    source: str
    file: str
    tree: A.File | None = None  # the AST, for tools that point at spec positions after validation

    @property
    def ok(self) -> bool:
        return self.spec is not None and not self.diagnostics.errors

    def render(self, errors_only: bool = False) -> str:
        items = self.diagnostics.sorted()
        if errors_only:
            items = [d for d in items if d.severity == "error"]
        return "\n\n".join(d.render(self.source, self.file) for d in items)

    def raise_for_errors(self) -> Spec:
        if self.spec is None or not self.ok:
            raise SpecError(self.diagnostics.sorted(), self.source, self.file)
        return self.spec


def compile_text(text: str, file: str = "<spec>", base_dir: Path | None = None,
                 overrides: Overrides | None = None) -> Compiled:
    d = Diagnostics()
    tree = parse(text, d)
    syntax_errors = bool(d.errors)
    spec = None
    if tree is not None:
        spec = resolve(tree, d, base_dir or Path("."), overrides, had_syntax_errors=syntax_errors)
    return Compiled(spec, d, text, file, tree)


def compile_file(path: str | Path, overrides: Overrides | None = None) -> Compiled:
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        d = Diagnostics()
        d.add("E400", f"cannot read spec file '{path}': {getattr(e, 'strerror', None) or e}")
        return Compiled(None, d, "", str(path))
    return compile_text(text, str(path), p.resolve().parent, overrides)


__all__ = ["Compiled", "Diagnostic", "Diagnostics", "Spec", "SpecError", "compile_file", "compile_text"]
