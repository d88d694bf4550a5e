"""Parse .dlspec text into the AST, collecting every syntax error in the file.

LALR with a contextual lexer gives precise "expected ..." sets. Recovery reports every error in a file once,
without a cascade of follow-on errors:

1. A pre-pass finds what a parser reports badly, reports it where the mistake is and repairs it in the text
   that is parsed (line numbers kept): an unterminated string; a bracket never closed (at the bracket that was
   opened; the closer goes where the statement ends by its indentation); a bracket or brace with nothing to
   close, or where the grammar takes none (`Den[se(8)`, `Adam(lr=1e-3, beta_{1=0.9)`). Braces are paired by
   counting, and the indentation of the '}' lines tells which '{' is missing, which '}' is one too many, or
   which header lost its '{'.
2. Then the file is parsed; at a syntax error the failing statement (all of its lines, when it spans several)
   is blanked and the file parsed again, up to a limit. Braces on a blanked line survive, a '{' behind a
   placeholder name that the AST drops, so the block structure stays intact. A header's '{' written on the
   next line is moved up rather than blanked.
"""

from __future__ import annotations

import functools
import math
import re
import struct
import unicodedata
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib import resources

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from . import ast as A
from .diagnostics import MAX_SHOWN, Diagnostics, Span, did_you_mean

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
    "_MODEL": "'model'",
    "_BLOCK": "'block'",
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
    text = resources.files("dlc.grammar").joinpath("dlspec.lark").read_text(encoding="utf-8")
    return Lark(text, parser="lalr", postlex=_NewlinePostLex(), propagate_positions=True,
                maybe_placeholders=True)


def _span(meta) -> Span:
    return Span(meta.line, meta.column, meta.end_line, meta.end_column)


def _tok(t: Token) -> Span:
    return Span.of_token(t)


@v_args(meta=True)
class _ToAst(Transformer):
    """The parse tree as the AST; what a literal cannot hold (a number that overflows, an unknown escape) is
    reported in `diags`, at the literal."""

    def __init__(self, diags: Diagnostics, shifts: dict[int, tuple[int, int]] | None = None):
        super().__init__()
        self.d = diags
        self.shifts = shifts or {}

    def _moved(self, tok: Token) -> Span:
        """A header token's span in the file as written: a misspelt keyword before it was rewritten
        (`mdel m {` parsed as `model m {`), which moved the rest of its line by (from column, delta)."""
        span = _tok(tok)
        col, delta = self.shifts.get(span.line, (0, 0))
        if not delta or span.col < col:
            return span
        end = span.end_col - delta if span.end_line == span.line else span.end_col
        return Span(span.line, span.col - delta, span.end_line, end)

    def start(self, meta, items):
        f = A.File()
        for it in items:
            if it is not None:
                (f.models if isinstance(it, A.Model) else f.blocks).append(it)
        return f

    def model(self, meta, items):
        name, body = items
        return A.Model(str(name), self._moved(name), body, _span(meta))

    def block_def(self, meta, items):
        name, *rest = items
        if str(name) == RECOVERED:
            return None
        body = rest[-1]
        params = [A.Name(str(p), self._moved(p)) for p in rest[:-1] if p is not None]
        return A.BlockDef(str(name), self._moved(name), params, body, _span(meta))

    def body(self, meta, items):
        return [i for i in items if i is not None]

    def assign(self, meta, items):
        key, value = items
        if str(key) == "seed":
            self._seed_overflows(value)
        return A.Assign(str(key), _tok(key), value, _span(meta))

    def _seed_overflows(self, value) -> None:
        """An integer too long for 64 bits written as the seed (or as an option of a search space of it) is
        reported again with the seed's own limit, SEED_MAX, rather than 64 bits' (which `number` hinted)."""
        from .spec import SEED_MAX

        nums = [value] if isinstance(value, A.Num) else \
            [a for a in getattr(value, "args", None) or getattr(value, "items", None) or []
             if isinstance(a, A.Num)]
        for num in nums:
            if not num.problem or not isinstance(num.value, int):
                continue
            found = next((x for x in self.d.items if x.code == "E209" and x.span == num.span), None)
            if found is None:
                continue
            self.d.drop(found)
            limit = f"at most {SEED_MAX:,}" if not num.text.startswith("-") else f"0 to {SEED_MAX:,}"
            self.d.add("E209", f"seed {_shown(num.text)} overflows: it does not fit in 64 bits", num.span,
                       f"a seed may be {limit}")

    def section(self, meta, items):
        name, body, rep = items
        if str(name) == RECOVERED:
            return None
        count, rspan = (rep if rep is not None else (None, None))
        if count is not None and str(name) != "residual":
            self.d.add("E201", f"'{name} {{ ... }}' cannot be repeated", rspan,
                       "only a layer, a block call or residual { ... } takes '* N'")
            count, rspan = None, None
        return A.Section(str(name), _tok(name), body, _span(meta), count, rspan)

    def layer(self, meta, items):
        target, rep = items
        if isinstance(target, A.Name):
            target = A.Call(target.name, target.span, [], [], target.span)
        count, rspan = (rep if rep is not None else (None, None))
        return A.LayerStmt(target, count, rspan, _span(meta))

    def repeat(self, meta, items):
        (tok,) = items
        if isinstance(tok, A.Call):  # `* choice(1, 2, 3)`: a searched depth (the expander draws it)
            return tok, tok.span
        if tok.type == "NAME":  # `Dense(u) * n`: the expander looks the block's parameter up
            return str(tok), _tok(tok)
        # (a count beyond any limit is kept as 10**18: the resolver reports it; int() refuses 4,300 digits)
        return (int(tok) if len(tok.lstrip("0")) <= 18 else 10**18), _tok(tok)

    def phrase(self, meta, items):
        a, b = items
        return A.Phrase([A.Name(str(a), _tok(a)), A.Name(str(b), _tok(b))], _span(meta))

    def string(self, meta, items):
        (tok,) = items
        value, bad = unescape(str(tok)[1:-1])
        for offset, esc in bad:
            col = tok.column + 1 + offset
            self.d.add("E001", f"syntax error: unknown escape '{esc}' in a string",
                       Span(tok.line, col, tok.line, col + len(esc)), _ESCAPE_HINT)
        return A.Str(value, _tok(tok))

    def name(self, meta, items):
        (tok,) = items
        s = str(tok)
        if s in ("true", "false"):
            return A.Bool(s == "true", _tok(tok))
        return A.Name(s, _tok(tok))

    def number(self, meta, items):
        (tok,) = items
        num = read_number(str(tok), _tok(tok))
        if num.problem:
            self.d.add("E209", num.problem, num.span, _NUMBER_HINT[isinstance(num.value, int)])
        elif _underflows(num):
            self.d.warn("W003", f"number {_shown(num.text)} underflows to 0", num.span,
                        "the smallest positive number is about 5e-324; write 0 if 0 is meant")
        elif isinstance(num.value, float) and 0 < abs(num.value) < FLOAT32_TINY:
            self.d.warn("W003", f"number {_shown(num.text)} is 0 in float32 (dlc's default dtype)", num.span,
                        "float32's smallest positive number is about 1.4e-45: a learning rate or factor this "
                        "small does nothing; it is kept only with `dtype: float64`")
        elif isinstance(num.value, float) and _float32_overflows(num.value):
            self.d.warn("W003", f"number {_shown(num.text)} is inf in float32 (dlc's default dtype)",
                        num.span, "float32's largest number is about 3.4e38: a clip norm or bound this large "
                        "becomes inf and can turn training into nan; it is kept only with `dtype: float64`")
        return num

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


# integers must fit in a signed 64-bit integer (every backend stores them so); floats in a double
INT_MAX = 2**63 - 1
_NUMBER_HINT = {True: f"an integer may be at most {INT_MAX:,}",
                False: "a number must be finite: at most about 1.8e308"}
_NONZERO = re.compile("[1-9]")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r"}
_ESCAPE_HINT = r'known escapes: \\ \" \n \t \r; write \\ for a backslash (or / in a path)'


def _shown(text: str, width: int = 24) -> str:
    """A literal as quoted in a message: a 5,000-digit number is shown by its first digits and its length."""
    return text if len(text) <= width else f"{text[:12]}... ({len(text):,} characters)"


def read_number(text: str, span: Span) -> A.Num:
    """A number token as a value; `problem` says why it is unusable (an overflow), its value then 0."""
    if "." not in text and "e" not in text and "E" not in text:
        digits = text.lstrip("+-").lstrip("0")
        whole = int(text) if len(digits) <= 19 else None  # (int() refuses 4,300 digits and more)
        if whole is not None and abs(whole) <= INT_MAX:
            return A.Num(whole, text, span)
        return A.Num(0, text, span, f"integer {_shown(text)} overflows: it does not fit in 64 bits")
    value = float(text)
    if math.isfinite(value):
        return A.Num(value, text, span)
    return A.Num(0.0, text, span, f"number {_shown(text)} overflows: it is too large for a 64-bit float")


FLOAT32_TINY = 1.401298464324817e-45  # float32's smallest subnormal: anything smaller rounds to 0


def _float32_overflows(value: float) -> bool:
    """Whether a finite float rounds to inf in float32 (struct applies float32's rounding, then refuses)."""
    try:
        struct.pack("<f", value)
    except OverflowError:
        return True
    return False


def _underflows(num: A.Num) -> bool:
    """A float literal with a non-zero digit before its exponent that reads as 0 (`1e-400`)."""
    mantissa = num.text.lower().partition("e")[0]
    return num.value == 0 and isinstance(num.value, float) and _NONZERO.search(mantissa) is not None


def unescape(raw: str) -> tuple[str, list[tuple[int, str]]]:
    r"""A string literal's text (without its quotes) as its value: \\ \" \n \t \r are read, anything else
    after a backslash is kept as written and reported: [(offset of the backslash, the escape)]."""
    if "\\" not in raw:
        return raw, []
    out: list[str] = []
    bad: list[tuple[int, str]] = []
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == "\\" and i + 1 < len(raw):
            esc = raw[i + 1]
            if esc in _ESCAPES:
                out.append(_ESCAPES[esc])
            else:
                out.append(raw[i:i + 2])
                bad.append((i, raw[i:i + 2]))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out), bad


def quote(value: str) -> str:
    """A string value as a literal that reads back as it (the inverse of `unescape`)."""
    inverse = {v: k for k, v in _ESCAPES.items()}
    return '"' + "".join("\\" + inverse[c] if c in inverse else c for c in value) + '"'


def _describe_expected(expected) -> str:
    words = sorted({_TERMINAL_WORDS.get(e, f"'{e.lower()}'" if e.isupper() else e) for e in expected})
    if not words:
        return ""
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


_STATEMENT_WORD = re.compile(r"^[ \t]*([a-z_][A-Za-z0-9_]*)[ \t]+$")
_ARGUMENT_WORD = re.compile(r"(?:^|[(,])[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]+$")


def _accepts_at(text: str, pos: int) -> set[str]:
    """What the parser accepts after text[:pos] (the lexer's own set is wider: it serves several states);
    the empty set when the file's parse budget is spent."""
    if not _spend(pos):
        return set()
    try:
        ip = _parser().parse_interactive(text[:pos])
        for _ in ip.iter_parse():
            pass
        return set(ip.accepts())
    except UnexpectedInput:  # the text before the bad character has an error of its own: keep the lexer's set
        return set()


_NAME_AT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
_SINGLE_QUOTED = re.compile(r"'([^'\n]*)'")


def _same_length(text: str, start: int, end: int, replacement: str) -> str:
    """`text` with text[start:end] replaced by as many characters (positions after it are kept)."""
    assert len(replacement) == end - start
    return text[:start] + replacement + text[end:]


def _habit(err: UnexpectedInput, text: str) -> tuple[str, Span, str, str | None] | None:
    """Another language's way of writing what dlc writes otherwise, at a syntax error: a Python string in
    single quotes, a module path (`keras.layers.Dense`, `tf.nn.relu`), a `//` comment, a YAML `- item`, a
    JSON `"key":`, `name: value` as an argument, a ';' or ',' ending a statement. (message, span, how dlc
    writes it, the text repaired so that the rest of the file is read as meant), the repair None where the
    statement is better dropped."""
    if isinstance(err, UnexpectedCharacters):
        pos: int = err.pos_in_stream  # type: ignore[assignment]
        return _habit_character(text, pos, err.line, err.column)
    if isinstance(err, UnexpectedToken) and err.token.type == "_NL":
        return _yaml_section(text, err.token.line)
    if isinstance(err, UnexpectedToken) and err.token.type != "$END":
        return _habit_token(text, err.token, set(err.accepts or err.expected))
    return None


