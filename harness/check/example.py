"""A published worked example reproduced by every framework (``check --example FILE``).

``harness.check.example_file`` reads the file: the network, its starting weights, the data,
the learning rate, the publication's loss convention and the values it printed, each with
its digits. Every framework's own functions and every variant's Trainer give what they can:

* the functions (``module_values``): the loss, the outputs and predictions, the gradients
  and updates, the weights after each step, and the per-unit values: net inputs and
  activations from the framework's own forward pass on the network cut after that layer;
  deltas and dE/dh from its own gradients on each sample, where a bias (zero, if the network
  has none) makes dE/da the bias's gradient. A step is the framework's ``sgd_step``, or, for
  a shared or frozen bias, the framework's gradients applied the publication's way;
* a Trainer (``trainer_values``): its weights and loss after each step, its own gradients
  (its learning rate scaled by the loss convention, which scales every gradient alike); it
  does not run a publication's shared or frozen bias, and says so.

A publication's loss convention is a constant factor on this suite's E, and so on every
gradient, delta and step (``Example.scale``). A value no one reproduces is pinned on the
source (``published_diagnosis``): a last digit off by one (rounded from a rounded value), a
misprint (one digit changed or two swapped), a rounded intermediate carried forward (within
2%), a sign convention, another loss convention, or no known cause. A value the file marks as
an erratum is noted, not counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

from harness.check import diagnose
from harness.check.example_file import PER_TENSOR, PER_UNIT, Example, Published
from harness.check.reference import reference_output
from harness.check.render import notes
from harness.tables import text_table
from implementations.problem import (
    NetworkSpec,
    Problem,
    cast_problem,
    flatten,
    map_params,
    numpy_dtype,
)

# ---- what each subject computes ----------------------------------------------------------------

INNER = PER_UNIT + ("input_gradient",)  # values from a cut network or an added bias

Key = tuple  # (what, after, tensor, layer, sample, x): one computed array per key


def key(p: Published) -> Key:
    return (p.what, p.after, p.tensor, p.layer, p.sample, p.x if p.what == "prediction" else ())


class Values:
    """What one subject gives for each published value it can compute (the others: None)."""

    def __init__(self, crashed: bool = False):
        self.got: dict[Key, np.ndarray] = {}
        self.crashed = crashed
        self.unable: dict[str, str] = {}  # kinds of value it cannot give, and why

    def get(self, p: Published) -> float | None:
        if self.crashed:
            return math.nan
        a = self.got.get(key(p))
        if a is None:
            return None
        a = np.asarray(a, np.float64)
        return float(a.reshape(-1)[0] if a.size == 1 and not p.entry else a[p.entry])

    def put(self, p: Published, value) -> None:
        self.got[key(p)] = np.asarray(value, np.float64)


def named(spec: NetworkSpec, params) -> dict:
    """{W1: array, ...} in the network's shapes (a Python float stands for a 1 x 1 tensor)."""
    shapes = [(a, b) for a, b in zip(spec.widths, spec.widths[1:])]
    want = [s for a, b in shapes for s in ([(a, b), (b,)] if spec.bias else [(a, b)])]
    tensors = [np.asarray(t, np.float64) for t in flatten(params)]
    return {n: t.reshape(w) if t.size == int(np.prod(w)) else t
            for n, t, w in zip(spec.param_names(), tensors, want)}


def as_published(example: Example, tensors: dict) -> dict:
    """Tensors as the publication holds them: a shared bias is one number."""
    if not example.shared:
        return tensors
    return {n: (np.asarray(t).reshape(-1)[:1].reshape(()) if n.startswith("b") else t)
            for n, t in tensors.items()}


def shared_gradient(example: Example, grads: dict) -> dict:
    """A shared bias's gradient is the sum over its units; a frozen tensor's step is zero."""
    out = {}
    for n, g in grads.items():
        g = np.asarray(g, np.float64)
        if example.shared and n.startswith("b"):
            g = np.full_like(g, g.sum())
        out[n] = g
    return out


