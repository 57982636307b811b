"""The problem every implementation solves: the network, the data and the starting point.

Everything here is NumPy float64 and seeded, made once, so that every framework starts from
the same numbers. The default is the classic worked example: a 1-1-1 network with linear
activation and no bias, w_ih = 0.15, w_ho = 0.3, trained by SGD on X = 1 -> Y = -1 with
E = 1/2 (phi(a_o) - Y)^2.

The general case is the *inversion task*: a seeded batch x in [-1, 1] with y = -x, which needs
input width == output width. The loss is E = 1/2 * mean over the batch of ||y_hat - y||^2.

Parameters are a list with one ``(W, b)`` pair per layer: ``W`` has shape (fan_in, fan_out) and
a layer computes ``a = h @ W + b``; ``b`` is ``None`` when the network has no bias.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

ACTIVATIONS = ("linear", "sigmoid", "tanh", "relu")
DTYPES = ("float32", "float64", "bfloat16", "float16")
LOW_DTYPES = ("bfloat16", "float16")  # checked against an error model (harness.check.precision)
SHORT = {"float64": "f64", "float32": "f32", "float16": "f16", "bfloat16": "bf16"}
WORKED_EXAMPLE_WEIGHTS = (0.15, 0.3)  # w_ih, w_ho
WORKED_EXAMPLE_X, WORKED_EXAMPLE_Y = 1.0, -1.0
DEFAULT_LR = 0.1
STABLE_WIDTH = 16  # above this width the default learning rate shrinks as 1/width
DEFAULT_SEED = 0
MAX_WIDTH = 1 << 16
MAX_DEPTH = 1000  # weight layers


class BenchError(Exception):
    """A problem the user can fix. The CLI prints it as one line and exits non-zero."""


class SpecError(BenchError, ValueError):
    """An impossible network, batch, dtype or learning rate."""


@dataclass(frozen=True)
class NetworkSpec:
    """A fully connected network: widths (input, hidden..., output), activations, bias, dtype.

    Frozen and hashable, so that JAX can take it as a static argument.
    """

    widths: tuple[int, ...] = (1, 1, 1)
    activation: str = "linear"
    output_activation: str = "linear"
    bias: bool = False
    dtype: str = "float64"

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))
        validate_spec(self)

    @property
    def depth(self) -> int:
        """Number of weight layers."""
        return len(self.widths) - 1

    @property
    def is_worked_example(self) -> bool:
        """True for the 1-1-1 network of the worked example (any activation, bias, dtype)."""
        return self.widths == (1, 1, 1)

    def layer_activations(self) -> tuple[str, ...]:
        """The activation after each layer: hidden ones, then the output one."""
        return (self.activation,) * (self.depth - 1) + (self.output_activation,)

    def param_names(self) -> list[str]:
        """Names of the parameter tensors in flat order: W1, b1, W2, b2, ..."""
        names = []
        for i in range(1, self.depth + 1):
            names += [f"W{i}", f"b{i}"] if self.bias else [f"W{i}"]
        return names

    def n_weights(self) -> int:
        """Number of scalar parameters (weights and biases)."""
        return sum(a * b + (b if self.bias else 0) for a, b in zip(self.widths, self.widths[1:]))

    def label(self) -> str:
        """Short human label, e.g. '1-1-1 linear f64', '64-64-64 tanh+b f32' or
        '3-4-4-3 relu→sigmoid+b f64' (the output's activation where it is not linear)."""
        b = "+b" if self.bias else ""
        out = f"→{self.output_activation}" if self.output_activation != "linear" else ""
        return f"{'-'.join(map(str, self.widths))} {self.activation}{out}{b} {SHORT[self.dtype]}"

    def as_dict(self) -> dict:
        return {
            "widths": list(self.widths),
            "activation": self.activation,
            "output_activation": self.output_activation,
            "bias": self.bias,
            "dtype": self.dtype,
        }


def _w(spec: NetworkSpec) -> str:
    return ",".join(map(str, spec.widths))


def validate_spec(spec: NetworkSpec) -> None:
    """Raise SpecError with a one-line reason if the network cannot be built."""
    if len(spec.widths) < 2:
        raise SpecError(f"widths {_w(spec)}: need at least an input and an output width")
    if len(spec.widths) - 1 > MAX_DEPTH:  # it would run for hours: refused like sweep --depths
        raise SpecError(f"a network of {len(spec.widths) - 1} weight layers is over the limit "
                        f"of {MAX_DEPTH}")
    for w in spec.widths:
        if not isinstance(w, (int, np.integer)) or isinstance(w, bool):
            raise SpecError(f"widths {_w(spec)}: every width must be an integer")
        if w <= 0:
            raise SpecError(f"widths {_w(spec)}: every width must be 1 or more, got {w}")
        if w > MAX_WIDTH:
            raise SpecError(f"widths {_w(spec)}: width {w} is over the limit of {MAX_WIDTH}")
    for name in (spec.activation, spec.output_activation):
        if name not in ACTIVATIONS:
            raise SpecError(
                f"unknown activation {name!r}: choose from {', '.join(ACTIVATIONS)}"
            )
    if spec.dtype not in DTYPES:
        raise SpecError(f"unknown dtype {spec.dtype!r}: choose from {', '.join(DTYPES)}")


def check_inversion(spec: NetworkSpec) -> None:
    """Raise SpecError unless the inversion task (y = -x) fits the network: the data this
    suite makes needs input width == output width (a worked example read from a file brings
    its own data and needs no such thing)."""
    if spec.widths[0] != spec.widths[-1]:
        raise SpecError(
            f"widths {_w(spec)}: the inversion task (y = -x) needs the "
            f"input width ({spec.widths[0]}) to equal the output width ({spec.widths[-1]})"
        )


def validate_lr(lr: float) -> float:
    """Return lr as a float, or raise SpecError unless it is finite and positive."""
    try:
        value = float(lr)
    except (TypeError, ValueError):
        raise SpecError(f"learning rate {lr!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise SpecError(f"learning rate {lr!r} must be finite and positive")
    return value


Params = list  # list[tuple[array, array | None]], one (W, b) per layer


@dataclass(frozen=True)
class Problem:
    """Network, data and initial parameters: the identical starting point for every framework.

    Attributes:
        spec: the network.
        x: inputs, float64, shape (batch, widths[0]).
        y: targets, float64, shape (batch, widths[-1]); y = -x.
        params0: initial parameters, float64, one (W, b) per layer.
        lr: the SGD learning rate.
        seed: the seed that made x and params0.
        input_scale: the inputs are drawn from [-s, s] (1: the inversion task as it is; the
            check of float16 also runs inputs of 2^-10, whose small gradients only a scaled
            loss keeps inside float16's range).
    """

    spec: NetworkSpec
    x: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    params0: Params = field(repr=False)
    lr: float = DEFAULT_LR
    seed: int = DEFAULT_SEED
    input_scale: float = 1.0

    def __post_init__(self) -> None:
        for a in (self.x, self.y, *flatten(self.params0)):
            if isinstance(a, np.ndarray):
                a.flags.writeable = False  # the shared start: every subject gets a copy

    @property
    def batch(self) -> int:
        return self.x.shape[0]

    def flops_per_step(self) -> int:
        """FLOPs of one SGD step, counted as 6 * batch * weights (forward 2, backward 4).

        Elementwise work (activations, bias, loss, the update) is left out, as is usual; it is
        what makes tiny networks overhead-bound, not FLOP-bound.
        """
        weights = sum(a * b for a, b in zip(self.spec.widths, self.spec.widths[1:]))
        return 6 * self.batch * weights

    def as_dict(self) -> dict:
        return {**self.spec.as_dict(), "batch": self.batch, "lr": self.lr, "seed": self.seed}


def default_lr(spec: NetworkSpec) -> float:
    """0.1 (the worked example's), times 16 / width for networks wider than 16.

    Plain SGD on this loss has a largest curvature that grows about as 0.2 * width, so a fixed
    0.1 diverges from width ~1000 on (seen at 2048 and 4096); lr * curvature stays ~0.3 here.
    """
    return DEFAULT_LR * min(1.0, STABLE_WIDTH / max(spec.widths))


def make_problem(
    spec: NetworkSpec | None = None,
    batch: int = 1,
    lr: float | None = None,
    seed: int = DEFAULT_SEED,
    input_scale: float = 1.0,
) -> Problem:
    """Build the problem for a network: data and initial parameters, float64 and seeded.

    The 1-1-1 network starts from the worked example's weights (0.15, 0.3) with zero biases;
    with batch 1 and input width 1 the data is the worked example's X = 1, Y = -1. The
    learning rate defaults to ``default_lr(spec)``.
    """
    spec = spec or NetworkSpec()
    check_inversion(spec)
    lr = default_lr(spec) if lr is None else lr
    if not isinstance(batch, (int, np.integer)) or isinstance(batch, bool) or batch <= 0:
        raise SpecError(f"batch {batch!r} must be a positive integer")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise SpecError(f"seed {seed!r} must be a non-negative integer")
    lr = validate_lr(lr)
    if not (isinstance(input_scale, (int, float)) and math.isfinite(input_scale)
            and input_scale > 0):
        raise SpecError(f"input scale {input_scale!r} must be a finite number above 0")
    rng = np.random.default_rng(seed)
    x = input_scale * make_inputs(spec, batch, rng)
    return Problem(spec, x, -x, make_params(spec, rng), lr, seed, float(input_scale))


def make_inputs(spec: NetworkSpec, batch: int, rng: np.random.Generator) -> np.ndarray:
    if batch == 1 and spec.widths[0] == 1:
        return np.array([[WORKED_EXAMPLE_X]])
    return rng.uniform(-1.0, 1.0, size=(batch, spec.widths[0]))


def make_params(spec: NetworkSpec, rng: np.random.Generator) -> Params:
    if spec.is_worked_example:
        return [
            (np.array([[w]]), np.zeros(1) if spec.bias else None) for w in WORKED_EXAMPLE_WEIGHTS
        ]
    params = []
    for fan_in, fan_out in zip(spec.widths, spec.widths[1:]):
        bound = 1.0 / math.sqrt(fan_in)  # PyTorch's nn.Linear default range
        W = rng.uniform(-bound, bound, size=(fan_in, fan_out))
        b = rng.uniform(-bound, bound, size=fan_out) if spec.bias else None
        params.append((W, b))
    return params


def map_params(fn: Callable, params: Params) -> Params:
    """Apply fn to every tensor of a parameter list, keeping the (W, None) holes."""
    return [(fn(W), None if b is None else fn(b)) for W, b in params]


def flatten(params: Params) -> list:
    """The parameter tensors in the order of NetworkSpec.param_names()."""
    return [t for layer in params for t in layer if t is not None]


def unflatten(spec: NetworkSpec, tensors: Sequence) -> Params:
    """Inverse of flatten for a given network."""
    it = iter(tensors)
    return [(next(it), next(it) if spec.bias else None) for _ in range(spec.depth)]


def numpy_dtype(name: str) -> np.dtype:
    """The NumPy dtype of a format name: bfloat16 is ml_dtypes' (JAX's own), the others
    NumPy's."""
    if name == "bfloat16":
        import ml_dtypes  # a NumPy extension: only a bfloat16 network needs it

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def cast_problem(problem: Problem) -> tuple[np.ndarray, np.ndarray, Params]:
    """x, y and params0 rounded to the problem's dtype (still NumPy): what every framework
    gets. Each call returns new arrays, so that no subject can write into another's inputs
    or into the problem (whose own arrays are read-only)."""
    dt = numpy_dtype(problem.spec.dtype)
    return (
        problem.x.astype(dt),
        problem.y.astype(dt),
        map_params(lambda a: np.array(a, dtype=dt), problem.params0),  # copies, always
    )


def parse_widths(text: str) -> tuple[int, ...]:
    """Parse '4,16,16,4' into a tuple of ints, with a one-line error."""
    try:
        widths = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise SpecError(f"widths {text!r}: expected integers like 4,16,16,4") from None
    return widths
