"""`dlc catalogue`: every catalogue item with its parameters and defaults (from the IR classes in
dlc.compiler.catalog.REGISTRY), its support on each target (computed from dlc.backends.lowering.REGISTRY,
never kept by hand) and the Keras-vs-PyTorch figures measured on the equivalence fixtures that use it.

An item is a catalogue class (its first spec name canonical, the others aliases); where a class's `name` field
is the value itself (the bundled data sets digits, iris, ... are one class `Bundled`), each name is an item.

A fixture covers the items its validated IR contains: tests/equivalence/measure.py compiles each fixture,
walks the Spec and every nested IR node (residual bodies, Bidirectional's inner layer, activations,
initializers, schedules and warmup's `then`, data source, split, augmentations, ...) with `items_used`,
defaults included (a Dense uses glorot_uniform and zeros even when the spec does not say so), and writes the
items with the measured figures to dlc/equivalence_results.json, which ships in the package. An item's figures
are the largest |Δ| over the fixtures that use it.

`dlc catalogue --markdown > docs/CATALOGUE.md` regenerates the docs page (a test keeps it current).
"""

from __future__ import annotations

import json
from importlib import resources

FAMILIES = [("layer", "Layers"), ("activation", "Activations"), ("initializer", "Initializers"),
            ("regularizer", "Regularizers"), ("constraint", "Constraints"), ("optimizer", "Optimizers"),
            ("schedule", "Schedules"), ("loss", "Losses"), ("metric", "Metrics"), ("source", "Data sources"),
            ("split", "Splits"), ("augment", "Augmentations")]
HIDDEN_FIELDS = {"name", "kind", "at"}
RESULTS_FILE = "equivalence_results.json"  # in the dlc package, written by tests/equivalence/measure.py
SHOWN_FIXTURES = 4  # fixtures listed per item; the rest are counted
# fixtures whose float32 figure over the bound is a near-tie that tests/equivalence/RESULTS.md documents (the
# float32 run rounds two nearly equal values the other way at one step; float64 agrees): the page says so
# where the figure shows, computed from the results (a fixture back within the bound is not mentioned)
NEAR_TIES = {"depthwiseconv2d_same_s2"}
CELL = {"lowered": "✓", "shared": "shared", "unsupported": "—", "missing": "MISSING"}
SYMBOL = {"lowered": "✓", "shared": "s", "unsupported": "—", "missing": "?"}

Item = tuple[str, str]  # (family, item name: the canonical spec name, or the name value of a named class)


# ------------------------------------------------------------------------------------------------- the IR


def is_named(cls) -> bool:
    """A class whose required `name` field is the item (one class, several items: Bundled)."""
    f = cls.model_fields.get("name")
    return f is not None and f.is_required()


def item_of(node) -> Item:
    cls = type(node)
    return cls.family, (node.name if is_named(cls) else cls.spec_names[0])


def items_used(node, out: set[Item] | None = None) -> set[Item]:
    """Every catalogue item in an IR tree (a validated Spec or any node in it), defaults included."""
    from pydantic import BaseModel

    from dlc.compiler.catalog import Catalogued

    out = set() if out is None else out
    if isinstance(node, Catalogued) and type(node).family:
        out.add(item_of(node))
    if isinstance(node, BaseModel):
        for f in type(node).model_fields:
            items_used(getattr(node, f), out)
    elif isinstance(node, (list, tuple)):
        for x in node:
            items_used(x, out)
    elif isinstance(node, dict):
        for x in node.values():
            items_used(x, out)
    return out


def _default(field) -> str:
    from dlc.compiler.catalog import Catalogued

    if field.is_required() or field.default_factory is not None:
        return ""
    v = field.default
    if isinstance(v, Catalogued):
        return str(getattr(v, "name", None) or getattr(v, "kind", None) or v.spec_names[0])
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    return repr(v)


def _families() -> list[tuple[str, str]]:
    from dlc.compiler.catalog import REGISTRY

    known = [f for f, _ in FAMILIES]
    return FAMILIES + [(f, f.title()) for f in REGISTRY if f not in known]


def _entry(fam: str, cls, names: list[str]) -> dict:
    order = list(cls.positional) + [f for f in cls.model_fields if f not in cls.positional]
    params = [(f, _default(cls.model_fields[f])) for f in order
              if f in cls.model_fields and f not in HIDDEN_FIELDS]
    doc = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())  # the first paragraph, one line
    return {"key": (fam, names[0]), "cls": cls, "names": names, "doc": doc, "params": params}


def items() -> list[tuple[str, str, list[dict]]]:
    """[(family, title, [{key, cls, names, doc, params: [(name, default or '' when required)]}])]"""
    import dlc.compiler  # noqa: F401  (registers every catalogue class)
    from dlc.compiler.catalog import REGISTRY

    out = []
    for fam, title in _families():
        seen: set[type] = set()
        entries = []
        for name, cls in REGISTRY.get(fam, {}).items():
            if is_named(cls):
                entries.append(_entry(fam, cls, [name]))
            elif cls not in seen:
                seen.add(cls)
                entries.append(_entry(fam, cls, list(cls.spec_names)))
        out.append((fam, title, entries))
    return out


