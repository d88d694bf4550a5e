"""Parse .dlspec text into the AST, collecting every syntax error in the file.

LALR with a contextual lexer gives precise "expected ..." sets. To report more than the first syntax error, a
failing line is blanked (keeping line numbers) and the file parsed again, up to a limit.
"""

from __future__ import annotations

import functools
from importlib import resources

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from . import ast as A
from .diagnostics import Diagnostics, Span

_OPEN = {"LPAR", "LSQB"}
_CLOSE = {"RPAR", "RSQB"}

_TERMINAL_WORDS = {
    "NAME": "a name",
    "INT": "an integer",
    "SIGNED_NUMBER": "a number",
    "STRING": "a string",
    "_NL": "end of line",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "COLON": "':'",
    "COMMA": "','",
    "EQUAL": "'='",
    "STAR": "'*'",
    "MODEL": "'model'",
    "BLOCK": "'block'",
    "$END": "end of file",
}


class _NewlinePostLex:
    """Drops newlines inside brackets and collapses runs of newlines (comments split them)."""

    always_accept = ("_NL",)

    def process(self, stream):
        depth = 0
        last_nl = False
        for tok in stream:
            if tok.type in _OPEN:
                depth += 1
            elif tok.type in _CLOSE:
                depth = max(0, depth - 1)
            if tok.type == "_NL":
                if depth > 0 or last_nl:
                    continue
                last_nl = True
            else:
                last_nl = False
            yield tok


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    text = resources.files("dlc.grammar").joinpath("dlspec.lark").read_text()
    return Lark(text, parser="lalr", postlex=_NewlinePostLex(), propagate_positions=True, maybe_placeholders=True)


def _span(meta) -> Span:
    return Span(meta.line, meta.column, meta.end_line, meta.end_column)


def _tok(t: Token) -> Span:
    return Span.of_token(t)


@v_args(meta=True)
class _ToAst(Transformer):
    def start(self, meta, items):
        f = A.File()
        for it in items:
            (f.models if isinstance(it, A.Model) else f.blocks).append(it)
        return f

    def model(self, meta, items):
        name, body = items
        return A.Model(str(name), _tok(name), body, _span(meta))

    def block_def(self, meta, items):
        name, *rest = items
        body = rest[-1]
        params = [A.Name(str(p), _tok(p)) for p in rest[:-1] if p is not None]
        return A.BlockDef(str(name), _tok(name), params, body, _span(meta))

    def body(self, meta, items):
        return [i for i in items if i is not None]

    def assign(self, meta, items):
        key, value = items
        return A.Assign(str(key), _tok(key), value, _span(meta))

    def section(self, meta, items):
        name, body = items
        return A.Section(str(name), _tok(name), body, _span(meta))

    def layer(self, meta, items):
        target, rep = items
        if isinstance(target, A.Name):
            target = A.Call(target.name, target.span, [], [], target.span)
        count, rspan = (rep if rep is not None else (None, None))
        return A.LayerStmt(target, count, rspan, _span(meta))

    def repeat(self, meta, items):
        (tok,) = items
        return int(tok), _tok(tok)

    def phrase(self, meta, items):
        a, b = items
        return A.Phrase([A.Name(str(a), _tok(a)), A.Name(str(b), _tok(b))], _span(meta))

    def string(self, meta, items):
        (tok,) = items
        raw = str(tok)[1:-1]
        value = raw.encode("utf-8").decode("unicode_escape") if "\\" in raw else raw
        return A.Str(value, _tok(tok))

    def name(self, meta, items):
        (tok,) = items
        s = str(tok)
        if s in ("true", "false"):
            return A.Bool(s == "true", _tok(tok))
        return A.Name(s, _tok(tok))

    def number(self, meta, items):
        (tok,) = items
        s = str(tok)
        is_int = all(c not in s for c in ".eE")
        return A.Num(int(s) if is_int else float(s), s, _tok(tok))

    @staticmethod
    def _split(items):
        args, kwargs = [], []
        for it in items:
            if it is None:
                continue
            (kwargs if isinstance(it, A.Kwarg) else args).append(it)
        return args, kwargs

    def call(self, meta, items):
        name, *rest = items
        args, kwargs = self._split(rest)
        return A.Call(str(name), _tok(name), args, kwargs, _span(meta))

    def tuple(self, meta, items):
        args, kwargs = self._split(items)
        return A.Tuple(args, kwargs, _span(meta))

    def list(self, meta, items):
        args, kwargs = self._split(items)
        return A.List(args, kwargs, _span(meta))

    def kwarg(self, meta, items):
        key, value = items
        return A.Kwarg(str(key), _tok(key), value)


def _describe_expected(expected) -> str:
    words = sorted({_TERMINAL_WORDS.get(e, f"'{e.lower()}'" if e.isupper() else e) for e in expected})
    if not words:
        return ""
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _diagnose(err: UnexpectedInput, text: str) -> tuple[str, Span, str | None]:
    """(message, span, hint) for one Lark error."""
    if isinstance(err, UnexpectedCharacters):
        ch = text[err.pos_in_stream] if err.pos_in_stream < len(text) else ""
        span = Span(err.line, err.column, err.line, err.column + 1)
        if ch == '"':
            return "unterminated string", span, "close it with '\"' on the same line"
        exp = _describe_expected(err.allowed or [])
        return f"unexpected character {ch!r}", span, (f"expected {exp}" if exp else None)
    if isinstance(err, UnexpectedEOF) or (isinstance(err, UnexpectedToken) and err.token.type == "$END"):
        lines = text.splitlines() or [""]
        line = len(lines)
        col = len(lines[-1]) + 1
        exp = _describe_expected(getattr(err, "expected", None) or [])
        hint = "a '{', '(' or '[' is not closed" if exp and ("'}'" in exp or "')'" in exp or "']'" in exp) else None
        return f"unexpected end of file{'; expected ' + exp if exp else ''}", Span(line, col, line, col), hint
    assert isinstance(err, UnexpectedToken)
    tok = err.token
    shown = "end of line" if tok.type == "_NL" else repr(str(tok))
    exp = _describe_expected(err.accepts or err.expected)
    span = _tok(tok)
    if tok.type == "_NL":
        span = Span(tok.line, tok.column, tok.line, tok.column + 1)
    return f"unexpected {shown}", span, (f"expected {exp}" if exp else None)


def parse(text: str, diags: Diagnostics, max_errors: int = 25) -> A.File | None:
    """Parse `text`; record every syntax error in `diags`; return the AST if some parse succeeded."""
    if not text.endswith("\n"):
        text += "\n"
    work = text
    seen: set[tuple[int, int]] = set()
    for _ in range(max_errors):
        try:
            tree = _parser().parse(work)
        except UnexpectedInput as err:
            message, span, hint = _diagnose(err, work)
            if (span.line, span.col) in seen:
                return None
            seen.add((span.line, span.col))
            diags.add("E001", f"syntax error: {message}", span, hint)
            if isinstance(err, UnexpectedEOF) or getattr(getattr(err, "token", None), "type", "") == "$END":
                return None
            lines = work.split("\n")
            idx = span.line - 1
            if not (0 <= idx < len(lines)) or not lines[idx].strip():
                return None
            # blank the failing line, keeping a brace that opens or closes a section so the structure survives
            line = lines[idx]
            keep = "".join(c for c in line if c in "{}")
            lines[idx] = keep
            work = "\n".join(lines)
            continue
        try:
            return _ToAst().transform(tree)
        except VisitError as ve:  # a transformer bug must not become a traceback for the user
            diags.add("E000", f"internal error while reading the spec: {ve.orig_exc}")
            return None
    return None
