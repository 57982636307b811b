"""Name a wrong trajectory in one line (each gradient right, or no gradient of its own).

The classes, in the order they are tried: tensors that never move (frozen), gradients that
accumulate from step to step (said in the subject's own words: ``accumulating``), each layer
updated inside the backward pass, every step scaled by a known factor (the learning rate or the
loss: ``diagnose.factors``), a step too many or too few, a known wrong backward pass that is
right at the start and wrong later (``diagnose.mutations``: relu' taken as 1 where every unit
starts active), or one step right and many wrong (state carried between steps). Where none
fits, the list is empty.
"""

from __future__ import annotations

import numpy as np

from harness.check import precision
from harness.check.diagnose import factors, mutations, ratio
from harness.check.reference import Variation, reference_trajectory, trajectory_errors
from harness.check.report import TOLERANCES
from implementations import registry
from implementations.problem import Params, Problem, flatten


def trajectory(problem: Problem, start: Params, steps: int, params: Params,
               probe: tuple[int, Params] | None = None, terms: str = "") -> list[str]:
    """The diagnosis of a wrong trajectory: ``params`` after ``steps`` steps from ``start``.
    ``probe``, if given, is (k, a fresh Trainer's parameters after k steps): a short run, on
    which a variation is told apart before a long run's rounding has grown chaotic."""
    if not all(np.all(np.isfinite(np.asarray(t, np.float64))) for t in flatten(params)):
        return ["the parameters are not finite: the training diverged"]
    variant = registry.VARIANTS.get(terms.removeprefix(LEARNER))
    low = precision.trajectory_diagnosis(problem, start, steps, params, bool(
        variant and variant.precision == "mixed"))
    if low:
        return low
    runs = [probe] if probe is not None else [(steps, params)]  # the short run tells best
    with np.errstate(all="ignore"):  # a variation that diverges simply does not match
        return trajectory_class(problem, start, steps, params, runs, probe, terms)


LEARNER = "learner-"  # the terms of a learner's file: "learner-" and its framework's name


def accumulating(terms: str, zero_grad: str = "") -> str:
    """What accumulating gradients are, in the subject's own words: a variant whose framework
    keeps .grad names what clears it (``Variant.zero_grad``); a learner's file keeps a sum."""
    if zero_grad:
        return f".grad is never zeroed between steps: {zero_grad} is missing"
    if terms.startswith(LEARNER):
        return ("each step adds its gradient to those of the steps before (a sum that is "
                "never reset between steps)")
    return "each step adds its gradient to those of the steps before"


def trajectory_class(problem: Problem, start: Params, steps: int, params: Params, runs: list,
                     probe: tuple[int, Params] | None, terms: str = "") -> list[str]:
    """The first trajectory class of the module docstring that the runs fit."""
    names = problem.spec.param_names()

    def matches(variation: Variation, extra: int = 0, on: list | None = None) -> bool:
        """Whether a run fits the variation, where the variation is not the exact trajectory
        by another name (W for W^T on a 1 x 1 W)."""
        return any(n + extra >= 0 and close(problem, start, n + extra, p, variation)
                   and (extra or distinct(problem, start, n, variation))
                   for n, p in on or runs)

    frozen = frozen_tensors(problem, start, runs)
    if frozen and matches(Variation(frozen=frozenset(frozen))):
        return [f"{', '.join(names[i] for i in frozen)} never moved from the start: frozen "
                f"(left out of the update or of the optimizer)"]
    if matches(Variation(accumulate=True)):
        variant = registry.VARIANTS.get(terms.removeprefix(LEARNER))
        return [f"the gradients accumulate from step to step: "
                f"{accumulating(terms, variant.zero_grad if variant else '')}"]
    if problem.spec.depth > 1 and matches(Variation(sequential=True)):
        return ["each layer is updated during the backward pass, before dE/dh is carried down "
                "through it, so the layers below get their gradients through the new weights "
                "(update every layer after the whole backward pass)"]
    for value, eq, why in factors(problem, of="step"):
        if matches(Variation(lr_factor=value)):
            return [f"every step is {ratio(value)}× the reference step ({eq}), in the gradient "
                    f"or the learning rate: {'; '.join(why)}"]
    for extra, what in ((-1, "one step too few"), (1, "one step too many")):
        if not terms.startswith(LEARNER) and matches(Variation(), extra):
            return [f"each run(n) makes {what} (n {'-' if extra < 0 else '+'} 1 steps)"]
    lowered = lr_precision(problem, start, steps, params)
    if lowered:
        return lowered
    for what, kwargs in mutations(problem, flatten(start)):
        if matches(Variation(mutation=tuple(kwargs.items())), on=[(steps, params)]):
            return [f"{what} (right at the start, it shows once training moves the network)"]
    if probe is not None and close(problem, start, probe[0], probe[1], Variation()):
        return [f"the first {probe[0]} steps are right, yet {steps} steps drift: state is "
                f"carried from step to step (accumulating gradients, momentum, a stale cache)"]
    return []


