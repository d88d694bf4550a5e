"""Diagnostics: every spec error carries a span, a code, what was expected and the nearest valid name.

Errors are collected in a `Diagnostics` list rather than raised one at a time, so a user sees every problem in
a file in one go. `SpecError` wraps a non-empty list when a caller wants to stop.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Span:
    """A 1-based (line, column) range in a spec file; end is exclusive on the same line when on one line."""

    line: int
    col: int
    end_line: int
    end_col: int

    @staticmethod
    def of_token(tok) -> Span:
        return Span(tok.line, tok.column, tok.end_line or tok.line, tok.end_column or tok.column + len(tok))


@dataclass
class Diagnostic:
    code: str
    message: str
    span: Span | None = None
    hint: str | None = None  # printed after the caret: "did you mean 'relu'?"
    severity: str = "error"
    file: str | None = None

    def render(self, source: str | None, file: str | None = None) -> str:
        file = file or self.file or "<spec>"
        head = f"{self.severity}[{self.code}]: {self.message}"
        if self.span is None:
            tail = f"\n  = {self.hint}" if self.hint else ""
            return f"{head}\n --> {file}{tail}"
        line_no = self.span.line
        lines = (source or "").splitlines()
        text = lines[line_no - 1] if 0 < line_no <= len(lines) else ""
        gutter = len(str(line_no))
        pad = " " * gutter
        if self.span.end_line == line_no and self.span.end_col > self.span.col:
            width = self.span.end_col - self.span.col
        else:
            width = max(1, len(text.rstrip()) - self.span.col + 1)
        caret = " " * (self.span.col - 1) + "^" * max(1, width)
        if self.hint:
            caret += f" {self.hint}"
        return (
            f"{head}\n --> {file}:{line_no}:{self.span.col}\n{pad} |\n"
            f"{line_no} | {text}\n{pad} | {caret}"
        )


@dataclass
class Diagnostics:
    """An ordered, de-duplicated collection of diagnostics for one file."""

    items: list[Diagnostic] = field(default_factory=list)
    # lines that syntax recovery rewrote (a bracket it closed): a later, non-syntax finding there would be
    # about the repair rather than the file, so it is dropped
    repaired_lines: set[int] = field(default_factory=set)
    # blocks whose header line could not be read ("*": a header of unknown name was lost): their uses are not
    # reported as unknown layers
    recovered_blocks: set[str] = field(default_factory=set)

    def add(self, code: str, message: str, span: Span | None = None, hint: str | None = None,
            severity: str = "error") -> None:
        if span is not None and span.line in self.repaired_lines and not code.startswith("E0"):
            return
        d = Diagnostic(code, message, span, hint, severity)
        key = (d.code, d.message, d.span)
        if all((x.code, x.message, x.span) != key for x in self.items):
            self.items.append(d)

    def warn(self, code: str, message: str, span: Span | None = None, hint: str | None = None) -> None:
        self.add(code, message, span, hint, severity="warning")

    def extend(self, other: Iterable[Diagnostic]) -> None:
        for d in other:
            self.add(d.code, d.message, d.span, d.hint, d.severity)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "warning"]

    def sorted(self) -> list[Diagnostic]:
        return sorted(self.items, key=lambda d: (d.span.line, d.span.col) if d.span else (0, 0))

    def __bool__(self) -> bool:
        return bool(self.items)


class SpecError(Exception):
    """Raised by API entry points when a spec has errors; carries all of them and the source to render."""

    def __init__(self, diagnostics: list[Diagnostic], source: str | None = None, file: str | None = None):
        self.diagnostics = diagnostics
        self.source = source
        self.file = file
        super().__init__(self.render())

    def render(self) -> str:
        return "\n\n".join(d.render(self.source, self.file) for d in self.diagnostics)


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate, case-insensitively, as a hint string, or None."""
    cands = list(dict.fromkeys(candidates))
    lowered = {c.lower(): c for c in cands}
    if word.lower() in lowered and lowered[word.lower()] != word:
        return f"did you mean '{lowered[word.lower()]}'?"
    # a word that begins several names (`glorot`): offer them all rather than an arbitrary one
    starts = [c for c in cands if c.lower().startswith(word.lower())] if len(word) >= 3 else []
    if 2 <= len(starts) <= 3:
        return "did you mean " + ", ".join(f"'{c}'" for c in starts[:-1]) + f" or '{starts[-1]}'?"
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    if match:
        return f"did you mean '{lowered[match[0]]}'?"
    return None
