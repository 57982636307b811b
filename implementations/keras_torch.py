"""Keras 3 on the PyTorch backend (the shared code is ``keras_model``).

The framework sets ``KERAS_BACKEND=torch`` in its own process before Keras is imported. Its
``CustomStep`` is the Keras guide "Writing a training loop from scratch in PyTorch": the
model called on the batch, the loss, ``model.zero_grad()``, ``loss.backward()``, the
gradients read from the trainable weights and ``optimizer.apply`` under ``torch.no_grad()``.
"""

from __future__ import annotations

import torch

from implementations import keras_model
from implementations.contract import SMALL, Framework, Variant
from implementations.keras_model import Trainer, TrainOnBatch, check_device, settings

FRAMEWORK = Framework("keras-torch", label="Keras (PyTorch)", packages=("torch", "keras"),
                      order=61, gradients=False, arrays=False, isolated=True,
                      environment={"KERAS_BACKEND": "torch"}, api_source="keras_model.py",
                      variables=("KERAS_", "TORCH_"))
VARIANTS = (
    Variant("keras-torch", "idiomatic", "Keras 3 on PyTorch: model.compile, then train_on_batch "
            "per step", below="torch", default_run=SMALL),
    Variant("keras-torch-loop", "idiomatic", "Keras 3 on PyTorch, the guide's training loop "
            "from scratch: zero_grad, backward, optimizer.apply", loop="CustomStep",
            below="torch", default_run=SMALL, zero_grad="model.zero_grad()"),
)
__all__ = ["Trainer", "TrainOnBatch", "CustomStep", "check_device", "settings"]

keras_model.check_backend("torch")
torch.backends.cuda.matmul.allow_tf32 = False


def tensors(x, y):
    return torch.from_numpy(x.copy()), torch.from_numpy(y.copy())


def loss_and_grads(trainer: Trainer):
    """(E, dE/dtrainable weights) by backward(); the gradients are cleared afterwards."""
    model = trainer.model
    model.zero_grad()
    E = trainer.scale * trainer.loss_fn(trainer.y, model(trainer.x))  # E = (out / 2) * MSE
    E.backward()
    grads = [v.value.grad.detach().cpu().numpy().copy() for v in model.trainable_weights]
    model.zero_grad()
    return float(E.detach()), grads


keras_model.ON_BACKEND.update(tensors=tensors, grads=loss_and_grads)


class CustomStep:
    """keras-torch-loop: the guide's eager step."""

    block = 1

    def __init__(self, trainer: Trainer):
        self.trainer = trainer

    def phases(self) -> dict:
        t = self.trainer
        model, optimizer, weights = t.model, t.optimizer, t.model.trainable_weights

        def gradient() -> None:
            model.zero_grad()
            (t.scale * t.loss_fn(t.y, model(t.x))).backward()

        def update() -> None:
            with torch.no_grad():
                optimizer.apply([v.value.grad for v in weights], weights)

        gradient()  # so that the update has gradients to apply
        return {"forward": lambda k: repeat(k, lambda: t.scale * t.loss_fn(t.y, model(t.x))),
                "gradient": lambda k: repeat(k, gradient),
                "update": lambda k: repeat(k, update)}

    def __call__(self, steps: int) -> None:
        t = self.trainer
        model, optimizer, weights = t.model, t.optimizer, t.model.trainable_weights
        for _ in range(steps):
            loss = t.scale * t.loss_fn(t.y, model(t.x))  # E = (out / 2) * MSE
            model.zero_grad()
            loss.backward()
            with torch.no_grad():
                optimizer.apply([v.value.grad for v in weights], weights)


def repeat(k: int, part) -> None:
    """Run one part of the step k times (eager on the CPU: done when it returns)."""
    for _ in range(k):
        part()
