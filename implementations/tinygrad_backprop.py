"""tinygrad: lazy tensors that a scheduler turns into kernels, compiled by clang, every step.

An operation on a ``Tensor`` only builds a graph of UOps; ``realize`` schedules that graph
into kernels, renders each as C, compiles it (with ``clang``, cached on disk by its source)
and runs it. ``grads`` asks ``E.gradient(*params)`` for dE/dparams, the graph differentiated
symbolically; ``sgd_step`` is the loop its users write: ``E.backward()`` fills ``.grad``,
the weights are updated in place with ``assign``, and the step is realized (without it, K
steps would build one graph K steps deep). ``backward()`` fills the ``.grad`` of every float
tensor in the graph, the data's too, and adds to a ``.grad`` already there, so every
``.grad`` (the data's included) is cleared after each step: kept, each step's gradient graph
would hang off the last one's and grow. Eager, every step is scheduled anew from Python,
which is where its time goes (results/NOTES-frameworks.md); ``TinyJit`` captures the kernels
of one call and replays them.

The ``Trainer`` is advanced by ``StepLoop`` (eager, idiomatic) or ``JitLoop`` (the step under
``TinyJit``: the learning rate a tensor argument, the weights updated in place so that the
replayed kernels keep writing into the same buffers). The idiomatic tier follows:
``tinygrad.nn.Linear`` layers chained by ``Tensor.sequential`` in a model class, as
tinygrad's examples write them, ``nn.optim.SGD`` with ``zero_grad``, ``backward`` and ``step``
under ``Context(TRAINING=1)``, eager or under ``TinyJit`` as its examples train.
``nn.optim.SGD`` stores the learning rate as a float32 tensor (at least the default float),
so that a float64 network would step by float32's 0.1: it is given one in the parameters'
dtype. Every tensor is on the ``CPU`` device, whatever ``DEV`` says.

Importing tinygrad raises the process's recursion limit to 10,000, and choosing a device sets
``DEV`` in the environment: it is a framework of its own process (``isolated``), whose
Trainers compute their own gradients (``Trainer.grads``). Its ``CPU`` device needs a C
compiler at run time, ``clang`` (or ``CC``): without one the variants are unavailable, with
the command that installs it. Its ``PYTHON`` device, which emulates the kernels in Python,
runs without a compiler, at the ``CPU`` device's cost for a 1-1-1 step (the scheduling is the
step) and about 330× it for 16-16-16 at batch 64 (8 s a step); it is not used here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.metadata import version

import numpy as np
from tinygrad import Context, Device, Tensor, TinyJit, dtypes, nn
from tinygrad.helpers import BEAM, CACHEDB, JIT, NUM_CPU_THREADS

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
FRAMEWORK = Framework("tinygrad", label="tinygrad", packages=("tinygrad",), order=70,
                      gradients=False, isolated=True, peak_n={"cpu": 512},
                      variables=("DEV", "CC", "JIT", "BEAM", "DEBUG", "NOOPT", "CACHELEVEL",
                                 "CACHEDB", "NUM_CPU_THREADS", "CPU_"))
VARIANTS = (
    Variant("tinygrad", "idiomatic", "tinygrad eager: Tensor ops, E.backward(), the update "
            "by assign, realized every step", default_run=SMALL),
    Variant("tinygrad-jit", "optimised", "the same step captured once by TinyJit and "
            "replayed: its kernels with no scheduling", loop="JitLoop", baseline="tinygrad",
            below="tinygrad"),
    Variant("tinygrad-nn", "idiomatic", "tinygrad.nn.Linear layers, nn.optim.SGD: "
            "zero_grad, backward, step under Context(TRAINING=1)", trainer="ModuleTrainer",
            below="tinygrad", default_run=SMALL, zero_grad="optimizer.zero_grad()"),
    Variant("tinygrad-nn-jit", "idiomatic", "the tinygrad-nn step under TinyJit, as "
            "tinygrad's examples train", trainer="ModuleTrainer", loop="JitModuleStep",
            baseline="tinygrad-nn", below="tinygrad-nn", zero_grad="optimizer.zero_grad()"),
)

ACTIVATIONS = {
    "linear": lambda a: a,
    "sigmoid": Tensor.sigmoid,
    "tanh": Tensor.tanh,
    "relu": Tensor.relu,
}


def to_framework(a: np.ndarray, device: str = "cpu", trainable: bool = False) -> Tensor:
    """A copy of a NumPy array as a realized tensor on tinygrad's CPU device (a tensor made
    from an array reads the array's memory until it is realized; tinygrad tensors carry no
    autograd flag)."""
    check_device(device)
    return Tensor(np.array(a), device="CPU", dtype=DTYPES[a.dtype.name]).realize()


def to_numpy(a: Tensor) -> np.ndarray:
    """A NumPy copy (realizing the tensor if it is still lazy)."""
    return a.numpy().copy()


def check_device(device: str) -> None:
    if device != "cpu":
        raise Unavailable(f"tinygrad runs on the CPU only here, not on {device!r}")
    compiler = os.environ.get("CC", "clang")
    if shutil.which(compiler) is None:
        raise Unavailable(f"tinygrad: its CPU device compiles every kernel with {compiler}, "
                          f"which is not installed here (apt-get install clang, or set CC to "
                          f"a clang); its PYTHON device needs none, but costs about 330x "
                          f"the CPU device's step at 16-16-16 (results/NOTES-tinygrad.md) and "
                          f"is not used here")


def sync(params: Params) -> None:
    """Realize whatever is still lazy, then wait for the CPU device's queue."""
    Tensor.realize(*flatten(params))
    Device["CPU"].synchronize()


