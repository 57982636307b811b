"""Idiomatic variants with the bugs users write, for the planted-bug tests only.

Registered where a test names this file in ``BACKPROP_BENCH_FRAMEWORKS``. Each computes
something other than the SGD step on E = 1/2 * mean over the batch of ||y_hat - y||^2:

* ``torch-nn-no-zero-grad``: the tutorials' step without ``optimizer.zero_grad()``, so the
  gradients of every step pile up in ``.grad``;
* ``torch-nn-element-mean``: ``0.5 * nn.MSELoss()``, the mean over batch × out elements
  (right only when out = 1);
* ``jax-flax-element-mean``: ``optax.l2_loss(...).mean()``, the mean over all elements.
"""

from __future__ import annotations

import optax
from flax import nnx

from implementations.contract import Framework, Variant
from implementations.flax_nnx import Trainer  # noqa: F401 (the variants' Trainer)
from implementations.torch_backprop import ModuleTrainer  # noqa: F401 (the variants' Trainer)

FRAMEWORK = Framework("buggy", label="Buggy idiomatic code", packages=("torch", "flax"),
                      order=95, gradients=False, arrays=False, api=False)
VARIANTS = (
    Variant("torch-nn-no-zero-grad", "idiomatic", "torch-nn without zero_grad",
            trainer="ModuleTrainer", loop="NoZeroGrad"),
    Variant("torch-nn-element-mean", "idiomatic", "torch-nn with 0.5 * MSELoss",
            trainer="ModuleTrainer", loop="ElementMean"),
    Variant("jax-flax-element-mean", "idiomatic", "jax-flax with l2_loss(...).mean()",
            loop="FlaxElementMean"),
)


def check_device(device: str) -> None:
    """The frameworks' own checks run when the Trainers are made."""


def settings(threads: int) -> dict:
    return {}


class NoZeroGrad:
    autograd, block = True, 1

    def __init__(self, trainer):
        self.t = trainer

    def __call__(self, steps: int) -> None:
        t = self.t
        for _ in range(steps):
            t.loss_fn(t.model(t.x), t.y).backward()  # BUG: no optimizer.zero_grad()
            t.optimizer.step()


class ElementMean(NoZeroGrad):
    def __init__(self, trainer):
        super().__init__(trainer)
        trainer.loss_fn.scale = 0.5  # BUG: 0.5 * MSELoss averages over batch * out elements

    def __call__(self, steps: int) -> None:
        t = self.t
        for _ in range(steps):
            t.optimizer.zero_grad(set_to_none=True)
            t.loss_fn(t.model(t.x), t.y).backward()
            t.optimizer.step()


def element_mean(model, x, y):
    return optax.l2_loss(model(x), y).mean()  # BUG: the mean over batch * out elements


@nnx.jit
def element_mean_step(model, optimizer, x, y):
    loss, grads = nnx.value_and_grad(element_mean)(model, x, y)
    optimizer.update(model, grads)
    return loss


class FlaxElementMean:
    block = 1

    def __init__(self, trainer):
        self.args = (trainer.model, trainer.optimizer, trainer.x, trainer.y)

    def __call__(self, steps: int) -> None:
        for _ in range(steps):
            element_mean_step(*self.args)
