"""Derived columns of a run, computed from stored cases only (nothing is re-measured).

For each case: per-step median, IQR as a % of the median, min, × the limit (the ``limit``
variant on the same network), × NumPy (the ``numpy`` variant on the same network), the
first call, the compile cost (first call beyond its steps' steady-state cost) and the number
of steps after which compiling pays off against the variant's registered baseline.
"""

from __future__ import annotations

import json

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


def derive(run: dict) -> list[dict]:
    """One dict per case with the derived columns (None where a reference is missing)."""
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
            t = c["timing"]
            ps = t["per_step"]
            row.update(median=ps["median_s"], iqr_pct=100 * ps["iqr_s"] / ps["median_s"],
                       min=ps["min_s"], first=t["first_call_s"], compile=t["compile_s"])
            for ref, col in (("limit", "x_limit"), ("numpy", "x_numpy")):
                r = refs.get((key, ref))
                if r:
                    row[col] = ps["median_s"] / r["timing"]["per_step"]["median_s"]
            row["pays_off"] = pays_off(c, by.get((key, c["device"], baseline_of(c["variant"]))))
        rows.append(row)
    return rows


def baseline_of(variant: str) -> str | None:
    v = registry.VARIANTS.get(variant)
    return v.baseline if v else None


def pays_off(case: dict, base: dict | None) -> str | None:
    if base is None:
        return None
    t, b = case["timing"], base["timing"]
    n = steps_to_pay_off(t["compile_s"], t["per_step"]["median_s"], b["compile_s"],
                         b["per_step"]["median_s"])
    return "never" if n is None else f"{n:,.0f} steps"


def status_text(case: dict) -> str:
    if case["status"] == "ok":
        return "noisy" if case["timing"]["per_step"]["noisy"] else "ok"
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
    the status short (the reasons are listed under the table)."""
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
    ps = case["timing"]["per_step"]
    noisy = "  (noisy: IQR > 10% of median)" if ps["noisy"] else ""
    return (f"{head} {fmt_time(ps['median_s']):>10}/step  IQR {fmt_time(ps['iqr_s'])}  "
            f"first call {fmt_time(case['timing']['first_call_s'])}{noisy}")
