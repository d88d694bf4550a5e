"""Diagnostics: every spec error carries a span, a code, what was expected and the nearest valid name.

Errors are collected in a `Diagnostics` list rather than raised one at a time, so a user sees every problem in
a file in one go. `SpecError` wraps a non-empty list when a caller wants to stop.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

# how many diagnostics a report shows; the rest are counted ("... and 19,950 more errors")
MAX_SHOWN = 50
# hints are computed when a diagnostic is added for the first EAGER_HINTS of a file; after that only when it
# is shown (a did-you-mean costs a fraction of a millisecond, which 20,000 bad names would multiply)
EAGER_HINTS = 200

Hint = str | Callable[[], str | None] | None


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
    # a hint not computed yet (see EAGER_HINTS): `hint_text` computes it
    lazy_hint: Callable[[], str | None] | None = field(default=None, repr=False, compare=False)
    # a line for the end of any report holding this diagnostic ("syntax checking stopped after 50 errors")
    note: str | None = field(default=None, compare=False)

    def hint_text(self) -> str | None:
        if self.hint is None and self.lazy_hint is not None:
            self.hint, self.lazy_hint = self.lazy_hint(), None
        return self.hint

    def render(self, source: str | None, file: str | None = None, lines: list[str] | None = None) -> str:
        """The diagnostic as shown to a user; `lines`: the source's lines, when the caller split them once."""
        file = escaped(file or self.file or "<spec>")
        head = f"{self.severity}[{self.code}]: {escaped(self.message)}"
        hint = self.hint_text()
        hint = escaped(hint) if hint else hint
        if self.span is None:
            tail = f"\n  = {hint}" if hint else ""
            return f"{head}\n --> {file}{tail}"
        line_no = self.span.line
        if lines is None:
            lines = source_lines(source)
        text = lines[line_no - 1] if 0 < line_no <= len(lines) else ""
        gutter = len(str(line_no))
        pad = " " * gutter
        if self.span.end_line == line_no and self.span.end_col > self.span.col:
            width = self.span.end_col - self.span.col
        else:
            width = max(1, len(text.rstrip()) - self.span.col + 1)
        text, col, width = _window(text, self.span.col, width)
        text, cells = _displayed(text)
        before = sum(cells[:col - 1]) + max(0, col - 1 - len(cells))  # (past the end: a cell a column)
        under = sum(cells[col - 1:col - 1 + width]) + max(0, col - 1 + width - max(len(cells), col - 1))
        caret = " " * before + "^" * max(1, under)
        if hint:
            caret += f" {hint}"
        return (
            f"{head}\n --> {file}:{line_no}:{self.span.col}\n{pad} |\n"
            f"{line_no} | {text}\n{pad} | {caret}"
        )


# a source line longer than this is shown as a window around the caret
MAX_LINE_SHOWN = 160


def source_lines(source: str | None) -> list[str]:
    """The lines as the parser counts them (at '\n' only: a form feed or U+2028 does not end a line)."""
    return [line.removesuffix("\r") for line in (source or "").split("\n")]


# the terminal's own controls (ESC starts a colour or a title change, BEL rings), invisible format characters
# (a zero-width space, a right-to-left override that reorders what is shown) and line separators: a quoted
# source line, a message or a file name shows them escaped, as Python writes them ('\x1b', '\u200b')
_UNSAFE = {"Cc", "Cf", "Zl", "Zp", "Cs"}
_KEPT = {"\u200d"}  # the zero-width joiner builds emoji sequences: shown as is
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
TAB_CELLS = 4  # a tab in a quoted source line is shown as this many spaces, so that the caret can follow it


def _escape(ch: str) -> str:
    """A character as Python's backslashreplace writes it: \x1b, \u200b, \U0001f600."""
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _unsafe(ch: str) -> bool:
    return unicodedata.category(ch) in _UNSAFE and ch not in _KEPT


def escaped(text: str) -> str:
    """`text` with the characters a terminal would act on or hide shown escaped (a message quoting a file
    name, a hint quoting the source)."""
    if text.isprintable():
        return text
    return "".join(_NAMED.get(c) or _escape(c) if _unsafe(c) else c for c in text)


def _displayed(text: str) -> tuple[str, list[int]]:
    """A source line as shown under its line number, and the terminal cells each of its characters takes
    there (the caret is placed by cells): escapes take their length, a tab TAB_CELLS, wide characters
    (CJK, emoji) 2, combining marks 0; a character the output's encoding cannot hold is escaped, as Python
    writes it to that output (`PYTHONIOENCODING=ascii`)."""
    if text.isascii() and text.isprintable():
        return text, [1] * len(text)
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    shown = [_shown_char(c, encoding) for c in text]
    return "".join(s for s, _ in shown), [n for _, n in shown]


@functools.lru_cache(maxsize=4096)
def _shown_char(ch: str, encoding: str) -> tuple[str, int]:
    """(what is shown for one source character, the cells it takes)."""
    if ch == "\t":
        return " " * TAB_CELLS, TAB_CELLS
    if ch.isascii() and ch.isprintable():
        return ch, 1
    if _unsafe(ch) or not _encodable(ch, encoding):
        esc = _escape(ch)
        return esc, len(esc)
    return ch, _char_cells(ch)


