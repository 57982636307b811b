"""PaddlePaddle: eager autograd in the dynamic graph, and the same step as a static program.

Tensors that require a gradient say so with ``stop_gradient=False``; ``grads`` asks
``paddle.grad`` for dE/dparams, and ``sgd_step`` is the loop Paddle's tutorials write:
``E.backward()`` fills each parameter's ``.grad``, the weights are updated in place under
``paddle.no_grad()``, and ``clear_gradient()`` empties ``.grad`` for the next step. Paddle
runs eagerly by default (the dynamic graph); ``paddle.jit.to_static`` turns Python into a
static program that Paddle's executor (PIR) runs in one call, its backward included.

The ``Trainer`` is advanced by ``StepLoop`` (eager, idiomatic) or ``StaticLoop`` (the whole
step, ``paddle.grad`` and the update, under ``paddle.jit.to_static``: one program per call,
the learning rate a tensor argument). The idiomatic tier follows: ``nn.Sequential`` of
``nn.Linear`` (whose weight is (in, out), the suite's own layout), ``nn.MSELoss`` scaled to E
and ``paddle.optimizer.SGD`` with ``step`` and ``clear_grad``, eager or with the model passed
to ``paddle.jit.to_static`` as Paddle's dynamic-to-static guide trains it. ``nn.Linear``
takes the default dtype, so a float64 model is built under ``paddle.set_default_dtype``.

Importing Paddle sets ``OMP_NUM_THREADS`` (to 1 where unset, with a warning where it is more)
and ``CUSTOM_DEVICE_ROOT`` in the environment, so it is a framework of its own process
(``isolated``): ``OMP_NUM_THREADS=1``, Paddle's own default, is set before the import and
``settings`` sizes its math library's threads instead. Its C++ logging (glog) is kept to
errors. Its Trainers compute their own gradients (``Trainer.grads``). It runs on the CPU
(the ``paddlepaddle`` wheel, built with MKL).
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager

import numpy as np
import paddle
from paddle import nn

from implementations.contract import SMALL, Framework, Unavailable, Variant
from implementations.problem import (
    NetworkSpec,
    Params,
    Problem,
    cast_problem,
    flatten,
    map_params,
    unflatten,
)

# gradients=False: its gradients reach check through the Trainers' grads(), in its own process
FRAMEWORK = Framework("paddle", label="PaddlePaddle", packages=("paddle",), order=72,
                      gradients=False, isolated=True,
                      environment={"OMP_NUM_THREADS": "1", "GLOG_minloglevel": "2"},
                      variables=("FLAGS_", "GLOG_", "OMP_", "MKL_", "CUSTOM_DEVICE_ROOT"))
VARIANTS = (
    Variant("paddle", "idiomatic", "PaddlePaddle eager: backward(), an in-place no_grad "
            "update, clear_gradient", default_run=SMALL),
    Variant("paddle-static", "optimised", "the whole step (paddle.grad and the update) "
            "under paddle.jit.to_static: one static program per call", loop="StaticLoop",
            baseline="paddle", below="paddle"),
    Variant("paddle-nn", "idiomatic", "nn.Sequential of nn.Linear, nn.MSELoss and "
            "paddle.optimizer.SGD: backward, step, clear_grad", trainer="ModuleTrainer",
            below="paddle", default_run=SMALL, zero_grad="optimizer.clear_grad()"),
    Variant("paddle-nn-static", "idiomatic", "the paddle-nn model passed to "
            "paddle.jit.to_static, the step around it eager, as Paddle's guide trains",
            trainer="ModuleTrainer", loop="StaticModuleStep", baseline="paddle-nn",
            below="paddle-nn", zero_grad="optimizer.clear_grad()"),
)

ACTIVATIONS = {
    "linear": lambda a: a,
    "sigmoid": nn.functional.sigmoid,
    "tanh": paddle.tanh,
    "relu": nn.functional.relu,
}


def to_framework(a: np.ndarray, device: str = "cpu", trainable: bool = False) -> paddle.Tensor:
    """A copy of a NumPy array as a CPU tensor, one that autograd tracks if trainable."""
    check_device(device)
    return paddle.to_tensor(np.array(a), place=paddle.CPUPlace(), stop_gradient=not trainable)


def to_numpy(a: paddle.Tensor) -> np.ndarray:
    """A NumPy copy (the Trainer keeps updating its tensors in place)."""
    return a.numpy().copy()


def check_device(device: str) -> None:
    if device != "cpu":
        raise Unavailable(f"paddle runs on the CPU only here (the paddlepaddle wheel), not on "
                          f"{device!r}")


def sync(params: Params) -> None:
    """Nothing to wait for: Paddle's CPU ops, eager or in a static program, are done when
    they return (``paddle.device.synchronize`` is for GPUs and refuses the CPU)."""


def settings(threads: int) -> dict:
    """Size Paddle's math library threads (OMP_NUM_THREADS is Paddle's default 1) and record
    them, the version, MKL and the flags set in the environment."""
    paddle.base.core.set_num_threads(threads)
    return {"paddle": paddle.__version__, "threads": threads,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "mkl": paddle.version.with_mkl, "device": paddle.device.get_device(),
            "flags": {k: v for k, v in sorted(os.environ.items()) if k.startswith("FLAGS_")}}


def forward(net: NetworkSpec, params: Params, x: paddle.Tensor) -> paddle.Tensor:
    """y_hat = phi(... phi(x @ W1 + b1) ... @ Wn + bn), shape (batch, widths[-1])."""
    h = x
    for (W, b), act in zip(params, net.layer_activations()):
        a = h @ W if b is None else h @ W + b
        h = ACTIVATIONS[act](a)
    return h


def loss(net: NetworkSpec, params: Params, x: paddle.Tensor, y: paddle.Tensor) -> paddle.Tensor:
    """E = 1/2 * mean over the batch of ||y_hat - y||^2. The mean is paddle.mean's: in a
    static program ``t / n`` scales by a float32 1/n, 1.5e-8 off in float64 for n = 5."""
    r = forward(net, params, x) - y
    return 0.5 * paddle.mean(paddle.sum(r * r, axis=1))


def grads(net: NetworkSpec, params: Params, x: paddle.Tensor, y: paddle.Tensor):
    """(E, dE/dparams) by paddle.grad; params must be tensors with stop_gradient=False."""
    E = loss(net, params, x, y)
    g = paddle.grad(E, flatten(params))
    return E.detach(), unflatten(net, g)


def update(params: Params, g: Params, lr) -> Params:
    """params - lr * g, in place under no_grad: the tensors stay those autograd tracks."""
    with paddle.no_grad():
        for p, gp in zip(flatten(params), flatten(g)):
            p.subtract_(lr * gp)
    return params


def sgd_step(net: NetworkSpec, params: Params, x: paddle.Tensor, y: paddle.Tensor,
             lr) -> Params:
    """params - lr * dE/dparams: backward() fills .grad, the update, then clear_gradient."""
    E = loss(net, params, x, y)
    E.backward()
    update(params, map_params(lambda p: p.grad, params), lr)
    for p in flatten(params):
        p.clear_gradient()
    return params


class StepLoop:
    """One eager sgd_step after another, driven from Python (the idiomatic loop)."""

    autograd, block = True, 1  # the parameters are tensors with stop_gradient=False

    def __init__(self, trainer: Trainer):
        self.net, self.x, self.y, self.lr = trainer.net, trainer.x, trainer.y, trainer.lr
        self.grads = grads

    def __call__(self, params: Params, steps: int) -> Params:
        net, x, y, lr = self.net, self.x, self.y, self.lr
        for _ in range(steps):
            params = sgd_step(net, params, x, y, lr)
        return params

    def phases(self, params: Params) -> dict:
        """The step's parts, each f(K) run K times: the loss, the gradients, the update."""
        net, x, y, lr = self.net, self.x, self.y, self.lr
        _, g = grads(net, params, x, y)
        return {"forward": lambda k: repeat(k, lambda: loss(net, params, x, y)),
                "gradient": lambda k: repeat(k, lambda: grads(net, params, x, y)),
                "update": lambda k: repeat(k, lambda: update(params, g, lr))}


