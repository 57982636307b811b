"""`backprop-bench check`: are the gradients right? The whole check, from start to verdict,
as the command line and ``backprop_bench.check`` run it.

1. **Select** the subjects: the gradient functions of each framework asked for (all by
   default), every variant of theirs (a Trainer's trajectory, and its own gradients where
   its Trainer has ``grads()``), and a learner's file if given. A variant whose cold build
   takes minutes (``Variant.build_s``) is left out by default unless its module says it is
   already built for every network of the check (``built(variant, problem, device)``);
   ``include_all`` or naming it keeps it, and a long build says what it is doing.
2. **Settle** each framework's settings (threads, precision) as a run's worker does, and
   record them in the report.
3. **Run** the frameworks that need a process of their own (Keras) in one process each, for
   every network at once, beside the others here, network by network: every trajectory,
   then every gradient at the start, judged together (each is also compared with the
   others), then the diagnoses of the trajectories that failed.

``check --example`` reproduces a published worked example (``harness.measure.check.example``)
with the same selection; ``check --workers`` checks the data-parallel variants
(``harness.procs.distcheck``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from types import ModuleType

import numpy as np

from harness.commands import check_workers, plans, scale
from harness.commands.base import require_device
from harness.measure import environment
from harness.measure.check import diagnose, judge
from harness.measure.check import example as examples
from harness.measure.check import learner as learners
from harness.measure.check.judge import attempt
from harness.measure.check.learner import Learner
from harness.measure.check.reference import rounded_start
from harness.measure.check.render import render
from harness.measure.check.report import Report, crash_reason, label
from harness.measure.environment import default_threads
from harness.procs import isolated
from implementations import registry
from implementations.contract import Unavailable, Variant
from implementations.problem import BenchError, Problem


def command(networks: plans.Networks, frameworks: tuple[str, ...] | None,
          variant_names: tuple[str, ...] | None, steps: int, device: str,
          workers: int | None = None, oversubscribe: bool = False, include_all: bool = False,
          impl: str | None = None, example: str | None = None,
          threads: int | None = None) -> int:
    """`check`: 0 if every subject passed on its own evidence, 1 if one failed."""
    if steps <= 0:
        raise BenchError(f"--steps {steps} must be 1 or more")
    if example is not None:
        return example_command(example, frameworks, variant_names, device, include_all)
    if workers is not None:  # the data-parallel variants, each in a fresh process
        scale.allow_oversubscribe(oversubscribe)
        require_device(device)
        return check_workers.command(networks, frameworks, variant_names, steps, device, workers)
    learner = learners.read_learner(impl) if impl is not None else None
    if learner is not None and networks.output_activation == "linear":
        networks = replace(networks, output_activation=learner.output_activation)
    problems = plans.check_problems(networks, learner and learner.activation,
                                    learner and learner.bias)
    require_device(device)
    selection = select(frameworks, variant_names, problems, device, include_all,
                               learner)
    usable = default_threads()
    if threads is not None and threads > usable:
        raise BenchError(f"--threads {threads}: only {usable} cores are usable here")
    report = run(problems, selection, steps, device, threads or usable)
    print(render(report, problems, steps))
    return 0 if report.passed else 1



# ---- the selection, the settings and the run ---------------------------------------------

SLOW_BUILD_S = 10.0  # a variant that compiles for longer on a cold cache is left out by default


def stderr(text: str) -> None:
    print(text, file=sys.stderr)


@dataclass
class Selection:
    """What a check runs: gradient modules here, variants (here or isolated), the learner."""

    modules: dict[str, ModuleType] = field(default_factory=dict)
    variants: list[Variant] = field(default_factory=list)
    learner: Learner | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def local(self) -> list[Variant]:
        return [v for v in self.variants if not registry.FRAMEWORKS[v.framework].isolated]

    @property
    def isolated(self) -> list[Variant]:
        return [v for v in self.variants if registry.FRAMEWORKS[v.framework].isolated]


def gradient_modules(frameworks: tuple[str, ...] | None, notes: list[str]) -> dict:
    """The gradient modules of the frameworks asked for (all by default). Asked-for but
    missing is an error; missing from the default set is a note."""
    if frameworks == ():
        raise BenchError("--framework is empty: name at least one framework")
    names = frameworks or [n for n, f in registry.FRAMEWORKS.items() if f.gradients]
    modules = {}
    for name in names:
        fw = registry.get_framework(name)
        if not fw.gradients:
            if frameworks and not registry.variants_of(name):
                raise BenchError(f"{name} declares no variant to check")
            continue
        try:
            modules[name] = registry.import_module(name)
        except Unavailable as exc:
            if frameworks:
                raise
            notes.append(str(exc))
    return modules


def select(frameworks: tuple[str, ...] | None, names: tuple[str, ...] | None,
           problems: list[Problem], device: str, include_all: bool = False,
           learner: Learner | None = None) -> Selection:
    """The subjects of a check (step 1 of the module docstring)."""
    sel = Selection(learner=learner)
    sel.modules = gradient_modules(frameworks, sel.notes)
    chosen = frameworks if frameworks else None
    default = [v for v in registry.VARIANTS.values() if not v.distributed and (
        v.framework in sel.modules or (chosen is None and not registry.FRAMEWORKS[
            v.framework].gradients) or (chosen is not None and v.framework in chosen))]
    variants, explicit = plans.variants(names, None, default)
    sel.notes += [f"{v.name} is data-parallel: 'check --workers N' checks it; skipped"
                  for v in variants if v.distributed]
    variants = [v for v in variants if not v.distributed]
    for v in variants if explicit else []:
        reasons = [v.why_not(p, device) for p in problems]
        if all(reasons):
            raise BenchError(f"variant {v.name} cannot run any case asked for: {reasons[0]}")
    if not (explicit or include_all):
        variants, slow = split_slow(variants, problems, device)
        if slow:
            sel.notes.append(left_out_note(slow))
    sel.variants = variants
    if not (sel.modules or sel.variants or learner):
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
    """Whether the variant's module says its compiled code for this problem is cached."""
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


