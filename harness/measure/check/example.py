"""A published worked example, written down as data, reproduced by every framework
(``check --example FILE``).

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
of 1/2 (y_hat - y)^2). Every framework's own functions (forward, loss, grads, sgd_step), and
every variant's Trainer for what it can show (its weights and loss after N steps, its own
gradients), must reproduce every value. A value no one reproduces is diagnosed against what
they all compute (a factor 2 is a missing 1/2 in the publication's E, say).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np

from harness.measure.check import diagnose
from harness.measure.check.render import notes
from harness.tables import text_table
from implementations.problem import (
    ACTIVATIONS,
    DTYPES,
    BenchError,
    NetworkSpec,
    Problem,
    SpecError,
    cast_problem,
    flatten,
    map_params,
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


# ---- what each subject computes ----------------------------------------------------------------

class Values:
    """What one subject gives for each published value it can compute (the others: None)."""

    def __init__(self, crashed: bool = False):
        self.loss, self.grads, self.weights, self.outputs = {}, None, {}, {}
        self.crashed = crashed

    def get(self, p: Published) -> float | None:
        if self.crashed:
            return math.nan
        if p.what == "loss":
            return self.loss.get(p.after)
        if p.what == "gradient":
            return None if self.grads is None else pick(self.grads, p)
        if p.what == "weight":
            return pick(self.weights[p.after], p) if p.after in self.weights else None
        out = self.outputs.get((p.after, p.x))
        return None if out is None else float(out[p.entry])


def pick(flat: dict, p: Published) -> float:
    return float(np.asarray(flat[p.tensor])[p.entry])


def named(spec: NetworkSpec, params) -> dict:
    """{W1: array, ...} in the network's shapes (a Python float stands for a 1 x 1 tensor)."""
    shapes = [(a, b) for a, b in zip(spec.widths, spec.widths[1:])]
    want = [s for a, b in shapes for s in ([(a, b), (b,)] if spec.bias else [(a, b)])]
    tensors = [np.asarray(t, np.float64) for t in flatten(params)]
    return {n: t.reshape(w) if t.size == int(np.prod(w)) else t
            for n, t, w in zip(spec.param_names(), tensors, want)}


def module_values(module, example: Example) -> Values:
    """A framework's own forward, loss, grads and sgd_step on the example."""
    problem, values = example.problem, Values()
    spec = problem.spec
    x, y, params = cast_problem(problem)
    fx, fy = module.to_framework(x), module.to_framework(y)
    p = map_params(lambda a: module.to_framework(a, trainable=True), params)
    _, g = module.grads(spec, p, fx, fy)
    values.grads = named(spec, map_params(module.to_numpy, g))
    inputs = {q.x for q in example.published if q.what in ("output", "prediction")}
    done = 0
    for after in sorted({q.after for q in example.published} | {0}):
        for _ in range(after - done):
            p = module.sgd_step(spec, p, fx, fy, problem.lr)
        done = after
        values.loss[after] = scalar(module, module.loss(spec, p, fx, fy))
        values.weights[after] = named(spec, map_params(module.to_numpy, p))
        for q in inputs:
            xq = module.to_framework(np.array(q, dtype=x.dtype))
            out = np.asarray(module.to_numpy(module.forward(spec, p, xq)), np.float64)
            values.outputs[(after, q)] = out.reshape(len(q), spec.widths[-1])
    return values


def scalar(module, value) -> float:
    return float(np.asarray(module.to_numpy(value)).reshape(-1)[0])


def trainer_values(variant, example: Example) -> Values:
    """A variant's Trainer: its weights and loss after each N, its own gradients."""
    problem, values = example.problem, Values()
    trainer = variant.make(problem)
    if hasattr(trainer, "grads"):
        values.grads = named(problem.spec, trainer.grads()[1])
    done = 0
    for after in sorted({q.after for q in example.published} | {0}):
        trainer.run(after - done)
        done = after
        values.loss[after] = float(trainer.loss())
        values.weights[after] = named(problem.spec, trainer.params())
    return values