_SECTION_WORDS = ("data", "layers", "train", "search", "residual")
_KEY_BEFORE_BRACE = re.compile(r"^([ \t]*)([A-Za-z_][A-Za-z0-9_]*)[ \t]*:[ \t]*$")
# a header written with ':' for its '{' (YAML): `layers:`, `model iris:`, `block b(n):`
_COLON_HEADER = re.compile(r"^[ \t]*[A-Za-z_][A-Za-z0-9_]*([ \t]+[A-Za-z_][A-Za-z0-9_]*)?([ \t]*\([^()]*\))?"
                           r"[ \t]*:[ \t]*$")


def _braces_hint(header: str) -> str:
    what = {"model": "a model", "block": "a block"}.get(header.split()[0].split("(")[0], "a section")
    return f"{what} is written in braces, without ':': {header} {{ ... }}"


def _yaml_section(text: str, line: int) -> tuple[str, Span, str, str | None] | None:
    """`layers:` with its lines indented below it (YAML): a section, written `layers { ... }`. Repaired as
    one: its ':' as '{', and a '}' after its last indented line."""
    sc = _scan(text)
    header = sc.lines[line - 1]
    m = _COLON_HEADER.match(header[: sc.code_end[line - 1]])
    if m is None:
        return None
    name = header[: header.rindex(":")].strip()
    base = sc.indent[line - 1] or 0
    body = [k for k in range(line + 1, len(sc.lines) + 1) if sc.indent[k - 1] is not None]
    inside = []
    for k in body:
        if (sc.indent[k - 1] or 0) <= base:
            break
        inside.append(k)
    colon = header.rindex(":")
    codes = [sc.lines[k - 1][: sc.code_end[k - 1]].strip() for k in inside]
    dashed = bool(codes) and all(re.match(r"-[ \t]", c) for c in codes)
    if dashed and name not in _SECTION_WORDS and _NAME_AT.fullmatch(name) \
            and not any(sc.on_line(k) for k in inside):  # `metrics:` and `- accuracy` lines below: a list
        items = ", ".join(c[1:].strip() for c in codes)
        lines = list(sc.lines)
        for k in (line, *inside):
            lines[k - 1] = ""
        return (f"no value after '{name}:'", Span(line, colon + 1, line, colon + 2),
                f"a list is written in [ ] on its key's line: {name}: [{_shown(items, 60)}]",
                "\n".join(lines))
    if len(inside) == 1 and name not in _SECTION_WORDS and not sc.on_line(inside[0]) \
            and _NAME_AT.fullmatch(name) and not re.match(r"[ \t]*[A-Za-z_][A-Za-z0-9_]*[ \t]*:",
                                                          sc.lines[inside[0] - 1]):
        # `loss:` and its value on the next line: a key, not a section
        value = sc.lines[inside[0] - 1][: sc.code_end[inside[0] - 1]].strip()
        lines = list(sc.lines)
        lines[line - 1] = lines[inside[0] - 1] = ""
        return (f"no value after '{name}:'", Span(line, colon + 1, line, colon + 2),
                f"a key's value is written on its line: {name}: {_shown(value, 40)}", "\n".join(lines))
    if not inside and name not in _SECTION_WORDS:
        return None
    span = Span(line, colon + 1, line, colon + 2)
    hint = _braces_hint(name)
    if not inside:
        return f"unexpected ':' after '{name}'", span, hint, None
    lines = list(sc.lines)
    lines[line - 1] = header[:colon] + "{" + header[colon + 1:]
    if dashed:  # `- Dense(16)` items (YAML's list): statements, one per line
        hint += ", one statement per line without '-'"
        for k in inside:
            dash = lines[k - 1].index("-")
            lines[k - 1] = lines[k - 1][:dash] + " " + lines[k - 1][dash + 1:]
    last = inside[-1]
    end = sc.code_end[last - 1]
    lines[last - 1] = lines[last - 1][:end] + " }" + lines[last - 1][end:]
    return f"unexpected ':' after '{name}'", span, hint, "\n".join(lines)


def _habit_character(text: str, pos: int, line: int, col: int) -> tuple[str, Span, str, str | None] | None:
    ch = text[pos] if pos < len(text) else ""
    line_start = text.rfind("\n", 0, pos) + 1
    line_end = text.find("\n", pos)
    line_text = text[line_start:line_end if line_end >= 0 else len(text)]
    at = pos - line_start  # 0-based column
    found = _typed_otherwise(text, pos, line, col, line_text, at)
    if found is not None:
        return found
    if ch == "'":
        m = _SINGLE_QUOTED.match(line_text, at)
        if m is None:
            return ("unexpected single quote", Span(line, col, line, col + 1),
                    'strings are written in double quotes: "..."', None)
        inner = m.group(1)
        span = Span(line, col, line, col + len(m.group(0)))
        if _NAME_AT.fullmatch(inner):  # `activation='relu'`: a name, written without quotes
            return ("unexpected single quote", span,
                    f"names are written without quotes: write {inner}",
                    _same_length(text, pos, pos + len(m.group(0)), f" {inner} "))
        if '"' in inner or "\\" in inner:
            return ("unexpected single quote", span, 'strings are written in double quotes: "..."', None)
        return ("unexpected single quote", span,
                f'strings are written in double quotes: "{_shown(inner, 40)}"',
                _same_length(text, pos, pos + len(m.group(0)), f'"{inner}"'))
    if ch == "." and at > 0 and (line_text[at - 1].isalnum() or line_text[at - 1] == "_"):
        start = at
        while start > 0 and (line_text[start - 1].isalnum() or line_text[start - 1] == "_"):
            start -= 1
        m = _DOTTED.match(line_text, start)
        if m is None or not (line_text[start].isalpha() or line_text[start] == "_"):
            return None
        dotted = m.group(0)
        last = dotted.rsplit(".", 1)[1]
        span = Span(line, start + 1, line, start + 1 + len(dotted))
        return (f"'{_shown(dotted, 40)}' is a Python path", span,
                f"dlc names have no module path: write {last}",
                _same_length(text, line_start + start, line_start + start + len(dotted) - len(last),
                             " " * (len(dotted) - len(last))))
    if ch == "/" and line_text[at + 1:at + 2] == "/":  # `// comment` (JavaScript, C, JSON5)
        return ("unexpected characters '//'", Span(line, col, line, col + 2),
                "comments start with '#': write # instead of //", _same_length(text, pos, pos + 2, "# "))
    if ch == "-" and not line_text[:at].strip() and re.match(r"-[ \t]+[A-Za-z_\"]", line_text[at:]):
        # `- Dense(16)`: a YAML list item
        return ("unexpected character '-'", Span(line, col, line, col + 1),
                "items are not marked with '-': write one statement per line, as it is, without the '-'",
                _same_length(text, pos, pos + 1, " "))
    if ch == ";" and not re.sub(r"#.*", "", line_text[at + 1:]).strip():  # `seed: 7;`
        return ("unexpected character ';'", Span(line, col, line, col + 1), _TRAILING_HINT.format(";"),
                _same_length(text, pos, pos + 1, " "))
    return None


_ALTERNATIVES = re.compile(r"[ \t]*\|[ \t]*([A-Za-z_]\w*(?:[ \t]*\|[ \t]*[A-Za-z_]\w*)*)")  # `| same | valid`


def _typed_otherwise(text: str, pos: int, line: int, col: int, line_text: str,
                     at: int) -> tuple[str, Span, str, str | None] | None:
    """An unexpected character that another way of writing explains: a name with '-' (`batch-size`), a
    percentage (`val=20%`), ';' between arguments, an arrow between layers (`Dense(16) -> Dense(8)`).
    `line_text` is the character's line, `at` its 0-based column there."""
    ch = text[pos] if pos < len(text) else ""
    line_start = pos - at
    path = _unquoted_path(line_text, at)
    if path is not None:  # `csv(data/heart.csv)`
        start, end = path
        return (f"unexpected character {ch!r}", Span(line, start + 1, line, end + 1),
                _path_hint(line_text[start:end]), None)
    if ch == "-" and at > 0 and (m := _HYPHENATED.match(line_text, _word_start(line_text, at))) \
            and m.end() > at + 1:  # `batch-size: 16`, `model iris-v2 {`
        word, start = m.group(), _word_start(line_text, at)
        under = word.replace("-", "_")
        return (f"unexpected '-' in '{_shown(word, 40)}'", Span(line, start + 1, line, start + 1 + len(word)),
                f"a name has letters, digits and '_', not '-': write {_shown(under, 40)}",
                _same_length(text, line_start + start, line_start + start + len(word), under))
    if ch == "%" and at > 0 and (m := re.search(r"([0-9]+\.?[0-9]*)$", line_text[:at])):  # `val=20%`
        return ("unexpected character '%'", Span(line, col - len(m.group(1)), line, col + 1),
                f"a fraction is written as a number: {float(m.group(1)) / 100:g} for {m.group(1)}%", None)
    if ch == ";" and _inside_parens(line_text, at):  # `holdout(val=0.2; test=0.2)`
        semis = [i for i in range(at, len(line_text)) if line_text[i] == ";" and _inside_parens(line_text, i)]
        fixed = "".join("," if i in semis else c for i, c in enumerate(line_text))
        return ("unexpected character ';'", Span(line, col, line, col + 1),
                "arguments are separated by ',', not ';'",
                text[:line_start] + fixed + text[line_start + len(fixed):])
    if text.startswith(_ARROWS, pos):  # `Dense(16) -> Dense(8)`
        found = _arrow_habit(text, pos, line, col)
        if found is not None:
            return found
    alternatives = _ALTERNATIVES.match(line_text[at:])
    if ch == "|" and alternatives and (first := re.search(r"([A-Za-z_]\w*)[ \t]*$", line_text[:at])):
        # `padding=valid|same` (a signature's alternatives copied): one value, or a search over them
        names = [first.group(1), *re.split(r"[ \t]*\|[ \t]*", alternatives.group(1))]
        return ("unexpected character '|'", Span(line, col, line, col + 1),
                f"write one value, {names[0]}; or search them: choice({', '.join(names)})", None)
    return None


def _path_hint(path: str) -> str:
    """How a path written without quotes is written: in double quotes, with '/' for a Windows '\\' (a
    backslash starts an escape in a string)."""
    if "\\" in path:
        forward = path.replace("\\", "/")
        return f'a path is written in double quotes, with / for \\: "{_shown(forward, 60)}"'
    return f'a path is written in double quotes: "{_shown(path, 60)}"'


_PATH_CHARS = re.compile(r"[A-Za-z0-9_.~/\\:-]+")
_FILE_SUFFIX = re.compile(r"\.(csv|tsv|txt|npz|npy|json|db|gz|zip|parquet|h5|pkl|idx[0-9]-ubyte)$", re.I)


def _unquoted_path(line_text: str, at: int) -> tuple[int, int] | None:
    """(start, end) 0-based of a file path written without quotes around column `at` (`data/heart.csv`,
    `C:\\data\\x.csv`, `heart.csv`); None when the character there is not in one."""
    if line_text[at:at + 1] not in ("/", "\\", ".", "~", ":") or (
            line_text[at:at + 2] == "//" and not line_text[:at].strip()):
        return None
    if line_text[at] in "~:" and line_text[at + 1:at + 2] not in ("/", "\\"):  # `~/x.npz`, `C:\x.csv`
        return None
    start = at
    while start > 0 and _PATH_CHARS.fullmatch(line_text[start - 1]) and line_text[start - 1] != ":":
        start -= 1
    if start > 1 and line_text[start - 1] == ":" and line_text[start - 2].isalpha() and (
            start < 3 or not (line_text[start - 3].isalnum() or line_text[start - 3] == "_")):
        start -= 2  # `C:\data`: a drive letter
    m = _PATH_CHARS.match(line_text, start)
    if m is None or m.end() <= at:
        return None
    path = m.group()
    if path.startswith("//"):
        return None  # (`// a comment`: said as such)
    if line_text[at] == "." and not _FILE_SUFFIX.search(path):
        return None  # (`keras.layers.Dense`: a module path, said as such)
    if line_text[at] == ":" and (start != at - 1 or not line_text[start].isalpha()):
        return None
    if line_text[at] in "/\\" and not re.search(r"[A-Za-z0-9_~.]", path):
        return None
    return start, m.end()


# a name with '-' for '_' (`batch-size`, `iris-v2`): letters first, so `1e-3` is none
_HYPHENATED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z_][A-Za-z0-9_]*)+")


def _word_start(line_text: str, at: int) -> int:
    """The 0-based column where the word (letters, digits, '_') that ends before column `at` starts."""
    start = at
    while start > 0 and (line_text[start - 1].isalnum() or line_text[start - 1] == "_"):
        start -= 1
    return start


def _inside_parens(line_text: str, at: int) -> bool:
    """Whether column `at` of a line stands inside a '(' opened earlier on the line (strings skipped)."""
    depth, i = 0, 0
    while i < at:
        c = line_text[i]
        if c == '"':
            i = _skip_quoted(line_text, i)
            continue
        depth += 1 if c == "(" else -1 if c == ")" else 0
        i += 1
    return depth > 0


