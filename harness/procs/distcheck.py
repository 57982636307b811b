"""`check --workers N`: are the data-parallel variants right on N workers?

For each distributed variant and network, from the shared starting point:

* **gradient**: the gradient every worker steps with (its shard's, after the all-reduce)
  against the exact float64 gradient of the *full* batch (``harness.check``), within the
  tolerance between frameworks (float64: rounding; float32: the existing float32 tolerance);
* **trajectory**: worker 0's parameters after N steps against the float64 reference
  trajectory, as for every variant;
* **workers agree**: every worker's parameters bitwise equal to worker 0's (tolerance 0).

Summing instead of averaging shows in the first two (twice the gradient), a worker that
skips the all-reduce in all three; at N = 1 neither bug can show, so check with N >= 2.
Each framework's variants are checked in a fresh process (``python -m harness.procs.distcheck``):
a JAX process fixes its number of host devices when JAX starts.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from harness import check
from harness.check import deadline
from harness.procs import child
from harness.record import schema
from harness.record.results import ProblemRecord
from implementations import registry
from implementations.contract import Unavailable
from implementations.problem import Problem, flatten

GRADIENT, RANKS = "full-batch gradient", "worker 0"
TIMEOUT_BASE_S, TIMEOUT_PER_PROBLEM_S = 60.0, 120.0
WORKERS_NETWORK = (4, 16, 16, 4)


def check_ranks(problem: Problem, subject: str, trainer, report: check.Report) -> None:
    """Rows: per tensor, max over workers of max|p_r - p_0| / max|p_0|; must be 0."""
    ranks = trainer.rank_params()
    first = [np.asarray(t, np.float64) for t in flatten(ranks[0])]
    for i, name in enumerate(problem.spec.param_names()):
        spread = max(float(np.max(np.abs(np.asarray(flatten(r)[i], np.float64) - first[i]),
                                  initial=0.0)) for r in ranks)
        scale = max(float(np.max(np.abs(first[i]), initial=0.0)), 1e-300)
        report.rows.append(check.Row(subject, problem.spec.dtype, name, RANKS, spread / scale,
                                     0.0, f"over {len(ranks)} workers", check.label(problem)))


def check_gradient(problem: Problem, subject: str, trainer, report: check.Report) -> None:
    """Rows: per tensor, the worst worker's gradient against the full-batch float64 one."""
    ref = check.exact_gradient(problem, flatten(check.rounded_start(problem)))
    errors = np.max([check.normalised_errors(flatten(g), ref)
                     for g in trainer.rank_grads()], axis=0)
    tol = check.TOLERANCES[problem.spec.dtype].frameworks
    for name, e in zip(problem.spec.param_names(), errors):
        report.rows.append(check.Row(subject, problem.spec.dtype, name, GRADIENT, float(e), tol,
                                     problem=check.label(problem)))


def check_variant(problem: Problem, variant, steps: int, device: str,
                  report: check.Report) -> None:
    """The three checks of the module docstring for one variant (already ``at(N)``)."""
    trainer = variant.make(problem, device)
    try:
        check_gradient(problem, variant.label, trainer, report)
        trainer.run(steps)
        check.compare_to_reference(problem, variant.label, trainer.params(),
                                   check.rounded_start(problem), steps, report)
        check_ranks(problem, variant.label, trainer, report)
    finally:
        trainer.close()


def failed_row(problem: Problem, subject: str, reason: str) -> check.Row:
    return check.Row(subject, problem.spec.dtype, "-", "run", math.inf, 0.0,
                     reason.replace("\n", " ")[:400], check.label(problem))


def check_job(job: dict) -> dict:
    """What the fresh process does: every problem for each of one framework's variants."""
    report = check.Report()
    for name in job["variants"]:
        variant = registry.get(name).at(job["workers"])
        for record in job["problems"]:
            problem = schema.from_dict(ProblemRecord, record, "problem").problem()
            try:
                with deadline.limit(f"{variant.label} on {check.label(problem)}"):
                    check_variant(problem, variant, job["steps"], job["device"], report)
            except Unavailable as exc:
                report.notes.append(f"{variant.label}: {exc}; skipped")
            except Exception as exc:  # a worker that crashed or timed out: a failed check
                report.rows.append(failed_row(problem, variant.label,
                                              f"{type(exc).__name__}: {exc}"))
    return report.as_dict()


def check_all(problems: list[Problem], variants: list, workers: int, steps: int,
              device: str) -> check.Report:
    """Every variant on ``workers`` workers, a fresh process per framework."""
    report = check.Report()
    records = [schema.to_dict(ProblemRecord.of(p)) for p in problems]
    for framework in dict.fromkeys(v.framework for v in variants):
        mine = [v for v in variants if v.framework == framework]
        labels = ", ".join(v.at(workers).label for v in mine)
        print(f"checking {labels}: gradient, {steps} steps, workers agree", file=sys.stderr)
        job = {"variants": [v.name for v in mine], "workers": workers, "device": device,
               "steps": steps, "problems": records}
        got = child.ask("harness.procs.distcheck", job, TIMEOUT_BASE_S
                        + TIMEOUT_PER_PROBLEM_S * len(problems) * len(mine))
        if "error" in got:
            report.rows += [failed_row(p, v.at(workers).label, got["error"])
                            for v in mine for p in problems]
            continue
        report.rows += [check.Row(**{k: r[k] for k in r if k != "passed"})
                        for r in got["rows"]]
        report.notes += got["notes"]
    return report


if __name__ == "__main__":
    sys.exit(child.serve(check_job))
