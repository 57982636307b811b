"""What /proc and /sys say, read without raising: load, CPU times, every process's ticks, the
frequency scaling state and the CPU's static facts (``harness.measure.machine_state`` makes
snapshots of them and judges them).

Every parser takes text and returns values or None; every reader returns None (or an empty
result) for a file it cannot read: a missing file, another platform, a permission error.
"""

from __future__ import annotations

import functools
import os
import platform
import time
from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")
SYS_CPU = Path("/sys/devices/system/cpu")

TOP_PROCESSES = 5
MIN_LISTED_PCT = 1.0  # processes below this are not listed in busy_processes

CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
              "guest", "guest_nice")
# guest time is already counted in user/nice, so it is left out of the total
TOTAL_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


# --- parsers: text in, values out, never raise -------------------------------------------


def parse_loadavg(text: str) -> dict | None:
    """'0.39 0.31 0.14 4/101 4049' -> {load1, load5, load15, running, tasks}, or None."""
    try:
        parts = text.split()
        running, tasks = parts[3].split("/")
        return {"load1": float(parts[0]), "load5": float(parts[1]), "load15": float(parts[2]),
                "running": int(running), "tasks": int(tasks)}
    except (IndexError, ValueError, AttributeError):
        return None


def parse_cpu_times(text: str) -> dict | None:
    """The aggregate 'cpu' line of /proc/stat as {field: jiffies}, or None.

    Older kernels have fewer fields; the missing ones are left out of the dict.
    """
    try:
        for line in text.splitlines():
            parts = line.split()
            if parts and parts[0] == "cpu":
                return dict(zip(CPU_FIELDS, map(int, parts[1:])))
    except (ValueError, AttributeError):
        pass
    return None


def parse_pid_stat(text: str) -> dict | None:
    """/proc/PID/stat -> {pid, name, state, ppid, ticks, start}, or None.

    ``ticks`` is utime + stime (clock ticks, all threads), ``start`` the start time in ticks
    after boot. The name is between the first '(' and the last ')': it may hold spaces and
    parentheses itself.
    """
    try:
        left, right = text.index("("), text.rindex(")")
        rest = text[right + 2:].split()
        # rest[0] is field 3 (state); utime, stime are fields 14, 15; starttime is field 22
        return {"pid": int(text[:left]), "name": text[left + 1:right], "state": rest[0],
                "ppid": int(rest[1]), "ticks": int(rest[11]) + int(rest[12]),
                "start": int(rest[19])}
    except (ValueError, IndexError, AttributeError):
        return None


# --- readers: files in, parsed values out ------------------------------------------------


def read_text(path: Path) -> str | None:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return None


def read_loadavg(proc: Path = PROC) -> dict | None:
    text = read_text(proc / "loadavg")
    return None if text is None else parse_loadavg(text)


def read_cpu_times(proc: Path = PROC) -> dict | None:
    text = read_text(proc / "stat")
    return None if text is None else parse_cpu_times(text)


def read_processes(proc: Path = PROC) -> dict[int, dict]:
    """{pid: parsed /proc/PID/stat} of every process that could be read ({} if none)."""
    try:
        pids = [int(p.name) for p in proc.iterdir() if p.name.isdigit()]
    except OSError:
        return {}
    out = {}
    for pid in pids:
        text = read_text(proc / str(pid) / "stat")  # None: it exited meanwhile
        stat = None if text is None else parse_pid_stat(text)
        if stat is not None:
            out[pid] = stat
    return out


def clock_ticks() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK"))
    except (AttributeError, ValueError, OSError):
        return 100


# --- processes --------------------------------------------------------------------------


def family(processes: dict[int, dict], pid: int, children: bool = True) -> set[int]:
    """``pid``, its parent chain and (if ``children``) all its descendants."""
    out, p = set(), pid
    while p and p not in out:
        out.add(p)
        p = processes.get(p, {}).get("ppid", 0)
    out.add(pid)
    if children:
        kids: dict[int, list[int]] = {}
        for q, stat in processes.items():
            kids.setdefault(stat["ppid"], []).append(q)
        todo = [pid]
        while todo:
            for q in kids.get(todo.pop(), []):
                if q not in out:
                    out.add(q)
                    todo.append(q)
    return out