def _habit_token(text: str, tok: Token, expected: set[str]) -> tuple[str, Span, str, str | None] | None:
    start = tok.start_pos
    if start is None:
        return None
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", start)
    line_text = text[line_start:line_end if line_end >= 0 else len(text)]
    at = start - line_start
    after = line_text[at + len(tok):].lstrip(" \t")
    if tok.type == "STRING" and "NAME" in expected and not line_text[:at].strip() and after[:1] in ":{" \
            and _NAME_AT.fullmatch(str(tok)[1:-1]):  # `"seed": 7`: a JSON key
        key = str(tok)[1:-1]
        fixed = _same_length(text, start, start + len(tok), f" {key} ")
        if after[:1] == ":" and after[1:].strip().startswith("{"):  # `"train": {`: a section
            colon = line_start + at + len(tok) + line_text[at + len(tok):].index(":")
            return (f"unexpected {str(tok)!r}", _tok(tok),
                    f"a section is written without quotes or ':': {key} {{ ... }}",
                    _same_length(fixed, colon, colon + 1, " "))
        said = f"a key is written without quotes: {key}: ..." if after[:1] == ":" else \
            f"a section's name is written without quotes: {key} {{ ... }}"
        return f"unexpected {str(tok)!r}", _tok(tok), said, fixed
    if tok.type == "COLON" and re.fullmatch(r"[ \t]*(model|block)[ \t]*", line_text[:at]) \
            and _NAME_AT.match(after):  # `model: iris {`
        keyword = line_text[:at].strip()
        return (f"unexpected ':' after '{keyword}'", _tok(tok),
                f"write {keyword} {after.split()[0].split('{')[0]} {{ ... }}, without ':'",
                _same_length(text, start, start + 1, " "))
    if tok.type == "NAME" and str(tok) in ("x", "X") and "STAR" in expected and re.match(r"[0-9]", after):
        # `Dense(64) x 3`: a layer repeated
        return ("unexpected 'x'", _tok(tok), "a layer is repeated with '*': write * " + after.split()[0],
                _same_length(text, start, start + 1, "*"))
    found = _written_otherwise(text, tok, expected, line_text, at)
    if found is not None:
        return found
    if tok.type == "COLON" and "EQUAL" in expected and _KWARG_KEY.search(line_text[:at]):
        return None  # (`Dense(16, activation: relu)`: said by _in_line; repaired by _habit_repair)
    if tok.type == "COMMA" and "COMMA" not in expected and not re.sub(r"#.*", "", after).strip() \
            and not line_text[:at].rstrip().endswith(","):
        # `seed: 7,`, `Dense(16),`: a ',' after the last statement of a line (JSON, a Python list)
        return ("unexpected ','", _tok(tok), _TRAILING_HINT.format(","),
                _same_length(text, start, start + 1, " "))
    return None


def _written_otherwise(text: str, tok: Token, expected: set[str], line_text: str,
                       at: int) -> tuple[str, Span, str, str | None] | None:
    """An unexpected token that another way of writing explains: a path or URL without quotes, a quoted or
    missing model name, a layer called otherwise, an empty argument or a missing ',', a Python list of
    layers, an arrow between layers, a dict as a value."""
    for explained in (_unquoted_at_colon, _header_written_otherwise, _call_written_otherwise,
                      _argument_written_otherwise):
        found = explained(text, tok, expected, line_text, at)
        if found is not None:
            return found
    start = tok.start_pos or 0
    if tok.type == "LSQB" and ("NAME" in expected and line_text[:at].strip() in ("", "{")
                               or line_text[:at].rstrip().endswith("{")):  # `layers { [Dense(16)] }`
        found = _layer_list(text, tok)
        if found is not None:
            return found
    if tok.type == "EQUAL" and text[start + 1:start + 2] == ">":  # `Dense(16) => Dense(8)`
        return _arrow_habit(text, start, _tok(tok).line, _tok(tok).col)
    if tok.type == "LBRACE" and (m := _KEY_BEFORE_BRACE.match(line_text[:at])):  # `optimizer: {name: adam}`
        return _dict_habit(text, tok, m.group(2), start - at + len(m.group(1)))
    return None


def _unquoted_at_colon(text: str, tok: Token, expected: set[str], line_text: str,
                       at: int) -> tuple[str, Span, str, str | None] | None:
    """A path with a drive letter (`csv(C:\\data\\x.csv)`) or a URL (`storage: sqlite:///x.db`) written
    without quotes: its ':' is unexpected."""
    if tok.type != "COLON":
        return None
    line = _tok(tok).line
    path = _unquoted_path(line_text, at)
    if path is not None:
        return (f"unexpected {str(tok)!r}", Span(line, path[0] + 1, line, path[1] + 1),
                _path_hint(line_text[path[0]:path[1]]), None)
    begin = _word_start(line_text, at)
    url = re.match(r"[^\s,()\[\]#]+", line_text[begin:]) if line_text[at + 1:at + 3] == "//" else None
    if url is not None:
        return (f"unexpected {str(tok)!r}", Span(line, begin + 1, line, begin + 1 + len(url.group())),
                f'a URL is written in double quotes: "{_shown(url.group(), 60)}"', None)
    return None


def _header_written_otherwise(text: str, tok: Token, expected: set[str], line_text: str,
                              at: int) -> tuple[str, Span, str, str | None] | None:
    """A model's or block's header written otherwise: `model "iris" {`, `model {`, `block b {`; a residual
    block's repeat before its body (`residual * 2 {`)."""
    start = tok.start_pos or 0
    keyword = re.fullmatch(r"[ \t]*(model|block)[ \t]*", line_text[:at])
    if keyword and tok.type == "STRING" and _NAME_AT.fullmatch(str(tok)[1:-1]):  # `model "iris" {`
        name = str(tok)[1:-1]
        return (f"unexpected {str(tok)!r}", _tok(tok),
                f"a {keyword.group(1)}'s name is written without quotes: {keyword.group(1)} {name}",
                _same_length(text, start, start + len(tok), f" {name} "))
    if keyword and tok.type in ("LBRACE", "LPAR") and "NAME" in expected:  # `model {`
        params = "(...) " * (tok.type == "LPAR")
        return (f"unexpected {str(tok)!r}", _tok(tok),
                f"a {keyword.group(1)} needs a name: {keyword.group(1)} NAME {params}{{ ... }}", None)
    if tok.type == "LBRACE" and (m := re.fullmatch(r"([ \t]*residual[ \t]*)(\*[ \t]*[0-9]+)[ \t]*",
                                                    line_text[:at])):  # `residual * 2 {`
        count, line_start = m.group(2), start - at
        return (f"unexpected '{{' after '{count}'", _tok(tok),
                f"a residual block is repeated after its '}}': residual {{ ... }} {count}",
                _same_length(text, line_start + m.end(1), line_start + m.end(2), " " * len(count)))
    if tok.type == "LBRACE" and "LPAR" in expected and re.fullmatch(r"[ \t]*block[ \t]+[A-Za-z_]\w*[ \t]*",
                                                                   line_text[:at]):  # `block b {`
        name = line_text[:at].split()[1]
        return ("unexpected '{'", _tok(tok),
                f"a block's parameters are written in ( ), even none: block {name}() {{ ... }}", None)
    return None


def _argument_written_otherwise(text: str, tok: Token, expected: set[str], line_text: str,
                                at: int) -> tuple[str, Span, str, str | None] | None:
    """An argument left empty (`holdout(val=0.2,, test=0.2)`) or a ',' left out (`(val=0.2 test=0.2)`); a
    ':' or '=' typed twice (`metrics:: [accuracy]`, `val==0.2`)."""
    start = tok.start_pos or 0
    if tok.type in ("COLON", "EQUAL") and line_text[:at].rstrip(" \t").endswith(str(tok)):
        return (f"unexpected {str(tok)!r}", _tok(tok), f"one {str(tok)!r} is enough: delete this one",
                _same_length(text, start, start + 1, " "))
    if tok.type == "COMMA" and "COMMA" not in expected and re.search(r"[(,][ \t]*$", line_text[:at]):
        return ("unexpected ','", _tok(tok), "an argument is missing between the commas: delete one ','",
                _same_length(text, start, start + 1, " "))
    if tok.type in ("NAME", "SIGNED_NUMBER", "STRING") and {"COMMA", "RPAR"} <= expected \
            and "EQUAL" not in expected and re.search(r"[A-Za-z0-9_)\]\"][ \t]+$", line_text[:at]):
        return (f"missing ',' before {str(tok)!r}", _tok(tok), "arguments are separated by ','",
                _same_length(text, start - 1, start, ",") if text[start - 1] in " \t" else None)
    return None


_LAYER_STATEMENT = re.compile(r"^[ \t]*(\{[ \t]*)?([A-Z][A-Za-z0-9_]*)[ \t]*(\(.*\))?[ \t]*$")


def _call_written_otherwise(text: str, tok: Token, expected: set[str], line_text: str,
                            at: int) -> tuple[str, Span, str, str | None] | None:
    """A layer called otherwise than `Dense(16)`: `Dense[16]`, `Dense 16`, Keras' functional
    `Dense(16)(x)`; a repeat count that is no positive integer (`* -1`)."""
    start = tok.start_pos or 0
    m = _LAYER_STATEMENT.match(line_text[:at])
    if m is not None and m.group(3) is None and tok.type == "LSQB" and "LPAR" in expected:  # `Dense[16]`
        end = _closing(text, start)
        if end is not None and "\n" not in text[start:end]:
            inner = text[start + 1:end]
            return ("unexpected '['", _tok(tok),
                    f"arguments are written in ( ): {m.group(2)}({_shown(inner, 40)})",
                    text[:start] + "(" + inner + ")" + text[end + 1:])
    if m is not None and m.group(3) is None and tok.type in ("SIGNED_NUMBER", "INT") and "LPAR" in expected:
        return (f"unexpected {str(tok)!r}", _tok(tok), f"arguments are written in ( ): {m.group(2)}({tok})",
                None)  # `Dense 16`
    if m is not None and m.group(3) is not None and tok.type == "LPAR":  # `Dense(16)(x)`
        end = _closing(text, start)
        if end is not None:
            return ("unexpected '('", Span(*_pos(text, start), *_pos(text, end + 1)),
                    "a layer takes the output of the line above it: write it without "
                    f"{_shown(text[start:end + 1], 20)} (Keras' functional API)",
                    _blanked(text, start, end + 1))
    if tok.type == "SIGNED_NUMBER" and "INT" in expected and re.search(r"\*[ \t]*$", line_text[:at]):
        return (f"unexpected {str(tok)!r}", _tok(tok), "a repeat count is a whole number, at least 1", None)
    return None


def _pos(text: str, offset: int) -> tuple[int, int]:
    """(line, column), 1-based, of an offset in `text`."""
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _habit_repair(text: str, err: UnexpectedInput) -> str | None:
    """The text with an argument's ':' written '=' (`Dense(16, activation: relu)`), so that the rest of the
    call is read (its diagnostic comes from _in_line)."""
    tok = getattr(err, "token", None)
    if not isinstance(err, UnexpectedToken) or tok is None or tok.type != "COLON" or tok.start_pos is None:
        return None
    line_start = text.rfind("\n", 0, tok.start_pos) + 1
    if "EQUAL" not in (err.accepts or err.expected) or not _KWARG_KEY.search(text[line_start:tok.start_pos]):
        return None
    return _same_length(text, tok.start_pos, tok.start_pos + 1, "=")


# ---------------------------------------------------------------- habits that span more than one token

def _skip_quoted(text: str, i: int) -> int:
    """The index after the string literal (double- or single-quoted, on one line) that starts at text[i]."""
    q = text[i]
    j = i + 1
    while j < len(text) and text[j] not in (q, "\n"):
        j += 2 if text[j] == "\\" else 1
    return min(j + 1, len(text))


def _code(text: str, start: int = 0) -> Iterator[tuple[int, str]]:
    """(index, character) of the code in `text` from `start`: string literals (either quote) skipped whole, a
    comment given as its '#' alone (the next character given is the line break after it, if any)."""
    i = start
    while i < len(text):
        c = text[i]
        if c in "\"'":
            i = _skip_quoted(text, i)
            continue
        yield i, c
        if c == "#":
            nl = text.find("\n", i)
            i = len(text) if nl < 0 else nl
            continue
        i += 1


def _closing(text: str, start: int) -> int | None:
    """The index of the bracket or brace that closes the one at text[start] (strings, either quote, and
    comments skipped), or None when it is never closed."""
    depth = 0
    for i, c in _code(text, start):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return i
    return None


