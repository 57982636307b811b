"""MLX: ``mx.value_and_grad`` of a pure loss, on lazy arrays that ``mx.eval`` computes.

Functions are pure, as in JAX: ``grads`` differentiates ``loss`` with respect to the list of
parameter tensors, and ``sgd_step`` returns new arrays. MLX is *lazy*: an operation only
records a graph, and ``mx.eval`` computes it, so every loop here evaluates the parameters
after each step, as MLX's examples do (without it, K steps would build one graph K steps
deep), and ``sync`` evaluates whatever is left. MLX runs here on the CPU only (the
``mlx[cpu]`` wheel on Linux), on one thread; its matmuls call the reference BLAS the wheel
bundles.

Two float64 traps, both handled here: ``mx.array`` of a float64 NumPy array is float32
unless the dtype is given (``to_framework`` gives it), and on the CPU ``mx.exp`` and so
``mx.sigmoid`` compute float64 at float32 accuracy (relative error ~1e-7 while the dtype says
float64; ml-explore/mlx#3047, open for MLX 0.32), so the sigmoid here is written as
``(1 + tanh(a / 2)) / 2``, whose ``tanh`` MLX computes in full float64. ``mlx.optimizers``
stores a Python learning rate as a float32 array; ``mlx-nn`` hands it a float64 one.

The ``Trainer`` is advanced by a loop strategy: ``StepLoop`` (the functional step, eager,
idiomatic) and ``CompiledLoop`` (the same step through ``mx.compile``, which traces it once
and fuses its elementwise work into kernels that MLX builds with the system's C++ compiler on
the CPU). The idiomatic tier follows: ``nn.Sequential`` of ``nn.Linear``, the loss from
``nn.losses.mse_loss``, ``nn.value_and_grad(model, loss_fn)`` and ``optim.SGD`` with
``optimizer.update(model, grads)`` and ``mx.eval(model.parameters(), optimizer.state)``.
"""

from __future__ import annotations

import os

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np

from implementations import numpy_backprop
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

# peak_n: its reference BLAS takes seconds for a 2048 matmul
FRAMEWORK = Framework("mlx", label="MLX", packages=("mlx",), order=68, peak_n={"cpu": 512},
                      variables=("MLX_",))
VARIANTS = (
    Variant("mlx", "idiomatic", "MLX: mx.value_and_grad of the loss, the step evaluated with "
            "mx.eval"),
    Variant("mlx-compile", "optimised", "the same step through mx.compile: traced once, "
            "elementwise work fused", loop="CompiledLoop", baseline="mlx", below="mlx"),
    Variant("mlx-nn", "idiomatic", "nn.Sequential of nn.Linear, nn.losses.mse_loss, "
            "nn.value_and_grad and optim.SGD, as MLX's examples write it",
            trainer="ModuleTrainer", below="mlx", default_run=SMALL),
)

ACTIVATIONS = {
    "linear": lambda a: a,
    "sigmoid": lambda a: 0.5 * (1.0 + mx.tanh(0.5 * a)),  # mx.sigmoid: float32-accurate
    "tanh": mx.tanh,
    "relu": lambda a: mx.maximum(a, 0.0),
}


def to_framework(a: np.ndarray, device: str = "cpu", trainable: bool = False) -> mx.array:
    """A copy of a NumPy array as an mx.array of the same dtype (MLX arrays carry no
    autograd flag; without the dtype, float64 would become float32)."""
    check_device(device)
    return mx.array(a, dtype=DTYPES[a.dtype.name])


def to_numpy(a: mx.array) -> np.ndarray:
    """A NumPy copy (computing the array if it is still lazy)."""
    return np.array(a, copy=True)


def check_device(device: str) -> None:
    if device != "cpu":
        raise Unavailable(f"mlx runs on the CPU only here (the mlx[cpu] wheel), not on "
                          f"{device!r}")


def sync(params: Params) -> None:
    """Compute every lazy array of params (MLX runs nothing until asked)."""
    mx.eval(flatten(params))


def settings(threads: int) -> dict:
    """Record the device, the BLAS and the variables MLX reads (its CPU stream is one thread;
    it has no thread setting)."""
    return {"mlx": mx.__version__, "device": str(mx.default_device()),
            "threads": "1 (MLX's CPU stream; no setting)", "blas": bundled_blas(),
            "variables": {k: v for k, v in sorted(os.environ.items()) if k.startswith("MLX_")},
            "float64": "sigmoid as (1 + tanh(a/2))/2: mx.exp is float32-accurate in float64 "
                       "(ml-explore/mlx#3047)"}


