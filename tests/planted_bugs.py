"""The classic backprop bugs, planted one at a time, for tests/test_planted.py only.

Registered where a test names this file in ``BACKPROP_BENCH_FRAMEWORKS``; the bug is the one
named in ``BACKPROP_BENCH_PLANTED`` (one of ``BUGS``), read at import, so that the worker
processes of ``run`` and the isolated processes of ``check`` plant the same one. Three
variants carry it, one per tier:

* ``numpy-planted``: the NumPy chain rule written out, as a learner writes it;
* ``torch-planted``: eager torch autograd, the functional step of ``torch_backprop``;
* ``torch-nn-planted``: the tutorials' nn.Sequential, loss module and torch.optim.SGD.

Each Trainer also computes its own gradients (``grads()``), so that ``check`` judges both
the gradient at the start and the trajectory. Without a bug named, all three are right.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from implementations.contract import Framework, Unavailable, Variant
from implementations.problem import Problem, cast_problem, map_params
from implementations.torch_backprop import ModuleTrainer, ScaledMSELoss

BUGS = ("no-batch-mean", "no-half", "w-not-transposed", "wrong-derivative", "sign",
        "frozen-bias", "wrong-layer", "no-zero-grad", "output-mean", "sigmoid-derivative",
        "relu-derivative")
NUMPY_ONLY = ("sigmoid-derivative", "relu-derivative")  # planted in numpy-planted alone
BUG = os.environ.get("BACKPROP_BENCH_PLANTED", "")

FRAMEWORK = Framework("planted", label="Planted bugs", packages=("torch",), order=97,
                      gradients=False, arrays=False, api=False)
VARIANTS = (
    Variant("numpy-planted", "idiomatic", "a learner's NumPy backprop, with the planted bug",
            trainer="NumpyTrainer"),
    Variant("torch-planted", "idiomatic", "eager torch autograd, with the planted bug",
            trainer="TorchTrainer", zero_grad="p.grad = None after each update"),
    Variant("torch-nn-planted", "idiomatic", "nn.Sequential + torch.optim, with the planted bug",
            trainer="ModuleTrainer", loop="PlantedModuleStep", zero_grad="optimizer.zero_grad()"),
)
__all__ = ["ModuleTrainer"]


def check_device(device: str) -> None:
    """The Trainers check nothing: they run on the CPU."""


def settings(threads: int) -> dict:
    return {}


# ---- NumPy ------------------------------------------------------------------------------------

PHI = {"linear": lambda a: a, "tanh": np.tanh, "sigmoid": lambda a: 1.0 / (1.0 + np.exp(-a)),
       "relu": lambda a: np.maximum(a, 0.0)}


def slope(act: str, a, h):
    """phi'(a) as a learner writes it from h, with the planted derivative bugs."""
    if act == "tanh":
        return (1.0 - h) if BUG == "wrong-derivative" else 1.0 - h ** 2
    if act == "sigmoid":
        return 1.0 - h ** 2 if BUG == "sigmoid-derivative" else h * (1.0 - h)
    if act == "relu":
        return np.ones_like(a) if BUG == "relu-derivative" else (a > 0).astype(a.dtype)
    return 1.0


def numpy_grads(params, x, y, acts):
    """(E, grads) by the chain rule, each layer's activation from ``acts``."""
    batch, out = x.shape[0], y.shape[1]
    hs, pre = [x], []
    for (W, b), act in zip(params, acts):
        pre.append(hs[-1] @ W + (0.0 if b is None else b))
        hs.append(PHI[act](pre[-1]))
    r = hs[-1] - y
    n = batch * out if BUG == "output-mean" else batch
    E = 0.5 * np.sum(r * r) / n if BUG != "no-half" else np.sum(r * r) / n
    dh = r if BUG == "no-batch-mean" else r / n
    dh = 2 * dh if BUG == "no-half" else dh
    g = []
    for i in reversed(range(len(params))):
        W, b = params[i]
        dh = dh * slope(acts[i], pre[i], hs[i + 1])  # dE/da = dE/dh * phi'(a)
        layer = (hs[i].T @ dh, None if b is None else dh.sum(axis=0))
        g.append(layer) if BUG == "wrong-layer" else g.insert(0, layer)
        dh = dh @ W if BUG == "w-not-transposed" else dh @ W.T
    if BUG == "sign":
        g = map_params(lambda t: -t, g)
    return E, g


