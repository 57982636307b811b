"""A published worked example's file, read strictly: its network, start, data, its loss
convention, and the values the publication printed (``check --example FILE``;
``harness.check.example`` reproduces them in every framework).

The file (TOML or JSON) holds the network, its starting weights, the data, the learning rate,
how the publication writes its loss, and each value it printed, with the digits it was
printed to::

    title = "The backprop worked example"
    source = "who published it, where"

    [network]                 # widths input..output; activation of the hidden layers
    widths = [1, 1, 1]        # output_activation = "linear"; dtype = "float64"
    activation = "linear"     # bias = false, true (one per unit) or "shared" (one per layer)
    bias = false              # frozen = ["b1", "b2"]: tensors the publication never updates

    [start]                   # W1, b1, W2, ...: W is (fan_in, fan_out), W[i][j] joins unit i
    W1 = [[0.15]]             # of the layer below to unit j of the layer above; a = h @ W + b
    W2 = [[0.3]]              # (a shared bias is one number)

    [data]
    x = [[1.0]]               # (batch, inputs): any inputs and targets
    y = [[-1.0]]
    lr = 0.1

    [loss]                    # how the publication writes E (all optional; these are the
    half = true               # defaults, this suite's E = 1/2 mean_batch ||y_hat - y||^2):
    batch = "mean"            # the 1/2 or not; "mean" or "sum" over the samples; "sum" or
    outputs = "sum"           # "mean" over the outputs; of = "output" with output = j: the
    of = "loss"               # output y_hat_j itself is what is differentiated

    [[published]]             # what: loss, output, prediction (with its input x), weight,
    what = "gradient"         # gradient, update (lr * gradient, the amount subtracted),
    tensor = "W1"             # net_input, activation, delta (dE/da), activation_gradient
    entry = [0, 0]            # (dE/dh), input_gradient (dE/dx); tensor and entry place it,
    value = "0.3135"          # layer (1..L) for the per-unit values, whose entry is [unit] or
    name = "dE/dw_ih"         # [sample, unit]; after = the SGD steps before it (default 0);
                              # sample = k: of sample k's loss alone; erratum = "why the
                              # publication's value is known not to follow" (noted, not counted)

A value written as a string keeps its printed digits: the tolerance is half a unit in the
last printed place, and no less than 32 float64 rounding units of the value, since a value
printed to 17 digits is no more exact than arithmetic done in another order (or give
``tolerance = ...``). Anything the format does not know, a wrong type
(a boolean is not a number), a tolerance that is not finite and at least 0, or a size past
what a hand calculation prints is refused in one line naming the file and the key.
"""

from __future__ import annotations

import json
import math
import stat
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np

from harness.check.explain import Convention
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

WHATS = ("loss", "output", "prediction", "weight", "gradient", "update", "net_input",
         "activation", "delta", "activation_gradient", "input_gradient")
PER_UNIT = ("net_input", "activation", "delta", "activation_gradient")  # these take a layer
PER_TENSOR = ("weight", "gradient", "update")
MAX_AFTER = 1_000_000
MAX_WIDTH, MAX_DEPTH, MAX_BATCH, MAX_VALUES = 64, 16, 1000, 10_000
MAX_BYTES = 1 << 20
MAX_TEXT = 200  # characters of a name, a title, an erratum
ULPS = 32  # a value printed to 17 digits is as exact as float64 arithmetic in another order
KEYS = {
    "": {"title", "source", "network", "start", "data", "loss", "published"},
    "network": {"widths", "activation", "output_activation", "bias", "frozen", "dtype"},
    "data": {"x", "y", "lr"},
    "loss": {"half", "batch", "outputs", "of", "output"},
    "published": {"name", "what", "value", "tolerance", "after", "tensor", "entry", "layer",
                  "sample", "x", "erratum"},
}


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
    layer: int | None = None
    sample: int | None = None
    erratum: str = ""

    @property
    def value(self) -> float:
        return float(self.text)


