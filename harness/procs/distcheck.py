"""`check --workers N` in processes of their own: each framework's data-parallel variants in
a fresh process (``python -m harness.procs.distcheck``; a JAX process fixes its number of
host devices when JAX starts), judged there by the rules of ``harness.check.workers``, the
report sent back whole.
"""

from __future__ import annotations

import sys

from harness.check import Report
from harness.check import workers as workers_rules
from harness.procs import child
from harness.record import schema
from harness.record.results import ProblemRecord
from implementations import registry
from implementations.problem import Problem

TIMEOUT_BASE_S, TIMEOUT_PER_PROBLEM_S = 60.0, 120.0


def check_job(job: dict) -> dict:
    """What the fresh process does: every problem for each of one framework's variants."""
    report = Report()
    for name in job["variants"]:
        variant = registry.get(name).at(job["workers"])
        for record in job["problems"]:
            problem = schema.from_dict(ProblemRecord, record, "problem").problem()
            workers_rules.check_one(problem, variant, job["steps"], job["device"], report)
    return report.as_dict()


def check_all(problems: list[Problem], variants: list, workers: int, steps: int,
              device: str) -> Report:
    """Every variant on ``workers`` workers, a fresh process per framework."""
    report = Report()
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
            report.rows += [workers_rules.failed_row(p, v.at(workers).label, got["error"])
                            for v in mine for p in problems]
            continue
        report.merge(Report.from_dict(got))
    return report


if __name__ == "__main__":
    sys.exit(child.serve(check_job))