def _top_level_split(body: str, seps: str) -> list[tuple[int, str]]:
    """`body` cut at the characters `seps` outside brackets and strings (comments left out): (offset of
    each piece in `body`, the piece)."""
    pieces: list[tuple[int, str]] = []
    depth, begin, in_comment = 0, 0, False
    for i, c in _code(body):
        if in_comment:  # (the line break after a comment: the next piece starts there)
            begin, in_comment = i, False
        if c == "#":
            pieces.append((begin, body[begin:i]))
            in_comment = True
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and c in seps:
            pieces.append((begin, body[begin:i]))
            begin = i + 1
    pieces.append((len(body), "") if in_comment else (begin, body[begin:]))
    return pieces


def _blanked(text: str, start: int, end: int, keep: str = "") -> str:
    """text[start:end] written as blanks (line breaks and the characters `keep` kept): positions stay."""
    inner = "".join(c if c == "\n" or c in keep else " " for c in text[start:end])
    return text[:start] + inner + text[end:]


_DICT_ENTRY = re.compile(r"""^[ \t]*(["']?)([A-Za-z_][A-Za-z0-9_]*)\1[ \t]*[:=][ \t]*(.*?)[ \t]*$""", re.S)
# a dict's entry that names what it describes: `{name: adam}`, Keras' `{'class_name': 'Adam', 'config': ...}`
_DICT_NAME_KEYS = ("name", "class_name", "type", "kind", "class", "id", "optimizer", "loss", "schedule",
                   "source", "split", "metric", "scheduler")


def _dict_entries(body: str) -> list[tuple[str, str]] | None:
    """`name: adam, lr: 0.1` (a dict's inside, on one line or several) as [(key, value)], Keras' `config`
    flattened; None when it is no dict of name: value."""
    out: list[tuple[str, str]] = []
    for _, piece in _top_level_split(body, ",\n"):
        if not piece.strip():
            continue
        m = _DICT_ENTRY.match(piece.strip())
        if m is None:
            return None
        key, value = m.group(2), m.group(3).strip()
        if not value:
            return None
        if key == "config" and value.startswith("{") and value.endswith("}"):
            inner = _dict_entries(value[1:-1])
            if inner is None:
                return None
            out += inner
            continue
        out.append((key, _dict_value_text(value)))
    return out


