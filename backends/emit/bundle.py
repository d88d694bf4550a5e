"""Copy dlc's own definitions into an emitted script, so a formula exists once (in dlc) and the script still
imports nothing of dlc: the source files are parsed (never imported: emitting needs no framework), each
asked-for top-level name is taken with every top-level name it uses, in dependency order, and the external
imports they need are collected."""

from __future__ import annotations

import ast
import builtins
import importlib.util
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

# the packages a script imports that are not the standard library's (listed after it)
THIRD_PARTY = {"numpy", "sklearn", "torch", "keras", "tensorflow"}


@dataclass
class Module:
    name: str
    source: str
    defs: dict[str, ast.stmt] = field(default_factory=dict)  # top-level name -> its definition
    # name -> (module, attr, level)
    imports: dict[str, tuple[str, str | None, int]] = field(default_factory=dict)


def module_file(name: str) -> Path:
    """The file of a dlc module, found without importing it (a backend package imports its framework)."""
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        spec = importlib.util.find_spec(".".join(parts[:i]))
        if spec is not None and spec.submodule_search_locations:
            base = Path(next(iter(spec.submodule_search_locations)))
            path = base.joinpath(*parts[i:])
            return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    raise ModuleNotFoundError(name)


@cache
def parse_module(name: str) -> Module:
    source = module_file(name).read_text(encoding="utf-8")
    mod = Module(name, source)
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            mod.defs[node.name] = node
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        mod.defs[n.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            mod.defs[node.target.id] = node
        elif isinstance(node, ast.Import):
            for a in node.names:
                mod.imports[a.asname or a.name.split(".")[0]] = (a.name if a.asname else a.name.split(".")[0],
                                                                 None, 0)
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            for a in node.names:
                mod.imports[a.asname or a.name] = (node.module or "", a.name, node.level)
    return mod


def _absolute(mod: Module, target: str, level: int) -> str:
    if level == 0:
        return target
    base = mod.name.split(".")[:-level]
    return ".".join(base + ([target] if target else []))


def _used_names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _import_line(module: str, attr: str | None, alias: str) -> str:
    if attr is None:
        return f"import {module}" if alias == module else f"import {module} as {alias}"
    return f"from {module} import {attr}" if alias == attr else f"from {module} import {attr} as {alias}"


class Bundle:
    """Definitions copied from dlc modules by name; `render()` gives (import lines, code)."""

    def __init__(self, modules: tuple[str, ...], provided: frozenset[str] = frozenset()):
        self.modules = modules  # where a bare name is looked up, in order
        self.provided = provided  # names the script defines itself: used, never copied
        self.order: list[tuple[str, str]] = []  # (module, name) in dependency order
        self.imports: set[str] = set()
        self._seen: dict[str, str] = {}  # name -> module it was taken from

    def add(self, *names: str, search: tuple[str, ...] | None = None) -> Bundle:
        """Copy `names`, each from the first of `search` (default: all modules, in order) that defines it."""
        for name in names:
            for mod in search or self.modules:
                if self._take(parse_module(mod), name):
                    break
            else:
                raise KeyError(f"'{name}' is defined in none of {', '.join(self.modules)}")
        return self

    def names(self) -> list[str]:
        return [name for _, name in self.order]

    def _take(self, mod: Module, name: str) -> bool:
        """Copy `name` as `mod` sees it; False when `mod` does not know the name."""
        if name in mod.defs:
            if self._seen.get(name) == mod.name:
                return True
            if name in self._seen:
                raise ValueError(f"'{name}' is defined in both {self._seen[name]} and {mod.name}")
            self._seen[name] = mod.name
            for used in sorted(_used_names(mod.defs[name]) - {name}):
                self._resolve(mod, used)
            self.order.append((mod.name, name))
            return True
        if name in mod.imports:
            self._resolve(mod, name)
            return True
        return False

    def _resolve(self, mod: Module, used: str) -> None:
        if used in self.provided:
            return
        if used in mod.defs:
            self._take(mod, used)
        elif used in mod.imports:
            target, attr, level = mod.imports[used]
            full = _absolute(mod, target, level)
            if full.split(".")[0] == "dlc":
                if attr is None or attr != used:
                    raise ValueError(f"{mod.name}: copy-able code must import names from dlc, not modules or "
                                     f"aliases ('{used}')")
                if not self._take(parse_module(full), attr):
                    raise KeyError(f"{full} has no '{attr}'")
            else:
                self.imports.add(_import_line(full, attr, used))
        elif not hasattr(builtins, used):
            pass  # a local name of the definition (parameters, loop variables)

    def render(self) -> tuple[list[str], str]:
        """(import lines, code): the definitions grouped by the dlc file they come from, each group headed by
        that file's name, dependencies before their users."""
        position = {m: i for i, m in enumerate(self.modules)}
        order = sorted(self.order, key=lambda item: position.get(item[0], len(position)))
        order = self._dependencies_first(order)
        code, previous, last_one_line = "", None, False
        for mod_name, text in self._blocks(order):
            one_line = "\n" not in text and not text.startswith(("def ", "class ", "@"))
            if mod_name != previous:
                code += ("\n\n" if last_one_line else "") + f"# {_path_label(mod_name)}\n"
                previous = mod_name
            elif last_one_line and not one_line:
                code += "\n\n"
            code += text + ("\n" if one_line else "\n\n\n")
            last_one_line = one_line
        return sorted(self.imports), code.rstrip("\n") + "\n"

    def _dependencies_first(self, order: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """`order` re-sorted so every definition follows the ones it uses (stable otherwise)."""
        out, placed = [], set()
        deps = {item: self._deps(item) for item in order}

        def place(item):
            if item in placed:
                return
            placed.add(item)
            for d in deps.get(item, ()):
                place(d)
            out.append(item)

        for item in order:
            place(item)
        return out

    def _deps(self, item: tuple[str, str]) -> list[tuple[str, str]]:
        mod = parse_module(item[0])
        used = _used_names(mod.defs[item[1]]) - {item[1]}
        return [(m, n) for m, n in self.order if n in used and (m, n) != item]

    def _blocks(self, order):
        seen = set()
        for mod_name, name in order:
            mod = parse_module(mod_name)
            node = mod.defs[name]
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            lines = mod.source.splitlines()
            cut = _display_lines(node, lines)
            text = "\n".join(line for i, line in enumerate(lines[start - 1:node.end_lineno], start)
                             if i not in cut).rstrip()
            if text not in seen:  # `a, b = ...` defines two names with one statement
                seen.add(text)
                yield mod_name, text


# a class's methods for a notebook's display only: a script does not show them, and they import dlc's
# formatting (dlc/runtime/reprs.py) where they run, which a script that imports nothing of dlc cannot
DISPLAY_ONLY = frozenset({"__repr__", "_repr_html_"})


def _display_lines(node: ast.stmt, lines: list[str]) -> set[int]:
    """The line numbers (from 1) of a class's DISPLAY_ONLY methods, each with the blank line after it."""
    cut: set[int] = set()
    if not isinstance(node, ast.ClassDef):
        return cut
    for member in node.body:
        if isinstance(member, ast.FunctionDef) and member.name in DISPLAY_ONLY:
            first = min([member.lineno] + [d.lineno for d in member.decorator_list])
            last = member.end_lineno or member.lineno
            cut.update(range(first, last + 1))
            if last < len(lines) and not lines[last].strip():
                cut.add(last + 1)
    return cut


def _path_label(module: str) -> str:
    """dlc.backends.torch.layers -> "from dlc: backends/torch/layers.py" (where to read the original)."""
    return "from dlc: " + "/".join(module.split(".")[1:]) + ".py"


def import_block(lines: list[str]) -> str:
    """Import lines as isort orders them (ruff's I001 passes the script): the standard library, then
    third-party packages, apart by a blank line; in each, plain imports before from-imports, by module, the
    names from one module on one line."""
    plain: set[str] = set()
    names: dict[str, set[str]] = {}  # module -> what is imported from it
    for line in lines:
        if line.startswith("from "):
            module, _, imported = line.removeprefix("from ").partition(" import ")
            names.setdefault(module, set()).update(name.strip() for name in imported.split(","))
        else:
            plain.add(line)
    merged = [f"from {m} import {', '.join(sorted(ns, key=_member_key))}" for m, ns in names.items()]
    ordered = sorted(plain | set(merged), key=lambda line: (line.startswith("from "), line.split()[1]))
    third = [line for line in ordered if line.split()[1].split(".")[0] in THIRD_PARTY]
    first = [line for line in ordered if line not in third]
    return "\n".join(first) + ("\n\n" if first and third else "") + "\n".join(third)


def _member_key(name: str) -> tuple[int, str]:
    """isort's order of the names of a from-import: CONSTANTS, then Classes, then functions and modules."""
    return (0 if name.isupper() and len(name) > 1 else 1 if name[:1].isupper() else 2), name
