"""A learner's own backward pass, from a file, checked like any framework (``check --impl``).

The file needs only one function::

    def grads(params, x, y):
        ...
        return E, grads

``params`` is a list with one ``(W, b)`` pair per layer, ``W`` of shape (fan_in, fan_out) and
``b`` of shape (fan_out,) or None when the network has no bias; a layer computes
``a = h @ W + b`` and ``h = phi(a)``. ``x`` is (batch, inputs) and ``y`` (batch, outputs);
E = 1/2 * mean over the batch of ||y_hat - y||^2 (one number), and ``grads`` has the
structure of ``params``. Optional, in the same file:

* ``sgd_step(params, x, y, lr)``, returning the new parameters: its trajectory is checked too;
* ``trace(params, x, y)``, returning one dict per layer l = 1..L with any of ``"a"`` (the
  net input a_l = h_{l-1} W_l + b_l), ``"h"`` (the output h_l = phi(a_l)), ``"delta"``
  (dE/da_l), ``"dW"`` and ``"db"`` (dE/dW_l, dE/db_l): ``check`` then names the *first*
  quantity that differs from the chain rule, forward then backward (``harness.check.trace``);
* ``ACTIVATION`` (hidden layers: "linear" by default, or "sigmoid", "tanh", "relu"),
  ``OUTPUT_ACTIVATION`` ("linear") and ``BIAS`` (False): the networks it implements, which
  the default networks of ``check`` follow;
* ``FRAMEWORK``: the registered framework whose arrays ``grads`` works on: numpy (the
  default), torch (tensors: a backward pass written with torch, or a
  ``torch.autograd.Function``), jax (arrays: a backward pass written with jax.numpy, or a
  ``jax.custom_vjp``), or any other with arrays and gradient functions.

**The file never runs in the judge's process.** Its declarations are read from its source
(literals only, as the registry reads a framework's: ``read_learner``), and it is imported
and called in a process of its own (``harness.procs.isolated``, which calls ``answer``),
under ``check --timeout``, its import included. There it gets its own copies of the
parameters and data, in the problem's dtype and its framework's arrays, and sends back only
numbers, which this process judges. Its exit, crash, hang or interrupt is a failing row naming
the file and what happened, never a silent pass.

``examples/learner_backprop.py`` is a complete NumPy file of twenty lines;
``examples/learner_torch.py``, ``learner_torch_function.py`` and ``learner_jax.py`` are the
same in torch and JAX.
"""

from __future__ import annotations

import ast
import importlib.util
import signal
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.check import deadline
from harness.check.evidence import Evidence, from_json, problem_of, to_json
from harness.check.report import crash_reason, label
from implementations import registry
from implementations.problem import ACTIVATIONS, BenchError, Params, Problem, cast_problem

DECLARED = {"ACTIVATION": ACTIVATIONS, "OUTPUT_ACTIVATION": ACTIVATIONS,
            "BIAS": (True, False)}
PROBE_STEPS = 3  # a short run, on which a wrong trajectory is told apart (diagnose_trajectory)
MAX_SOURCE = 1 << 20  # bytes: a learner's file is a page, not a megabyte


class Returned(BenchError):
    """What the file's function returned is not what the contract asks for."""


@dataclass(frozen=True)
class LearnerFile:
    """A learner's file as its source declares it (it is never imported here)."""

    path: Path
    activation: str = "linear"
    output_activation: str = "linear"
    bias: bool = False
    framework: str = "numpy"
    has_step: bool = False
    has_trace: bool = False

    @property
    def name(self) -> str:
        return self.path.name


# ---- this process: what the file declares ----------------------------------------------------

def read_learner(path) -> LearnerFile:
    """The file's declarations, read from its source without running it, or a one-line
    BenchError saying what is wrong with it."""
    path = Path(path)
    if not path.exists():
        raise BenchError(f"--impl {path}: no such file")
    if not path.is_file():
        raise BenchError(f"--impl {path}: not a regular file")
    tree = parse(path)
    found = module_names(tree)
    literal = literal_value(found.get("grads"))
    if "grads" not in found or literal is not ...:
        said = "" if literal is ... else f" (grads = {literal!r})"[:80]
        raise BenchError(f"{path.name} defines no grads(params, x, y) function returning "
                         f"(E, grads){said}")
    for name in ("sgd_step", "trace"):
        if name in found and literal_value(found[name]) is not ...:
            raise BenchError(f"{path.name}: {name} is not a function")
    values = {}
    for name, node in found.items():
        if name in DECLARED or name == "FRAMEWORK":
            values[name] = declared(path, name, node)
    return LearnerFile(path, values.get("ACTIVATION", "linear"),
                       values.get("OUTPUT_ACTIVATION", "linear"), values.get("BIAS", False),
                       values.get("FRAMEWORK", "numpy"), "sgd_step" in found, "trace" in found)


