"""JAX: the gradient by ``jax.value_and_grad``, the step compiled by ``jax.jit``.

Functions are pure: ``sgd_step`` returns new parameters. JAX is 32-bit unless x64 is enabled,
so ``to_framework`` enables it as soon as a float64 array is asked for. Dispatch is
asynchronous, on the CPU too, so ``sync`` blocks until the arrays are ready. Float32 matmuls
on the GPU would use TF32 by default; the default matmul precision is pinned to "highest".

Variants: ``Trainer`` is ``jax.jit`` of one step driven from a Python loop (idiomatic);
``EagerTrainer`` calls the same step without ``jit`` (it retraces every step: what you get
without jit); ``ScanTrainer`` fuses any number of steps into one compiled call.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from implementations.problem import NetworkSpec, Params, Problem, cast_problem, map_params
from implementations.registry import Unavailable

ACTIVATIONS = {
    "linear": lambda a: a,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
}
jax.config.update("jax_default_matmul_precision", "highest")  # no TF32 on the GPU


def to_framework(a: np.ndarray, device: str = "cpu", trainable: bool = False) -> jax.Array:
    """A NumPy array as a JAX array on device (JAX arrays are immutable: nothing to flag)."""
    if a.dtype == np.float64 and not config_flag("jax_enable_x64"):
        jax.config.update("jax_enable_x64", True)
    return jax.device_put(jnp.asarray(a, dtype=a.dtype), jax_device(device))


def to_numpy(a: jax.Array) -> np.ndarray:
    return np.asarray(a)


def check_device(device: str) -> None:
    jax_device(device)


def sync(params: Params) -> None:
    """Wait until the device has finished computing these arrays."""
    jax.block_until_ready(params)


def settings(threads: int) -> dict:
    """Record the backend, matmul precision and XLA flags (threads are pinned by affinity)."""
    import os

    return {
        "backend": jax.default_backend(),
        "devices": [d.device_kind for d in jax.devices()],
        "matmul_precision": str(config_flag("jax_default_matmul_precision")),
        "x64": "enabled on first use of float64 (to_framework); float32 cases stay float32",
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "threads": threads,
    }


def forward(net: NetworkSpec, params: Params, x: jax.Array) -> jax.Array:
    """y_hat = phi(... phi(x @ W1 + b1) ... @ Wn + bn), shape (batch, widths[-1])."""
    h = x
    for (W, b), act in zip(params, net.layer_activations()):
        a = h @ W if b is None else h @ W + b
        h = ACTIVATIONS[act](a)
    return h


def loss(net: NetworkSpec, params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
    """E = 1/2 * mean over the batch of ||y_hat - y||^2."""
    r = forward(net, params, x) - y
    return 0.5 * jnp.sum(r * r) / x.shape[0]


def grads(net: NetworkSpec, params: Params, x: jax.Array, y: jax.Array):
    """(E, dE/dparams) by jax.value_and_grad with respect to params."""
    return jax.value_and_grad(loss, argnums=1)(net, params, x, y)


def sgd_step(net: NetworkSpec, params: Params, x: jax.Array, y: jax.Array, lr) -> Params:
    """params - lr * dE/dparams, as new arrays."""
    _, g = grads(net, params, x, y)
    return jax.tree.map(lambda p, gp: p - lr * gp, params, g)


class Trainer:
    """jax: jax.jit of one step, driven from a Python loop (idiomatic)."""

    def __init__(self, problem: Problem, device: str = "cpu"):
        check_device(device)
        x, y, params = cast_problem(problem)
        self.net, self.lr = problem.spec, problem.lr
        self.x, self.y = to_framework(x, device), to_framework(y, device)
        self._params = map_params(lambda a: to_framework(a, device, trainable=True), params)
        self._lr = to_framework(np.asarray(problem.lr, dtype=x.dtype), device)  # an argument
        self._step = jax.jit(sgd_step, static_argnums=0)

    def run(self, steps: int) -> None:
        net, params, x, y, lr = self.net, self._params, self.x, self.y, self._lr
        for _ in range(steps):
            params = self._step(net, params, x, y, lr)
        self._params = params
        sync(params)

    def params(self) -> Params:
        return map_params(to_numpy, self._params)

    def loss(self) -> float:
        return float(loss(self.net, self._params, self.x, self.y))


# ---- helpers and the other variants ----------------------------------------------------------


def config_flag(name: str):
    """A JAX config value, across versions that expose it as an attribute or by read()."""
    try:
        return getattr(jax.config, name)
    except AttributeError:
        return jax.config.read(name)


def jax_device(device: str):
    """The first JAX device of a kind ("cpu" or "cuda"), or raise Unavailable."""
    platform = {"cpu": "cpu", "cuda": "gpu"}.get(device)
    if platform is None:
        raise Unavailable(f"jax: unknown device {device!r}")
    try:
        return jax.devices(platform)[0]
    except RuntimeError as exc:
        raise Unavailable(f"jax: no {device} device ({str(exc).splitlines()[0]})") from None


# Steps per chunk inside the fused loop: unrolling removes the loop's per-iteration cost
# (about 3.5 ns on the CPU), which matters only while a step is tiny.
SMALL_STEP_FLOPS = 1 << 16


def unroll_for(problem: Problem) -> int:
    return 8 if problem.flops_per_step() <= SMALL_STEP_FLOPS else 1


@partial(jax.jit, static_argnums=(0, 5))
def fused_steps(net: NetworkSpec, params: Params, x, y, lr, unroll: int, steps) -> Params:
    """``steps`` SGD steps in one compiled call; ``steps`` is a traced value, so any count
    reuses the same compilation: a loop over chunks of ``unroll`` inlined steps, then the rest.
    """

    def chunk(_, p):
        for _ in range(unroll):
            p = sgd_step(net, p, x, y, lr)
        return p

    params = jax.lax.fori_loop(0, steps // unroll, chunk, params)
    return jax.lax.fori_loop(0, steps % unroll, lambda _, p: sgd_step(net, p, x, y, lr), params)


class EagerTrainer(Trainer):
    """jax-eager: the same step with no jit; jax.grad retraces on every call (idiomatic)."""

    def __init__(self, problem: Problem, device: str = "cpu"):
        super().__init__(problem, device)
        self._step = sgd_step


class ScanTrainer(Trainer):
    """jax-scan: K steps fused inside one jit (optimised)."""

    def __init__(self, problem: Problem, device: str = "cpu"):
        super().__init__(problem, device)
        self.unroll = unroll_for(problem)

    def run(self, steps: int) -> None:
        self._params = fused_steps(
            self.net, self._params, self.x, self.y, self._lr, self.unroll, steps
        )
        sync(self._params)
