"""JAX: the gradient by ``jax.value_and_grad``, the step compiled by ``jax.jit``.

Functions are pure: ``sgd_step`` returns new parameters. JAX is 32-bit unless x64 is enabled,
so ``to_framework`` enables it (process-wide) as soon as a float64 array is asked for; float32
arrays stay float32. Dispatch is asynchronous, on the CPU too, so ``sync`` blocks until the
arrays are ready. Float32 matmuls on the GPU would use TF32 by default; importing this module
pins the default matmul precision to "highest" for the whole process. In a process that
counts instructions on one thread (``BACKPROP_BENCH_COUNTING=1``,
``harness.measure.callgrind``), CPU computations run inline on the calling thread: handed to
XLA's worker thread, the count of a 16-16-16 block moved by 1-2% with that thread's
spin-waits.

The ``Trainer`` is advanced by a loop strategy: ``StepLoop`` (``jax.jit`` of one step driven
from a Python loop, idiomatic), and after it ``EagerLoop`` (the same step without ``jit``: it
retraces every step, what you get without jit) and ``FusedLoop`` (any number of steps fused
into one compiled call).
"""

from __future__ import annotations

import os
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from implementations.contract import (
    ALL_DEVICES,
    WORKED_EXAMPLE,
    Framework,
    Unavailable,
    Variant,
)
from implementations.problem import NetworkSpec, Params, Problem, cast_problem, map_params

FRAMEWORK = Framework("jax", label="JAX", packages=("jax", "jaxlib"), order=50,
                      variables=("JAX_", "XLA_FLAGS", "XLA_PYTHON_CLIENT_"))
VARIANTS = (
    Variant("jax-eager", "idiomatic",
            "jax.grad with no jit: retraces every step (what you get without jit)",
            loop="EagerLoop", devices=ALL_DEVICES, default_run=WORKED_EXAMPLE),
    Variant("jax", "idiomatic", "jax.jit of one step, driven from a Python loop",
            devices=ALL_DEVICES, baseline="jax-eager", sweep_devices=ALL_DEVICES),
    Variant("jax-fori", "optimised", "K steps fused in one jit (fori_loop over unrolled chunks)",
            loop="FusedLoop", devices=ALL_DEVICES, baseline="jax-eager",
            sweep_devices=ALL_DEVICES),
)

