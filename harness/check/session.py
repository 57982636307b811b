"""A whole check, from the selection to the verdict: the one loop over subjects, written once.

1. **Select** the subjects (``select``): the gradient functions of each framework asked for
   (all by default), every variant of theirs (a Trainer's trajectory, and its own gradients
   where its Trainer has ``grads()``), and a learner's file if given. ``--variants`` narrows
   the check to those variants and their frameworks' functions. A variant whose cold build
   takes minutes (``Variant.build_s``) is left out by default unless its module says it is
   built for every network of the check (``built(variant, problem, device)``); naming it, or
   ``include_all``, keeps it.
2. **Settle** each framework's settings (threads, precision) as a run's worker does, and
   record them in the report (``settle``).
3. **Collect** what every subject computes on every problem, as ``Evidence``
   (``collect``): here for our own frameworks, and in a process of its own for what needs one
   (a framework that sets process-wide state, such as Keras, and a learner's file, always).
   Those are started first, by the caller's ``elsewhere``, and run beside the work here.
4. **Judge** each problem's evidence, all of it together, in this process only
   (``harness.check.judge.judge_evidence``).

``check`` composes the four; the command line, the Python API and the isolated child (which
calls ``collect``) use these functions, and nothing else runs a check.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import ModuleType
from typing import Protocol

from harness.check import judge
from harness.check.evidence import Evidence
from harness.check.judge import attempt
from harness.check.learner import LearnerFile
from harness.check.report import Report, label
from harness.measure import environment
from implementations import registry
from implementations.contract import Unavailable, Variant
from implementations.problem import BenchError, Problem

SLOW_BUILD_S = 10.0  # a variant that compiles for longer on a cold cache is left out by default


def stderr(text: str) -> None:
    print(text, file=sys.stderr)


# ---- 1. the selection ------------------------------------------------------------------------

def away(framework: str) -> bool:
    """Whether a framework is checked in a process of its own: one that sets process-wide
    state at import (``Framework.isolated``), or a file from outside implementations/ (a
    plugin: code the suite did not write never runs in the judge's process)."""
    path = registry.MODULE_PATHS.get(framework)
    return registry.FRAMEWORKS[framework].isolated or (path is not None
                                                       and path.parent != registry.HERE)


@dataclass
class Selection:
    """What a check runs: gradient modules here (and the names of those checked in a process
    of their own), variants (here or away), the learner."""

    modules: dict[str, ModuleType] = field(default_factory=dict)
    variants: list[Variant] = field(default_factory=list)
    learner: LearnerFile | None = None
    notes: list[str] = field(default_factory=list)
    functions_away: list[str] = field(default_factory=list)

    @property
    def local(self) -> list[Variant]:
        return [v for v in self.variants if not away(v.framework)]

    @property
    def isolated(self) -> list[Variant]:
        return [v for v in self.variants if away(v.framework)]


def gradient_modules(frameworks: Sequence[str] | None, notes: list[str],
                     asked: bool | Sequence[str], away_too: list[str] | None = None
                     ) -> dict[str, ModuleType]:
    """The gradient modules of ``frameworks`` (all by default). One asked for (``asked``:
    all of them, or those named) but missing is an error; any other missing is a note. With
    ``away_too``, a framework checked in a process of its own (``away``) is not imported
    here: its name goes there once its packages import and its file can be imported."""
    names = frameworks if frameworks is not None else [
        n for n, f in registry.FRAMEWORKS.items() if f.gradients]
    modules = {}
    for name in names:
        fw = registry.get_framework(name)
        mine = asked if isinstance(asked, bool) else name in asked
        if not fw.gradients:
            if mine and not registry.variants_of(name):
                raise BenchError(f"{name} declares no variant to check")
            continue
        try:
            if away_too is not None and away(name):
                importable(name)
                away_too.append(name)
            else:
                modules[name] = registry.import_module(name)
        except Unavailable as exc:
            if mine:
                raise
            notes.append(str(exc))
    return modules


def importable(framework: str) -> None:
    """Unavailable unless the framework's packages are installed and its file imports in a
    process of its own (``registry.probe``), without running its file here."""
    fw = registry.FRAMEWORKS[framework]
    for package in fw.packages:
        if not registry.package_exists(package):
            raise Unavailable(f"{fw.name}: {package} is not installed")
    registry.probe(framework)


def named_variants(names: Sequence[str]) -> list[Variant]:
    if not names:
        raise BenchError(f"--variants is empty: choose from {', '.join(registry.VARIANTS)}")
    return list({v.name: v for v in map(registry.get, names)}.values())


def select(frameworks: Sequence[str] | None, names: Sequence[str] | None,
           problems: list[Problem], device: str, include_all: bool = False,
           learner: LearnerFile | None = None) -> Selection:
    """The subjects of a check (step 1 of the module docstring)."""
    if frameworks is not None and not frameworks:
        raise BenchError("--framework is empty: name at least one framework")
    sel = Selection(learner=learner)
    if names is not None:  # those variants, and their frameworks' functions beside them
        variants = named_variants(names)
        wanted = list(dict.fromkeys([*(frameworks or ()), *(v.framework for v in variants)]))
        sel.modules = gradient_modules(wanted, sel.notes, asked=tuple(frameworks or ()),
                                       away_too=sel.functions_away)
    else:
        sel.modules = gradient_modules(frameworks, sel.notes, asked=frameworks is not None,
                                       away_too=sel.functions_away)
        checked = [*sel.modules, *sel.functions_away]
        variants = [v for v in registry.VARIANTS.values() if not v.distributed and (
            v.framework in checked or (frameworks is None and not registry.FRAMEWORKS[
                v.framework].gradients) or (frameworks is not None and v.framework in frameworks))]
    sel.notes += [f"{v.name} is data-parallel: 'check --workers N' checks it; skipped"
                  for v in variants if v.distributed]
    variants = [v for v in variants if not v.distributed]
    explicit = names is not None or frameworks is not None
    for v in variants if names is not None else []:
        reasons = [v.why_not(p, device) for p in problems]
        if all(reasons):
            raise BenchError(f"variant {v.name} cannot run any case asked for: {reasons[0]}")
    if not (explicit or include_all):
        variants, slow = split_slow(variants, problems, device)
        if slow:
            sel.notes.append(left_out_note(slow))
    sel.variants = variants
    if not (sel.modules or sel.functions_away or sel.variants or learner):
        raise BenchError("no framework is available: " + "; ".join(sel.notes))
    return sel


def split_slow(variants: list[Variant], problems: list[Problem], device: str
               ) -> tuple[list[Variant], list[Variant]]:
    """(kept, left out): a slow-building variant is kept only if built for every problem."""
    kept, slow = [], []
    for v in variants:
        if v.build_s < SLOW_BUILD_S or all(built(v, p, device) for p in problems
                                           if not v.why_not(p, device)):
            kept.append(v)
        else:
            slow.append(v)
    return kept, slow


def built(v: Variant, problem: Problem, device: str) -> bool:
    """Whether the variant's module says its compiled code for this problem is cached (a
    variant checked away is asked nothing here: it is kept)."""
    if away(v.framework):
        return True
    try:
        module = registry.import_module(v.framework)
    except Unavailable:
        return True  # kept, to be reported unavailable with its reason
    ask = getattr(module, "built", None)
    return bool(ask and ask(v, problem, device))


def left_out_note(slow: list[Variant]) -> str:
    low, high = min(v.build_s for v in slow), max(v.build_s for v in slow)
    span = duration(low) if low == high else f"{duration(low)} to {duration(high)}"
    return (f"left out: {', '.join(v.name for v in slow)}: each compiles for about {span} "
            f"here on a cold cache and is not built for these networks yet; 'check --all' "
            f"includes them (or name them with --variants)")


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


# ---- 2. settings -------------------------------------------------------------------------------

def settle(frameworks: Sequence[str], threads: int, report: Report) -> None:
    """Pin threads, then apply and record each framework's settings, as a run's worker does."""
    settings, notes = environment.apply_settings(list(dict.fromkeys(frameworks)), threads)
    report.settings.update(settings)
    report.notes += notes


# ---- 3. what every subject computes ---------------------------------------------------------

def has_grads(v: Variant) -> bool:
    """Whether the variant's Trainer gives its own gradients (``Trainer.grads``)."""
    try:
        return hasattr(getattr(registry.import_module(v.framework), v.trainer), "grads")
    except Unavailable:
        return False


def collect(problem: Problem, modules: dict[str, ModuleType], variants: list[Variant],
            steps: int, device: str, say: Callable[[str], None] = stderr) -> list[Evidence]:
    """What each framework's functions and each variant's Trainer compute on one problem:
    the loss and gradients at the start, and (``steps`` > 0) the parameters after a
    trajectory, each piece under ``check --timeout`` (``judge.attempt``)."""
    return ([functions_evidence(problem, name, module, device)
             for name, module in modules.items()]
            + [trainer_evidence(problem, v, steps, device, say) for v in variants])


def functions_evidence(problem: Problem, name: str, module: ModuleType,
                       device: str) -> Evidence:
    """A framework's gradient functions: its loss and gradients at the start."""
    ev = Evidence(name, label(problem), terms=name)
    reason = registry.main_variant(name).why_not(problem, device)
    if reason:
        ev.notes.append(f"gradients: {reason}; skipped")
        return ev
    ev.gradients = attempt(ev, "grads", partial(
        judge.framework_loss_and_gradients, module, problem, device))
    return ev


def trainer_evidence(problem: Problem, v: Variant, steps: int, device: str,
                     say: Callable[[str], None]) -> Evidence:
    """A variant's Trainer: its own gradients at the start (if it has them), then its
    parameters after ``judge.steps_for`` steps, with a probe for the diagnosis."""
    ev = Evidence(v.name, label(problem), terms=v.name)
    reason = v.why_not(problem, device)
    if reason:
        ev.notes.append(f"trajectory: {reason}; skipped")
        return ev
    grads = has_grads(v)
    if not (grads or steps):
        return ev
    if steps and v.build_s >= SLOW_BUILD_S and not built(v, problem, device):
        say(f"building {v.name} for {label(problem)}: about {duration(v.build_s)} here, "
            f"cached afterwards")
    trainer = attempt(ev, "make", partial(v.make, problem, device))
    if trainer is None:
        return ev
    if grads:
        ev.gradients = attempt(ev, "grads", partial(judge.trainer_loss_and_gradients,
                                                    trainer, problem))
    if steps:
        say(f"checking {label(problem)}: {steps} steps of {v.name}")
        n = judge.steps_for(trainer, steps)
        ev.trajectory = attempt(ev, "run", partial(judge.trained, trainer, n))
        ev.probe = partial(judge.probe, v, problem, device)
    return ev


# ---- 4. the whole check ------------------------------------------------------------------------

class Elsewhere(Protocol):
    """Subjects checked in processes of their own, started before the work here (so that
    they run beside it); ``evidence(report)`` waits for theirs, noting in ``report`` why one
    gave none."""

    def evidence(self, report: Report) -> list[Evidence]: ...


Start = Callable[[list[Problem], Selection, int, str, int, Callable[[str], None]],
                 list[Elsewhere]]


def check(problems: list[Problem], selection: Selection, steps: int, device: str,
          threads: int, say: Callable[[str], None] = stderr,
          elsewhere: Start | None = None) -> Report:
    """Every subject of the selection on every problem (steps 2-4 of the module docstring);
    ``steps=0``: gradients only. ``elsewhere`` starts the subjects that run in processes of
    their own (the isolated frameworks and the learner); without it, those are left out."""
    report = Report(notes=list(selection.notes))
    away = elsewhere(problems, selection, steps, device, threads, say) if elsewhere else []
    try:
        settle([*selection.modules, *(v.framework for v in selection.local)], threads, report)
        here = [collect(p, selection.modules, selection.local, steps, device, say)
                for p in problems]
    finally:
        there = [ev for one in away for ev in one.evidence(report)]
    for problem, evidence in zip(problems, here):
        mine = evidence + [ev for ev in there if ev.problem == label(problem)]
        if any(ev.gradients for ev in mine):
            say(f"checking {label(problem)}: gradients of "
                f"{', '.join(ev.subject for ev in mine if ev.gradients)}")
        judge.judge_evidence(problem, mine, report)
    if not report.rows:
        raise BenchError("nothing was checked: " + "; ".join(dict.fromkeys(report.notes)))
    return report
