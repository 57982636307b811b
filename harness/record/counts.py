"""Instructions per step in tables, in ``compare --measure instructions`` and in flat rows.

Everything here reads stored cases (``Case.instructions``, ``harness.measure.instructions``) and
measures nothing.

Compare on counts: the cases the two files share, counted in both by the same counter (tool,
Valgrind version, threads), are compared by the ratio B / A of their instructions per step.
A count is deterministic where time is not (identical processes count within
``SPREAD_PCT`` of each other on the networks measured; results/NOTES-instructions.md), so
the verdict needs no test: "more" when B counts more than ``threshold`` % above A, "fewer"
below, else "same". ``--fail-above`` defaults to ``FAIL_ABOVE_PCT`` for counts: exit 1 when
a case counts more by more than that, or was counted in A and is not in B (not counted,
counted by another counter, or missing).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from harness.record.compare import md_document, show
from harness.record.results import Case, ResultsError, Run
from harness.tables import markdown_table, md_code, md_escape, text_table

FAIL_ABOVE_PCT = 1.0  # the default gate: ~10× the largest spread measured between processes
SPREAD_PCT = 0.1  # the largest spread measured between identical processes (NOTES)
FORMATS = ("text", "md", "json")


def fmt_count(n: float | None) -> str:
    """96.8 k, 1.23 M, 412: instructions with a unit chosen for them."""
    if n is None:
        return "—"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            v = n / scale
            return f"{v:.4g} {unit}"
    return f"{n:.4g}"


def fmt_pct(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}%"


def counted(case: Case) -> bool:
    """True for a case whose instructions per step were counted."""
    return bool(case.instructions and case.instructions.ok)


# ---- the table of a run -----------------------------------------------------------------------

HEADERS = ["network", "variant", "device", "instructions / step", "between processes",
           "processes", "K", "empty block", "s under valgrind", "status"]
ALIGN = "lllrrrrrrl"


def cells(case: Case, markdown: bool = False) -> list[str]:
    i = case.instructions
    name = md_code(case.label) if markdown else case.label
    head = [case.problem.label(), name, case.device]
    if not i.ok:
        reason = md_escape(i.error) if markdown else i.error
        return head + ["—"] * 6 + [f"not counted: {reason}"]
    return head + [fmt_count(i.per_step), fmt_pct(i.spread_pct, 3), str(len(i.processes)),
                   f"{i.block_steps:,}", fmt_count(i.empty_block),
                   f"{sum(i.wall_s) / max(1, len(i.wall_s)):.0f}", "ok"]


def table(run: Run, markdown: bool = False, device: str | None = None) -> str:
    """One row per case that was to be counted, in the run's order; '' when none was."""
    cases = [c for c in run.cases if c.instructions and device in (None, c.device)]
    if not cases:
        return ""
    rows = [cells(c, markdown) for c in cases]
    render = markdown_table if markdown else text_table
    return render(HEADERS, rows, ALIGN)


def caption(run: Run) -> str:
    """What counted, in one line: the counter, the options, and what the figure is."""
    first = next((c.instructions for c in run.cases if counted(c)), None)
    if first is None:
        return "Instructions per SGD step: no case could be counted."
    return (f"Instructions per SGD step ({first.counter}, {' '.join(first.options)}): "
            f"(median block − empty block) / K, counted with collection on only around the "
            f"blocks of K steps; between processes = (max − min) / median.")


def case_line(case: Case, done: int, total: int) -> str:
    """One progress line per counted case."""
    head = f"[{done}/{total}] {case.device:4} {case.label:15} {case.problem.label():28}"
    i = case.instructions
    if i is None:
        return f"{head} not counted"
    if not i.ok:
        return f"{head} not counted: {i.error}"
    return (f"{head} {fmt_count(i.per_step):>10} instructions/step (K {i.block_steps:,}, "
            f"{i.wall_s[-1]:.0f} s under valgrind)")


# ---- flat rows (harness.record.rows) -----------------------------------------------------

COLUMNS = ("instructions_per_step", "instructions_spread_pct", "instructions_processes",
           "instructions_block_steps", "instructions_empty_block", "instructions_counter",
           "instructions_reason")


def columns(case: Case) -> dict:
    """The counting columns of a case's flat row (None where it was not counted)."""
    i = case.instructions
    if i is None:
        return {}
    if not i.ok:
        return {"instructions_counter": i.counter, "instructions_reason": i.error}
    return {"instructions_per_step": i.per_step, "instructions_spread_pct": i.spread_pct,
            "instructions_processes": len(i.processes),
            "instructions_block_steps": i.block_steps,
            "instructions_empty_block": i.empty_block, "instructions_counter": i.counter}


# ---- compare on counts ------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    """One case counted in both files by the same counter."""

    case_id: str
    per_step_a: float
    per_step_b: float
    ratio: float
    spread_a_pct: float | None
    spread_b_pct: float | None
    verdict: str


@dataclass(frozen=True)
class Comparison:
    """``lost``: (case id, why) for each case counted in A that B cannot be compared on."""

    rows: list[Row]
    threshold_pct: float
    lost: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def verdict(ratio: float, threshold_pct: float) -> str:
    if ratio > 1 + threshold_pct / 100:
        return "more"
    if ratio < 1 - threshold_pct / 100:
        return "fewer"
    return "same"


def why_not_comparable(a: Case, b: Case | None, name_b: str) -> str | None:
    """Why a case counted in A cannot be compared with B; None when it can."""
    if b is None:
        return f"missing in {name_b}"
    if b.instructions is None:
        return f"not counted in {name_b}"
    if not b.instructions.ok:
        return f"not counted in {name_b}: {b.instructions.error}"
    if b.instructions.counter != a.instructions.counter:
        return (f"counted by {a.instructions.counter} in A and {b.instructions.counter} in "
                f"{name_b}: count the baseline again with this counter")
    return None


