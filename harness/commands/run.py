"""`backprop-bench run`, and what the commands that time share (``sweep`` and ``scale`` use it):
they claim the results file, run the plan through ``harness.procs.runner`` and print as cases
finish; the exit status is 1 when a case failed or a variant asked for could not run.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from harness import PROG
from harness.commands import plans
from harness.commands.base import Command, OutputClosed, require_device
from harness.commands.options import (
    Timed,
    add_networks,
    add_selection,
    add_timed,
    networks_of,
    positive,
    timed_of,
)
from harness.measure import callgrind
from harness.measure.environment import machine_info
from harness.measure.instructions import CASE_TIMEOUT_S, STARTUP_S, CountConfig
from harness.measure.timing import TimingConfig
from harness.procs import runner
from harness.record import counts, store, summary
from harness.record import rows as records
from harness.record.results import Case
from implementations.problem import BenchError

COUNT_TARGET = CountConfig().target


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
    return max(exit_status(result.cases, explicit), count_status(result.cases))


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
    cfg = CountConfig(target=t.count_target) if t.count_target else CountConfig()
    if t.count_timeout:
        cfg = replace(cfg, timeout_s=t.count_timeout, startup_s=t.count_timeout)
    return cfg


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


def count_status(cases: list[Case]) -> int:
    """1 if instructions were to be counted and no case could be (one line on stderr says
    why): a run whose every requested measurement failed is no success; else 0."""
    to_count = [c.instructions for c in cases if c.instructions is not None]
    if not to_count or any(i.ok for i in to_count):
        return 0
    print(f"{PROG}: error: no case could be counted ({len(to_count)} tried): "
          f"{to_count[0].error}", file=sys.stderr)
    return 1


# ---- the subcommand -------------------------------------------------------------------------

def run_args(p: argparse.ArgumentParser) -> None:
    add_networks(p, "default: 1-1-1 linear float64 batch 1, and 16-16-16 and 256-256-256 tanh "
                 "float32 batch 64; a 1-1-1 network defaults to float64 and batch 1, any other "
                 "to float32 and batch 64")
    add_selection(p, "every variant that can run each network on the device")
    add_timed(p, "run", 0.25, 1)
    p.add_argument("--measure", choices=("time", "instructions"), default="time",
                   help="time (default), or instructions: also count each case's "
                        "instructions per SGD step under Valgrind (Callgrind, one thread), "
                        "after the times, in one process per framework and round")
    p.add_argument("--count-target", type=positive(float), default=COUNT_TARGET,
                   metavar="N", help="with --measure instructions: instructions that one "
                   f"counted block of K steps reaches at least (default {COUNT_TARGET:g}; "
                   "fewer is faster)")
    p.add_argument("--count-timeout", type=positive(float), metavar="SECONDS",
                   help="with --measure instructions: the longest wait on a counting worker, "
                        "for its start-up and for each case; a case past it is unavailable "
                        f"for counting, with the reason (default: {STARTUP_S:g} s to start, "
                        f"{CASE_TIMEOUT_S:g} s a case)")



COMMAND = Command(
    "run", "time the SGD update loop of every variant, check it, and write one JSON "
    "file of results",
    "Time and check every variant. The default is the worked example (1-1-1, float64) "
    "with every variant, and 16-16-16 and 256-256-256 tanh float32 batch 64 without "
    "the variants declared for the worked example only; --widths, --variants or "
    "--framework run exactly what they name.",
    ("run", "run --widths 1,1,1 512,512,512 --variants numpy,torch,jax,jax-fori",
     "run --measure instructions --widths 1,1,1 --variants numpy,torch,jax,jax-fori"),
    run_args, lambda a: run(networks_of(a), timed_of(a)))
