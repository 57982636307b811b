"""The import graph: no cycles (imports inside functions counted), each package of harness
importing only the layers below it, and an import inside a function only for a heavy or
optional package, with its reason on the line."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("harness", "implementations", "backprop_bench")
# harness's layers, lowest first (harness/__init__.py says the same in words)
LAYERS = ("harness.tables", "harness.measure", "harness.check", "harness.record", "harness.procs",
          "harness.analysis", "harness.report", "harness.commands", "harness.cli",
          "harness.api", "backprop_bench")


def modules() -> dict[str, Path]:
    out = {}
    for top in SOURCES:
        for path in (ROOT / top).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = modules()


def imports(path: Path) -> list[tuple[str, ast.stmt, bool]]:
    """(imported module, the statement, whether it sits inside a function) of a file; ``from
    package import submodule`` imports the submodule."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []

    def visit(node, inside: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = inside or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                out.extend((a.name, child, inside) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                subs = [f"{child.module}.{a.name}" for a in child.names
                        if f"{child.module}.{a.name}" in MODULES]
                if len(subs) < len(child.names):
                    out.append((child.module, child, inside))
                out.extend((s, child, inside) for s in subs)
            visit(child, nested)

    visit(tree, False)
    return out


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for target, _, _ in imports(path):
            if target in MODULES and target != name:
                edges[name].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def strong(v: str) -> None:
        work = [(v, iter(sorted(edges[v])))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        while work:
            node, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                    break
                if w in on:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def layer(name: str) -> int | None:
    for i, prefix in enumerate(LAYERS):
        if name == prefix or name.startswith(prefix + "."):
            return i
    return None


def test_no_import_cycle_counting_the_imports_inside_functions():
    assert cycles(graph()) == []


def test_each_layer_imports_only_the_layers_below_it():
    wrong = []
    for name, targets in graph().items():
        mine = layer(name)
        for t in targets:
            theirs = layer(t)
            if name.startswith("implementations") and t.startswith(("harness", "backprop")):
                wrong.append(f"{name} -> {t}: implementations import nothing of the harness")
            elif mine is not None and theirs is not None and theirs > mine:
                wrong.append(f"{name} -> {t}")
    assert wrong == []


# our framework files: each imports its framework (torch, JAX, TensorFlow...) at the top
FRAMEWORK_FILES = {f"implementations.{p.stem}" for p in (ROOT / "implementations").glob("*.py")
                   if "\nFRAMEWORK = Framework(" in p.read_text(encoding="utf-8")}


# ours, and heavy at import: the registry reads every framework file (and probes the plugins')
HEAVY_OURS = {("implementations.launch", "implementations.registry")}


def test_an_import_inside_a_function_is_a_heavy_or_optional_package_with_its_reason():
    wrong = []
    for name, path in MODULES.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for target, node, inside in imports(path):
            if not inside:
                continue
            text = "\n".join(lines[node.lineno - 1:node.end_lineno])
            heavy = target in FRAMEWORK_FILES or (name, target) in HEAVY_OURS
            if target.split(".")[0] in SOURCES and not heavy:
                wrong.append(f"{name}:{node.lineno}: {target} is ours: import it at the top")
            elif "#" not in text:
                wrong.append(f"{name}:{node.lineno}: {target} needs its reason on the line")
    assert wrong == []


@pytest.mark.parametrize("package", ["measure", "check", "record", "procs", "analysis", "report",
                                     "commands"])
def test_each_package_says_what_it_holds_and_what_it_may_import(package):
    doc = ast.get_docstring(ast.parse((ROOT / "harness" / package / "__init__.py").read_text()))
    assert doc and "mport" in doc