LOWER = {"float64": ("float32",)}  # the precisions a learning rate may be kept in by mistake


def lr_precision(problem: Problem, start: Params, steps: int, params: Params) -> list[str]:
    """A constant of the step kept in a lower precision than the parameters (the learning
    rate, or the 1/batch of the mean): every step too large or small by that constant's
    rounding (up to 6e-8 of it in float32), which only the whole run can show."""
    dtype, batch, out = problem.spec.dtype, problem.batch, problem.spec.widths[-1]
    constants = [("the learning rate", "lr", problem.lr), ("the mean's 1/batch", "1/batch",
                                                            1.0 / batch),
                 ("the mean's 1/(batch × out width)", "1/(batch × out)", 1.0 / (batch * out))]
    exact = reference_trajectory(problem, start, steps)
    off = max(trajectory_errors(params, exact, start, dtype), default=0.0)
    for low in LOWER.get(dtype, ()):
        for what, short, value in constants[:1] + (constants[1:] if batch > 1 else []):
            kept = float(np.dtype(low).type(value))
            factor = kept / value
            if factor == 1.0:
                continue
            near = max(trajectory_errors(params, reference_trajectory(
                problem, start, steps, dtype, Variation(lr_factor=factor)), start, dtype),
                default=0.0)
            if near <= TOLERANCES[dtype].trajectory and near < off / 3:
                return [f"{what} is kept in {low} while the parameters are {dtype}: {short} = "
                        f"{value:.10g} is {kept:.10g} there, so every step is {factor:.10g}× "
                        f"the reference step (keep it a Python float, or in the parameters' "
                        f"dtype)"]
    return []


def distinct(problem: Problem, start: Params, n: int, variation: Variation) -> bool:
    """Whether the variation's trajectory of n steps differs from the exact one by more than
    ``close`` forgives."""
    dtype = problem.spec.dtype
    ref = reference_trajectory(problem, start, n, "float64", variation)
    exact = reference_trajectory(problem, start, n)
    return max(trajectory_errors(ref, exact, start, dtype), default=0.0) > (
        10 * TOLERANCES[dtype].trajectory)


def close(problem: Problem, start: Params, n: int, params: Params, variation: Variation) -> bool:
    """Whether params after n steps are within 10 tolerances of the variation, run in float64
    or in the problem's dtype."""
    dtype = problem.spec.dtype
    if precision.is_low(dtype):
        return precision.near_variation(problem, start, n, params, reference_trajectory(
            problem, start, n, "float64", variation))
    for run_in in dict.fromkeys(("float64", dtype)):
        ref = reference_trajectory(problem, start, n, run_in, variation)
        if max(trajectory_errors(params, ref, start, dtype), default=0.0) <= (
                10 * TOLERANCES[dtype].trajectory):
            return True
    return False


def frozen_tensors(problem: Problem, start: Params, runs: list) -> list[int]:
    """Indices of the tensors that did not move in any run while the reference moved them."""
    out = []
    s_flat = flatten(start)
    for i, s in enumerate(s_flat):
        still = True
        for n, params in runs:
            r = flatten(reference_trajectory(problem, start, n))[i]
            p = np.asarray(flatten(params)[i], np.float64)
            moved = float(np.max(np.abs(r - s), initial=0.0))
            if not (moved > 0 and p.shape == s.shape
                    and float(np.max(np.abs(p - s), initial=0.0)) <= 1e-6 * moved):
                still = False
        if still:
            out.append(i)
    return out
