"""Derived columns of a run, computed from stored cases only (nothing is re-measured).

For each case: per-step median, IQR as a % of the median, min, × the limit (the ``limit``
variant on the same network), × NumPy (the ``numpy`` variant on the same network), the
first call, the compile cost (first call beyond its steps' steady-state cost; only for variants
that compile, i.e. have a registered baseline: for the others the first call is just a cold
call) and the number of steps after which compiling pays off against that baseline.
"""

from __future__ import annotations

import json
import math

from harness.model import usable_time
from harness.tables import fmt_ratio, fmt_time, text_table
from harness.timing import steps_to_pay_off
from implementations import registry


def problem_key(problem: dict) -> str:
    return json.dumps(problem, sort_keys=True)


def network_label(problem: dict) -> str:
    widths = "-".join(map(str, problem["widths"]))
    bias = "+b" if problem.get("bias") else ""
    return f"{widths} {problem['activation']}{bias} {problem['dtype']} b{problem['batch']}"


def ok_cases(run: dict) -> list[dict]:
    return [c for c in run["cases"] if c["status"] == "ok"]


def median_of(case: dict) -> float | None:
    """The per-step median of an ok case if it is a finite positive number, else None.

    results.validate rejects ok cases without one; this guard keeps every derived column
    (ratios, IQR %, pays off) from dividing by a zero or missing median all the same.
    """
    if case.get("status") != "ok":
        return None
    return usable_time(case)


def number(x) -> float | None:
    """x if it is a finite number (not a bool), else None."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def derive(run: dict) -> list[dict]:
    """One dict per case with the derived columns (None where a reference is missing, or
    where a case lacks a usable per-step median)."""
    by = {}
    for c in ok_cases(run):
        by[(problem_key(c["problem"]), c["device"], c["variant"])] = c
    refs = {}
    for c in ok_cases(run):
        if c["variant"] in ("limit", "numpy"):
            refs[(problem_key(c["problem"]), c["variant"])] = c
    rows = []
    for c in run["cases"]:
        key = problem_key(c["problem"])
        row = {"case": c, "network": network_label(c["problem"]), "median": None, "iqr_pct": None,
               "min": None, "x_limit": None, "x_numpy": None, "first": None, "compile": None,
               "pays_off": None}
        if c["status"] == "ok":
            t = c.get("timing") or {}
            ps = t.get("per_step") or {}
            median, iqr = median_of(c), number(ps.get("iqr_s"))
            base = baseline_of(c["variant"])
            row.update(median=median, min=number(ps.get("min_s")),
                       first=number(t.get("first_call_s")),
                       compile=number(t.get("compile_s")) if base else None,
                       iqr_pct=None if median is None or iqr is None else 100 * iqr / median)
            for ref, col in (("limit", "x_limit"), ("numpy", "x_numpy")):
                r = refs.get((key, ref))
                ref_median = median_of(r) if r else None
                if median is not None and ref_median is not None:
                    row[col] = median / ref_median
            row["pays_off"] = pays_off(c, by.get((key, c["device"], base)))
        rows.append(row)
    return rows


def baseline_of(variant: str) -> str | None:
    v = registry.VARIANTS.get(variant)
    return v.baseline if v else None


def pays_off(case: dict, base: dict | None) -> str | None:
    """Steps until the compiled case's total time is below its baseline's; None when there is
    no baseline case or either lacks a usable median or compile time."""
    if base is None:
        return None
    step, base_step = median_of(case), median_of(base)
    first = number((case.get("timing") or {}).get("compile_s"))
    base_first = number((base.get("timing") or {}).get("compile_s"))
    if None in (step, base_step, first, base_first):
        return None
    n = steps_to_pay_off(first, step, base_first, base_step)
    return "never" if n is None else f"{n:,.0f} steps"


def status_text(case: dict) -> str:
    if case["status"] == "ok":
        noisy = ((case.get("timing") or {}).get("per_step") or {}).get("noisy")
        return "noisy" if noisy else "ok"
    return f"{case['status'].upper()}: {case['reason']}"


def in_order(run: dict, rows: list[dict]) -> list[dict]:
    """Rows sorted by the run's network order, then device, then registry variant order."""
    nets = {problem_key(p): i for i, p in enumerate(run["config"].get("problems", []))}
    names = {name: i for i, name in enumerate(registry.VARIANTS)}

    def key(r):
        c = r["case"]
        return (nets.get(problem_key(c["problem"]), len(nets)), c["device"] != "cpu",
                names.get(c["variant"], len(names)))

    return sorted(rows, key=key)


HEADERS = ["network", "variant", "kind", "device", "per step", "IQR", "min", "× limit",
           "× numpy", "first call", "compile", "pays off after", "status"]
ALIGN = "llllrrrrrrrrl"


def row_cells(r: dict, markdown: bool = False) -> list[str]:
    """The cells of one derived row, in HEADERS order; Markdown quotes the variant and keeps
    the status short (the reasons are listed under the table). "compile" is "—" for a variant
    with no registered baseline (it does not compile; its first call is only a cold call)."""
    c = r["case"]
    status = c["status"] if markdown and c["status"] != "ok" else status_text(c)
    return [r["network"], f"`{c['variant']}`" if markdown else c["variant"], c.get("kind", ""),
            c["device"], fmt_time(r["median"]),
            "—" if r["iqr_pct"] is None else f"{r['iqr_pct']:.0f}%", fmt_time(r["min"]),
            fmt_ratio(r["x_limit"]), fmt_ratio(r["x_numpy"]), fmt_time(r["first"]),
            fmt_time(r["compile"]), r["pays_off"] or "—", status]


def run_table(run: dict) -> str:
    """The table `backprop-bench run` prints at the end."""
    return text_table(HEADERS, [row_cells(r) for r in in_order(run, derive(run))], ALIGN)


def case_line(case: dict, done: int, total: int) -> str:
    """One progress line per finished case."""
    head = f"[{done}/{total}] {case['device']:4} {case['variant']:15} " \
           f"{network_label(case['problem']):28}"
    if case["status"] != "ok":
        return f"{head} {status_text(case)}"
    t = case.get("timing") or {}
    ps = t.get("per_step") or {}
    noisy = "  (noisy: IQR > 10% of median)" if ps.get("noisy") else ""
    return (f"{head} {fmt_time(median_of(case)):>10}/step  IQR {fmt_time(number(ps.get('iqr_s')))}"
            f"  first call {fmt_time(number(t.get('first_call_s')))}{noisy}")
