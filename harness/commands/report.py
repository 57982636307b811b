"""`backprop-bench report`: the Markdown report and its plots, from stored results files."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.base import Command
from harness.report import DEFAULT_DIR, DEFAULT_OUT, build_report
from implementations.problem import BenchError


def report(paths: list[str], out: str | None, force: bool, readme: str | None = None) -> int:

    target = Path(out) if out is not None else Path(DEFAULT_DIR) / DEFAULT_OUT
    if out is not None and not out.strip():
        raise BenchError("--out is empty: give a Markdown file path")
    print(f"report: {build_report(paths, target, force, readme and Path(readme))}")
    return 0


def report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help=f"results files or folders of them (default: {DEFAULT_DIR}/)")
    p.add_argument("--out", metavar="FILE", help=f"the Markdown file; plots go in plots/ "
                   f"beside it (default: {DEFAULT_DIR}/{DEFAULT_OUT})")
    p.add_argument("--force", action="store_true", help="overwrite files the report did not "
                   "write itself")
    p.add_argument("--readme", metavar="FILE", help="also rewrite the generated 'results at a "
                   "glance' block of this README (between its two markers)")


COMMAND = Command(
    "report", "build results/REPORT.md and its plots from stored results files "
    "(nothing is re-measured)",
    "Build a Markdown report and PNG plots from results files (folders are searched "
    "for *.json), merging machines; unreadable files are named and left out.",
    ("report", "report results/ gpu-results/ --out /tmp/report/REPORT.md"),
    report_args, lambda a: report(a.paths, a.out, a.force, a.readme))
