"""`backprop-bench export`: results files as pytest-benchmark JSON or CSV."""

from __future__ import annotations

import argparse

from harness.commands.base import Command
from harness.record import export as exporting


def export(paths: list[str], fmt: str, out: str, force: bool) -> int:

    return exporting.main(paths, fmt, out, force)


def export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="results files or folders of them")
    p.add_argument("--format", choices=exporting.FORMATS, default="pytest-benchmark",
                   help="pytest-benchmark JSON (default; per-step times, iterations = K) or "
                        "csv (one row per case)")
    p.add_argument("--out", default="-", metavar="FILE", help="where to write (default: -, "
                   "standard output); an existing file is never overwritten without --force")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")


COMMAND = Command(
    "export", "convert results files to pytest-benchmark JSON or CSV",
    "Convert results files (folders are searched for *.json) into pytest-benchmark's "
    "JSON, one benchmark per ok case with per-step times, so that `pytest-benchmark "
    "compare` reads them; or into CSV, one row per case with the columns of the "
    "Python API's records().",
    ("export results/run-a.json --out run-a.pytest-benchmark.json",
     "export results/ --format csv --out cases.csv"),
    export_args, lambda a: export(a.paths, a.format, a.out, a.force))
