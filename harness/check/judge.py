"""Judge each subject on its own evidence: gradients at the start, and a training trajectory.

Gradient errors are normalised per tensor: ``max|x - ref| / max(max|ref|, 1e-3 * G)``, where
G is the largest reference magnitude among the tensors compared, so that a tensor whose
gradient is all but zero is not judged on rounding noise. Trajectory errors are normalised by
how far the reference moved (``trajectory_errors``). All references are computed from the
problem's parameters *as rounded to the dtype under test*, so that the rounding of the
starting point is not counted as an error.

A subject fails on its own rows only: the finite differences, the exact gradient, the closed
form, the reference trajectory, or a crash. Each subject is also compared with the median of
the others that passed their own rows; that comparison names the odd one out but fails no
one. A failing subject gets a diagnosis (``harness.check.diagnose``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import numpy as np

from harness.check import deadline, diagnose, diagnose_trajectory, precision
from harness.check.diagnose_trajectory import LEARNER
from harness.check.evidence import Evidence
from harness.check.reference import (
    FD_MAX_ENTRIES,
    backward,
    closed_form,
    finite_differences,
    normalised_errors,
    reference_loss,
    reference_trajectory,
    rounded_start,
    trajectory_errors,
)
from harness.check.report import (
    CLOSED,
    EXACT,
    FD,
    LOSS,
    OTHERS,
    RUN,
    TOLERANCES,
    TRAJECTORY,
    Report,
    Row,
    crash_reason,
    label,
)
from harness.check.trace import first_difference, first_wrong_layer
from implementations import registry
from implementations.contract import Unavailable
from implementations.problem import Params, Problem, cast_problem, flatten, map_params

NOISE_FACTOR = 10
REFERENCE = "backprop-bench's reference"  # the subject of a row that checks the harness itself


# ---- the gradients of one subject ---------------------------------------------------------------

def framework_loss_and_gradients(module, problem: Problem,
                                 device: str = "cpu") -> tuple[float, list]:
    """A framework's (E, flat gradients) at the problem's start, as float64 NumPy (a tensor
    keeps the shape it came with, so that a wrong one can be named)."""
    x, y, params = cast_problem(problem)
    fx, fy = module.to_framework(x, device), module.to_framework(y, device)
    fparams = map_params(lambda a: module.to_framework(a, device, trainable=True), params)
    E, g = module.grads(problem.spec, fparams, fx, fy)
    return (float(np.asarray(module.to_numpy(E)).reshape(-1)[0]),
            as_arrays(problem, [None if t is None else module.to_numpy(t)
                                for t in flat_gradients(problem, g)]))


def trainer_loss_and_gradients(trainer, problem: Problem) -> tuple[float, list]:
    """A variant's own (E, flat gradients) at its Trainer's current point, as float64 NumPy."""
    E, g = trainer.grads()
    return float(E), as_arrays(problem, flat_gradients(problem, g))


def as_arrays(problem: Problem, tensors: list) -> list:
    """float64 arrays in the parameters' shapes where only size-1 axes differ (a Python float
    for a 1 x 1 weight); any other shape is kept, so that a wrong one can be named."""
    out = []
    for t, p in zip(tensors, flatten(problem.params0)):
        if t is None:
            out.append(None)
            continue
        a = np.asarray(t, dtype=np.float64)
        same = a.size == p.size and np.squeeze(a).shape == np.squeeze(p).shape
        out.append(a.reshape(p.shape) if same else a)
    return out + [np.asarray(t, dtype=np.float64) for t in tensors[len(out):]]


def flat_gradients(problem: Problem, g) -> list:
    """The gradient tensors in param_names() order; a (W, None) hole where a bias belongs is
    kept as None, so that a missing gradient is named rather than shifting the others."""
    if not isinstance(g, (list, tuple)):
        raise TypeError(f"grads must be a list of (W, b) pairs, not {type(g).__name__}")
    out = []
    for layer in g:
        if not isinstance(layer, (list, tuple)) or len(layer) != 2:
            raise TypeError("grads must be a list of (W, b) pairs, one per layer")
        out.append(layer[0])
        if problem.spec.bias:
            out.append(layer[1])
    return out


# ---- judging gradients ---------------------------------------------------------------------------

def check_gradients(problem: Problem, modules: dict, device: str = "cpu",
                    report: Report | None = None, max_entries: int = FD_MAX_ENTRIES,
                    trainers: dict | None = None) -> Report:
    """Each framework module's loss and gradients, and each Trainer's own (``trainers``, by
    variant name), judged by ``judge_evidence``."""
    evidence = []
    for name, m in modules.items():
        ev = Evidence(name, label(problem), terms=name)
        ev.gradients = attempt(ev, "grads", lambda m=m: framework_loss_and_gradients(
            m, problem, device))
        evidence.append(ev)
    for name, t in (trainers or {}).items():
        ev = Evidence(name, label(problem))
        ev.gradients = attempt(ev, "grads", lambda t=t: trainer_loss_and_gradients(t, problem))
        evidence.append(ev)
    return judge_evidence(problem, evidence, report, max_entries)


def judge_evidence(problem: Problem, evidence: list[Evidence], report: Report | None = None,
          max_entries: int = FD_MAX_ENTRIES) -> Report:
    """Rows and diagnoses for every subject's evidence on one problem: its crashes, its
    gradients at the start (``judge_gradients``, all subjects together), its trajectory
    against the reference, and a diagnosis for each that fails: the gradient's when it has
    one (the closer evidence explains the rest), else the trajectory's, else the crash's."""
    report = report if report is not None else Report()
    where = label(problem)
    for ev in evidence:
        report.notes += ev.notes
        for piece, reason in ev.crashes:
            report.rows.append(Row(ev.subject, problem.spec.dtype, "-", RUN, math.inf, 0.0,
                                   f"{piece}: {reason}", where))
    got = {ev.subject: (ev.gradients[0], as_arrays(problem, ev.gradients[1]))
           for ev in evidence if ev.gradients is not None}
    if got:
        judge_gradients(problem, got, report, max_entries,
                        {ev.subject: ev for ev in evidence if ev.gradients is not None})
    start = rounded_start(problem)
    for ev in evidence:
        if ev.trajectory is not None:
            compare_to_reference(problem, ev.subject, ev.trajectory[1], start,
                                 ev.trajectory[0], report, mixed(ev.terms))
    failed = set(report.failed(where))
    for ev in evidence:
        if ev.subject in failed:
            diagnose_evidence(problem, ev, start, report)
    in_order(report, where, [ev.subject for ev in evidence])
    return report


def diagnose_evidence(problem: Problem, ev: Evidence, start: Params, report: Report) -> None:
    """A failed subject's diagnosis from its trajectory and crashes, where its gradients gave
    none (``judge_gradients`` made that one)."""
    where = label(problem)
    wrong = any(r.subject == ev.subject and r.problem == where and r.reference == TRAJECTORY
                and not r.passed for r in report.rows)
    if (ev.subject, where) not in report.diagnoses and ev.trajectory is not None and wrong:
        n, params = ev.trajectory
        try:
            lines = diagnose_trajectory.trajectory(problem, start, n, params, ev.probed(),
                                                   ev.terms)
        except Exception:  # a diagnosis that fails is no diagnosis; the rows stand
            lines = []
        report.diagnose(ev.subject, where, lines)
    if (ev.subject, where) not in report.diagnoses:
        for _, reason in ev.crashes:
            report.diagnose(ev.subject, where, diagnose.crash(reason))


def in_order(report: Report, where: str, subjects: list[str]) -> None:
    """This problem's rows grouped by subject, in the order the subjects were selected (the
    reference's own rows first)."""
    rank = {s: i for i, s in enumerate(dict.fromkeys([REFERENCE, *subjects]))}
    mine = [r for r in report.rows if r.problem == where]
    rest = [r for r in report.rows if r.problem != where]
    report.rows[:] = rest + sorted(mine, key=lambda r: rank.get(r.subject, len(rank)))


