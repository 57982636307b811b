"""`check --workers N`'s rules: is a data-parallel variant right on N workers?

For each distributed variant and network, from the shared starting point:

* **gradient**: the gradient every worker steps with (its shard's, after the all-reduce)
  against the exact float64 gradient of the *full* batch, within the tolerance between
  frameworks (float64: rounding; float32: the existing float32 tolerance);
* **trajectory**: worker 0's parameters after N steps against the float64 reference
  trajectory, as for every variant;
* **workers agree**: every worker's parameters bitwise equal to worker 0's (tolerance 0).

Summing instead of averaging shows in the first two (twice the gradient), a worker that
skips the all-reduce in all three; at N = 1 neither bug can show, so check with N >= 2.
``harness.procs.distcheck`` runs these in a fresh process per framework (a JAX process fixes
its number of host devices when JAX starts), under the check's one error policy.
"""

from __future__ import annotations

import math

import numpy as np

from harness.check.judge import compare_to_reference, guarded
from harness.check.reference import exact_gradient, normalised_errors, rounded_start
from harness.check.report import RUN, TOLERANCES, Report, Row, label
from implementations.problem import Problem, flatten

GRADIENT, RANKS = "full-batch gradient", "worker 0"
WORKERS_NETWORK = (4, 16, 16, 4)


def check_ranks(problem: Problem, subject: str, trainer, report: Report) -> None:
    """Rows: per tensor, max over workers of max|p_r - p_0| / max|p_0|; must be 0."""
    ranks = trainer.rank_params()
    first = [np.asarray(t, np.float64) for t in flatten(ranks[0])]
    for i, name in enumerate(problem.spec.param_names()):
        spread = max(float(np.max(np.abs(np.asarray(flatten(r)[i], np.float64) - first[i]),
                                  initial=0.0)) for r in ranks)
        scale = max(float(np.max(np.abs(first[i]), initial=0.0)), 1e-300)
        report.rows.append(Row(subject, problem.spec.dtype, name, RANKS, spread / scale, 0.0,
                               f"over {len(ranks)} workers", label(problem)))


def check_gradient(problem: Problem, subject: str, trainer, report: Report) -> None:
    """Rows: per tensor, the worst worker's gradient against the full-batch float64 one."""
    ref = exact_gradient(problem, flatten(rounded_start(problem)))
    errors = np.max([normalised_errors(flatten(g), ref) for g in trainer.rank_grads()], axis=0)
    tol = TOLERANCES[problem.spec.dtype].frameworks
    for name, e in zip(problem.spec.param_names(), errors):
        report.rows.append(Row(subject, problem.spec.dtype, name, GRADIENT, float(e), tol,
                               problem=label(problem)))


def check_variant(problem: Problem, variant, steps: int, device: str, report: Report) -> None:
    """The three checks of the module docstring for one variant (already ``at(N)``)."""
    trainer = variant.make(problem, device)
    try:
        check_gradient(problem, variant.label, trainer, report)
        trainer.run(steps)
        compare_to_reference(problem, variant.label, trainer.params(), rounded_start(problem),
                             steps, report)
        check_ranks(problem, variant.label, trainer, report)
    finally:
        trainer.close()


def failed_row(problem: Problem, subject: str, reason: str) -> Row:
    return Row(subject, problem.spec.dtype, "-", RUN, math.inf, 0.0,
               reason.replace("\n", " ")[:400], label(problem))


def check_one(problem: Problem, variant, steps: int, device: str, report: Report) -> None:
    """``check_variant`` under the check's one error policy: a variant that cannot run here
    is a note, one that crashes or runs past --timeout a failing row."""
    _, unavailable, crash = guarded(f"{variant.label} on {label(problem)}", lambda: (
        check_variant(problem, variant, steps, device, report)))
    if unavailable is not None:
        report.notes.append(f"{variant.label}: {unavailable}; skipped")
    if crash is not None:
        report.rows.append(failed_row(problem, variant.label, crash))
