"""The machine's state around each run, and memory per step: what the numbers rest on."""

from __future__ import annotations

from harness.record import summary
from harness.record.results import Run
from harness.report.sources import Source
from harness.tables import markdown_table, md_code, md_escape

STATE_INTRO = ("Before timing, each run watches the machine for half a second, and it records "
               "the machine's state around every case: CPU steal and iowait (their share of all "
               "CPU time, from /proc/stat), the busiest other process (its average use of a "
               "core), the load average, and the frequency governor and turbo state. A case "
               "run while another process was busy, or with steal above 5%, is marked "
               "*disturbed* in the tables.")


def state_section(sources: list[Source]) -> str:
    rows = [row for s in sources if (row := state_row(s))]
    if not rows:
        return ""
    return ("### Machine state\n\n" + STATE_INTRO + "\n\n"
            + markdown_table(["file", "CPU", "before timing", "during the run",
                              "disturbed cases"], rows, "lllll"))


def state_row(source: Source) -> list[str] | None:
    state = source.run.machine_state
    if not state:
        return None
    static = (state.get("before") or {}).get("static") or {}
    cpu = (f"{static.get('physical_cores') or '?'} physical cores, "
           f"{static.get('logical_cpus') or '?'} threads; governor "
           f"{', '.join(sorted(set((state['before'].get('governors') or {}).values()))) or '—'}"
           f"; turbo {turbo(state['before'])}")
    before = "; ".join(state.get("warnings_before") or []) or "quiet"
    during = during_text(state.get("during") or {})
    disturbed = sum(c.disturbed for c in source.run.cases)
    return [source.file, md_escape(cpu), md_escape(before), md_escape(during),
            f"{disturbed} of {len(source.run.cases)}"]


def turbo(snapshot: dict) -> str:
    if snapshot.get("no_turbo") is not None:
        return "off" if snapshot["no_turbo"] else "on"
    if snapshot.get("boost") is not None:
        return "on" if snapshot["boost"] else "off"
    return "not shown"


def during_text(facts: dict) -> str:
    parts = []
    for key, name in (("steal_pct", "steal"), ("iowait_pct", "iowait")):
        if facts.get(key) is not None:
            parts.append(f"{name} {facts[key]:.1f}%")
    busiest = facts.get("busiest")
    if busiest:
        parts.append(f"busiest other process {busiest['name']} at {busiest['cpu_pct']:.0f}% "
                     f"of a core")
    if facts.get("load1") is not None:
        parts.append(f"load {facts['load1']:.1f}")
    return ", ".join(parts) or "—"


MEMORY_INTRO = ("Memory per step: what the first call (tracing and compiling included) and "
                "one warm step add to the memory in use at their start (resident memory of "
                "the worker process on the CPU, the framework's allocator on a GPU), what the "
                "worker holds at rest, and the minimum the network needs (parameters, their "
                "gradients, and the activations backprop keeps). A variant whose memory grows "
                "over the timed steps by more than 4 MiB and more than a warm step's own peak "
                "is marked *leaks*. A warm step adding 0 B reuses memory its process already "
                "holds (the allocator keeps what earlier steps freed).")


def memory_table(run: Run, device: str) -> str:
    rows = [cells for r in summary.in_order(run, summary.derive(run))
            if r.case.device == device and (cells := summary.memory_cells(r.case))]
    if not rows:
        return ""
    rows = [[row[0], md_code(row[1]), *row[3:]] for row in rows]
    headers = [h for h in summary.MEMORY_HEADERS if h != "device"]
    return "Memory per step:\n\n" + markdown_table(headers, rows, "llrrrrrl")
