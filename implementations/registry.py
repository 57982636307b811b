"""The variants: names mapped to Trainer classes, imported lazily.

A *variant* is one way to run a framework's update loop. Each is labelled ``idiomatic`` (the
way the framework's tutorials write it) or ``optimised`` (the fastest honest way the framework
allows; it never changes what is computed). A framework that cannot be imported, or a device
that is not there, makes a variant *unavailable, with the reason*; it never crashes a run.

Adding a framework is one new module plus one line in ``VARIANTS``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from implementations.problem import BenchError, Problem


class Unavailable(BenchError):
    """A variant that cannot run here: framework missing, device absent, network unsupported."""


@dataclass(frozen=True)
class Framework:
    """A framework: the package it needs and the module that implements the contract."""

    name: str
    package: str
    module: str
    contract: bool = True  # defines forward, loss, grads and sgd_step (numba's loop does not)
    arrays: bool = True  # has device arrays with sync and @ (matmul peak, warm-up); not scalars

    def import_module(self):
        """The implementation module, or raise Unavailable if the package is missing."""
        try:
            importlib.import_module(self.package)
        except ImportError as exc:
            raise Unavailable(f"{self.name}: {self.package} is not installed ({exc})") from None
        return importlib.import_module(f"implementations.{self.module}")


FRAMEWORKS: dict[str, Framework] = {
    f.name: f
    for f in [
        Framework("python", "math", "python_scalar", arrays=False),
        Framework("numpy", "numpy", "numpy_backprop"),
        Framework("numba", "numba", "numba_limit", contract=False, arrays=False),
        Framework("torch", "torch", "torch_backprop"),
        Framework("jax", "jax", "jax_backprop"),
    ]
}


@dataclass(frozen=True)
class Variant:
    """One registered way of running the update loop.

    Attributes:
        name: registry name, used on the command line.
        framework: key into FRAMEWORKS; variants of one framework share a worker process.
        trainer: the Trainer class name in the framework's module.
        kind: "idiomatic" or "optimised".
        description: one line for tables and ``--help``.
        devices: devices it can run on.
        dtypes: dtypes it can run.
        worked_example_only: True if it runs the worked example's shape only: 1-1-1, batch 1.
        baseline: the variant that compiling is measured against (for "pays off after N steps").
    """

    name: str
    framework: str
    trainer: str
    kind: str
    description: str
    devices: tuple[str, ...] = ("cpu",)
    dtypes: tuple[str, ...] = ("float32", "float64")
    worked_example_only: bool = False
    baseline: str | None = None

    def why_not(self, problem: Problem, device: str) -> str | None:
        """The reason this variant cannot run this problem on this device, or None."""
        spec = problem.spec
        if device not in self.devices:
            return f"{self.name} runs on {' or '.join(self.devices)} only, not {device}"
        if spec.dtype not in self.dtypes:
            return f"{self.name} runs {' or '.join(self.dtypes)} only, not {spec.dtype}"
        if self.worked_example_only and not (spec.is_worked_example and problem.batch == 1):
            widths = "-".join(map(str, spec.widths))
            return (
                f"{self.name} runs the 1-1-1 network with batch 1 only, "
                f"not {widths} with batch {problem.batch}"
            )
        return None

    def make(self, problem: Problem, device: str = "cpu"):
        """A ready Trainer for this problem on this device, or raise Unavailable."""
        reason = self.why_not(problem, device)
        if reason:
            raise Unavailable(reason)
        module = FRAMEWORKS[self.framework].import_module()
        module.check_device(device)
        return getattr(module, self.trainer)(problem, device)


ALL_DEVICES = ("cpu", "cuda")
_V = Variant
# fmt: off
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in [
        _V("python", "python", "Trainer", "idiomatic",
           "the worked example's loop in pure-Python floats", dtypes=("float64",),
           worked_example_only=True),
        _V("numpy", "numpy", "Trainer", "idiomatic",
           "NumPy, backward pass written by hand"),
        _V("limit", "numba", "Trainer", "optimised",
           "numba @njit loop, inputs as arguments: the physical limit of the serial chain",
           dtypes=("float64",), worked_example_only=True, baseline="python"),
        _V("torch", "torch", "Trainer", "idiomatic",
           "PyTorch eager autograd: backward(), no_grad update", devices=ALL_DEVICES),
        _V("torch-compile", "torch", "CompileTrainer", "optimised",
           "torch.compile of one functional step (torch.func)", devices=ALL_DEVICES,
           baseline="torch"),
        _V("torch-block", "torch", "BlockTrainer", "optimised",
           "torch.compile of a block of unrolled steps: dispatch paid once per block",
           devices=ALL_DEVICES, baseline="torch"),
        _V("torch-cudagraph", "torch", "CudaGraphTrainer", "optimised",
           "whole step captured once as a CUDA graph and replayed", devices=("cuda",),
           baseline="torch"),
        _V("jax-eager", "jax", "EagerTrainer", "idiomatic",
           "jax.grad with no jit: retraces every step (what you get without jit)",
           devices=ALL_DEVICES),
        _V("jax", "jax", "Trainer", "idiomatic",
           "jax.jit of one step, driven from a Python loop", devices=ALL_DEVICES,
           baseline="jax-eager"),
        _V("jax-scan", "jax", "ScanTrainer", "optimised",
           "K steps fused in one jit (fori_loop over unrolled chunks)", devices=ALL_DEVICES,
           baseline="jax-eager"),
    ]
}
# fmt: on


def get(name: str) -> Variant:
    """The variant called name, or a BenchError that lists the known ones."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise BenchError(
            f"unknown variant {name!r}: choose from {', '.join(VARIANTS)}"
        ) from None


def get_framework(name: str) -> Framework:
    """The framework called name, or a BenchError that lists the known ones."""
    try:
        return FRAMEWORKS[name]
    except KeyError:
        raise BenchError(
            f"unknown framework {name!r}: choose from {', '.join(FRAMEWORKS)}"
        ) from None


def variants_of(framework: str) -> list[Variant]:
    return [v for v in VARIANTS.values() if v.framework == framework]


def main_variant(framework: str) -> Variant:
    """The variant that runs a framework's own ``Trainer``: its limits are the framework's."""
    return next(v for v in variants_of(framework) if v.trainer == "Trainer")
