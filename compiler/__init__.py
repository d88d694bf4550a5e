"""The compiler: .dlspec text → validated IR, all errors collected. Imports neither TensorFlow nor PyTorch."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from . import ast as A
from .diagnostics import Diagnostic, Diagnostics, Span, SpecError, render_all
from .options import check_each_option
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
        return render_all(items, self.source, self.file)

    def __repr__(self) -> str:
        """The file, its verdict and its spec in a line: the dataclass' repr held the whole source text and
        the syntax tree (6 KB for iris)."""
        items = self.diagnostics.items
        errors, warnings = (sum(d.severity == kind for d in items) for kind in ("error", "warning"))
        said = [f"{n} {word}{'s' * (n != 1)}" for n, word in ((errors, "error"), (warnings, "warning")) if n]
        verdict = ("ok" if self.ok else "not ok") + (f", {', '.join(said)}" if said else "")
        return f"Compiled({self.file!r}: {verdict}" + (f"; {self.spec!r})" if self.spec is not None else ")")

    def raise_for_errors(self) -> Spec:
        if self.spec is None or not self.ok:
            raise SpecError(self.diagnostics.sorted(), self.source, self.file)
        return self.spec


def compile_text(text: str, file: str = "<spec>", base_dir: Path | None = None,
                 overrides: Overrides | None = None) -> Compiled:
    d = Diagnostics()
    if "\r" in text:  # a lone CR ends a line too (old Mac files), as it does in Python and in editors
        text = re.sub(r"\r(?!\n)", "\n", text)
    tree = parse(text, d)
    # (a number that overflows is reported while reading, but is no syntax error: the other checks still run)
    syntax_errors = any(x.code.startswith("E0") for x in d.errors)
    spec = None
    if tree is not None:
        try:
            spec = resolve(tree, d, base_dir or Path("."), overrides, had_syntax_errors=syntax_errors)
            if spec is not None and overrides is None and not syntax_errors:  # (not for a trial's spec)
                check_each_option(tree, spec, d, base_dir or Path("."))
        except RecursionError:  # (the nesting limits keep a spec well inside Python's stack: a last resort)
            d.add("E210", "the spec is nested too deeply to check", None,
                  "fewer levels of blocks, residual blocks and brackets")
            spec = None
    return Compiled(spec, d, text, file, tree)


# the largest spec file read: a spec is a few kilobytes, and the parser reads about 100 KB a second (a bigger
# file is refused before it is read)
MAX_SPEC_BYTES = 256 * 1024


def compile_file(path: str | Path, overrides: Overrides | None = None) -> Compiled:
    p = Path(path)
    text, problem = read_spec(p)
    if problem is not None:
        d = Diagnostics()
        if isinstance(problem, tuple):
            d.add("E400", *problem)
        else:
            d.add("E400", f"cannot read spec file '{path}': {problem}")
        return Compiled(None, d, text or "", str(path))
    assert text is not None
    return compile_text(text, str(path), p.resolve().parent, overrides)


def read_spec(p: Path) -> tuple[str | None, str | tuple[str, Span, str] | None]:
    """(text, None), or (text or None, why it cannot be compiled): a plain reason, or a positioned one
    (message, span, hint) for text that is not UTF-8. Only a regular file is opened (a FIFO would block, a
    device never end), and no more than MAX_SPEC_BYTES + 1 bytes are read."""
    try:
        st = os.stat(p)
        if stat.S_ISDIR(st.st_mode):
            return None, "it is a directory"
        if not stat.S_ISREG(st.st_mode):
            return None, "not a regular file (a spec is read from a file, not a device, pipe or socket)"
        if st.st_size > MAX_SPEC_BYTES:
            return None, f"the file has {st.st_size:,} bytes; a spec may have at most {MAX_SPEC_BYTES:,}"
        with open(p, "rb") as fh:  # (a file that grows after the check is cut at the limit)
            data = fh.read(MAX_SPEC_BYTES + 1)
    except OSError as e:
        return None, e.strerror or str(e)
    if len(data) > MAX_SPEC_BYTES:
        return None, f"the file has more than {MAX_SPEC_BYTES:,} bytes; a spec may have at most that many"
    try:
        return data.decode("utf-8").removeprefix("\ufeff"), None
    except UnicodeDecodeError as e:
        before = data[:e.start].decode("utf-8", errors="replace")
        line = before.count("\n") + 1
        col = len(before) - (before.rfind("\n") + 1) + 1
        text = data.decode("utf-8", errors="replace")
        return text, (f"cannot read spec file '{p}': it is not UTF-8 text (byte 0x{data[e.start]:02X})",
                      Span(line, col, line, col + 1), "save the file as UTF-8")


__all__ = ["Compiled", "Diagnostic", "Diagnostics", "Spec", "SpecError", "compile_file", "compile_text"]
