"""Output that a terminal or pipe without UTF-8 can take (PYTHONIOENCODING=ascii, a latin-1 locale, an old
serial console): dlc's text uses ±, ×, →, —, ≤, Δ, ✓ and rich draws boxes, which such a stream cannot
encode; Python would raise UnicodeEncodeError in the middle of a help page or a table. The standard streams
are set to write each such character as its ASCII look-alike instead (± as +/-, → as ->), any other as '?'.
"""

from __future__ import annotations

import codecs
import contextlib
import sys
import unicodedata

HANDLER = "dlc-ascii-lookalike"

LOOKALIKES = {
    "±": "+/-", "×": "x", "·": "*", "→": "->", "←": "<-", "⇒": "=>", "—": "-", "–": "-", "…": "...",
    "≤": "<=", "≥": ">=", "≠": "!=", "≈": "~", "Δ": "delta", "µ": "u", "μ": "u", "σ": "sigma", "✓": "Y",
    "✗": "N", "•": "*", "‘": "'", "’": "'", "“": '"', "”": '"', "\u00a0": " ", "━": "-", "╺": "-", "╸": "-",
    "─": "-", "│": "|", "╭": "+", "╮": "+", "╰": "+", "╯": "+", "²": "^2", "√": "sqrt", "∞": "inf",
}


def lookalike(char: str) -> str:
    """The ASCII text shown for `char`: its look-alike, its letters without accents (é as e), else '?'."""
    if char in LOOKALIKES:
        return LOOKALIKES[char]
    plain = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode()
    return plain or "?"


def encodable(text: str, stream) -> str:
    """`text` as `stream` will write it: with look-alikes for what its encoding lacks (to measure a table's
    columns by what is shown)."""
    if _encodes(stream, text):
        return text
    return "".join(c if _encodes(stream, c) else lookalike(c) for c in text)


def _replace(err: UnicodeError) -> tuple[str, int]:
    if not isinstance(err, UnicodeEncodeError):
        raise err
    return "".join(lookalike(c) for c in err.object[err.start:err.end]), err.end


def _encodes(stream, text: str) -> bool:
    try:
        text.encode(getattr(stream, "encoding", None) or "utf-8")
    except UnicodeEncodeError:
        return False
    except LookupError:  # an encoding Python does not know: leave the stream as it is
        return True
    return True


def make_streams_safe() -> None:
    """stdout and stderr write what their encoding lacks as ASCII look-alikes (a UTF-8 stream is left as
    it is; a stream that cannot be reconfigured, such as the tests' StringIO, too)."""
    try:
        codecs.lookup_error(HANDLER)
    except LookupError:
        codecs.register_error(HANDLER, _replace)
    for stream in (sys.stdout, sys.stderr):
        if stream is None or _encodes(stream, "".join(LOOKALIKES)):
            continue
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(errors=HANDLER)  # type: ignore[union-attr]
