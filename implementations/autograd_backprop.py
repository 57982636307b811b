"""HIPS autograd: a tape over NumPy, the rung between the hand-written chain rule and torch.

The loss is written with ``autograd.numpy``, a thin wrapper of NumPy that records every
operation on a tape while ``autograd.value_and_grad`` traces it; the gradient is the tape
played backwards, each primitive with its vector-Jacobian product. The arrays are plain NumPy
arrays (float32 stays float32, float64 float64) and the update is NumPy's own, out of place,
as in ``numpy_backprop``. It runs on the CPU only, eagerly, in one thread (the BLAS's for the
matmuls), with no compile step and nothing to sync. What it costs over ``numpy`` is the price
of a tape alone: boxing every intermediate, recording it, and walking the graph back.
"""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
from autograd import value_and_grad

from implementations import numpy_backprop
from implementations.contract import Framework, Unavailable, Variant
from implementations.problem import (
    NetworkSpec,
    Params,
    Problem,
    cast_problem,
    flatten,
    map_params,
    unflatten,
)

FRAMEWORK = Framework("autograd", label="autograd", packages=("autograd",), order=25)
VARIANTS = (
    Variant("autograd", "idiomatic", "HIPS autograd: value_and_grad of a NumPy loss, the "
            "update by hand", below="numpy"),
)

ACTIVATIONS = {
    "linear": lambda a: a,
    "sigmoid": lambda a: 1.0 / (1.0 + anp.exp(-a)),
    "tanh": anp.tanh,
    "relu": lambda a: anp.maximum(a, 0.0),
}


def to_framework(a: np.ndarray, device: str = "cpu", trainable: bool = False) -> np.ndarray:
    """A copy of a NumPy array (autograd differentiates plain NumPy arrays)."""
    check_device(device)
    return np.array(a)


def to_numpy(a: np.ndarray) -> np.ndarray:
    """A copy, so that nobody outside can write into the Trainer's arrays."""
    return np.array(a)


def check_device(device: str) -> None:
    if device != "cpu":
        raise Unavailable(f"autograd runs on the CPU only, not on {device!r}")


def sync(params: Params) -> None:
    """Nothing to wait for: NumPy computes synchronously."""


def settings(threads: int) -> dict:
    """Record the BLAS thread pools under autograd's NumPy (the harness pins them)."""
    import autograd  # a framework, heavy: imported where it is used

    return {**numpy_backprop.settings(threads), "autograd": getattr(autograd, "__version__", None)}


def forward(net: NetworkSpec, params: Params, x: np.ndarray) -> np.ndarray:
    """y_hat = phi(... phi(x @ W1 + b1) ... @ Wn + bn), shape (batch, widths[-1])."""
    h = x
    for (W, b), act in zip(params, net.layer_activations()):
        a = h @ W if b is None else h @ W + b
        h = ACTIVATIONS[act](a)
    return h


def loss(net: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """E = 1/2 * mean over the batch of ||y_hat - y||^2."""
    r = forward(net, params, x) - y
    return 0.5 * anp.sum(r * r) / x.shape[0]


def grads(net: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray):
    """(E, dE/dparams) by autograd.value_and_grad with respect to the parameter tensors."""
    E, g = value_and_grad(lambda ps: loss(net, unflatten(net, ps), x, y))(flatten(params))
    return E, unflatten(net, g)


update = numpy_backprop.update  # params - lr * g, out of place: NumPy's own update


def sgd_step(net: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray, lr) -> Params:
    """params - lr * dE/dparams."""
    _, g = grads(net, params, x, y)
    return update(params, g, lr)


class StepLoop:
    """One sgd_step after another, driven from Python (the idiomatic loop)."""

    autograd, block = True, 1  # plain arrays: autograd needs no flag on them

    def __init__(self, trainer: Trainer):
        self.net, self.x, self.y, self.lr = trainer.net, trainer.x, trainer.y, trainer.lr

    def __call__(self, params: Params, steps: int) -> Params:
        net, x, y, lr = self.net, self.x, self.y, self.lr
        for _ in range(steps):
            params = sgd_step(net, params, x, y, lr)
        return params

    def phases(self, params: Params) -> dict:
        """The step's parts, each f(K) run K times: the loss, the gradients, the update."""
        net, x, y, lr = self.net, self.x, self.y, self.lr
        _, g = grads(net, params, x, y)
        return {"forward": lambda k: repeat(k, lambda: loss(net, params, x, y)),
                "gradient": lambda k: repeat(k, lambda: grads(net, params, x, y)[1]),
                "update": lambda k: repeat(k, lambda: update(params, g, lr))}


class Trainer:
    """The loop's state (data, parameters on the device) and the loop that advances it."""

    def __init__(self, problem: Problem, device: str = "cpu", loop: type = StepLoop):
        check_device(device)
        x, y, params = cast_problem(problem)
        self.net, self.lr, self.device = problem.spec, problem.lr, device
        self.x, self.y = to_framework(x, device), to_framework(y, device)
        self._params = map_params(lambda a: to_framework(a, device, loop.autograd), params)
        self._loop = loop(self)
        self.block, self.first_calls = self._loop.block, getattr(self._loop, "first_calls", 1)

    def run(self, steps: int) -> None:
        """Advance by exactly ``steps`` SGD updates, then wait for the device."""
        self._params = self._loop(self._params, steps)
        sync(self._params)

    def params(self) -> Params:
        return map_params(to_numpy, self._params)

    def loss(self) -> float:
        return float(loss(self.net, self._params, self.x, self.y))

    def phases(self) -> dict:
        """The step's parts, where the loop is the plain step (``StepLoop.phases``)."""
        return self._loop.phases(self._params) if hasattr(self._loop, "phases") else {}


# ---- helpers ---------------------------------------------------------------------------------

repeat = numpy_backprop.repeat  # NumPy computes synchronously: nothing to wait for
