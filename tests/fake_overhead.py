"""NumPy's step with a planted overhead, for the instruction-count tests only.

Registered where a test names this file in ``BACKPROP_BENCH_FRAMEWORKS``. ``numpy-planted``
is NumPy's step; where ``BACKPROP_BENCH_PLANTED_OP=1`` is set, it also copies its input once
per step: one eager op more, about 2.4% more instructions on the worked example (less than a
time moves between two processes on a shared VM, more than a count ever does). The variant's
name, and so its case ids, are the same either way: two runs compare case by case as a run
before a change and one after it would.
"""

from __future__ import annotations

import os

from implementations.contract import Framework, Variant
from implementations.numpy_backprop import Trainer, check_device, settings, sgd_step

FRAMEWORK = Framework("overhead", label="NumPy with a planted op", packages=("numpy",),
                      order=97, gradients=False, arrays=False, api=False)
VARIANTS = (
    Variant("numpy-planted", "idiomatic", "the NumPy step; and x.copy() once per step where "
            "BACKPROP_BENCH_PLANTED_OP=1", loop="PlantedOp"),
)
PLANTED = "BACKPROP_BENCH_PLANTED_OP"
__all__ = ["Trainer", "check_device", "settings"]


class PlantedOp:
    """numpy's StepLoop, with one extra eager op per step when planted (its result dropped)."""

    autograd, block = False, 1

    def __init__(self, trainer: Trainer):
        self.net, self.x, self.y, self.lr = trainer.net, trainer.x, trainer.y, trainer.lr
        self.planted = os.environ.get(PLANTED) == "1"

    def __call__(self, params, steps: int):
        net, x, y, lr = self.net, self.x, self.y, self.lr
        if not self.planted:
            for _ in range(steps):
                params = sgd_step(net, params, x, y, lr)
            return params
        for _ in range(steps):
            params = sgd_step(net, params, x, y, lr)
            x.copy()  # the planted overhead
        return params