def cpu_percent(before: dict[int, dict], after: dict[int, dict], elapsed_s: float,
                hz: int) -> list[dict]:
    """[{pid, name, cpu_pct}] of the processes in ``after``, busiest first.

    ``cpu_pct`` is the percentage of one core over ``elapsed_s``. A process absent from
    ``before`` (or a reused pid: another start time) started during the interval, so all its
    ticks count.
    """
    if elapsed_s <= 0:
        return []
    rows = []
    for pid, stat in after.items():
        old = before.get(pid)
        same = old is not None and old.get("start") == stat.get("start")
        ticks = stat["ticks"] - old["ticks"] if same else stat["ticks"]
        rows.append({"pid": pid, "name": stat["name"],
                     "cpu_pct": round(100.0 * max(0, ticks) / hz / elapsed_s, 1)})
    return sorted(rows, key=lambda r: -r["cpu_pct"])


def other_processes(processes: dict[int, dict], exclude: set[int]) -> dict[int, dict]:
    return {pid: s for pid, s in processes.items() if pid not in exclude}


def sample_processes(sample_s: float, exclude: Iterable[int] = (), children: bool = True,
                     proc: Path = PROC) -> tuple[list[dict] | None, dict[int, dict]]:
    """(busiest other processes over ``sample_s`` or None, the last read of all others)."""
    me = os.getpid()
    first, t0 = read_processes(proc), time.monotonic()
    if sample_s > 0:
        time.sleep(sample_s)
    last, t1 = (read_processes(proc), time.monotonic()) if sample_s > 0 else (first, t0)
    skip = family(last, me, children) | family(first, me, children) | set(exclude)
    others = other_processes(last, skip)
    if sample_s <= 0 or not last:
        return None, others
    rows = cpu_percent(other_processes(first, skip), others, t1 - t0, clock_ticks())
    return [r for r in rows[:TOP_PROCESSES] if r["cpu_pct"] >= MIN_LISTED_PCT], others


# --- frequency scaling and static facts --------------------------------------------------


def read_int(path: Path) -> int | None:
    text = read_text(path)
    try:
        return None if text is None else int(text.strip())
    except ValueError:
        return None


def frequency_state(sys_cpu: Path = SYS_CPU) -> dict:
    """{governors: distinct scaling governors or None, no_turbo, boost: 0/1 or None}.

    ``no_turbo`` is intel_pstate's switch (1: turbo off); ``boost`` acpi-cpufreq's (1: on).
    """
    try:
        paths = sorted(sys_cpu.glob("cpu[0-9]*/cpufreq/scaling_governor"))
    except OSError:
        paths = []
    governors = sorted({t.strip() for t in map(read_text, paths) if t is not None and t.strip()})
    return {"governors": governors or None,
            "no_turbo": read_int(sys_cpu / "intel_pstate" / "no_turbo"),
            "boost": read_int(sys_cpu / "cpufreq" / "boost")}


def physical_cores(sys_cpu: Path = SYS_CPU) -> int | None:
    """Distinct (package, core) pairs in /sys topology: cores, not hyperthreads; or None."""
    try:
        cpus = list(sys_cpu.glob("cpu[0-9]*/topology"))
    except OSError:
        return None
    pairs = {(read_int(t / "physical_package_id"), read_int(t / "core_id")) for t in cpus}
    pairs = {p for p in pairs if None not in p}
    return len(pairs) or None


def usable_cpus() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


@functools.cache
def cpu_identity() -> dict:
    """{cpu_model, flags} from py-cpuinfo (about a second, hence cached), or a fallback.

    py-cpuinfo is optional: without it (or if it fails) the model is what ``platform`` says
    and the flags are None.
    """
    try:
        import cpuinfo  # optional (py-cpuinfo), and slow: only where /proc says too little

        info = cpuinfo.get_cpu_info()
        return {"cpu_model": info.get("brand_raw") or None,
                "flags": sorted(info["flags"]) if info.get("flags") else None,
                "source": "py-cpuinfo"}
    except Exception:  # any failure inside a third-party probe must not stop a benchmark
        return {"cpu_model": platform.processor() or platform.machine() or None,
                "flags": None, "source": "platform"}


def static_facts(sys_cpu: Path = SYS_CPU) -> dict:
    """CPU model and flags, physical cores, logical CPUs and those this process may use."""
    return {**cpu_identity(), "physical_cores": physical_cores(sys_cpu),
            "logical_cpus": os.cpu_count(), "usable_cpus": usable_cpus()}