def settings(threads: int) -> dict:
    """Set the threads tinygrad splits a kernel over (NUM_CPU_THREADS, read when kernels are
    rendered) and record them, the compiler, the JIT, BEAM and the kernel cache."""
    NUM_CPU_THREADS.value = threads
    return {"tinygrad": package_version(), "device": "CPU", "threads": NUM_CPU_THREADS.value,
            "compiler": compiler_version(), "jit": JIT.value, "beam": BEAM.value,
            "kernel_cache": {"path": CACHEDB, "warm_at_start": os.path.exists(CACHEDB)},
            "recursion_limit": sys.getrecursionlimit()}


def forward(net: NetworkSpec, params: Params, x: Tensor) -> Tensor:
    """y_hat = phi(... phi(x @ W1 + b1) ... @ Wn + bn), shape (batch, widths[-1])."""
    h = x
    for (W, b), act in zip(params, net.layer_activations()):
        a = h @ W if b is None else h @ W + b
        h = ACTIVATIONS[act](a)
    return h


def loss(net: NetworkSpec, params: Params, x: Tensor, y: Tensor) -> Tensor:
    """E = 1/2 * mean over the batch of ||y_hat - y||^2."""
    r = forward(net, params, x) - y
    return 0.5 * (r * r).sum() / x.shape[0]


def grads(net: NetworkSpec, params: Params, x: Tensor, y: Tensor):
    """(E, dE/dparams) by E.gradient with respect to the parameter tensors (no .grad filled)."""
    E = loss(net, params, x, y)
    g = E.gradient(*flatten(params))
    return E, unflatten(net, g)


def update(params: Params, g: Params, lr) -> Params:
    """params - lr * g, in place (assign): the tensors keep their buffers."""
    for p, gp in zip(flatten(params), flatten(g)):
        p.assign(p.detach() - lr * gp)
    return params


def sgd_step(net: NetworkSpec, params: Params, x: Tensor, y: Tensor, lr) -> Params:
    """params - lr * dE/dparams: backward() fills .grad, the update, the step realized, then
    every .grad cleared, the data's too (backward() fills them as well)."""
    E = loss(net, params, x, y)
    E.backward()
    update(params, map_params(lambda p: p.grad, params), lr)
    Tensor.realize(*flatten(params))
    for t in (*flatten(params), x, y):
        t.grad = None
    return params