def judge_gradients(problem: Problem, got: dict[str, tuple[float, list]],
                    report: Report | None = None, max_entries: int = FD_MAX_ENTRIES,
                    evidence: dict[str, Evidence] | None = None) -> Report:
    """Rows for every subject's (E, flat gradients) against the reference loss, finite
    differences (at most ``max_entries`` entries per tensor), the exact gradient, the closed
    form (1-1-1), and the median of the others, within each subject's limits
    (``precision.limits``: constant for float64 and float32, the error model's below); a
    diagnosis for each subject that fails."""
    report = report if report is not None else Report()
    spec, where = problem.spec, label(problem)
    start = rounded_start(problem)
    flat = flatten(start)
    fd = finite_differences(problem, flat, max_entries)
    trace = backward(spec, flat, problem.x, problem.y)
    check_reference(problem, trace.grads, fd, report)
    if any(len(idx) < t.size for (idx, _), t in zip(fd, flat)):
        report.notes.append(f"{spec.label()}: finite differences on {max_entries} seeded "
                            f"entries per tensor")
    refs = {FD: fd, EXACT: trace.grads, CLOSED: closed_form(problem, start)}
    E_ref = reference_loss(spec, flat, problem.x, problem.y)
    shaped, bounds = {}, {}
    for name, (E, g) in got.items():
        bounds[name] = precision.limits(problem, flat, underflow=pure_low(problem, name,
                                                                          evidence))
        report.rows.append(loss_row(name, problem, E, E_ref, bounds[name].loss))
        if judge_one(problem, name, g, refs, bounds[name], report):
            shaped[name] = g
    compare_with_others(problem, shaped, bounds, report)
    for name in report.failed(where):
        if name in got:
            E, g = got[name]
            lines = diagnose.gradient(problem, flat, trace, E, g, bounds[name].exact)
            ev = (evidence or {}).get(name)
            if ev is not None and ev.terms.startswith(LEARNER):
                lines = learner_lines(problem, flat, trace, g, ev, lines)
            if lines:  # the gradient at the start is the closer evidence: it explains the rest
                report.diagnoses[(name, where)] = lines
    return report