def text_cells(text: str) -> int:
    """The terminal cells a printable text takes (a plain-text table pads by them): wide characters (CJK,
    emoji) 2, combining marks 0, the rest 1."""
    return len(text) if text.isascii() else sum(_char_cells(c) for c in text)


def _char_cells(ch: str) -> int:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me") or ch in _KEPT:
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _encodable(ch: str, encoding: str) -> bool:
    try:
        ch.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _window(text: str, col: int, width: int) -> tuple[str, int, int]:
    """(text, col, width) of a line cut to MAX_LINE_SHOWN characters around the marked columns."""
    if len(text) <= MAX_LINE_SHOWN:
        return text, col, width
    start = max(0, min(col - 1 - 40, len(text) - MAX_LINE_SHOWN))
    end = start + MAX_LINE_SHOWN
    lead = "..." if start else ""
    shown = lead + text[start:end] + ("..." if end < len(text) else "")
    new_col = col - start + len(lead)
    return shown, new_col, max(1, min(width, end - (col - 1)))


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
    # (code, message, span) of every item: a diagnostic found twice (a block used twice) is kept once
    _keys: set[tuple] = field(default_factory=set, repr=False)
    # said before each message added (`when optimizer is SGD(lr=-1): `): see `prefixed`
    _prefix: str = field(default="", repr=False)

    def add(self, code: str, message: str, span: Span | None = None, hint: Hint = None,
            severity: str = "error") -> None:
        """Record a diagnostic; `hint` may be a function that computes it (called only when needed)."""
        message = _shortened(self._prefix + message)
        if span is not None and span.line in self.repaired_lines and not code.startswith("E0"):
            return
        key = (code, message, span)
        if key in self._keys:
            return
        self._keys.add(key)
        if callable(hint):
            d = Diagnostic(code, message, span, None, severity, lazy_hint=hint)
            if len(self.items) < EAGER_HINTS:
                d.hint_text()
        else:
            d = Diagnostic(code, message, span, hint, severity)
        self.items.append(d)

    @contextlib.contextmanager
    def prefixed(self, prefix: str) -> Iterator[None]:
        """Every message added inside says `prefix` first: an option of a search space bound as a trial would
        bind it, whose errors only the trials that draw it meet ("when optimizer is SGD(lr=-1): ...")."""
        outer, self._prefix = self._prefix, prefix
        try:
            yield
        finally:
            self._prefix = outer

    def warn(self, code: str, message: str, span: Span | None = None, hint: Hint = None) -> None:
        self.add(code, message, span, hint, severity="warning")

    def drop(self, item: Diagnostic) -> None:
        """Remove a diagnostic, to report it again in other words (options.py: at the option causing it)."""
        self.items.remove(item)
        self._keys.discard((item.code, item.message, item.span))

    def extend(self, other: Iterable[Diagnostic]) -> None:
        for d in other:
            self.add(d.code, d.message, d.span, d.hint if d.lazy_hint is None else d.lazy_hint, d.severity)

    @property
    def hints_wanted(self) -> bool:
        """Whether a hint computed now is still likely to be shown (see EAGER_HINTS)."""
        return len(self.items) < EAGER_HINTS

    @property
    def error_count(self) -> int:
        return sum(d.severity == "error" for d in self.items)

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


_LONG_QUOTED = re.compile(r"'([A-Za-z0-9_]{40})[A-Za-z0-9_]{20,}'")  # names only, never a path


def _shortened(message: str) -> str:
    """A message quoting a very long name (a 100,000-character identifier) shows its first 40 characters:
    the source line under it is cut already, and the message must stay one readable line."""
    return _LONG_QUOTED.sub(lambda m: f"'{m.group(1)}...' ({len(m.group(0)) - 2:,} characters)", message)


class _Missing:
    """A value that could not be converted: its error is already recorded, so whatever holds it is dropped
    without a second report."""


MISSING = _Missing()


class DlcError(Exception):
    """The base of every error dlc raises on purpose (a spec, data, run folder, training, backend or device
    problem), so that a notebook or script catches them all with `except dlc.Error` and lets its own bugs
    through. Exported as `dlc.Error`."""


class SpecError(DlcError):
    """Raised by API entry points when a spec has errors; carries all of them and the source to render."""

    def __init__(self, diagnostics: list[Diagnostic], source: str | None = None, file: str | None = None):
        self.diagnostics = diagnostics
        self.source = source
        self.file = file
        super().__init__(self.render())

    def render(self) -> str:
        return render_all(self.diagnostics, self.source, self.file)


def render_all(items: list[Diagnostic], source: str | None, file: str | None, limit: int = MAX_SHOWN) -> str:
    """The first `limit` diagnostics as shown to a user, then a count of the rest (`... and 19,950 more
    errors`), so that a file of 20,000 errors is answered in a screenful."""
    lines = source_lines(source)
    text = "\n\n".join(d.render(source, file, lines) for d in items[:limit])
    rest = items[limit:]
    if rest:
        n_err = sum(d.severity == "error" for d in rest)
        parts = [f"{n:,} more {word}{'s' if n != 1 else ''}"
                 for n, word in ((n_err, "error"), (len(rest) - n_err, "warning")) if n]
        text += "\n\n... and " + " and ".join(parts) + f" (only the first {limit} are shown)"
    for note in dict.fromkeys(d.note for d in items if d.note):
        text += f"\n\n... {note}"
    return text


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
