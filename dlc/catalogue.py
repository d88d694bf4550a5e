"""`dlc catalogue`: every catalogue item, generated from the IR classes (compiler/catalog.py REGISTRY and their
Pydantic fields), with the equivalence figures measured in tests/equivalence/RESULTS.md where a fixture covers it.

Fixture -> item rule (by file name, no annotations needed): a fixture's stem is split into an optional family
prefix (act_, init_, opt_, loss_, reg_, schedule_, constraint_, metric_; none means a layer) and a rest; it covers
an item of that family when the rest, lower-cased, equals one of the item's spec names lower-cased or starts with
it followed by "_" (opt_adam_amsgrad covers Adam, conv2d_same_s2 covers Conv2D, reg_l1_l2 covers l1_l2 and l1).
An item's figure is the largest |Δ| over the fixtures covering it.

`dlc catalogue --markdown > docs/CATALOGUE.md` regenerates the docs page (a test keeps it current).
"""

from __future__ import annotations

import re
from pathlib import Path

FAMILIES = [("layer", "Layers"), ("activation", "Activations"), ("initializer", "Initializers"),
            ("regularizer", "Regularizers"), ("constraint", "Constraints"), ("optimizer", "Optimizers"),
            ("schedule", "Schedules"), ("loss", "Losses"), ("metric", "Metrics"), ("source", "Data sources"),
            ("split", "Splits"), ("augment", "Augmentations")]
PREFIXES = {"act": "activation", "init": "initializer", "opt": "optimizer", "loss": "loss", "reg": "regularizer",
            "schedule": "schedule", "constraint": "constraint", "metric": "metric"}
HIDDEN_FIELDS = {"name", "kind", "at"}
RESULTS = Path(__file__).resolve().parent.parent / "tests" / "equivalence" / "RESULTS.md"


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


def items() -> list[tuple[str, str, list[dict]]]:
    """[(family, title, [{names, doc, params: [(name, default or '' when required)]}])]"""
    import dlc.compiler  # noqa: F401  (registers every catalogue class)
    from dlc.compiler.catalog import CANONICAL, REGISTRY

    out = []
    for fam, title in FAMILIES:
        # one item per canonical name; other names are aliases of their class's item (or items of their own where
        # one class serves several canonical names, as the parameter-free activations do)
        canon = set(CANONICAL.get(fam, []))
        table = REGISTRY.get(fam, {})
        per_cls: dict[type, list[str]] = {}
        for name, cls in table.items():
            if name in canon:
                per_cls.setdefault(cls, []).append(name)
        groups: list[tuple[type, list[str]]] = []
        for name, cls in table.items():
            named = "name" in cls.model_fields and cls.model_fields["name"].is_required()  # the name is the value
            if name in canon or named:
                groups.append((cls, [name]))
            elif len(per_cls.get(cls, [])) == 1:
                next(g for c, g in groups if c is cls).append(name) if any(c is cls for c, _ in groups) \
                    else groups.append((cls, [name]))
            else:
                groups.append((cls, [name]))
        entries = []
        for cls, names in groups:
            order = list(cls.positional) + [f for f in cls.model_fields if f not in cls.positional]
            params = [(f, _default(cls.model_fields[f])) for f in order
                      if f in cls.model_fields and f not in HIDDEN_FIELDS]
            doc = (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
            entries.append({"names": names, "doc": doc, "params": params})
        out.append((fam, title, entries))
    return out


def results(path: Path = RESULTS) -> dict[str, tuple[float | None, float | None]]:
    """fixture -> (float64 max step-loss |Δ|, float32 max step-loss |Δ|) from RESULTS.md's table."""
    out = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 7 or not re.fullmatch(r"[\w/]+", cells[0]) or cells[0] == "fixture":
            continue

        def num(s):
            try:
                return float(s)
            except ValueError:
                return None

        out.setdefault(cells[0], (num(cells[2]), num(cells[6])))  # the first (per-fixture) table, not the long runs
    return out


def covers(fixture: str, family: str, names: list[str]) -> bool:
    head, _, rest = fixture.partition("_")
    if head in PREFIXES:
        fam = PREFIXES[head]
    else:
        fam, rest = "layer", fixture
    if fam != family:
        return False
    rest = rest.lower()
    return any(rest == n.lower() or rest.startswith(n.lower() + "_") for n in names)


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.2g}"


def measured(family: str, names: list[str], res) -> tuple[list[str], float | None, float | None]:
    fx = sorted(f for f in res if covers(f, family, names))
    f64 = [res[f][0] for f in fx if res[f][0] is not None]
    f32 = [res[f][1] for f in fx if res[f][1] is not None]
    return fx, (max(f64) if f64 else None), (max(f32) if f32 else None)


def render(markdown: bool) -> str:
    res = results()
    lines = []
    if markdown:
        lines += ["# dlc catalogue", "",
                  ("Generated by `dlc catalogue --markdown > docs/CATALOGUE.md` from the IR classes and "
                  "tests/equivalence/RESULTS.md; do not edit by hand."), "",
                  ("Max |Δ| columns: the largest per-step training-loss difference Keras vs PyTorch over the "
                  "equivalence fixtures covering the item (float64 over 40 steps, float32 over 200). A fixture "
                  "covers an item when its file name (after a family prefix act_, init_, opt_, loss_, reg_, "
                  "schedule_, constraint_, metric_; none for layers) is the item's name or starts with it and "
                  "'_'."), ""]
    for fam, title, entries in items():
        if markdown:
            lines += [f"## {title}", "", ("| item | aliases | parameters (default) | fixtures | max \\|Δ\\| float64 "
                      "| max \\|Δ\\| float32 | notes |"), "|---|---|---|---|---:|---:|---|"]
        else:
            lines += [f"{title}:"]
        for e in entries:
            names = e["names"]
            params = ", ".join(f"{p}={d}" if d else p for p, d in e["params"])
            fx, f64, f32 = measured(fam, names, res)
            if markdown:
                lines.append(f"| {names[0]} | {', '.join(names[1:])} | {params} | {', '.join(fx)} | {_fmt(f64)} "
                             f"| {_fmt(f32)} | {e['doc'].replace('|', '/')} |")
            else:
                alias = f" (aliases: {', '.join(names[1:])})" if names[1:] else ""
                meas = f"  [max |Δ| f64 {_fmt(f64)}, f32 {_fmt(f32)}]" if fx else ""
                lines.append(f"  {names[0]}{alias}({params}){meas}")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def main(args) -> int:
    print(render(args.markdown), end="")
    return 0
