"""The folders layer: grammar < compiler < reference < backends < runtime < api < cli, each importing only the
layers below it (function-level imports included), no import cycle among dlc's modules, and a framework
(torch, tensorflow, keras) imported only under backends/. Checked from the source of every module, not by
importing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

# (module prefix, layer): the most specific prefix wins
LAYERS = [("dlc.grammar", 0), ("dlc.compiler", 1), ("dlc.reference", 2), ("dlc.backends", 3),
          ("dlc.runtime", 4), ("dlc.api", 5), ("dlc", 5), ("dlc.cli", 6), ("dlc.__main__", 6)]
NAMES = ["grammar", "compiler", "reference", "backends", "runtime", "api", "cli"]
FOLDERS = {"dlc": ROOT / "dlc", "dlc.compiler": ROOT / "compiler", "dlc.backends": ROOT / "backends",
           "dlc.grammar": ROOT / "grammar"}
FRAMEWORKS = {"torch", "tensorflow", "keras"}


def modules() -> dict[str, Path]:
    """dlc module name -> file, from the folders the packages install from."""
    out = {}
    for prefix, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([prefix, *parts])
            if name.startswith("dlc.") and name.split(".")[1] in ("compiler", "backends", "grammar") \
                    and folder == FOLDERS["dlc"]:
                continue
            out[name] = path
    return out


MODULES = modules()


def layer(module: str) -> int | None:
    best = None
    for prefix, lay in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and (best is None
                                                                      or len(prefix) > len(best[0])):
            best = (prefix, lay)
    return None if best is None else best[1]


def imports(name: str, path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import in the file, relative ones resolved, at any depth."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            for a in node.names:  # `from pkg import module` imports that module
                sub = f"{base}.{a.name}"
                out.append((sub if sub in MODULES else base, node.lineno))
    return out


def test_every_module_is_found():
    expected = {"dlc.compiler.spec", "dlc.backends.lowering", "dlc.reference.rng", "dlc.runtime.loop"}
    assert expected <= set(MODULES)
    assert all(layer(m) is not None for m in MODULES), [m for m in MODULES if layer(m) is None]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_downward_only(name):
    mine = layer(name)
    for target, line in imports(name, MODULES[name]):
        if target.split(".")[0] == "dlc" and target != "dlc":
            theirs = layer(target)
            assert theirs is not None and theirs <= mine, (
                f"{MODULES[name].relative_to(ROOT)}:{line}: {name} ({NAMES[mine]}) imports {target} "
                f"({NAMES[theirs] if theirs is not None else '?'}), a layer above its own")
        if target == "dlc":
            assert mine >= layer("dlc.api"), f"{name}:{line} imports the dlc package (the API layer)"
        if target.split(".")[0] in FRAMEWORKS:
            assert name.startswith("dlc.backends."), (
                f"{MODULES[name].relative_to(ROOT)}:{line}: {name} imports {target}; only backends/ may")


def test_no_import_cycles():
    graph = {name: {t for t, _ in imports(name, path) if t in MODULES and t != name}
             for name, path in MODULES.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


@pytest.mark.parametrize("name", sorted(m for m in MODULES if m.startswith("dlc.cli")))
def test_the_cli_is_built_on_the_api(name):
    """A command reaches compiler, runtime and backends only through the public API (dlc.api), so everything
    the CLI does, a notebook can do with the same functions."""
    for target, line in imports(name, MODULES[name]):
        if target.split(".")[0] == "dlc":
            assert target in ("dlc", "dlc.api") or target.startswith("dlc.cli"), (
                f"{MODULES[name].relative_to(ROOT)}:{line}: the CLI imports {target}; go through dlc.api")
