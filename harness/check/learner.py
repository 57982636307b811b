"""A learner's own backward pass, from a file, checked like any framework (``check --impl``).

The file is plain NumPy and needs only one function::

    def grads(params, x, y):
        ...
        return E, grads

``params`` is a list with one ``(W, b)`` pair per layer, ``W`` of shape (fan_in, fan_out) and
``b`` of shape (fan_out,) or None when the network has no bias; a layer computes
``a = h @ W + b`` and ``h = phi(a)``. ``x`` is (batch, inputs) and ``y`` (batch, outputs);
E = 1/2 * mean over the batch of ||y_hat - y||^2, and ``grads`` has the structure of
``params``. Optional, in the same file:

* ``sgd_step(params, x, y, lr)``, returning the new parameters: its trajectory is checked too;
* ``ACTIVATION`` (hidden layers: "linear" by default, or "sigmoid", "tanh", "relu"),
  ``OUTPUT_ACTIVATION`` ("linear") and ``BIAS`` (False): the networks it implements, which
  the default networks of ``check`` follow.

``examples/learner_backprop.py`` is a complete file of twenty lines.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from implementations.problem import ACTIVATIONS, BenchError, Params, Problem, cast_problem


@dataclass
class Learner:
    """A loaded learner's file and the networks it implements."""

    path: Path
    module: ModuleType
    activation: str = "linear"
    output_activation: str = "linear"
    bias: bool = False

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def has_step(self) -> bool:
        return callable(getattr(self.module, "sgd_step", None))

    def grads(self, problem: Problem) -> tuple[float, Params]:
        """The file's (E, grads) at the problem's start, in the problem's dtype."""
        x, y, params = cast_problem(problem)
        answer = self.module.grads(params, x, y)
        if not isinstance(answer, (tuple, list)) or len(answer) != 2:
            raise TypeError(f"grads must return (E, grads), not {type(answer).__name__}")
        E, g = answer
        return float(np.asarray(E).reshape(-1)[0]), g

    def trajectory(self, problem: Problem, steps: int) -> Params:
        """The parameters after ``steps`` calls of the file's sgd_step from the start."""
        x, y, params = cast_problem(problem)
        for _ in range(steps):
            params = self.module.sgd_step(params, x, y, problem.lr)
        return [(np.asarray(W), None if b is None else np.asarray(b)) for W, b in params]


def read_learner(path: str | Path) -> Learner:
    """Import a learner's file, or a one-line BenchError saying what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"--impl {path}: no such file")
    name = f"backprop_bench_learner_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise BenchError(f"--impl {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise BenchError(f"{path.name}:{exc.lineno}: {type(exc).__name__}: {exc.msg}") from None
    except BaseException as exc:  # anything the file does at import, SystemExit included
        raise BenchError(f"{path.name} fails to import ({type(exc).__name__}: {exc})"[:300]
                         ) from None
    sys.modules.pop(name, None)
    return validated(path, module)


def validated(path: Path, module: ModuleType) -> Learner:
    if not callable(getattr(module, "grads", None)):
        raise BenchError(f"{path.name} defines no grads(params, x, y) function returning "
                         f"(E, grads)")
    step = getattr(module, "sgd_step", None)
    if step is not None and not callable(step):
        raise BenchError(f"{path.name}: sgd_step is not a function")
    learner = Learner(path, module)
    for attr, field in (("ACTIVATION", "activation"), ("OUTPUT_ACTIVATION", "output_activation")):
        value = getattr(module, attr, getattr(learner, field))
        if value not in ACTIVATIONS:
            raise BenchError(f"{path.name}: {attr} = {value!r} is not one of "
                             f"{', '.join(ACTIVATIONS)}")
        setattr(learner, field, value)
    bias = getattr(module, "BIAS", False)
    if not isinstance(bias, bool):
        raise BenchError(f"{path.name}: BIAS must be True or False, not {bias!r}")
    learner.bias = bias
    return learner