ACTIVATIONS = {
    "linear": lambda a: a,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
}
jax.config.update("jax_default_matmul_precision", "highest")  # no TF32 on the GPU
if os.environ.get("BACKPROP_BENCH_COUNTING") == "1":  # instructions counted on one thread
    jax.config.update("jax_cpu_enable_async_dispatch", False)  # run inline, no handoff


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
    """Record the backend, matmul precision, XLA flags and the persistent compilation cache
    (threads are pinned by affinity)."""
    return {
        "backend": jax.default_backend(),
        "devices": [d.device_kind for d in jax.devices()],
        "matmul_precision": str(config_flag("jax_default_matmul_precision")),
        "x64": "enabled on first use of float64 (to_framework); float32 cases stay float32",
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "threads": threads,
        "cpu_async_dispatch": bool(config_flag("jax_cpu_enable_async_dispatch")),
        "compilation_cache": compilation_cache_state(),
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


def update(params: Params, g: Params, lr) -> Params:
    """params - lr * g, as new arrays."""
    return jax.tree.map(lambda p, gp: p - lr * gp, params, g)


def sgd_step(net: NetworkSpec, params: Params, x: jax.Array, y: jax.Array, lr) -> Params:
    """params - lr * dE/dparams."""
    _, g = grads(net, params, x, y)
    return update(params, g, lr)


class StepLoop:
    """jax.jit of one sgd_step, called once per step from Python (the idiomatic loop)."""

    autograd, block = True, 1  # JAX arrays carry no autograd flag: nothing to ask for

    def __init__(self, trainer: Trainer):
        self.net, self.x, self.y = trainer.net, trainer.x, trainer.y
        self.lr = to_framework(np.asarray(trainer.lr, dtype=trainer.net.dtype), trainer.device)
        self.step = jax.jit(sgd_step, static_argnums=0)  # lr is an argument, never folded in

    def __call__(self, params: Params, steps: int) -> Params:
        net, x, y, lr = self.net, self.x, self.y, self.lr
        for _ in range(steps):
            params = self.step(net, params, x, y, lr)
        return params

    def phases(self, params: Params) -> dict:
        """The step's parts, each jitted, each f(K) run K times: loss, gradients, update."""
        net, x, y, lr = self.net, self.x, self.y, self.lr
        part_loss = jax.jit(loss, static_argnums=0)
        part_grads = jax.jit(grads, static_argnums=0)
        part_update = jax.jit(update)
        _, g = part_grads(net, params, x, y)
        return {"forward": lambda k: repeat(k, lambda: part_loss(net, params, x, y)),
                "gradient": lambda k: repeat(k, lambda: part_grads(net, params, x, y)),
                "update": lambda k: repeat(k, lambda: part_update(params, g, lr))}


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


# ---- helpers and the other variants ----------------------------------------------------------


def repeat(k: int, part) -> None:
    """Run one part of the step k times, then wait until its last result is ready."""
    out = None
    for _ in range(k):
        out = part()
    jax.block_until_ready(out)


def device_memory(device: str) -> dict | None:
    """Bytes in use on a device and the allocator's lifetime peak (None on the CPU, where
    JAX keeps no statistics)."""
    stats = jax_device(device).memory_stats()
    if not stats or "bytes_in_use" not in stats:
        return None
    return {"in_use": stats["bytes_in_use"], "peak": stats.get("peak_bytes_in_use")}


def reset_device_memory_peak(device: str) -> bool:
    """JAX cannot reset its peak: a run's own peak is known only when it raises it."""
    return False


def config_flag(name: str):
    """A JAX config value, across versions that expose it as an attribute or by read()."""
    try:
        return getattr(jax.config, name)
    except AttributeError:
        return jax.config.read(name)


def compilation_cache_state() -> dict:
    """JAX's persistent compilation cache in this process: on or off, its folder, and whether
    it already held compiled programs (a warm cache makes first calls cheaper)."""
    path = config_flag("jax_compilation_cache_dir")
    enabled = bool(path) and bool(config_flag("jax_enable_compilation_cache"))
    try:
        warm = (os.path.isdir(path) and any(os.scandir(path))) if path else None
    except OSError:
        warm = False
    return {"enabled": enabled, "dir": path, "warm_at_start": warm}


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


def unroll_for(net: NetworkSpec, batch: int) -> int:
    weights = sum(a * b for a, b in zip(net.widths, net.widths[1:]))
    return 8 if 6 * batch * weights <= SMALL_STEP_FLOPS else 1


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


class EagerLoop:
    """jax-eager: StepLoop with the step not jitted; jax.grad retraces on every call."""

    autograd, block = True, 1

    def __init__(self, trainer: Trainer):
        self.loop = StepLoop(trainer)
        self.loop.step = sgd_step

    def __call__(self, params: Params, steps: int) -> Params:
        return self.loop(params, steps)


class FusedLoop:
    """jax-fori: any number of steps fused inside one jit call (``fused_steps``)."""

    autograd, block = True, 1

    def __init__(self, trainer: Trainer):
        self.net, self.x, self.y = trainer.net, trainer.x, trainer.y
        self.lr = to_framework(np.asarray(trainer.lr, dtype=trainer.net.dtype), trainer.device)
        self.unroll = unroll_for(trainer.net, trainer.x.shape[0])

    def __call__(self, params: Params, steps: int) -> Params:
        return fused_steps(self.net, params, self.x, self.y, self.lr, self.unroll, steps)