@dataclass(frozen=True)
class Loss:
    """How the publication writes E; ``scale(batch, outputs)`` is E_theirs / E_ours."""

    half: bool = True
    batch: str = "mean"
    outputs: str = "sum"
    of: str = "loss"
    output: int | None = None

    def scale(self, batch: int, outputs: int) -> float:
        if self.of == "output":
            return 1.0
        return ((1.0 if self.half else 2.0) * (batch if self.batch == "sum" else 1)
                / (outputs if self.outputs == "mean" else 1))

    def text(self) -> str:
        if self.of == "output":
            return f"the output ŷ[{self.output}] itself is differentiated (no loss)"
        half = "½ · " if self.half else ""
        over_b = "(1/B) Σ_batch " if self.batch == "mean" else "Σ_batch "
        over_o = "(1/outputs) ‖ŷ − y‖²" if self.outputs == "mean" else "‖ŷ − y‖²"
        return f"E = {half}{over_b}{over_o}"


@dataclass
class Example:
    """A worked example read from a file: its problem, conventions and published values."""

    path: Path
    title: str
    source: str
    problem: Problem
    published: list[Published] = field(default_factory=list)
    loss: Loss = field(default_factory=Loss)
    shared: bool = False  # one bias per layer, shared by its units
    frozen: tuple[str, ...] = ()  # tensors never updated

    @property
    def scale(self) -> float:
        return self.loss.scale(self.problem.batch, self.problem.spec.widths[-1])

    @property
    def convention(self) -> Convention:
        return Convention(self.scale, self.loss.text())

    @property
    def standard(self) -> bool:
        """Whether every framework's own update reproduces it (no shared or frozen tensor)."""
        return not (self.shared or self.frozen)


# ---- reading the file ------------------------------------------------------------------------

def read(path: str | Path) -> dict:
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError:
        raise BenchError(f"--example {path}: no such file") from None
    if not stat.S_ISREG(mode):
        raise BenchError(f"--example {path}: not a regular file")
    if path.stat().st_size > MAX_BYTES:
        raise BenchError(f"{path.name}: {path.stat().st_size:,} bytes is more than a worked "
                         f"example (at most {MAX_BYTES:,})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchError(f"{path.name}: cannot be read ({exc})"[:300]) from None
    if "\0" in text:
        raise BenchError(f"{path.name}: holds a NUL byte: not a text file")
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text, parse_constant=refuse_constant(path))
        except json.JSONDecodeError as exc:
            raise BenchError(f"{path.name}:{exc.lineno}: not JSON ({exc.msg})") from None
        except RecursionError:
            raise BenchError(f"{path.name}: nested too deep to be a worked example") from None
    try:
        import tomllib  # the standard library from Python 3.11 (tomli before)
    except ImportError:  # Python 3.10
        raise BenchError(f"{path.name}: TOML needs Python 3.11 or later; write it as JSON"
                         ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"{path.name}: not TOML ({exc})") from None
    except RecursionError:
        raise BenchError(f"{path.name}: nested too deep to be a worked example") from None


def refuse_constant(path: Path):
    def parse(name: str):
        raise BenchError(f"{path.name}: {name} is not a number a publication prints")
    return parse


def read_example(path: str | Path) -> Example:
    """The example in a file, or a one-line BenchError naming what is wrong with it."""
    path = Path(path)
    d = read(path)
    where = path.name
    if not isinstance(d, dict):
        raise BenchError(f"{where}: expected a table of network, start, data, published")
    known(d, "", where)
    title, source = text_of(d, "title", "", path.stem, where), text_of(d, "source", "", "", where)
    net = section(d, "network", where)
    spec, shared, frozen = network(net, where)
    params = start(section(d, "start", where), spec, shared, where)
    x, y, lr = data(section(d, "data", where), spec, where)
    loss = loss_of(d.get("loss", {}), spec, x, where)
    problem = Problem(spec, x, y, params, lr, 0)
    items = d.get("published")
    if not isinstance(items, list) or not items:
        raise BenchError(f"{where}: no [[published]] values to check")
    if len(items) > MAX_VALUES:
        raise BenchError(f"{where}: {len(items):,} published values; at most {MAX_VALUES:,}")
    example = Example(path, title, source, problem, [], loss, shared, frozen)
    example.published = [value_of(item, k, example, where) for k, item in enumerate(items, 1)]
    return example


def known(d: dict, table: str, where: str) -> None:
    """Refuse a key the format does not know: a typo must not fall back to a default."""
    unknown = sorted(str(k) for k in d if k not in KEYS[table])
    if unknown:
        at = f"[{table}] " if table else ""
        raise BenchError(f"{where}: {at}{printable(unknown[0])} is not a key of the format "
                         f"(it knows {', '.join(sorted(KEYS[table]))})"[:300])


