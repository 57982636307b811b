"""A fourth framework in one file, for the tests: arrays are Python lists of lists.

It is registered only where a test names this file in ``BACKPROP_BENCH_FRAMEWORKS``; then
``list``, ``check``, ``run`` and ``report`` pick it up with no other change. ``fake-small``
declares limits (activations, a bias, the largest network), which they all read. It implements the
whole contract of ``implementations.contract.FrameworkModule`` in plain Python, the backward
pass written out as in ``numpy_backprop``, for small networks.
"""

from __future__ import annotations

import math

import numpy as np

from implementations.contract import Framework, Unavailable, Variant
from implementations.problem import NetworkSpec, Params, Problem, cast_problem, map_params

FRAMEWORK = Framework("fake", label="Lists", packages=("json",), order=90, arrays=False,
                      api=False)
VARIANTS = (
    Variant("fake", "idiomatic", "Python lists, backward pass written by hand"),
    Variant("fake-twice", "optimised", "the same step, applied two at a time", loop="TwoAtATime",
            baseline="fake"),
    Variant("fake-leaky", "idiomatic", "the same step, keeping 4 KiB alive every step",
            loop="Leaky"),
    # what it runs, declared: every command and test reads it (contract.Variant.why_not)
    Variant("fake-small", "idiomatic", "the same step, declared for small tanh or linear "
            "networks with a bias only", activations=("linear", "tanh"), biases=(True,),
            max_width=4, max_layers=2, max_batch=4),
)

ACTIVATIONS = {
    "linear": lambda a: a,
    "sigmoid": lambda a: 1.0 / (1.0 + math.exp(-a)),
    "tanh": math.tanh,
    "relu": lambda a: max(a, 0.0),
}
DERIVATIVES = {
    "linear": lambda a, h: 1.0,
    "sigmoid": lambda a, h: h * (1.0 - h),
    "tanh": lambda a, h: 1.0 - h * h,
    "relu": lambda a, h: 1.0 if a > 0 else 0.0,
}


def to_framework(a: np.ndarray, device: str = "cpu", trainable: bool = False) -> list:
    """A nested-list copy of a NumPy array."""
    check_device(device)
    return np.asarray(a, dtype=np.float64).tolist()


def to_numpy(a) -> np.ndarray:
    return np.array(a, dtype=np.float64)


def check_device(device: str) -> None:
    if device != "cpu":
        raise Unavailable(f"fake runs on the CPU only, not on {device!r}")


def sync(params: Params) -> None:
    """Nothing to wait for."""


def settings(threads: int) -> dict:
    return {"threads": 1}


def matmul(a: list, b: list) -> list:
    return [[sum(x * y for x, y in zip(row, col)) for col in zip(*b)] for row in a]


def transpose(a: list) -> list:
    return [list(col) for col in zip(*a)]


def forward(net: NetworkSpec, params: Params, x: list) -> list:
    h = x
    for (W, b), act in zip(params, net.layer_activations()):
        a = matmul(h, W)
        h = [[ACTIVATIONS[act](v + (b[j] if b else 0.0)) for j, v in enumerate(row)]
             for row in a]
    return h


def loss(net: NetworkSpec, params: Params, x: list, y: list) -> float:
    out = forward(net, params, x)
    return 0.5 * sum((o - t) ** 2 for ro, rt in zip(out, y) for o, t in zip(ro, rt)) / len(x)


def grads(net: NetworkSpec, params: Params, x: list, y: list):
    hs, as_, acts = [x], [], net.layer_activations()
    for (W, b), act in zip(params, acts):
        a = [[v + (b[j] if b else 0.0) for j, v in enumerate(row)] for row in matmul(hs[-1], W)]
        as_.append(a)
        hs.append([[ACTIVATIONS[act](v) for v in row] for row in a])
    n = len(x)
    dh = [[(o - t) / n for o, t in zip(ro, rt)] for ro, rt in zip(hs[-1], y)]
    g = [None] * len(params)
    for l in reversed(range(len(params))):
        W, b = params[l]
        d = DERIVATIVES[acts[l]]
        da = [[dv * d(av, hv) for dv, av, hv in zip(rd, ra, rh)]
              for rd, ra, rh in zip(dh, as_[l], hs[l + 1])]
        gW = matmul(transpose(hs[l]), da)
        gb = [sum(col) for col in zip(*da)] if b is not None else None
        dh = matmul(da, transpose(W))
        g[l] = (gW, gb)
    return loss(net, params, x, y), g


def step(p: list, gp: list, lr: float) -> list:
    return [[v - lr * gv for v, gv in zip(r, gr)] for r, gr in zip(p, gp)]


def sgd_step(net: NetworkSpec, params: Params, x: list, y: list, lr: float) -> Params:
    _, g = grads(net, params, x, y)
    return [(step(W, gW, lr), None if b is None else step([b], [gb], lr)[0])
            for (W, b), (gW, gb) in zip(params, g)]


class StepLoop:
    autograd, block = False, 1

    def __init__(self, trainer: Trainer):
        self.net, self.x, self.y, self.lr = trainer.net, trainer.x, trainer.y, trainer.lr

    def __call__(self, params: Params, steps: int) -> Params:
        for _ in range(steps):
            params = sgd_step(self.net, params, self.x, self.y, self.lr)
        return params


class TwoAtATime:
    """Two steps per call (block = 2): the timing engine keeps K a multiple of it."""

    autograd, block = False, 2

    def __init__(self, trainer: Trainer):
        self.loop = StepLoop(trainer)

    def __call__(self, params: Params, steps: int) -> Params:
        return self.loop(params, steps)


class Leaky:
    """Right results, but memory that grows with every step (as a graph kept alive would)."""

    autograd, block = False, 1

    def __init__(self, trainer: Trainer):
        self.loop, self.kept = StepLoop(trainer), []

    def __call__(self, params: Params, steps: int) -> Params:
        self.kept += [bytearray(4096) for _ in range(steps)]
        return self.loop(params, steps)


class Trainer:
    def __init__(self, problem: Problem, device: str = "cpu", loop: type = StepLoop):
        check_device(device)
        x, y, params = cast_problem(problem)
        self.net, self.lr, self.device = problem.spec, problem.lr, device
        self.x, self.y = to_framework(x, device), to_framework(y, device)
        self._params = map_params(lambda a: to_framework(a, device, loop.autograd), params)
        self._loop = loop(self)
        self.block, self.first_calls = self._loop.block, getattr(self._loop, "first_calls", 1)

    def run(self, steps: int) -> None:
        self._params = self._loop(self._params, steps)

    def params(self) -> Params:
        dtype = self.net.dtype
        return map_params(lambda a: to_numpy(a).astype(dtype), self._params)

    def loss(self) -> float:
        return loss(self.net, self._params, self.x, self.y)