class StepLoop:
    """One eager sgd_step after another, driven from Python (the idiomatic loop)."""

    autograd, block = True, 1  # tinygrad tensors carry no autograd flag: nothing to ask for

    def __init__(self, trainer: Trainer):
        self.net, self.x, self.y, self.lr = trainer.net, trainer.x, trainer.y, trainer.lr

    def __call__(self, params: Params, steps: int) -> Params:
        net, x, y, lr = self.net, self.x, self.y, self.lr
        for _ in range(steps):
            params = sgd_step(net, params, x, y, lr)
        return params

    def phases(self, params: Params) -> dict:
        """The step's parts, each f(K) run and realized K times: loss, gradients, update
        (the update on copies, so that the parameters stay where the gradients were taken)."""
        net, x, y, lr = self.net, self.x, self.y, self.lr
        _, g = grads(net, params, x, y)
        g = map_params(lambda t: t.realize(), g)
        copies = map_params(lambda t: t.clone().realize(), params)
        return {"forward": lambda k: repeat(k, lambda: [loss(net, params, x, y)]),
                "gradient": lambda k: repeat(k, lambda: flatten(grads(net, params, x, y)[1])),
                "update": lambda k: repeat(k, lambda: flatten(update(copies, g, lr)))}


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

    def grads(self) -> tuple[float, Params]:
        """E and dE/dparams by E.gradient, at the current parameters, which are unchanged."""
        E, g = grads(self.net, self._params, self.x, self.y)
        return float(E.item()), map_params(to_numpy, g)

    def phases(self) -> dict:
        """The step's parts, where the loop is the plain step (``StepLoop.phases``)."""
        return self._loop.phases(self._params) if hasattr(self._loop, "phases") else {}


# ---- helpers and the other variants ----------------------------------------------------------

DTYPES = {"float32": dtypes.float32, "float64": dtypes.float64}


def repeat(k: int, part) -> None:
    """Run and realize one part of the step k times (lazy work would otherwise pile up)."""
    for _ in range(k):
        Tensor.realize(*part())
    Device["CPU"].synchronize()


def package_version() -> str:
    return version("tinygrad")


def compiler_version() -> str | None:
    """The first line of ``$CC --version`` (clang by default), or None."""
    compiler = shutil.which(os.environ.get("CC", "clang"))
    if compiler is None:
        return None
    try:
        done = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return compiler
    return (done.stdout.strip().splitlines() or [compiler])[0]


def jit_step(net: NetworkSpec, params: Params, x: Tensor, y: Tensor, lr: Tensor) -> Tensor:
    """sgd_step for TinyJit: the loss, realized with the updated parameters, is returned, so
    that the captured kernels are the whole step."""
    E = loss(net, params, x, y)
    E.backward()
    update(params, map_params(lambda p: p.grad, params), lr)
    Tensor.realize(E, *flatten(params))
    for t in (*flatten(params), x, y):
        t.grad = None
    return E


class JitLoop:
    """tinygrad-jit: ``jit_step`` under TinyJit. Its first call runs eagerly, its second
    captures the kernels that run, and every later call replays them on the same buffers
    with no scheduling (``first_calls = 2``). The learning rate is a tensor argument, so no
    kernel folds it in; the parameters are the state that the kernels update in place."""

    autograd, block, first_calls = True, 1, 2

    def __init__(self, trainer: Trainer):
        self.net, self.x, self.y = trainer.net, trainer.x, trainer.y
        self.lr = to_framework(np.full(1, trainer.lr, dtype=trainer.net.dtype))
        self.step = TinyJit(jit_step)

    def __call__(self, params: Params, steps: int) -> Params:
        net, x, y, lr, step = self.net, self.x, self.y, self.lr, self.step
        for _ in range(steps):
            step(net, params, x, y, lr)
        return params


# ---- the idiomatic tier: tinygrad.nn, nn.optim ------------------------------------------------

MODULES = {"sigmoid": Tensor.sigmoid, "tanh": Tensor.tanh, "relu": Tensor.relu}


class Model:
    """nn.Linear layers and their activations, chained by Tensor.sequential: tinygrad has no
    Sequential, and its examples write a model as a class like this one."""

    def __init__(self, layers: list):
        self.layers = layers

    def __call__(self, x: Tensor) -> Tensor:
        return x.sequential(self.layers)