def parse(path: Path) -> ast.Module:
    try:
        if path.stat().st_size > MAX_SOURCE:
            raise BenchError(f"{path.name}: {path.stat().st_size:,} bytes is too large for a "
                             f"learner's file (at most {MAX_SOURCE:,})")
        source = path.read_bytes()
    except OSError as exc:
        raise BenchError(f"--impl {path}: cannot be read ({exc.strerror or exc})") from None
    try:
        return ast.parse(source, path.name)
    except SyntaxError as exc:
        where = f"{path.name}:{exc.lineno}" if exc.lineno else path.name
        raise BenchError(f"{where}: {type(exc).__name__}: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes, absurd nesting
        raise BenchError(f"{path.name}: not a Python file Python can read ({exc})"[:300]
                         ) from None


def module_names(tree: ast.Module) -> dict[str, ast.AST | None]:
    """The names the module binds at its top level: functions, imports and assignments (the
    value node of a declaration's assignment, None for the rest)."""
    found: dict[str, ast.AST | None] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found[node.name] = None
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            found.update((a.asname or a.name.split(".")[0], None) for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                found.update(assigned(target, node.value))
    return found


def assigned(target: ast.AST, value: ast.AST | None) -> dict[str, ast.AST | None]:
    """``NAME = v`` and ``A, B = v, w`` (the form examples/learner_backprop.py uses)."""
    if isinstance(target, ast.Name):
        return {target.id: value}
    if isinstance(target, (ast.Tuple, ast.List)):
        values = value.elts if isinstance(value, (ast.Tuple, ast.List)) and len(
            value.elts) == len(target.elts) else [None] * len(target.elts)
        out: dict = {}
        for t, v in zip(target.elts, values):
            out.update(assigned(t, v))
        return out
    return {}


def literal_value(node: ast.AST | None):
    """The value of a literal node, or ... when it is none (a def, a call, a name)."""
    if node is None:
        return ...
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return ...


def array_frameworks() -> tuple[str, ...]:
    """What FRAMEWORK may name: a registered framework with arrays and gradient functions
    (numpy, torch, jax, ...), whose to_framework and to_numpy carry the learner's arrays."""
    return tuple(n for n, f in registry.FRAMEWORKS.items() if f.gradients and f.arrays)


def declared(path: Path, name: str, node: ast.AST | None):
    """A declaration's literal value, checked against what it may be."""
    allowed = DECLARED.get(name, ())
    value = literal_value(node)
    line = getattr(node, "lineno", None)
    where = f"{path.name}:{line}" if line else path.name
    if name == "BIAS":
        if not isinstance(value, bool):
            shown = "a value computed when the file runs" if value is ... else repr(value)
            raise BenchError(f"{where}: BIAS must be True or False, not {shown}")
        return value
    if value is ...:
        raise BenchError(f"{where}: {name} must be a literal string, one of "
                         f"{', '.join(map(repr, allowed))}")
    allowed = allowed or array_frameworks()
    if not isinstance(value, str) or value not in allowed:
        raise BenchError(f"{where}: {name} = {value!r} is not one of "
                         f"{', '.join(allowed)}"[:300])
    return value


# ---- the learner's process: import the file, call it, send back numbers ---------------------

def piece(name: str, what: str, where: str) -> str:
    """How the learner's process names the piece it begins: "mine.py's grads on 1-1-1 ..."."""
    return f"{name}'s {what} on {where}"


def answer(path: str, framework: str, problems: list[dict], steps: int,
           started: Callable[[str], None], send: Callable[[dict], None]) -> None:
    """The learner's process: import the file, then for each problem its ``grads`` (and
    ``trace``) at the start and its ``sgd_step`` trajectory, each piece under ``check
    --timeout``, each sent as soon as it is done (``Evidence`` as JSON), so that what was done
    survives the file ending the process later."""
    path = Path(path)
    started(f"importing {path.name}")
    module = guarded(path, lambda: import_file(path))
    if isinstance(module, str):
        send({"import": module})
        return
    arrays = framework_module(framework)
    for item in problems:
        problem = problem_of(item)
        started(piece(path.name, "grads", label(problem)))
        send(to_json(gradients_evidence(path, fresh(path, module), arrays, problem)))
        if steps and callable(getattr(module, "sgd_step", None)):
            started(piece(path.name, "sgd_step", label(problem)))
            send(to_json(trajectory_evidence(path, fresh(path, module), arrays, problem,
                                             steps)))


def fresh(path: Path, first):
    """The file imported anew for each piece, so that what one piece leaves in its globals (a
    cache, a running sum) cannot change another; the first import serves the first piece."""
    if getattr(first, "_backprop_bench_used", False):
        module = guarded(path, lambda: import_file(path))
        return module if not isinstance(module, str) else first
    first._backprop_bench_used = True
    return first


def import_file(path: Path):
    name = f"backprop_bench_learner_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise BenchError(f"{path.name} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "grads", None)):
        raise BenchError(f"{path.name}: grads is not a function")
    return module