# -------------------------------------------------------------------------------------------- the matrix


def targets() -> tuple[str, ...]:
    from dlc.backends.lowering import TARGETS, load_target

    for t in TARGETS:
        load_target(t)
    return TARGETS


def cell(target: str, cls) -> tuple[str, str]:
    """(status, detail) of one support-matrix cell."""
    from dlc.backends.lowering import REGISTRY

    return REGISTRY.status(target, cls)


# ------------------------------------------------------------------------------------------ measurements


def load_results() -> dict:
    """The measured equivalence results shipped in the package ({} when there are none)."""
    try:
        text = resources.files("dlc").joinpath(RESULTS_FILE).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        return {}
    return json.loads(text)


def results() -> dict[str, dict]:
    """fixture -> {f64_step_loss, f64_weights, f32_step_loss, ..., items: [[family, name], ...]}"""
    return load_results().get("fixtures", {})


def _squash(s: str) -> str:
    return s.lower().replace("_", "")


def fixtures_using(key: Item, res: dict[str, dict]) -> list[str]:
    """The fixtures whose IR uses the item; those named after it first, then the most focused (fewest items of
    the item's family), then by name. The order only matters for the shortened list on the page."""
    fam, name = key
    used = [f for f, r in res.items() if [fam, name] in r.get("items", [])]

    def rank(f):
        named = _squash(name) in _squash(f.rpartition("/")[2])
        same_family = sum(1 for i in res[f]["items"] if i[0] == fam)
        return (not named, same_family, f)

    return sorted(used, key=rank)


def _max(res, fixtures, field) -> float | None:
    xs = [res[f][field] for f in fixtures if res[f].get(field) is not None]
    return max(xs) if xs else None


def measured(key: Item, res: dict[str, dict]) -> dict:
    fx = fixtures_using(key, res)
    return {"fixtures": fx, "f64": _max(res, fx, "f64_step_loss"),
            "f64_weights": _max(res, fx, "f64_weights"),
            "f32": _max(res, fx, "f32_step_loss"), "f32_of_bound": _max(res, fx, "f32_of_bound")}


def _fmt(x: float | None) -> str:
    return "" if x is None else ("0" if x == 0 else f"{x:.2g}")


def _bound(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}"


def _shown(fx: list[str]) -> str:
    head = ", ".join(fx[:SHOWN_FIXTURES])
    return head + (f" and {len(fx) - SHOWN_FIXTURES} more" if len(fx) > SHOWN_FIXTURES else "")


# ---------------------------------------------------------------------------------------------- rendering


def _md_cell(status: str, detail: str) -> str:
    if status == "unsupported":
        return f"—: {detail}".replace("|", "/")
    return CELL[status]


def _sci(x: float) -> str:
    """7.4e-3, not 0.0074 or 7.4e-03."""
    mant, _, exp = f"{x:.1e}".partition("e")
    return f"{mant}e{int(exp)}"


def largest_f32(res: dict[str, dict]) -> str:
    """The sentences on the largest float32 |Δ|, from the results: the fixture it comes from (and, when that
    one is over the bound, the largest within it), then the figures of each fixture over the bound, with the
    items they show on (an item's figure is its fixtures' largest) and, for a near-tie RESULTS.md documents
    (NEAR_TIES), that it is one."""
    f32 = {f: r["f32_step_loss"] for f, r in res.items() if r.get("f32_step_loss") is not None}
    if not f32:
        return ""

    def owners(xs: dict[str, float]) -> tuple[float, list[str]]:
        top = max(xs.values())
        return top, sorted(f for f, x in xs.items() if x == top)

    def whose(fs: list[str]) -> str:
        return " and ".join(f"{f}'s" for f in fs)

    top, who = owners(f32)
    text = [f"The largest float32 |Δ|, {_sci(top)}, is {whose(who)}"]
    within = {f: x for f, x in f32.items() if (res[f].get("f32_of_bound") or 0) <= 1}
    if within and not set(who) <= set(within):
        top, who = owners(within)
        text[0] += f"; the largest within the bound, {_sci(top)}, {whose(who)}"
    over = sorted((f for f in res if (res[f].get("f32_of_bound") or 0) > 1),
                  key=lambda f: (-res[f]["f32_of_bound"], f))
    for f in over:
        bound = res[f]["f32_of_bound"]
        keys = [(fam, name) for fam, name in res[f].get("items", [])]
        shows = [k for k in keys if measured(k, res)["f32_of_bound"] == bound]
        what = ("that fixture's near-tie, documented in tests/equivalence/RESULTS.md (its float32 run rounds "
                "two nearly equal values the other way at one step; float64 agrees), not the item's own"
                if f in NEAR_TIES else "that fixture's, over the suite's bound")
        step = res[f].get("f32_step_loss")
        figure = f"The f32 of bound {_bound(bound)} of {f}" + (f" (a |Δ| of {_sci(step)})" if step else "")
        if shows:
            where = "every item it uses" if len(shows) == len(keys) else ", ".join(name for _, name in shows)
            text.append(f"{figure} shows on {where}: it is {what}")
        else:
            text.append(f"{figure} is {what}")
    return ". ".join(text) + "."


