"""`backprop-bench compare`: two results files case by case, by time or by instructions."""

from __future__ import annotations

import argparse

from harness.commands.base import Command
from harness.commands.options import percent
from harness.record import compare as comparing
from harness.record import counts
from harness.record.counts import FAIL_ABOVE_PCT as COUNT_FAIL_ABOVE_PCT


def compare(a: str, b: str, fail_above: float | None, fmt: str = "text",
            measure: str = "time") -> int:
    """`compare`: the per-step times, or (``measure`` "instructions") the counts."""
    if measure == "instructions":
        run_a, run_b, name_a, name_b = comparing.read_pair(a, b)
        return counts.print_comparison(run_a, run_b, (a, b, name_a, name_b), fail_above, fmt)
    return comparing.main(a, b, fail_above, fmt)


def compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", metavar="A", help="the baseline results file")
    p.add_argument("b", metavar="B", help="the results file compared with it")
    p.add_argument("--fail-above", type=percent, metavar="PCT",
                   help="exit 1 if any case is significantly slower in B by more than PCT%% "
                        "(by the ratio alone with fewer than 2 samples), or was ok in A and "
                        "is failed, unavailable or missing in B; with --measure instructions: "
                        "if any case counts more instructions per step by more than PCT%% "
                        f"(default {COUNT_FAIL_ABOVE_PCT:g}%%), or was counted in A and is "
                        "not in B")
    p.add_argument("--format", choices=comparing.FORMATS, default="text",
                   help="text (default), md (a pull-request comment) or json")
    p.add_argument("--measure", choices=("time", "instructions"), default="time",
                   help="compare the per-step times (default) or the instructions per step "
                        "counted under Valgrind (run --measure instructions)")


COMMAND = Command(
    "compare", "compare two results files case by case, with a noise-aware verdict "
    "(Mann–Whitney U)",
    "Compare the per-step medians of the cases two results files share, with a "
    "significance test per case; --fail-above makes the exit status fail on a "
    "regression, for CI.",
    ("compare results/run-a.json results/run-b.json",
     "compare base.json new.json --fail-above 10",
     "compare base.json new.json --measure instructions"),
    compare_args, lambda a: compare(a.a, a.b, a.fail_above, a.format,
                                             a.measure))
