"""Keras 3 on the JAX backend (the shared code is ``keras_model``).

The framework sets ``KERAS_BACKEND=jax`` in its own process before Keras is imported. Its
``CustomStep`` is the Keras guide "Writing a training loop from scratch in JAX": the model's
``stateless_call`` inside ``jax.value_and_grad``, ``optimizer.stateless_apply``, the whole
step under ``jax.jit``, the state carried from step to step and assigned back to the model's
variables at the end of ``run``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from implementations import keras_model
from implementations.contract import SMALL, Framework, Variant
from implementations.keras_model import Trainer, TrainOnBatch, check_device, settings

FRAMEWORK = Framework("keras-jax", label="Keras (JAX)", packages=("jax", "keras"), order=60,
                      gradients=False, arrays=False, isolated=True,
                      environment={"KERAS_BACKEND": "jax"}, api_source="keras_model.py",
                      variables=("KERAS_", "JAX_", "XLA_FLAGS", "XLA_PYTHON_CLIENT_"))
VARIANTS = (
    Variant("keras-jax", "idiomatic", "Keras 3 on JAX: model.compile, then train_on_batch per "
            "step", below="jax", default_run=SMALL),
    Variant("keras-jax-loop", "idiomatic", "Keras 3 on JAX, the guide's training loop from "
            "scratch: stateless_call, value_and_grad, stateless_apply under jax.jit",
            loop="CustomStep", below="jax", default_run=SMALL),
)
__all__ = ["Trainer", "TrainOnBatch", "CustomStep", "check_device", "settings"]

keras_model.check_backend("jax")
jax.config.update("jax_default_matmul_precision", "highest")  # no TF32 on the GPU


def tensors(x, y):
    return jnp.asarray(x), jnp.asarray(y)


def loss_and_grads(trainer: Trainer):
    """(E, dE/dtrainable variables) by jax.grad of the model's stateless call."""
    model, loss_fn, scale, x, y = (trainer.model, trainer.loss_fn, trainer.scale, trainer.x,
                                   trainer.y)
    non_trainable = [v.value for v in model.non_trainable_variables]

    def E(trainable):
        y_hat, _ = model.stateless_call(trainable, non_trainable, x)
        return scale * loss_fn(y, y_hat)  # E = (out / 2) * MSE

    return jax.value_and_grad(E)([v.value for v in model.trainable_variables])


keras_model.ON_BACKEND.update(tensors=tensors, grads=loss_and_grads)


class CustomStep:
    """keras-jax-loop: the guide's jitted stateless step, the state carried in a tuple."""

    block = 1

    def __init__(self, trainer: Trainer):
        model, loss_fn, scale, optimizer = (trainer.model, trainer.loss_fn, trainer.scale,
                                            trainer.optimizer)
        self.trainer = trainer

        def loss_and_updates(trainable, non_trainable, x, y):
            y_hat, non_trainable = model.stateless_call(trainable, non_trainable, x)
            return scale * loss_fn(y, y_hat), non_trainable  # E = (out / 2) * MSE

        grad_fn = jax.value_and_grad(loss_and_updates, has_aux=True)
        self.parts = (jax.jit(loss_and_updates), jax.jit(grad_fn),
                      jax.jit(optimizer.stateless_apply))

        @jax.jit
        def step(state, x, y):
            trainable, non_trainable, optimizer_vars = state
            (_, non_trainable), grads = grad_fn(trainable, non_trainable, x, y)
            trainable, optimizer_vars = optimizer.stateless_apply(optimizer_vars, grads,
                                                                  trainable)
            return trainable, non_trainable, optimizer_vars

        optimizer.build(model.trainable_variables)
        self.step = step
        self.state = ([v.value for v in model.trainable_variables],
                      [v.value for v in model.non_trainable_variables],
                      [v.value for v in optimizer.variables])

    def phases(self) -> dict:
        forward, gradient, apply = self.parts
        (trainable, non_trainable, optimizer_vars), t = self.state, self.trainer
        _, g = gradient(trainable, non_trainable, t.x, t.y)

        def part(fn):
            def run(k: int) -> None:
                out = None
                for _ in range(k):
                    out = fn()
                jax.block_until_ready(out)
            return run

        return {"forward": part(lambda: forward(trainable, non_trainable, t.x, t.y)),
                "gradient": part(lambda: gradient(trainable, non_trainable, t.x, t.y)),
                "update": part(lambda: apply(optimizer_vars, g, trainable))}

    def __call__(self, steps: int) -> None:
        t, state, step = self.trainer, self.state, self.step
        for _ in range(steps):
            state = step(state, t.x, t.y)
        self.state = jax.block_until_ready(state)
        for variables, values in zip((t.model.trainable_variables,
                                      t.model.non_trainable_variables, t.optimizer.variables),
                                     state):
            for v, value in zip(variables, values):
                v.assign(value)
