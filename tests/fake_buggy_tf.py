"""TensorFlow and Keras-on-TensorFlow steps with the bugs users write, for the planted-bug
tests only.

Registered where a test names this file in ``BACKPROP_BENCH_FRAMEWORKS``; a framework of its
own process, with Keras on the TensorFlow backend. Each computes something other than the SGD
step on E = 1/2 * mean over the batch of ||y_hat - y||^2:

* ``tf-batch-sum``: the tf step with the loss summed over the batch (the 1/batch dropped);
* ``tf-function-no-watch``: the tf-function step differentiating a loss on tensors read from
  the variables before the tape started: the tape sees no variable, every gradient is None,
  taken for zero, and the update does nothing;
* ``keras-tf-mse``: keras-tf-loop with MeanSquaredError as the loss, without the out / 2
  factor that makes it E (the mean over the outputs too).
"""

from __future__ import annotations

import tensorflow as tf

from implementations import keras_tf, tf_backprop
from implementations.contract import Framework, Variant
from implementations.keras_model import Trainer as KerasTrainer  # noqa: F401 (a Trainer)
from implementations.tf_backprop import Trainer  # noqa: F401 (the variants' Trainer)

FRAMEWORK = Framework("buggy-tf", label="Buggy TensorFlow code",
                      packages=("tensorflow", "keras"), order=96, gradients=False,
                      arrays=False, api=False, isolated=True,
                      environment={"KERAS_BACKEND": "tensorflow"})
VARIANTS = (
    Variant("tf-batch-sum", "idiomatic", "tf with the loss summed over the batch",
            loop="BatchSum"),
    Variant("tf-function-no-watch", "idiomatic", "tf-function on values read before the tape",
            loop="NoWatch"),
    Variant("keras-tf-mse", "idiomatic", "keras-tf-loop with MSE as the loss",
            trainer="KerasTrainer", loop="KerasMSE"),
)


def check_device(device: str) -> None:
    """The frameworks' own checks run when the Trainers are made."""


def settings(threads: int) -> dict:
    return {}


def batch_sum_loss(net, params, x, y):
    r = tf_backprop.forward(net, params, x) - y
    return 0.5 * tf.reduce_sum(r * r)  # BUG: no / batch


def batch_sum_grads(net, params, x, y):
    with tf.GradientTape() as tape:
        E = batch_sum_loss(net, params, x, y)
    return E, tf_backprop.unflatten(net, tape.gradient(E, tf_backprop.flatten(params)))


class BatchSum:
    autograd, block = True, 1

    def __init__(self, trainer):
        self.loop = tf_backprop.StepLoop(trainer)
        self.loop.step = self.step
        self.grads = batch_sum_grads

    @staticmethod
    def step(net, params, x, y, lr):
        _, g = batch_sum_grads(net, params, x, y)
        tf_backprop.update(params, g, lr)

    def __call__(self, params, steps):
        return self.loop(params, steps)


def no_watch_grads(net, params, x, y):
    values = tf_backprop.map_params(tf.identity, params)  # BUG: read before the tape starts
    with tf.GradientTape() as tape:
        E = tf_backprop.loss(net, values, x, y)
    g = tape.gradient(E, tf_backprop.flatten(params), unconnected_gradients="zero")
    return E, tf_backprop.unflatten(net, g)


class NoWatch:
    autograd, block = True, 1

    def __init__(self, trainer):
        self.loop = tf_backprop.StepLoop(trainer)
        self.grads = tf.function(no_watch_grads)
        self.loop.step = tf.function(self.step)

    @staticmethod
    def step(net, params, x, y, lr):
        _, g = no_watch_grads(net, params, x, y)
        tf_backprop.update(params, g, lr)

    def __call__(self, params, steps):
        return self.loop(params, steps)


class KerasMSE:
    block = 1

    def __init__(self, trainer):
        trainer.scale = 1.0  # BUG: MeanSquaredError averages over the outputs too
        self.loop = keras_tf.CustomStep(trainer)

    def __call__(self, steps):
        self.loop(steps)