class Trainer:
    """The loop's state (data, parameters on the device) and the loop that advances it."""

    def __init__(self, problem: Problem, device: str = "cpu", loop: type = StepLoop):
        check_device(device)
        x, y, params = cast_problem(problem)
        self.net, self.lr, self.device = problem.spec, problem.lr, device
        self.x, self.y = to_framework(x, device), to_framework(y, device)
        self._params = map_params(lambda a: to_framework(a, device, loop.autograd), params)
        self._loop = loop(self)
        self.block, self.first_calls = self._loop.block, getattr(self._loop, "first_calls", 1)

    def run(self, steps: int) -> None:
        """Advance by exactly ``steps`` SGD updates, then wait for the device."""
        self._params = self._loop(self._params, steps)
        sync(self._params)

    def params(self) -> Params:
        return map_params(to_numpy, self._params)

    def loss(self) -> float:
        with paddle.no_grad():
            return float(loss(self.net, self._params, self.x, self.y))

    def grads(self) -> tuple[float, Params]:
        """E and dE/dparams the loop's own way (eager, or in a static program) at the current
        parameters, which are unchanged."""
        E, g = self._loop.grads(self.net, self._params, self.x, self.y)
        return float(E), map_params(to_numpy, g)

    def phases(self) -> dict:
        """The step's parts, where the loop is the plain step (``StepLoop.phases``)."""
        return self._loop.phases(self._params) if hasattr(self._loop, "phases") else {}