def forward(net: NetworkSpec, params: Params, x: mx.array) -> mx.array:
    """y_hat = phi(... phi(x @ W1 + b1) ... @ Wn + bn), shape (batch, widths[-1])."""
    h = x
    for (W, b), act in zip(params, net.layer_activations()):
        a = h @ W if b is None else h @ W + b
        h = ACTIVATIONS[act](a)
    return h


def loss(net: NetworkSpec, params: Params, x: mx.array, y: mx.array) -> mx.array:
    """E = 1/2 * mean over the batch of ||y_hat - y||^2."""
    r = forward(net, params, x) - y
    return 0.5 * mx.sum(r * r) / x.shape[0]


def grads(net: NetworkSpec, params: Params, x: mx.array, y: mx.array):
    """(E, dE/dparams) by mx.value_and_grad with respect to the parameter tensors."""
    E, g = mx.value_and_grad(lambda ps: loss(net, unflatten(net, ps), x, y))(flatten(params))
    return E, unflatten(net, g)


update = numpy_backprop.update  # params - lr * g, out of place: the same code on mx.arrays


def sgd_step(net: NetworkSpec, params: Params, x: mx.array, y: mx.array, lr) -> Params:
    """params - lr * dE/dparams (lazy until evaluated)."""
    _, g = grads(net, params, x, y)
    return update(params, g, lr)


class StepLoop:
    """One sgd_step after another, each evaluated with mx.eval (the idiomatic loop)."""

    autograd, block = True, 1  # MLX arrays carry no autograd flag: nothing to ask for

    def __init__(self, trainer: Trainer):
        self.net, self.x, self.y, self.lr = trainer.net, trainer.x, trainer.y, trainer.lr
        self.step = sgd_step

    def __call__(self, params: Params, steps: int) -> Params:
        net, x, y, lr, step = self.net, self.x, self.y, self.lr, self.step
        for _ in range(steps):
            params = step(net, params, x, y, lr)
            mx.eval(flatten(params))
        return params

    def phases(self, params: Params) -> dict:
        """The step's parts, each f(K) run and evaluated K times: loss, gradients, update."""
        net, x, y, lr = self.net, self.x, self.y, self.lr
        _, g = grads(net, params, x, y)
        mx.eval(flatten(g))
        return {"forward": lambda k: repeat(k, lambda: loss(net, params, x, y)),
                "gradient": lambda k: repeat(k, lambda: flatten(grads(net, params, x, y)[1])),
                "update": lambda k: repeat(k, lambda: flatten(update(params, g, lr)))}


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
        return float(loss(self.net, self._params, self.x, self.y).item())

    def phases(self) -> dict:
        """The step's parts, where the loop is the plain step (``StepLoop.phases``)."""
        return self._loop.phases(self._params) if hasattr(self._loop, "phases") else {}


# ---- helpers and the other variants ----------------------------------------------------------

DTYPES = {"float32": mx.float32, "float64": mx.float64}


def repeat(k: int, part) -> None:
    """Run and evaluate one part of the step k times (lazy work would otherwise pile up)."""
    for _ in range(k):
        mx.eval(part())


def bundled_blas() -> list[str]:
    """The BLAS and LAPACK libraries the wheel ships beside MLX (reference netlib on Linux)."""
    import mlx  # a framework, heavy: imported where it is used

    folder = os.path.join(os.path.dirname(next(iter(mlx.__path__))), "mlx_cpu.libs")
    return sorted(n for n in os.listdir(folder) if "blas" in n or "lapack" in n) \
        if os.path.isdir(folder) else []