def _header(meta: dict, res: dict[str, dict] | None = None) -> list[str]:
    when = ""
    if meta:
        when = (f" Measured on {meta.get('date', '?')} with Keras {meta.get('keras', '?')}, PyTorch "
                f"{meta.get('torch', '?')}, {meta.get('machine', '?')} CPU.")
    return ["# dlc catalogue", "",
            ("Generated by `dlc catalogue --markdown > docs/CATALOGUE.md` from the IR classes, the lowering "
             "registry and the measured equivalence results (dlc/equivalence_results.json, written by "
             "tests/equivalence/measure.py); do not edit by hand."), "",
            ("Target columns (the support matrix, computed from the lowering registry): ✓ lowered to the "
             "target's library; shared: computed by dlc itself in numpy, the same for every target (where is "
             "said under each table); —: unsupported, with the reason."), "",
            ("Fixtures: the equivalence fixtures whose validated IR uses the item, defaults included (a "
             "Dense uses glorot_uniform and zeros unless told otherwise); fixtures named after the item "
             "first. Max |Δ|: the largest difference Keras vs PyTorch over those fixtures, of the per-step "
             "training loss (float64 over 40 steps, float32 over 200) and of every weight after the float64 "
             "run; f32 of bound: the worst float32 step's |Δ| as a fraction of the suite's bound 2e-6 + "
             "1e-6·|loss| (≤ 1 passes)." + (f" {largest}" if (largest := largest_f32(res or {})) else "")
             + when), ""]


def _md_family(title: str, entries: list[dict], tgts, res) -> list[str]:
    cols = " | ".join(tgts)
    lines = [f"## {title}", "",
             (f"| item | aliases | parameters (default) | {cols} | fixtures | max \\|Δ\\| f64 loss "
              "| max \\|Δ\\| f64 weights | max \\|Δ\\| f32 loss | f32 of bound | notes |"),
             "|---|---|---|" + "---|" * len(tgts) + "---|---:|---:|---:|---:|---|"]
    shared: dict[str, list[str]] = {}
    for e in entries:
        params = ", ".join(f"{p}={d}" if d else p for p, d in e["params"])
        cells = []
        for t in tgts:
            status, detail = cell(t, e["cls"])
            cells.append(_md_cell(status, detail))
            if status == "shared":
                shared.setdefault(detail, []).append(t)
        m = measured(e["key"], res)
        lines.append(f"| {e['names'][0]} | {', '.join(e['names'][1:])} | {params} | {' | '.join(cells)} "
                     f"| {_shown(m['fixtures'])} | {_fmt(m['f64'])} | {_fmt(m['f64_weights'])} | "
                     f"{_fmt(m['f32'])} | {_bound(m['f32_of_bound'])} | {e['doc'].replace('|', '/')} |")
    for how, ts in shared.items():
        lines += ["", f"shared ({', '.join(dict.fromkeys(ts))}): {how}"]
    return lines + [""]


def _text_family(title: str, entries: list[dict], tgts, res) -> list[str]:
    lines = [f"{title}:"]
    for e in entries:
        names = e["names"]
        params = ", ".join(f"{p}={d}" if d else p for p, d in e["params"])
        alias = f" (aliases: {', '.join(names[1:])})" if names[1:] else ""
        cells = [cell(t, e["cls"]) for t in tgts]
        m = measured(e["key"], res)
        meas = f"  [max |Δ| f64 {_fmt(m['f64'])}, f32 {_fmt(m['f32'])}]" if m["fixtures"] else ""
        lines.append(f"  {names[0]}{alias}({params})  {''.join(SYMBOL[s] for s, _ in cells)}{meas}")
        lines += [f"      {t}: {s}{': ' + d if d else ''}" for t, (s, d) in zip(tgts, cells, strict=True)
                  if s in ("unsupported", "missing")]
    return lines + [""]


def render(markdown: bool) -> str:
    data = load_results()
    res = data.get("fixtures", {})
    tgts = targets()
    lines = _header(data.get("meta", {}), res) if markdown else [
        f"targets {' / '.join(tgts)}: ✓ lowered, s shared (numpy), — unsupported, ? missing", ""]
    render_family = _md_family if markdown else _text_family
    for _fam, title, entries in items():
        lines += render_family(title, entries, tgts, res)
    return "\n".join(lines).rstrip("\n") + "\n"
