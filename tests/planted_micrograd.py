"""A bug micrograd's users write, planted for tests/test_planted.py only.

Registered where a test names this file in ``BACKPROP_BENCH_FRAMEWORKS``:

* ``micrograd-nn-no-zero-grad``: micrograd-nn's loop without ``model.zero_grad()``: each
  ``backward()`` adds its gradients to the ones left from the steps before (micrograd's
  ``_backward`` closures accumulate with ``+=``), the mistake the micrograd lecture makes
  and then finds.
"""

from __future__ import annotations

from implementations.contract import FLOAT64_ONLY, Framework, Variant
from implementations.micrograd_scalar import ModuleTrainer, check_device, model_loss, settings

FRAMEWORK = Framework("planted-micrograd", label="Planted micrograd bug",
                      packages=("micrograd",), order=97, gradients=False, arrays=False,
                      api=False)
VARIANTS = (
    Variant("micrograd-nn-no-zero-grad", "idiomatic", "micrograd-nn without zero_grad",
            trainer="ModuleTrainer", loop="NoZeroGrad", dtypes=FLOAT64_ONLY,
            activations=("linear", "relu"), max_width=16, max_layers=4, max_batch=16,
            zero_grad="model.zero_grad()"),
)
__all__ = ["ModuleTrainer", "check_device", "settings"]


class NoZeroGrad:
    """The README's step with its first line left out."""

    block = 1

    def __init__(self, trainer: ModuleTrainer):
        self.t = trainer

    def __call__(self, steps: int) -> None:
        t = self.t
        for _ in range(steps):
            model_loss(t.model, t.x, t.y).backward()  # BUG: no t.model.zero_grad() first
            for p in t.trained:
                p.data -= t.lr * p.grad
