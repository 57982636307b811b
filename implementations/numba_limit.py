"""numba: the 1-1-1 update loop compiled to machine code, the physical limit of the serial chain.

Each SGD step of the worked example depends on the previous one, so its time per step is
the latency of the dependency chain (about ten floating-point operations): a compiled scalar
loop is as fast as the hardware allows, and other compiled loops (JAX's fused scan, a C loop)
can only tie with it, within noise. X, Y, the learning rate and the weights are passed as arguments
so that nothing is constant-folded (numba freezes module globals, which would make it faster
than honest). One kernel is compiled per (activation, output activation, bias) combination.
"""

from __future__ import annotations

from functools import cache

import numba
import numpy as np

from implementations import python_scalar
from implementations.contract import FLOAT64_ONLY, Framework, Unavailable, Variant
from implementations.problem import Params, Problem, cast_problem, map_params

FRAMEWORK = Framework("numba", label="numba", packages=("numba",), order=30, gradients=False,
                      arrays=False, api=False, variables=("NUMBA_",))
VARIANTS = (
    Variant("limit", "optimised",
            "numba @njit loop, inputs as arguments: the physical limit of the serial chain",
            dtypes=FLOAT64_ONLY, worked_example_only=True, baseline="python", role="limit"),
)

ACTIVATIONS = python_scalar.ACTIVATIONS  # the same scalar formulas, compiled by numba.njit
DERIVATIVES = python_scalar.DERIVATIVES


def check_device(device: str) -> None:
    if device != "cpu":
        raise Unavailable(f"limit (numba) runs on the CPU only, not on {device!r}")


def settings(threads: int) -> dict:
    """One thread: the loop is serial."""
    return {"threads": 1, "numba": numba.__version__}


@cache
def kernel(act_h: str, act_o: str, bias: bool):
    """The compiled loop for one activation pair. ``bias`` is a compile-time constant (numba
    freezes closure variables), so a network without bias has no bias add on its chain."""
    phi_h, phi_o = numba.njit(ACTIVATIONS[act_h]), numba.njit(ACTIVATIONS[act_o])
    dphi_h, dphi_o = numba.njit(DERIVATIVES[act_h]), numba.njit(DERIVATIVES[act_o])

    @numba.njit(fastmath=False)
    def loop(w_ih, b_h, w_ho, b_o, x, y, lr, steps):
        for _ in range(steps):
            a_h = x * w_ih + b_h if bias else x * w_ih
            h = phi_h(a_h)
            a_o = h * w_ho + b_o if bias else h * w_ho
            out = phi_o(a_o)
            d_ao = (out - y) * dphi_o(a_o, out)  # dE/da_o
            d_ah = d_ao * w_ho * dphi_h(a_h, h)  # dE/da_h
            w_ih, w_ho = w_ih - lr * (d_ah * x), w_ho - lr * (d_ao * h)
            if bias:
                b_h, b_o = b_h - lr * d_ah, b_o - lr * d_ao
        return w_ih, b_h, w_ho, b_o

    return loop


class Trainer:
    """limit: numba @njit loop over the 1-1-1 chain (optimised); float64, batch 1."""

    def __init__(self, problem: Problem, device: str = "cpu"):
        check_device(device)
        x, y, params = cast_problem(problem)
        self.net, self.lr = problem.spec, problem.lr
        self.x, self.y = float(x[0, 0]), float(y[0, 0])
        (w_ih, b_h), (w_ho, b_o) = map_params(lambda a: float(a.reshape(-1)[0]), params)
        self._state = (w_ih, b_h or 0.0, w_ho, b_o or 0.0)
        self._loop = kernel(*self.net.layer_activations(), self.net.bias)

    def run(self, steps: int) -> None:
        self._state = self._loop(*self._state, self.x, self.y, self.lr, steps)

    def params(self) -> Params:
        w_ih, b_h, w_ho, b_o = self._state
        bias = self.net.bias
        return [
            (np.full((1, 1), w_ih), np.full(1, b_h) if bias else None),
            (np.full((1, 1), w_ho), np.full(1, b_o) if bias else None),
        ]

    def loss(self) -> float:
        w_ih, b_h, w_ho, b_o = self._state
        params = [(w_ih, b_h if self.net.bias else None), (w_ho, b_o if self.net.bias else None)]
        return python_scalar.loss(self.net, params, self.x, self.y)
