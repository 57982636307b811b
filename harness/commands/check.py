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

``check --example`` reproduces a published worked example (``harness.check.example``)
with the same selection; ``check --workers`` checks the data-parallel variants
(``harness.procs.distcheck``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from functools import partial

import numpy as np

from harness.check import diagnose_trajectory, judge
from harness.check import learner as learners
from harness.check.judge import attempt
from harness.check.learner import Learner
from harness.check.reference import rounded_start
from harness.check.render import render
from harness.check.report import Report, label
from harness.commands import check_workers, plans, scale
from harness.commands.base import Command, require_device
from harness.commands.check_example import example_command, run_example  # noqa: F401 (the API)
from harness.commands.check_select import (  # noqa: F401 (the API)
    SLOW_BUILD_S,
    Selection,
    built,
    duration,
    gradient_modules,
    select,
    split_slow,
    stderr,
)
from harness.commands.options import (
    add_check_timeout,
    add_networks,
    add_selection,
    device,
    networks_of,
    positive,
    with_check_timeout,
)
from harness.measure import environment
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
                learner.name, where, diagnose_trajectory.trajectory(
                    problem, start, steps, params, (3, learner.trajectory(problem, 3)))))

    attempt(problem, learner.name, report, go)


# ---- the subcommand -------------------------------------------------------------------------

def check_args(p: argparse.ArgumentParser) -> None:
    add_networks(p, "default: the worked example (1-1-1 linear, batch 1, float64) and 3-4-4-3 "
                 "tanh with bias, batch 5, float64 and float32: together they catch the classic "
                 "backprop bugs (a dropped 1/batch, a missing 1/2, W for W^T, a wrong "
                 "derivative, ...); --activation, --bias/--no-bias and --batch change both; "
                 "--widths networks take batch 5 (1-1-1: batch 1) unless --batch is given")
    add_selection(p, "every variant of the frameworks checked, but those whose cold build "
                  "takes minutes and is not cached yet (said in the output; --all includes "
                  "them)")
    p.add_argument("--all", dest="include_all", action="store_true",
                   help="also the variants whose cold build takes minutes (torch-loop, the "
                        "torch.compile blocks), building them where they are not cached")
    p.add_argument("--impl", metavar="FILE.py",
                   help="also check your own backward pass: a NumPy file defining grads(params, "
                        "x, y) -> (E, grads) and optionally sgd_step(params, x, y, lr), "
                        "ACTIVATION and BIAS (see examples/learner_backprop.py)")
    p.add_argument("--example", metavar="FILE",
                   help="check a published worked example instead (TOML or JSON: network, "
                        "weights, data, and the values printed; see examples/): every "
                        "framework must reproduce it to the printed digits")
    p.add_argument("--steps", type=int, default=100, help="trajectory length (default: 100; a "
                   "block variant runs its block at least twice, then a remainder)")
    p.add_argument("--device", type=device, default="cpu", help="cpu or cuda (also: gpu)")
    p.add_argument("--threads", type=positive(int), help="threads for every framework, set as "
                   "run sets them (default: all usable cores)")
    p.add_argument("--workers", type=positive(int), metavar="N",
                   help="check the data-parallel variants on N workers instead: the gradient "
                        "each worker steps with against the full batch's, the trajectory, and "
                        "every worker's parameters equal (default network 4,16,16,4 tanh, "
                        "batch 8·N; use N >= 2: at N = 1 a missing all-reduce cannot show)")
    p.add_argument("--oversubscribe", action="store_true",
                   help="let more workers than cores share them (marked in the results)")
    add_check_timeout(p)


COMMAND = Command(
    "check", "verify gradients against finite differences, the closed form, each other "
    "and a training trajectory; exit 1 on any disagreement",
    "Check each framework's loss and gradients, and each variant's own, against "
    "float64 finite differences of an independent forward pass, an exact float64 "
    "chain rule and the worked example's closed form (1-1-1), then train every "
    "variant N steps against the float64 reference trajectory. Each is judged on its "
    "own evidence (the median of the others is shown beside it); a failure is named "
    "in one line when it fits a known bug class. --impl checks your own backward pass "
    "the same way, --example a published worked example.",
    ("check", "check --widths 4,16,16,4 --activation tanh --bias --batch 5 --dtype "
     "float32,float64", "check --impl examples/learner_backprop.py",
     "check --example examples/mazur-2015.toml", "check --all"),
    check_args, lambda a: with_check_timeout(a, lambda: command(
        networks_of(a), a.framework, a.variants, a.steps, a.device, a.workers,
        a.oversubscribe, a.include_all, a.impl, a.example, a.threads)))