# ---- helpers and the other variants ----------------------------------------------------------

# paddle.grad, traced into a static program, reads a tensor's .place itself and warns that a
# static tensor has none: Paddle's own warning about Paddle's own code, in Paddle's process
warnings.filterwarnings("ignore", message="Tensor do not have 'place' interface",
                        category=UserWarning)


def repeat(k: int, part) -> None:
    """Run one part of the step k times (eager CPU ops are done when they return)."""
    for _ in range(k):
        part()


def step_out_of_place(net: NetworkSpec, leaves: list, x, y, lr) -> list:
    """The SGD step on the flat parameter list, as new tensors (a static program returns its
    results; it cannot write into its inputs)."""
    params = unflatten(net, leaves)
    _, g = grads(net, params, x, y)
    return [p - lr * gp for p, gp in zip(leaves, flatten(g))]


class StaticLoop:
    """paddle-static: ``step_out_of_place`` under ``paddle.jit.to_static(full_graph=True)``:
    traced into one static program on its first call, which Paddle's executor runs per call.
    The learning rate is a tensor argument, so the program cannot fold it in; the results
    are the next step's parameters, detached and marked as tensors to differentiate: the
    program's outputs carry a backward node to its inputs, and fed back undetached they
    chained every step into one graph (1 MB more a step, and 10x slower after a thousand,
    which ``run`` flagged as a leak). Its own gradients (``grads``) come from ``grads`` in a
    static program too."""

    autograd, block = True, 1

    def __init__(self, trainer: Trainer):
        net = trainer.net
        self.net, self.x, self.y = net, trainer.x, trainer.y
        self.lr = to_framework(np.asarray(trainer.lr, dtype=net.dtype))

        def step(leaves: list, x, y, lr) -> list:  # to_static reads a def's source, not a lambda's
            return step_out_of_place(net, leaves, x, y, lr)

        def loss_and_grads(leaves: list, x, y) -> list:
            E, g = grads(net, unflatten(net, leaves), x, y)
            return [E, *flatten(g)]

        self.step = paddle.jit.to_static(step, full_graph=True)
        self.static_grads = paddle.jit.to_static(loss_and_grads, full_graph=True)

    def grads(self, net: NetworkSpec, params: Params, x, y):
        E, *g = self.static_grads(flatten(params), x, y)
        return E, unflatten(net, g)

    def __call__(self, params: Params, steps: int) -> Params:
        leaves, x, y, lr, step = flatten(params), self.x, self.y, self.lr, self.step
        for _ in range(steps):
            leaves = [p.detach() for p in step(leaves, x, y, lr)]
            for p in leaves:
                p.stop_gradient = False
        return unflatten(self.net, leaves)


# ---- the idiomatic tier: nn.Layer, a loss layer, paddle.optimizer ------------------------------

MODULES = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}


