"""The text `backprop-bench check` prints: a table per network, then the verdict.

Each table has one line per subject: its worst error against each reference (over its
tensors) and its result. The verdict names the subjects that failed, and only those, each
with its diagnosis; where no known bug class fits, the per-tensor errors follow.
"""

from __future__ import annotations

import math
import re

from harness.check import precision
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
    label,
)
from harness.tables import text_table
from implementations.problem import Problem

TRAJECTORY_PIECES = ("run", "sgd_step")  # the pieces of a trajectory (the others: gradients)
COLUMNS = ((LOSS, "E"), (FD, "vs FD"), (EXACT, "vs exact"), (CLOSED, "vs closed form"),
           (OTHERS, "vs others"), (TRAJECTORY, "trajectory"))


def worst(rows: list[Row]) -> Row | None:
    """The row that says most: a failing one before a passing one, then the furthest over its
    tolerance."""
    return max(rows, key=lambda r: (not r.passed, r.error / r.tolerance if r.tolerance
                                    else r.error), default=None)


def cell(rows: list[Row], reference: str, steps: int) -> str:
    mine = [r for r in rows if r.reference == reference]
    w = worst(mine)
    if w is None:
        return "—"
    text = f"{w.error:.1e}" if w.error else "0"
    if reference == TRAJECTORY and w.detail.split()[1:2] != [str(steps)]:
        text += f" ({w.detail.split()[1]})"  # a block variant ran more steps
    return text if w.passed or reference == OTHERS else f"{text} !"


def heading(problem: Problem) -> str:
    dtype = problem.spec.dtype
    if precision.is_low(dtype):
        u = math.log2(precision.UNIT_ROUNDOFF[dtype])
        scale = (f", inputs × 2^{math.log2(problem.input_scale):g}"
                 if problem.input_scale != 1.0 else "")
        return (f"\n{problem.spec.label()}, batch {problem.batch}{scale}: tolerances from "
                f"{dtype}'s error model (u = 2^{u:.0f}), each tensor {precision.SAFETY:g} × its "
                f"bound")
    t = TOLERANCES[dtype]
    return (f"\n{problem.spec.label()}, batch {problem.batch}: tolerances FD "
            f"{t.finite_differences:.0e}, exact {t.exact:.0e}, closed form {t.closed_form:.0e}, "
            f"trajectory {t.trajectory:.0e}")


def table(report: Report, problem: Problem, steps: int) -> list[str]:
    rows = [r for r in report.rows if r.problem == label(problem)]
    if not rows:
        return []
    failed = set(report.failed(label(problem)))
    body = []
    for subject in dict.fromkeys(r.subject for r in rows):
        mine = [r for r in rows if r.subject == subject]
        cells = [cell(mine, ref, steps) for ref, _ in COLUMNS]
        for r in mine:
            if r.reference == RUN:  # where it crashed: its gradients, or its trajectory
                cells[-1 if r.detail.split(":")[0] in TRAJECTORY_PIECES else 0] = "crashed"
        body.append([subject, *cells, "FAIL" if subject in failed else "ok"])
    head = ["subject", *(name for _, name in COLUMNS)]
    head[-1] = f"trajectory ({steps} steps)"
    return [heading(problem), text_table([*head, "result"], body, "lrrrrrrl")]


def verdict(report: Report, problems: list[Problem]) -> list[str]:
    """The closing lines: PASSED, or FAILED naming each failed subject with its diagnosis."""
    failed = report.failed()
    if not failed:
        n = sum(r.evidence for r in report.rows)
        return [f"\nPASSED: all {n} comparisons within tolerance"]
    out = [f"\nFAILED: {', '.join(failed)}"]
    where = {label(p): p for p in problems}
    for subject in failed:
        out += subject_lines(report, subject, [w for w in where if subject in report.failed(w)])
    return out


