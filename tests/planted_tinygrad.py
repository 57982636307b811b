"""A bug tinygrad's users write, planted for tests/test_planted.py only.

Registered where a test names this file in ``BACKPROP_BENCH_FRAMEWORKS``; a framework of its
own process, as tinygrad is:

* ``tinygrad-nn-float32-lr``: tinygrad-nn with ``nn.optim.SGD`` as it comes, which keeps the
  learning rate as a float32 tensor: a float64 network then steps by float32's 0.1
  (0.100000001490116...), 1.5e-8 off in every update; right in float32, where only the
  float64 networks of the check can see it.
"""

from __future__ import annotations

from tinygrad import nn

from implementations.contract import Framework, Variant
from implementations.tinygrad_backprop import ModuleStep, ModuleTrainer, check_device, settings

FRAMEWORK = Framework("planted-tinygrad", label="Planted tinygrad bug", packages=("tinygrad",),
                      order=97, gradients=False, arrays=False, api=False, isolated=True)
VARIANTS = (
    Variant("tinygrad-nn-float32-lr", "idiomatic", "tinygrad-nn with SGD's float32 lr",
            trainer="ModuleTrainer", loop="Float32Lr"),
)
__all__ = ["ModuleTrainer", "check_device", "settings"]


class Float32Lr(ModuleStep):
    """tinygrad-nn's step with the optimizer as nn.optim.SGD makes it."""

    def __init__(self, trainer: ModuleTrainer):
        trainer.optimizer = nn.optim.SGD(nn.state.get_parameters(trainer.model),
                                         lr=trainer.optimizer.lr.item())  # BUG: float32 lr
        super().__init__(trainer)