def hidden_tanh(problem: Problem) -> bool:
    """The planted code knows tanh and linear hidden layers (and a linear output) only."""
    spec = problem.spec
    if spec.activation not in ("tanh", "linear") or spec.output_activation != "linear":
        raise Unavailable("the planted bugs run tanh or linear networks only")
    return spec.activation == "tanh"


class NumpyTrainer:
    def __init__(self, problem: Problem, device: str = "cpu"):
        self.x, self.y, self._params = cast_problem(problem)
        self.lr, self.total = problem.lr, None
        self.acts = problem.spec.layer_activations()

    def run(self, steps: int) -> None:
        for _ in range(steps):
            _, g = numpy_grads(self._params, self.x, self.y, self.acts)
            if BUG == "no-zero-grad":  # the gradients of every step add up
                self.total = g if self.total is None else [
                    (tW + gW, None if tb is None else tb + gb)
                    for (tW, tb), (gW, gb) in zip(self.total, g)]
                g = self.total
            self._params = [(W - self.lr * gW, b if b is None or BUG == "frozen-bias"
                             else b - self.lr * gb) for (W, b), (gW, gb) in zip(self._params, g)]

    def params(self):
        return map_params(np.array, self._params)

    def loss(self) -> float:
        return float(numpy_grads(self._params, self.x, self.y, self.acts)[0])

    def grads(self):
        return numpy_grads(self._params, self.x, self.y, self.acts)


# ---- torch autograd ----------------------------------------------------------------------------

class BadTanh(torch.autograd.Function):
    """tanh whose backward multiplies by 1 - h where 1 - h^2 belongs."""

    @staticmethod
    def forward(ctx, a):
        h = torch.tanh(a)
        ctx.save_for_backward(h)
        return h

    @staticmethod
    def backward(ctx, grad):
        (h,) = ctx.saved_tensors
        return grad * (1.0 - h)


class BadMatmul(torch.autograd.Function):
    """h @ W whose backward carries dE/dh down through W where W^T belongs."""

    @staticmethod
    def forward(ctx, h, W):
        ctx.save_for_backward(h, W)
        return h @ W

    @staticmethod
    def backward(ctx, grad):
        h, W = ctx.saved_tensors
        return grad @ W, h.T @ grad


def torch_loss(params, x, y, tanh: bool = True):
    h = x
    for i, (W, b) in enumerate(params):
        a = BadMatmul.apply(h, W) if BUG == "w-not-transposed" else h @ W
        a = a if b is None else a + b
        if tanh and i < len(params) - 1:
            h = BadTanh.apply(a) if BUG == "wrong-derivative" else torch.tanh(a)
        else:
            h = a
    r = h - y
    n = x.shape[0] * y.shape[1] if BUG == "output-mean" else x.shape[0]
    half = 1.0 if BUG == "no-half" else 0.5
    return half * torch.sum(r * r) / (1 if BUG == "no-batch-mean" else n)


class TorchTrainer:
    def __init__(self, problem: Problem, device: str = "cpu"):
        x, y, params = cast_problem(problem)
        self.x, self.y, self.lr = torch.tensor(x), torch.tensor(y), problem.lr
        self.tanh = hidden_tanh(problem)
        self._params = [(torch.tensor(W, requires_grad=True),
                         None if b is None else torch.tensor(b, requires_grad=True))
                        for W, b in params]

    def leaves(self) -> list:
        return [t for layer in self._params for t in layer if t is not None]

    def gradients(self) -> list:
        """The .grad of every leaf, as the planted step uses them."""
        layers = [[t.grad for t in layer if t is not None] for layer in self._params]
        if BUG == "wrong-layer":  # the layers' gradients in reverse order
            layers = layers[::-1]
        return [-t if BUG == "sign" else t for layer in layers for t in layer]

    def run(self, steps: int) -> None:
        for _ in range(steps):
            torch_loss(self._params, self.x, self.y, self.tanh).backward()
            with torch.no_grad():
                for p, gp in zip(self.leaves(), self.gradients()):
                    if not (BUG == "frozen-bias" and p.ndim == 1):
                        p -= self.lr * gp
            if BUG != "no-zero-grad":
                for p in self.leaves():
                    p.grad = None

    def params(self):
        return [(W.detach().numpy().copy(), None if b is None else b.detach().numpy().copy())
                for W, b in self._params]

    def loss(self) -> float:
        with torch.no_grad():
            return float(torch_loss(self._params, self.x, self.y, self.tanh))

    def grads(self):
        for p in self.leaves():
            p.grad = None
        E = torch_loss(self._params, self.x, self.y, self.tanh)
        E.backward()
        g = [t.detach().numpy().copy() for t in self.gradients()]
        for p in self.leaves():
            p.grad = None
        it = iter(g)
        return float(E), [(next(it), None if b is None else next(it)) for _, b in self._params]


