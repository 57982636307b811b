"""Keras 3 on the TensorFlow backend (the shared code is ``keras_model``).

The framework sets ``KERAS_BACKEND=tensorflow`` in its own process before Keras is imported.
Its ``CustomStep`` is the Keras guide "Writing a training loop from scratch in TensorFlow":
the model called on the batch under a ``tf.GradientTape``, the loss, ``tape.gradient`` of
the trainable weights and ``optimizer.apply(grads, model.trainable_weights)``, the step
compiled with ``@tf.function`` as the guide's last section does ("Speeding-up your training
step with tf.function"). Keras on TensorFlow keeps float64 as float64 without the workaround
the other backends need (keras-team/keras#23704); ``keras_model`` applies it anyway, and
``check`` in float64 is what shows the float64 is real. TensorFlow's thread pools are sized
as in ``tf_backprop``, before its first op.
"""

from __future__ import annotations

import tensorflow as tf

from implementations import keras_model, tf_backprop
from implementations.contract import SMALL, Framework, Variant
from implementations.keras_model import Trainer, TrainOnBatch, check_device

FRAMEWORK = Framework("keras-tf", label="Keras (TensorFlow)", packages=("tensorflow", "keras"),
                      order=65, gradients=False, arrays=False, isolated=True,
                      environment={"KERAS_BACKEND": "tensorflow"}, api_source="keras_model.py",
                      variables=("KERAS_", "TF_", "ONEDNN_", "KMP_"))
VARIANTS = (
    Variant("keras-tf", "idiomatic", "Keras 3 on TensorFlow: model.compile, then "
            "train_on_batch per step", below="tf", default_run=SMALL),
    Variant("keras-tf-loop", "idiomatic", "Keras 3 on TensorFlow, the guide's training loop "
            "from scratch: GradientTape, tape.gradient, optimizer.apply under tf.function",
            loop="CustomStep", below="tf", default_run=SMALL),
)
__all__ = ["Trainer", "TrainOnBatch", "CustomStep", "check_device", "settings"]

keras_model.check_backend("tensorflow")


def settings(threads: int) -> dict:
    """Keras's settings and TensorFlow's (thread pools, oneDNN, variables)."""
    return {**keras_model.settings(threads), **tf_backprop.settings(threads)}


def tensors(x, y):
    return tf.constant(x), tf.constant(y)


def loss_and_grads(trainer: Trainer):
    """(E, dE/dtrainable weights) by tape.gradient of the model's call."""
    model = trainer.model
    with tf.GradientTape() as tape:
        E = trainer.scale * trainer.loss_fn(trainer.y, model(trainer.x))  # E = (out / 2) * MSE
    grads = tape.gradient(E, model.trainable_weights)
    return float(E), [g.numpy().copy() for g in grads]


keras_model.ON_BACKEND.update(tensors=tensors, grads=loss_and_grads)


class CustomStep:
    """keras-tf-loop: the guide's step under tf.function, called once per step."""

    block = 1

    def __init__(self, trainer: Trainer):
        model, loss_fn, scale, optimizer = (trainer.model, trainer.loss_fn, trainer.scale,
                                            trainer.optimizer)
        self.trainer = trainer

        @tf.function
        def train_step(x, y):
            with tf.GradientTape() as tape:
                y_hat = model(x, training=True)
                loss = scale * loss_fn(y, y_hat)  # E = (out / 2) * MSE
            grads = tape.gradient(loss, model.trainable_weights)
            optimizer.apply(grads, model.trainable_weights)
            return loss

        optimizer.build(model.trainable_variables)  # its variables exist before tracing
        self.step = train_step

    def __call__(self, steps: int) -> None:
        t, step = self.trainer, self.step
        for _ in range(steps):
            step(t.x, t.y)
