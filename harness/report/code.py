"""The API side by side: each framework's step functions, read from their source with ``ast``.

Two tables. The functional core (``FUNCTIONS``) of the frameworks that declare ``api=True``
and define those functions (NumPy, autograd, PyTorch, JAX, TensorFlow, MLX). The idiomatic
tier (``IDIOMATIC``: the model, the loss and one training step as a user writes them) of
every file that defines those three functions (PyTorch's nn.Module tier, Flax NNX, Keras),
with the lines of code and what each idiomatic variant measured per step. The code is read at
the commit the newest results ran, where this checkout has it (``code_commit``).
"""

from __future__ import annotations

import ast
import hashlib
import textwrap
from collections.abc import Sequence
from pathlib import Path

from harness.measure import environment
from harness.tables import fmt_time, markdown_table, md_code
from implementations import registry

FUNCTIONS = ("forward", "grads", "sgd_step", "StepLoop.__call__", "Trainer.run")
IDIOMATIC = ("make_model", "make_loss", "train_step")


def files() -> dict[str, Path]:
    """{label: source file} of the frameworks whose functional core is shown: those that
    declare ``api=True`` and whose file defines the functions (``grads`` among them)."""
    return {f.label: registry.MODULE_PATHS[name] for name, f in registry.FRAMEWORKS.items()
            if f.api and "grads" in function_sources(registry.MODULE_PATHS[name], ("grads",))}


def api_files() -> dict[Path, list[str]]:
    """{source file: the frameworks whose API code it holds}, every framework with api=True."""
    out: dict[Path, list[str]] = {}
    for name, f in registry.FRAMEWORKS.items():
        if f.api:
            path = registry.MODULE_PATHS[name]
            out.setdefault(path.with_name(f.api_source) if f.api_source else path, []).append(
                name)
    return out


def function_sources(path: Path | str, names: Sequence[str] = FUNCTIONS) -> dict[str, str]:
    """The source of each named top-level function or Class.method of a file (a Path) or of
    source text (a str), read with ast."""
    text = path.read_text(encoding="utf-8") if isinstance(path, Path) else path
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
    commit, origin = code_commit(sources)
    parts = ["## The API side by side", functional(commit, origin), idiomatic(sources, commit)]
    return "\n\n".join(p for p in parts if p)


def functional(commit: str | None, origin: str) -> str:
    paths = files()
    code = {fw: function_sources(t) if (t := source_text(p, commit)) else {}
            for fw, p in paths.items()}
    listed = ", ".join(f"`implementations/{p.name}`" for p in paths.values())
    parts = [f"The functional core, read from {listed} {origin}. Lines of code per function "
             f"(without docstring, comments and blank lines):", counts(code, FUNCTIONS)]
    parts += [side_by_side(fn, code) for fn in FUNCTIONS]
    return "\n\n".join(parts)


def counts(code: dict[str, dict[str, str]], names: Sequence[str]) -> str:
    rows = [[md_code(fn), *(code_lines(code[fw][fn]) if fn in code[fw] else "—" for fw in code)]
            for fn in names]
    return markdown_table(["function", *code], rows, "l" + "r" * len(code))


def idiomatic(sources: list, commit: str | None) -> str:
    """The idiomatic tier: make_model, make_loss and train_step of every file defining them,
    with the lines of code and the idiomatic variants' measured time per step."""
    code, measured = {}, []
    for path, names in api_files().items():
        text = source_text(path, commit)
        found = function_sources(text, IDIOMATIC) if text else {}
        if set(found) == set(IDIOMATIC):
            label = " / ".join(registry.FRAMEWORKS[n].label for n in names)
            code[label] = found
            measured.append(costs(sources, names))
    if not code:
        return ""
    table = counts(code, IDIOMATIC)
    table += "\n| measured, per step | " + " | ".join(measured) + " |"
    parts = ["### The idiomatic tier", "The model, the loss and one training step as a user "
             "writes them, from the same commit; the last row is what each idiomatic variant "
             "took per step on the worked example in the newest run that has it.", table]
    parts += [side_by_side(fn, code) for fn in IDIOMATIC]
    return "\n\n".join(parts)


def costs(sources: list, frameworks: list[str]) -> str:
    """'`torch-nn` 215 µs, ...': the idiomatic variants of these frameworks on the worked
    example, from the newest file that measured each."""

    tier = {v.name for v in registry.VARIANTS.values() if v.framework in frameworks
            and v.kind == "idiomatic"  # the modules' tier, not the framework's functional core
            and (v.trainer != "Trainer" or not registry.FRAMEWORKS[v.framework].gradients)}
    found = {}
    for s in sorted(sources, key=lambda s: s.run.created, reverse=True):
        for c in s.run.ok_cases():
            if (c.variant in tier and c.device == "cpu" and c.problem.is_worked_example
                    and c.variant not in found):
                found[c.variant] = c.median
    return ", ".join(f"{md_code(v)} {fmt_time(t)}" for v, t in found.items()) or "—"


def code_commit(sources: list) -> tuple[str | None, str]:
    """(the commit to read the code at, a sentence saying where it comes from): the commit the
    newest results were measured at, on a clean tree, if this checkout has it; else the
    working tree, named by a hash of its content (so the sentence changes only with it)."""
    for s in sorted(sources, key=lambda s: s.run.created, reverse=True):
        c = s.run.commit
        if c.id and c.dirty is False and environment.git_out("cat-file", "-t", c.id) == "commit":
            return c.id, (f"at commit {md_code(c.id[:10])}, the commit the newest results "
                          f"({s.file}) were measured at: the code that ran")
    text = "".join(p.read_text(encoding="utf-8") for p in files().values())
    digest = hashlib.sha256(text.encode())
    return None, (f"as they are in the checkout that built the report (content "
                  f"{md_code(digest.hexdigest()[:10])}): no results file names a commit this "
                  f"checkout has, so this may differ from the code that ran")


def source_text(path: Path, commit: str | None) -> str | None:
    if commit is not None and path.is_relative_to(environment.REPO):
        rel = path.relative_to(environment.REPO).as_posix()
        text = environment.git_out("show", f"{commit}:{rel}")
        if text is not None:
            return text + "\n"
    return path.read_text(encoding="utf-8") if path.exists() else None


def side_by_side(function: str, sources: dict[str, dict[str, str]]) -> str:
    """An HTML table with one column per framework, each holding a fenced code block."""
    head = "".join(f"<th>{fw}</th>" for fw in sources)
    cells = "</td><td>".join(
        f"\n\n```python\n{src[function]}\n```\n\n" if function in src else "\n\n(not defined)\n\n"
        for src in sources.values())
    return (f"### {md_code(function)}\n\n<table>\n<tr>{head}</tr>\n<tr valign=\"top\"><td>{cells}"
            f"</td></tr>\n</table>")
