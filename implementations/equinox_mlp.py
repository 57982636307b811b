"""Equinox with Optax: the model is a PyTree, the train step a ``filter_jit`` of pure code.

An ``eqx.nn.Sequential`` of ``eqx.nn.Linear`` layers (with or without bias, in the problem's
dtype) and ``eqx.nn.Lambda`` activations. An ``eqx.nn.Linear`` maps one sample and keeps its
weight as (out, in), as torch does, so the loss maps the batch with ``jax.vmap`` and the
weight is our W.T. The train step is the one the Equinox examples write:
``eqx.filter_value_and_grad`` of the loss, ``optax.sgd``'s ``update`` on the model's arrays
(``eqx.filter(model, eqx.is_array)``), ``eqx.apply_updates``, all under ``eqx.filter_jit``,
the model and the optimizer state returned and carried to the next step.

It differs from Flax NNX (``flax_nnx``) in that the model is an immutable PyTree: nothing is
mutated in place, and ``filter_jit`` splits arrays (traced) from everything else (static) on
every call, where ``nnx.jit`` walks a mutable object graph. JAX computes in float32 unless x64
is on: a float64 problem switches it on for the process (as ``jax_backprop`` does), and the
matmul precision is pinned to "highest" (no TF32 on a GPU).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from implementations import jax_backprop
from implementations.contract import ALL_DEVICES, SMALL, Framework, Unavailable, Variant
from implementations.problem import NetworkSpec, Params, Problem, cast_problem

FRAMEWORK = Framework("equinox", label="Equinox", packages=("jax", "equinox", "optax"),
                      order=56, gradients=False, arrays=False)
VARIANTS = (
    Variant("jax-equinox", "idiomatic", "Equinox modules with optax.sgd: "
            "filter_value_and_grad, apply_updates, the step under eqx.filter_jit",
            devices=ALL_DEVICES, below="jax", default_run=SMALL),
)

ACTIVATIONS = {"linear": None, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh, "relu": jax.nn.relu}
jax.config.update("jax_default_matmul_precision", "highest")  # no TF32 on the GPU


def check_device(device: str) -> None:
    jax_device(device)


def settings(threads: int) -> dict:
    return {"backend": jax.default_backend(), "equinox": eqx.__version__,
            "matmul_precision": str(jax_backprop.config_flag("jax_default_matmul_precision"))}


def make_model(net: NetworkSpec, params: Params, device) -> eqx.nn.Sequential:
    """eqx.nn.Sequential(Linear, Lambda(activation), ...) holding the given start point."""
    if net.dtype == "float64" and not jax_backprop.config_flag("jax_enable_x64"):
        jax.config.update("jax_enable_x64", True)
    dtype, keys, layers = jnp.dtype(net.dtype), jax.random.split(jax.random.key(0), net.depth), []
    for (W, b), act, key in zip(params, net.layer_activations(), keys):
        linear = eqx.nn.Linear(*W.shape, use_bias=b is not None, dtype=dtype, key=key)
        linear = eqx.tree_at(lambda m: m.weight, linear, put(W.T, device))
        if b is not None:
            linear = eqx.tree_at(lambda m: m.bias, linear, put(b, device))
        layers += [linear] + ([eqx.nn.Lambda(ACTIVATIONS[act])] if ACTIVATIONS[act] else [])
    return eqx.nn.Sequential(layers)


def loss_fn(model: eqx.Module, x, y):
    """E = 1/2 * mean over the batch of ||y_hat - y||^2; the model maps one sample, vmap the
    batch."""
    r = jax.vmap(model)(x) - y
    return 0.5 * jnp.mean(jnp.sum(r * r, axis=-1))


def make_loss(net: NetworkSpec):
    return loss_fn


@eqx.filter_jit
def train_step(model: eqx.Module, opt_state, optimizer, x, y):
    """One SGD step as the Equinox examples write it: (new model, new state, loss)."""
    loss, grads = eqx.filter_value_and_grad(loss_fn)(model, x, y)
    updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
    model = eqx.apply_updates(model, updates)
    return model, opt_state, loss


class StepLoop:
    """jax-equinox: ``train_step`` (eqx.filter_jit) called once per step, the model and the
    optimizer state carried from step to step."""

    block = 1

    def __init__(self, trainer: Trainer):
        self.trainer = trainer

    def __call__(self, steps: int) -> None:
        t = self.trainer
        model, opt_state, optimizer, x, y = t.model, t.opt_state, t.optimizer, t.x, t.y
        for _ in range(steps):
            model, opt_state, _ = train_step(model, opt_state, optimizer, x, y)
        t.model, t.opt_state = model, opt_state

    def phases(self) -> dict:
        t = self.trainer
        forward = eqx.filter_jit(loss_fn)
        gradient = eqx.filter_jit(eqx.filter_grad(loss_fn))

        @eqx.filter_jit
        def update(model, opt_state, grads):
            updates, opt_state = t.optimizer.update(grads, opt_state,
                                                    eqx.filter(model, eqx.is_array))
            return eqx.apply_updates(model, updates), opt_state

        g = gradient(t.model, t.x, t.y)
        return {"forward": lambda k: repeat(k, lambda: forward(t.model, t.x, t.y)),
                "gradient": lambda k: repeat(k, lambda: gradient(t.model, t.x, t.y)),
                "update": lambda k: repeat(k, lambda: update(t.model, t.opt_state, g))}


class Trainer:
    """The Equinox state: the model PyTree and optax's state, advanced by StepLoop."""

    def __init__(self, problem: Problem, device: str = "cpu", loop: type = StepLoop):
        dev = jax_device(device)
        x, y, params = cast_problem(problem)
        self.net = problem.spec
        self.model = make_model(self.net, params, dev)
        self.optimizer = optax.sgd(problem.lr)
        self.opt_state = self.optimizer.init(eqx.filter(self.model, eqx.is_inexact_array))
        self.x, self.y = put(x, dev), put(y, dev)
        self._loop = loop(self)
        self.block = self._loop.block

    def run(self, steps: int) -> None:
        self._loop(steps)
        jax.block_until_ready(eqx.filter(self.model, eqx.is_array))

    def linears(self, model=None) -> list:
        return [m for m in (model or self.model).layers if isinstance(m, eqx.nn.Linear)]

    def params(self) -> Params:
        return [(np.array(m.weight).T.copy(), None if m.bias is None else np.array(m.bias))
                for m in self.linears()]

    def loss(self) -> float:
        return float(loss_fn(self.model, self.x, self.y))

    def grads(self) -> tuple[float, Params]:
        """E and dE/dparams by eqx.filter_value_and_grad: a PyTree shaped as the model."""
        E, g = eqx.filter_value_and_grad(loss_fn)(self.model, self.x, self.y)
        return float(E), [(np.array(m.weight).T.copy(),
                           None if m.bias is None else np.array(m.bias))
                          for m in self.linears(g)]

    def phases(self) -> dict:
        return self._loop.phases()


def put(a: np.ndarray, device) -> jax.Array:
    return jax.device_put(jnp.asarray(a), device)


def jax_device(device: str):
    """The first JAX device of a kind ("cpu" or "cuda"), or raise Unavailable."""
    platform = {"cpu": "cpu", "cuda": "gpu"}.get(device)
    if platform is None:
        raise Unavailable(f"equinox: unknown device {device!r}")
    try:
        return jax.devices(platform)[0]
    except RuntimeError as exc:
        raise Unavailable(f"equinox: no {device} device ({str(exc).splitlines()[0]})") from None


def repeat(k: int, part) -> None:
    """Run one part of the step k times, then wait until its last result is ready."""
    out = None
    for _ in range(k):
        out = part()
    jax.block_until_ready(out)
