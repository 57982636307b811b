"""TensorFlow 2: eager ``tf.GradientTape``, the same step as a ``tf.function`` graph, and by XLA.

The parameters are ``tf.Variable``s, which a tape watches by itself; ``grads`` asks
``tape.gradient`` for dE/dparams, and ``sgd_step`` updates the variables in place with
``assign_sub``, as TensorFlow's guide "Basic training loops" writes it. TensorFlow executes
eagerly by default, one op at a time through its C++ runtime; ``tf.function`` traces the
Python step once into a graph that the runtime then runs in one call, and
``tf.function(jit_compile=True)`` hands that graph to XLA, which compiles it into one fused
kernel. The optimizers TensorFlow 2.20 ships are Keras's (``keras-tf-loop`` runs
``optimizer.apply``); the TensorFlow guides write the plain update with ``assign_sub``.

TensorFlow runs here on the CPU only (the ``tensorflow-cpu`` build). Its thread pools can be
sized only before its first op (``settings``), and ``TF_ENABLE_ONEDNN_OPTS`` is read at
import, so it is a framework of its own process (``isolated``): ``check`` and ``demo`` start
one for it, and no other framework shares its thread pools. Its Trainers compute their own
gradients (``Trainer.grads``), through which ``check`` compares them with the references. The
per-op cost here is measured by ``call_floors`` and ``scripts/tf_overhead.py``
(results/NOTES-frameworks.md).
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from implementations import floors
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

# gradients=False: its gradients reach check through the Trainers' grads(), in TF's own process
FRAMEWORK = Framework("tf", label="TensorFlow", packages=("tensorflow",), order=64,
                      gradients=False, isolated=True, variables=("TF_", "ONEDNN_", "KMP_"))
VARIANTS = (
    Variant("tf", "idiomatic", "TensorFlow eager: tf.GradientTape, tape.gradient, "
            "assign_sub update", default_run=SMALL),
    Variant("tf-function", "idiomatic", "the same step traced once by tf.function into a "
            "graph, called once per step", loop="FunctionLoop", baseline="tf", below="tf",
            default_run=SMALL),
    Variant("tf-xla", "optimised", "the tf.function step compiled by XLA "
            "(jit_compile=True)", loop="XlaLoop", baseline="tf", below="tf-function",
            default_run=SMALL),
)

ACTIVATIONS = {
    "linear": lambda a: a,
    "sigmoid": tf.sigmoid,
    "tanh": tf.tanh,
    "relu": tf.nn.relu,
}


def to_framework(a: np.ndarray, device: str = "cpu", trainable: bool = False):
    """A copy of a NumPy array: a tf.Variable (which tapes watch) if trainable, else a tensor."""
    check_device(device)
    with tf.device("/CPU:0"):
        return tf.Variable(np.array(a)) if trainable else tf.constant(np.array(a))


def to_numpy(a) -> np.ndarray:
    """A NumPy copy (a CPU tensor's .numpy() may share its buffer)."""
    return a.numpy().copy()


def check_device(device: str) -> None:
    if device != "cpu":
        raise Unavailable(f"tf runs on the CPU only here (the tensorflow-cpu build), not on "
                          f"{device!r}")


def sync(params: Params) -> None:
    """Wait for queued work: TF's eager CPU ops run synchronously, so this returns at once
    unless asynchronous execution was switched on."""
    tf.test.experimental.sync_devices()


def settings(threads: int) -> dict:
    """Size TF's intra- and inter-op thread pools (only possible before TF's first op) and
    record them, oneDNN, the version and the variables that change TF's results."""
    return {**thread_pools(threads), "tensorflow": tf.__version__,
            "onednn": onednn_enabled(), "synchronous": tf.config.experimental.
            get_synchronous_execution(), "variables": tf_variables()}


def forward(net: NetworkSpec, params: Params, x):
    """y_hat = phi(... phi(x @ W1 + b1) ... @ Wn + bn), shape (batch, widths[-1])."""
    h = x
    for (W, b), act in zip(params, net.layer_activations()):
        a = h @ W if b is None else h @ W + b
        h = ACTIVATIONS[act](a)
    return h


def loss(net: NetworkSpec, params: Params, x, y):
    """E = 1/2 * mean over the batch of ||y_hat - y||^2."""
    r = forward(net, params, x) - y
    return 0.5 * tf.reduce_sum(r * r) / x.shape[0]


def grads(net: NetworkSpec, params: Params, x, y):
    """(E, dE/dparams) by tape.gradient; the tape watches variables, and constants too."""
    with tf.GradientTape() as tape:
        tape.watch(flatten(params))
        E = loss(net, params, x, y)
    g = tape.gradient(E, flatten(params))
    return E, unflatten(net, g)


def update(params: Params, g: Params, lr) -> Params:
    """params - lr * g, in place: assign_sub on each variable."""
    for p, gp in zip(flatten(params), flatten(g)):
        p.assign_sub(lr * gp)
    return params


def sgd_step(net: NetworkSpec, params: Params, x, y, lr) -> Params:
    """params - lr * dE/dparams, the variables updated in place."""
    _, g = grads(net, params, x, y)
    return update(params, g, lr)


class StepLoop:
    """One eager sgd_step after another, driven from Python (the idiomatic loop)."""

    autograd, block = True, 1  # the parameters are tf.Variables

    def __init__(self, trainer: Trainer):
        self.net, self.x, self.y, self.lr = trainer.net, trainer.x, trainer.y, trainer.lr
        self.step, self.grads, self.parts = step_in_place, grads, (loss, grads, update)

    def __call__(self, params: Params, steps: int) -> Params:
        net, x, y, lr, step = self.net, self.x, self.y, self.lr, self.step
        for _ in range(steps):
            step(net, params, x, y, lr)
        return params

    def phases(self, params: Params) -> dict:
        """The step's parts, each f(K) run K times: the loss, the gradients, the update."""
        net, x, y, lr = self.net, self.x, self.y, self.lr
        part_loss, part_grads, part_update = self.parts
        _, g = part_grads(net, params, x, y)
        return {"forward": lambda k: repeat(k, lambda: part_loss(net, params, x, y)),
                "gradient": lambda k: repeat(k, lambda: part_grads(net, params, x, y)),
                "update": lambda k: repeat(k, lambda: part_update(params, g, lr))}


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
        return float(loss(self.net, self._params, self.x, self.y))

    def grads(self) -> tuple[float, Params]:
        """E and dE/dparams the loop's own way (eager, graph or XLA); parameters unchanged."""
        E, g = self._loop.grads(self.net, self._params, self.x, self.y)
        return float(E), map_params(to_numpy, g)

    def phases(self) -> dict:
        """The step's parts, where the loop is the plain step (``StepLoop.phases``)."""
        return self._loop.phases(self._params) if hasattr(self._loop, "phases") else {}


# ---- helpers and the other variants ----------------------------------------------------------


def step_in_place(net: NetworkSpec, params: Params, x, y, lr) -> None:
    """sgd_step without a result: a tf.function that returned the variables would hand back
    tensors read from them, one copy per parameter per call."""
    sgd_step(net, params, x, y, lr)


def repeat(k: int, part) -> None:
    """Run one part of the step k times (eager CPU ops are done when they return)."""
    for _ in range(k):
        part()
    tf.test.experimental.sync_devices()


class FunctionLoop:
    """tf-function: ``tf.function`` of the step, traced on the first call into one graph that
    TF's runtime runs per call. The learning rate is a tensor argument, so the graph cannot
    fold it in; the gradients check compares the traced ``grads``."""

    autograd, block = True, 1

    def __init__(self, trainer: Trainer, jit_compile: bool = False):
        self.loop = StepLoop(trainer)
        self.loop.lr = tf.constant(trainer.lr, dtype=trainer.net.dtype)
        compiled = [tf.function(f, jit_compile=jit_compile)
                    for f in (step_in_place, loss, grads, update)]
        self.loop.step, self.grads = compiled[0], compiled[2]
        self.loop.parts = tuple(compiled[1:])

    def __call__(self, params: Params, steps: int) -> Params:
        return self.loop(params, steps)

    def phases(self, params: Params) -> dict:
        return self.loop.phases(params)


class XlaLoop:
    """tf-xla: the FunctionLoop's step compiled by XLA (``tf.function(jit_compile=True)``):
    one fused kernel per call, the variables updated inside it."""

    autograd, block = True, 1

    def __init__(self, trainer: Trainer):
        self.loop = FunctionLoop(trainer, jit_compile=True)
        self.grads = self.loop.grads

    def __call__(self, params: Params, steps: int) -> Params:
        return self.loop(params, steps)

    def phases(self, params: Params) -> dict:
        return self.loop.phases(params)


# Variables that TF reads and that change what it computes or how fast (TF itself sets
# TF_CPP_MIN_LOG_LEVEL at import); "TF_" alone would catch other tools' (TF_CLI_CONFIG_FILE)
TF_VARIABLES = ("TF_ENABLE_ONEDNN_OPTS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
                "TF_DETERMINISTIC_OPS", "TF2_BEHAVIOR")
TF_PREFIXES = ("TF_XLA_", "TF_CPP_", "TF_ONEDNN_", "TF_MKL_", "ONEDNN_", "DNNL_", "KMP_")


def tf_variables() -> dict:
    """The variables that change TF's results or speed, as set in this process."""
    return {k: os.environ[k] for k in sorted(os.environ)
            if k in TF_VARIABLES or k.startswith(TF_PREFIXES)}


def thread_pools(threads: int) -> dict:
    """Set TF's intra-op and inter-op pools to ``threads``. TF fixes them when it starts its
    runtime (its first op), after which setting raises: then they are recorded as they are."""
    note = None
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError as exc:  # "cannot be modified after initialization"
        note = f"not set: {exc}"
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    return {"intra_op_threads": intra, "inter_op_threads": inter,  # 0: TF's own choice
            **({"threads_note": note} if note else {})}


def onednn_enabled() -> bool | None:
    """Whether TF's oneDNN ops are on (TF_ENABLE_ONEDNN_OPTS, default on for x86 builds)."""
    try:
        from tensorflow.python.util import (
            _pywrap_util_port,  # a framework, heavy: imported where it is used
        )

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


def call_floors(calls: int = 500) -> dict[str, tuple[float, int]]:
    """{name: (seconds per call, calls)}: one eager op, a trivial tf.function graph and the same
    compiled by XLA, all on a scalar: the overhead floor under every TF step."""
    x = tf.constant(0.0, dtype=tf.float64)
    return floors.measure((("eager x + 1, one op", lambda t: t + 1.0),
                           ("tf.function of x + 0, one call", tf.function(lambda t: t + 0.0)),
                           ("tf.function(jit_compile) of x + 0, one call",
                            tf.function(lambda t: t + 0.0, jit_compile=True))), x, calls)
