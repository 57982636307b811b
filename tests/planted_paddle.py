"""Bugs PaddlePaddle's users write, planted for tests/test_planted.py only.

Registered where a test names this file in ``BACKPROP_BENCH_FRAMEWORKS``; a framework of its
own process, as PaddlePaddle is:

* ``paddle-nn-mse``: paddle-nn with ``nn.MSELoss()`` as the loss, as it comes: the mean over
  the batch and the outputs, where E's mean is over the batch only (and its 1/2 missing):
  every gradient is 2/out times E's;
* ``paddle-static-scalar``: paddle-static with the loss divided by the batch as a Python
  number, as the eager loss can be: in a static program ``t / n`` scales by a float32
  ``1/n``, so that a float64 step is 1.5e-8 off for a batch of 5 (right in float32, and in
  the eager step).
"""

from __future__ import annotations

import paddle
from paddle import nn

from implementations import paddle_backprop
from implementations.contract import Framework, Variant
from implementations.paddle_backprop import (
    ModuleStep,
    ModuleTrainer,
    StaticLoop,
    Trainer,
    check_device,
    settings,
)
from implementations.problem import unflatten

FRAMEWORK = Framework("planted-paddle", label="Planted PaddlePaddle bugs", packages=("paddle",),
                      order=97, gradients=False, arrays=False, api=False, isolated=True,
                      environment={"OMP_NUM_THREADS": "1", "GLOG_minloglevel": "2"})
VARIANTS = (
    Variant("paddle-nn-mse", "idiomatic", "paddle-nn with nn.MSELoss as the loss",
            trainer="ModuleTrainer", loop="PlainMSE"),
    Variant("paddle-static-scalar", "optimised", "paddle-static with / batch in its loss",
            loop="ScalarDivision"),
)
__all__ = ["ModuleTrainer", "Trainer", "check_device", "settings"]


class PlainMSE(ModuleStep):
    """paddle-nn's step with nn.MSELoss() where E belongs."""

    def __init__(self, trainer: ModuleTrainer):
        trainer.loss_fn = nn.MSELoss()  # BUG: the mean over batch * out, and no 1/2
        super().__init__(trainer)


def scalar_loss(net, params, x, y):
    r = paddle_backprop.forward(net, params, x) - y
    return 0.5 * paddle.sum(r * r) / x.shape[0]  # BUG in a static program: a float32 1/batch


def scalar_step(net, leaves: list, x, y, lr) -> list:
    params = unflatten(net, leaves)
    g = paddle.grad(scalar_loss(net, params, x, y), leaves)
    return [p - lr * gp for p, gp in zip(leaves, g)]


class ScalarDivision(StaticLoop):
    """paddle-static, its loss dividing by the batch as a Python int (its own gradients are
    paddle-static's: the step is what carries the bug)."""

    def __init__(self, trainer: Trainer):
        super().__init__(trainer)
        net = trainer.net

        def step(leaves: list, x, y, lr) -> list:
            return scalar_step(net, leaves, x, y, lr)

        self.step = paddle.jit.to_static(step, full_graph=True)