# ---- the verdict -------------------------------------------------------------------------------

@dataclass
class Outcome:
    """Per published value, what each subject gave; the subjects that could not run."""

    example: Example
    got: dict[str, Values] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def results(self, p: Published) -> dict[str, float]:
        return {n: v for n, values in self.got.items() if (v := values.get(p)) is not None}

    def wrong(self, p: Published) -> dict[str, float]:
        return {n: v for n, v in self.results(p).items()
                if not (math.isfinite(v) and abs(v - p.value) <= p.tolerance)}

    def failed(self) -> list[str]:
        """Subjects that missed a value some other subject reproduced (theirs is the bug)."""
        out = []
        for p in self.example.published:
            wrong, got = self.wrong(p), self.results(p)
            if len(wrong) < len(got):
                out += list(wrong)
        return list(dict.fromkeys(out))

    def unreproduced(self) -> list[Published]:
        """Values that no subject reproduced (the publication's error, or a misreading)."""
        return [p for p in self.example.published
                if self.results(p) and len(self.wrong(p)) == len(self.results(p))]

    @property
    def passed(self) -> bool:
        return bool(self.got) and not self.failed() and not self.unreproduced()


def render(outcome: Outcome) -> str:
    ex = outcome.example
    out = [f"{ex.title}" + (f" ({ex.source})" if ex.source else ""),
           f"{ex.problem.spec.label()}, batch {ex.problem.batch}, lr {ex.problem.lr:g}: "
           f"{len(outcome.got)} subjects, each value to the digits printed"]
    rows = []
    for p in ex.published:
        got = outcome.results(p)
        wrong = outcome.wrong(p)
        ours = np.median(list(got.values())) if got else math.nan
        worst = max((abs(v - p.value) for v in got.values()), default=math.nan)
        rows.append([p.name, p.what + (f" after {p.after}" if p.after else ""), p.text,
                     f"{ours:.12g}", f"{worst:.1e}", f"{p.tolerance:.0e}",
                     f"{len(got) - len(wrong)} of {len(got)}",
                     "ok" if got and not wrong else "FAIL"])
    out.append(text_table(["value", "what", "published", "computed (median)", "worst |diff|",
                           "tolerance", "reproduced by", "result"], rows, "llrrrrrl"))
    out += [f"note: {n}" for n in notes(outcome.notes)]
    out += verdict(outcome)
    return "\n".join(out)


def verdict(outcome: Outcome) -> list[str]:
    if not outcome.got:
        return ["\nFAILED: no framework could run the example"]
    if outcome.passed:
        n = len(outcome.example.published)
        return [f"\nPASSED: every subject reproduces all {n} published values"]
    out = ["\nFAILED:"]
    for name in outcome.failed():
        missed = [p for p in outcome.example.published if name in outcome.wrong(p)]
        shown = ", ".join(f"{p.name} = {outcome.wrong(p)[name]:.10g} (published {p.text})"
                          for p in missed[:4])
        out.append(f"  {name}: does not reproduce {len(missed)} value(s) the others do: "
                   f"{shown}")
    for p in outcome.unreproduced():
        out.append(f"  {p.name}: no framework reproduces the published {p.text}; "
                   f"{published_diagnosis(outcome, p)}")
    return out


def published_diagnosis(outcome: Outcome, p: Published) -> str:
    """What the published value is, against what every framework computes."""
    got = np.median(list(outcome.results(p).values()))
    if not got:
        return "they all compute 0"
    c = p.value / got
    named_factor = diagnose.name_factor(c, outcome.example.problem)
    head = f"they compute {got:.10g}, and the published value is {c:.4g}× that"
    if named_factor is None:
        return head + " (no known factor: a misprint, or another convention?)"
    eq, why = named_factor
    return f"{head} ({eq}): in the publication, {why}"