@dataclass
class Step:
    """One subject's functions on the example: its module and its parameters, as NumPy."""

    module: object
    example: Example
    params: dict = field(default_factory=dict)  # name -> float64 array, in the network's shapes

    @property
    def problem(self) -> Problem:
        return self.example.problem

    def framework(self, tensors: dict, spec: NetworkSpec | None = None):
        """The parameters as the framework's arrays, in the problem's dtype."""
        spec = spec or self.problem.spec
        dt = numpy_dtype(spec.dtype)
        flat = [self.module.to_framework(np.array(tensors[n], dtype=dt), trainable=True)
                for n in spec.param_names()]
        it = iter(flat)
        return [(next(it), next(it) if spec.bias else None) for _ in range(spec.depth)]

    def data(self, x: np.ndarray, spec: NetworkSpec | None = None):
        dt = numpy_dtype((spec or self.problem.spec).dtype)
        return self.module.to_framework(np.array(x, dtype=dt))

    def gradients(self, x: np.ndarray, y: np.ndarray) -> tuple[float, dict]:
        """(E, dE/dparams) of the framework at the current parameters, on these rows."""
        spec = self.problem.spec
        E, g = self.module.grads(spec, self.framework(self.params), self.data(x), self.data(y))
        return (scalar(self.module, E), named(spec, map_params(self.module.to_numpy, g)))

    def step(self) -> None:
        """One SGD step: the framework's sgd_step, or its gradients applied the publication's
        way (a shared bias moves as one, a frozen tensor not at all, the loss's factor)."""
        ex, problem = self.example, self.problem
        x, y = problem.x, problem.y
        if ex.standard and ex.scale == 1.0:
            p = self.module.sgd_step(problem.spec, self.framework(self.params), self.data(x),
                                     self.data(y), problem.lr)
            self.params = named(problem.spec, map_params(self.module.to_numpy, p))
            return
        _, g = self.gradients(x, y)
        g = shared_gradient(ex, g)
        self.params = {n: t if n in ex.frozen else t - problem.lr * ex.scale * g[n]
                       for n, t in self.params.items()}


def scalar(module, value) -> float:
    return float(np.asarray(module.to_numpy(value)).reshape(-1)[0])


def module_values(module, example: Example) -> Values:
    """A framework's own forward, loss, grads and sgd_step on the example."""
    problem, values = example.problem, Values()
    _, _, start = cast_problem(problem)
    run = Step(module, example, named(problem.spec, start))
    done = 0
    for after in sorted({q.after for q in example.published} | {0}):
        for _ in range(after - done):
            run.step()
        done = after
        for p in (q for q in example.published if q.after == after):
            if p.what in INNER:  # the network cut, or given a bias: not every framework can
                try:
                    values.put(p, module_value(run, p))
                except Exception as exc:  # noqa: BLE001 (it gives no such value; said once)
                    values.unable.setdefault(p.what, f"{type(exc).__name__}: {exc}"[:120])
                continue
            values.put(p, module_value(run, p))
    return values


