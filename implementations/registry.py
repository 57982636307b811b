"""The variants, found in the framework modules and imported lazily.

Every ``implementations/*.py`` that declares ``FRAMEWORK = Framework(...)`` and
``VARIANTS = (Variant(...), ...)`` (see ``implementations.contract``) is a framework module;
so is every file named in ``BACKPROP_BENCH_FRAMEWORKS`` (paths separated by ``os.pathsep``;
worker processes inherit it). The declarations are read from the source with ``ast`` and
never by importing the module, so listing the variants costs milliseconds and needs no
framework installed. A module is imported when a variant runs; any failure to import it,
of any kind, becomes ``Unavailable`` with the reason.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import subprocess
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path
from types import ModuleType

from implementations.contract import (
    ALL_ACTIVATIONS,
    BOTH_BIASES,
    DECLARATION_NAMES,
    KINDS,
    ROLES,
    RUN_NETWORK_NAMES,
    Framework,
    Unavailable,
    Variant,
)
from implementations.problem import DTYPES, BenchError

HERE = Path(__file__).resolve().parent
ENV = "BACKPROP_BENCH_FRAMEWORKS"
ALL_DEVICES = ("cpu", "cuda")

# a variant's old name: (its name now, why it changed). The old name keeps working, with a note
RENAMED = {"jax-scan": ("jax-fori", "it runs a lax.fori_loop, not a lax.scan")}
_noted: set[str] = set()

FRAMEWORKS: dict[str, Framework] = {}  # in Framework.order
VARIANTS: dict[str, Variant] = {}  # frameworks in order, each module's variants in its order
MODULE_PATHS: dict[str, Path] = {}  # framework name -> its source file
PROBLEMS: list[str] = []  # files left out, one line each, said once by the command line


def module_files() -> list[Path]:
    """The candidate module files: implementations/*.py, then those named in the env (a name
    that is no file is a problem, said once, and left out)."""
    files = sorted(p for p in HERE.glob("*.py") if not p.name.startswith("_"))
    for text in os.environ.get(ENV, "").split(os.pathsep):
        if not text:
            continue
        path = Path(text).resolve()
        if path.is_file():
            files.append(path)
        else:
            PROBLEMS.append(f"{ENV}: {text} is not a file; left out")
    return files


def declarations(path: Path) -> tuple[Framework, tuple[Variant, ...]] | None:
    """(FRAMEWORK, VARIANTS) of a module file, read from its source; None if it has none."""
    try:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, str(path))
    except UnicodeDecodeError:
        raise BenchError(f"{path.name}: not UTF-8 text") from None
    except SyntaxError as exc:
        raise BenchError(f"{path.name}:{exc.lineno}: {exc.msg}") from None
    except (OSError, ValueError) as exc:
        raise BenchError(f"{path.name}: cannot be read ({exc})") from None
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(
                node.targets[0], ast.Name) and node.targets[0].id in ("FRAMEWORK", "VARIANTS"):
            found[node.targets[0].id] = evaluate(node.value, path)
    if not found:
        return None
    if set(found) != {"FRAMEWORK", "VARIANTS"}:
        raise BenchError(f"{path.name}: declares {', '.join(found)} but needs both FRAMEWORK "
                         f"and VARIANTS")
    framework, variants = found["FRAMEWORK"], found["VARIANTS"]
    if not isinstance(variants, tuple):
        raise BenchError(f"{path.name}: VARIANTS must be a tuple of Variant(...)")
    if not isinstance(framework, Framework) or not all(isinstance(v, Variant) for v in variants):
        raise BenchError(f"{path.name}: FRAMEWORK must be a Framework and VARIANTS Variants")
    load = partial(import_module, framework.name)
    return framework, tuple(replace(v, framework=framework.name, load=load) for v in variants)


MAX_NODES = 4000  # a declaration is a few dozen literals; anything this large is not one
MAX_TEXT = 2000  # characters of one string
MAX_NUMBER = 10**12
CALLABLE = {"Framework": Framework, "Variant": Variant}


def evaluate(node: ast.expr, path: Path):
    """A declaration's value, read as ``ast.literal_eval`` reads: numbers, strings, tuples,
    lists and dicts of them, ``-`` before a number, the constants of
    ``contract.DECLARATION_NAMES``, and calls of ``Framework`` and ``Variant`` with such
    arguments; nothing is evaluated, and nothing large is accepted."""
    if sum(1 for _ in ast.walk(node)) > MAX_NODES:
        raise BenchError(f"{path.name}:{node.lineno}: a declaration of more than {MAX_NODES} "
                         f"parts is not a declaration")
    return literal(node, path)


def literal(node: ast.expr, path: Path):
    where = f"{path.name}:{getattr(node, 'lineno', '?')}"
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(
            node.value, (str, int, float, bool))):
        return checked(node.value, where)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(
            node.operand, ast.Constant) and isinstance(node.operand.value, (int, float)):
        return -checked(node.operand.value, where)
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [literal(e, path) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {literal(k, path): literal(v, path) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Name) and node.id in DECLARATION_NAMES and node.id not in CALLABLE:
        return DECLARATION_NAMES[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and (
            node.func.id in CALLABLE) and all(k.arg for k in node.keywords):
        args = [literal(a, path) for a in node.args]
        kwargs = {k.arg: literal(k.value, path) for k in node.keywords}
        try:
            return CALLABLE[node.func.id](*args, **kwargs)
        except TypeError as exc:
            raise BenchError(f"{where}: {node.func.id}(...): {exc}") from None
    raise BenchError(f"{where}: a declaration may use only literals, Framework(...) and "
                     f"Variant(...) calls and the constants "
                     f"{', '.join(n for n in DECLARATION_NAMES if n not in CALLABLE)}, not "
                     f"{ast.unparse(node)[:60]}")


def checked(value, where: str):
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise BenchError(f"{where}: a string of {len(value)} characters in a declaration")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) > MAX_NUMBER:
        raise BenchError(f"{where}: the number {value:.3g} is out of range in a declaration")
    return value


def check_variant(v: Variant, names: set[str]) -> None:
    """Raise BenchError on a declaration the harness could not use."""
    if v.kind not in KINDS:
        raise BenchError(f"variant {v.name}: kind {v.kind!r} is not one of {', '.join(KINDS)}")
    if v.role is not None and v.role not in ROLES:
        raise BenchError(f"variant {v.name}: role {v.role!r} is not one of {', '.join(ROLES)}")
    if not set(v.default_run) <= set(RUN_NETWORK_NAMES):
        raise BenchError(f"variant {v.name}: default_run {v.default_run!r} names networks "
                         f"other than {', '.join(RUN_NETWORK_NAMES)}")
    check_capabilities(v)
    if v.name in names:
        raise BenchError(f"variant {v.name} is declared twice")
    if v.below is not None and v.below == v.name:
        raise BenchError(f"variant {v.name} cannot be its own rung below")
    if v.workers != 1 or (v.replicates and not v.distributed):
        raise BenchError(f"variant {v.name}: workers and replicates are for distributed "
                         f"variants, and workers is set per case (Variant.at), not declared")


def check_capabilities(v: Variant) -> None:
    """Raise BenchError on a declaration of what a variant runs that names nothing the suite
    has (a device, dtype or activation it does not know, a largest network below 1)."""
    for what, declared, known in (("devices", v.devices, ALL_DEVICES),
                                  ("dtypes", v.dtypes, DTYPES),
                                  ("activations", v.activations, ALL_ACTIVATIONS),
                                  ("biases", v.biases, BOTH_BIASES)):
        if not isinstance(declared, tuple) or not declared or not all(
                type(d) is type(known[0]) and d in known for d in declared):
            raise BenchError(f"variant {v.name}: {what} {declared!r} must be a non-empty tuple "
                             f"of {', '.join(map(str, known))}")
    for what in ("max_width", "max_layers", "max_batch"):
        n = getattr(v, what)
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
            raise BenchError(f"variant {v.name}: {what} {n!r} must be a positive integer or "
                             f"None")


def discover() -> None:
    """(Re)build FRAMEWORKS, VARIANTS and MODULE_PATHS in place from the module files. A file
    whose declarations cannot be used is left out, with one line in PROBLEMS saying why; the
    other frameworks are unaffected."""
    PROBLEMS.clear()
    found = []
    for path in module_files():
        try:
            decl = declarations(path)
        except BenchError as exc:
            PROBLEMS.append(f"{exc}; left out")
            continue
        if decl:
            found.append((decl[0], decl[1], path))
    found.sort(key=lambda f: (f[0].order, f[0].name))
    frameworks, variants, paths = {}, {}, {}
    for framework, vs, path in found:
        problem = clash(framework, vs, frameworks, variants, paths)
        if problem:
            PROBLEMS.append(f"{path.name}: {problem}; left out")
            continue
        frameworks[framework.name], paths[framework.name] = framework, path
        variants.update((v.name, v) for v in vs)
    for table, new in ((FRAMEWORKS, frameworks), (VARIANTS, variants), (MODULE_PATHS, paths)):
        table.clear()
        table.update(new)


def clash(framework: Framework, vs: tuple[Variant, ...], frameworks: dict, variants: dict,
          paths: dict) -> str | None:
    """Why a file's declarations cannot join those found before, or None."""
    if framework.name in frameworks:
        return f"framework {framework.name} is declared already ({paths[framework.name].name})"
    seen = set(variants)
    for v in vs:
        try:
            check_variant(v, seen)
        except BenchError as exc:
            return str(exc)
        seen.add(v.name)
    return None


def module_name(framework: str) -> str:
    """The import name of a framework's module: implementations.X, or a name for an extra."""
    path = MODULE_PATHS[framework]
    if path.parent == HERE:
        return f"implementations.{path.stem}"
    return f"backprop_bench_extra_{path.stem}"


def import_module(framework: str) -> ModuleType:
    """The framework's module, or Unavailable saying which package is missing or what broke."""
    fw = get_framework(framework)
    os.environ.update(fw.environment)  # read by its packages when they are imported
    for package in fw.packages:
        try:
            importlib.import_module(package)
        except Exception as exc:  # ImportError, or OSError of a broken CUDA library, ...
            if not package_exists(package):
                raise Unavailable(f"{fw.name}: {package} is not installed") from None
            raise Unavailable(failed(fw.name, package, exc)) from None
    name = module_name(framework)
    if name not in sys.modules:
        probe(framework)
    try:
        return load_module(framework)
    except Unavailable:
        raise
    except (Exception, SystemExit) as exc:  # a plugin that calls sys.exit() at import, too
        raise Unavailable(failed(fw.name, MODULE_PATHS[framework].name, exc)) from None


PROBE = ("import sys\n"
         "from implementations import registry\n"
         "registry.load_module(sys.argv[1])\n"
         "print('backprop-bench: imported', flush=True)\n")
PROBED: dict[tuple[str, float], str | None] = {}


def probe(framework: str) -> None:
    """Import a framework file from outside implementations/ (BACKPROP_BENCH_FRAMEWORKS) in a
    process of its own first, once per file and version: one whose import ends its process
    (``os._exit``) is unavailable with that reason, never the end of this one."""
    path = MODULE_PATHS[framework]
    if path.parent == HERE:
        return
    key = (str(path), path.stat().st_mtime)
    if key not in PROBED:
        PROBED[key] = probe_in_child(framework, path)
    if PROBED[key]:
        raise Unavailable(PROBED[key])


def probe_in_child(framework: str, path: Path) -> str | None:
    """None if the file imports in a child (or fails there as it will here, with a reason
    of its own); else why its import ends a process."""
    root = str(HERE.parent)
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    try:
        done = subprocess.run([sys.executable, "-c", PROBE, framework], env=env, timeout=600,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"{framework}: importing {path.name} did not end within 600 s"
    if "backprop-bench: imported" in done.stdout or "Traceback" in done.stderr:
        return None
    return (f"{framework}: importing {path.name} ends the process (exit status "
            f"{done.returncode}, before its module was loaded)")


def package_exists(package: str) -> bool:
    try:
        return importlib.util.find_spec(package.split(".")[0]) is not None
    except (ImportError, ValueError, AttributeError):  # AttributeError: sys.modules[x] is None
        return False


def failed(framework: str, what: str, exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{framework}: {what} is installed but fails to import ({type(exc).__name__}: {first})"


def load_module(framework: str) -> ModuleType:
    name = module_name(framework)
    if name.startswith("implementations."):
        return importlib.import_module(name)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, MODULE_PATHS[framework])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def current_name(name: str) -> str:
    """A variant's name now: an old name (``RENAMED``) gives the new one, with a one-line note
    on stderr the first time; any other name is returned as it is."""
    if name not in RENAMED:
        return name
    new, why = RENAMED[name]
    if name not in _noted:
        _noted.add(name)
        print(f"note: variant {name} is now called {new} ({why}); the old name still works",
              file=sys.stderr)
    return new


def get(name: str) -> Variant:
    """The variant called name (or once called it), or a BenchError listing the known ones."""
    try:
        return VARIANTS[current_name(name)]
    except KeyError:
        raise BenchError(f"unknown variant {name!r}: choose from {', '.join(VARIANTS)}") from None


def get_framework(name: str) -> Framework:
    """The framework called name, or a BenchError that lists the known ones."""
    try:
        return FRAMEWORKS[name]
    except KeyError:
        raise BenchError(
            f"unknown framework {name!r}: choose from {', '.join(FRAMEWORKS)}") from None


def variants_of(framework: str) -> list[Variant]:
    return [v for v in VARIANTS.values() if v.framework == framework]


def main_variant(framework: str) -> Variant:
    """The variant that runs a framework's own ``Trainer`` with its default loop."""
    return next(v for v in variants_of(framework) if v.trainer == "Trainer" and v.loop is None)


def with_role(role: str) -> list[Variant]:
    """The variants with a role ("limit", "reference"), in registry order."""
    return [v for v in VARIANTS.values() if v.role == role]


def ladder(variant: Variant) -> list[Variant]:
    """The rungs from the bottom of a variant's abstraction ladder up to it (via ``below``)."""
    rungs = [variant]
    while rungs[-1].below in VARIANTS and len(rungs) <= len(VARIANTS):
        rungs.append(VARIANTS[rungs[-1].below])
    return rungs[::-1]


def framework_of(variant: str) -> str | None:
    """The framework of a variant name, or None for a name this registry does not know."""
    v = VARIANTS.get(variant)
    return v.framework if v else None


discover()