def pure_low(problem: Problem, name: str, evidence: dict[str, Evidence] | None) -> bool:
    """Whether the subject is a pure float16 one (its own smallest values are its to lose):
    every subject but a variant that declares mixed precision, which scales its loss."""
    if problem.spec.dtype != "float16":
        return False
    ev = (evidence or {}).get(name)
    return not mixed(ev.terms if ev else name)


def mixed(terms: str) -> bool:
    """Whether the subject's words name a variant that declares mixed precision."""
    variant = registry.VARIANTS.get(terms)
    return variant is not None and variant.precision == "mixed"


def learner_lines(problem: Problem, flat: list, trace, g: list, ev: Evidence,
                  lines: list[str]) -> list[str]:
    """A learner's diagnosis: that of its gradients, then where its backward pass first goes
    wrong, from its intermediates when it gives them (``trace.first_difference``); without
    them, the first wrong layer from the top, where the diagnosis names no cause of its own
    (``diagnose.VAGUE``)."""
    if ev.trace is not None:
        found = first_difference(problem, flat, trace, ev.trace)
        if found:
            return lines + found
    if not lines or any(v in lines[0] for v in diagnose.VAGUE):
        return lines + first_wrong_layer(problem, g, trace.grads)
    return lines


def loss_row(name: str, problem: Problem, E: float, E_ref: float, tolerance: float) -> Row:
    e = abs(E - E_ref) / max(abs(E_ref), 1e-300) if math.isfinite(E) else math.inf
    return Row(name, problem.spec.dtype, "E", LOSS, e, tolerance, problem=label(problem))


