"""A published worked example reproduced by every framework (``check --example FILE``).

``harness.check.example_file`` reads the file: the network, its starting weights, the
data, the learning rate and the values the publication printed, each with its digits. Every
framework's own functions (forward, loss, grads, sgd_step), and every variant's Trainer for
what it can show (its weights and loss after N steps, its own gradients), must reproduce
every value to the digits printed. A value no one reproduces is diagnosed against what they
all compute (a factor 2 is a missing 1/2 in the publication's E, say).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from harness.check import diagnose
from harness.check.example_file import Example, Published
from harness.check.render import notes
from harness.tables import text_table
from implementations.problem import NetworkSpec, cast_problem, flatten, map_params

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


