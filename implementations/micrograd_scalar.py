"""micrograd: Karpathy's scalar autograd engine, the worked example's loop with a tape.

Every quantity is a ``micrograd.engine.Value``, one scalar each, as in the worked example on
paper: ``a_h = X * w_ih``, ``phi(a_h)``, ``a_o = phi(a_h) * w_ho``, ``E = 1/2 (phi(a_o) -
Y)^2``, generalised to any network one unit at a time. Each operation builds a node that
keeps its operands and the local derivative that ``E.backward()`` multiplies in, walking the
graph backwards in topological order; the gradient of each weight is its ``.grad``. This is
``python``'s chain of scalar steps with a tape: the gradient is found, not written out. The
data (``X``, ``Y``) stay plain floats, as micrograd's own examples keep them, and the update
makes new leaves (``sgd_step``). ``micrograd-nn`` is the library's ``micrograd.nn.MLP`` with
the update its README writes: ``zero_grad()``, ``loss.backward()``, ``p.data -= lr * p.grad``.

What it cannot do, it declares (``VARIANTS``), so that no command tries it:

* its ``Value`` has ``relu`` but no ``exp`` or ``tanh``, and its ``**`` takes a number, not
  a ``Value``, as exponent: tanh and sigmoid cannot be built from its own operations (a
  learner would add them as new operations, as the micrograd lecture does; that would be
  another engine), so the variants run linear and relu networks only;
* a ``Value`` holds a Python float: float64 only;
* ``backward()`` sorts the graph with a recursive depth-first search, one Python frame per
  node on the longest path (a neuron's sum of fan_in products, then the loss's sum over the
  batch and the outputs), so the largest network is declared (``max_width``, ``max_layers``,
  ``max_batch``) to keep that path well inside Python's default recursion limit of 1000,
  whatever another package sets it to. Its speed bounds it too: each scalar operation is a
  Python object, so that a 1-1-1 step takes some 30 µs (300× ``python``'s loop) and one of
  the largest network declared (16 wide, 4 layers, batch 16) over half a second.

It runs on the CPU, in one thread, with nothing to sync.
"""

from __future__ import annotations

import random
from importlib.metadata import PackageNotFoundError, version

import numpy as np
from micrograd.engine import Value
from micrograd.nn import MLP

from implementations.contract import FLOAT64_ONLY, WORKED_EXAMPLE, Framework, Unavailable, Variant
from implementations.problem import NetworkSpec, Params, Problem, cast_problem, map_params

FRAMEWORK = Framework("micrograd", label="micrograd", packages=("micrograd",), order=12,
                      arrays=False, api=False)
# the largest network: 16 wide, 4 layers, batch 16, whose backward() recurses 307 frames deep
# (the loss's 16 * 16 terms, then 4 neurons' sums of 16), a third of Python's default 1000,
# so that it runs under a test runner's stack too (tests/test_micrograd_scalar.py); at batch
# 64 one 16-16-16 step needs 1,061
VARIANTS = (
    Variant("micrograd", "idiomatic", "micrograd's Value engine: the worked example one "
            "scalar at a time, E.backward(), a new leaf per weight each step",
            dtypes=FLOAT64_ONLY, activations=("linear", "relu"), max_width=16, max_layers=4,
            max_batch=16, below="python", default_run=WORKED_EXAMPLE),
    Variant("micrograd-nn", "idiomatic", "micrograd.nn.MLP, zero_grad, loss.backward() and "
            "p.data -= lr * p.grad, as micrograd's README trains it", trainer="ModuleTrainer",
            dtypes=FLOAT64_ONLY, activations=("linear", "relu"), max_width=16, max_layers=4,
            max_batch=16, below="micrograd", default_run=WORKED_EXAMPLE,
            zero_grad="model.zero_grad()"),
)

ACTIVATIONS = {
    "linear": lambda a: a,
    "relu": lambda a: a.relu(),  # Value's own; it has no tanh, exp or sigmoid
}


def to_framework(a: np.ndarray, device: str = "cpu", trainable: bool = False) -> list:
    """A NumPy array as nested lists (rows, then columns) of Values to differentiate, if
    trainable, or of plain floats (the data, as micrograd's examples keep it)."""
    check_device(device)
    leaf = Value if trainable else float
    return [leaf(float(v)) for v in a] if a.ndim == 1 else [[leaf(float(v)) for v in row]
                                                            for row in a]


def to_numpy(a) -> np.ndarray:
    """Values or floats, nested as the tensor is (or one scalar), as a float64 array."""
    return np.array(data_of(a), dtype=np.float64)


