"""`backprop-bench export`: results files as pytest-benchmark JSON or as CSV.

pytest-benchmark JSON (the layout of pytest-benchmark 5.3.1: ``machine_info``,
``commit_info``, ``benchmarks``, ``datetime``, ``version``) holds one benchmark per ok case:
``data`` is the case's raw block times divided by K and ``iterations`` is K, so that every
statistic is seconds per SGD step, as pytest-benchmark stores a round of K iterations. The
statistics are computed from ``data`` exactly as pytest-benchmark computes them (its
quartiles, not NumPy's), so ``pytest-benchmark compare`` shows what it would have measured.
``group`` is the network and device, ``name`` the variant, ``fullname`` the case id (prefixed
with the file name when several files are exported together), ``extra_info`` the case's flat
record (``harness.record.rows``). Failed and unavailable cases are left out, and said so on
stderr; ``machine_info`` and ``commit_info`` are the first file's.

CSV holds one row per case of every file, with the columns of ``harness.record.rows.NAMES``.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import sys
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from pathlib import Path

from harness.record import rows as records
from harness.record import schema, store
from harness.record.results import Case, ResultsError, Run

FORMATS = ("pytest-benchmark", "csv")
LAYOUT_VERSION = "5.3.1"  # the pytest-benchmark version whose JSON layout this writes
PROG = "backprop-bench export"


# ---- statistics as pytest-benchmark computes them (pytest_benchmark.stats.Stats) -------------

def quartiles(data: Sequence[float]) -> tuple[float, float]:
    """(Q1, Q3) by pytest-benchmark's method: Wikipedia's method 3 for an odd number of
    values, method 2 (medians of the halves) for an even number."""
    d, n = sorted(data), len(data)
    if n == 1:
        return d[0], d[0]
    if n % 2 == 0:
        return statistics.median(d[:n // 2]), statistics.median(d[n // 2:])
    m, r = n // 4, n % 4
    if r == 1:
        return 0.25 * d[m - 1] + 0.75 * d[m], 0.75 * d[3 * m] + 0.25 * d[3 * m + 1]
    return 0.75 * d[m] + 0.25 * d[m + 1], 0.25 * d[3 * m + 1] + 0.75 * d[3 * m + 2]


def benchmark_stats(data: Sequence[float], iterations: int) -> dict:
    """pytest-benchmark's ``stats`` object of per-iteration times ``data``."""
    d = sorted(data)
    mean = statistics.mean(d)
    stddev = statistics.stdev(d) if len(d) > 1 else 0
    q1, q3 = quartiles(d)
    iqr = q3 - q1
    total = sum(data)
    ld15iqr = d[bisect_left(d, q1 - 1.5 * iqr)]
    hd15iqr = d[bisect_right(d, q3 + 1.5 * iqr) - 1]
    stddev_outliers = sum(not mean - stddev <= x <= mean + stddev for x in d)
    iqr_outliers = sum(not q1 - 1.5 * iqr <= x <= q3 + 1.5 * iqr for x in d)
    return {"min": d[0], "max": d[-1], "mean": mean, "stddev": stddev, "rounds": len(d),
            "median": statistics.median(d), "iqr": iqr, "q1": q1, "q3": q3,
            "iqr_outliers": iqr_outliers, "stddev_outliers": stddev_outliers,
            "outliers": f"{stddev_outliers};{iqr_outliers}", "ld15iqr": ld15iqr,
            "hd15iqr": hd15iqr, "ops": len(d) / total if total else 0, "total": total,
            "data": list(data), "iterations": iterations}


# ---- pytest-benchmark JSON --------------------------------------------------------------------

def benchmark(path: Path, run: Run, case: Case, record: dict, several: bool) -> dict:
    """The pytest-benchmark entry of one ok case; ``record`` is its flat row."""
    t, timing = case.timing, run.config.timing
    network = case.problem.label()
    return {"group": f"{network} on {case.device}",
            "name": case.variant + (f" ({path.stem})" if several else ""),
            "fullname": f"{path.name}::{case.id}" if several else case.id,
            "params": {"variant": case.variant, "device": case.device, "network": network},
            "param": case.id, "extra_info": record,
            "options": {"disable_gc": False, "timer": "perf_counter",
                        "min_rounds": timing.min_blocks, "max_time": timing.budget_s,
                        "min_time": timing.target_block_s, "warmup": timing.warmup_blocks > 0},
            "stats": benchmark_stats(list(t.per_step_s()), t.block_steps)}


