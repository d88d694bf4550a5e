"""What `dlc run` cannot do yet with a valid spec: each a spec-positioned error, never a silent skip."""

from __future__ import annotations

from dlc.compiler import Compiled
from dlc.compiler.checks import precision_conflict
from dlc.compiler.checkshared import find_assign
from dlc.compiler.diagnostics import Diagnostic, Span


def run_blockers(result: Compiled) -> list[Diagnostic]:
    spec = result.spec
    model = result.tree.models[0] if result.tree is not None and result.tree.models else None
    out: list[Diagnostic] = []

    def at(key: str, section: str | None = None) -> Span | None:
        st = find_assign(model, key, section) if model is not None else None
        return st.value.span if st is not None else None

    if spec is not None and spec.search_spaces:
        s = spec.search_spaces[0]
        out.append(Diagnostic(
            "E502", "this spec has search spaces; training needs concrete values",
            Span(s.at[0], s.at[1], s.at[0], s.at[1] + len(s.kind)),
            "search them with `dlc tune SPEC` (it writes the best spec, concrete, as best.dlspec), "
            "or replace the search space by a value"))
    return out


def dtype_blockers(result: Compiled, dtype: str | None) -> list[Diagnostic]:
    """The command line's --dtype against the spec's train precision (mixed precision has no float64 form),
    positioned at the precision setting."""
    spec = result.spec
    problem = precision_conflict(spec, dtype) if spec is not None and dtype is not None else None
    if problem is None:
        return []
    model = result.tree.models[0] if result.tree is not None and result.tree.models else None
    st = find_assign(model, "precision", "train") if model is not None else None
    return [Diagnostic("E305", f"--dtype {dtype}: {problem}", st.value.span if st is not None else None,
                       f"leave out --dtype {dtype}, or use precision: float32 (the default) in train {{ }}")]
