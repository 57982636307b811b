"""A published worked example's file, read and checked: its network, start, data and the
values the publication printed (``check --example FILE``; ``harness.check.example``
reproduces them).

The file (TOML or JSON) holds the network, its starting weights, the data, the learning rate,
and the values the publication printed, each with the digits it was printed to::

    title = "The backprop worked example"
    source = "who published it, where"

    [network]                 # widths input..output; activation of the hidden layers
    widths = [1, 1, 1]        # output_activation = "linear", bias = false, dtype = "float64"
    activation = "linear"

    [start]                   # W1, b1, W2, ...: W is (fan_in, fan_out), W[i][j] joins unit i
    W1 = [[0.15]]             # of the layer below to unit j of the layer above; a = h @ W + b
    W2 = [[0.3]]

    [data]
    x = [[1.0]]               # (batch, inputs): any inputs and targets
    y = [[-1.0]]
    lr = 0.1

    [[published]]             # what: "loss", "output", "gradient", "weight" or "prediction"
    what = "gradient"         # (a prediction also gives its input x); tensor and entry name
    tensor = "W1"             # the number; after = the SGD steps before it (default 0)
    entry = [0, 0]
    value = "0.3135"          # a string keeps the printed digits: the tolerance is half a
    name = "dE/dw_ih"         # unit in the last printed place (or give tolerance = ...)

E is 1/2 * mean over the batch of ||y_hat - y||^2 (for one sample, the sum over the outputs
of 1/2 (y_hat - y)^2). Any mistake in the file is one line naming the file and the key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np

from implementations.problem import (
    ACTIVATIONS,
    DTYPES,
    BenchError,
    NetworkSpec,
    Problem,
    SpecError,
    flatten,
    validate_lr,
)

WHATS = ("loss", "output", "gradient", "weight", "prediction")
MAX_AFTER = 1_000_000


@dataclass(frozen=True)
class Published:
    """One printed value: what it is, where, after how many steps, and its digits."""

    name: str
    what: str
    text: str
    tolerance: float
    after: int = 0
    tensor: str | None = None
    entry: tuple[int, ...] = ()
    x: tuple = ()

    @property
    def value(self) -> float:
        return float(self.text)


@dataclass
class Example:
    """A worked example read from a file: its problem and its published values."""

    path: Path
    title: str
    source: str
    problem: Problem
    published: list[Published] = field(default_factory=list)


# ---- reading the file ------------------------------------------------------------------------

def read(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"--example {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchError(f"{path.name}: cannot be read ({exc})") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise BenchError(f"{path.name}:{exc.lineno}: not JSON ({exc.msg})") from None
    try:
        import tomllib  # the standard library from Python 3.11 (tomli before)
    except ImportError:  # Python 3.10
        raise BenchError(f"{path.name}: TOML needs Python 3.11 or later; write it as JSON"
                         ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"{path.name}: not TOML ({exc})") from None


def read_example(path: str | Path) -> Example:
    """The example in a file, or a one-line BenchError naming what is wrong with it."""
    path = Path(path)
    d = read(path)
    if not isinstance(d, dict):
        raise BenchError(f"{path.name}: expected a table of network, start, data, published")
    where = path.name
    net = section(d, "network", where)
    spec = network(net, where)
    params = start(section(d, "start", where), spec, where)
    data = section(d, "data", where)
    x = matrix(require(data, "x", "data", where), "data x", where, (None, spec.widths[0]))
    y = matrix(require(data, "y", "data", where), "data y", where, (x.shape[0], spec.widths[-1]))
    try:
        lr = validate_lr(require(data, "lr", "data", where))
    except SpecError as exc:
        raise BenchError(f"{where}: [data] {exc}") from None
    problem = Problem(spec, x, y, params, lr, 0)
    items = d.get("published")
    if not isinstance(items, list) or not items:
        raise BenchError(f"{where}: no [[published]] values to check")
    published = [value_of(item, k, problem, where) for k, item in enumerate(items, 1)]
    return Example(path, str(d.get("title", path.stem)), str(d.get("source", "")), problem,
                   published)


def section(d: dict, name: str, where: str) -> dict:
    value = d.get(name)
    if not isinstance(value, dict):
        raise BenchError(f"{where}: the [{name}] table is missing")
    return value


def require(d: dict, key: str, table: str, where: str):
    if key not in d:
        raise BenchError(f"{where}: [{table}] {key} is missing")
    return d[key]


def network(net: dict, where: str) -> NetworkSpec:
    widths = require(net, "widths", "network", where)
    if not isinstance(widths, list) or not all(isinstance(w, int) and not isinstance(w, bool)
                                               for w in widths):
        raise BenchError(f"{where}: [network] widths must be a list of integers")
    bias = net.get("bias", False)
    if not isinstance(bias, bool):
        raise BenchError(f"{where}: [network] bias must be true or false")
    for key in ("activation", "output_activation"):
        if net.get(key, "linear") not in ACTIVATIONS:
            raise BenchError(f"{where}: [network] {key} {net.get(key)!r} is not one of "
                             f"{', '.join(ACTIVATIONS)}")
    if net.get("dtype", "float64") not in DTYPES:
        raise BenchError(f"{where}: [network] dtype must be one of {', '.join(DTYPES)}")
    try:
        return NetworkSpec(tuple(widths), net.get("activation", "linear"),
                           net.get("output_activation", "linear"), bias,
                           net.get("dtype", "float64"))
    except SpecError as exc:
        raise BenchError(f"{where}: [network] {exc}") from None


def matrix(value, what: str, where: str, shape: tuple) -> np.ndarray:
    """A float64 array of the given shape (None: any length) from a nested list of numbers."""
    try:
        a = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise BenchError(f"{where}: {what} is not a list of numbers") from None
    ok = a.ndim == len(shape) and all(s is None or s == n for s, n in zip(shape, a.shape))
    if not ok or a.size == 0:
        want = "×".join("N" if s is None else str(s) for s in shape)
        raise BenchError(f"{where}: {what} has shape {a.shape}, the network needs {want}")
    if not np.all(np.isfinite(a)):
        raise BenchError(f"{where}: {what} holds a value that is not finite")
    return a


def start(table: dict, spec: NetworkSpec, where: str) -> list:
    names = spec.param_names()
    extra = sorted(set(table) - set(names))
    if extra:
        raise BenchError(f"{where}: [start] {', '.join(extra)}: not a parameter of this network "
                         f"({', '.join(names)})")
    params = []
    for l, (fan_in, fan_out) in enumerate(zip(spec.widths, spec.widths[1:]), 1):
        W = matrix(require(table, f"W{l}", "start", where), f"[start] W{l}", where,
                   (fan_in, fan_out))
        b = (matrix(require(table, f"b{l}", "start", where), f"[start] b{l}", where,
                    (fan_out,)) if spec.bias else None)
        params.append((W, b))
    return params


def digits(text: str, where: str, name: str) -> float:
    """Half a unit in the last printed place of a number written as text."""
    try:
        d = Decimal(text.strip())
    except InvalidOperation:
        raise BenchError(f"{where}: published {name}: {text!r} is not a number") from None
    if not d.is_finite():
        raise BenchError(f"{where}: published {name}: {text!r} is not finite")
    return 0.5 * 10.0 ** d.as_tuple().exponent


def value_of(item, k: int, problem: Problem, where: str) -> Published:
    if not isinstance(item, dict):
        raise BenchError(f"{where}: published value {k} is not a table")
    name = str(item.get("name", f"value {k}"))
    what = item.get("what")
    if what not in WHATS:
        raise BenchError(f"{where}: published {name}: what {what!r} is not one of "
                         f"{', '.join(WHATS)}")
    raw = require(item, "value", f"published {name}", where)
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise BenchError(f"{where}: published {name}: value {raw!r} is not a number")
    text = raw if isinstance(raw, str) else repr(raw)
    tolerance = item.get("tolerance", digits(text, where, name))
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise BenchError(f"{where}: published {name}: tolerance must be a number >= 0")
    after = item.get("after", 0)
    if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after <= MAX_AFTER:
        raise BenchError(f"{where}: published {name}: after must be a whole number of steps "
                         f"from 0 to {MAX_AFTER:,}")
    p = Published(name, what, text.strip(), float(tolerance), after)
    return placed(p, item, problem, where)


def placed(p: Published, item: dict, problem: Problem, where: str) -> Published:
    """The value with its tensor, entry and input checked against the network."""

    spec = problem.spec
    if p.what == "loss":
        return p
    if p.what in ("gradient", "weight"):
        tensor = item.get("tensor")
        if tensor not in spec.param_names():
            raise BenchError(f"{where}: published {p.name}: tensor {tensor!r} is not one of "
                             f"{', '.join(spec.param_names())}")
        shape = flatten(problem.params0)[spec.param_names().index(tensor)].shape
        return replace(p, tensor=tensor, entry=entry_of(item, shape, p.name, where))
    x = problem.x
    if p.what == "prediction":
        x = matrix(require(item, "x", f"published {p.name}", where), f"published {p.name} x",
                   where, (None, spec.widths[0]))
    return replace(p, x=tuple(map(tuple, x.tolist())),
                   entry=entry_of(item, (x.shape[0], spec.widths[-1]), p.name, where))


def entry_of(item: dict, shape: tuple, name: str, where: str) -> tuple[int, ...]:
    entry = item.get("entry", [0] * len(shape))
    if (not isinstance(entry, list) or len(entry) != len(shape)
            or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n
                       for i, n in zip(entry, shape))):
        raise BenchError(f"{where}: published {name}: entry {entry!r} is not an index into "
                         f"shape {shape}")
    return tuple(entry)
