"""torch-loop with a planted bug, for tests/test_torch_compiled.py only: the compiled loop
is given twice the learning rate (an input of the package, so nothing is recompiled)."""

from __future__ import annotations

from implementations.contract import Framework, Variant
from implementations.torch_compiled import FusedLoop, Trainer, check_device, settings

FRAMEWORK = Framework("buggy-loop", label="A buggy fused loop", packages=("torch",), order=96,
                      gradients=False, arrays=False, api=False)
VARIANTS = (
    Variant("torch-loop-double-lr", "optimised", "torch-loop stepping with 2 x lr",
            loop="DoubleLearningRate"),
)
__all__ = ["Trainer", "check_device", "settings"]


class DoubleLearningRate:
    autograd, block = False, 1

    def __init__(self, trainer):
        self.loop = FusedLoop(trainer)
        self.loop.lr = 2 * self.loop.lr  # BUG: the step takes twice the learning rate

    def __call__(self, params, steps: int):
        return self.loop(params, steps)
