"""Pure Python: the worked example exactly as it is written on paper, with float scalars.

The 1-1-1 network (X -> a_h -> a_o), batch 1, float64 only. Every quantity is a named Python
float: a_h, phi(a_h), a_o, phi(a_o), and the gradients dE/dw_ih and dE/dw_ho. This is the
textbook reference that the array frameworks generalise; it has the same names as they do.
"""

from __future__ import annotations

import math

import numpy as np

from implementations.contract import FLOAT64_ONLY, Framework, Unavailable, Variant
from implementations.problem import NetworkSpec, Params, Problem, cast_problem, map_params

FRAMEWORK = Framework("python", label="Python", packages=("math",), order=10, arrays=False,
                      api=False)
VARIANTS = (
    Variant("python", "idiomatic", "the worked example's loop in pure-Python floats",
            dtypes=FLOAT64_ONLY, worked_example_only=True),
)

ACTIVATIONS = {
    "linear": lambda a: a,
    "sigmoid": lambda a: 1.0 / (1.0 + math.exp(-a)),
    "tanh": lambda a: math.tanh(a),  # a function, not a builtin, so numba can compile it
    "relu": lambda a: a if a > 0.0 else 0.0,
}
# phi'(a), written with h = phi(a) where that is cheaper
DERIVATIVES = {
    "linear": lambda a, h: 1.0,
    "sigmoid": lambda a, h: h * (1.0 - h),
    "tanh": lambda a, h: 1.0 - h * h,
    "relu": lambda a, h: 1.0 if a > 0.0 else 0.0,
}


def to_framework(a: np.ndarray, device: str = "cpu", trainable: bool = False) -> float:
    """A one-element array as a Python float."""
    check_device(device)
    return float(np.asarray(a).reshape(-1)[0])


def to_numpy(a: float) -> np.ndarray:
    """A Python float as a one-element array (reshape it to the tensor's shape)."""
    return np.full(1, a)


def check_device(device: str) -> None:
    if device != "cpu":
        raise Unavailable(f"python runs on the CPU only, not on {device!r}")


def sync(params: Params) -> None:
    """Nothing to wait for: Python floats are computed at once."""


def settings(threads: int) -> dict:
    """One thread: the loop is serial."""
    return {"threads": 1}


def forward(net: NetworkSpec, params: Params, x: float) -> float:
    """phi(a_o) with a_o = phi(a_h) * w_ho + b_o and a_h = X * w_ih + b_h."""
    (w_ih, b_h), (w_ho, b_o) = params
    phi_h, phi_o = (ACTIVATIONS[act] for act in net.layer_activations())
    a_h = x * w_ih + (b_h or 0.0)
    a_o = phi_h(a_h) * w_ho + (b_o or 0.0)
    return phi_o(a_o)


def loss(net: NetworkSpec, params: Params, x: float, y: float) -> float:
    """E = 1/2 (phi(a_o) - Y)^2."""
    r = forward(net, params, x) - y
    return 0.5 * r * r


def grads(net: NetworkSpec, params: Params, x: float, y: float):
    """(E, dE/dparams), the worked example's chain rule, one named scalar at a time."""
    (w_ih, b_h), (w_ho, b_o) = params
    act_h, act_o = net.layer_activations()
    a_h = x * w_ih + (b_h or 0.0)
    h = ACTIVATIONS[act_h](a_h)  # phi(a_h)
    a_o = h * w_ho + (b_o or 0.0)
    out = ACTIVATIONS[act_o](a_o)  # phi(a_o)
    E = 0.5 * (out - y) * (out - y)
    d_ao = (out - y) * DERIVATIVES[act_o](a_o, out)  # dE/da_o = (phi(a_o) - Y) phi'(a_o)
    d_who = d_ao * h  # dE/dw_ho = dE/da_o * phi(a_h)
    d_ah = d_ao * w_ho * DERIVATIVES[act_h](a_h, h)  # dE/da_h = dE/da_o * w_ho * phi'(a_h)
    d_wih = d_ah * x  # dE/dw_ih = dE/da_h * X
    d_bh = None if b_h is None else d_ah  # dE/db_h = dE/da_h
    d_bo = None if b_o is None else d_ao  # dE/db_o = dE/da_o
    return E, [(d_wih, d_bh), (d_who, d_bo)]


def sgd_step(net: NetworkSpec, params: Params, x: float, y: float, lr: float) -> Params:
    """params - lr * dE/dparams."""
    _, g = grads(net, params, x, y)
    return [
        (W - lr * gW, None if b is None else b - lr * gb)
        for (W, b), (gW, gb) in zip(params, g)
    ]


def linear_loop(params: Params, x: float, y: float, lr: float, steps: int) -> Params:
    """The worked example's loop inlined (linear, no bias): the same arithmetic as sgd_step."""
    (w_ih, _), (w_ho, _) = params
    for _ in range(steps):
        a_h = x * w_ih
        r = a_h * w_ho - y  # phi(a_o) - Y
        w_ih, w_ho = w_ih - lr * (r * w_ho * x), w_ho - lr * (r * a_h)
    return [(w_ih, None), (w_ho, None)]


class StepLoop:
    """One sgd_step after another; the linear network without bias runs the loop inlined."""

    autograd, block = False, 1

    def __init__(self, trainer: Trainer):
        self.net, self.x, self.y, self.lr = trainer.net, trainer.x, trainer.y, trainer.lr

    def __call__(self, params: Params, steps: int) -> Params:
        net, x, y, lr = self.net, self.x, self.y, self.lr
        if net.layer_activations() == ("linear", "linear") and not net.bias:
            return linear_loop(params, x, y, lr, steps)
        for _ in range(steps):
            params = sgd_step(net, params, x, y, lr)
        return params


class Trainer:
    """The loop's state (X, Y and the weights as floats) and the loop that advances it."""

    def __init__(self, problem: Problem, device: str = "cpu", loop: type = StepLoop):
        check_device(device)
        x, y, params = cast_problem(problem)
        self.net, self.lr, self.device = problem.spec, problem.lr, device
        self.x, self.y = to_framework(x, device), to_framework(y, device)
        self._params = map_params(lambda a: to_framework(a, device, loop.autograd), params)
        self._loop = loop(self)
        self.block, self.first_calls = self._loop.block, getattr(self._loop, "first_calls", 1)

    def run(self, steps: int) -> None:
        """Advance by exactly ``steps`` SGD updates (Python floats: nothing to wait for)."""
        self._params = self._loop(self._params, steps)

    def params(self) -> Params:
        return [(to_numpy(W).reshape(1, 1), None if b is None else to_numpy(b))
                for W, b in self._params]

    def loss(self) -> float:
        return float(loss(self.net, self._params, self.x, self.y))