def compare_runs(a: Run, b: Run, threshold_pct: float = FAIL_ABOVE_PCT,
                 name_b: str = "B") -> Comparison:
    """Rows for the cases counted in both runs by the same counter; the others lost or
    noted. ResultsError when no case can be compared."""
    cases_b = {c.id: c for c in b.cases}
    rows, lost, notes = [], [], []
    for ca in (c for c in a.cases if counted(c)):
        cb = cases_b.get(ca.id)
        why = why_not_comparable(ca, cb, name_b)
        if why:
            lost.append((ca.id, why))
            continue
        ia, ib = ca.instructions, cb.instructions
        ratio = ib.per_step / ia.per_step
        rows.append(Row(ca.id, ia.per_step, ib.per_step, ratio, ia.spread_pct, ib.spread_pct,
                        verdict(ratio, threshold_pct)))
        if ia.block_steps != ib.block_steps:
            notes.append(f"{ca.id}: K = {ia.block_steps:,} in A, {ib.block_steps:,} in "
                         f"{name_b} (the block's sync is spread over a different K)")
    if not rows:
        raise ResultsError(nothing_compared(a, b, name_b))
    return Comparison(rows, threshold_pct, lost, notes)


def nothing_compared(a: Run, b: Run, name_b: str) -> str:
    """Why no case compares: a file whose every count failed says so, with the first reason."""
    for run, name in ((a, "A"), (b, name_b)):
        tried = [c.instructions for c in run.cases if c.instructions is not None]
        if tried and not any(i.ok for i in tried):
            return (f"no case of {name} was counted ({len(tried)} tried; the first: "
                    f"{tried[0].error})")
    return ("no case has instruction counts in both files from the same counter: run both "
            "with --measure instructions")


def regressions(comparison: Comparison, fail_above_pct: float) -> list[str]:
    """One line per case that counts more by more than fail_above_pct percent, or was
    counted in A and cannot be compared in B."""
    limit = 1 + fail_above_pct / 100
    out = [f"{r.case_id}: {100 * (r.ratio - 1):+.2f}% instructions per step"
           for r in comparison.rows if r.ratio > limit]
    return out + [f"{cid}: {why}" for cid, why in comparison.lost]


COMPARE_HEADERS = ["case", "A / step", "B / step", "ratio", "change", "spread A", "spread B",
                   "verdict"]


def compare_cells(r: Row) -> list[str]:
    return [fmt_count(r.per_step_a), fmt_count(r.per_step_b), f"{r.ratio:.4f}×",
            f"{100 * (r.ratio - 1):+.2f}%", fmt_pct(r.spread_a_pct, 3),
            fmt_pct(r.spread_b_pct, 3), r.verdict]


def rule(comparison: Comparison) -> str:
    return (f"ratio = B / A of the instructions per step; verdict: more or fewer beyond "
            f"±{comparison.threshold_pct:g}% (counts are deterministic: no test needed)")


def render(comparison: Comparison, name_a: str, name_b: str) -> str:
    rows = [[r.case_id, *compare_cells(r)] for r in comparison.rows]
    lines = [f"A: {name_a}", f"B: {name_b}", rule(comparison), "",
             text_table(COMPARE_HEADERS, rows, "lrrrrrrl")]
    lines += [f"not compared: {cid}: {why}" for cid, why in comparison.lost]
    lines += [f"note: {n}" for n in comparison.notes]
    return "\n".join(lines)


def render_md(comparison: Comparison, name_a: str, name_b: str, bad: list[str]) -> str:
    rows = [[md_code(r.case_id), *compare_cells(r)] for r in comparison.rows]
    parts = [f"**A**: {md_code(name_a)}  \n**B**: {md_code(name_b)}",
             rule(comparison)[0].upper() + rule(comparison)[1:] + ".",
             markdown_table(COMPARE_HEADERS, rows, "lrrrrrrl")]
    listed = ([f"- not compared: {md_code(cid)}: {md_escape(why)}"
               for cid, why in comparison.lost]
              + [f"- {md_escape(n)}" for n in comparison.notes])
    return md_document(parts, listed, bad)


def render_json(comparison: Comparison, name_a: str, name_b: str, bad: list[str]) -> str:
    return json.dumps({"a": name_a, "b": name_b, "measure": "instructions",
                       "threshold_pct": comparison.threshold_pct,
                       "rows": [asdict(r) for r in comparison.rows],
                       "lost": [list(x) for x in comparison.lost], "notes": comparison.notes,
                       "regressions": bad}, indent=1, allow_nan=False)


def print_comparison(a: Run, b: Run, names: tuple[str, str, str, str],
                     fail_above: float | None, fmt: str) -> int:
    """``compare --measure instructions``: print it; 1 if a case regressed beyond
    ``fail_above`` (default ``FAIL_ABOVE_PCT``), else 0. ``names``: the two paths, then the
    two files described."""
    path_a, path_b, name_a, name_b = names
    threshold = FAIL_ABOVE_PCT if fail_above is None else fail_above
    comparison = compare_runs(a, b, threshold, str(path_b))
    bad = regressions(comparison, threshold)
    return show(fmt, {"json": lambda: render_json(comparison, name_a, name_b, bad),
                      "md": lambda: render_md(comparison, name_a, name_b, bad),
                      "text": lambda: render(comparison, name_a, name_b)},
                bad, f"more instructions per step by more than {threshold:g}%, or counted in "
                     f"A and not in B")
