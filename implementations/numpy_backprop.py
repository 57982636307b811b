"""NumPy: the backward pass derived by hand with the chain rule.

There is no autodiff here. ``grads`` (through ``backprop``) runs the forward pass keeping
every pre-activation ``a`` and activation ``h``, then walks the layers backwards; each line
of the backward pass mirrors a line of the forward pass and carries its chain-rule factor as
a comment. ``backprop`` takes the framework's own activation tables, so that the same chain
rule runs on torch tensors for ``torch-manual``. NumPy runs on the CPU
only, eagerly, one operation at a time, so there is no compile step and no device to sync.
"""

from __future__ import annotations

import operator

import numpy as np

from implementations.contract import ALL_DTYPES, Framework, Unavailable, Variant
from implementations.problem import NetworkSpec, Params, Problem, cast_problem, map_params

FRAMEWORK = Framework("numpy", label="NumPy", packages=("numpy",), order=20)
VARIANTS = (
    Variant("numpy", "idiomatic", "NumPy, backward pass written by hand", role="reference",
            sweep_devices=("cpu",), dtypes=ALL_DTYPES),
)

ACTIVATIONS = {
    "linear": lambda a: a,
    "sigmoid": lambda a: 1.0 / (1.0 + np.exp(-a)),
    "tanh": np.tanh,
    "relu": lambda a: np.maximum(a, 0.0),
}
# phi'(a), written with h = phi(a) where that is cheaper; None: phi' = 1, nothing to multiply
DERIVATIVES = {
    "linear": None,
    "sigmoid": lambda a, h: h * (1.0 - h),
    "tanh": lambda a, h: 1.0 - h * h,
    "relu": lambda a, h: (a > 0).astype(a.dtype),
}


def to_framework(a: np.ndarray, device: str = "cpu", trainable: bool = False) -> np.ndarray:
    """A copy of a NumPy array (NumPy has no device and no autograd flag)."""
    check_device(device)
    return np.array(a)


def to_numpy(a: np.ndarray) -> np.ndarray:
    """A copy, so that nobody outside can write into the Trainer's arrays."""
    return np.array(a)


def check_device(device: str) -> None:
    if device != "cpu":
        raise Unavailable(f"numpy runs on the CPU only, not on {device!r}")


def sync(params: Params) -> None:
    """Nothing to wait for: NumPy computes synchronously."""


def settings(threads: int) -> dict:
    """Record the BLAS thread pools (the harness pins them with threadpoolctl)."""
    from threadpoolctl import (
        threadpool_info,  # optional: it reports the BLAS threads where it is installed
    )

    keys = ("internal_api", "version", "num_threads", "architecture")
    return {"blas": [{k: i.get(k) for k in keys} for i in threadpool_info()]}


def forward(net: NetworkSpec, params: Params, x: np.ndarray) -> np.ndarray:
    """y_hat = phi(... phi(x @ W1 + b1) ... @ Wn + bn), shape (batch, widths[-1])."""
    h, mm = x, matmul(x.dtype)
    for (W, b), act in zip(params, net.layer_activations()):
        a = mm(h, W) if b is None else mm(h, W) + b
        h = ACTIVATIONS[act](a)
    return h


def loss(net: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """E = 1/2 * mean over the batch of ||y_hat - y||^2."""
    r = forward(net, params, x) - y
    return 0.5 * total(r.dtype)(r * r, None) / x.shape[0]


def grads(net: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray):
    """(E, dE/dparams), by the chain rule written out layer by layer (``backprop``)."""
    return backprop(net, params, x, y, ACTIVATIONS, DERIVATIVES, np.vdot, matmul(x.dtype),
                    total(x.dtype))


def update(params: Params, g: Params, lr) -> Params:
    """params - lr * g, out of place (faster than out= for tiny arrays)."""
    return [(W - lr * gW, None if b is None else b - lr * gb)
            for (W, b), (gW, gb) in zip(params, g)]


def sgd_step(net: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray, lr) -> Params:
    """params - lr * dE/dparams."""
    _, g = grads(net, params, x, y)
    return update(params, g, lr)


class StepLoop:
    """One sgd_step after another, driven from Python (the idiomatic loop)."""

    autograd, block = False, 1  # NumPy has no autograd to ask for

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
        self.unroll = getattr(self._loop, "unroll", 1)

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


def backprop(net: NetworkSpec, params: Params, x, y, activations: dict, derivatives: dict,
             dot, mm=operator.matmul, total=lambda a, axis: a.sum(axis=axis)) -> tuple:
    """(E, dE/dparams) by the chain rule, for arrays of any framework with ``@``, ``.T`` and
    ``.sum(axis=0)``: ``activations`` and ``derivatives`` are that framework's phi and phi'
    tables, ``dot(r, r)`` its sum of squares, ``mm`` and ``total`` its product and sum
    (NumPy's round a bfloat16 product and sum in float32: ``matmul``, ``total``).
    torch-manual runs it on torch tensors."""
    hs, as_, acts = [x], [], net.layer_activations()
    for (W, b), act in zip(params, acts):
        a = mm(hs[-1], W) if b is None else mm(hs[-1], W) + b  # a_l = h_{l-1} W_l + b_l
        as_.append(a)
        hs.append(activations[act](a))  # h_l = phi(a_l)
    r = hs[-1] - y
    E = 0.5 * dot(r, r) / x.shape[0]
    dh = r / x.shape[0]  # dE/dh_L = (y_hat - y) / batch
    g = [None] * len(params)
    for l in reversed(range(len(params))):
        W, b = params[l]
        dphi = derivatives[acts[l]]
        da = dh if dphi is None else dh * dphi(as_[l], hs[l + 1])  # dE/da_l = dE/dh_l phi'(a_l)
        gW = mm(hs[l].T, da)  # dE/dW_l = h_{l-1}^T dE/da_l
        gb = None if b is None else total(da, 0)  # dE/db_l = sum over batch of dE/da_l
        if l:  # dE/dx is not needed: autograd frameworks skip it too
            dh = mm(da, W.T)  # dE/dh_{l-1} = dE/da_l W_l^T
        g[l] = (gW, gb)
    return E, g


def matmul(dtype: np.dtype):
    """``@``, or for a format below 32 bits ``@`` with its result rounded to the format: a
    bfloat16 product accumulates in float32 and stays there unless rounded."""
    if dtype.itemsize >= 4:
        return operator.matmul
    return lambda a, b: np.matmul(a, b).astype(dtype, copy=False)


def total(dtype: np.dtype):
    """A sum (over ``axis``) accumulated in float32 for a format below 32 bits, which NumPy
    would otherwise accumulate in the format itself (a bfloat16 sum of 4,096 ones is 256)."""
    if dtype.itemsize >= 4:
        return lambda a, axis: a.sum(axis=axis)
    return lambda a, axis: np.asarray(a.sum(axis=axis, dtype=np.float32)).astype(dtype)


def repeat(k: int, part) -> None:
    """Run one part of the step k times (NumPy computes synchronously: nothing to wait for)."""
    for _ in range(k):
        part()