def check_device(device: str) -> None:
    if device != "cpu":
        raise Unavailable(f"micrograd runs on the CPU only, not on {device!r}")


def sync(params: Params) -> None:
    """Nothing to wait for: every Value is computed at once."""


def settings(threads: int) -> dict:
    """One thread: the engine is pure Python."""
    return {"threads": 1, "micrograd": package_version()}


def forward(net: NetworkSpec, params: Params, x: list) -> list:
    """y_hat, one list of Values per sample: a_j = sum_i h_i w_ij + b_j, h_j = phi(a_j),
    layer by layer, as micrograd's Neuron sums them."""
    out = []
    for row in x:
        h = row
        for (W, b), act in zip(params, net.layer_activations()):
            a = [sum((h[i] * W[i][j] for i in range(len(h))), 0.0 if b is None else b[j])
                 for j in range(len(W[0]))]
            h = [ACTIVATIONS[act](a_j) for a_j in a]
        out.append(h)
    return out


def loss(net: NetworkSpec, params: Params, x: list, y: list) -> Value:
    """E = 1/2 * mean over the batch of ||y_hat - y||^2, one squared error at a time."""
    y_hat = forward(net, params, x)
    return 0.5 * sum((o - t) ** 2 for out, target in zip(y_hat, y)
                     for o, t in zip(out, target)) / len(x)


def grads(net: NetworkSpec, params: Params, x: list, y: list):
    """(E, dE/dparams): E.backward() fills every Value's .grad, zeroed first."""
    for p in leaves(params):
        p.grad = 0.0
    E = loss(net, params, x, y)
    E.backward()
    return E, map_params(grad_of, params)


def update(params: Params, g: Params, lr) -> Params:
    """params - lr * g, as new leaves (each step then builds its graph from fresh ones)."""
    return [(step(W, gW, lr), None if b is None else step(b, gb, lr))
            for (W, b), (gW, gb) in zip(params, g)]


def sgd_step(net: NetworkSpec, params: Params, x: list, y: list, lr) -> Params:
    """params - lr * dE/dparams."""
    _, g = grads(net, params, x, y)
    return update(params, g, lr)


class StepLoop:
    """One sgd_step after another, driven from Python (the idiomatic loop)."""

    autograd, block = True, 1  # the parameters are Values, the data floats

    def __init__(self, trainer: Trainer):
        self.net, self.x, self.y, self.lr = trainer.net, trainer.x, trainer.y, trainer.lr

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
    """The loop's state (data as floats, parameters as Values) and the loop that advances it."""

    def __init__(self, problem: Problem, device: str = "cpu", loop: type = StepLoop):
        check_device(device)
        x, y, params = cast_problem(problem)
        self.net, self.lr, self.device = problem.spec, problem.lr, device
        self.x, self.y = to_framework(x, device), to_framework(y, device)
        self._params = map_params(lambda a: to_framework(a, device, loop.autograd), params)
        self._loop = loop(self)
        self.block, self.first_calls = self._loop.block, getattr(self._loop, "first_calls", 1)

    def run(self, steps: int) -> None:
        """Advance by exactly ``steps`` SGD updates (nothing to wait for)."""
        self._params = self._loop(self._params, steps)

    def params(self) -> Params:
        return map_params(to_numpy, self._params)

    def loss(self) -> float:
        return float(loss(self.net, self._params, self.x, self.y).data)

    def phases(self) -> dict:
        """The step's parts, where the loop is the plain step (``StepLoop.phases``)."""
        return self._loop.phases(self._params)


# ---- helpers -----------------------------------------------------------------------------------


def data_of(a):
    """The numbers inside nested lists of Values (or floats)."""
    if isinstance(a, (list, tuple)):
        return [data_of(e) for e in a]
    return a.data if isinstance(a, Value) else float(a)


def grad_of(a):
    """The .grad of each Value, nested as the tensor is."""
    return [grad_of(e) for e in a] if isinstance(a, list) else float(a.grad)


def leaves(params: Params) -> list[Value]:
    """Every parameter Value, in flat order."""
    out = []
    for layer in params:
        for t in layer:
            if t is not None:
                out += [v for row in t for v in row] if isinstance(t[0], list) else list(t)
    return out


def step(t: list, g: list, lr) -> list:
    """New leaves t - lr * g, nested as t is."""
    if isinstance(t[0], list):
        return [step(row, grow, lr) for row, grow in zip(t, g)]
    return [Value(v.data - lr * gv) for v, gv in zip(t, g)]


