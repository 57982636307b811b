"""Machine state: parsers on canned /proc text, intervals, warnings, graceful degradation."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.measure import machine_state as ms
from harness.measure import procfs

LINUX = Path("/proc/self/stat").exists()

STAT_BEFORE = """cpu  1000 0 500 8000 100 0 0 400 0 0
cpu0 500 0 250 4000 50 0 0 200 0 0
intr 1 2 3
ctxt 42
"""
# deltas: user 500, system 200, idle 600, iowait 200, steal 500 (total 2000); guest 300 is
# already inside user and must not count twice
STAT_AFTER = """cpu  1500 0 700 8600 300 0 0 900 300 0
cpu0 750 0 350 4300 150 0 0 450 150 0
"""


def pid_stat(pid: int, name: str, utime: int, stime: int, start: int, ppid: int = 1) -> str:
    fields = ["S", ppid, pid, pid, 0, -1, 4194304, 98, 0, 0, 0, utime, stime, 0, 0, 20, 0, 1,
              0, start, 3133440, 383]
    return f"{pid} ({name}) " + " ".join(map(str, fields)) + " 0 0 0\n"


def state(**fields) -> dict:
    base = {"monotonic": 0.0, "loadavg": None, "cpu_times": None, "busy_processes": None,
            "process_ticks": None, "clock_ticks": 100, "logical_cpus": 2, "governors": None,
            "no_turbo": None, "boost": None}
    return {**base, **fields}


# --- parsers -----------------------------------------------------------------------------


def test_parse_loadavg():
    assert procfs.parse_loadavg("3.10 0.31 0.14 4/101 4049\n") == {
        "load1": 3.1, "load5": 0.31, "load15": 0.14, "running": 4, "tasks": 101}
    assert procfs.parse_loadavg("") is None
    assert procfs.parse_loadavg("garbage here") is None


def test_parse_cpu_times_and_steal_share():
    before, after = procfs.parse_cpu_times(STAT_BEFORE), procfs.parse_cpu_times(STAT_AFTER)
    assert before["steal"] == 400 and before["idle"] == 8000
    assert ms.cpu_shares(before, after) == {"steal_pct": 25.0, "iowait_pct": 10.0}


def test_cpu_shares_degrade():
    old_kernel = procfs.parse_cpu_times("cpu  10 0 5 80 1 0 0\n")  # no steal column
    newer = procfs.parse_cpu_times("cpu  20 0 10 160 2 0 0\n")
    assert "steal" not in old_kernel
    # 1 jiffy of iowait in 10 + 5 + 80 + 1
    assert ms.cpu_shares(old_kernel, newer) == {"steal_pct": None, "iowait_pct": 1.04}
    assert ms.cpu_shares(None, newer) == {"steal_pct": None, "iowait_pct": None}
    assert ms.cpu_shares(newer, newer) == {"steal_pct": None, "iowait_pct": None}
    assert procfs.parse_cpu_times("intr 1 2\n") is None
    assert procfs.parse_cpu_times("cpu  1 x 2\n") is None


def test_parse_pid_stat_with_odd_name():
    stat = procfs.parse_pid_stat(pid_stat(1234, "my (odd) proc", 250, 50, 9999, ppid=77))
    assert stat == {"pid": 1234, "name": "my (odd) proc", "state": "S", "ppid": 77,
                    "ticks": 300, "start": 9999}
    assert procfs.parse_pid_stat("1234 (truncated") is None
    assert procfs.parse_pid_stat("") is None


def test_cpu_percent_known_answers():
    before = {1: {"name": "a", "ticks": 100, "start": 5}, 2: {"name": "b", "ticks": 10,
                                                               "start": 6}}
    after = {1: {"name": "a", "ticks": 150, "start": 5},  # 50 ticks in 0.5 s: a whole core
             2: {"name": "b", "ticks": 20, "start": 7},  # pid reused: all 20 ticks count
             3: {"name": "c", "ticks": 5, "start": 8}}  # new: all 5 ticks count
    rows = procfs.cpu_percent(before, after, 0.5, 100)
    assert rows == [{"pid": 1, "name": "a", "cpu_pct": 100.0},
                    {"pid": 2, "name": "b", "cpu_pct": 40.0},
                    {"pid": 3, "name": "c", "cpu_pct": 10.0}]
    assert procfs.cpu_percent(before, after, 0.0, 100) == []


def test_family_is_parent_chain_and_descendants():
    procs = {1: {"ppid": 0}, 10: {"ppid": 1}, 20: {"ppid": 10}, 30: {"ppid": 20},
             31: {"ppid": 30}, 40: {"ppid": 1}, 21: {"ppid": 10}}
    assert procfs.family(procs, 20) == {1, 10, 20, 30, 31}
    assert procfs.family(procs, 20, children=False) == {1, 10, 20}
    assert procfs.family({}, 5) == {5}


# --- warnings ----------------------------------------------------------------------------


def test_warnings_before_busy_process_and_load():
    busy = [{"pid": 1234, "name": "python", "cpu_pct": 98.0},
            {"pid": 7, "name": "sshd", "cpu_pct": ms.BUSY_PROCESS_PCT}]
    snap = state(busy_processes=busy, loadavg={"load1": 3.1})
    assert ms.warnings_before(snap) == [
        "another process is busy: python (pid 1234) at 98% of a core",
        "load average 3.1 on 2 cores"]
    quiet = state(busy_processes=[], loadavg={"load1": 2 + ms.LOAD_EXCESS_WARN})
    assert ms.warnings_before(quiet) == []
    assert ms.warnings_before(state()) == []
    assert ms.warnings_before({}) == []


def ticks(**procs) -> dict:
    return {str(pid): [t, 1, name] for name, (pid, t) in procs.items()}


def test_assess_steal_and_busy_process_over_the_interval():
    before = state(monotonic=10.0, cpu_times=procfs.parse_cpu_times(STAT_BEFORE),
                   process_ticks=ticks(python=(1234, 100), idle=(5, 7)))
    after = state(monotonic=12.0, cpu_times=procfs.parse_cpu_times(STAT_AFTER),
                  process_ticks=ticks(python=(1234, 296), idle=(5, 8)), loadavg={"load1": 1.0})
    result = ms.assess(before, after)
    assert result["disturbed"] is True
    # iowait is 10%, exactly its threshold: not a reason
    assert result["reasons"] == ["another process is busy: python (pid 1234) at 98% of a core",
                                 "CPU steal 25% during the run"]
    assert result["iowait_pct"] == ms.IOWAIT_WARN_PCT
    assert result["busiest"] == {"pid": 1234, "name": "python", "cpu_pct": 98.0}
    assert result["interval_s"] == 2.0 and result["steal_pct"] == 25.0
    json.dumps(result)


def test_assess_quiet_interval():
    times = procfs.parse_cpu_times(STAT_BEFORE)
    quiet = dict(times, user=times["user"] + 1000, idle=times["idle"] + 1000,
                 steal=times["steal"] + 10)  # 10 of 2010: 0.5%
    before = state(monotonic=0.0, cpu_times=times, process_ticks=ticks(a=(9, 0)))
    after = state(monotonic=1.0, cpu_times=quiet, process_ticks=ticks(a=(9, 20)),
                  loadavg={"load1": 1.9})
    result = ms.assess(before, after)
    assert result == {**result, "disturbed": False, "reasons": [], "steal_pct": 0.5}


def test_steal_threshold():
    times = procfs.parse_cpu_times(STAT_BEFORE)

    def steal(jiffies: int) -> list[str]:
        later = dict(times, idle=times["idle"] + 1000 - jiffies, steal=times["steal"] + jiffies)
        return ms.warnings_during(state(cpu_times=times), state(monotonic=1.0, cpu_times=later))

    assert steal(50) == []  # exactly STEAL_WARN_PCT
    assert steal(120) == ["CPU steal 12% during the run"]


def test_frequency_change_is_a_warning():
    before, after = state(no_turbo=0), state(monotonic=1.0, no_turbo=1)
    assert ms.warnings_during(before, after) == [
        "frequency scaling changed during the run: no_turbo 0 -> 1"]


def test_assess_without_data_is_not_disturbed():
    result = ms.assess({}, {})
    assert result["disturbed"] is False
    assert result["steal_pct"] is None and result["busiest"] is None


# --- files and degradation ---------------------------------------------------------------


def fake_proc(root: Path) -> Path:
    (root / "1234").mkdir(parents=True)
    (root / "1234" / "stat").write_text(pid_stat(1234, "busy", 10, 0, 50))
    (root / "999").mkdir()  # a process that exited: no stat file
    (root / "stat").write_text(STAT_BEFORE)
    (root / "loadavg").write_text("0.50 0.40 0.30 1/90 1234\n")
    return root


def test_snapshot_from_fake_proc(tmp_path):
    snap = ms.snapshot(sample_s=0, static=False, proc=fake_proc(tmp_path / "proc"),
                       sys_cpu=tmp_path / "none")
    assert snap["loadavg"]["load1"] == 0.5
    assert snap["cpu_times"]["steal"] == 400
    assert snap["process_ticks"] == {"1234": [10, 50, "busy"]}
    assert snap["busy_processes"] is None  # no sampling asked for
    assert snap["governors"] is None and "static" not in snap
    json.dumps(snap)


def test_snapshot_with_nothing_readable(tmp_path):
    snap = ms.snapshot(sample_s=0.01, proc=tmp_path / "missing", sys_cpu=tmp_path / "missing")
    for key in ("loadavg", "cpu_times", "busy_processes", "process_ticks", "governors",
                "no_turbo", "boost"):
        assert snap[key] is None, key
    assert snap["static"]["physical_cores"] is None
    json.dumps(snap)
    assert ms.warnings_before(snap) == []
    assert ms.assess(snap, snap)["disturbed"] is False


def test_garbage_files_give_none(tmp_path):
    proc = tmp_path / "proc"
    (proc / "12").mkdir(parents=True)
    (proc / "12" / "stat").write_bytes(b"\xff\xfe not a stat")
    (proc / "stat").write_text("nonsense\n")
    (proc / "loadavg").write_text("x\n")
    snap = ms.snapshot(sample_s=0, static=False, proc=proc, sys_cpu=tmp_path)
    assert snap["loadavg"] is None and snap["cpu_times"] is None
    assert snap["process_ticks"] is None


def test_frequency_state_and_topology(tmp_path):
    for cpu, (package, core) in enumerate([(0, 0), (0, 1), (0, 0), (0, 1)]):  # 2 cores, HT
        topo = tmp_path / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "physical_package_id").write_text(f"{package}\n")
        (topo / "core_id").write_text(f"{core}\n")
        (tmp_path / f"cpu{cpu}" / "cpufreq").mkdir()
        (tmp_path / f"cpu{cpu}" / "cpufreq" / "scaling_governor").write_text(
            "powersave\n" if cpu else "performance\n")
    (tmp_path / "intel_pstate").mkdir()
    (tmp_path / "intel_pstate" / "no_turbo").write_text("1\n")
    assert procfs.frequency_state(tmp_path) == {"governors": ["performance", "powersave"],
                                            "no_turbo": 1, "boost": None}
    assert procfs.physical_cores(tmp_path) == 2


def test_cpu_identity_falls_back_without_py_cpuinfo(monkeypatch):
    procfs.cpu_identity.cache_clear()
    monkeypatch.setitem(sys.modules, "cpuinfo", None)  # import cpuinfo raises ImportError
    try:
        ident = procfs.cpu_identity()
        assert ident["source"] == "platform" and ident["flags"] is None
    finally:
        procfs.cpu_identity.cache_clear()


def test_compact_drops_process_ticks():
    assert ms.compact(state(process_ticks={"1": [1, 1, "x"]})).get("process_ticks", 0) == 0


@pytest.mark.skipif(not LINUX, reason="needs /proc")
def test_real_snapshot_is_json_and_excludes_this_process():
    import os

    snap = ms.snapshot(sample_s=0.05, static=False)
    assert snap["loadavg"] is not None and snap["cpu_times"] is not None
    assert str(os.getpid()) not in (snap["process_ticks"] or {})
    assert str(os.getppid()) not in (snap["process_ticks"] or {})
    json.dumps(snap)


@pytest.mark.skipif(not LINUX, reason="needs /proc")
def test_busy_process_is_reported_before_timing():
    busy = subprocess.Popen([sys.executable, "-c", "while 1: pass"])
    try:
        time.sleep(0.3)  # let the interpreter start and spin
        snap = ms.snapshot(sample_s=1.0, children=False, static=False)
        warnings = ms.warnings_before(snap)
        assert any(f"(pid {busy.pid})" in w for w in warnings), (warnings, snap["busy_processes"])
        later = ms.snapshot(sample_s=0, children=False, static=False)
        assert ms.assess(snap, later)["busiest"] is not None
    finally:
        busy.kill()
        busy.wait()
