"""Compose a run: plan the cases, run one worker process per framework, save case by case.

Each framework runs in its own process (``harness.worker``), so thread pools, JIT caches and
GPU memory never interfere. Every finished case is appended to the results file at once
(atomically), so Ctrl-C or a crashing worker leaves a valid file with every finished case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness import environment, results
from harness.climit import measure_c_limit
from harness.timing import Stats, TimingConfig, engine_overhead
from implementations import registry
from implementations.problem import BenchError, Problem

# Variants that also run on the CPU when the run is on a GPU: the references of "× limit"
# and "× numpy" columns.
CPU_REFERENCES = ("limit", "numpy")


@dataclass
class Plan:
    """What to run: problems × variants on a device, and how to time them."""

    command: str
    device: str
    problems: list[Problem]
    variants: list[registry.Variant]
    threads: int
    timing: TimingConfig = field(default_factory=TimingConfig)
    peaks: list[str] = field(default_factory=list)  # dtypes whose matmul peak is measured
    explicit_variants: bool = False
    notes: list[str] = field(default_factory=list)
    extra_config: dict = field(default_factory=dict)
    extra_cases: list[tuple[Problem, registry.Variant]] = field(default_factory=list)
    processes: int = 1  # worker processes per framework, pooled into each case
    skip: dict[int, tuple[str, ...]] = field(default_factory=dict)  # problem index -> variants

    def cases(self) -> list[tuple[Problem, registry.Variant, str]]:
        """(problem, variant, device) triples that can run; the rest become ``self.notes``
        (replaced on every call) or, for an explicit variant that can run nothing, an error."""
        out, notes = [], []
        for v in self.variants:
            runs = []
            for i, p in enumerate(self.problems):
                if v.name in self.skip.get(i, ()):
                    continue
                dev = self.device
                if dev not in v.devices and v.name in CPU_REFERENCES and "cpu" in v.devices:
                    dev = "cpu"
                reason = v.why_not(p, dev)
                if reason:
                    notes.append(reason)
                else:
                    runs.append((p, v, dev))
            if self.explicit_variants and not runs:
                raise BenchError(f"variant {v.name} cannot run any case asked for: "
                                 f"{notes[-1]}")
            out += runs
        self.notes = list(dict.fromkeys(notes))
        out += [(p, v, "cpu") for p, v in self.extra_cases if not v.why_not(p, "cpu")]
        problems = self.problems + [p for p, _ in self.extra_cases]
        order = {id(p): i for i, p in enumerate(problems)}
        return sorted(out, key=lambda c: order[id(c[0])])

    def config(self) -> dict:
        return {
            "device": self.device, "variants": [v.name for v in self.variants],
            "problems": [p.as_dict() for p in self.problems],
            "extra_cases": [{"problem": p.as_dict(), "variant": v.name}
                            for p, v in self.extra_cases],
            "threads": self.threads, "processes": self.processes,
            "timing": self.timing.as_dict(), "peaks": self.peaks,
            "python": sys.executable, **self.extra_config,
        }


def worker_env() -> dict:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_worker(framework: str, job: dict, on_message: Callable[[dict], None],
               log: Path) -> tuple[int, str]:
    """Run one worker to the end; returns (exit status, last line of its own stderr)."""
    with open(log, "w") as err:  # one worker's stderr only: a crash is blamed on its own line
        proc = subprocess.Popen([sys.executable, "-m", "harness.worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err, text=True, env=worker_env())
        try:
            proc.stdin.write(json.dumps(job))
            proc.stdin.close()
            for line in proc.stdout:
                try:
                    message = json.loads(line)
                except json.JSONDecodeError:
                    continue
                on_message(message)
            status = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    lines = [l for l in Path(log).read_text(errors="replace").splitlines() if l.strip()]
    return status, (lines[-1].strip() if lines else "")


def execute(plan: Plan, path: Path, on_case: Callable[[dict, int, int], None]) -> dict:
    """Run the plan, writing the results file after every case; returns the run dict.

    With ``plan.processes`` > 1 every framework's worker runs that many times, one round
    after another; the later rounds reuse the first round's K and their samples are pooled
    into the same case, so that its IQR also holds the noise between processes.
    """
    cases = plan.cases()
    if not cases:
        raise BenchError("nothing to run: " + ("; ".join(dict.fromkeys(plan.notes)) or
                                              "no variant matches"))
    run = results.new_run(plan.command, environment.machine_info(), environment.software_info(),
                          environment.commit_info(), plan.config())
    run["notes"] = list(dict.fromkeys(plan.notes))
    run["ceilings"]["engine_overhead"] = engine_overhead(plan.timing)
    run["ceilings"]["c_limit"] = measure_c_limit()
    results.write(run, path)
    progress = {"done": 0, "total": len(cases) * plan.processes}
    log = Path(tempfile.mkstemp(prefix="backprop-bench-", suffix=".log")[1])
    try:
        for round_ in range(plan.processes):
            for framework in registry.FRAMEWORKS:
                mine = [c for c in cases if c[1].framework == framework]
                if mine:
                    run_round(plan, run, path, framework, mine, round_, log,
                              lambda case: report_case(case, progress, on_case))
    except KeyboardInterrupt:
        run["interrupted"] = True
        raise
    finally:
        run["finished"] = results.now()
        results.write(run, path)
        log.unlink(missing_ok=True)
    return run


def report_case(case: dict, progress: dict, on_case) -> None:
    progress["done"] += 1
    on_case(case, progress["done"], progress["total"])


def run_round(plan: Plan, run: dict, path: Path, framework: str, mine: list, round_: int,
              log: Path, on_case: Callable[[dict], None]) -> None:
    """One worker process for one framework's cases; every case is saved as it arrives."""
    by_id = {c["id"]: c for c in run["cases"]}
    ids = [results.case_id(d, v.name, p.as_dict()) for p, v, d in mine]
    job = {"framework": framework, "device": plan.device, "threads": plan.threads,
           "timing": plan.timing.as_dict(),
           "peaks": peaks_for(plan, framework, mine) if round_ == 0 else [],
           "cases": [{"problem": p.as_dict(), "variant": v.name, "device": d,
                      "block_steps": fixed_k(by_id.get(i))} for (p, v, d), i in zip(mine, ids)]}
    got: list[dict] = []

    def on_message(msg: dict) -> None:
        kind = msg.pop("type", None)
        if kind == "case":
            got.append(msg)
            on_case(record(run, msg))
            results.write(run, path)
        elif kind == "framework" and round_ == 0:
            run["frameworks"][msg.pop("name")] = msg
        elif kind == "peak":
            run["ceilings"]["matmul_peak"].append(msg)

    status, last = run_worker(framework, job, on_message, log)
    for p, v, d in mine[len(got):]:  # cases the worker never reported
        on_case(record(run, lost_case(p, v, d, status, last)))
    results.write(run, path)