def _dict_value_text(value: str) -> str:
    """A dict's value as dlc writes it: a quoted name unquoted, Python's True/False lowercase, a string in
    double quotes."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        inner = value[1:-1]
        return inner if _NAME_AT.fullmatch(inner) else '"' + inner.replace('"', '\\"') + '"'
    return {"True": "true", "False": "false"}.get(value, value)


@functools.cache
def _key_families() -> dict[str, str]:
    """Every key a spec writes whose value is a catalogue name or call, with its family (`optimizer` ->
    optimizer, `source` -> source)."""
    from .catalog import family_of_annotation
    from .spec import Data, Spec
    from .training import Search, Train

    return {k: fam for cls in (Spec, Data, Train, Search) for k, f in cls.model_fields.items()
            if (fam := family_of_annotation(f.annotation)) is not None}


def _catalogue_name(family: str, name: str) -> str | None:
    """`adam` as the optimizer Adam: the family's name as a spec writes it, matched without case; None
    when the family has no such name."""
    from .catalog import REGISTRY

    table = REGISTRY.get(family, {})
    if name in table:
        return name
    return next((n for n in table if n.lower() == name.lower()), None)


def _dict_habit(text: str, tok: Token, key: str, key_at: int) -> tuple[str, Span, str, str | None] | None:
    """`optimizer: {name: adam, lr: 0.1}`, `optimizer: {'name': 'adam'}` (a Python or JSON dict, a YAML
    mapping, Keras' get_config()): how dlc writes the value, and the text with the statement blanked so that
    the rest of the file is read. None for a section's key (`train: {`: said by _in_line)."""
    start = tok.start_pos
    if start is None or key in _SECTION_WORDS or key in ("model", "block"):
        return None
    end = _closing(text, start)
    one_line = end is not None and "\n" not in text[start:end]
    at = _tok(tok)
    span = Span(at.line, at.col, at.line, at.col + (end - start + 1 if one_line and end else 1))
    hint = _dict_hint(key, text[start + 1:end] if end is not None else None)
    repaired = None if end is None else _blanked(text, key_at, end + 1)
    return f"unexpected '{{' after '{key}:'", span, hint, repaired


def _dict_hint(key: str, body: str | None) -> str:
    """How dlc writes the value of `key` written as a dict whose inside is `body` (None: not known)."""
    from .catalog import CANONICAL

    family = _key_families().get(key)
    entries = _dict_entries(body) if body is not None else None
    named = next(((k, v) for k, v in entries or [] if k in _DICT_NAME_KEYS), None)
    if not entries or (named is not None and not _NAME_AT.fullmatch(named[1])):  # `{name: {x: 1}}`
        example = f", such as {key}: {CANONICAL[family][0]}(...)" if family in CANONICAL else ""
        return f"dlc has no dicts: a value is a number, a name, a string, a tuple, a list or a call{example}"
    args = ", ".join(f"{k}={v}" for k, v in entries if (k, v) != named)
    if key in _record_keys():
        written = f"({args})"
    elif family is None:
        return "dlc has no dicts: a value is a number, a name, a string, a tuple, a list or a call"
    elif named is None:
        return (f"dlc has no dicts: write {key}: NAME({_shown(args, 60)}), NAME the {family}'s name (such as "
                f"{CANONICAL.get(family, ['...'])[0]})")
    else:
        name = _catalogue_name(family, named[1]) or named[1]
        written = f"{name}({args})" if args else name
    return f"dlc has no dicts: write {key}: {_shown(written, 60)}"


_LAYER_CALL = re.compile(r"[ \t]*[A-Z][A-Za-z0-9_]*[ \t]*(\(|$)")


def _layer_list(text: str, tok: Token) -> tuple[str, Span, str, str | None] | None:
    """`layers { [Dense(16), Dense(8)] }`: a Python list of layers (Keras' Sequential([...])). Said once,
    and the text repaired: the brackets and commas blanked, so that a layer on a line of its own is read
    as one, and a second layer on a line with another blanked (a line holds one statement)."""
    start = tok.start_pos
    if start is None:
        return None
    end = _closing(text, start)
    if end is None:
        return None
    items = [(start + 1 + off, piece) for off, piece in _top_level_split(text[start + 1:end], ",")]
    layers = [(off, piece) for off, piece in items if piece.strip()]
    if not layers or not all(_LAYER_CALL.match(piece.strip()) for _, piece in layers):
        return None
    names = [" ".join(piece.split()) for _, piece in layers]
    hint = f"layers are listed one per line, without [ ] or ',': put {_listed(names)} on lines of their own" \
        if len(names) > 1 else f"a layer is written without [ ]: {_shown(names[0], 40)}"
    out = _blanked(text, start, start + 1)
    out = _blanked(out, end, end + 1)
    lines_used: set[int] = set()
    for off, piece in items:
        if off > start + 1:  # (the ',' before it)
            out = _blanked(out, off - 1, off)
        lead = len(piece) - len(piece.lstrip())
        ln = text.count("\n", 0, off + lead)
        if piece.strip() and ln in lines_used:  # a second layer on one line: not read
            out = _blanked(out, off, off + len(piece))
        elif piece.strip():
            lines_used.add(ln)
    return "unexpected '['", _tok(tok), hint, out


def _listed(items: list[str]) -> str:
    """`Dense(16)`, `Dense(16) and Dense(8)`, `Dense(16), Dense(8) and 3 more`, each shortened."""
    shown = [_shown(i, 40) for i in items[:3]]
    if len(items) > 3:
        return ", ".join(shown) + f" and {len(items) - 3} more"
    return " and ".join([", ".join(shown[:-1]), shown[-1]]) if len(shown) > 1 else shown[0]


# a layer chained to the next with an arrow or a pipe (`Dense(16) -> Dense(8)`: diagrams, PyTorch docs,
# Flux's Chain, a shell's pipe)
_ARROWS = ("->", "=>", ">>", "|>", "|", "→")
_ARROW_AT = re.compile(r"->|=>|>>|\|>|\||→")
_LAYER_BEFORE = re.compile(r"^[ \t]*(\{[ \t]*)?[A-Za-z_][A-Za-z0-9_]*[ \t]*(\(.*\))?[ \t]*(\*[ \t]*[0-9]+)?"
                           r"[ \t]*$")


def _arrow_habit(text: str, pos: int, line: int, col: int) -> tuple[str, Span, str, str | None] | None:
    """`Dense(16) -> Dense(8)` (or `>>`, `|`, a chain whose lines end or start with the arrow): layers are
    applied in the order written, one per line. Said once per chain; the arrows are blanked, and a layer
    after one on its line, so that the rest of the file is read."""
    m = _ARROW_AT.match(text, pos)
    if m is None:
        return None
    line_start = text.rfind("\n", 0, pos) + 1
    before = text[line_start:pos]
    lines = text.split("\n")
    prev = next((ln for ln in reversed(lines[:line - 1]) if ln.split("#")[0].strip()), "")
    leading = not before.strip() and _ARROW_AT.search(prev.split("#")[0].rstrip()[-2:] or "x") is not None
    if re.match(r"[ \t]*schedule[ \t]*:", before) and m.group() in ("->", "=>", ">>", "→"):
        # `schedule: warmup(epochs=5) -> cosine(epochs=45)`
        return (f"unexpected '{m.group()}'", Span(line, col, line, col + len(m.group())),
                "one schedule hands over to the next with warmup's then=: "
                "schedule: warmup(epochs=5, then=cosine(epochs=45))", None)
    if not (_LAYER_BEFORE.match(before.split("{")[-1] if "{" in before else before) and before.strip()) \
            and not leading and not (not before.strip() and re.match(r"[ \t]*[A-Z]", text[m.end():])):
        return None
    arrow = m.group()
    rest = lines[line - 1][col - 1 + len(arrow):].split("#")[0].strip().rstrip("}").strip()
    names = [" ".join(piece.split()) for _, piece in _top_level_split(_ARROW_AT.sub(",", rest), ",")
             if piece.strip()]
    said = "layers are applied in the order they are written, one per line"
    hint = f"{said}: delete the '{arrow}'" if not names or not before.strip() else \
        f"{said}: put {_listed(names)} on a line of its own, without '{arrow}'" if len(names) == 1 else \
        f"{said}: put {_listed(names)} on lines of their own, without '{arrow}'"
    return f"unexpected '{arrow}'", Span(line, col, line, col + len(arrow)), hint, _unchained(lines, line)


def _unchained(lines: list[str], first: int) -> str:
    """The lines of a chain of layers from line `first` on, with its arrows blanked, and what follows an
    arrow on its line when a layer stands before it (one statement a line); braces are kept."""
    out = list(lines)
    ln = first
    while ln <= len(out):
        code = out[ln - 1].split("#")[0]
        arrows = list(_ARROW_AT.finditer(code))
        if not arrows and ln != first:
            break
        out[ln - 1] = _unchained_line(out[ln - 1], code, arrows)
        ends_with_arrow = bool(arrows) and not code[arrows[-1].end():].strip()
        nxt = next((k for k in range(ln + 1, len(out) + 1) if out[k - 1].split("#")[0].strip()), None)
        if nxt is None or not (ends_with_arrow or _ARROW_AT.match(out[nxt - 1].split("#")[0].strip())):
            break
        ln = nxt
    return "\n".join(out)


def _unchained_line(line: str, code: str, arrows: list[re.Match]) -> str:
    """One line of a chain: its arrows blanked; after a layer, what follows the first arrow blanked too
    (after a leading arrow, what follows the second), but its braces."""
    chars = list(line)
    for a in arrows:
        chars[a.start():a.end()] = " " * (a.end() - a.start())
    if arrows:
        layer_before = bool(code[:arrows[0].start()].strip().strip("{").strip())
        cut = arrows[0].end() if layer_before else arrows[1].end() if len(arrows) > 1 else len(code)
        chars[cut:len(code)] = [c if c in "{}" else " " for c in chars[cut:len(code)]]
    return "".join(chars)


def _diagnosed(err: UnexpectedInput, text: str) -> tuple[str, Span, str | None, str | None]:
    """(message, span, hint, the text repaired or None) for one Lark error: another language's habit as
    such (_habit), else as _diagnose says it."""
    habit = _habit(err, text)
    if habit is not None:
        return habit
    return (*_diagnose(err, text), _habit_repair(text, err))


def _diagnose(err: UnexpectedInput, text: str) -> tuple[str, Span, str | None]:
    """(message, span, hint) for one Lark error."""
    if isinstance(err, UnexpectedCharacters):
        # Lark types pos_in_stream by its base class default (None); the lexer always sets its position here
        pos: int = err.pos_in_stream  # type: ignore[assignment]
        ch = text[pos] if pos < len(text) else ""
        col = err.column
        if ch in "+-" and pos + 1 < len(text) and _confusable(text[pos + 1]):  # `-１２`: the sign is fine
            pos, ch, col = pos + 1, text[pos + 1], col + 1
        span = Span(err.line, col, err.line, col + 1)
        if ch == '"':
            return "unterminated string", span, "close it with '\"' on the same line"
        exp = _describe_expected(_accepts_at(text, pos) or err.allowed or [])
        line_text = text.split("\n")[err.line - 1]
        hint = _confusable(ch) or (_one_per_line(line_text[col:], ";") if ch == ";" else None)
        return f"unexpected character {ch!r}", span, hint or (f"expected {exp}" if exp else None)
    if isinstance(err, UnexpectedEOF) or (isinstance(err, UnexpectedToken) and err.token.type == "$END"):
        lines = text.splitlines() or [""]
        line = len(lines)
        col = len(lines[-1]) + 1
        exp = _describe_expected(getattr(err, "expected", None) or [])
        return f"unexpected end of file{'; expected ' + exp if exp else ''}", Span(line, col, line, col), None
    assert isinstance(err, UnexpectedToken)
    tok = err.token
    glued = _glued_number(text, tok)
    if glued is not None:
        return glued
    shown = "end of line" if tok.type == "_NL" else repr(str(tok))
    expected = err.accepts or err.expected
    exp = _describe_expected(expected)
    span = _tok(tok)
    if tok.type == "_NL":
        span = Span(tok.line, tok.column, tok.line, tok.column + 1)
    elif found := _in_line(tok, expected, text.split("\n")[tok.line - 1], span, shown):
        return found
    if tok.type != "_NL" and str(tok) in MODEL_KEYS and "MODEL" in "".join(expected).upper():
        return f"unexpected {shown}", span, (f"'{tok}' belongs inside the model: move it into "
                                             "model NAME { ... }")
    return f"unexpected {shown}", span, (f"expected {exp}" if exp else None)


def _in_line(tok: Token, expected, line_text: str, span: Span, shown: str) -> tuple[str, Span, str] | None:
    """(message, span, hint) for an unexpected token that what stands before it on its line explains."""
    before = line_text[: (tok.column or 1) - 1]
    m = _STATEMENT_WORD.match(before) or (_KEY_WORD.match(before) if tok.type == "EQUAL" else None)
    if m and m.group(1) == "model" and tok.type == "NAME" and "COLON" in expected:  # a model inside a model
        return ("a model cannot stand inside another", Span(span.line, m.start(1) + 1, span.line,
                                                            m.start(1) + 6),
                "a file holds one model, at the top level: close the first with '}' before it, or put it in "
                "a file of its own")
    if m and "COLON" in expected:  # `seed 42`: a statement's key followed directly by a value; `epochs=10`
        return f"missing ':' after '{m.group(1)}'", span, _colon_hint(m.group(1), tok, line_text)
    if tok.type == "COLON" and "EQUAL" in expected and (m := _KWARG_KEY.search(before)):
        # `Dense(16, activation: relu)`: an argument written as a key (YAML, Python's dict)
        value = _argument_text(line_text, tok.end_column - 1 if tok.end_column else len(before) + 1)
        return (f"unexpected ':' after '{m.group(1)}'", span,
                f"arguments are written name=value: write {m.group(1)}={_shown(value, 40)}" if value
                else "arguments are written name=value")
    if tok.type == "EQUAL" and (hint := _bare_record_hint(line_text, before)):
        return "unexpected '='", span, hint
    if tok.type == "LBRACE" and re.match(r"^[ \t]*[A-Za-z_][A-Za-z0-9_]*[ \t]*:[ \t]*$", before):
        name = line_text.split(":")[0].strip()
        return f"unexpected '{{' after '{name}:'", span, f"a section takes no ':': write {name} {{ ... }}"
    m = _ARGUMENT_WORD.search(before)
    if m and "EQUAL" in expected and "COLON" not in expected:
        return f"missing '=' after '{m.group(1)}'", span, f"write {m.group(1)}={tok}"
    # (a second statement after a ',' first: `source: iris, normalize: standard` is no list of values)
    if "_NL" in expected and (hint := _second_statement(line_text, tok)):
        return f"unexpected {shown}", span, hint
    if tok.type == "COMMA" and "COMMA" not in expected and (hint := _bare_list_hint(line_text)):
        return "unexpected ','", span, hint
    return None


_NEXT_STATEMENT = re.compile(r"[ \t]*(([A-Za-z_][A-Za-z0-9_]*)[ \t]*(:|\{|\(|\*|$)[^,;}#]*)")


def _one_per_line(rest: str, sep: str = "") -> str | None:
    """`source: iris, normalize: standard`, `Dense(3); Dense(2)`: what follows the ',' or ';' is a statement
    (a key, a section or a layer) of its own, which a spec ends with a newline."""
    m = _NEXT_STATEMENT.match(rest)
    if m is None or not m.group(1).strip():
        return None
    what = "layer" if m.group(3) in ("(", "*", "") and m.group(2)[:1].isupper() else "statement"
    if what == "statement" and m.group(3) not in (":", "{"):
        return None
    said = f"statements end at a newline, not with '{sep}'" if sep else f"one {what} per line"
    layers = _layer_calls(rest) if what == "layer" else []
    if len(layers) > 1:
        return f"{said}: put {_listed(layers)} on lines of their own"
    return f"{said}: put '{_shown(m.group(1).strip())}' on a line of its own"


_CALL_START = re.compile(r"[ \t,;]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*")


def _layer_calls(rest: str) -> list[str]:
    """The layers written one after another in `rest` (`Dense(4) Dense(2)`, `Dense(4); Dense(2)`), as
    written; up to the first text that is no layer."""
    found: list[str] = []
    i = 0
    while len(found) < 10_000:
        m = _CALL_START.match(rest, i)
        if m is None or not m.group(1)[:1].isupper():
            break
        j = m.end()
        if rest[j:j + 1] == "(":
            end = _closing(rest, j)
            if end is None:
                break
            j = end + 1
        found.append(" ".join(rest[m.start(1):j].split()))
        i = j
    return found


def _second_statement(line_text: str, tok: Token) -> str | None:
    """The hint for a second statement on one line: after a ',' or ';' (`epochs: 3, batch_size: 8`), or
    after a blank (`input: (4)  loss: mse`; `source: iris  normalize: standard`, whose two names read as
    one value until the ':')."""
    at = (tok.column or 1) - 1
    if tok.type == "COMMA":
        return _one_per_line(line_text[at + 1:], ",")
    if tok.type == "COLON":  # (the name before it starts the second statement)
        m = re.search(r"([A-Za-z_][A-Za-z0-9_]*)[ \t]*$", line_text[:at])
        if m is None or not line_text[:m.start()].strip():
            return None
        at = m.start()
    elif tok.type != "NAME" or not line_text[:at].strip():
        return None
    return _one_per_line(line_text[at:])


_BARE_LIST = re.compile(r"^[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*:[ \t]*([^#\"]*?)[ \t]*(#.*)?$")


def _bare_list_hint(line_text: str) -> str | None:
    """`metrics: accuracy, recall`: values that need brackets, written as they would be with them."""
    m = _BARE_LIST.match(line_text)
    if m is None:
        return None
    key, value = m.group(1), m.group(2)
    if value.endswith(",") and "," not in value[:-1] and "(" not in value:  # `seed: 7,` (JSON)
        return _TRAILING_HINT.format(",")
    if key == "input":
        return f"a shape is written in ( ): input: ({value})"
    if key == "objective":
        return "an objective is a direction and a metric: objective: minimize val_loss"
    if key in _single_value_keys():  # `batch_size: 32, 64`
        return f"{key} takes one value; to search several, write {key}: choice({_shown(value, 40)})"
    return f"several values are written as a list: {key}: [{value}]"


@functools.cache
def _single_value_keys() -> frozenset[str]:
    """The keys a spec writes that take one value, not a list (`epochs`, `optimizer`; not `metrics`)."""
    from .catalog import is_list_annotation
    from .spec import Data, Spec
    from .training import Search, Train

    return frozenset(k for cls in (Spec, Data, Train, Search) for k, f in cls.model_fields.items()
                     if not is_list_annotation(f.annotation))


_TRAILING_HINT = "a statement ends at the end of its line: delete the '{}'"
_KEY_WORD = re.compile(r"^[ \t]*([a-z_][A-Za-z0-9_]*)[ \t]*$")  # `epochs` before `=10`
# `activation` before `: relu` (the argument after a '(' or ',', or first on a line of a call spanning lines)
_KWARG_KEY = re.compile(r"(?:^|[(,])[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*$")
_KEY_AND_NAME = re.compile(r"^[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*:[ \t]*[A-Za-z_][A-Za-z0-9_]*[ \t]*$")


def _argument_text(line_text: str, start: int) -> str:
    """The argument's value written from column `start` (0-based) of a line: up to the ',' or ')' that ends
    it (brackets inside it kept), without blanks around it."""
    depth = 0
    for i in range(start, len(line_text)):
        c = line_text[i]
        if c in "([":
            depth += 1
        elif c in ")]":
            if depth == 0:
                return line_text[start:i].strip()
            depth -= 1
        elif (c == "," and depth == 0) or c == "#":
            return line_text[start:i].strip()
    return line_text[start:].strip()


@functools.cache
def _record_keys() -> frozenset[str]:
    """The keys whose value is a record of name=value in ( ) (`early_stopping`, `objective`)."""
    from .catalog import record_class
    from .spec import Data
    from .training import Search, Train

    return frozenset(k for cls in (Data, Train, Search) for k, f in cls.model_fields.items()
                     if record_class(f.annotation) is not None)


def _bare_record_hint(line_text: str, before: str) -> str | None:
    """`early_stopping: patience=3`, `optimizer: lr=0.01`: arguments written as a key's value, without the
    ( ) of a record or the name of a call."""
    m = _KEY_AND_NAME.match(before)
    if m is None:
        return None
    key = m.group(1)
    args = re.sub(r"#[^\"]*$", "", line_text[line_text.index(":") + 1:]).strip().rstrip(",")
    if key in _record_keys():
        return f"name=value arguments are grouped in ( ): write {key}: ({_shown(args, 60)})"
    return f"name=value arguments belong in a call: write {key}: NAME({_shown(args, 60)})"


_NUMBERISH = re.compile(r"[+-]?[0-9.](?:[A-Za-z0-9_.]|(?<=[eE])[+-])*")
_RADIX = {"x": 16, "o": 8, "b": 2}
_RADIX_DIGITS = {16: "[0-9a-fA-F]{1,16}", 8: "[0-7]{1,22}", 2: "[01]{1,64}"}


def _glued_number(text: str, tok: Token) -> tuple[str, Span, str] | None:
    """`0x10`, `1_000`, `1e`, `1.2.3`: a number with more written onto it (read as a number and then an
    unexpected name), reported as one word that is no number, with how to write it."""
    start = tok.start_pos
    if tok.type == "_NL" or start is None or start == 0 or text[start - 1] not in "0123456789.":
        return None
    a = start
    while a > 0 and text[a - 1] in "0123456789.eE":
        a -= 1
    if a > 0 and (text[a - 1].isalnum() or text[a - 1] == "_"):  # `a1.5`: a name before it
        return None
    if a > 0 and text[a - 1] in "+-":
        a -= 1
    m = _NUMBERISH.match(text, a)
    if m is None or m.end() <= start:
        return None
    word = m.group()
    line = text.count("\n", 0, a) + 1
    col = a - (text.rfind("\n", 0, a) + 1) + 1
    span = Span(line, col, line, col + len(word))
    if _number_token().fullmatch(word) and text[:a].rstrip().endswith("*"):  # `Dense(8) * 2.5`
        return f"'{_shown(word)}' is not a whole number", span, "a layer is repeated a whole number of times"
    return f"'{_shown(word)}' is not a number", span, _number_hint(word)


def _number_hint(word: str) -> str:
    """How to write what `word` (no number as it stands) likely means."""
    sign, digits = ("-", word[1:]) if word[:1] in "+-" else ("", word)
    radix = _RADIX.get(digits[1:2].lower()) if digits[:1] == "0" else None
    if radix is not None:
        value = digits[2:]
        shown = f": write {sign}{int(value, radix)}" if re.fullmatch(_RADIX_DIGITS[radix], value) else ""
        return f"numbers are written in decimal{shown}"
    if "_" in word and _number_token().fullmatch(word.replace("_", "")):
        return f"digits are not grouped: write {word.replace('_', '')}"
    if re.search(r"[eE][+-]?$", word):
        return "an exponent needs digits: for example 1e-4"
    if word.count(".") > 1:
        return "a number has at most one '.'"
    return "numbers are written like 3, 0.5 or 1e-4"


@functools.cache
def _number_token() -> re.Pattern:
    """The grammar's own number (SIGNED_NUMBER in dlspec.lark), so that a hint's "write 1000" is one."""
    return re.compile(_parser().get_terminal("SIGNED_NUMBER").pattern.to_regexp())


# letters of other scripts drawn like Latin ones: pasted, or typed with another keyboard layout (`rеlu` with a
# Cyrillic 'е' looks right and is not)
_LOOKALIKES = dict(zip("аеорсухіјѕԁАВЕКМНОРСТХЅІЈοαντιΑΒΕΖΗΙΚΜΝΟΡΤΥΧ",
                       "aeopcyxijsdABEKMHOPCTXSIJoavtiABEZHIKMNOPTYX", strict=True))
_INVISIBLE = {"\u200b": "a zero-width space", "\u200c": "a zero-width non-joiner",
              "\u200d": "a zero-width joiner", "\u2060": "a word joiner",
              "\ufeff": "a zero-width no-break space (a byte-order mark)", "\u00ad": "a soft hyphen"}
_LOOKALIKE_MARKS = {"\u00a0": "a non-breaking space", "\u202f": "a narrow non-breaking space",
                    "\u2007": "a figure space", "\u3000": "an ideographic (full-width) space",
                    "\u201c": "a curly quote", "\u201d": "a curly quote", "\u201e": "a curly quote",
                    "\u2018": "a curly quote", "\u2019": "a curly quote", "\u2212": "a minus sign",
                    "\u2013": "an en dash", "\u2014": "an em dash"}
_PLAIN = {"quote": "'\"'", "sign": "'-'", "dash": "'-'"}


def _confusable(ch: str) -> str | None:
    """The hint for an unexpected character that looks like another (or like nothing): a Cyrillic letter
    drawn as a Latin one, a full-width parenthesis, a non-breaking or zero-width space, a curly quote."""
    if ch in _INVISIBLE:
        return f"this is {_INVISIBLE[ch]}, which shows as nothing; delete it"
    if ch in _LOOKALIKE_MARKS:
        what = _LOOKALIKE_MARKS[ch]
        return f"this is {what}; write {_PLAIN.get(what.rsplit(' ', 1)[-1], 'a plain space')}"
    if ch in _LOOKALIKES:
        script, latin = unicodedata.name(ch, "").split(" ")[0].capitalize(), _LOOKALIKES[ch]
        return f"{ch!r} is a {script} letter that looks like Latin '{latin}'; write '{latin}'"
    if "\uff01" <= ch <= "\uff5e":  # the full-width forms of ASCII
        plain = chr(ord(ch) - 0xFEE0)
        return f"{ch!r} is a full-width '{plain}'; write '{plain}'"
    if ch.isdecimal():  # (`epochs: １２` read as 12 before: numbers are written in ASCII digits)
        return f"{ch!r} is a digit of another script; write '{unicodedata.decimal(ch)}'"
    if ch.isspace() and ch not in " \t\n\r":
        return "this is a Unicode space; write a plain space"
    return None


# what a model holds: written outside it (after its closing brace) it is said to belong inside
MODEL_KEYS = {"seed", "data", "input", "layers", "loss", "metrics", "optimizer", "schedule", "train",
              "search", "dtype"}


def _colon_hint(key: str, tok: Token, line_text: str) -> str:
    """`write seed: 42` for `seed 42`; for `seed = 1`, the value after the '=' (not `seed: =`)."""
    if tok.type != "EQUAL":
        return f"write {key}: {tok}"
    rest = re.sub(r"#[^\"]*$", "", line_text[tok.end_column - 1:] if tok.end_column else "").strip()
    if rest.startswith("{"):
        return f"a section takes no '=': write {key} {{ ... }}"
    return f"use ':' instead of '=': {key}: {_shown(rest)}" if rest else "use ':' instead of '='"


# ------------------------------------------------------------------------------------------------- recovery

RECOVERED = "__recovered__"  # placeholder name for a blanked section header; the AST drops it
_PAIR = {")": "(", "]": "[", "}": "{"}
_CLOSE_OF = {"(": ")", "[": "]", "{": "}"}
# what may stand before a '{' that opens a block: `data`, `model m`, `block b(x, y)`
_HEADER = re.compile(r"^[ \t]*[A-Za-z_][A-Za-z0-9_]*([ \t]+[A-Za-z_][A-Za-z0-9_]*)?([ \t]*\(.*\))?[ \t]*$")
_BLOCK_HEADER = re.compile(r"^[ \t]*block[ \t]+([A-Za-z_][A-Za-z0-9_]*)")


@dataclass
class _Scan:
    """Brackets, strings and comments of a text, found line by line without the parser."""

    lines: list[str]
    brackets: list[tuple[str, int, int]] = field(default_factory=list)  # (char, line, 0-based col)
    unterminated: dict[int, int] = field(default_factory=dict)  # line -> 0-based col of the '"' left open
    code_end: list[int] = field(default_factory=list)  # per line: 0-based col after the last code character
    indent: list[int | None] = field(default_factory=list)  # per line: indentation, None for no code
    # line -> col of a string directly followed by a name
    runs_on: dict[int, int] = field(default_factory=dict)
    by_line: dict[int, list[tuple[str, int, int]]] = field(default_factory=dict)  # brackets per line
    # (line, bracket) -> the column of the first / last one on that line: what the repairs ask of every
    # bracket, answered without scanning its line again (a line of 60,000 brackets would take minutes)
    first: dict[tuple[int, str], int] = field(default_factory=dict)
    last: dict[tuple[int, str], int] = field(default_factory=dict)

    def on_line(self, ln: int, chars: str = "{}") -> list[tuple[str, int, int]]:
        return [b for b in self.by_line.get(ln, ()) if b[0] in chars]

    def code_after(self, ln: int, col: int) -> str:
        """The code on line `ln` after column `col` (comments and trailing blanks left out)."""
        return self.lines[ln - 1][col + 1: self.code_end[ln - 1]].strip()

    def has_code_after(self, ln: int, col: int) -> bool:
        """Whether `code_after` is not empty, mostly without copying the rest of the line (it is asked for
        each bracket)."""
        end = self.code_end[ln - 1]
        if end <= col + 1:
            return False
        return not self.lines[ln - 1][end - 1].isspace() or bool(self.code_after(ln, col))


_SPECIAL = re.compile(r'[#"()\[\]{}]')
_STRING_AT = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


@functools.lru_cache(maxsize=2)
def _scan(text: str) -> _Scan:
    """One pass over the text (a regular expression finds the next character of interest, so that the
    largest spec file is scanned in a fraction of a second). The repairs scan the same text several times
    over, so the last few scans are kept; a scan is never changed once made."""
    sc = _Scan(text.split("\n"))
    for ln, s in enumerate(sc.lines, 1):
        i, n, end = 0, len(s), 0
        while i < n:
            m = _SPECIAL.search(s, i)
            j = m.start() if m else n
            if s[i:j].strip():
                end = i + len(s[i:j].rstrip())
            if m is None:
                break
            c = s[j]
            if c == "#":
                break
            if c == '"':
                q = _STRING_AT.match(s, j)
                if q is None:
                    sc.unterminated[ln] = j
                    end = n
                    break
                k = q.end()
                if k < n and (s[k].isalnum() or s[k] == "_"):
                    # `"a, b="c"`: the first string likely lacks its closing quote
                    sc.runs_on.setdefault(ln, j)
                i = end = k
                continue
            sc.brackets.append((c, ln, j))
            sc.by_line.setdefault(ln, []).append((c, ln, j))
            sc.first.setdefault((ln, c), j)
            sc.last[(ln, c)] = j
            i = end = j + 1
        sc.code_end.append(end)
        sc.indent.append(len(s) - len(s.lstrip(" \t")) if end else None)
    return sc


def _keep_braces(braces: str, depth_at_start: int, indent: int) -> str:
    """What survives of a blanked line: its braces, a '{' behind a placeholder name (the blocks hold)."""
    if "{" not in braces:
        return braces
    lead = len(braces) - len(braces.lstrip("}"))
    head = f"block {RECOVERED}() " if depth_at_start - lead <= 0 else f"{RECOVERED} "
    rest = braces[lead:]
    first = rest.index("{") + 1  # (each further '{' behind a name of its own: `{{` cannot be parsed)
    rest = rest[:first] + rest[first:].replace("{", f" {RECOVERED} {{")
    return braces[:lead] + " " * indent + head + rest


def _note_lost_header(diags: Diagnostics, line: str) -> None:
    """A blanked line that opened a block may have defined a block: its uses are not reported as unknown."""
    m = _BLOCK_HEADER.match(line)
    if m:
        diags.recovered_blocks.add(m.group(1))
    diags.recovered_blocks.add("*")  # any snake_case name may be that block


def _remove_char(line: str, col: int) -> str:
    """Drop one character; between two name characters entirely (`lo}ss` -> `loss`), else a blank stays."""
    def word(ch: str) -> bool:
        return ch.isalnum() or ch == "_"

    glue = 0 < col < len(line) - 1 and word(line[col - 1]) and word(line[col + 1])
    return line[:col] + ("" if glue else " ") + line[col + 1:]


def _edit_line(line: str, removed: Iterable[int] = (), inserted: Iterable[tuple[int, int, str]] = ()) -> str:
    """`line` with the brackets at the columns `removed` taken out (each as `_remove_char` would) and each
    (col, order, text) of `inserted` put before column col (at one column, lowest order first), in one pass:
    edited one at a time, a line of 60,000 brackets would be copied 60,000 times."""
    gone = set(removed)
    before: dict[int, list[tuple[int, str]]] = {}
    for col, order, txt in inserted:
        before.setdefault(col, []).append((order, txt))

    def word(ch: str) -> bool:
        return ch.isalnum() or ch == "_"

    out: list[str] = []
    prev = 0
    for col in sorted(gone | before.keys()):
        out.append(line[prev:col])
        out.extend(txt for _, txt in sorted(before.get(col, ()), key=lambda e: e[0]))
        prev = col
        if col in gone:  # (a closer inserted right after it is no name character: no glue then)
            glue = (0 < col < len(line) - 1 and word(line[col - 1]) and word(line[col + 1])
                    and col + 1 not in before)
            out.append("" if glue else " ")
            prev = col + 1
    out.append(line[prev:])
    return "".join(out)


def _insert_at(lines: list[str], ln: int, col: int, txt: str) -> None:
    lines[ln - 1] = lines[ln - 1][:col] + txt + lines[ln - 1][col:]


def _last_code_line(sc: _Scan, before: int, at_least: int) -> int:
    ln = before - 1
    while ln > at_least and sc.indent[ln - 1] is None:
        ln -= 1
    return ln


def _statement_end(sc: _Scan, ln: int, limit: int) -> int | None:
    """The first line after `ln` (up to `limit`) indented no deeper than `ln`: where its statement ended."""
    base = sc.indent[ln - 1] or 0
    return next((k for k in range(ln + 1, limit + 1)
                 if (indent := sc.indent[k - 1]) is not None and indent <= base), None)


def _fix_strings(lines: list[str], diags: Diagnostics) -> list[str]:
    """An unterminated string: reported at its opening quote; its line is blanked, keeping the braces."""
    sc = _scan("\n".join(lines))
    if not sc.unterminated:
        return lines
    out = list(lines)
    depth = 0
    for ln in range(1, len(lines) + 1):
        braces = "".join(b[0] for b in sc.on_line(ln))
        if ln in sc.unterminated:
            start = sc.unterminated[ln]
            col = min(start, sc.runs_on.get(ln, start)) + 1
            escaped = '\\"' in lines[ln - 1][start + 1:]  # `"C:\data\"`: the last quote is escaped
            diags.add("E001", "syntax error: unterminated string", Span(ln, col, ln, col + 1),
                      "a backslash before '\"' makes it part of the string: write \\\\ for a backslash"
                      if escaped else "close it with '\"' on the same line")
            # a brace swallowed by the runaway string is structure: `tr"ain {`
            braces += "".join(c for c in lines[ln - 1][start:] if c in "{}")
            out[ln - 1] = _keep_braces(braces, depth, sc.indent[ln - 1] or 0)
            if "{" in braces:
                _note_lost_header(diags, lines[ln - 1])
        depth += braces.count("{") - braces.count("}")
    return out


def _drop_braces_in_calls(lines: list[str], diags: Diagnostics) -> list[str]:
    """A '{' or '}' between a '(' and its ')' on one line (`Adam(lr=1e-3, beta_{1=0.9)`) is a typo: reported
    and removed, before it is taken to end the call."""
    sc = _scan("\n".join(lines))
    out = list(lines)
    for ln in sorted(sc.by_line, reverse=True):
        inside = _braces_in_calls(sc.by_line[ln])
        for c, col in reversed(inside):
            diags.add("E001", f"syntax error: unexpected '{c}'", Span(ln, col + 1, ln, col + 2),
                      "a brace cannot stand inside ( )")
        if inside:
            out[ln - 1] = _edit_line(out[ln - 1], removed=[col for _, col in inside])
            diags.repaired_lines.add(ln)
    return out


def _braces_in_calls(on_line: list[tuple[str, int, int]]) -> list[tuple[str, int]]:
    """(brace, col) of the braces between a '(' or '[' and the closer that pairs with it on one line, left
    to right. Pairs nest, so one sweep counting the pairs open at each column answers it."""
    stack: list[int] = []
    starts: set[int] = set()
    ends: set[int] = set()
    for c, _, col in on_line:
        if c in "([":
            stack.append(col)
        elif c in ")]" and stack:
            starts.add(stack.pop())
            ends.add(col)
    inside: list[tuple[str, int]] = []
    depth = 0
    for c, _, col in on_line:
        if col in starts:
            depth += 1
        elif col in ends:
            depth -= 1
        elif c in "{}" and depth > 0:
            inside.append((c, col))
    return inside


def _fix_parens(lines: list[str], diags: Diagnostics) -> list[str]:
    """A '(' or '[' never closed (a brace or the end of the file comes first) and a ')' or ']' with nothing to
    close: reported where they are; a closer is inserted where the statement ends by its indentation."""
    lines = _drop_braces_in_calls(lines, diags)
    sc = _scan("\n".join(lines))
    unclosed, stray = _unpaired_parens(sc)
    if not unclosed and not stray:
        return lines
    _one_too_many(lines, unclosed, stray, diags)
    edits = [_closer_edit(sc, lines, opener, end, diags)
             for opener, end in sorted(unclosed, key=lambda t: (t[0][1], t[0][2]))]
    for c, ln, col in stray:
        if c in ")]":
            diags.add("E001", f"syntax error: unmatched '{c}'", Span(ln, col + 1, ln, col + 2),
                      f"no '{_PAIR[c]}' is open here")
        diags.repaired_lines.add(ln)
    out = list(lines)
    inserts: dict[int, list[tuple[int, int, str]]] = {}
    removals: dict[int, list[int]] = {}
    for ln, col, order, txt in edits:
        inserts.setdefault(ln, []).append((col, order, txt))
    for _, ln, col in stray:
        removals.setdefault(ln, []).append(col)
    for ln in inserts.keys() | removals.keys():
        out[ln - 1] = _edit_line(out[ln - 1], removals.get(ln, ()), inserts.get(ln, ()))
    return out


def _unpaired_parens(sc: _Scan) -> tuple[list, list]:
    """The '(' and '[' left open, each with the brace that ends it (None: the end of the file), and the ')'
    and ']' with nothing to close."""
    stack: list[tuple[str, int, int]] = []
    unclosed: list[tuple[tuple[str, int, int], tuple[int, int] | None]] = []  # (opener, the brace ending it)
    stray: list[tuple[str, int, int]] = []
    open_count = {"(": 0, "[": 0}  # how many of each are on the stack (asked at every closer: kept count of)

    def pop() -> tuple[str, int, int]:
        op = stack.pop()
        open_count[op[0]] -= 1
        return op

    for br in sc.brackets:
        c, ln, col = br
        if c in "([":
            stack.append(br)
            open_count[c] += 1
        elif c in ")]":
            top_closes_later = stack and stack[-1][1] == ln and sc.last.get(
                (ln, _CLOSE_OF[stack[-1][0]]), -1) > col
            if not open_count[_PAIR[c]] or (stack[-1][0] != _PAIR[c] and top_closes_later):
                stray.append(br)  # `crop(8, padding=]1)`: the ']' is the odd one out, not the '('
                continue
            while stack[-1][0] != _PAIR[c]:
                unclosed.append((pop(), (ln, col)))
            pop()
        else:  # no bracket stays open across a brace
            while stack:
                unclosed.append((pop(), (ln, col)))
    unclosed += [(op, None) for op in reversed(stack)]
    return unclosed, stray


def _one_too_many(lines: list[str], unclosed: list, stray: list, diags: Diagnostics) -> None:
    """`Den[se(8)`, `metrics: [accuracy][`: where the grammar takes no bracket, an unclosed one is one too
    many: reported, and moved from `unclosed` to `stray` (to be removed)."""
    text = "\n".join(lines)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    for item in list(unclosed):
        c, ln, col = item[0]
        accepts = _accepts_at(text, starts[ln - 1] + col)
        if accepts and ("LPAR" if c == "(" else "LSQB") not in accepts:
            unclosed.remove(item)
            stray.append(item[0])
            diags.add("E001", f"syntax error: unexpected '{c}'", Span(ln, col + 1, ln, col + 2),
                      f"expected {_describe_expected(accepts)}")


def _closer_edit(sc: _Scan, lines: list[str], opener: tuple[str, int, int], end: tuple[int, int] | None,
                 diags: Diagnostics) -> tuple[int, int, int, str]:
    """Report an unclosed '(' or '['; the edit that closes it where its statement ends (by indentation),
    else before the brace that ends it or the end of the file: (line, col, -opener position, text), the
    order putting inner closers first."""
    c, ln, col = opener
    close = _CLOSE_OF[c]
    order = -(ln * 1_000_000 + col)  # (a line has fewer characters: a spec has at most 256 KB)
    stop = _statement_end(sc, ln, end[0] if end else len(lines))
    if stop is not None:
        at = _last_code_line(sc, stop, ln)
        edit = (at, sc.code_end[at - 1], order, close)
        hint = f"expected '{close}' before line {stop}"
    elif end is not None:
        at = end[0]
        edit = (at, end[1], order, close)
        where = "" if at == ln else f" on line {at}"
        hint = f"expected '{close}' before the '{lines[at - 1][end[1]]}'{where}"
    else:
        at = _last_code_line(sc, len(lines) + 1, ln)
        edit = (at, sc.code_end[at - 1], order, close)
        hint = f"expected '{close}' before the end of the file"
    diags.add("E001", f"syntax error: '{c}' opened here is never closed", Span(ln, col + 1, ln, col + 2),
              hint)
    diags.repaired_lines.update(range(ln, at + 1))
    return edit


def _report(diags: Diagnostics, msg: str, ln: int, col: int, hint: str) -> None:
    diags.add("E001", f"syntax error: {msg}", Span(ln, col + 1, ln, col + 2), hint)


def _fix_one_brace(lines: list[str], diags: Diagnostics) -> list[str] | None:
    """Find the worst brace problem, report it and repair it; None when every '{' has its '}'.

    Counting says whether a '{' or a '}' is missing; indentation says which one: a '}' is expected at the
    start of a line indented like its block's header, or at the end of a one-line block."""
    sc = _scan("\n".join(lines))
    stack: list[tuple[str, int, int]] = []
    partner: dict[tuple[str, int, int], tuple[str, int, int]] = {}
    stray: list[tuple[str, int, int]] = []
    for br in sc.brackets:
        if br[0] == "{":
            stack.append(br)
        elif br[0] == "}":
            if stack:
                op = stack.pop()
                partner[op], partner[br] = br, op
            else:
                stray.append(br)
    if stray:
        return _fix_stray_closer(lines, sc, partner, stray[0], diags)
    if not stack:
        return None
    return _fix_open_brace(lines, sc, partner, stack, diags)


def _fix_stray_closer(lines: list[str], sc: _Scan, partner: dict, first: tuple[str, int, int],
                      diags: Diagnostics) -> list[str]:
    """A '}' too many (`first`, the first one counting finds, or an earlier one indentation points at):
    removed, or its block's lost '{' restored."""
    braces = [b for b in sc.brackets if b[0] in "{}"]
    closers = [b for b in braces if b[0] == "}" and (b[1], b[2]) <= (first[1], first[2])]
    out = list(lines)
    accidental = _accidental_closer(sc, closers)
    if accidental is not None:  # `lo}ss: mse`, `}Dense(10)`: a '}' typed by accident
        _, ln, col = accidental
        _report(diags, "unmatched '}'", ln, col, "no '{' is open here")
        out[ln - 1] = _remove_char(out[ln - 1], col)
        return out
    for br in closers:
        _, ln, col = br
        if col != sc.indent[ln - 1] or sc.code_after(ln, col):
            continue
        op = partner.get(br)
        if op is not None and (sc.indent[op[1] - 1] or 0) >= col:
            continue
        # a '}' that ends a block by its indentation, but whose '{' is lost: the block's header is the
        # line above its body, indented like the '}'
        k = _last_code_line(sc, ln, 0)
        while k >= 1 and ((indent := sc.indent[k - 1]) is None or indent > col):
            k -= 1
        if k >= 1 and sc.indent[k - 1] == col and not sc.on_line(k) and _COLON_HEADER.match(
                lines[k - 1][: sc.code_end[k - 1]]):  # `layers:` (YAML) above the body: its '{'
            colon = lines[k - 1][: sc.code_end[k - 1]].rindex(":")
            name = lines[k - 1][:colon].strip()
            _report(diags, f"unexpected ':' after '{name}'", k, colon, _braces_hint(name))
            out[k - 1] = out[k - 1][:colon] + "{" + out[k - 1][colon + 1:]
            return out
        if k >= 1 and sc.indent[k - 1] == col and not sc.on_line(k) and _HEADER.match(
                lines[k - 1][: sc.code_end[k - 1]]):
            end = sc.code_end[k - 1]
            _report(diags, "missing '{'", k, end,
                    f"the '}}' on line {ln} closes a block that this line should open")
            _insert_at(out, k, end, " {")
            return out
        body = next((j for j in range(k + 1, ln) if sc.indent[j - 1] is not None), None)
        if body is not None:  # no header to repair: the body becomes a block that is dropped
            _report(diags, "unmatched '}'", ln, col,
                    f"no '{{' opens the block it closes (lines {body} to {ln - 1})")
            indent = sc.indent[body - 1] or 0
            depth = sum(1 if b[0] == "{" else -1 for b in braces if b[1] < body)
            head = f"{RECOVERED} {{ " if depth > 0 else f"block {RECOVERED}() {{ "
            _note_lost_header(diags, lines[k - 1] if k >= 1 else "")
            out[body - 1] = out[body - 1][:indent] + head + out[body - 1][indent:]
            diags.repaired_lines.add(body)
            return out
    _, ln, col = first
    _report(diags, "unmatched '}'", ln, col, "no '{' is open here")
    out[ln - 1] = _remove_char(out[ln - 1], col)
    return out


def _accidental_closer(sc: _Scan, closers: list[tuple[str, int, int]]) -> tuple[str, int, int] | None:
    """The first '}' in the middle of a line, or before code at a line's start: typed by accident."""
    for br in closers:
        _, ln, col = br
        opened_here = sc.first.get((ln, "{"), col) < col
        mid_line = col != sc.indent[ln - 1] and not opened_here
        trailing = col == sc.indent[ln - 1] and sc.code_after(ln, col).strip("}").strip() != ""
        if mid_line or trailing:
            return br
    return None


_KEY_COLON = re.compile(r"^[ \t]*[A-Za-z_][A-Za-z0-9_]*[ \t]*:[ \t]*$")  # `layers: {`: the parser says it


def _opens_no_block(line: str, sc: _Scan, ln: int, col: int) -> str | None:
    """Why the '{' at `col` (left open on its line) cannot open a block, or None: it follows another '{'
    (`data { {`), ends a value (`source: iris{`), or stands before what no statement starts with
    (`Dense{(3)`)."""
    before = line[:col].rstrip()
    if before.endswith("{"):
        return "a '{' is open already: a block opens with one"
    if re.search(r"[:=]", before) and not _KEY_COLON.match(before):
        return "no block opens here"
    after = sc.code_after(ln, col) if sc.has_code_after(ln, col) else ""
    if after and not (after[0].isalpha() or after[0] in "_{}"):
        return f"no statement starts with '{after[0]}'"
    return None


def _fix_open_brace(lines: list[str], sc: _Scan, partner: dict, stack: list[tuple[str, int, int]],
                    diags: Diagnostics) -> list[str]:
    """A '{' never closed: removed when it opens no block (`Den{se(10)`), else closed where its statement
    ends by its indentation."""
    out = list(lines)
    openers = [b for b in sc.brackets if b[0] == "{"]
    for op in openers:  # `Den{se(10)`: a '{' that opens no block
        _, ln, col = op
        closed_here = sc.last.get((ln, "}"), col) > col
        key = _KEY_BEFORE_BRACE.match(lines[ln - 1][:col])
        if key and not closed_here and sc.has_code_after(ln, col) and key.group(2) not in _SECTION_WORDS:
            # `optimizer: {name: adam` (a dict, and its '}' left out): said as a dict; the statement blanked
            _report(diags, f"unexpected '{{' after '{key.group(2)}:'", ln, col,
                    _dict_hint(key.group(2), sc.code_after(ln, col)))
            out[ln - 1] = " " * sc.code_end[ln - 1] + lines[ln - 1][sc.code_end[ln - 1]:]
            return out
        if not closed_here and sc.has_code_after(ln, col) and not _HEADER.match(lines[ln - 1][:col]):
            _report(diags, "unmatched '{'", ln, col, "no '}' closes it")
            out[ln - 1] = _remove_char(out[ln - 1], col)
            return out
        hint = None if closed_here else _opens_no_block(lines[ln - 1], sc, ln, col)
        if hint is not None:
            _report(diags, "unexpected '{'", ln, col, hint)
            out[ln - 1] = _remove_char(out[ln - 1], col)
            return out
    # the '{' whose '}' is indented left of its header lacks its own '}'; else the innermost one left open
    dedented = [op for op in openers if op in partner and partner[op][2] == sc.indent[partner[op][1] - 1]
                and partner[op][2] < (sc.indent[op[1] - 1] or 0)]
    _, ln, col = dedented[0] if dedented else stack[-1]
    stop = _statement_end(sc, ln, len(lines))
    if stop is not None:
        at = _last_code_line(sc, stop, ln)
        hint = f"expected '}}' before line {stop}"
    else:
        at = _last_code_line(sc, len(lines) + 1, ln)
        hint = "expected '}' before the end of the file"
    _report(diags, "'{' opened here is never closed", ln, col, hint)
    _insert_at(out, at, sc.code_end[at - 1], " }" if at == ln else "}")
    return out


# characters the brace repairs of the pre-pass may scan, over all of them (about a second's work)
SCAN_BUDGET = 2_000_000


def _prepass(text: str, diags: Diagnostics) -> str:
    """Report and repair unterminated strings, then brackets, then braces that do not pair up."""
    lines = _fix_parens(_fix_strings(text.split("\n"), diags), diags)
    # each brace repair scans the whole text again: at most 20, and fewer in a large file (SCAN_BUDGET)
    for _ in range(max(1, min(20, SCAN_BUDGET // max(1, len(text))))):
        fixed = _fix_one_brace(lines, diags)
        if fixed is None:
            break
        lines = fixed
    return "\n".join(lines)


def _blank_statement(text: str, line: int, diags: Diagnostics) -> str | None:
    """Blank the statement on `line` (every line of it when brackets make it span several), keeping braces."""
    sc = _scan(text)
    n = len(sc.lines)
    if not 1 <= line <= n:
        return None
    paren_start = [0] * (n + 2)  # '(' / '[' depth at the start of each line
    brace_start = [0] * (n + 2)
    paren = brace = 0
    it = iter(sc.brackets)
    pending = next(it, None)
    for ln in range(1, n + 1):
        paren_start[ln], brace_start[ln] = paren, brace
        while pending is not None and pending[1] == ln:
            c = pending[0]
            if c in "([":
                paren += 1
            elif c in ")]":
                paren = max(0, paren - 1)
            else:
                brace += 1 if c == "{" else -1
            pending = next(it, None)
    paren_start[n + 1] = paren
    first = line
    while first > 1 and paren_start[first] > 0:
        first -= 1
    last = line
    while last < n and paren_start[last + 1] > 0:
        last += 1
    lines = list(sc.lines)
    if any(b[0] == "{" for ln in range(first, last + 1) for b in sc.on_line(ln)):
        _note_lost_header(diags, lines[first - 1])
    for ln in range(first, last + 1):
        lines[ln - 1] = _keep_braces("".join(b[0] for b in sc.on_line(ln)), brace_start[ln],
                                     sc.indent[ln - 1] or 0)
    out = "\n".join(lines)
    return None if out == text else out


def _brace_on_next_line(text: str, err: UnexpectedInput, span: Span) -> tuple[str, str, str, Span] | None:
    """`model m` with its '{' on the next line: (message, hint, text with the '{' moved up, the '{' span)."""
    tok = getattr(err, "token", None)
    lines = text.split("\n")
    if tok is not None and tok.type == "LBRACE" and not lines[tok.line - 1][: tok.column - 1].strip():
        # `layers` alone on a line (a valid statement on its own) and its '{' below
        k = tok.line - 1
        while k >= 1 and not lines[k - 1].split("#")[0].strip():
            k -= 1
        if k >= 1 and _HEADER.match(lines[k - 1].split("#")[0]) and "{" not in lines[k - 1]:
            header = lines[k - 1].split("#")[0].rstrip()
            brace_line = lines[tok.line - 1]
            lines[tok.line - 1] = brace_line[: tok.column - 1] + " " + brace_line[tok.column:]
            lines[k - 1] = header + " {" + lines[k - 1][len(header):]
            return ("'{' must be on the same line as its header", f"write {header.strip()} {{",
                    "\n".join(lines), span)
        return None
    # a newline token: only an UnexpectedToken carries one (UnexpectedEOF's token is "<EOF>")
    if not isinstance(err, UnexpectedToken) or err.token.type != "_NL" or "LBRACE" not in (
            err.accepts or err.expected):
        return None
    k = span.line
    while k < len(lines) and not lines[k].strip():
        k += 1
    if k >= len(lines) or not lines[k].lstrip().startswith("{"):
        return None
    header = lines[span.line - 1].rstrip()
    col = len(lines[k]) - len(lines[k].lstrip())
    lines[k] = lines[k][:col] + " " + lines[k][col + 1:]
    lines[span.line - 1] = header + " {"
    return ("'{' must be on the same line as its header", f"write {header.strip()} {{", "\n".join(lines),
            Span(k + 1, col + 1, k + 1, col + 2))


# how deep brackets and braces may nest (the tree is read recursively: Python's stack bounds it)
MAX_NESTING = 64
# characters the parser may read for one file, over every attempt: syntax recovery parses the file again after
# each error, and the parser reads about 100 KB a second, so a large file of many errors would take minutes.
# Twice the largest spec file: a small file still gets every recovery attempt (max_errors)
PARSE_BUDGET = 2 * 256 * 1024
_budget: ContextVar[list[int] | None] = ContextVar("dlc_parse_budget", default=None)


def _spend(n: int) -> bool:
    """Charge `n` characters of parsing to the current file; False (nothing charged) when not left."""
    left = _budget.get()
    if left is None:
        return True
    if left[0] < n:
        return False
    left[0] -= n
    return True


def _too_deep(text: str, diags: Diagnostics) -> bool:
    """Report the first bracket or brace nested more than MAX_NESTING deep; True if there is one."""
    depth = 0
    for c, ln, col in _scan(text).brackets:
        depth += 1 if c in "([{" else -1
        if depth > MAX_NESTING:
            diags.add("E210", f"nested too deeply: more than {MAX_NESTING} levels of brackets and braces",
                      Span(ln, col + 1, ln, col + 2), f"at most {MAX_NESTING} levels of (, [ and {{ may nest")
            return True
        depth = max(depth, 0)
    return False


def parse(text: str, diags: Diagnostics, max_errors: int = MAX_SHOWN) -> A.File | None:
    """Parse `text`; record every syntax error in `diags`; return the AST if some parse succeeded."""
    token = _budget.set([PARSE_BUDGET])
    try:
        return _parse(text, diags, max_errors)
    finally:
        _budget.reset(token)
        _scan.cache_clear()  # (the scans of a 256 KB file of brackets hold tens of MB: not kept after it)


def _parse(text: str, diags: Diagnostics, max_errors: int) -> A.File | None:
    if not text.endswith("\n"):
        text += "\n"
    work = _prepass(text, diags)
    if _too_deep(work, diags):
        return None
    seen: set[tuple[int, int]] = set()
    shifts: dict[int, tuple[int, int]] = {}  # line -> (column, delta) of a rewritten keyword (see _ToAst)
    blanked_lines: set[int] = set()
    for attempt in range(max_errors):
        if not _spend(len(work)) and attempt:
            _stopped(diags, large=True)
            return None  # (the first parse is always made)
        try:
            tree = _parser().parse(work)
        except UnexpectedInput as err:
            message, span, hint, repaired = _diagnosed(err, work)
            if (span.line, span.col) in seen:
                return None
            seen.add((span.line, span.col))
            rewritten = _rewrite_keyword(work, err, span, shifts, diags)
            if rewritten is not None:
                work = rewritten
                continue
            moved = _brace_on_next_line(work, err, span)
            if moved is not None:
                message, hint, work, span = moved
                diags.add("E001", f"syntax error: {message}", span, hint)
                continue
            if span.line not in blanked_lines:  # (else the error is in the repair's own text)
                _report_once(diags, message, span, hint)
            after = _recovered(work, err, span, repaired, diags)
            if after is None:
                return None
            blanked_lines.update(_changed_lines(work, after) if after != repaired else ())
            work = after
            continue
        return _to_ast(tree, diags, shifts)
    _stopped(diags)
    return None


def _recovered(work: str, err: UnexpectedInput, span: Span, repaired: str | None,
               diags: Diagnostics) -> str | None:
    """The text to parse next after a syntax error: `repaired` (another language's habit, read as meant),
    else the text with the failing statement blanked; None when nothing is left to try."""
    if repaired is not None and repaired != work:
        return repaired
    if isinstance(err, UnexpectedEOF) or getattr(getattr(err, "token", None), "type", "") == "$END":
        return None
    return _blank_statement(work, span.line, diags)


def _report_once(diags: Diagnostics, message: str, span: Span, hint: str | None) -> None:
    """A syntax error, unless one is reported at its character already (by the pre-pass, or as a misspelt
    keyword)."""
    if not any(d.code == "E001" and d.span and (d.span.line, d.span.col) == (span.line, span.col)
               for d in diags.items):
        diags.add("E001", f"syntax error: {message}", span, hint)


def _changed_lines(before: str, after: str) -> set[int]:
    """The lines (1-based) that differ between two texts of as many lines."""
    pairs = zip(before.split("\n"), after.split("\n"), strict=True)
    return {i for i, (a, b) in enumerate(pairs, 1) if a != b}


# the rest of a header line after its keyword: `m {`, `conv(filters) {`, a comment after the '{'
_HEADER_REST = re.compile(r"[ \t]+[A-Za-z_][A-Za-z0-9_]*[ \t]*(\([^()]*\))?[ \t]*\{[ \t]*(#.*)?$")


def _rewrite_keyword(work: str, err: UnexpectedInput, span: Span, shifts: dict[int, tuple[int, int]],
                     diags: Diagnostics) -> str | None:
    """`mdel m {` at the top level: reported with its did-you-mean, and the text with 'model' written, so
    that the model is read and its errors are reported too (blanked, its whole body was lost). None when
    the name is not close to 'model' or 'block', or its line is no header to rewrite."""
    tok = getattr(err, "token", None)
    if not isinstance(err, UnexpectedToken) or tok is None or tok.type != "NAME" or str(tok) in MODEL_KEYS:
        return None
    if not {"_MODEL", "_BLOCK"} & set(err.accepts or err.expected):
        return None
    hint = did_you_mean(str(tok), ["model", "block"])
    if hint is None:
        return None
    diags.add("E001", f"syntax error: unknown keyword '{tok}'", span, hint)
    keyword = hint.split("'")[1]
    lines = work.split("\n")
    line = lines[tok.line - 1]
    start, end = tok.column - 1, tok.column - 1 + len(tok)
    header = _HEADER_REST.match(line[end:])
    if header is None or (keyword == "block") != (header.group(1) is not None) or tok.line in shifts:
        return None
    lines[tok.line - 1] = line[:start] + keyword + line[end:]
    shifts[tok.line] = (end + 1 + len(keyword) - len(tok), len(keyword) - len(tok))
    return "\n".join(lines)


def _stopped(diags: Diagnostics, large: bool = False) -> None:
    """Say, at the end of the report, that syntax errors after the last one reported were not looked for
    (recovery parses the file again after each error: max_errors and PARSE_BUDGET bound it)."""
    found = [d for d in diags.items if d.code.startswith("E0")]
    if found:
        n = len(found)
        where = "early in this large file, after" if large else "after"
        found[-1].note = (f"syntax checking stopped {where} {n} error{'s' * (n != 1)}; there may be more "
                          "(fix these and check again)")


def _to_ast(tree, diags: Diagnostics, shifts: dict[int, tuple[int, int]] | None = None) -> A.File | None:
    try:
        return _ToAst(diags, shifts).transform(tree)
    except RecursionError:  # (MAX_NESTING keeps the tree shallower than this: a deep caller's stack)
        diags.add("E210", "nested too deeply to read", None, f"at most {MAX_NESTING} levels may nest")
    except VisitError as ve:  # a transformer bug must not become a traceback for the user
        if isinstance(ve.orig_exc, RecursionError):
            diags.add("E210", "nested too deeply to read", None, f"at most {MAX_NESTING} levels may nest")
        else:
            diags.add("E000", f"internal error while reading the spec: {ve.orig_exc}")
    return None