# ---- the idiomatic tier: nn.Sequential, a loss module, torch.optim ------------------------------

class BadTanhModule(nn.Module):
    def forward(self, a):
        return BadTanh.apply(a)


class BadLinear(nn.Linear):
    def forward(self, h):
        out = BadMatmul.apply(h, self.weight.T)
        return out if self.bias is None else out + self.bias


class PlantedModuleStep:
    """torch-nn's step, with the planted bug in the model, the loss or the loop."""

    autograd, block = True, 1

    def __init__(self, trainer: ModuleTrainer):
        self.t = trainer
        plant(trainer)
        if BUG == "sign":
            trainer.optimizer = torch.optim.SGD(trainer.model.parameters(), lr=lr_of(trainer),
                                                maximize=True)
        trainer.grads = lambda: planted_grads(trainer)

    def __call__(self, steps: int) -> None:
        t = self.t
        for _ in range(steps):
            if BUG != "no-zero-grad":
                t.optimizer.zero_grad(set_to_none=True)
            t.loss_fn(t.model(t.x), t.y).backward()
            swap_bias_grads(t)
            t.optimizer.step()


def lr_of(t: ModuleTrainer) -> float:
    return t.optimizer.param_groups[0]["lr"]


def plant(t: ModuleTrainer) -> None:
    """Change the model or the loss as the bug asks, keeping the trained weights."""
    layers = list(t.model)
    if BUG in ("wrong-derivative", "w-not-transposed"):
        for i, m in enumerate(layers):
            if isinstance(m, nn.Tanh) and BUG == "wrong-derivative":
                t.model[i] = BadTanhModule()
            if isinstance(m, nn.Linear) and BUG == "w-not-transposed":
                bad = BadLinear(m.in_features, m.out_features, bias=m.bias is not None,
                                dtype=m.weight.dtype)
                bad.load_state_dict(m.state_dict())
                t.model[i] = bad
        t.optimizer = torch.optim.SGD(t.model.parameters(), lr=lr_of(t))
    if BUG == "frozen-bias":
        for m in t.model:
            if isinstance(m, nn.Linear) and m.bias is not None:
                m.bias.requires_grad_(False)
    if BUG == "output-mean":
        t.loss_fn.scale = 0.5  # 0.5 * MSELoss: the mean over batch * out elements
    if BUG == "no-half":
        t.loss_fn.scale = t.net.widths[-1]  # out * MSELoss: sum over outputs, no 1/2
    if BUG == "no-batch-mean":
        t.loss_fn = SumOverBatch(t.net.widths[-1])


class SumOverBatch(ScaledMSELoss):
    """1/2 * MSELoss(reduction="sum"): the sum over the batch where the mean belongs."""

    def __init__(self, out_width: int):
        super().__init__(out_width)
        self.mse, self.scale = nn.MSELoss(reduction="sum"), 0.5


def swap_bias_grads(t: ModuleTrainer) -> None:
    """wrong-layer: b1 and b2 (both of the hidden width) step with each other's gradient."""
    if BUG != "wrong-layer":
        return
    linears = [m for m in t.model if isinstance(m, nn.Linear)]
    first, second = linears[0].bias, linears[1].bias
    if first is not None and second is not None and first.shape == second.shape:
        first.grad, second.grad = second.grad, first.grad


def planted_grads(t: ModuleTrainer):
    """E and the gradients the planted step would step with, parameters unchanged."""
    t.model.zero_grad(set_to_none=True)
    E = t.loss_fn(t.model(t.x), t.y)
    E.backward()
    swap_bias_grads(t)
    sign = -1.0 if BUG == "sign" else 1.0

    def grad(p):
        return None if p is None or p.grad is None else sign * p.grad.detach().numpy().copy()

    g = []
    for m in t.model:
        if isinstance(m, nn.Linear):
            gw = grad(m.weight)
            g.append((None if gw is None else gw.T.copy(), grad(m.bias)))
    t.model.zero_grad(set_to_none=True)
    return float(E.detach()), g