def guarded(path: Path, fn: Callable):
    """fn()'s value, or the one line that says how it ended (a crash pointing at the file's
    own line, a timeout, sys.exit, an interrupt raised inside the file)."""
    try:
        with deadline.limit(path.name):
            return fn()
    except SystemExit as exc:
        return f"exited: sys.exit({exc.code!r}) in {path.name}{own_line(exc, path)}"
    except KeyboardInterrupt as exc:
        return f"interrupted: KeyboardInterrupt raised in {path.name}{own_line(exc, path)}"
    except Returned as exc:  # what it returned is not what the contract asks for
        return f"returned {exc}"
    except BenchError as exc:
        return str(exc)
    except Exception as exc:
        return crash_reason(exc, path)


def own_line(exc: BaseException, path: Path) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if Path(f.filename).name == path.name]
    return f" ({path.name}:{frames[-1].lineno})" if frames else ""


def framework_module(name: str):
    """The implementation whose to_framework / to_numpy convert the learner's arrays."""
    return registry.import_module(name)


def own_copies(arrays, problem: Problem):
    """x, y and the parameters in the problem's dtype, as the learner's framework's arrays:
    copies of their own (``cast_problem`` copies, and ``to_framework`` copies again)."""
    x, y, params = cast_problem(problem)
    convert = arrays.to_framework
    return convert(x), convert(y), [(convert(W), None if b is None else convert(b))
                                    for W, b in params]


def gradients_evidence(path: Path, module, arrays, problem: Problem) -> Evidence:
    ev = Evidence(path.name, label(problem), terms=f"learner-{arrays.FRAMEWORK.name}")
    got = guarded(path, lambda: loss_and_gradients(module, arrays, problem))
    if isinstance(got, str):
        ev.crashes.append(("grads", got))
    else:
        ev.gradients = got
    if callable(getattr(module, "trace", None)):
        trace = guarded(path, lambda: traced(module, arrays, problem))
        if isinstance(trace, str):
            ev.notes.append(f"{path.name}: its trace could not be read: {trace}")
        else:
            ev.trace = trace
    return ev


def loss_and_gradients(module, arrays, problem: Problem) -> tuple[float, list]:
    x, y, params = own_copies(arrays, problem)
    answer = module.grads(params, x, y)
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        raise Returned(f"{kind(answer)}: grads must return (E, grads)")
    E, g = answer
    if not isinstance(g, (list, tuple)):
        raise Returned(f"grads as {kind(g)}: grads must return (E, grads) with grads a list "
                       f"of (W, b) pairs")
    flat = []
    for layer in g:
        if not isinstance(layer, (list, tuple)) or len(layer) != 2:
            raise Returned("gradients that are not (W, b) pairs: one pair per layer")
        flat.append(array(arrays, layer[0], "a weight's gradient"))
        if problem.spec.bias:
            flat.append(None if layer[1] is None else array(arrays, layer[1],
                                                            "a bias's gradient"))
    return scalar(arrays, E), flat


def kind(value) -> str:
    return type(value).__name__


def scalar(arrays, E) -> float:
    """E as one real number, or BenchError (an array of several, a complex, a bool)."""
    a = np.asarray(arrays.to_numpy(E) if not isinstance(E, (int, float, complex, np.generic))
                   else E)
    if a.dtype.kind == "c":
        raise Returned(f"a complex E ({complex(a.reshape(-1)[0])}): E must be a real number")
    if a.dtype.kind not in "fiu" or a.dtype == np.bool_:
        raise Returned(f"E as {a.dtype} {kind(E)}: E must be a number")
    if a.size != 1:
        raise Returned(f"E as an array of shape {a.shape}: E must be one number")
    return float(a.reshape(-1)[0])