def judge_one(problem: Problem, name: str, g: list, refs: dict, limits: precision.Limits,
              report: Report) -> bool:
    """Rows for one subject's gradients; False (with failing rows) if they are misshapen."""
    spec, where = problem.spec, label(problem)
    names = spec.param_names()
    fd, exact, closed = refs[FD], refs[EXACT], refs[CLOSED]
    if len(g) != len(names) or any(t is None or np.shape(t) != e.shape
                                   for t, e in zip(g, exact)):
        for tensor, t, e, tol in zip(names, g, exact, limits.fd):
            if t is None or np.shape(t) != e.shape:
                shape = "missing" if t is None else f"shape {tuple(np.shape(t))}"
                report.rows.append(Row(name, spec.dtype, tensor, FD, math.inf, tol,
                                       f"({shape}, {tensor} is {e.shape})", where))
        if len(g) != len(names):
            report.rows.append(Row(name, spec.dtype, "-", RUN, math.inf, 0.0,
                                   f"{len(g)} gradient tensors for {len(names)} parameters",
                                   where))
        return False
    rows = [(FD, normalised_errors([t.reshape(-1)[idx] for t, (idx, _) in zip(g, fd)],
                                   [vals for _, vals in fd]), limits.fd),
            (EXACT, normalised_errors(g, exact), limits.exact)]
    if closed is not None:
        rows.append((CLOSED, normalised_errors(g, closed), limits.closed))
    for reference, errs, tols in rows:
        report.rows += [Row(name, spec.dtype, tensor, reference, e, t, problem=where)
                        for tensor, e, t in zip(names, errs, tols)]
    return True


def check_reference(problem: Problem, exact: list, fd: list, report: Report) -> None:
    """The harness's own chain rule against the finite differences: a failure is our bug."""
    errs = normalised_errors([t.reshape(-1)[idx] for t, (idx, _) in zip(exact, fd)],
                             [vals for _, vals in fd])
    tol = TOLERANCES["float64"].finite_differences
    for tensor, e in zip(problem.spec.param_names(), errs):
        if e > tol:
            report.rows.append(Row(REFERENCE, problem.spec.dtype, tensor, FD, e, tol,
                                   "(a bug in backprop-bench itself: please report it)",
                                   label(problem)))


def compare_with_others(problem: Problem, got: dict[str, list], bounds: dict,
                        report: Report) -> None:
    """Per subject, per tensor: the error against the median of the *other* subjects that
    passed their own rows; the subject whose own rows failed is named the odd one out."""
    where, dtype = label(problem), problem.spec.dtype
    failed = set(report.failed(where))
    for name, g in got.items():
        others = [o for n, o in got.items() if n != name and n not in failed]
        if not others:
            continue
        median = [np.median(np.stack(ts), axis=0) for ts in zip(*others)]
        errs = normalised_errors(g, median)
        tols = bounds[name].others
        report.rows += [Row(name, dtype, tensor, OTHERS, e, t, f"median of {len(others)}", where)
                        for tensor, e, t in zip(problem.spec.param_names(), errs, tols)]
        worst, tol = max(zip(errs, tols), key=lambda et: et[0] / et[1] if et[1] else et[0],
                         default=(0.0, 0.0))
        if worst > tol and name not in failed:  # a failed subject is named in the verdict
            report.disagreements.append(
                f"{where}: {name} differs from the median of the other {len(others)} by "
                f"{worst:.1e} (tolerance {tol:.0e}), though each of its own references passes")


# ---- trajectories ----------------------------------------------------------------------------

def steps_for(trainer, steps: int) -> int:
    """At least ``steps``, and enough to run a block (or a compiled loop's unrolled body)
    twice and then its remainder: 2 * period + 1 or more, not a multiple of the period."""
    period = max(int(getattr(trainer, "block", 1) or 1), int(getattr(trainer, "unroll", 1) or 1))
    if period <= 1:
        return steps
    n = max(steps, 2 * period + 1)
    return n + 1 if n % period == 0 else n


def probe_steps(trainer) -> int:
    """A short run for the diagnosis: a block (or unrolled body) and two steps more."""
    return max(int(getattr(trainer, "block", 1) or 1), int(getattr(trainer, "unroll", 1) or 1)) + 2


def trained(trainer, steps: int) -> tuple[int, Params]:
    """(steps, the Trainer's parameters after it ran them)."""
    trainer.run(steps)
    return steps, trainer.params()


def probe(variant, problem: Problem, device: str = "cpu") -> tuple[int, Params]:
    """A fresh Trainer's short run (``probe_steps``), for the diagnosis of a trajectory."""
    fresh = variant.make(problem, device)
    return trained(fresh, probe_steps(fresh))


def needs_probe(problem: Problem, ev: Evidence) -> bool:
    """Whether the evidence's trajectory is wrong, so that its probe will be asked for."""
    if ev.trajectory is None:
        return False
    n, params = ev.trajectory
    return not compare_to_reference(problem, ev.subject, params, rounded_start(problem),
                                    n, mixed_precision=mixed(ev.terms)).passed


