"""`backprop-bench compare A B`: per-case ratio of two results files with a noise-aware verdict.

Cases are matched by id and compared only when ok in both files. The ratio is
median_B / median_A of the per-step times (above 1: B is slower). A case is "slower" or
"faster" only if the raw per-step samples of A and B differ by a two-sided Mann–Whitney U test
at ``ALPHA`` *and* the ratio is at least ``MIN_EFFECT`` away from 1; otherwise it is "same".
Timings drift between processes, so a significant but tiny shift is not called a change.
With fewer than two samples on a side there is no test: the verdict is "n/a".

``--fail-above PCT`` exits 1 if any case regressed: significantly slower by more than PCT%;
"n/a" with a ratio above 1 + PCT/100 (too few samples for a test, so the ratio alone decides);
or ok in A but failed, unavailable, without a usable time, or missing in B.

Two files of different devices or different problems are not comparable: that, an unreadable
file, or no case in common is a ResultsError (one line, exit 2).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness import results
from harness.model import usable_time
from harness.results import ResultsError
from harness.summary import problem_key
from harness.tables import fmt_ratio, fmt_time, text_table

ALPHA = 0.01
MIN_EFFECT = 0.05
TEST_NAME = (f"Mann–Whitney U, two-sided, α = {ALPHA:g}, "
             f"min effect {MIN_EFFECT:.0%}")


@dataclass(frozen=True)
class Row:
    """One case present and ok in both files."""

    case_id: str
    median_a: float
    median_b: float
    ratio: float
    p_value: float | None
    verdict: str


@dataclass(frozen=True)
class Comparison:
    """``lost``: (case id, why) for each case ok in A that B cannot be compared on."""

    rows: list[Row]
    notes: list[str]
    lost: list[tuple[str, str]] = field(default_factory=list)


def per_step_samples(case: dict) -> np.ndarray:
    """The raw block times of a case divided by its steps per block; empty if they are
    missing or not all finite and positive (the per-step median is used then)."""
    t = case.get("timing") or {}
    steps = t.get("block_steps", 1)
    try:
        samples = np.asarray(t.get("samples_s") or [], dtype=float).ravel()
    except (TypeError, ValueError):
        return np.empty(0)
    if (isinstance(steps, bool) or not isinstance(steps, (int, float)) or not steps > 0
            or not np.all(np.isfinite(samples)) or not np.all(samples > 0)):
        return np.empty(0)
    return samples / steps


def verdict(samples_a: np.ndarray, samples_b: np.ndarray) -> tuple[float, float | None, str]:
    """(ratio of medians B/A, p-value, 'faster' | 'slower' | 'same' | 'n/a')."""
    from scipy.stats import mannwhitneyu  # here: scipy.stats takes ~1 s to import

    ratio = float(np.median(samples_b) / np.median(samples_a))
    if len(samples_a) < 2 or len(samples_b) < 2:
        return ratio, None, "n/a"
    p = float(mannwhitneyu(samples_a, samples_b, alternative="two-sided").pvalue)
    if p < ALPHA and abs(ratio - 1) >= MIN_EFFECT:
        return ratio, p, "slower" if ratio > 1 else "faster"
    return ratio, p, "same"


def compare_case(a: dict, b: dict) -> Row | None:
    """The row of a case ok in both files; None if either lacks a usable time."""
    sa, sb = per_step_samples(a), per_step_samples(b)
    if len(sa) == 0 or len(sb) == 0:
        ma, mb = usable_time(a), usable_time(b)
        if ma is None or mb is None:
            return None
        return Row(a["id"], ma, mb, mb / ma, None, "n/a")
    ratio, p, word = verdict(sa, sb)
    return Row(a["id"], float(np.median(sa)), float(np.median(sb)), ratio, p, word)


def usable(case: dict) -> bool:
    """True if a case ok in its file carries a time to compare."""
    return len(per_step_samples(case)) > 0 or usable_time(case) is not None


def check_comparable(a: dict, b: dict, name_a: str, name_b: str) -> None:
    """Raise ResultsError unless both files measured the same device and problems."""
    ca, cb = a["config"], b["config"]
    if ca.get("device") != cb.get("device"):
        raise ResultsError(f"cannot compare across different configs: {name_a} is device "
                           f"{ca.get('device')}, {name_b} is device {cb.get('device')}")
    pa = sorted(map(problem_key, ca.get("problems") or []))
    pb = sorted(map(problem_key, cb.get("problems") or []))
    if pa != pb or ca.get("grid") != cb.get("grid"):
        raise ResultsError(f"cannot compare across different configs: {name_a} and {name_b} "
                           f"measured different problems")


def compare_runs(a: dict, b: dict, name_a: str = "A", name_b: str = "B") -> Comparison:
    """Rows for the cases ok in both runs, and notes for the others."""
    check_comparable(a, b, name_a, name_b)
    cases_a = {c["id"]: c for c in a["cases"]}
    cases_b = {c["id"]: c for c in b["cases"]}
    rows, notes, lost = [], [], []
    for cid in [*cases_a, *(k for k in cases_b if k not in cases_a)]:
        ca, cb = cases_a.get(cid), cases_b.get(cid)
        note = unmatched_note(cid, ca, cb, name_a, name_b)
        row = None if note else compare_case(ca, cb)
        if note is None and row is None:
            note = f"{cid}: " + ", ".join(f"no usable per-step time in {name}"
                                          for name, c in ((name_a, ca), (name_b, cb))
                                          if not usable(c))
        if note:
            notes.append(note)
        else:
            rows.append(row)
        why = lost_in_b(ca, cb, name_a, name_b)
        if why:
            lost.append((cid, why))
    if not rows:
        raise ResultsError(f"no case is ok in both {name_a} and {name_b}: nothing to compare")
    return Comparison(rows, notes, lost)


def lost_in_b(ca: dict | None, cb: dict | None, name_a: str, name_b: str) -> str | None:
    """Why a case ok (and usable) in A has no time in B, or None if it has one or A had none."""
    if ca is None or ca["status"] != "ok" or not usable(ca):
        return None
    if cb is None:
        return f"ok in {name_a}, missing in {name_b}"
    if cb["status"] != "ok":
        return f"ok in {name_a}, {cb['status']} in {name_b}"
    return None if usable(cb) else f"ok in {name_a}, no usable per-step time in {name_b}"


def unmatched_note(cid: str, ca: dict | None, cb: dict | None, name_a: str,
                   name_b: str) -> str | None:
    """Why a case is not compared, or None if it is ok in both files."""
    if ca is None:
        return f"{cid}: only in {name_b}"
    if cb is None:
        return f"{cid}: only in {name_a}"
    bad = [f"{ca['status']} in {name_a}" if ca["status"] != "ok" else "",
           f"{cb['status']} in {name_b}" if cb["status"] != "ok" else ""]
    bad = [x for x in bad if x]
    return f"{cid}: {', '.join(bad)}" if bad else None


def regressions(comparison: Comparison, fail_above_pct: float) -> list[str]:
    """One line per regressed case: significantly slower by more than fail_above_pct
    percent, "n/a" (too few samples) with a ratio above that, or ok in A and lost in B."""
    limit = 1 + fail_above_pct / 100
    out = []
    for r in comparison.rows:
        if r.verdict == "slower" and r.ratio > limit:
            out.append(f"{r.case_id}: {fmt_ratio(r.ratio)} slower (p = {r.p_value:.1g})")
        elif r.verdict == "n/a" and r.ratio > limit:
            out.append(f"{r.case_id}: {fmt_ratio(r.ratio)} slower, too few samples for a test; "
                       f"ratio alone")
    out += [f"{cid}: {why}" for cid, why in comparison.lost]
    return out


def render(comparison: Comparison, name_a: str, name_b: str) -> str:
    rows = [[r.case_id, fmt_time(r.median_a), fmt_time(r.median_b), fmt_ratio(r.ratio),
             "—" if r.p_value is None else f"{r.p_value:.1g}", r.verdict]
            for r in comparison.rows]
    counts = {w: sum(r.verdict == w for r in comparison.rows) for w in ("faster", "slower",
                                                                          "same", "n/a")}
    if not counts["n/a"]:
        del counts["n/a"]
    lines = [f"A: {name_a}", f"B: {name_b}",
             f"ratio = B / A of the per-step medians; verdict by {TEST_NAME}", "",
             text_table(["case", "A median", "B median", "ratio", "p", "verdict"], rows,
                        "lrrrrl"), "",
             ", ".join(f"{n} {w}" for w, n in counts.items())]
    lines += [f"note: {n}" for n in comparison.notes]
    return "\n".join(lines)


def describe(path: Path, run: dict) -> str:
    m, commit = run["machine"], run.get("commit") or {}
    dirty = " (dirty)" if commit.get("dirty") else ""
    return (f"{path} ({m.get('hostname', '?')}, {run['config'].get('device', '?')}, "
            f"commit {str(commit.get('id') or '?')[:10]}{dirty}, {run.get('created', '?')})")


def cmd_compare(args) -> int:
    """Print the comparison table; 1 if --fail-above is exceeded, else 0."""
    a, b = results.load(Path(args.a)), results.load(Path(args.b))
    comparison = compare_runs(a, b, str(args.a), str(args.b))
    print(render(comparison, describe(Path(args.a), a), describe(Path(args.b), b)))
    if args.fail_above is None:
        return 0
    bad = regressions(comparison, args.fail_above)
    if bad:
        print(f"\nFAIL: {len(bad)} case(s) regressed (slower by more than "
              f"{args.fail_above:g}%, or no longer ok in B):")
        print("\n".join(f"  {line}" for line in bad))
        return 1
    return 0


def percent(text: str) -> float:
    """argparse type: a finite percentage >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a percentage >= 0")
    return value


def register(subparsers) -> None:
    """Add the `compare` subcommand to the CLI's subparsers."""
    p = subparsers.add_parser("compare", help="compare two results files case by case, with "
                              "a noise-aware verdict (Mann–Whitney U)")
    p.add_argument("a", metavar="A", help="the baseline results file")
    p.add_argument("b", metavar="B", help="the results file compared with it")
    p.add_argument("--fail-above", type=percent, metavar="PCT",
                   help="exit 1 if any case is significantly slower in B by more than PCT%% "
                        "(by the ratio alone with fewer than 2 samples), or was ok in A and "
                        "is failed, unavailable or missing in B")
    p.set_defaults(func=cmd_compare)