# ---- settings ---------------------------------------------------------------------------------

def settle(selection: Selection, threads: int, report: Report) -> None:
    """Pin threads, then apply and record each framework's settings, as a run's worker does."""
    names = [*selection.modules, *(v.framework for v in selection.local)]
    settings, notes = environment.apply_settings(names, threads)
    report.settings.update(settings)
    report.notes += notes


# ---- running it ------------------------------------------------------------------------------

def run(problems: list[Problem], selection: Selection, steps: int, device: str,
        threads: int, say: Callable[[str], None] = stderr) -> Report:
    """Every subject of the selection on every problem (step 3 of the module docstring);
    ``steps=0``: gradients only."""
    report = Report(notes=list(selection.notes))
    children = isolated.start_check(problems, selection.isolated, steps, device, threads, say)
    try:
        settle(selection, threads, report)
        here = [local(problem, selection, steps, device, report, say) for problem in problems]
    finally:
        away = isolated.finish_check(children, report)
    for problem, (got, later) in zip(problems, here):
        got.update(away.get(label(problem), {}))
        if got:
            say(f"checking {label(problem)}: gradients of {', '.join(got)}")
            judge.judge_gradients(problem, got, report)
        for diagnosis in later:
            attempt(problem, "diagnosis", report, diagnosis)
    if not report.rows:
        raise BenchError("nothing was checked: " + "; ".join(dict.fromkeys(report.notes)))
    return report


def local(problem: Problem, selection: Selection, steps: int, device: str, report: Report,
          say: Callable[[str], None]) -> dict:
    """The checks made in this process on one problem: every trajectory, and every subject's
    (E, gradients) at the start, returned to be judged with the isolated ones, with the
    diagnoses of failed trajectories to make after that."""
    got: dict = {}
    later: list = []
    for name, module in selection.modules.items():
        reason = registry.main_variant(name).why_not(problem, device)
        if reason:
            report.notes.append(f"gradients: {reason}; skipped")
            continue
        keep(got, name, attempt(problem, name, report, partial(
            judge.framework_loss_and_gradients, module, problem, device)))
    for v in selection.local:
        reason = v.why_not(problem, device)
        if reason:
            report.notes.append(f"trajectory: {reason}; skipped")
            continue
        trainer = None
        if has_grads(v):  # its own gradients, from the Trainer whose trajectory follows
            trainer = attempt(problem, v.name, report, partial(v.make, problem, device))
            if trainer is None:
                continue  # it could not be made: said once
            keep(got, v.name, attempt(problem, v.name, report, partial(
                judge.trainer_loss_and_gradients, trainer, problem)))
        if steps:
            trajectory(problem, v, steps, device, report, say, trainer, later)
    learner = selection.learner
    if learner is not None:
        keep(got, learner.name, attempt(problem, learner.name, report,
                                        partial(learner_gradients, learner, problem)))
        if steps and learner.has_step:
            learner_trajectory(problem, learner, steps, report, say, later)
    return got, later


def keep(got: dict, name: str, value) -> None:
    if value is not None:
        got[name] = value


def learner_gradients(learner: Learner, problem: Problem) -> tuple[float, list]:
    return own(problem, *learner.grads(problem))


def own(problem: Problem, E: float, g) -> tuple[float, list]:

    return E, [None if t is None else np.asarray(t, dtype=np.float64)
               for t in judge.flat_gradients(problem, g)]


def has_grads(v: Variant) -> bool:
    try:
        return hasattr(getattr(registry.import_module(v.framework), v.trainer), "grads")
    except Unavailable:
        return False


