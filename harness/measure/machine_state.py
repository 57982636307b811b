"""The state of a shared machine around a timing, and warnings when it distorts timings.

On a small shared VM a busy neighbour process or CPU steal time by the hypervisor can make a
step look 2-5x slower. ``snapshot`` records what the machine looks like at one moment, from
what ``harness.measure.procfs`` reads:

- ``time`` (epoch seconds) and ``monotonic`` (seconds, for the interval between snapshots);
- ``loadavg``: ``{load1, load5, load15, running, tasks}`` from /proc/loadavg;
- ``cpu_times``: the cumulative jiffies of the aggregate ``cpu`` line of /proc/stat
  (``user, nice, system, idle, iowait, irq, softirq, steal, ...``); the difference between two
  snapshots gives steal and iowait as a percentage of all CPU time over the interval;
- ``busy_processes``: the busiest other processes, ``[{pid, name, cpu_pct}]``, where
  ``cpu_pct`` is the percentage of one core used over ``sample_s`` seconds of sampling;
- ``process_ticks``: ``{pid: [ticks, start, name]}`` (user + system clock ticks, start time)
  of every other process, so that two snapshots give each one's average use over a whole run;
- ``sample_s``, ``clock_ticks`` (ticks per second), ``logical_cpus``;
- ``governors``, ``no_turbo``, ``boost``: the frequency scaling state where /sys shows it;
- ``static``: CPU model, flags, physical cores, logical and usable CPUs (py-cpuinfo's part is
  computed once per process).

"Other" processes exclude this process, its parent chain and (by default) its descendants,
plus any pids the caller names. Every field that cannot be read (missing file, non-Linux,
permission error) is None; nothing here raises.

``warnings_before(snapshot)`` is the check made before timing; ``assess(before, after)``
compares two snapshots taken around a case or a worker round and returns
``{disturbed, reasons, ...}`` for the harness to store with each affected case.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from harness.measure.procfs import (
    PROC,
    SYS_CPU,
    TOP_PROCESSES,
    TOTAL_FIELDS,
    clock_ticks,
    cpu_percent,
    frequency_state,
    read_cpu_times,
    read_loadavg,
    sample_processes,
    static_facts,
)

BUSY_PROCESS_PCT = 25.0  # % of one core: above this, another process competes for a core
STEAL_WARN_PCT = 5.0  # % of all CPU time taken by the hypervisor during the interval
IOWAIT_WARN_PCT = 10.0  # % of all CPU time idle waiting for I/O (swapping, a disk-heavy job)
LOAD_EXCESS_WARN = 0.5  # runnable tasks beyond the logical CPUs, above the load average's noise
DEFAULT_SAMPLE_S = 0.3


# --- snapshots ---------------------------------------------------------------------------


def snapshot(sample_s: float = DEFAULT_SAMPLE_S, exclude: Iterable[int] = (),
             children: bool = True, static: bool = True, proc: Path = PROC,
             sys_cpu: Path = SYS_CPU) -> dict:
    """The machine's state now, as a JSON-able dict (see the module docstring).

    ``sample_s`` seconds are spent sampling other processes (0: no ``busy_processes``, only
    the ``process_ticks`` that ``assess`` needs). ``children=False`` counts this process's
    descendants as others. ``static=False`` leaves out the static facts (per-case snapshots).
    """
    try:
        busy, others = sample_processes(sample_s, exclude, children, proc)
    except Exception:  # a /proc race or an odd platform costs the field, not the run
        busy, others = None, {}
    state = {
        "time": time.time(), "monotonic": time.monotonic(), "sample_s": sample_s,
        "loadavg": read_loadavg(proc), "cpu_times": read_cpu_times(proc),
        "busy_processes": busy,
        "process_ticks": {str(p): [s["ticks"], s["start"], s["name"]] for p, s in
                          others.items()} or None,
        "clock_ticks": clock_ticks(), "logical_cpus": os.cpu_count(),
        **frequency_state(sys_cpu),
    }
    if static:
        state["static"] = static_facts(sys_cpu)
    return state


def compact(state: dict) -> dict:
    """The snapshot without ``process_ticks`` (only ``assess`` needs them), for storing."""
    return {k: v for k, v in state.items() if k != "process_ticks"}


# --- intervals and warnings --------------------------------------------------------------


def cpu_shares(before: dict | None, after: dict | None) -> dict:
    """{steal_pct, iowait_pct}: their share of all CPU time between two /proc/stat reads."""
    none = {"steal_pct": None, "iowait_pct": None}
    if not before or not after:
        return none
    total = sum(after.get(f, 0) - before.get(f, 0) for f in TOTAL_FIELDS)
    if total <= 0:
        return none

    def pct(field: str) -> float | None:
        if field not in before or field not in after:
            return None
        return round(100.0 * (after[field] - before[field]) / total, 2)

    return {"steal_pct": pct("steal"), "iowait_pct": pct("iowait")}


def _ticks_table(state: dict) -> dict[int, dict] | None:
    table = state.get("process_ticks")
    if table is None:
        return None
    return {int(p): {"ticks": t, "start": s, "name": n} for p, (t, s, n) in table.items()}


def busy_between(before: dict, after: dict) -> list[dict]:
    """[{pid, name, cpu_pct}]: the other processes by CPU used between two snapshots, the
    busiest first (at most TOP_PROCESSES)."""
    old, new = _ticks_table(before), _ticks_table(after)
    elapsed = after.get("monotonic", 0.0) - before.get("monotonic", 0.0)
    if old is None or new is None or elapsed <= 0:
        return []
    return cpu_percent(old, new, elapsed, after.get("clock_ticks") or clock_ticks())[
        :TOP_PROCESSES]


def interval(before: dict, after: dict) -> dict:
    """What happened between two snapshots: {interval_s, steal_pct, iowait_pct, busiest,
    load1 (at the end), logical_cpus}; None for whatever could not be read."""
    start, end = before.get("monotonic"), after.get("monotonic")
    load = after.get("loadavg") or {}
    busy = busy_between(before, after)
    return {
        "interval_s": None if start is None or end is None else round(end - start, 3),
        **cpu_shares(before.get("cpu_times"), after.get("cpu_times")),
        "busiest": busy[0] if busy else None,
        "busy": [row for row in busy if row["cpu_pct"] > BUSY_PROCESS_PCT],
        "load1": load.get("load1"),
        "logical_cpus": after.get("logical_cpus"),
    }


def busy_warning(row: dict) -> str | None:
    if row["cpu_pct"] <= BUSY_PROCESS_PCT:
        return None
    return (f"another process is busy: {row['name']} (pid {row['pid']}) at "
            f"{row['cpu_pct']:.0f}% of a core")


def load_warning(load1: float | None, cpus: int | None) -> str | None:
    if load1 is None or not cpus or load1 <= cpus + LOAD_EXCESS_WARN:
        return None
    return f"load average {load1:.1f} on {cpus} {'core' if cpus == 1 else 'cores'}"


def warnings_before(state: dict) -> list[str]:
    """One line per problem seen in a snapshot taken before timing: busy other processes,
    a load average above the logical CPUs."""
    out = [busy_warning(r) for r in state.get("busy_processes") or []]
    load = (state.get("loadavg") or {}).get("load1")
    out.append(load_warning(load, state.get("logical_cpus")))
    return [w for w in out if w]


def frequency_warning(before: dict, after: dict) -> str | None:
    keys = ("governors", "no_turbo", "boost")
    changed = [k for k in keys if before.get(k) != after.get(k)]
    if not changed:
        return None
    return "frequency scaling changed during the run: " + ", ".join(
        f"{k} {before.get(k)} -> {after.get(k)}" for k in changed)


def warnings_during(before: dict, after: dict, facts: dict | None = None) -> list[str]:
    """One line per problem between two snapshots: a busy other process (its average over
    the interval), steal or iowait above their thresholds, a high load average at the end,
    a change of frequency scaling. ``facts``: ``interval(before, after)`` if already made."""
    facts = facts or interval(before, after)
    out = [busy_warning(row) for row in facts.get("busy") or []]
    if facts["steal_pct"] is not None and facts["steal_pct"] > STEAL_WARN_PCT:
        out.append(f"CPU steal {facts['steal_pct']:.0f}% during the run")
    if facts["iowait_pct"] is not None and facts["iowait_pct"] > IOWAIT_WARN_PCT:
        out.append(f"CPU iowait {facts['iowait_pct']:.0f}% during the run")
    out += [load_warning(facts["load1"], facts["logical_cpus"]),
            frequency_warning(before, after)]
    return [w for w in out if w]


def assess(before: dict, after: dict) -> dict:
    """{disturbed, reasons, interval_s, steal_pct, iowait_pct, busiest, load1, logical_cpus}
    for the case (or the worker round) timed between ``before`` and ``after``.

    Take both snapshots in the same process, so that both leave out the same family: a
    process left out of ``before`` only would count as started during the interval.
    """
    facts = interval(before, after)
    reasons = warnings_during(before, after, facts)
    return {"disturbed": bool(reasons), "reasons": reasons, **facts}
