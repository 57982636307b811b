"""Name a wrong trajectory in one line (each gradient right, or no gradient of its own).

The classes, in the order they are tried: tensors that never move (frozen), gradients that
accumulate from step to step, every step scaled by a known factor (the learning rate or the
loss: ``diagnose.factors``), a step too many or too few, or one step right and many wrong
(state carried between steps). Where none fits, the list is empty.
"""

from __future__ import annotations

import numpy as np

from harness.check.diagnose import factors
from harness.check.reference import Variation, reference_trajectory, trajectory_errors
from harness.check.report import TOLERANCES
from implementations.problem import Params, Problem, flatten


def trajectory(problem: Problem, start: Params, steps: int, params: Params,
               probe: tuple[int, Params] | None = None, terms: str = "") -> list[str]:
    """The diagnosis of a wrong trajectory: ``params`` after ``steps`` steps from ``start``.
    ``probe``, if given, is (k, a fresh Trainer's parameters after k steps): a short run, on
    which a variation is told apart before a long run's rounding has grown chaotic."""
    if not all(np.all(np.isfinite(np.asarray(t, np.float64))) for t in flatten(params)):
        return ["the parameters are not finite: the training diverged"]
    runs = [probe] if probe is not None else [(steps, params)]  # the short run tells best
    with np.errstate(all="ignore"):  # a variation that diverges simply does not match
        return trajectory_class(problem, start, steps, runs, probe)


def trajectory_class(problem: Problem, start: Params, steps: int, runs: list,
                     probe: tuple[int, Params] | None) -> list[str]:
    """The first trajectory class of the module docstring that the runs fit."""
    names = problem.spec.param_names()

    def matches(variation: Variation, extra: int = 0) -> bool:
        return any(n + extra >= 0 and close(problem, start, n + extra, p, variation)
                   for n, p in runs)

    frozen = frozen_tensors(problem, start, runs)
    if frozen and matches(Variation(frozen=frozenset(frozen))):
        return [f"{', '.join(names[i] for i in frozen)} never moved from the start: frozen "
                f"(left out of the update or of the optimizer)"]
    if matches(Variation(accumulate=True)):
        return ["the gradients accumulate from step to step (.grad is never zeroed: "
                "zero_grad is missing)"]
    for value, eq, why in factors(problem.batch, problem.spec.widths[-1]):
        if matches(Variation(lr_factor=value)):
            return [f"every step is {value:.2f}× the reference step ({eq}), in the gradient or "
                    f"the learning rate: {'; '.join(why)}"]
    for extra, what in ((-1, "one step too few"), (1, "one step too many")):
        if matches(Variation(), extra):
            return [f"each run(n) makes {what} (n {'-' if extra < 0 else '+'} 1 steps)"]
    if probe is not None and close(problem, start, probe[0], probe[1], Variation()):
        return [f"the first {probe[0]} steps are right, yet {steps} steps drift: state is "
                f"carried from step to step (accumulating gradients, momentum, a stale cache)"]
    return []


def close(problem: Problem, start: Params, n: int, params: Params, variation: Variation) -> bool:
    """Whether params after n steps are within 10 tolerances of the variation, run in float64
    or in the problem's dtype."""
    dtype = problem.spec.dtype
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
