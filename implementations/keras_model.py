"""Keras 3: one model, trained step by step on the backend this process chose.

Shared by ``keras_jax`` and ``keras_torch``, which declare a framework each: Keras reads its
backend (``KERAS_BACKEND``) once per process, so each backend runs in a process of its own.
This file declares nothing itself and is imported only by them.

The model is a ``keras.Sequential`` of ``Dense`` layers (a Dense kernel is (in, out), as our
W); the optimizer ``keras.optimizers.SGD`` (no momentum); the loss ``MeanSquaredError``, which
averages over the outputs and then over the batch, so E = (out / 2) * MSE: the factor is
given to ``compile`` as ``loss_weights`` (or scales the loss in the custom step), so the
gradients are dE/dparams and SGD runs with the problem's learning rate. Two ways to train
step by step, both from the Keras documentation:

* ``TrainOnBatch``: ``model.compile(...)`` then ``model.train_on_batch(x, y)`` per step
  ("Runs a single gradient update on a single batch of data");
* ``CustomStep`` (in the backend's file): the guides' "training loop from scratch".

Float64 needs three things in Keras 3.15: x64 in JAX, ``keras.config.set_floatx("float64")``
before the model, the loss and the optimizer are made (each takes floatx then), and a
workaround: Keras's ``result_type`` maps float64 results to float32 on every backend but
TensorFlow (keras-team/keras#23704), so matmuls would silently run in float32 while the
weights still say float64. ``allow_float64`` lets float64 stay float64 (process-wide: the
frameworks of this file run in processes of their own). Keras runs on the CPU here.
"""

from __future__ import annotations

import keras
import numpy as np

from implementations.contract import Unavailable
from implementations.problem import NetworkSpec, Params, Problem, cast_problem

BACKEND = keras.backend.backend()
# what differs between backends, filled in by the backend's file: tensors(x, y) and grads(t)
ON_BACKEND: dict = {}


def check_backend(expected: str) -> None:
    """Raise at import if this process's Keras runs another backend than its framework's."""
    if BACKEND != expected:
        raise RuntimeError(f"keras was imported with the {BACKEND} backend in this process; "
                           f"keras-{expected} needs a process of its own")


def check_device(device: str) -> None:
    if device != "cpu":
        raise Unavailable(f"keras-{BACKEND} runs on the CPU only here, not on {device!r}")


def settings(threads: int) -> dict:
    return {"keras": keras.__version__, "backend": BACKEND,
            "float64": "Keras's float64-to-float32 demotion turned off (keras#23704)"}


def allow_float64() -> None:
    """Let float64 results stay float64 (Keras 3.15 maps them to float32: keras#23704)."""
    from keras.src.backend.common import dtypes  # a framework, heavy: imported where it is used

    dtypes.BIT64_TO_BIT32_DTYPE["float64"] = "float64"


def use_dtype(dtype: str) -> None:
    """Make ``dtype`` Keras's floatx before a model, loss and optimizer are made."""
    if dtype == "float64":
        if BACKEND == "jax":
            import jax  # a framework, heavy: imported where it is used

            jax.config.update("jax_enable_x64", True)
        allow_float64()
    keras.config.set_floatx(dtype)


def make_model(net: NetworkSpec, params: Params) -> keras.Sequential:
    """keras.Sequential(Input, Dense, ...) holding the given start point."""
    layers = [keras.Input((net.widths[0],), dtype=net.dtype)]
    for (W, b), act in zip(params, net.layer_activations()):
        layers.append(keras.layers.Dense(W.shape[1], activation=act, use_bias=b is not None,
                                         dtype=net.dtype))
    model = keras.Sequential(layers)
    for layer, (W, b) in zip(model.layers, params):
        layer.set_weights([W] if b is None else [W, b])
    return model


def make_loss(net: NetworkSpec) -> tuple:
    """(the loss object, the factor that makes it E): MeanSquaredError averages over the
    outputs, then over the batch, so E = (out / 2) * MSE."""
    return keras.losses.MeanSquaredError(dtype=net.dtype), 0.5 * net.widths[-1]


def train_step(model: keras.Model, x, y) -> None:
    """One SGD step as the Keras documentation writes it (after ``model.compile``)."""
    model.train_on_batch(x, y)


class TrainOnBatch:
    """keras-<backend>: ``model.compile`` once, then ``train_step`` (train_on_batch) per step.
    train_on_batch returns Python floats, so every step ends with a sync."""

    block = 1

    def __init__(self, trainer: Trainer):
        trainer.model.compile(optimizer=trainer.optimizer, loss=trainer.loss_fn,
                              loss_weights=trainer.scale)
        self.model, self.x, self.y = trainer.model, trainer.x_host, trainer.y_host

    def __call__(self, steps: int) -> None:
        model, x, y = self.model, self.x, self.y
        for _ in range(steps):
            train_step(model, x, y)


class Trainer:
    """The Keras state: model, loss and optimizer, advanced by a loop (``TrainOnBatch`` or
    the backend's ``CustomStep``); the backend's file supplies ``tensors`` and ``grads``."""

    def __init__(self, problem: Problem, device: str = "cpu", loop: type = TrainOnBatch):
        check_device(device)
        self.net = problem.spec
        use_dtype(self.net.dtype)
        self.x_host, self.y_host, params = cast_problem(problem)
        self.model = make_model(self.net, params)
        self.loss_fn, self.scale = make_loss(self.net)
        self.optimizer = keras.optimizers.SGD(learning_rate=problem.lr)
        self.x, self.y = ON_BACKEND["tensors"](self.x_host, self.y_host)
        self._loop = loop(self)
        self.block = self._loop.block

    def run(self, steps: int) -> None:
        self._loop(steps)  # each loop ends with its results ready

    def params(self) -> Params:
        return [(keras.ops.convert_to_numpy(layer.kernel).copy(),
                 None if layer.bias is None else keras.ops.convert_to_numpy(layer.bias).copy())
                for layer in self.model.layers]

    def loss(self) -> float:
        y_hat = self.model(self.x)
        return float(keras.ops.convert_to_numpy(self.scale * self.loss_fn(self.y, y_hat)))

    def phases(self) -> dict:
        """The step's parts, where the loop can split it (train_on_batch cannot)."""
        return self._loop.phases() if hasattr(self._loop, "phases") else {}

    def grads(self) -> tuple[float, Params]:
        """E and dE/dparams by the backend's own autodiff; the model is unchanged."""
        E, flat = ON_BACKEND["grads"](self)
        it = iter(np.asarray(g) for g in flat)
        return float(E), [(next(it), None if layer.bias is None else next(it))
                          for layer in self.model.layers]