def array(arrays, t, what: str) -> np.ndarray:
    """A tensor of the learner's framework (or a NumPy array, or a number) as float64."""
    if t is None:
        raise Returned(f"None for {what}")
    a = np.asarray(arrays.to_numpy(t) if hasattr(t, "shape") and not isinstance(
        t, np.ndarray) else t)
    if a.dtype.kind == "c":
        raise Returned(f"a complex {what}: the gradients of a real loss are real")
    if a.dtype.kind not in "fiu" or a.dtype == np.bool_:
        raise Returned(f"{what} of {a.dtype}: not numbers")
    return np.array(a, dtype=np.float64)


def traced(module, arrays, problem: Problem) -> list[dict]:
    x, y, params = own_copies(arrays, problem)
    layers = module.trace(params, x, y)
    if not isinstance(layers, (list, tuple)):
        raise Returned(f"{kind(layers)} from trace: trace returns a list of dicts, one per layer")
    out = []
    for d in layers:
        if not isinstance(d, dict):
            raise Returned("a trace whose layers are not dicts: one dict per layer")
        out.append({k: array(arrays, v, f"trace's {k}") for k, v in d.items()
                    if k in ("a", "h", "delta", "dW", "db") and v is not None})
    return out


def trajectory_evidence(path: Path, module, arrays, problem: Problem, steps: int) -> Evidence:
    ev = Evidence(path.name, label(problem), terms=f"learner-{arrays.FRAMEWORK.name}")
    got = guarded(path, lambda: trajectory(module, arrays, problem, steps))
    if isinstance(got, str):
        ev.crashes.append(("sgd_step", got))
    else:
        (k, probe), (n, params) = got
        ev.probe, ev.trajectory = (k, probe), (n, params)
    return ev


def trajectory(module, arrays, problem: Problem, steps: int):
    """((PROBE_STEPS, params then), (steps, params then)): one run of the file's sgd_step."""
    x, y, params = own_copies(arrays, problem)
    snapshots = {}
    for step in range(1, max(steps, PROBE_STEPS) + 1):
        params = module.sgd_step(params, x, y, problem.lr)
        if step in (PROBE_STEPS, steps):
            snapshots[step] = numpy_params(arrays, params, problem)
    return (PROBE_STEPS, snapshots[PROBE_STEPS]), (steps, snapshots[steps])


def numpy_params(arrays, params, problem: Problem) -> Params:
    if not isinstance(params, (list, tuple)) or len(params) != problem.spec.depth or not all(
            isinstance(p, (list, tuple)) and len(p) == 2 for p in params):
        raise Returned(f"from sgd_step what are not the parameters: a list of "
                       f"{problem.spec.depth} (W, b) pairs")
    return [(array(arrays, W, "a weight"), None if b is None or not problem.spec.bias
             else array(arrays, b, "a bias")) for W, b in params]


# ---- this process again: the learner's answers as evidence -------------------------------------

def evidence_of(learner: LearnerFile, answers: list[dict], last: str | None,
                ended: str | None, problems: list[Problem], steps: int) -> list[Evidence]:
    """The learner's evidence from what its process sent. ``ended``: how the process ended
    before it sent everything, with ``last`` the piece it had begun: that piece fails with
    it, and so does every piece not sent."""
    out = [from_json(a) for a in answers if "subject" in a]
    failed_import = next((str(a["import"]) for a in answers if "import" in a), None)
    sent = {(e.problem, "sgd_step" if e.trajectory is not None or any(
        w == "sgd_step" for w, _ in e.crashes) else "grads") for e in out}
    whats = ("grads", "sgd_step") if steps and learner.has_step else ("grads",)
    for problem in problems:
        where = label(problem)
        for what in whats:
            if (where, what) in sent:
                continue
            if failed_import is not None:
                reason = f"importing the file: {failed_import}"
            elif last == f"importing {learner.name}":
                reason = f"importing the file: {ended or 'it ended'}"
            elif last == piece(learner.name, what, where):
                reason = ended or "its process ended"
            else:
                reason = f"not run: {learner.name} ended its process earlier" + (
                    f", during {last}" if last else "")
            out.append(Evidence(learner.name, where, crashes=[(what, reason)],
                                terms=f"learner-{learner.framework}"))
    return out


def status_text(status: int | None, name: str) -> str:
    """'exited with status 0 (os._exit or sys.exit in the file?)', 'killed by SIGKILL'..."""
    if status is None:
        return "its process was killed"
    if status < 0:
        try:
            sig = signal.Signals(-status).name
        except ValueError:
            sig = f"signal {-status}"
        return f"its process was killed by {sig} (a kill in {name}, or out of memory?)"
    return (f"its process exited with status {status} before it answered (os._exit or an "
            f"exit in {name}?)")
