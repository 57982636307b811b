"""The contract between the harness and a framework module, written as code.

A *framework module* is one file in ``implementations/`` (or a file named in the environment
variable ``BACKPROP_BENCH_FRAMEWORKS``) that declares two literals near its top,

``FRAMEWORK = Framework(...)``
    who it is: registry name, label, the packages whose versions a results file records, the
    order in tables, and optional limits (the matmul-peak size);
``VARIANTS = (Variant(...), ...)``
    the ways it runs the update loop, each with its own registry name;

and then the functions and classes of ``FrameworkModule`` (arrays) or of ``LoopModule``
(a compiled loop with no gradient functions, such as numba's). The registry reads the two
declarations from the source without importing the module, so a framework that is missing or
broken is listed as *unavailable, with the reason*; it is imported only when one of its
variants runs. The declarations may use only literals and the names exported here.

Semantics every module keeps (the Protocols below give the signatures):

* ``to_framework(a, device, trainable)`` returns a **copy** of a NumPy array as this
  framework's array; nothing outside can write into it.
* ``to_numpy(a)`` returns a **copy**; a Trainer keeps updating its own arrays.
* ``check_device(device)`` raises ``Unavailable`` with a one-line reason if the framework
  cannot use the device; importing a module whose framework cannot start at all must raise
  (any exception: the registry turns it into *unavailable, with the reason*).
* ``sync(params)`` returns only when the device has finished every queued operation on
  ``params``, forcing lazy work. The harness calls it with a parameter list, or with
  ``[(array, None)]`` to wait for one array (the matmul peak, the warm-up).
* ``settings(threads)`` applies the framework's thread setting, if it has one, and returns a
  JSON-able dict of what the results file records (threads, BLAS, precision, caches).
* ``lr`` is always a Python float.
* A Trainer's ``params()`` returns NumPy copies in the problem's dtype, shaped as the problem's
  parameters: a list of ``(W, b)`` with ``W`` (fan_in, fan_out) and ``b`` (fan_out,) or None.

Optional: ``built(variant, problem, device)`` says whether the compiled code of a variant
with a long cold build (``Variant.build_s``) is already cached for that problem, so that
``check`` can include it by default. ``device_memory(device)`` ({"in_use": bytes, "peak":
bytes} of the device's allocator, or None) and ``reset_device_memory_peak(device)`` (True if
the peak could be reset) let the harness account memory per step on a GPU
(``harness.measure.memory``).

A *distributed* variant (``Variant.distributed``) runs data-parallel SGD on N workers (one
core each on the CPU, one GPU each on a GPU), each taking batch/N rows of the same global
batch: its Trainer takes ``workers=N``, ``run(K)`` returns only when every worker has done
its K steps, ``params()`` are worker 0's and ``rank_params()`` / ``rank_grads()`` every
worker's (the parameters, and the all-reduced gradient at the current parameters), and
``close()`` ends the workers (they also end with the Trainer and with their process). Its
module may define ``time_allreduce(workers, sizes, device, budget_s)``: the all-reduce alone
over message sizes in bytes, for the scaling model (``harness.procs.allreduce``).

What a variant can run is declared, never found out at run time: its devices, dtypes,
activations, whether it takes a bias, and the largest network (the widest layer, the most
layers, the largest batch). ``Variant.why_not`` reads these declarations, and through it
``list``, ``check``, ``run``, ``demo``, the report's skipped cases and the tests; a module
raises ``Unavailable`` only for what a declaration cannot say (a package that fails to load,
a device or a C compiler that is not there).

A module's import sets process-wide state only where its own package's results would
otherwise be wrong (TF32 off in torch, JAX's matmul precision: state of that package, which
the frameworks built on it share on purpose), says so in its docstring, and records it in
``settings``. State that another framework reads (the recursion limit, environment
variables such as the thread counts, signal handlers, NumPy's error state) it leaves alone;
a framework whose package changes such state at import (tinygrad raises the recursion limit,
PaddlePaddle sets ``OMP_NUM_THREADS``) is declared ``isolated`` and always runs in a process
of its own. ``tests/test_contract.py`` imports every framework that is not isolated in a
fresh process and checks that it leaves that state as it found it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from implementations.problem import ACTIVATIONS, BenchError, NetworkSpec, Params, Problem

CPU_ONLY = ("cpu",)
ALL_DEVICES = ("cpu", "cuda")
BOTH_DTYPES = ("float32", "float64")
FLOAT64_ONLY = ("float64",)
LOW_DTYPES = ("bfloat16", "float16")
ALL_DTYPES = BOTH_DTYPES + LOW_DTYPES
ALL_ACTIVATIONS = ACTIVATIONS  # linear, sigmoid, tanh, relu
BOTH_BIASES = (False, True)  # networks without a bias and with one
KINDS = ("idiomatic", "optimised")
ROLES = ("limit", "reference", "gpu-limit")
RUN_NETWORK_NAMES = ("worked-example", "small", "large")  # the default run's networks
ALL_NETWORKS = RUN_NETWORK_NAMES
SMALL = ("worked-example", "small")
WORKED_EXAMPLE = ("worked-example",)
PEAK_N = {"cpu": 2048, "cuda": 8192}  # matmul sizes that run near peak on each device


class Unavailable(BenchError):
    """A variant that cannot run here: framework missing or broken, device absent, network
    unsupported. It is a result (with its reason), never a crash."""


@dataclass(frozen=True)
class Framework:
    """What a framework module declares about itself.

    Attributes:
        name: registry name; variants of one framework share a worker process.
        label: the name people use ("PyTorch").
        packages: the packages it needs, imported in this order to tell "not installed" from
            "fails to import"; their versions go into every results file.
        order: position in tables and in the run (smaller first).
        gradients: True if it defines forward, loss and grads (``FrameworkModule``); False for
            a compiled loop (``LoopModule``), which ``check`` runs as a trajectory only.
        arrays: True if it has device arrays with ``@`` and ``sync`` (matmul peak, warm-up).
        peak_n: the matmul size per device for its peak; smaller for a slow framework.
        api: True if its step functions belong in the report's API side by side.
        isolated: True if importing it sets process-wide state that another framework in the
            same process would see (Keras's backend, tinygrad's recursion limit, Paddle's
            OMP_NUM_THREADS): ``check``, ``demo`` and ``list --check`` then run it in a
            process of its own (``run`` always does).
        environment: variables set in its process before its packages are imported
            (``KERAS_BACKEND``); they override the user's.
        api_source: the file in ``implementations/`` whose functions the report's API side by
            side shows (default: the module's own).
        variables: the environment variables that change its results, by name or by prefix
            (ending in "_"): a results file records those that are set.
    """

    name: str
    label: str
    packages: tuple[str, ...]
    order: int = 100
    gradients: bool = True
    arrays: bool = True
    peak_n: dict[str, int] = field(default_factory=lambda: dict(PEAK_N))
    api: bool = True
    isolated: bool = False
    environment: dict[str, str] = field(default_factory=dict)
    api_source: str | None = None
    variables: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "packages", tuple(self.packages))
        object.__setattr__(self, "variables", tuple(self.variables))


@dataclass(frozen=True)
class Variant:
    """One registered way of running a framework's update loop.

    Attributes:
        name: registry name, used on the command line.
        kind: "idiomatic" (as the framework's tutorials write it) or "optimised" (the fastest
            honest way; it never changes what is computed).
        description: one line for tables and ``--help``.
        trainer: the Trainer class in the module.
        loop: the loop strategy class in the module that the Trainer is built with (None: the
            Trainer's own default).
        devices, dtypes: what it can run.
        activations: the activations it runs, hidden and output (``ALL_ACTIVATIONS``).
        biases: the networks it runs: without a bias (False), with one (True), or both.
        worked_example_only: runs the 1-1-1 network with batch 1 only.
        max_width, max_layers, max_batch: the largest network it runs: its widest layer
            (input and output included), its number of weight layers, and the batch; None:
            no limit. A scalar engine whose backward pass recurses once per node of the
            graph (micrograd) declares them so that the graph stays well inside Python's
            recursion limit.
        baseline: the variant its compile cost is measured against ("pays off after N steps").
        role: "limit" (the physical limit of the serial chain, the "× limit" column),
            "reference" (the "× reference" column) — a GPU run also runs these two on the
            CPU — or "gpu-limit" (the serial chain in one GPU thread, listed with the
            ceilings).
        default_run: the networks of the default run it runs on (``RUN_NETWORK_NAMES``: the
            1-1-1 "worked-example", the "small" 16-16-16 and the "large" 256-256-256);
            ``--widths`` and ``--variants`` run whatever they name.
        sweep_devices: devices on which the default sweep includes it.
        below: the variant one rung down the abstraction ladder (the layer this one adds
            to: torch-nn is built on torch, jax-flax on jax); None at the bottom.
        distributed: data-parallel over ``workers`` workers (see the module docstring);
            ``check --workers`` and ``scale`` run it, the default ``check`` and ``run`` do not.
        replicates: the single-device variant whose step each worker runs (its cost model on
            a GPU is the compute term of the scaling predictions on paper).
        workers: how many workers a case of it runs on: 1 as declared, ``at(n)`` for more.
        precision: "pure" (it computes in the problem's dtype, its parameters too) or
            "mixed" (float32 master weights, the forward and backward passes in the problem's
            lower dtype, and for float16 a scaled loss): the check holds each to its own
            reference (``harness.check.precision``).
        zero_grad: what clears the gradients its step would otherwise add up from step to
            step, where its framework accumulates them (``optimizer.zero_grad()``); the check
            names it when the variant's gradients accumulate.
        build_s: about how long its first call compiles for, in seconds, on a cold cache
            on a 2-core machine (0: it does not compile, or only for a moment). ``check``
            leaves a variant that takes 10 s or more out unless its module's
            ``built(variant, problem, device)`` says it is cached, or ``--all`` is given.
        framework: filled in by the registry from the module's ``FRAMEWORK``.
        load: filled in by the registry: imports the module (or raises Unavailable).
    """

    name: str
    kind: str
    description: str
    trainer: str = "Trainer"
    loop: str | None = None
    devices: tuple[str, ...] = CPU_ONLY
    dtypes: tuple[str, ...] = BOTH_DTYPES
    activations: tuple[str, ...] = ALL_ACTIVATIONS
    biases: tuple[bool, ...] = BOTH_BIASES
    worked_example_only: bool = False
    max_width: int | None = None
    max_layers: int | None = None
    max_batch: int | None = None
    baseline: str | None = None
    role: str | None = None
    default_run: tuple[str, ...] = ALL_NETWORKS
    sweep_devices: tuple[str, ...] = ()
    below: str | None = None
    distributed: bool = False
    replicates: str | None = None
    workers: int = 1
    build_s: float = 0.0
    precision: str = "pure"
    zero_grad: str = ""
    framework: str = ""
    load: Callable[[], ModuleType] | None = field(default=None, compare=False, repr=False)

    @property
    def label(self) -> str:
        """The name, with the number of workers when there are several: 'torch-ddp ×2'."""
        return self.name if self.workers == 1 else f"{self.name} ×{self.workers}"

    def at(self, workers: int) -> Variant:
        """This variant on ``workers`` workers (a copy); why_not says if it cannot be."""
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise BenchError(f"workers {workers!r} must be a positive integer")
        return replace(self, workers=workers)

    def why_not(self, problem: Problem, device: str) -> str | None:
        """The reason this variant cannot run this problem on this device, or None: its
        declarations (devices, dtypes, activations, bias, the largest network) read against
        the problem, then the workers of a distributed case."""
        if device not in self.devices:
            return f"{self.name} runs on {' or '.join(self.devices)} only, not {device}"
        reason = self.why_not_network(problem)
        if reason:
            return reason
        if self.workers > 1 and not self.distributed:
            return f"{self.name} runs on one worker only, not {self.workers}"
        if problem.batch % self.workers:
            # equal shards are what make the mean of the shards' means the full-batch mean
            return (f"{self.label}: global batch {problem.batch} is not divisible by "
                    f"{self.workers} workers")
        return None

    def why_not_network(self, problem: Problem) -> str | None:
        """The declaration this problem's network, dtype or batch is outside of, said in one
        line, or None."""
        spec, widths = problem.spec, "-".join(map(str, problem.spec.widths))
        if spec.dtype not in self.dtypes:
            return f"{self.name} runs {' or '.join(self.dtypes)} only, not {spec.dtype}"
        if self.worked_example_only and not (spec.is_worked_example and problem.batch == 1):
            return (f"{self.name} runs the 1-1-1 network with batch 1 only, "
                    f"not {widths} with batch {problem.batch}")
        missing = [a for a in dict.fromkeys(spec.layer_activations())
                   if a not in self.activations]
        if missing:
            return (f"{self.name} runs the activations {', '.join(self.activations)} only, "
                    f"not {missing[0]}")
        if spec.bias not in self.biases:
            return (f"{self.name} runs networks {'with' if True in self.biases else 'without'} a "
                    f"bias only")
        if self.max_width is not None and max(spec.widths) > self.max_width:
            return (f"{self.name} runs layers up to {self.max_width} wide only, not "
                    f"{widths}")
        if self.max_layers is not None and spec.depth > self.max_layers:
            return (f"{self.name} runs up to {self.max_layers} weight layers only, not "
                    f"{spec.depth} ({widths})")
        if self.max_batch is not None and problem.batch > self.max_batch:
            return f"{self.name} runs batches up to {self.max_batch} only, not {problem.batch}"
        return None

    def runs(self) -> str:
        """What it declares it runs, where that is less than everything, in a few words
        ("float64; linear, relu; up to 16 wide, 4 layers, batch 16"); "" for everything."""
        parts = []
        if not set(BOTH_DTYPES) <= set(self.dtypes):  # bfloat16 and float16 are extras
            parts.append("/".join(self.dtypes))
        if self.worked_example_only:
            parts.append("1-1-1, batch 1")
        if tuple(self.activations) != ALL_ACTIVATIONS:
            parts.append(", ".join(self.activations))
        if tuple(sorted(self.biases)) != BOTH_BIASES:
            parts.append("with a bias" if True in self.biases else "no bias")
        largest = [text for n, text in ((self.max_width, f"{self.max_width} wide"),
                                         (self.max_layers, f"{self.max_layers} layers"),
                                         (self.max_batch, f"batch {self.max_batch}"))
                   if n is not None]
        if largest:
            parts.append("up to " + ", ".join(largest))
        return "; ".join(parts)

    def make(self, problem: Problem, device: str = "cpu") -> Trainer:
        """A ready Trainer for this problem on this device, or raise Unavailable."""
        reason = self.why_not(problem, device)
        if reason:
            raise Unavailable(reason)
        if self.load is None:
            raise Unavailable(f"{self.name} is not registered (no module to load it from)")
        module = self.load()
        module.check_device(device)
        trainer = getattr(module, self.trainer)
        kwargs = {"workers": self.workers} if self.distributed else {}
        if self.loop is None:
            return trainer(problem, device, **kwargs)
        return trainer(problem, device, loop=getattr(module, self.loop), **kwargs)


# ---- what a module and a Trainer provide ------------------------------------------------------

@runtime_checkable
class Trainer(Protocol):
    """Owns the update loop of one variant, from ``problem.cast_problem(problem)``.

    ``run(steps)`` advances by exactly ``steps`` SGD updates and returns only when the device
    has finished them (the Trainer owns the sync). Optional attributes the timing engine reads:
    ``block`` (steps fused per call: K is kept a multiple of it) and ``first_calls`` (calls of
    ``run(block)`` that still trace, compile or capture: all are timed as first-call cost);
    and one that ``check`` reads: ``unroll`` (steps in one iteration of a compiled loop), so
    that its trajectory runs the compiled block or body at least twice and then a remainder.

    Two optional methods join a variant to more checks and figures:

    ``grads() -> (E, grads)``
        the loss and dE/dparams at the current parameters, computed the variant's own way
        (``loss.backward()`` and ``.grad``, ``nnx.grad``, ...), as floats and NumPy arrays in
        the parameters' structure, without changing the state: ``check`` compares them with
        finite differences, the closed form and the other frameworks.
    ``phases() -> {"forward": f, "gradient": f, "update": f}``
        each f(K) runs that part of the step K times and returns when the device is done:
        the forward pass, the gradient (forward and backward) and the update alone. The
        harness times them with the same engine, after the case's checks (they may change
        the state).
    """

    def run(self, steps: int) -> None: ...

    def params(self) -> Params: ...

    def loss(self) -> float: ...


@runtime_checkable
class LoopModule(Protocol):
    """A module that only runs a training loop (``Framework.gradients`` is False)."""

    FRAMEWORK: Framework
    VARIANTS: Sequence[Variant]

    def check_device(self, device: str) -> None: ...

    def settings(self, threads: int) -> dict: ...


@runtime_checkable
class FrameworkModule(LoopModule, Protocol):
    """A module with arrays and gradient functions (``Framework.gradients`` is True).

    ``params`` is a list of ``(W, b)`` pairs in the framework's arrays, ``x`` of shape
    (batch, widths[0]); E = 1/2 * mean over the batch of ||y_hat - y||^2.
    """

    def to_framework(self, a: np.ndarray, device: str = "cpu",
                     trainable: bool = False) -> Any: ...

    def to_numpy(self, a: Any) -> np.ndarray: ...

    def sync(self, params: Params) -> None: ...

    def forward(self, net: NetworkSpec, params: Params, x: Any) -> Any: ...

    def loss(self, net: NetworkSpec, params: Params, x: Any, y: Any) -> Any: ...

    def grads(self, net: NetworkSpec, params: Params, x: Any, y: Any) -> tuple[Any, Params]: ...

    def sgd_step(self, net: NetworkSpec, params: Params, x: Any, y: Any,
                 lr: float) -> Params: ...


# The names a declaration may use besides literals.
DECLARATION_NAMES = {
    "Framework": Framework, "Variant": Variant, "CPU_ONLY": CPU_ONLY,
    "ALL_DEVICES": ALL_DEVICES, "BOTH_DTYPES": BOTH_DTYPES, "FLOAT64_ONLY": FLOAT64_ONLY,
    "LOW_DTYPES": LOW_DTYPES, "ALL_DTYPES": ALL_DTYPES,
    "ALL_ACTIVATIONS": ALL_ACTIVATIONS, "BOTH_BIASES": BOTH_BIASES,
    "ALL_NETWORKS": ALL_NETWORKS, "SMALL": SMALL, "WORKED_EXAMPLE": WORKED_EXAMPLE,
}
