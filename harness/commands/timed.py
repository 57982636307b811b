"""The commands that time: ``run`` and ``sweep`` (``scale`` is in ``harness.commands.scale``), from
typed options. They claim the results file, run the plan through ``harness.procs.runner`` and print
as cases finish; the exit status is 1 when a case failed or a variant asked for could not run.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from harness.commands import plans, progress
from harness.commands import sweep as sweeps
from harness.commands.base import PROG, OutputClosed, require_device
from harness.measure import callgrind
from harness.measure.environment import default_threads, machine_info
from harness.measure.instructions import CountConfig
from harness.measure.timing import TimingConfig
from harness.procs import runner
from harness.record import counts, store, summary
from harness.record import rows as records
from harness.record.results import Case
from implementations.problem import BenchError

# ---- run and sweep ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Timed:
    """The options `run` and `sweep` share."""

    device: str
    variants: tuple[str, ...] | None
    frameworks: tuple[str, ...] | None
    threads: int | None
    time_per_case: float
    processes: int
    no_peak: bool
    out: str | None
    force: bool
    timeout: float | None
    results_dir: str
    count: bool = False  # also count instructions per step under Valgrind (run --measure)
    count_target: float | None = None  # instructions per counted block (None: the default)

    def thread_count(self) -> int:
        usable = default_threads()
        if self.threads is not None and self.threads > usable:
            raise BenchError(f"--threads {self.threads}: only {usable} cores are usable here")
        return self.threads or usable


def claim(command: str, t: Timed) -> Path:

    if t.out is not None:
        return store.claim(Path(t.out), t.force)
    return store.claim_default(command, t.device, machine_info()["hostname"],
                               Path(t.results_dir))


def execute(plan, path: Path, on_case, on_count=None) -> object | None:
    """Run the plan into ``path``; the run, or None after Ctrl-C or SIGTERM (said on stderr)."""

    before = file_id(path)  # with --force, the old file is there until the first write

    def kept() -> str:
        return (f"the finished cases are saved in {path}" if file_id(path) not in (None, before)
                else "nothing was saved")

    try:
        return runner.execute(plan, path, on_case, on_count=on_count)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted: {kept()}", file=sys.stderr)
        return None
    except BrokenPipeError:
        raise OutputClosed(f"{kept()}, marked interrupted") from None
    finally:
        store.release(path)


def file_id(path: Path) -> tuple[int, int, int] | None:
    """What tells one file at ``path`` from another: every write replaces it (a new inode)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns


def run(networks: plans.Networks, t: Timed) -> int:

    count = count_config(t)  # a run that cannot count is refused before anything runs
    problems = plans.timing_problems(networks)
    require_device(t.device)
    variants, explicit = plans.variants(t.variants, t.frameworks, plans.run_variants())
    timing = TimingConfig(budget_s=t.time_per_case)
    plan = runner.Plan("run", t.device, problems, variants, t.thread_count(), timing,
                       [] if t.no_peak else plans.default_peaks(problems), explicit,
                       processes=t.processes, case_timeout_s=t.timeout,
                       skip={} if networks.widths or explicit else plans.default_skip(problems),
                       count=count)
    plan.cases()  # an explicit variant that can run nothing fails here, before any output
    path = claim("run", t)
    print(f"{PROG} run: writing {path}", flush=True)
    result = execute(plan, path, lambda c, d, n: print(summary.case_line(c, d, n), flush=True),
                     lambda c, d, n: print(counts.case_line(c, d, n), flush=True))
    if result is None:
        return 130
    print()
    print(records.run_table(result))
    if plan.count is not None:
        print(f"\n{counts.caption(result)}\n{counts.table(result)}")
    ladder = summary.ladder_table(result)
    if ladder:
        print(f"\nThe abstraction ladder (what each layer costs over the one it is built on):"
              f"\n{ladder}")
    memory = summary.memory_table(result)
    if memory:
        print(f"\nMemory (resident memory on the CPU, the allocator on a GPU):\n{memory}")
    for text in result.notes:
        print(f"note: skipped, {text}")
    print(f"\nresults: {path}")
    return exit_status(result.cases, explicit)


def count_config(t: Timed):
    """How to count instructions (``run --measure instructions``), or None; BenchError (one
    line, with how to install it) where Valgrind cannot count."""
    if not t.count:
        return None

    if t.device != "cpu":
        raise BenchError("--measure instructions counts on the CPU only (Valgrind cannot run "
                         "GPU code)")
    reason = callgrind.unavailable()
    if reason:
        raise BenchError(reason)
    callgrind.library()  # built here, once, rather than in each worker
    return CountConfig(target=t.count_target) if t.count_target else CountConfig()


def exit_status(cases: list[Case], asked: bool) -> int:
    """1 if a case failed, or if a variant asked for by name could not run at all here
    (one line on stderr says which and why); else 0."""
    by_variant: dict[str, list[Case]] = {}
    for c in cases:
        by_variant.setdefault(c.variant, []).append(c)
    missing = [cs[0] for cs in by_variant.values() if all(c.status == "unavailable" for c in cs)]
    if asked and missing:
        more = f" (and {len(missing) - 1} more variant(s))" if len(missing) > 1 else ""
        print(f"{PROG}: error: {missing[0].variant} could not run here: {missing[0].reason}"
              f"{more}", file=sys.stderr)
        return 1
    return 1 if any(c.status == "failed" for c in cases) else 0


def sweep(grid, lr: float | None, seed: int, budget: float | None, t: Timed) -> int:

    require_device(t.device)
    variants, explicit = plans.variants(t.variants, t.frameworks, plans.sweep_variants(t.device))
    threads = t.thread_count()

    def make_plan(g, timing):
        problems = g.problems(lr, seed)
        return runner.Plan("sweep", t.device, problems, variants, threads, timing,
                           [] if t.no_peak else plans.default_peaks(problems), False,
                           grid=g.as_dict(), processes=t.processes, case_timeout_s=t.timeout,
                           extra_cases=plans.ceiling_cases(lr))

    def estimate(g, timing):
        return sweeps.estimate_s(make_plan(g, timing).cases(), timing, t.processes)

    timing = TimingConfig(budget_s=t.time_per_case)
    grid, timing, message = sweeps.fit_budget(grid, timing, budget, estimate)
    plan = make_plan(grid, timing)
    cases = plan.cases()
    runnable = {v.name for p, v, _ in cases if any(p is q for q in plan.problems)}
    for v in variants if explicit else []:
        if v.name not in runnable:
            raise BenchError(f"variant {v.name} cannot run any point of this grid on "
                             f"{t.device}")
    path = claim("sweep", t)
    print(f"{PROG} sweep: {len(cases)} cases, estimated "
          f"{sweeps.estimate_s(cases, timing, t.processes):.0f} s; writing {path}", flush=True)
    if message:
        print(message, flush=True)
    bar = progress.Bar(len(cases))
    result = execute(plan, path, bar.update)
    bar.close()
    if result is None:
        return 130
    failed = [c for c in result.cases if c.status == "failed"]
    for c in failed:
        print(f"FAILED {c.id}: {c.reason}")
    print(f"results: {path}  ({len(result.cases) - len(failed)} ok or unavailable, "
          f"{len(failed)} failed); make a report with: {PROG} report {path}")
    return exit_status(result.cases, explicit)