def printable(text: str) -> str:
    return repr(text) if not text.isprintable() else text


def text_of(d: dict, key: str, table: str, default: str, where: str) -> str:
    value = d.get(key, default)
    if not isinstance(value, str) or not value.isprintable() or len(value) > MAX_TEXT:
        at = f"[{table}] " if table else ""
        raise BenchError(f"{where}: {at}{key} must be one line of printable text of at most "
                         f"{MAX_TEXT} characters")
    return value


def section(d: dict, name: str, where: str) -> dict:
    value = d.get(name)
    if not isinstance(value, dict):
        raise BenchError(f"{where}: the [{name}] table is missing")
    if name in KEYS:
        known(value, name, where)
    return value


def require(d: dict, key: str, table: str, where: str):
    if key not in d:
        raise BenchError(f"{where}: [{table}] {key} is missing")
    return d[key]


def choice(d: dict, key: str, table: str, options: tuple, default, where: str):
    value = d.get(key, default)
    if isinstance(value, bool) != isinstance(default, bool) or value not in options:
        raise BenchError(f"{where}: [{table}] {key} {value!r} is not one of "
                         f"{', '.join(map(repr, options))}"[:300])
    return value


def network(net: dict, where: str) -> tuple[NetworkSpec, bool, tuple[str, ...]]:
    widths = require(net, "widths", "network", where)
    if not isinstance(widths, list) or not all(isinstance(w, int) and not isinstance(w, bool)
                                               for w in widths):
        raise BenchError(f"{where}: [network] widths must be a list of integers")
    if len(widths) - 1 > MAX_DEPTH or any(w > MAX_WIDTH for w in widths):
        raise BenchError(f"{where}: [network] widths: a worked example has at most {MAX_DEPTH} "
                         f"layers of at most {MAX_WIDTH} units")
    bias = net.get("bias", False)
    if bias not in (True, False, "shared"):
        raise BenchError(f"{where}: [network] bias must be true, false or \"shared\"")
    act = choice(net, "activation", "network", ACTIVATIONS, "linear", where)
    out = choice(net, "output_activation", "network", ACTIVATIONS, "linear", where)
    dtype = choice(net, "dtype", "network", DTYPES, "float64", where)
    try:
        spec = NetworkSpec(tuple(widths), act, out, bias is not False, dtype)
    except SpecError as exc:
        raise BenchError(f"{where}: [network] {exc}") from None
    frozen = net.get("frozen", [])
    if not isinstance(frozen, list) or not all(isinstance(t, str) for t in frozen) or any(
            t not in spec.param_names() for t in frozen):
        raise BenchError(f"{where}: [network] frozen must list tensors of the network "
                         f"({', '.join(spec.param_names())})")
    return spec, bias == "shared", tuple(dict.fromkeys(frozen))


def numbers(value, what: str, where: str) -> np.ndarray:
    """A float64 array from a nested list of numbers (no booleans, nothing non-finite)."""
    def walk(v, depth: int):
        if depth > 4:
            raise BenchError(f"{where}: {what} is nested too deep")
        if isinstance(v, list):
            for item in v:
                walk(item, depth + 1)
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            raise BenchError(f"{where}: {what} holds {v!r}, not a number"[:200])
    walk(value, 0)
    try:
        a = np.array(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise BenchError(f"{where}: {what} is not a rectangular list of numbers") from None
    if not np.all(np.isfinite(a)):
        raise BenchError(f"{where}: {what} holds a value that is not finite")
    return a


def matrix(value, what: str, where: str, shape: tuple) -> np.ndarray:
    """A float64 array of the given shape (None: any length up to MAX_BATCH)."""
    a = numbers(value, what, where)
    ok = a.ndim == len(shape) and all(s is None or s == n for s, n in zip(shape, a.shape))
    if not ok or a.size == 0:
        want = "×".join("N" if s is None else str(s) for s in shape)
        raise BenchError(f"{where}: {what} has shape {a.shape}, the network needs {want}")
    if a.ndim and a.shape[0] > MAX_BATCH:
        raise BenchError(f"{where}: {what} has {a.shape[0]:,} rows; a worked example has at "
                         f"most {MAX_BATCH}")
    return a


def start(table: dict, spec: NetworkSpec, shared: bool, where: str) -> list:
    names = spec.param_names()
    extra = sorted(set(table) - set(names))
    if extra:
        raise BenchError(f"{where}: [start] {printable(extra[0])}: not a parameter of this "
                         f"network ({', '.join(names)})"[:300])
    params = []
    for l, (fan_in, fan_out) in enumerate(zip(spec.widths, spec.widths[1:]), 1):
        W = matrix(require(table, f"W{l}", "start", where), f"[start] W{l}", where,
                   (fan_in, fan_out))
        b = None
        if spec.bias and shared:
            one = numbers(require(table, f"b{l}", "start", where), f"[start] b{l}", where)
            if one.ndim != 0:
                raise BenchError(f"{where}: [start] b{l} is one number: the bias is shared")
            b = np.full(fan_out, float(one))
        elif spec.bias:
            b = matrix(require(table, f"b{l}", "start", where), f"[start] b{l}", where,
                       (fan_out,))
        params.append((W, b))
    return params


def data(table: dict, spec: NetworkSpec, where: str) -> tuple[np.ndarray, np.ndarray, float]:
    x = matrix(require(table, "x", "data", where), "[data] x", where, (None, spec.widths[0]))
    y = matrix(require(table, "y", "data", where), "[data] y", where,
               (x.shape[0], spec.widths[-1]))
    lr = require(table, "lr", "data", where)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)):
        raise BenchError(f"{where}: [data] lr must be a number, not {lr!r}"[:200])
    try:
        return x, y, validate_lr(lr)
    except SpecError as exc:
        raise BenchError(f"{where}: [data] {exc}") from None


