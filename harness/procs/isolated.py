"""In-process work for a framework that needs a process of its own: ``python -m
harness.procs.isolated``.

Some frameworks set process-wide state when imported (Keras picks its backend once per
process; a sharded JAX needs its host devices forced before jax is imported), so ``check``
and ``demo`` cannot import them beside the others. For those (``Framework.isolated``), the
parent runs this module in a fresh interpreter through ``harness.procs.child``: one request
on stdin, one answer on a channel of its own (nothing a framework or a ``sitecustomize``
prints can be taken for it); it dies with its parent, and it is killed with its process group
when a case runs past ``check --timeout`` (it says each case it begins):

* ``{"do": "check", "problems": [...], "variants": [...], "steps": N, "device": ...,
  "threads": T}``: ``{"report": ..., "gradients": {problem: {variant: [E, grads]}},
  "unavailable": {variant: reason}}``, one process for every network: each variant's own
  gradients at the start (if its Trainer has ``grads()``), to be judged with everyone's,
  and its trajectory rows and diagnoses, judged here;
* ``{"do": "replay", "problem": ..., "variants": [...], "epochs": [...]}``: per variant
  ``{"snapshots": [[epoch, loss, params], ...], "grads": [...]}`` for ``demo``;
* ``{"do": "import", "variants": [...], "device": ...}``: per variant ``{"available": true}``
  for ``list --check``.

A problem travels with its data and starting parameters (``problem_json``), so that a
worked example read from a file arrives as it was written. One process serves the variants
of one framework.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np

from harness.check import deadline, judge
from harness.check.judge import attempt
from harness.check.report import Report, label
from harness.measure.environment import apply_settings
from harness.procs import child
from harness.record import schema
from harness.record.results import ProblemRecord
from implementations import registry
from implementations.contract import Unavailable
from implementations.problem import BenchError, Problem, flatten

START_S = 600  # to import the framework (TensorFlow, Keras) and answer, or begin a case


class Child:
    """One request running in a fresh interpreter through ``child.ask`` (in a thread, so that
    the checks made here run beside it); ``answer()`` waits for it."""

    def __init__(self, request: dict):
        self.names = ", ".join(request["variants"])
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="isolated")
        self.future = self.pool.submit(child.ask, "harness.procs.isolated", request, START_S,
                                       deadline.seconds() + deadline.GRACE_S + 30)

    def answer(self) -> dict:
        """Its answer, or BenchError saying why there is none (crashed, timed out)."""
        try:
            got = self.future.result()
        finally:
            self.pool.shutdown(wait=False)
        if "error" in got:
            raise BenchError(f"{self.names}: {got['error']}")
        return got


def ask(request: dict) -> dict:
    """Run one request in a fresh interpreter: its answer, or BenchError."""
    return Child(request).answer()


def problem_json(problem: Problem) -> dict:
    """A problem with its data and starting parameters, as JSON."""
    return {"record": schema.to_dict(ProblemRecord.of(problem)), "x": problem.x.tolist(),
            "y": problem.y.tolist(),
            "params": [[W.tolist(), None if b is None else b.tolist()]
                       for W, b in problem.params0]}


def problem_of(d: dict) -> Problem:
    """The inverse of problem_json."""

    record = schema.from_dict(ProblemRecord, d["record"], "problem")
    params = [(np.array(W, dtype=np.float64), None if b is None else np.array(b, np.float64))
              for W, b in d["params"]]
    return Problem(record.spec(), np.array(d["x"], dtype=np.float64),
                   np.array(d["y"], dtype=np.float64), params, record.lr, record.seed)


def start_check(problems: list[Problem], variants: list, steps: int, device: str,
                threads: int, say) -> list[Child]:
    """One process per framework of the isolated variants, started at once: they run beside
    the checks made here, and ``finish_check`` gathers them."""
    children = []
    for group in process_groups(list(dict.fromkeys(v.framework for v in variants))):
        names = [v.name for v in variants if v.framework in group]
        say(f"checking {', '.join(names)}, in a process of its own")
        children.append(Child({"do": "check", "variants": names, "steps": steps,
                               "device": device, "threads": threads,
                               "problems": [problem_json(p) for p in problems]}))
    return children


def process_groups(frameworks: list[str]) -> list[list[str]]:
    """The isolated frameworks, grouped into as few processes as their settings allow: two
    share one when they share a package and set no variable to different values (TensorFlow
    and Keras on TensorFlow, say, which saves a second import of TensorFlow)."""

    groups: list[list[str]] = []
    for name in frameworks:
        fw = registry.FRAMEWORKS[name]
        for group in groups:
            others = [registry.FRAMEWORKS[g] for g in group]
            shares = any(set(fw.packages) & set(o.packages) for o in others)
            clash = any(o.environment.get(k, v) != v for o in others
                        for k, v in fw.environment.items()) or any(
                fw.environment.get(k, v) != v for o in others for k, v in o.environment.items())
            if shares and not clash:
                group.append(name)
                break
        else:
            groups.append([name])
    return groups


def finish_check(children: list[Child], report) -> dict[str, dict]:
    """The children's trajectories into ``report``; their own gradients back, as
    {problem label: {variant: (E, flat gradients)}}."""


    gradients: dict[str, dict] = {}
    for one in children:
        try:
            answer = one.answer()
        except BenchError as exc:
            report.notes.append(f"{exc}; skipped")
            continue
        report.merge(Report.from_dict(answer["report"]))
        for where, got in answer["gradients"].items():
            for name, (E, grads) in got.items():
                gradients.setdefault(where, {})[name] = (
                    E, [None if g is None else np.asarray(g, dtype=np.float64) for g in grads])
    return gradients


def check_here(request: dict, stream=None) -> dict:
    """The child's side of ``check``: every problem for each variant of its frameworks (each
    one a case the parent times from its CaseStarted)."""

    report, gradients = Report(), {}
    variants = [registry.get(n) for n in request["variants"]]
    frameworks = list(dict.fromkeys(v.framework for v in variants))
    settings, failed = apply_settings(frameworks, request["threads"])
    report.settings.update(settings)
    report.notes += failed
    modules = {}
    for name in frameworks:
        try:
            modules[name] = registry.import_module(name)
        except Unavailable as exc:
            report.notes.append(f"{exc}; skipped")
    device, steps = request["device"], request["steps"]
    for problem in map(problem_of, request["problems"]):
        where = label(problem)
        for v in (v for v in variants if v.framework in modules):
            reason = v.why_not(problem, device)
            if reason:
                report.notes.append(f"trajectory: {reason}; skipped")
                continue
            child.case_started(stream, f"{v.name} on {where}")
            trainer = None
            if hasattr(getattr(modules[v.framework], v.trainer), "grads"):
                trainer = attempt(problem, v.name, report, partial(v.make, problem, device))
                got = trainer and attempt(problem, v.name, report, partial(
                    judge.trainer_loss_and_gradients, trainer, problem))
                if got is not None:
                    gradients.setdefault(where, {})[v.name] = jsonable(got)
            if steps:
                attempt(problem, v.name, report, partial(
                    judge.check_trajectory, problem, v, steps, device, report, trainer=trainer))
    return {"report": report.as_dict(), "gradients": gradients}


def jsonable(got: tuple[float, list]) -> list:
    E, grads = got
    return [E, [None if g is None else g.tolist() for g in grads]]


def replay(problem, variant, epochs: list[int]) -> dict:
    """The variant's Trainer at the given epochs, and its own gradients at the start."""
    start = variant.make(problem)
    answer = {}
    if hasattr(start, "grads"):
        answer["grads"] = [t.tolist() for t in flatten(start.grads()[1])]
    trainer, done, snaps = variant.make(problem), 0, []
    for epoch in epochs:
        trainer.run(epoch - done)
        done = epoch
        snaps.append([epoch, trainer.loss(), [[W.tolist(), None if b is None else b.tolist()]
                                              for W, b in trainer.params()]])
    return {**answer, "snapshots": snaps}


def serve(request: dict, name: str) -> dict:

    variant = registry.get(name)
    try:
        if request["do"] == "import":
            registry.import_module(variant.framework).check_device(request["device"])
            return {"available": True}
        return replay(problem_of(request["problem"]), variant, request["epochs"])
    except Unavailable as exc:
        return {"unavailable": str(exc)}


def answer(request: dict, stream) -> dict:
    """The child's answer to one request (``child.serve`` sends it on the channel)."""
    if request["do"] == "check":
        return check_here(request, stream)
    return {name: serve(request, name) for name in request["variants"]}


if __name__ == "__main__":
    sys.exit(child.serve(answer))