def check_trajectory(problem: Problem, variant, steps: int, device: str = "cpu",
                     report: Report | None = None, exercise: bool = True) -> Report:
    """A variant's Trainer after ``steps`` steps (more for a block variant: ``steps_for``)
    against the reference trajectory, diagnosed if it fails."""
    subject = getattr(variant, "label", variant.name)  # with its workers, if several
    ev = Evidence(subject, label(problem), terms=getattr(variant, "name", ""))
    trainer = variant.make(problem, device)
    ev.trajectory = trained(trainer, steps_for(trainer, steps) if exercise else steps)
    ev.probe = partial(probe, variant, problem, device)
    return judge_evidence(problem, [ev], report)


def compare_to_reference(problem: Problem, subject: str, params: Params, start: Params,
                         steps: int, report: Report | None = None,
                         mixed_precision: bool = False) -> Report:
    """Rows for params vs the reference trajectory of ``steps`` steps from ``start``: the
    exact float64 one, or below float32 ``precision``'s (a pure variant's parameters rounded
    after each step; a mixed one's float32 master weights), within its bounds."""
    report = report if report is not None else Report()
    dtype = problem.spec.dtype
    if precision.is_low(dtype):
        ref = (precision.mixed_trajectory if mixed_precision else precision.rounded_trajectory)(
            problem, start, steps)
        errs = precision.trajectory_error(params, ref, start)
        why = " (the float32 master trajectory)" if mixed_precision else (
            f" (parameters rounded to {dtype} after each step)")
        tols = [(t, why) for t in precision.trajectory_bounds(problem, start, steps, ref,
                                                              mixed_precision)]
    else:
        ref = reference_trajectory(problem, start, steps)
        errs = trajectory_errors(params, ref, start, dtype)
        tols = trajectory_tolerances(problem, start, steps, ref)
    for tensor, e, (tol, why) in zip(problem.spec.param_names(), errs, tols):
        report.rows.append(Row(subject, dtype, tensor, TRAJECTORY, e, tol,
                               f"after {steps} steps{why}", label(problem)))
    return report


def trajectory_tolerances(problem: Problem, start: Params, steps: int,
                          ref: Params) -> list[tuple[float, str]]:
    """Per tensor (tolerance, note). Below float64, the tolerance is at least NOISE_FACTOR
    times the error of the reference trajectory run in the problem's dtype: long runs near
    convergence move less than float32 rounding adds up, and that is no one's bug."""
    dtype, tol = problem.spec.dtype, TOLERANCES[problem.spec.dtype].trajectory
    if dtype == "float64":
        return [(tol, "")] * len(flatten(start))
    own = trajectory_errors(reference_trajectory(problem, start, steps, dtype), ref, start, dtype)
    return [(tol, "") if NOISE_FACTOR * e <= tol else
            (NOISE_FACTOR * e, f" (tolerance {NOISE_FACTOR}× the {dtype} reference's own "
                               f"error)") for e in own]


def guarded(what: str, fn: Callable) -> tuple[object, str | None, str | None]:
    """(fn(), None, None), or (None, why it cannot run here, None), or (None, None, how it
    crashed): the one error policy of a check. Work that cannot run here raises
    ``Unavailable``; work that crashes, exits or runs past ``check --timeout``
    (``deadline``) is a crash, said with its cause and where it was raised. An interrupt by
    the user (Ctrl-C) is not caught: it ends the check."""
    try:
        with deadline.limit(what):
            return fn(), None, None
    except Unavailable as exc:
        return None, str(exc), None
    except (Exception, SystemExit) as exc:  # a crashing subject is a result, not the end
        return None, None, crash_reason(exc)


def attempt(ev: Evidence, piece: str, fn: Callable):
    """fn(), or None, under ``guarded``: a subject that cannot run here is a note of its
    evidence, one that crashes a crash of that piece."""
    value, unavailable, crash = guarded(f"{ev.subject} on {ev.problem}", fn)
    if unavailable is not None:
        ev.notes.append(f"{ev.subject}: {unavailable}; skipped")
    if crash is not None:
        ev.crashes.append((piece, crash))
    return value