@contextmanager
def default_dtype(dtype: str):
    """Paddle's default dtype, which nn.Linear makes its parameters in, for a while."""
    before = paddle.get_default_dtype()
    paddle.set_default_dtype(dtype)
    try:
        yield
    finally:
        paddle.set_default_dtype(before)


class ScaledMSELoss(nn.Layer):
    """E = 1/2 * mean over the batch of ||y_hat - y||^2, from nn.MSELoss: MSELoss averages
    over all batch * out elements, so E = (out / 2) * MSELoss."""

    def __init__(self, out_width: int):
        super().__init__()
        self.mse, self.scale = nn.MSELoss(), 0.5 * out_width

    def forward(self, y_hat: paddle.Tensor, y: paddle.Tensor) -> paddle.Tensor:
        return self.scale * self.mse(y_hat, y)


def make_model(net: NetworkSpec, params: Params) -> nn.Sequential:
    """nn.Sequential(nn.Linear, activation, ...) holding the given start point, in the
    network's dtype. nn.Linear keeps its weight as (in, out) and computes x @ weight + bias."""
    layers = []
    with default_dtype(net.dtype):
        for (W, b), act in zip(params, net.layer_activations()):
            linear = nn.Linear(*W.shape, bias_attr=None if b is not None else False)
            linear.weight.set_value(W)
            if b is not None:
                linear.bias.set_value(b)
            layers.append(linear)
            if act in MODULES:
                layers.append(MODULES[act]())
    return nn.Sequential(*layers)


def train_step(model: nn.Layer, loss_fn: nn.Layer, optimizer, x, y) -> paddle.Tensor:
    """One SGD step as Paddle's tutorials write it."""
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    optimizer.clear_grad()
    return loss


class ModuleStep:
    """paddle-nn: ``train_step`` once per step, eagerly."""

    block = 1

    def __init__(self, trainer: ModuleTrainer):
        self.args = (trainer.model, trainer.loss_fn, trainer.optimizer, trainer.x, trainer.y)

    def __call__(self, steps: int) -> None:
        args = self.args
        for _ in range(steps):
            train_step(*args)


class StaticModuleStep(ModuleStep):
    """paddle-nn-static: the model passed to ``paddle.jit.to_static`` (its defaults: the
    bytecode is translated, falling back to Python where it cannot be), the step around it
    eager: the forward and its backward run as static programs."""

    def __init__(self, trainer: ModuleTrainer):
        trainer.model = paddle.jit.to_static(trainer.model)
        super().__init__(trainer)


class ModuleTrainer:
    """The idiomatic state: an nn.Sequential, its loss layer and paddle.optimizer.SGD,
    advanced by a loop (``ModuleStep`` or ``StaticModuleStep``)."""

    def __init__(self, problem: Problem, device: str = "cpu", loop: type = ModuleStep):
        check_device(device)
        x, y, params = cast_problem(problem)
        self.net = problem.spec
        self.model = make_model(self.net, params)
        self.loss_fn = ScaledMSELoss(self.net.widths[-1])
        self.optimizer = paddle.optimizer.SGD(learning_rate=problem.lr,
                                              parameters=self.model.parameters())
        self.x, self.y = to_framework(x, device), to_framework(y, device)
        self._loop = loop(self)
        self.block = self._loop.block

    def run(self, steps: int) -> None:
        self._loop(steps)

    def linears(self) -> list:
        return [m for m in self.model.sublayers() if isinstance(m, nn.Linear)]

    def params(self) -> Params:
        return [(to_numpy(m.weight), None if m.bias is None else to_numpy(m.bias))
                for m in self.linears()]

    def loss(self) -> float:
        with paddle.no_grad():
            return float(self.loss_fn(self.model(self.x), self.y))

    def grads(self) -> tuple[float, Params]:
        """E and dE/dparams by backward() into cleared .grad; the parameters are unchanged."""
        self.model.clear_gradients()
        E = self.loss_fn(self.model(self.x), self.y)
        E.backward()
        g = [(to_numpy(m.weight.grad), None if m.bias is None else to_numpy(m.bias.grad))
             for m in self.linears()]
        self.model.clear_gradients()
        return float(E), g