def make_model(net: NetworkSpec, params: Params) -> Model:
    """The model holding the given start point. nn.Linear keeps its weight as (out, in) and
    computes x @ weight.T + bias: weight = W.T."""
    layers = []
    for (W, b), act in zip(params, net.layer_activations()):
        linear = nn.Linear(*W.shape, bias=b is not None)
        linear.weight = to_framework(np.ascontiguousarray(W.T))
        if b is not None:
            linear.bias = to_framework(b)
        layers.append(linear)
        if act in MODULES:
            layers.append(MODULES[act])
    return Model(layers)


def make_loss(net: NetworkSpec):
    """E = (out / 2) * mean over batch * out elements of (y_hat - y)^2."""
    scale = 0.5 * net.widths[-1]
    return lambda y_hat, y: scale * (y_hat - y).square().mean()


def train_step(model: Model, loss_fn, optimizer, x: Tensor, y: Tensor) -> Tensor:
    """One SGD step as tinygrad's examples write it; the data's .grad, which backward()
    fills too, is cleared."""
    with Context(TRAINING=1):
        optimizer.zero_grad()
        E = loss_fn(model(x), y).backward()
        optimizer.step()
    x.grad = y.grad = None
    return E


class ModuleStep:
    """tinygrad-nn: ``train_step`` called once per step, eagerly (``optimizer.step``
    realizes the parameters)."""

    block = 1

    def __init__(self, trainer: ModuleTrainer):
        self.args = (trainer.model, trainer.loss_fn, trainer.optimizer, trainer.x, trainer.y)
        self.step = train_step

    def __call__(self, steps: int) -> None:
        step, args = self.step, self.args
        for _ in range(steps):
            step(*args)


class JitModuleStep(ModuleStep):
    """tinygrad-nn-jit: ``train_step`` under TinyJit, as tinygrad's examples train: eager on
    its first call, captured on the second, replayed after (``first_calls = 2``)."""

    first_calls = 2

    def __init__(self, trainer: ModuleTrainer):
        super().__init__(trainer)
        self.step = TinyJit(train_step)


class ModuleTrainer:
    """The idiomatic state: the model, its loss and nn.optim.SGD, advanced by a loop
    (``ModuleStep`` or ``JitModuleStep``)."""

    def __init__(self, problem: Problem, device: str = "cpu", loop: type = ModuleStep):
        check_device(device)
        x, y, params = cast_problem(problem)
        self.net = problem.spec
        self.model = make_model(self.net, params)
        self.loss_fn = make_loss(self.net)
        self.optimizer = nn.optim.SGD(nn.state.get_parameters(self.model), lr=problem.lr)
        # SGD keeps lr in at least float32: a float64 network steps by a float64 one
        self.optimizer.lr = to_framework(np.full(1, problem.lr, dtype=self.net.dtype))
        self.x, self.y = to_framework(x, device), to_framework(y, device)
        self._loop = loop(self)
        self.block = self._loop.block
        self.first_calls = getattr(self._loop, "first_calls", 1)

    def run(self, steps: int) -> None:
        self._loop(steps)
        sync([(p, None) for p in nn.state.get_parameters(self.model)])

    def linears(self) -> list:
        return [m for m in self.model.layers if isinstance(m, nn.Linear)]

    def params(self) -> Params:
        return [(to_numpy(m.weight).T.copy(), None if m.bias is None else to_numpy(m.bias))
                for m in self.linears()]

    def loss(self) -> float:
        return float(self.loss_fn(self.model(self.x), self.y).item())

    def grads(self) -> tuple[float, Params]:
        """E and dE/dparams by backward() into fresh .grad; the parameters are unchanged."""
        self.optimizer.zero_grad()
        E = self.loss_fn(self.model(self.x), self.y).backward()
        g = [(to_numpy(m.weight.grad).T.copy(),
              None if m.bias is None else to_numpy(m.bias.grad)) for m in self.linears()]
        self.optimizer.zero_grad()
        self.x.grad = self.y.grad = None
        return float(E.item()), g