def subject_lines(report: Report, subject: str, problems: list[str]) -> list[str]:
    """A failed subject's lines: how each piece that did not finish ended, then each distinct
    diagnosis, each with the networks it holds on; where a failure has no diagnosis, the
    per-tensor errors."""
    mine = [r for r in report.rows if r.subject == subject and r.problem in problems
            and r.evidence and not r.passed]
    crashes: dict[str, list[str]] = {}
    for r in mine:
        if r.reference == RUN:
            crashes.setdefault(r.detail, []).append(r.problem)
    said: dict[str, list[str]] = {}
    unexplained = []
    for p in problems:
        for line in report.diagnoses.get((subject, p), []):
            said.setdefault(line, []).append(p)
        if (subject, p) not in report.diagnoses and any(
                r.problem == p and r.reference != RUN for r in mine):
            unexplained.append(p)
    out = [f"  {subject}: {detail}{on(where)}" for detail, where in crashes.items()]
    out += [f"  {subject}: {line}{on(where)}" for line, where in said.items()]
    if unexplained:
        rows = [r for r in mine if r.problem in unexplained and r.reference != RUN]
        out.append(f"  {subject}: no known bug class fits{on(unexplained)}; what failed:")
        out += [f"    {r.failure()}" for r in rows[:12]]
        if len(rows) > 12:
            out.append(f"    ... and {len(rows) - 12} more")
    return out


def on(where: list[str]) -> str:
    return f" [{', '.join(dict.fromkeys(where))}]"


SKIPPED = re.compile(r"^(?:gradients|trajectory): (\S+) runs (.*); skipped$")


def notes(lines: list[str]) -> list[str]:
    """The notes, each once, with "X runs ... only; skipped" gathered into one line."""
    skipped: dict[str, list[str]] = {}
    out = []
    for line in dict.fromkeys(lines):
        m = SKIPPED.match(line)
        if m:
            skipped.setdefault(m.group(2), [])
            if m.group(1) not in skipped[m.group(2)]:
                skipped[m.group(2)].append(m.group(1))
        else:
            out.append(line)
    if skipped:
        out.append("not run here: " + "; ".join(f"{', '.join(names)} ({why})"
                                                for why, names in skipped.items()))
    return out


def settings_line(settings: dict) -> str:
    """'settings: 2 threads on cores 0-1; numpy BLAS 2; torch 2, TF32 off; ...': what each
    framework was set to, as a run sets it (the report keeps every detail)."""
    pin = settings.get("pinning") or {}
    cores = pin.get("affinity") or []
    head = f"{pin.get('threads', '?')} threads" + (
        f" on cores {cores[0]}-{cores[-1]}" if len(cores) > 1 else "")
    parts = []
    for name, d in settings.items():
        if name == "pinning" or not isinstance(d, dict):
            continue
        bits = []
        blas = [b.get("num_threads") for b in d.get("blas", []) if isinstance(b, dict)]
        if blas:
            bits.append(f"BLAS {'/'.join(map(str, dict.fromkeys(blas)))}")
        for key in ("torch_threads", "threads", "intra_op_threads", "inter_op_threads"):
            if isinstance(d.get(key), int):
                bits.append(f"{key.replace('_', ' ').replace('torch ', '')} {d[key]}")
        if d.get("tf32_matmul") is False:
            bits.append("TF32 off")
        if isinstance(d.get("matmul_precision"), str):
            bits.append(f"matmul {d['matmul_precision']}")
        parts.append(f"{name} {', '.join(bits)}" if bits else name)
    return f"settings: {head}; " + "; ".join(parts)


def render(report: Report, problems: list[Problem], steps: int = 100) -> str:
    """The tables `backprop-bench check` prints, then notes, disagreements and the verdict."""
    out = []
    for problem in problems:
        out += table(report, problem, steps)
    if report.settings:
        out.append(settings_line(report.settings))
    out += [f"note: {n}" for n in notes(report.notes)]
    out += [f"disagreement: {d}" for d in dict.fromkeys(report.disagreements)]
    out += verdict(report, problems)
    return "\n".join(out)
