"""Work for a framework or a file that needs a process of its own: ``python -m
harness.procs.isolated``.

Some frameworks set process-wide state when imported (Keras picks its backend once per
process; a sharded JAX needs its host devices forced before jax is imported), so ``check``
and ``demo`` cannot import them beside the others (``Framework.isolated``); and code the
suite did not write, a learner's file, never runs in the judge's process at all. For those,
the parent runs this module in a fresh interpreter through ``harness.procs.child``: one typed
request (``harness.procs.messages``) on stdin, answers on a channel of its own (nothing the
code prints can be taken for one); it dies with its parent, and it is killed with its process
group when a piece of work runs past ``check --timeout`` (it says each piece it begins).

* ``CheckRequest``: the variants' evidence on every problem (``harness.check.session.collect``),
  one answer per problem, sent as it is done; the parent judges it with everyone's;
* ``LearnerRequest``: a learner's file imported and called (``harness.check.learner.answer``),
  one answer per piece, so that what was done survives the file ending its process;
* ``ReplayRequest``: per variant ``{"snapshots": [[epoch, loss, params], ...], "grads": [...]}``
  for ``demo`` and ``check --example``;
* ``ImportRequest``: per variant ``{"available": true}`` or its reason, for ``list --check``.

Code in the child can send nothing but numbers: the parent reads each answer as evidence
(``harness.check.evidence.from_json``) and makes every verdict itself.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

from harness.check import deadline, judge, learner, session
from harness.check.evidence import (
    Evidence,
    EvidenceError,
    from_json,
    problem_json,
    problem_of,
    to_json,
)
from harness.check.judge import guarded
from harness.check.learner import LearnerFile
from harness.check.report import Report, label
from harness.measure.environment import apply_settings
from harness.procs import child, messages
from implementations import registry
from implementations.contract import Unavailable
from implementations.problem import BenchError, Problem, flatten

START_S = 600  # to import the framework (TensorFlow, Keras) and answer, or begin a case
MODULE = "harness.procs.isolated"


def case_timeout_s() -> float:
    """How long the parent lets one piece run before it kills the child: the child's own
    deadline (which stops the piece and goes on) with room to say so."""
    return deadline.seconds() + deadline.GRACE_S + 30


# ---- the parent's side ---------------------------------------------------------------------------

class Away:
    """One request running in a fresh interpreter (in a thread, so that the work here runs
    beside it); ``gathered()`` waits for everything it sent."""

    def __init__(self, request, what: str, first_s: float = START_S):
        self.what, self.first_s = what, first_s
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="isolated")
        self.future = self.pool.submit(child.gather, MODULE, messages.request_json(request),
                                       first_s, case_timeout_s())

    def gathered(self) -> child.Gathered:
        try:
            return self.future.result()
        finally:
            self.pool.shutdown(wait=False)

    def ended(self, got: child.Gathered) -> str | None:
        return got.ended(self.first_s, case_timeout_s())


def ask(request) -> dict:
    """Run one request in a fresh interpreter: its last answer, or BenchError saying why
    there is none (crashed, timed out)."""
    away = Away(request, "")
    got = away.gathered()
    error = away.ended(got)
    if error:
        names = ", ".join(getattr(request, "variants", []))
        raise BenchError(f"{names}: {error}" if names else error)
    return got.answers[-1]


class Variants(Away):
    """The isolated variants of one process group, checked there (``CheckRequest``)."""

    def __init__(self, problems: list[Problem], variants: list[str], steps: int, device: str,
                 threads: int, functions: list[str] | None = None):
        self.problems, self.steps = problems, steps
        self.variants = [*(functions or []), *variants]  # the subjects it answers for
        super().__init__(messages.CheckRequest([problem_json(p) for p in problems], variants,
                                               steps, device, threads, list(functions or [])),
                         ", ".join(self.variants))

    def evidence(self, report: Report) -> list[Evidence]:
        got = self.gathered()
        out: list[Evidence] = []
        try:
            for answer in got.answers:
                report.settings.update(answer.get("settings", {}))
                report.notes += [str(n) for n in answer.get("notes", [])]
                out += [from_json(e) for e in answer.get("evidence", [])]
        except EvidenceError as exc:
            report.notes.append(f"{self.what}: its answer is not evidence ({exc}); skipped")
            return []
        ended = self.ended(got)
        if ended is not None and not got.started:  # the framework could not even start
            report.notes.append(f"{self.what}: {ended}; skipped")
        elif ended is not None:
            out += self.unfinished(out, got, ended)
        return out

    def unfinished(self, done: list[Evidence], got: child.Gathered, ended: str
                   ) -> list[Evidence]:
        """A crash for the piece the process ended in; a note for the rest."""
        finished = {(e.subject, e.problem) for e in done}
        out = []
        for problem in self.problems:
            for v in self.variants:
                if (v, label(problem)) in finished:
                    continue
                if got.started[-1] == f"{v} on {label(problem)}":
                    out.append(Evidence(v, label(problem), crashes=[("run", ended)]))
                else:
                    out.append(Evidence(v, label(problem), notes=[
                        f"{v} on {label(problem)}: not run, its process ended earlier; skipped"]))
        return out


class Learner(Away):
    """A learner's file, imported and called in a process of its own (``LearnerRequest``)."""

    def __init__(self, file: LearnerFile, problems: list[Problem], steps: int):
        self.file, self.problems, self.steps = file, problems, steps
        super().__init__(messages.LearnerRequest(str(file.path.resolve()), file.framework,
                                                 [problem_json(p) for p in problems], steps),
                         file.name, first_s=case_timeout_s())

    def evidence(self, report: Report) -> list[Evidence]:
        got = self.gathered()
        ended = self.ended(got)
        if ended is not None and not got.timed_out and got.status is not None:
            ended = learner.status_text(got.status, self.file.name)
        try:
            return learner.evidence_of(self.file, got.answers,
                                       got.started[-1] if got.started else None, ended,
                                       self.problems, self.steps)
        except EvidenceError as exc:
            return [Evidence(self.file.name, label(p), crashes=[(
                "grads", f"its process sent what is not evidence ({exc})")])
                for p in self.problems]