def trajectory(problem: Problem, v: Variant, steps: int, device: str, report: Report,
               say: Callable[[str], None], trainer=None, later: list | None = None) -> None:
    if v.build_s >= SLOW_BUILD_S and not built(v, problem, device):
        say(f"building {v.name} for {label(problem)}: about {duration(v.build_s)} here, "
            f"cached afterwards")
    say(f"checking {label(problem)}: {steps} steps of {v.name}")
    attempt(problem, v.name, report,
            partial(judge.check_trajectory, problem, v, steps, device, report, trainer=trainer,
                    later=later))


def learner_trajectory(problem: Problem, learner: Learner, steps: int, report: Report,
                       say: Callable[[str], None], later: list) -> None:
    say(f"checking {label(problem)}: {steps} steps of {learner.name}'s sgd_step")
    where = label(problem)

    def go() -> None:
        params = learner.trajectory(problem, steps)
        start = rounded_start(problem)
        judge.compare_to_reference(problem, learner.name, params, start, steps, report)
        if learner.name in report.failed(where):
            later.append(lambda: (learner.name, where) in report.diagnoses or report.diagnose(
                learner.name, where, diagnose.trajectory(
                    problem, start, steps, params, (3, learner.trajectory(problem, 3)))))

    attempt(problem, learner.name, report, go)


# ---- check --example ------------------------------------------------------------------------

def run_example(example: examples.Example, selection: Selection, say) -> examples.Outcome:
    """Every selected framework's functions and variant's Trainer on the example."""
    outcome = examples.Outcome(example)
    for name, module in selection.modules.items():
        why = registry.main_variant(name).why_not(example.problem, "cpu")
        if why:
            outcome.notes.append(f"gradients: {why}; skipped")
            continue
        outcome_of(outcome, name, lambda m=module: examples.module_values(m, example))
    for v in selection.local:
        why = v.why_not(example.problem, "cpu")
        if why:
            outcome.notes.append(f"trajectory: {why}; skipped")
            continue
        outcome_of(outcome, v.name, lambda v=v: examples.trainer_values(v, example))
    for framework in dict.fromkeys(v.framework for v in selection.isolated):
        mine = [v for v in selection.isolated if v.framework == framework
                and not v.why_not(example.problem, "cpu")]
        for name, got in (isolated_values(mine, example, say) if mine else {}).items():
            if isinstance(got, str):
                outcome.notes.append(f"{name}: {got}; skipped")
            else:
                outcome.got[name] = got
    return outcome


def outcome_of(outcome: examples.Outcome, name: str, fn) -> None:
    """fn()'s Values under name. A variant named as its framework (numpy, torch, jax) is one
    subject with it: its Trainer gives the weights and losses, the functions the rest."""
    try:
        values = fn()
        before = outcome.got.get(name)
        if before is not None and not before.crashed:
            before.loss.update(values.loss)
            before.weights.update(values.weights)
            values = before
        outcome.got[name] = values
    except Unavailable as exc:
        outcome.notes.append(f"{name}: {exc}; skipped")
    except Exception as exc:  # a crash is that subject's failure, said with its cause
        outcome.notes.append(f"{name}: {crash_reason(exc)}")
        outcome.got[name] = examples.Values(crashed=True)


def isolated_values(variants: list, example: examples.Example, say) -> dict:
    """The Trainers of a framework that needs a process of its own, through ``demo``'s
    replay: {variant: Values or the reason it could not run}."""
    afters = sorted({q.after for q in example.published} | {0})
    names = [v.name for v in variants]
    say(f"example: {', '.join(names)}, in a process of its own")
    try:
        answers = isolated.ask({"do": "replay", "variants": names, "epochs": afters,
                                "problem": isolated.problem_json(example.problem)})
    except BenchError as exc:
        return dict.fromkeys(names, str(exc))
    out = {}
    spec = example.problem.spec
    for name, answer in answers.items():
        if "unavailable" in answer:
            out[name] = answer["unavailable"]
            continue
        values = examples.Values()
        if answer.get("grads") is not None:
            values.grads = dict(zip(spec.param_names(), map(np.asarray, answer["grads"])))
        for after, E, params in answer["snapshots"]:
            values.loss[after] = float(E)
            values.weights[after] = examples.named(spec, [(np.asarray(W), None if b is None else
                                                  np.asarray(b)) for W, b in params])
        out[name] = values
    return out


def example_command(path: str, frameworks, names, device: str, include_all: bool) -> int:
    """`check --example FILE`: 0 if every value is reproduced by every subject."""
    if device != "cpu":
        raise BenchError("--example runs on the CPU only")
    example = examples.read_example(path)
    selection = select(frameworks, names, [example.problem], "cpu", include_all)
    outcome = run_example(example, selection, stderr)
    outcome.notes = selection.notes + outcome.notes
    print(examples.render(outcome))
    return 0 if outcome.passed else 1

