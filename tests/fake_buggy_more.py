"""MLX, Equinox and autograd steps with the bugs users write, for the planted-bug tests only.

Registered where a test names this file in ``BACKPROP_BENCH_FRAMEWORKS``. Each computes
something other than the SGD step on E = 1/2 * mean over the batch of ||y_hat - y||^2:

* ``mlx-nn-element-mean``: mlx-nn with ``0.5 * mse_loss``, the mean over batch × out elements
  (right only when out = 1);
* ``mlx-nn-float32-lr``: mlx-nn with a Python learning rate, which ``optim.SGD`` keeps as a
  float32 array: float64 training with lr rounded to float32 (wrong in float64 only);
* ``jax-equinox-batch-sum``: jax-equinox with the loss summed over the batch;
* ``autograd-no-half``: autograd of ``sum(r * r) / batch``, without the 1/2.
"""

from __future__ import annotations

import autograd.numpy as anp
import equinox as eqx
import jax
import jax.numpy as jnp
import mlx.nn as nn
import mlx.optimizers as optim
from autograd import value_and_grad

from implementations import autograd_backprop, numpy_backprop
from implementations.autograd_backprop import Trainer  # noqa: F401 (autograd's Trainer)
from implementations.contract import Framework, Variant
from implementations.equinox_mlp import Trainer as EquinoxTrainer  # noqa: F401
from implementations.mlx_backprop import ModuleStep, ModuleTrainer  # noqa: F401
from implementations.problem import flatten, unflatten

FRAMEWORK = Framework("buggy-more", label="Buggy MLX, Equinox and autograd code",
                      packages=("mlx", "equinox", "autograd"), order=97, gradients=False,
                      arrays=False, api=False)
VARIANTS = (
    Variant("mlx-nn-element-mean", "idiomatic", "mlx-nn with 0.5 * mse_loss",
            trainer="ModuleTrainer", loop="ElementMean"),
    Variant("mlx-nn-float32-lr", "idiomatic", "mlx-nn with a Python learning rate",
            trainer="ModuleTrainer", loop="Float32LearningRate"),
    Variant("jax-equinox-batch-sum", "idiomatic", "jax-equinox with the loss summed over the "
            "batch", trainer="EquinoxTrainer", loop="EquinoxBatchSum"),
    Variant("autograd-no-half", "idiomatic", "autograd without the 1/2", loop="NoHalf"),
)


def check_device(device: str) -> None:
    """The frameworks' own checks run when the Trainers are made."""


def settings(threads: int) -> dict:
    return {}


class ElementMean:
    block = 1

    def __init__(self, trainer):
        trainer.loss_fn = lambda model, x, y: 0.5 * nn.losses.mse_loss(model(x), y)  # BUG
        self.loop = ModuleStep(trainer)

    def __call__(self, steps):
        self.loop(steps)


class Float32LearningRate:
    block = 1

    def __init__(self, trainer):
        lr = trainer.optimizer.learning_rate.item()
        trainer.optimizer = optim.SGD(learning_rate=lr)  # BUG: kept as a float32 array
        self.loop = ModuleStep(trainer)

    def __call__(self, steps):
        self.loop(steps)


def batch_sum(model, x, y):
    r = jax.vmap(model)(x) - y
    return 0.5 * jnp.sum(r * r)  # BUG: a sum over the batch, not the mean


@eqx.filter_jit
def batch_sum_step(model, opt_state, optimizer, x, y):
    _, grads = eqx.filter_value_and_grad(batch_sum)(model, x, y)
    updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
    return eqx.apply_updates(model, updates), opt_state


class EquinoxBatchSum:
    block = 1

    def __init__(self, trainer):
        self.t = trainer

    def __call__(self, steps):
        t = self.t
        for _ in range(steps):
            t.model, t.opt_state = batch_sum_step(t.model, t.opt_state, t.optimizer, t.x, t.y)


def no_half_grads(net, params, x, y):
    def E(ps):
        r = autograd_backprop.forward(net, unflatten(net, ps), x) - y
        return anp.sum(r * r) / x.shape[0]  # BUG: no 1/2

    value, g = value_and_grad(E)(flatten(params))
    return value, unflatten(net, g)


class NoHalf:
    autograd, block = True, 1

    def __init__(self, trainer):
        self.net, self.x, self.y, self.lr = trainer.net, trainer.x, trainer.y, trainer.lr

    def __call__(self, params, steps):
        for _ in range(steps):
            _, g = no_half_grads(self.net, params, self.x, self.y)
            params = numpy_backprop.update(params, g, self.lr)
        return params

