"""Flax NNX with Optax: the model, the loss and the train step as the Flax docs write them.

An ``nnx.Sequential`` of ``nnx.Linear`` layers (with or without bias, in the problem's dtype;
an ``nnx.Linear`` kernel is (in, out), as our W) and activation functions; the loss from
``optax.l2_loss``; ``nnx.Optimizer(model, optax.sgd(lr), wrt=nnx.Param)``; and a train step
under ``@nnx.jit`` that takes ``nnx.value_and_grad`` of the loss and calls
``optimizer.update(model, grads)`` (the flax >= 0.11 API).

``jax-flax`` calls that step once per step (the tutorials' loop). ``jax-flax-split`` is the
"functional training loop" of the Flax performance guide: ``nnx.split`` once, ``jax.jit`` of a
step over the pure state that ``nnx.merge``s inside, the state carried from step to step and
put back with ``nnx.update`` at the end. It computes the same step without NNX's Python
graph traversal on every call.

JAX computes in float32 unless x64 is on: a float64 problem switches it on for the process
(as ``jax_backprop`` does), and the matmul precision is pinned to "highest" (no TF32).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from implementations import jax_backprop
from implementations.contract import ALL_DEVICES, SMALL, Framework, Unavailable, Variant
from implementations.problem import NetworkSpec, Params, Problem, cast_problem

FRAMEWORK = Framework("flax", label="Flax NNX", packages=("jax", "flax", "optax"), order=55,
                      gradients=False, arrays=False)
VARIANTS = (
    Variant("jax-flax", "idiomatic", "Flax NNX modules, nnx.Optimizer with optax.sgd, the train "
            "step under nnx.jit", devices=ALL_DEVICES, below="jax", default_run=SMALL),
    Variant("jax-flax-split", "optimised", "the same step as the Flax performance guide's "
            "functional loop: nnx.split once, jax.jit over the state", loop="SplitLoop",
            devices=ALL_DEVICES, below="jax-flax", default_run=SMALL),
)

ACTIVATIONS = {"linear": None, "sigmoid": nnx.sigmoid, "tanh": nnx.tanh, "relu": nnx.relu}
jax.config.update("jax_default_matmul_precision", "highest")  # no TF32 on the GPU


def check_device(device: str) -> None:
    platform = {"cpu": "cpu", "cuda": "gpu"}.get(device)
    try:
        jax.devices(platform)
    except (RuntimeError, ValueError) as exc:
        raise Unavailable(f"flax: no {device} device ({str(exc).splitlines()[0]})") from None


def settings(threads: int) -> dict:
    import flax  # a framework, heavy: imported where it is used

    return {"backend": jax.default_backend(), "flax": flax.__version__,
            "matmul_precision": str(jax_backprop.config_flag("jax_default_matmul_precision"))}


def make_model(net: NetworkSpec, params: Params) -> nnx.Sequential:
    """nnx.Sequential(nnx.Linear, activation, ...) holding the given start point."""
    if net.dtype == "float64" and not jax_backprop.config_flag("jax_enable_x64"):
        jax.config.update("jax_enable_x64", True)
    dtype, rngs, layers = jnp.dtype(net.dtype), nnx.Rngs(0), []
    for (W, b), act in zip(params, net.layer_activations()):
        linear = nnx.Linear(*W.shape, use_bias=b is not None, dtype=dtype, param_dtype=dtype,
                            rngs=rngs)
        linear.kernel[...] = jnp.asarray(W)
        if b is not None:
            linear.bias[...] = jnp.asarray(b)
        layers += [linear] + ([ACTIVATIONS[act]] if ACTIVATIONS[act] else [])
    return nnx.Sequential(*layers)


def loss_fn(model: nnx.Module, x, y):
    """E = 1/2 * mean over the batch of ||y_hat - y||^2: optax.l2_loss is 0.5 * (p - t)^2 per
    element, with no reduction, so summing over the outputs and averaging over the batch is E
    with no factor."""
    return optax.l2_loss(model(x), y).sum(axis=-1).mean()


def make_loss(net: NetworkSpec):
    return loss_fn


@nnx.jit
def train_step(model: nnx.Module, optimizer: nnx.Optimizer, x, y):
    """One SGD step as the Flax docs write it."""
    loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
    optimizer.update(model, grads)
    return loss


class StepLoop:
    """jax-flax: ``train_step`` (nnx.jit) called once per step."""

    block = 1

    def __init__(self, trainer: Trainer):
        self.args = (trainer.model, trainer.optimizer, trainer.x, trainer.y)

    def __call__(self, steps: int) -> None:
        args = self.args
        for _ in range(steps):
            train_step(*args)

    def phases(self) -> dict:
        model, optimizer, x, y = self.args
        forward, gradient = nnx.jit(loss_fn), nnx.jit(nnx.grad(loss_fn))
        update = nnx.jit(lambda optimizer, model, g: optimizer.update(model, g))
        g = gradient(model, x, y)
        return {"forward": lambda k: repeat(k, lambda: forward(model, x, y)),
                "gradient": lambda k: repeat(k, lambda: gradient(model, x, y)),
                "update": lambda k: repeat(k, lambda: update(optimizer, model, g))}


class SplitLoop:
    """jax-flax-split: nnx.split once, a jax.jit step over the pure state, nnx.update back."""

    block = 1

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.graphdef, self.state = nnx.split((trainer.model, trainer.optimizer))
        graphdef = self.graphdef

        @jax.jit
        def step(state, x, y):
            model, optimizer = nnx.merge(graphdef, state)
            loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
            optimizer.update(model, grads)
            return nnx.state((model, optimizer))

        self.step = step

    def __call__(self, steps: int) -> None:
        state, step, t = self.state, self.step, self.trainer
        for _ in range(steps):
            state = step(state, t.x, t.y)
        self.state = state
        nnx.update((t.model, t.optimizer), state)


class Trainer:
    """The Flax state: model and optimizer on the device, advanced by a loop."""

    def __init__(self, problem: Problem, device: str = "cpu", loop: type = StepLoop):
        check_device(device)
        x, y, params = cast_problem(problem)
        self.net = problem.spec
        dev = jax.devices({"cpu": "cpu", "cuda": "gpu"}[device])[0]
        self.model = make_model(self.net, params)
        self.optimizer = nnx.Optimizer(self.model, optax.sgd(problem.lr), wrt=nnx.Param)
        self.x, self.y = jax.device_put(jnp.asarray(x), dev), jax.device_put(jnp.asarray(y), dev)
        # Commit the state to the device once: arrays set with kernel[...] = are not, the
        # first step returns committed ones, and nnx.jit would compile again on call 2.
        both = (self.model, self.optimizer)
        nnx.update(both, jax.device_put(nnx.state(both), dev))
        self._loop = loop(self)
        self.block = self._loop.block

    def run(self, steps: int) -> None:
        self._loop(steps)
        jax.block_until_ready(nnx.state(self.model))

    def linears(self) -> list:
        return [m for m in self.model.layers if isinstance(m, nnx.Linear)]

    def params(self) -> Params:
        return [(np.array(m.kernel[...]), None if m.bias is None else np.array(m.bias[...]))
                for m in self.linears()]

    def loss(self) -> float:
        return float(loss_fn(self.model, self.x, self.y))

    def grads(self) -> tuple[float, Params]:
        """E and dE/dparams by nnx.value_and_grad; the model is unchanged."""
        E, g = nnx.value_and_grad(loss_fn)(self.model, self.x, self.y)
        out = []
        for i, m in enumerate(self.model.layers):
            if isinstance(m, nnx.Linear):  # the gradient State mirrors the model's layers
                gl = g.layers[i]
                out.append((np.array(gl.kernel[...]),
                            None if m.bias is None else np.array(gl.bias[...])))
        return float(E), out

    def phases(self) -> dict:
        return self._loop.phases() if hasattr(self._loop, "phases") else {}


def repeat(k: int, part) -> None:
    """Run one part of the step k times, then wait until its last result is ready."""
    out = None
    for _ in range(k):
        out = part()
    jax.block_until_ready(out)
