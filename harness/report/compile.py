"""The compile cost of the variants that compile (those with a registered baseline)."""

from __future__ import annotations

import html

from harness.record import summary
from harness.record.results import Case, Run
from harness.report.sources import Source, device_label, settings
from harness.tables import fmt_time, markdown_table, md_code

INTRO = ("## Compile cost\n\nFirst call: the first `run(block)` of a fresh Trainer "
         "(tracing, compiling, capturing). Compile: the first call beyond what its steps "
         "cost in the steady state. Pays off after: steps until the compiled variant's total "
         "time is below its baseline's (registry `baseline`). First compile in its process: "
         "the variants of one framework share a worker process and its compile caches, so the "
         "first of them to compile also pays the compiler's one-time start-up.")


def section(sources: list[Source]) -> str:
    rows = [row for s in sources if s.command != "sweep" for row in rows_of(s)]
    parts = [table(rows)] if rows else []
    for s in (s for s in sources if s.command == "sweep"):
        srows = rows_of(s)
        if srows:
            parts.append(f"<details><summary>Compile costs in the sweep <code>"  # HTML here
                         f"{html.escape(s.path.name)}</code></summary>\n\n{table(srows)}"
                         f"\n\n</details>")
    return INTRO + "\n\n" + "\n\n".join(parts) if parts else ""


def table(rows: list[list]) -> str:
    return markdown_table(["file", "device", "network", "variant", "baseline", "first call",
                           "compile", "compile cache", "first compile in its process",
                           "pays off after"], rows, "llllrrrlll")


def rows_of(source: Source) -> list[list]:
    """One row per ok case of a variant that is measured against a baseline."""
    run = source.run
    rows = []
    for r in summary.in_order(run, summary.derive(run)):
        c = r.case
        base = summary.baseline_of(run, c.variant)
        if c.ok and base:
            rows.append([source.file, device_label(run, c.device), r.network, md_code(c.variant),
                         md_code(base), fmt_time(c.timing.first_call_s), fmt_time(r.compile),
                         cache_state(run, c), yes_no(c.first_in_process), r.pays_off or "—"])
    return rows


def cache_state(run: Run, case: Case) -> str:
    """'warm', 'cold' or 'partly warm' where the framework records the state of the compile
    caches it keeps (the Inductor cache, AOTInductor packages)."""
    record = settings(run, case.framework)
    warm = {v["warm_at_start"] for v in record.values()
            if isinstance(v, dict) and "warm_at_start" in v}
    if not warm:
        return "—"
    return "partly warm" if len(warm) > 1 else ("warm" if warm.pop() else "cold")


def yes_no(x) -> str:
    return {True: "yes", False: "no"}.get(x, "—")