def repeat(k: int, part) -> None:
    """Run one part of the step k times (nothing to wait for)."""
    for _ in range(k):
        part()


def package_version() -> str | None:
    try:
        return version("micrograd")
    except PackageNotFoundError:
        return None


# ---- the idiomatic tier: micrograd.nn.MLP -------------------------------------------------------


def make_model(net: NetworkSpec, params: Params) -> MLP:
    """micrograd.nn.MLP holding the given start point. MLP(nin, nouts) makes ReLU hidden
    layers and a linear last one; each Neuron's ``nonlin`` is set from the network instead
    (linear or relu). Neuron j of layer l holds column j of W_l as ``w`` and b_l[j] as ``b``;
    a network without a bias keeps every ``b`` at 0 and out of the update. MLP draws its
    initial weights from ``random``'s global generator: it is put back as it was, so that
    making a model changes nobody else's random numbers."""
    state = random.getstate()
    model = MLP(net.widths[0], list(net.widths[1:]))
    random.setstate(state)
    for layer, (W, b), act in zip(model.layers, params, net.layer_activations()):
        for j, neuron in enumerate(layer.neurons):
            neuron.nonlin = act == "relu"
            for i, w in enumerate(neuron.w):
                w.data = float(W[i, j])
            neuron.b.data = 0.0 if b is None else float(b[j])
    return model


def model_forward(model: MLP, x: list) -> list:
    """The model's outputs per sample. A Layer of one neuron returns a bare Value, which the
    next layer cannot iterate (micrograd.nn.MLP runs no hidden width of 1): the loop over
    ``model.layers`` keeps every output a list, as a user of MLP on the worked example must."""
    out = []
    for row in x:
        h = row
        for layer in model.layers:
            h = layer(h)
            h = h if isinstance(h, list) else [h]
        out.append(h)
    return out


def model_loss(model: MLP, x: list, y: list) -> Value:
    """E = 1/2 * mean over the batch of ||y_hat - y||^2, micrograd's sum of squared errors."""
    return 0.5 * sum((o - t) ** 2 for out, target in zip(model_forward(model, x), y)
                     for o, t in zip(out, target)) / len(x)


class ModuleStep:
    """micrograd-nn: the README's loop: zero_grad, backward, then p.data -= lr * p.grad."""

    block = 1

    def __init__(self, trainer: ModuleTrainer):
        self.t = trainer

    def __call__(self, steps: int) -> None:
        t = self.t
        for _ in range(steps):
            t.model.zero_grad()
            model_loss(t.model, t.x, t.y).backward()
            for p in t.trained:
                p.data -= t.lr * p.grad


class ModuleTrainer:
    """The idiomatic state: a micrograd.nn.MLP and its learning rate, advanced by ModuleStep."""

    def __init__(self, problem: Problem, device: str = "cpu", loop: type = ModuleStep):
        check_device(device)
        x, y, params = cast_problem(problem)
        self.net, self.lr = problem.spec, problem.lr
        self.model = make_model(self.net, params)
        # the parameters SGD moves: every one, or the weights alone for a network without bias
        self.trained = [p for n in self.neurons() for p in (n.parameters() if self.net.bias
                                                             else n.w)]
        self.x, self.y = to_framework(x), to_framework(y)
        self._loop = loop(self)
        self.block = self._loop.block

    def run(self, steps: int) -> None:
        self._loop(steps)

    def neurons(self) -> list:
        return [n for layer in self.model.layers for n in layer.neurons]

    def params(self) -> Params:
        return self.tensors(lambda v: v.data)

    def loss(self) -> float:
        return float(model_loss(self.model, self.x, self.y).data)

    def grads(self) -> tuple[float, Params]:
        """E and dE/dparams by loss.backward() into zeroed .grad; the weights are unchanged."""
        self.model.zero_grad()
        E = model_loss(self.model, self.x, self.y)
        E.backward()
        g = self.tensors(lambda v: v.grad)
        self.model.zero_grad()
        return float(E.data), g

    def tensors(self, read) -> Params:
        """(W, b) per layer from the neurons: W[i, j] is neuron j's w[i]; ``read`` picks
        .data or .grad."""
        out = []
        for layer in self.model.layers:
            W = np.array([[read(w) for w in n.w] for n in layer.neurons], dtype=np.float64).T
            b = np.array([read(n.b) for n in layer.neurons], dtype=np.float64)
            out.append((W.copy(), b if self.net.bias else None))
        return out
