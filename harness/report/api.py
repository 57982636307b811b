"""The API side by side: each framework's step functions, read from their source with ``ast``.

The frameworks shown are the registered ones that declare ``api=True``, in registry order;
the source is read at report time from the checkout that builds the report.
"""

from __future__ import annotations

import ast
import hashlib
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


def function_sources(path: Path | str, names: Sequence[str] = FUNCTIONS) -> dict[str, str]:
    """The source of each named top-level function or Class.method of a file (a Path) or of
    source text (a str), read with ast."""
    text = path.read_text() if isinstance(path, Path) else path
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


def section(sources: list) -> str:
    paths = files()
    commit, origin = code_commit(sources)
    texts = {fw: source_text(p, commit) for fw, p in paths.items()}
    code = {fw: function_sources(t) if t is not None else {} for fw, t in texts.items()}
    counts = [[f"`{fn}`", *(code_lines(code[fw][fn]) if fn in code[fw] else "—"
                            for fw in paths)] for fn in FUNCTIONS]
    listed = ", ".join(f"`implementations/{p.name}`" for p in paths.values())
    parts = ["## The API side by side",
             f"Read from {listed} {origin}. Lines of code per function (without docstring, "
             f"comments and blank lines):",
             markdown_table(["function", *paths], counts, "l" + "r" * len(paths))]
    parts += [side_by_side(fn, code) for fn in FUNCTIONS]
    return "\n\n".join(parts)


def code_commit(sources: list) -> tuple[str | None, str]:
    """(the commit to read the code at, a sentence saying where it comes from): the commit the
    newest results were measured at, on a clean tree, if this checkout has it; else the
    working tree, named by a hash of its content (so the sentence changes only with it)."""
    for s in sorted(sources, key=lambda s: s.run.created, reverse=True):
        c = s.run.commit
        if c.id and c.dirty is False and environment.git_out("cat-file", "-t", c.id) == "commit":
            return c.id, (f"at commit `{c.id[:10]}`, the commit the newest results "
                          f"({s.file}) were measured at: the code that ran")
    digest = hashlib.sha256("".join(p.read_text() for p in files().values()).encode())
    return None, (f"as they are in the checkout that built the report (content "
                  f"`{digest.hexdigest()[:10]}`): no results file names a commit this "
                  f"checkout has, so this may differ from the code that ran")


def source_text(path: Path, commit: str | None) -> str | None:
    if commit is not None and path.is_relative_to(environment.REPO):
        rel = path.relative_to(environment.REPO).as_posix()
        text = environment.git_out("show", f"{commit}:{rel}")
        if text is not None:
            return text + "\n"
    return path.read_text() if path.exists() else None


def side_by_side(function: str, sources: dict[str, dict[str, str]]) -> str:
    """An HTML table with one column per framework, each holding a fenced code block."""
    head = "".join(f"<th>{fw}</th>" for fw in sources)
    cells = "</td><td>".join(
        f"\n\n```python\n{src[function]}\n```\n\n" if function in src else "\n\n(not defined)\n\n"
        for src in sources.values())
    return (f"### `{function}`\n\n<table>\n<tr>{head}</tr>\n<tr valign=\"top\"><td>{cells}"
            f"</td></tr>\n</table>")