class CompiledLoop:
    """mlx-compile: ``mx.compile`` of the step over the flat parameter list; the learning
    rate is an array argument, so the compiled graph cannot fold it in. The first call traces
    and builds the fused kernels (with the system's C++ compiler, cached under the temporary
    folder)."""

    autograd, block = True, 1

    def __init__(self, trainer: Trainer):
        net = trainer.net
        self.net, self.x, self.y = net, trainer.x, trainer.y
        self.lr = mx.array(trainer.lr, dtype=DTYPES[net.dtype])
        self.step = mx.compile(
            lambda leaves, x, y, lr: flatten(sgd_step(net, unflatten(net, leaves), x, y, lr)))

    def __call__(self, params: Params, steps: int) -> Params:
        leaves, x, y, lr, step = flatten(params), self.x, self.y, self.lr, self.step
        for _ in range(steps):
            leaves = step(leaves, x, y, lr)
            mx.eval(leaves)
        return unflatten(self.net, leaves)


# ---- the idiomatic tier: mlx.nn, mlx.optimizers ---------------------------------------------

MODULES = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}


def make_model(net: NetworkSpec, params: Params) -> nn.Sequential:
    """nn.Sequential(nn.Linear, activation, ...) holding the given start point. nn.Linear
    keeps its weight as (out, in) and computes x @ weight.T + bias: weight = W.T."""
    layers = []
    for (W, b), act in zip(params, net.layer_activations()):
        linear = nn.Linear(*W.shape, bias=b is not None)
        linear.weight = to_framework(np.ascontiguousarray(W.T))
        if b is not None:
            linear.bias = to_framework(b)
        layers.append(linear)
        if act == "sigmoid":  # nn.Sigmoid is mx.sigmoid: float32-accurate in float64
            layers.append(ACTIVATIONS["sigmoid"])
        elif act in MODULES:
            layers.append(MODULES[act]())
    return nn.Sequential(*layers)


def make_loss(net: NetworkSpec):
    """E = (out / 2) * mse_loss: mse_loss(reduction="mean") averages over batch * out."""
    scale = 0.5 * net.widths[-1]

    def loss_fn(model: nn.Module, x, y):
        return scale * nn.losses.mse_loss(model(x), y, reduction="mean")

    return loss_fn


class ModuleStep:
    """mlx-nn: the examples' step: nn.value_and_grad, optimizer.update, then mx.eval of the
    model's parameters and the optimizer's state."""

    block = 1

    def __init__(self, trainer: ModuleTrainer):
        self.args = (trainer.model, trainer.optimizer, trainer.x, trainer.y)
        self.loss_and_grad = nn.value_and_grad(trainer.model, trainer.loss_fn)

    def __call__(self, steps: int) -> None:
        model, optimizer, x, y = self.args
        loss_and_grad = self.loss_and_grad
        for _ in range(steps):
            _, g = loss_and_grad(model, x, y)
            optimizer.update(model, g)
            mx.eval(model.parameters(), optimizer.state)


class ModuleTrainer:
    """The idiomatic state: an nn.Sequential, its loss and optim.SGD, advanced by ModuleStep."""

    def __init__(self, problem: Problem, device: str = "cpu", loop: type = ModuleStep):
        check_device(device)
        x, y, params = cast_problem(problem)
        self.net = problem.spec
        self.model = make_model(self.net, params)
        self.loss_fn = make_loss(self.net)
        # a Python learning rate would be stored as a float32 array
        self.optimizer = optim.SGD(learning_rate=mx.array(problem.lr,
                                                          dtype=DTYPES[self.net.dtype]))
        self.x, self.y = to_framework(x), to_framework(y)
        self._loop = loop(self)
        self.block = self._loop.block

    def run(self, steps: int) -> None:
        self._loop(steps)
        mx.eval(self.model.parameters())

    def linears(self) -> list:
        return [m for m in self.model.layers if isinstance(m, nn.Linear)]

    def params(self) -> Params:
        return [(to_numpy(m.weight).T.copy(), to_numpy(m.bias) if "bias" in m else None)
                for m in self.linears()]

    def loss(self) -> float:
        return float(self.loss_fn(self.model, self.x, self.y).item())

    def grads(self) -> tuple[float, Params]:
        """E and dE/dparams by nn.value_and_grad; the model is unchanged."""
        E, g = nn.value_and_grad(self.model, self.loss_fn)(self.model, self.x, self.y)
        out = []
        for m, gm in zip(self.model.layers, g["layers"]):
            if isinstance(m, nn.Linear):  # the gradient tree mirrors the model's layers
                out.append((to_numpy(gm["weight"]).T.copy(),
                            to_numpy(gm["bias"]) if "bias" in gm else None))
        return float(E.item()), out
