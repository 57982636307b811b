"""`backprop-bench compare A B`: per-case ratio of two results files with a noise-aware verdict.

The cases the two files share (matched by id) are compared when ok in both; the cases only
in one file are listed, so that a focused re-run can be checked against a full baseline. The
ratio is B / A of the per-step medians (above 1: B is slower).

The verdict is drawn from *independent* samples: one per-step median per worker process
(``Case.processes``), never the raw blocks, which are correlated within a process (they share
its memory layout, its JIT code, its neighbours). A case is "slower" or "faster" only if the
two sides' process medians differ by a two-sided exact Mann–Whitney U test at ``ALPHA`` *and*
the ratio is at least ``MIN_EFFECT`` away from 1; otherwise "same". Below ``MIN_PROCESSES``
processes on a side no test can reach ``ALPHA``, and the verdict is "n/a": run with
``--rounds 5`` (or more) for verdicts.

``--measure instructions`` compares the cases' instruction counts instead
(``harness.record.counts``, with a default ``--fail-above`` of its own).

``--fail-above PCT`` exits 1 if any case regressed: significantly slower by more than PCT%;
"n/a" with a ratio above 1 + PCT/100 (too few processes for a test, so the ratio alone
decides); or ok in A but failed, unavailable or missing in B. An unreadable file, or no case
in common, is a ResultsError (one line, exit 2). ``--format md`` and ``--format json`` write
the same comparison for a pull-request comment or a dashboard.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from harness.record import store
from harness.record.results import Case, ResultsError, Run
from harness.tables import fmt_change, fmt_time, markdown_table, md_code, text_table

ALPHA = 0.01
MIN_EFFECT = 0.05
MIN_PROCESSES = 5  # 5 against 5 is the least an exact two-sided U test can call at α = 0.01
TEST_NAME = (f"Mann–Whitney U on per-process medians, two-sided, α = {ALPHA:g}, "
             f"min effect {MIN_EFFECT:.0%}, at least {MIN_PROCESSES} processes a side")
FORMATS = ("text", "md", "json")


@dataclass(frozen=True)
class Row:
    """One case ok in both files."""

    case_id: str
    median_a: float
    median_b: float
    ratio: float
    p_value: float | None
    verdict: str
    processes_a: int = 1
    processes_b: int = 1


@dataclass(frozen=True)
class Comparison:
    """``lost``: (case id, why) for each case ok in A that B cannot be compared on."""

    rows: list[Row]
    notes: list[str]
    lost: list[tuple[str, str]] = field(default_factory=list)
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)


def process_medians(case: Case) -> np.ndarray:
    """The independent samples of an ok case: one per-step median per worker process."""
    medians = [m for p in case.processes if (m := p.median)]
    return np.asarray(medians or [case.median], dtype=float)


def verdict(a: np.ndarray, b: np.ndarray) -> tuple[float, float | None, str]:
    """(ratio of medians B/A, p-value, 'faster' | 'slower' | 'same' | 'n/a')."""
    from scipy.stats import mannwhitneyu  # here: scipy.stats takes ~1 s to import

    ratio = float(np.median(b) / np.median(a))
    if min(len(a), len(b)) < MIN_PROCESSES:
        return ratio, None, "n/a"
    p = float(mannwhitneyu(a, b, alternative="two-sided", method="exact").pvalue)
    if p < ALPHA and abs(ratio - 1) >= MIN_EFFECT:
        return ratio, p, "slower" if ratio > 1 else "faster"
    return ratio, p, "same"


def compare_case(a: Case, b: Case) -> Row:
    """The row of a case ok in both files."""
    sa, sb = process_medians(a), process_medians(b)
    ratio, p, word = verdict(sa, sb)
    return Row(a.id, float(np.median(sa)), float(np.median(sb)), ratio, p, word, len(sa),
               len(sb))


def compare_runs(a: Run, b: Run, name_a: str = "A", name_b: str = "B") -> Comparison:
    """Rows for the cases ok in both runs; the others listed or noted."""
    cases_a = {c.id: c for c in a.cases}
    cases_b = {c.id: c for c in b.cases}
    rows, notes, lost = [], [], []
    for cid in (k for k in cases_a if k in cases_b):
        ca, cb = cases_a[cid], cases_b[cid]
        if ca.ok and cb.ok:
            rows.append(compare_case(ca, cb))
        else:
            notes.append(f"{cid}: " + ", ".join(f"{c.status} in {name}" for c, name in
                                                 ((ca, name_a), (cb, name_b)) if not c.ok))
            if ca.ok:
                lost.append((cid, f"ok in {name_a}, {cb.status} in {name_b}"))
    only_a = [k for k in cases_a if k not in cases_b]
    only_b = [k for k in cases_b if k not in cases_a]
    lost += [(k, f"ok in {name_a}, missing in {name_b}") for k in only_a if cases_a[k].ok]
    if not rows:
        raise ResultsError(f"no case is ok in both {name_a} and {name_b}: nothing to compare")
    return Comparison(rows, notes, lost, only_a, only_b)


def regressions(comparison: Comparison, fail_above_pct: float) -> list[str]:
    """One line per regressed case: significantly slower by more than fail_above_pct
    percent, "n/a" (too few processes) with a ratio above that, or ok in A and lost in B."""
    limit = 1 + fail_above_pct / 100
    out = []
    for r in comparison.rows:
        if r.verdict == "slower" and r.ratio > limit:
            out.append(f"{r.case_id}: {fmt_change(r.ratio)} slower (p = {r.p_value:.1g})")
        elif r.verdict == "n/a" and r.ratio > limit:
            out.append(f"{r.case_id}: {fmt_change(r.ratio)} slower, too few processes for a "
                       f"test; ratio alone")
    out += [f"{cid}: {why}" for cid, why in comparison.lost]
    return out


def counts(comparison: Comparison) -> str:
    found = {w: sum(r.verdict == w for r in comparison.rows)
             for w in ("faster", "slower", "same", "n/a")}
    line = ", ".join(f"{n} {w}" for w, n in found.items() if n or w != "n/a")
    if found["n/a"]:
        line += (f" (n/a: fewer than {MIN_PROCESSES} processes on a side, so no test; "
                 f"rerun both with --rounds {MIN_PROCESSES} for verdicts)")
    return line


def cells(r: Row) -> list[str]:
    return [fmt_time(r.median_a), fmt_time(r.median_b), fmt_change(r.ratio),
            f"{r.processes_a} / {r.processes_b}",
            "—" if r.p_value is None else f"{r.p_value:.1g}", r.verdict]


HEADERS = ["case", "A median", "B median", "ratio", "processes", "p", "verdict"]


def render(comparison: Comparison, name_a: str, name_b: str) -> str:
    rows = [[r.case_id, *cells(r)] for r in comparison.rows]
    lines = [f"A: {name_a}", f"B: {name_b}",
             f"ratio = B / A of the per-step medians; verdict by {TEST_NAME}", "",
             text_table(HEADERS, rows, "lrrrrrl"), "", counts(comparison)]
    lines += [f"only in A: {k}" for k in comparison.only_in_a]
    lines += [f"only in B: {k}" for k in comparison.only_in_b]
    lines += [f"note: {n}" for n in comparison.notes]
    return "\n".join(lines)


def render_md(comparison: Comparison, name_a: str, name_b: str, bad: list[str]) -> str:
    rows = [[md_code(r.case_id), *cells(r)] for r in comparison.rows]
    parts = [f"**A**: {md_code(name_a)}  \n**B**: {md_code(name_b)}",
             f"Ratio = B / A of the per-step medians; verdict by {TEST_NAME}.",
             markdown_table(HEADERS, rows, "lrrrrrl"), counts(comparison)]
    listed = ([f"- only in A: {md_code(k)}" for k in comparison.only_in_a]
              + [f"- only in B: {md_code(k)}" for k in comparison.only_in_b]
              + [f"- {md_code(n)}" for n in comparison.notes])
    return md_document(parts, listed, bad)


def md_document(parts: list[str], listed: list[str], bad: list[str]) -> str:
    """A Markdown comparison: its parts, then the list of cases and notes, then the cases
    that regressed (the time's and the counts' alike)."""
    if listed:
        parts.append("\n".join(listed))
    if bad:
        parts.append(f"**FAIL**: {len(bad)} case(s) regressed:\n\n"
                     + "\n".join(f"- {md_code(x)}" for x in bad))
    return "\n\n".join(parts)


def render_json(comparison: Comparison, name_a: str, name_b: str, bad: list[str] | None) -> str:
    return json.dumps({"a": name_a, "b": name_b, "test": TEST_NAME,
                       "rows": [asdict(r) for r in comparison.rows],
                       "only_in_a": comparison.only_in_a, "only_in_b": comparison.only_in_b,
                       "notes": comparison.notes, "regressions": bad},
                      indent=1, allow_nan=False)


def describe(path: Path, run: Run) -> str:
    dirty = " (dirty)" if run.commit.dirty else ""
    return (f"{path} ({run.machine.hostname}, {run.config.device}, "
            f"commit {str(run.commit.id or '?')[:10]}{dirty}, {run.created})")


def read_pair(path_a: str, path_b: str) -> tuple[Run, Run, str, str]:
    """The two runs and how the comparison names them."""
    a, b = store.read_run(Path(path_a)), store.read_run(Path(path_b))
    return a, b, describe(Path(path_a), a), describe(Path(path_b), b)


def main(path_a: str, path_b: str, fail_above: float | None, fmt: str = "text") -> int:
    """Print the comparison of times; 1 if ``fail_above`` (percent) is exceeded, else 0
    (``harness.record.counts`` compares instruction counts)."""
    a, b, name_a, name_b = read_pair(path_a, path_b)
    comparison = compare_runs(a, b, str(path_a), str(path_b))
    bad = None if fail_above is None else regressions(comparison, fail_above)
    return show(fmt, {"json": lambda: render_json(comparison, name_a, name_b, bad),
                      "md": lambda: render_md(comparison, name_a, name_b, bad or []),
                      "text": lambda: render(comparison, name_a, name_b)},
                bad, f"slower by more than {fail_above or 0:g}%, or no longer ok in B")


def show(fmt: str, renderings: dict, bad: list[str] | None, why: str) -> int:
    """Print the comparison in ``fmt`` (``renderings``: format -> its text), and in text the
    cases that regressed, ``why`` they count; 1 if any did, else 0."""
    print(renderings[fmt]())
    if fmt == "text" and bad:
        print(f"\nFAIL: {len(bad)} case(s) regressed ({why}):")
        print("\n".join(f"  {line}" for line in bad))
    return 1 if bad else 0
