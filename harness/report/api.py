"""The API side by side: each framework's step functions, read from their source with ``ast``.

The frameworks shown are the registered ones that declare ``api=True``, in registry order;
the source is read at report time from the checkout that builds the report.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Sequence
from pathlib import Path

from harness import environment
from harness.tables import markdown_table
from implementations import registry

FUNCTIONS = ("forward", "grads", "sgd_step", "StepLoop.__call__", "Trainer.run")


def files() -> dict[str, Path]:
    """{label: source file} of the frameworks shown."""
    return {f.label: registry.MODULE_PATHS[name] for name, f in registry.FRAMEWORKS.items()
            if f.api}


def function_sources(path: Path, names: Sequence[str] = FUNCTIONS) -> dict[str, str]:
    """The source of each named top-level function or Class.method, read with ast."""
    text = path.read_text()
    nodes = {}
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            nodes[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for sub in node.body:
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    nodes.setdefault(f"{node.name}.{sub.name}", sub)
    lines = text.splitlines()
    return {n: node_source(lines, nodes[n]) for n in names if n in nodes}


def node_source(lines: list[str], node: ast.AST) -> str:
    start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return textwrap.dedent("\n".join(lines[start - 1:node.end_lineno]))


def code_lines(source: str) -> int:
    """Lines of a function that are code: not blank, not comments, not the docstring."""
    node = ast.parse(source).body[0]
    skip = set()
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
            and isinstance(first.value.value, str):
        skip = set(range(first.lineno, first.end_lineno + 1))
    return sum(1 for i, line in enumerate(source.splitlines(), 1)
               if i not in skip and line.strip() and not line.strip().startswith("#"))


def section() -> str:
    paths = files()
    sources = {fw: function_sources(p) if p.exists() else {} for fw, p in paths.items()}
    counts = [[f"`{fn}`", *(code_lines(sources[fw][fn]) if fn in sources[fw] else "—"
                            for fw in paths)] for fn in FUNCTIONS]
    listed = ", ".join(f"`implementations/{p.name}`" for p in paths.values())
    parts = ["## The API side by side",
             f"Read from {listed} in the checkout that built this report, at report time"
             f"{checkout_text(list(paths.values()))}. This may differ from the code that ran: "
             f"the commits the results files were measured at are listed under *Where the "
             f"numbers come from*. Lines of code per function (without docstring, comments and "
             f"blank lines):",
             markdown_table(["function", *paths], counts, "l" + "r" * len(paths))]
    parts += [side_by_side(fn, sources) for fn in FUNCTIONS]
    return "\n\n".join(parts)


def checkout_text(paths: list[Path]) -> str:
    """' (commit `abc1234`)', with uncommitted changes noted; '' outside a git checkout."""
    head = environment.git_out("rev-parse", "--short", "HEAD")
    if head is None:
        return ""
    diff = environment.git("diff", "--quiet", "HEAD", "--", *map(str, paths))
    dirty = diff is not None and diff.returncode == 1
    return f" (commit `{head}`{', with uncommitted changes to these files' if dirty else ''})"


def side_by_side(function: str, sources: dict[str, dict[str, str]]) -> str:
    """An HTML table with one column per framework, each holding a fenced code block."""
    head = "".join(f"<th>{fw}</th>" for fw in sources)
    cells = "</td><td>".join(
        f"\n\n```python\n{src[function]}\n```\n\n" if function in src else "\n\n(not defined)\n\n"
        for src in sources.values())
    return (f"### `{function}`\n\n<table>\n<tr>{head}</tr>\n<tr valign=\"top\"><td>{cells}"
            f"</td></tr>\n</table>")