def rows(problem: Problem, sample: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The data, or one sample's row of it."""
    if sample is None:
        return problem.x, problem.y
    return problem.x[sample:sample + 1], problem.y[sample:sample + 1]


def targets(example: Example, run: Step, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The targets the framework's loss is given: the data's, or, where the publication
    differentiates the output itself, those that make dE/dy_hat the unit vector of that output
    (so that dE/dw is dy_hat_j/dw)."""
    if example.loss.of != "output":
        return y
    out = reference_output(run.problem.spec, flatten_named(run), x)
    unit = np.zeros_like(out)
    unit[:, example.loss.output] = 1.0
    return out - unit


def flatten_named(run: Step) -> list:
    return [np.asarray(run.params[n], np.float64) for n in run.problem.spec.param_names()]


def scale_for(example: Example, sample: int | None) -> float:
    """The loss convention's factor, for the batch or for one sample's loss alone."""
    batch = 1 if sample is not None else example.problem.batch
    return example.loss.scale(batch, example.problem.spec.widths[-1])


def module_value(run: Step, p: Published):
    """What the framework's functions give for one published value, at the current step."""
    ex, problem = run.example, run.problem
    if p.what == "loss":
        x, y = rows(problem, p.sample)
        E = run.module.loss(problem.spec, run.framework(run.params), run.data(x), run.data(y))
        return scale_for(ex, p.sample) * scalar(run.module, E)
    if p.what in PER_TENSOR:
        return tensor_value(run, p)
    if p.what in ("output", "prediction"):
        x = np.array(p.x, dtype=np.float64)
        out = run.module.forward(problem.spec, run.framework(run.params), run.data(x))
        return np.asarray(run.module.to_numpy(out), np.float64).reshape(len(p.x), -1)
    if p.what in ("net_input", "activation"):
        return layer_output(run, p.layer, p.what == "activation")
    return backward_value(run, p)


def tensor_value(run: Step, p: Published):
    ex, problem = run.example, run.problem
    if p.what == "weight":
        return as_published(ex, dict(run.params))[p.tensor]
    x, y = rows(problem, p.sample)
    _, g = run.gradients(x, targets(ex, run, x, y))
    g = as_published(ex, shared_gradient(ex, g))
    factor = scale_for(ex, p.sample) * (problem.lr if p.what == "update" else 1.0)
    return factor * np.asarray(g[p.tensor])


def layer_output(run: Step, layer: int, activated: bool) -> np.ndarray:
    """a_l or h_l for every sample: the framework's forward pass on the network cut after
    layer l (the last layer's activation that of layer l, or linear for its net input)."""
    spec = run.problem.spec
    act = spec.layer_activations()[layer - 1]
    cut = NetworkSpec(spec.widths[:layer + 1], spec.activation,
                      act if activated else "linear", spec.bias, spec.dtype)
    tensors = {n: run.params[n] for n in cut.param_names()}
    out = run.module.forward(cut, run.framework(tensors, cut), run.data(run.problem.x, cut))
    return np.asarray(run.module.to_numpy(out), np.float64).reshape(run.problem.batch, -1)


def deltas(run: Step) -> list[np.ndarray]:
    """dE/da_l of every layer, sample by sample (batch, units): the framework's gradient of
    each sample's loss alone with respect to a bias (zero where the network has none)."""
    ex, problem = run.example, run.problem
    spec = problem.spec
    with_bias = NetworkSpec(spec.widths, spec.activation, spec.output_activation, True,
                            spec.dtype)
    tensors = {**{f"b{l}": np.zeros(w) for l, w in enumerate(spec.widths[1:], 1)},
               **run.params} if not spec.bias else dict(run.params)
    per_layer: list[list] = [[] for _ in range(spec.depth)]
    for s in range(problem.batch):
        x, y = rows(problem, s)
        _, g = run.module.grads(with_bias, run.framework(tensors, with_bias),
                                run.data(x, with_bias),
                                run.data(targets(ex, run, x, y), with_bias))
        grads = named(with_bias, map_params(run.module.to_numpy, g))
        for l in range(spec.depth):
            per_layer[l].append(np.asarray(grads[f"b{l + 1}"], np.float64).reshape(-1))
    factor = ex.scale / problem.batch if ex.loss.of != "output" else 1.0
    return [factor * np.stack(d) for d in per_layer]


def backward_value(run: Step, p: Published) -> np.ndarray:
    """delta, dE/dh of a layer, or dE/dx, from the framework's deltas: dE/dh_l = δ_l+1 W_l+1ᵀ,
    and dE/dŷ from its forward pass."""
    d = deltas(run)
    spec = run.problem.spec
    if p.what == "delta":
        return d[p.layer - 1]
    if p.what == "input_gradient":
        return d[0] @ np.asarray(run.params["W1"]).T
    if p.layer < spec.depth:
        return d[p.layer] @ np.asarray(run.params[f"W{p.layer + 1}"]).T
    ex, problem = run.example, run.problem
    y_hat = layer_output(run, spec.depth, True)
    y = targets(ex, run, problem.x, problem.y)
    return (ex.scale / problem.batch if ex.loss.of != "output" else 1.0) * (y_hat - y)


def trainer_values(variant, example: Example) -> Values:
    """A variant's Trainer: its weights and loss after each N, its own gradients at the
    start, with its learning rate scaled by the loss convention (which scales every gradient
    alike); a publication's shared or frozen bias is not the Trainer's to run."""
    if example.loss.of == "output":
        return Values()
    problem = example.problem
    trainer = variant.make(Problem(problem.spec, problem.x, problem.y, problem.params0,
                                   problem.lr * example.scale, problem.seed))
    values = Values()
    grads = named(problem.spec, trainer.grads()[1]) if hasattr(trainer, "grads") else None
    done = 0
    for after in sorted({q.after for q in example.published} | {0}):
        if after and not example.standard:
            break
        trainer.run(after - done)
        done = after
        for p in (q for q in example.published if q.after == after and q.sample is None):
            if p.what == "loss":
                values.put(p, example.scale * float(trainer.loss()))
            elif p.what == "weight":
                values.put(p, as_published(example, named(problem.spec, trainer.params()))[
                    p.tensor])
            elif p.what in ("gradient", "update") and after == 0 and grads is not None:
                g = as_published(example, shared_gradient(example, grads))[p.tensor]
                lr = problem.lr if p.what == "update" else 1.0
                values.put(p, example.scale * lr * np.asarray(g))
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

    def errata(self) -> list[Published]:
        """Unreproduced values the file itself marks as errata: noted, not counted."""
        return [p for p in self.unreproduced() if p.erratum]

    @property
    def passed(self) -> bool:
        return bool(self.got) and not self.failed() and not [
            p for p in self.unreproduced() if not p.erratum]


def render(outcome: Outcome) -> str:
    ex = outcome.example
    out = [f"{ex.title}" + (f" ({ex.source})" if ex.source else ""),
           f"{ex.problem.spec.label()}{', shared bias' if ex.shared else ''}"
           f"{', frozen ' + ', '.join(ex.frozen) if ex.frozen else ''}, batch "
           f"{ex.problem.batch}, lr {ex.problem.lr:g}, {ex.loss.text()}: {len(outcome.got)} "
           f"subjects, each value to the digits printed"]
    rows_ = []
    for p in ex.published:
        got = outcome.results(p)
        wrong = outcome.wrong(p)
        ours = np.median(list(got.values())) if got else math.nan
        worst = max((abs(v - p.value) for v in got.values()), default=math.nan)
        result = "ok" if got and not wrong else ("erratum" if p.erratum and len(wrong) == len(
            got) else "FAIL")
        rows_.append([p.name, described(p), p.text, f"{ours:.12g}", f"{worst:.1e}",
                      f"{p.tolerance:.0e}", f"{len(got) - len(wrong)} of {len(got)}", result])
    out.append(text_table(["value", "what", "published", "computed (median)", "worst |diff|",
                           "tolerance", "reproduced by", "result"], rows_, "llrrrrrl"))
    out += [f"note: {n}" for n in notes(outcome.notes)]
    out += [f"erratum: {p.name} = {p.text}: {p.erratum} (as the file says; not counted)"
            for p in outcome.errata()]
    out += verdict(outcome)
    return "\n".join(out)


def described(p: Published) -> str:
    where = f" of layer {p.layer}" if p.layer else ""
    sample = f", sample {p.sample}" if p.sample is not None else ""
    after = f" after {p.after}" if p.after else ""
    return f"{p.what.replace('_', ' ')}{where}{sample}{after}"


def verdict(outcome: Outcome) -> list[str]:
    if not outcome.got:
        return ["\nFAILED: no framework could run the example"]
    counted = [p for p in outcome.example.published if p not in outcome.errata()]
    if outcome.passed:
        return [f"\nPASSED: every subject reproduces all {len(counted)} published values"
                + (f" ({len(outcome.errata())} errata noted)" if outcome.errata() else "")]
    out = ["\nFAILED:"]
    for name in outcome.failed():
        missed = [p for p in outcome.example.published if name in outcome.wrong(p)
                  and len(outcome.wrong(p)) < len(outcome.results(p))]
        shown = ", ".join(f"{p.name} = {outcome.wrong(p)[name]:.10g} (published {p.text})"
                          for p in missed[:4])
        out.append(f"  {name}: does not reproduce {len(missed)} value(s) the others do: "
                   f"{shown}")
    for p in outcome.unreproduced():
        if not p.erratum:
            out.append(f"  {p.name}: no framework reproduces the published {p.text}; "
                       f"{published_diagnosis(outcome, p)}")
    return out


def published_diagnosis(outcome: Outcome, p: Published) -> str:
    """What the published value is, against what every framework computes: the most
    specific of a last digit off by one, a misprint, a rounded intermediate, a sign
    convention, another loss convention, or no known cause."""
    got = float(np.median(list(outcome.results(p).values())))
    if not got:
        return "they all compute 0"
    head = f"they compute {got:.10g}"
    shown = printed_like(got, p.text)
    last = 10.0 ** exponent(p.text)
    if abs(got - p.value) <= 1.5 * last:
        return (f"{head}, {shown} to the digits printed: the last digit is off by one, as when "
                f"a value is rounded from one rounded before (a rounded intermediate)")
    if one_digit_apart(shown, p.text):
        return f"{head}, {shown} to the digits printed: a misprint ({misprint(shown, p.text)})"
    c = p.value / got
    if abs(c - 1.0) <= 0.02:
        return (f"{head}, and the published value is {diagnose.ratio(c)}× that: a rounded "
                f"intermediate value carried forward, as a hand calculation does")
    named_factor = diagnose.name_factor(c, outcome.example.problem, of="published")
    if named_factor is None:
        return (f"{head}, and the published value is {diagnose.ratio(c)}× that (no known "
                f"factor: a misprint, or a convention the file does not say?)")
    eq, why = named_factor
    return (f"{head}, and the published value is {diagnose.ratio(c)}× that ({eq}): in the "
            f"publication, {why}")


def exponent(text: str) -> int:
    """The power of ten of a printed number's last digit."""
    return Decimal(text).as_tuple().exponent


def printed_like(value: float, text: str) -> str:
    """value written with as many decimals as ``text`` has."""
    decimals = max(0, -exponent(text))
    return f"{value:.{decimals}f}" if "e" not in text.lower() else f"{value:.{len(text)}g}"


def one_digit_apart(a: str, b: str) -> bool:
    """Two numbers that differ in one digit, or in two neighbouring digits swapped."""
    a, b = a.lstrip("-").lstrip("0."), b.lstrip("-").lstrip("0.")
    if len(a) != len(b) or a == b:
        return False
    diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                              and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])


def misprint(computed: str, printed: str) -> str:
    return f"printed {printed} where the calculation gives {computed}: one digit changed or two " \
           f"swapped"