def loss_of(table, spec: NetworkSpec, x: np.ndarray, where: str) -> Loss:
    if not isinstance(table, dict):
        raise BenchError(f"{where}: [loss] must be a table")
    known(table, "loss", where)
    half = table.get("half", True)
    if not isinstance(half, bool):
        raise BenchError(f"{where}: [loss] half must be true or false")
    loss = Loss(half, choice(table, "batch", "loss", ("mean", "sum"), "mean", where),
                choice(table, "outputs", "loss", ("sum", "mean"), "sum", where),
                choice(table, "of", "loss", ("loss", "output"), "loss", where))
    if loss.of == "output":
        j = table.get("output")
        if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < spec.widths[-1]:
            raise BenchError(f"{where}: [loss] of = \"output\" needs output = the index of the "
                             f"output differentiated (0 to {spec.widths[-1] - 1})")
        if x.shape[0] != 1:
            raise BenchError(f"{where}: [loss] of = \"output\" differentiates the output of one "
                             f"sample: give one row of data")
        loss = replace(loss, output=j)
    elif "output" in table:
        raise BenchError(f"{where}: [loss] output is for of = \"output\" only")
    return loss


def digits(text: str, where: str, name: str) -> float:
    """Half a unit in the last printed place of a number written as text."""
    try:
        d = Decimal(text.strip())
    except InvalidOperation:
        raise BenchError(f"{where}: published {name}: {text!r} is not a number") from None
    if not d.is_finite():
        raise BenchError(f"{where}: published {name}: {text!r} is not finite")
    if not math.isfinite(float(d)):
        raise BenchError(f"{where}: published {name}: {text!r} is out of the range of a float")
    return 0.5 * 10.0 ** d.as_tuple().exponent


def value_of(item, k: int, example: Example, where: str) -> Published:
    if not isinstance(item, dict):
        raise BenchError(f"{where}: published value {k} is not a table")
    name = item.get("name", f"value {k}")
    if not isinstance(name, str) or not name.isprintable() or len(name) > MAX_TEXT:
        raise BenchError(f"{where}: published value {k}: name must be one line of printable "
                         f"text of at most {MAX_TEXT} characters")
    unknown = sorted(str(key) for key in item if key not in KEYS["published"])
    if unknown:
        raise BenchError(f"{where}: published {name}: {printable(unknown[0])} is not a key of "
                         f"the format (it knows {', '.join(sorted(KEYS['published']))})"[:300])
    what = item.get("what")
    if what not in WHATS:
        raise BenchError(f"{where}: published {name}: what {what!r} is not one of "
                         f"{', '.join(WHATS)}"[:300])
    raw = require(item, "value", f"published {name}", where)
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise BenchError(f"{where}: published {name}: value {raw!r} is not a number"[:200])
    text = raw.strip() if isinstance(raw, str) else repr(raw)
    printed = max(digits(text, where, name), ULPS * np.finfo(np.float64).eps * abs(float(text)))
    tolerance = item.get("tolerance", printed)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not (
            math.isfinite(tolerance) and tolerance >= 0):
        raise BenchError(f"{where}: published {name}: tolerance must be a finite number >= 0")
    after = whole(item, "after", 0, MAX_AFTER, name, where)
    erratum = item.get("erratum", "")
    if not isinstance(erratum, str) or not erratum.isprintable() or len(erratum) > MAX_TEXT:
        raise BenchError(f"{where}: published {name}: erratum must be one line of text")
    p = Published(name, what, text, float(tolerance), after, erratum=erratum)
    return placed(p, item, example, where)