def fixed_k(case: dict | None) -> int | None:
    """The K an earlier process used for this case, so that samples can be pooled."""
    return case["timing"]["block_steps"] if case and case["status"] == "ok" else None


def record(run: dict, case: dict) -> dict:
    """Add a case to the run, or pool it into the case with the same id; returns that case."""
    old = next((c for c in run["cases"] if c["id"] == case["id"]), None)
    if old is None:
        run["cases"].append(case)
        return case
    old.setdefault("processes", [process_summary(old)]).append(process_summary(case))
    if old["status"] != "ok":
        return old
    if case["status"] != "ok":
        old.update(status=case["status"], reason=f"process {len(old['processes'])}: "
                   f"{case['reason']}")
        old["timing"]["per_step"]["discarded"] = True
        return old
    timing = old["timing"]
    timing["samples_s"] += case["timing"]["samples_s"]
    timing["total_steps"] += case["timing"]["total_steps"]
    timing["per_step"] = Stats(timing["samples_s"], timing["block_steps"]).as_dict()
    return old


def process_summary(case: dict) -> dict:
    """What one process contributed to a pooled case."""
    t = case.get("timing") or {}
    ps = t.get("per_step") or {}
    return {"status": case["status"], "first_call_s": t.get("first_call_s"),
            "compile_s": t.get("compile_s"), "median_s": ps.get("median_s"),
            "iqr_s": ps.get("iqr_s"), "blocks": ps.get("blocks")}


PEAK_N = {"cpu": 2048, "cuda": 8192}  # matmul sizes that run near peak on each device


def peaks_for(plan: Plan, framework: str, cases: list) -> list[dict]:
    """The matmul ceilings to measure in this framework's worker: one per dtype asked for,
    on every device its cases use (so a CPU reference in a GPU run gets its CPU peak)."""
    if not registry.FRAMEWORKS[framework].arrays:
        return []
    devices = dict.fromkeys(d for _, _, d in cases)
    return [{"device": d, "dtype": t, "n": PEAK_N[d]} for d in devices for t in plan.peaks]


def lost_case(problem: Problem, variant, device: str, status: int, last: str) -> dict:
    return {
        "id": results.case_id(device, variant.name, problem.as_dict()), "variant": variant.name,
        "framework": variant.framework, "kind": variant.kind, "device": device,
        "problem": problem.as_dict(), "n_weights": problem.spec.n_weights(),
        "flops_per_step": problem.flops_per_step(), "status": "failed",
        "reason": f"worker process exited with status {status} before this case: {last}"[:500],
        "timing": None, "check": None,
    }