def machine_info(run: Run) -> dict:
    """pytest-benchmark's machine_info keys that a results file knows, and the whole record."""
    m = run.machine
    return {"node": m.hostname, "processor": m.cpu or "",
            "python_version": run.software.get("python"), "system": (m.os or "").split("-")[0],
            "cpu": {"brand_raw": m.cpu, "count": m.cores},
            "backprop_bench": {"machine": schema.to_dict(m), "software": run.software}}


def commit_info(run: Run) -> dict:
    c = run.commit
    return {"id": c.id or "unknown", "time": None, "author_time": None, "dirty": bool(c.dirty),
            "project": "backprop-bench", "branch": c.branch or "(unknown)"}


def to_pytest_benchmark(loaded: list[tuple[Path, Run]]) -> tuple[dict, int]:
    """(the JSON document, the number of cases left out because they are not ok)."""
    several = len(loaded) > 1
    benches = [benchmark(path, run, c, record, several) for path, run in loaded
               for c, record in zip(run.cases, records.run_records(run, str(path))) if c.ok]
    left_out = sum(len(run.cases) - len(run.ok_cases()) for _, run in loaded)
    first = loaded[0][1]
    return {"machine_info": machine_info(first), "commit_info": commit_info(first),
            "benchmarks": benches, "datetime": first.created, "version": LAYOUT_VERSION}, left_out


# ---- CSV --------------------------------------------------------------------------------------

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value):
    """A text cell a spreadsheet would read as a formula (``=HYPERLINK(...)``, ``+1``, ``@x``)
    is quoted with a leading apostrophe, so that it is shown, never run; numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def to_csv(loaded: list[tuple[Path, Run]]) -> str:
    """One row per case of every file, ``records.NAMES`` as the header."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=records.NAMES, lineterminator="\n")
    writer.writeheader()
    for path, run in loaded:
        writer.writerows({k: cell(v) for k, v in r.items()}
                         for r in records.run_records(run, str(path)))
    return out.getvalue()


# ---- the command ------------------------------------------------------------------------------

def render(loaded: list[tuple[Path, Run]], fmt: str) -> str:
    """The exported text; a note on stderr for the cases pytest-benchmark JSON leaves out."""
    if fmt == "csv":
        return to_csv(loaded)
    document, left_out = to_pytest_benchmark(loaded)
    if left_out:
        print(f"{PROG}: note: {left_out} failed or unavailable case(s) left out (pytest-"
              f"benchmark JSON holds timings only; --format csv lists every case)",
              file=sys.stderr)
    return json.dumps(document, indent=1, allow_nan=False) + "\n"


def load(paths: Sequence[str]) -> list[tuple[Path, Run]]:
    """The valid results files among paths (folders searched); the others are warnings."""
    loaded, problems = store.read_runs(list(paths))
    if not loaded:
        first = f" (first: {problems[0]})" if problems else ""
        raise ResultsError(f"no valid results file in {', '.join(paths)}{first}")
    for problem in problems:
        print(f"{PROG}: warning: {problem}; left out", file=sys.stderr)
    return loaded


def main(paths: Sequence[str], fmt: str = "pytest-benchmark", out: str = "-",
         force: bool = False) -> int:
    """Export results files to ``out`` ('-': standard output); 0, or a one-line error."""
    if fmt not in FORMATS:
        raise ResultsError(f"unknown format {fmt!r}: choose from {', '.join(FORMATS)}")
    if not out.strip():
        raise ResultsError("--out is empty: give a file path, or - for standard output")
    loaded = load(paths)
    if out == "-":
        sys.stdout.write(render(loaded, fmt))
        return 0
    target = Path(out)
    if any(target.resolve() == path.resolve() for path, _ in loaded):
        raise ResultsError(f"{out} is one of the files being exported: choose another --out")
    store.claim(target, force)
    try:
        store.write_text(render(loaded, fmt), target)
    finally:
        store.release(target)
    print(f"{PROG}: wrote {target}", file=sys.stderr)
    return 0