def whole(item: dict, key: str, default, top: int, name: str, where: str):
    value = item.get(key, default)
    if value is None and default is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise BenchError(f"{where}: published {name}: {key} must be a whole number from 0 to "
                         f"{top:,}")
    return value


def placed(p: Published, item: dict, example: Example, where: str) -> Published:
    """The value with its tensor, layer, sample, entry and input checked against the network;
    a key that does not belong to its kind of value is refused."""
    spec, problem = example.problem.spec, example.problem
    allowed = {"loss": {"sample"}, "output": {"entry"}, "prediction": {"entry", "x"},
               **dict.fromkeys(PER_TENSOR, {"tensor", "entry", "sample"}),
               **dict.fromkeys(PER_UNIT, {"layer", "entry"}), "input_gradient": {"entry"}}
    extra = sorted(set(item) & {"tensor", "entry", "layer", "sample", "x"} - allowed[p.what])
    if extra:
        raise BenchError(f"{where}: published {p.name}: {extra[0]} does not apply to a "
                         f"{p.what} value")
    if example.loss.of == "output" and (p.after or p.what in ("loss", "update")):
        raise BenchError(f"{where}: published {p.name}: an example that differentiates the "
                         f"output itself has no loss and takes no step")
    sample = whole(item, "sample", None, problem.batch - 1, p.name, where)
    p = replace(p, sample=sample)
    if p.what == "loss":
        return p
    if p.what in PER_TENSOR:
        tensor = item.get("tensor")
        if tensor not in spec.param_names():
            raise BenchError(f"{where}: published {p.name}: tensor {tensor!r} is not one of "
                             f"{', '.join(spec.param_names())}"[:300])
        shape = flatten(problem.params0)[spec.param_names().index(tensor)].shape
        if example.shared and tensor.startswith("b"):
            shape = ()  # one shared number
        return replace(p, tensor=tensor, entry=entry_of(item, shape, p.name, where))
    if p.what in PER_UNIT:
        layer = item.get("layer")
        if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= spec.depth:
            raise BenchError(f"{where}: published {p.name}: layer must be 1 to {spec.depth} "
                             f"(the layer whose units it is about)")
        shape = (problem.batch, spec.widths[layer])
        return replace(p, layer=layer, entry=unit_entry(item, shape, p.name, where))
    if p.what == "input_gradient":
        return replace(p, entry=unit_entry(item, (problem.batch, spec.widths[0]), p.name, where))
    x = problem.x
    if p.what == "prediction":
        x = matrix(require(item, "x", f"published {p.name}", where), f"published {p.name} x",
                   where, (None, spec.widths[0]))
    return replace(p, x=tuple(map(tuple, x.tolist())),
                   entry=entry_of(item, (x.shape[0], spec.widths[-1]), p.name, where))


def unit_entry(item: dict, shape: tuple, name: str, where: str) -> tuple[int, ...]:
    """[sample, unit], or [unit] when there is one sample."""
    if shape[0] == 1 and isinstance(item.get("entry"), list) and len(item["entry"]) == 1:
        return (0, *entry_of(item, shape[1:], name, where))
    return entry_of(item, shape, name, where)


def entry_of(item: dict, shape: tuple, name: str, where: str) -> tuple[int, ...]:
    if "entry" not in item and int(np.prod(shape)) > 1:
        raise BenchError(f"{where}: published {name}: entry is missing: which of the "
                         f"{'×'.join(map(str, shape))} numbers is it?")
    entry = item.get("entry", [0] * len(shape))
    if (not isinstance(entry, list) or len(entry) != len(shape)
            or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n
                       for i, n in zip(entry, shape))):
        raise BenchError(f"{where}: published {name}: entry {entry!r} is not an index into "
                         f"shape {shape}"[:300])
    return tuple(entry)
