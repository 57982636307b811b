"""What a subject computed on one problem, before any judging: ``Evidence``.

A subject (a framework's gradient functions, a variant's Trainer, a learner's file) runs here
or in a process of its own, and what it computed comes back as evidence: its loss and
gradients at the start, its parameters after N steps and after a short probe, its
intermediates, and how each piece it could not finish ended. Only this process judges
evidence (``harness.check.judge``): code under check never judges itself, and what it sends
is numbers, checked on arrival.

``to_json`` and ``from_json`` carry evidence between processes; ``problem_json`` and
``problem_of`` carry a problem with its data and starting point, so that a worked example read
from a file arrives as it was written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from implementations.problem import BenchError, NetworkSpec, Params, Problem

Probe = tuple[int, Params]  # (k, the parameters after k steps from the start)


@dataclass
class Evidence:
    """One subject on one problem (``problem`` is its label, ``harness.check.report.label``).

    Attributes:
        gradients: (E, the gradient tensors in ``NetworkSpec.param_names()`` order, None
            where one is missing), as float64 NumPy, shaped as the subject gave them.
        trajectory: (n, the parameters after n steps from the start).
        probe: (k, the parameters after k steps), or a function that runs them (only called
            when the trajectory is wrong, for the diagnosis).
        trace: the learner's intermediates, one dict per layer (``harness.check.trace``).
        crashes: (the piece, one line of how it ended) for each piece that did not finish.
        notes: lines for the report that judge nothing.
        terms: whose words the diagnosis speaks: a variant's name (its ``zero_grad``), a
            framework's, or "learner-" and the framework of a learner's file.
    """

    subject: str
    problem: str
    gradients: tuple[float, list] | None = None
    trajectory: Probe | None = None
    probe: Probe | Callable[[], Probe] | None = None
    trace: list[dict] | None = None
    crashes: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    terms: str = ""

    def probed(self) -> Probe | None:
        """The probe, run now if it is a function (None if it cannot be)."""
        if callable(self.probe):
            try:
                self.probe = self.probe()
            except Exception:  # the probe only sharpens a diagnosis: without it, none
                self.probe = None
        return self.probe


# ---- between processes ---------------------------------------------------------------------

def tensor_json(t) -> list | float | None:
    return None if t is None else np.asarray(t, dtype=np.float64).tolist()


def params_json(params: Params) -> list:
    return [[tensor_json(W), tensor_json(b)] for W, b in params]


def to_json(ev: Evidence) -> dict:
    """Evidence as JSON (infinities and NaN as the channel allows them)."""
    probe = ev.probed() if callable(ev.probe) else ev.probe
    return {
        "subject": ev.subject, "problem": ev.problem,
        "gradients": None if ev.gradients is None else
        [ev.gradients[0], [tensor_json(t) for t in ev.gradients[1]]],
        "trajectory": None if ev.trajectory is None else
        [ev.trajectory[0], params_json(ev.trajectory[1])],
        "probe": None if probe is None else [probe[0], params_json(probe[1])],
        "trace": None if ev.trace is None else
        [{k: tensor_json(v) for k, v in layer.items()} for layer in ev.trace],
        "crashes": [list(c) for c in ev.crashes], "notes": list(ev.notes), "terms": ev.terms,
    }


class EvidenceError(BenchError):
    """Evidence from another process that is not what evidence is."""


def array_of(value, what: str) -> np.ndarray | None:
    if value is None:
        return None
    try:
        return np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise EvidenceError(f"{what} is not numbers") from None


def params_of(value, what: str) -> Params:
    if not isinstance(value, list) or not all(isinstance(p, list) and len(p) == 2
                                              for p in value):
        raise EvidenceError(f"{what} is not a list of (W, b) pairs")
    return [(array_of(W, what), array_of(b, what)) for W, b in value]


def counted(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EvidenceError(f"{what} is not a number of steps")
    return value


def from_json(d: dict) -> Evidence:
    """The inverse of to_json, checked: EvidenceError names what is wrong."""
    if not isinstance(d, dict) or not isinstance(d.get("subject"), str) or not isinstance(
            d.get("problem"), str):
        raise EvidenceError("evidence without its subject and problem")
    ev = Evidence(d["subject"], d["problem"], terms=str(d.get("terms", "")))
    g = d.get("gradients")
    if g is not None:
        if not (isinstance(g, list) and len(g) == 2 and isinstance(g[0], (int, float))
                and isinstance(g[1], list)):
            raise EvidenceError("gradients are not (E, tensors)")
        ev.gradients = (float(g[0]), [array_of(t, "a gradient") for t in g[1]])
    for key in ("trajectory", "probe"):
        value = d.get(key)
        if value is not None:
            if not (isinstance(value, list) and len(value) == 2):
                raise EvidenceError(f"{key} is not (steps, parameters)")
            setattr(ev, key, (counted(value[0], key), params_of(value[1], key)))
    trace = d.get("trace")
    if trace is not None:
        if not isinstance(trace, list) or not all(isinstance(t, dict) for t in trace):
            raise EvidenceError("trace is not a list of dicts")
        ev.trace = [{str(k): array_of(v, "trace") for k, v in t.items()} for t in trace]
    ev.crashes = [(str(w), str(r)) for w, r in d.get("crashes", [])]
    ev.notes = [str(n) for n in d.get("notes", [])]
    return ev


def problem_json(problem: Problem) -> dict:
    """A problem with its data and starting parameters, as JSON."""
    return {"spec": problem.spec.as_dict(), "lr": problem.lr, "seed": problem.seed,
            "input_scale": problem.input_scale,
            "x": problem.x.tolist(), "y": problem.y.tolist(), "params": params_json(
                problem.params0)}


def problem_of(d: dict) -> Problem:
    """The inverse of problem_json."""
    spec = d["spec"]
    net = NetworkSpec(tuple(spec["widths"]), spec["activation"], spec["output_activation"],
                      bool(spec["bias"]), spec["dtype"])
    params = [(np.array(W, dtype=np.float64), None if b is None else np.array(b, np.float64))
              for W, b in d["params"]]
    return Problem(net, np.array(d["x"], dtype=np.float64), np.array(d["y"], dtype=np.float64),
                   params, float(d["lr"]), int(d["seed"]), float(d.get("input_scale", 1.0)))