def elsewhere(problems: list[Problem], selection: session.Selection, steps: int, device: str,
              threads: int, say) -> list[Away]:
    """``session.check``'s subjects in processes of their own, started at once: one process
    per group of isolated frameworks, and one for the learner's file."""
    away: list[Away] = []
    variants, functions = selection.isolated, selection.functions_away
    frameworks = list(dict.fromkeys([*functions, *(v.framework for v in variants)]))
    for group in process_groups(frameworks):
        names = [v.name for v in variants if v.framework in group]
        mine = [f for f in functions if f in group]
        say(f"checking {', '.join(mine + names)}, in a process of its own")
        away.append(Variants(problems, names, steps, device, threads, mine))
    if selection.learner is not None:
        say(f"checking {selection.learner.name}, in a process of its own")
        away.append(Learner(selection.learner, problems, steps))
    return away


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


# ---- the child's side ----------------------------------------------------------------------------

def check_here(request: messages.CheckRequest, stream) -> dict:
    """The child's side of ``check``: its frameworks' settings, then each problem's evidence
    (``session.collect``), sent as each problem is done. A trajectory that is wrong here
    brings its probe along, for the parent's diagnosis."""
    variants = [registry.get(n) for n in request.variants]
    frameworks = list(dict.fromkeys([*request.functions, *(v.framework for v in variants)]))
    settings, notes = apply_settings(frameworks, request.threads)
    modules = {}
    for name in frameworks:
        try:
            modules[name] = registry.import_module(name)
        except Unavailable as exc:
            notes.append(f"{exc}; skipped")
    usable = [v for v in variants if v.framework in modules]
    messages.send(stream, messages.Answer({"settings": settings, "notes": list(
        dict.fromkeys(notes))}))
    for problem in map(problem_of, request.problems):
        evidence = []
        for name in (f for f in request.functions if f in modules):
            child.case_started(stream, f"{name} on {label(problem)}")
            evidence.append(session.functions_evidence(problem, name, modules[name],
                                                       request.device))
        for v in usable:
            child.case_started(stream, f"{v.name} on {label(problem)}")
            ev = session.trainer_evidence(problem, v, request.steps, request.device,
                                          lambda text: None)
            if not judge.needs_probe(problem, ev):
                ev.probe = None
            evidence.append(ev)
        messages.send(stream, messages.Answer({"evidence": [
            to_json(ev) for ev in evidence]}))
    return {"done": True}


def learner_here(request: messages.LearnerRequest, stream) -> dict:
    learner.answer(request.path, request.framework, request.problems, request.steps,
                   lambda piece: child.case_started(stream, piece),
                   lambda body: messages.send(stream, messages.Answer(body)))
    return {"done": True}


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


def serve(request, name: str) -> dict:
    """One variant's answer to a ReplayRequest or an ImportRequest: what it gives, or
    {"unavailable": reason}, or {"failed": reason} (a crash, or a run past --timeout)."""
    variant = registry.get(name)
    got, unavailable, crash = guarded(name, lambda: import_or_replay(request, variant))
    if crash is not None:
        return {"failed": crash}
    return {"unavailable": unavailable} if unavailable is not None else got


def import_or_replay(request, variant) -> dict:
    if isinstance(request, messages.ImportRequest):
        registry.import_module(variant.framework).check_device(request.device)
        return {"available": True}
    return replay(problem_of(request.problem), variant, request.epochs)


def answer(job: dict, stream) -> dict:
    """The child's answer to one request (``child.serve`` sends it on the channel)."""
    request = messages.request_of(job)
    if isinstance(request, messages.CheckRequest):
        return check_here(request, stream)
    if isinstance(request, messages.LearnerRequest):
        return learner_here(request, stream)
    out = {}
    for name in request.variants:
        child.case_started(stream, name)
        out[name] = serve(request, name)
    return out


if __name__ == "__main__":
    sys.exit(child.serve(answer))
