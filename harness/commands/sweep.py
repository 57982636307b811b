"""The scaling grid: widths × depths × batches × dtypes, for the chosen variants.

Each grid point is a ``[d] * (depth + 1)`` network (depth = weight layers, so depth 2 is the
``[d, d, d]`` MLP) with the grid's activation. The sweep also times the ``limit`` variant on
the worked example, so the run carries the machine's own ceilings with it.

``fit_budget`` estimates the cost of the whole plan up front and, when it is over
``--budget``, first shortens the time per case, then thins the widths; it says which.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, replace

from harness import PROG
from harness.commands import plans, progress
from harness.commands.base import Command, require_device
from harness.commands.options import (
    LR_HELP,
    Timed,
    add_selection,
    add_timed,
    csv,
    ints,
    lr_of,
    positive,
    timed_of,
)
from harness.commands.run import claim, execute, exit_status
from harness.measure.timing import TimingConfig
from harness.procs import runner
from implementations.contract import Variant
from implementations.problem import ACTIVATIONS, MAX_DEPTH, BenchError, Problem

SWEEP_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
TIME_PER_CASE_STEPS = (0.75, 0.5, 0.25)
# Rough costs for the estimate only (never reported): per-step overhead and throughput, and
# the fixed cost of a case (first call, calibration, warm-up, the two reference checks; XLA's
# GPU compile alone takes seconds) and of a worker process.
GUESS = {"cpu": (30e-6, 50e9), "cuda": (100e-6, 10e12)}
CASE_FIXED_S = {"cpu": 0.8, "cuda": 2.0}
PROCESS_START_S = {"cpu": 4.0, "cuda": 8.0}


@dataclass(frozen=True)
class Grid:
    widths: tuple[int, ...] = SWEEP_SIZES
    depths: tuple[int, ...] = (2,)
    batches: tuple[int, ...] = (64,)
    dtypes: tuple[str, ...] = ("float32",)
    activation: str = "tanh"

    def __post_init__(self) -> None:
        for name in ("widths", "depths", "batches", "dtypes"):
            if not getattr(self, name):
                raise BenchError(f"empty grid: no {name} to sweep")
        if any(d <= 0 for d in self.depths):
            raise BenchError(f"depths {self.depths}: every depth must be 1 or more")
        if max(self.depths) > MAX_DEPTH:
            raise BenchError(f"depth {max(self.depths)} is over the limit of {MAX_DEPTH} "
                             f"weight layers")

    def size(self) -> int:
        return len(self.widths) * len(self.depths) * len(self.batches) * len(self.dtypes)

    def problems(self, lr: float | None, seed: int) -> list[Problem]:
        """One problem per grid point, all checked against this machine's memory first."""
        return plans.problems([
            ((d,) * (depth + 1), self.activation, "linear", False, dtype, batch, lr, seed)
            for dtype in self.dtypes for batch in self.batches for depth in self.depths
            for d in self.widths
        ])

    def as_dict(self) -> dict:
        return {"widths": list(self.widths), "depths": list(self.depths),
                "batches": list(self.batches), "dtypes": list(self.dtypes),
                "activation": self.activation}


def estimate_case_s(problem: Problem, device: str, timing: TimingConfig) -> float:
    overhead, throughput = GUESS[device]
    step = overhead + problem.flops_per_step() / throughput
    timed = max(timing.budget_s, timing.min_blocks * max(step, timing.target_block_s))
    return CASE_FIXED_S[device] + timed + (timing.warmup_blocks + 3) * max(
        step, timing.target_block_s)


def estimate_s(cases: list[tuple[Problem, Variant, str]], timing: TimingConfig,
               processes: int = 1) -> float:
    workers = {(v.framework, d) for _, v, d in cases}
    return processes * (sum(PROCESS_START_S[d] for _, d in workers) + sum(
        estimate_case_s(p, d, timing) for p, _, d in cases))


def thin(widths: tuple[int, ...]) -> tuple[int, ...]:
    """Every other width, always keeping the smallest and the largest."""
    if len(widths) <= 2:
        return widths
    kept = widths[::2]
    return kept if kept[-1] == widths[-1] else kept + (widths[-1],)


def fit_budget(grid: Grid, timing: TimingConfig, budget_s: float | None, estimate) -> tuple[
        Grid, TimingConfig, str | None]:
    """Shrink the repetitions, then the grid, until ``estimate(grid, timing)`` fits the budget.

    Returns the new grid and timing, and a sentence saying what was cut (None if nothing).
    """
    if budget_s is None:
        return grid, timing, None
    if not math.isfinite(budget_s) or budget_s <= 0:
        raise BenchError(f"--budget {budget_s:g}: must be a positive number of seconds")
    before = estimate(grid, timing)
    if before <= budget_s:
        return grid, timing, None
    cuts, asked = [], timing.budget_s
    for per_case in TIME_PER_CASE_STEPS:
        if per_case < timing.budget_s:
            timing = replace(timing, budget_s=per_case, min_blocks=5, warmup_blocks=1)
            if estimate(grid, timing) <= budget_s:
                break
    if timing.budget_s != asked:
        cuts.append(f"time per case cut to {timing.budget_s:g} s (at least 5 blocks)")
    original = grid.widths
    while estimate(grid, timing) > budget_s and thin(grid.widths) != grid.widths:
        grid = replace(grid, widths=thin(grid.widths))
    if grid.widths != original:
        cuts.append(f"widths thinned to {','.join(map(str, grid.widths))}")
    after = estimate(grid, timing)
    verdict = "fits" if after <= budget_s else "still over: the smallest plan it can make"
    done = "; ".join(cuts) if cuts else "nothing left to cut"
    return grid, timing, (f"budget {budget_s:g} s < estimated {before:.0f} s: {done} "
                          f"(now estimated {after:.0f} s, {verdict})")


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
        return estimate_s(make_plan(g, timing).cases(), timing, t.processes)

    timing = TimingConfig(budget_s=t.time_per_case)
    grid, timing, message = fit_budget(grid, timing, budget, estimate)
    plan = make_plan(grid, timing)
    cases = plan.cases()
    runnable = {v.name for p, v, _ in cases if any(p is q for q in plan.problems)}
    for v in variants if explicit else []:
        if v.name not in runnable:
            raise BenchError(f"variant {v.name} cannot run any point of this grid on "
                             f"{t.device}")
    path = claim("sweep", t)
    print(f"{PROG} sweep: {len(cases)} cases, estimated "
          f"{estimate_s(cases, timing, t.processes):.0f} s; writing {path}", flush=True)
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


# ---- the subcommand -------------------------------------------------------------------------

def sweep_args(p: argparse.ArgumentParser) -> None:

    p.add_argument("--sizes", type=ints, help="comma list of d (default: "
                   f"{','.join(map(str, SWEEP_SIZES))})")
    p.add_argument("--widths", type=ints, help=argparse.SUPPRESS)  # old name of --sizes
    p.add_argument("--depths", type=ints, default=(2,), help="comma list of weight layers "
                   "(default: 2, the [d, d, d] network)")
    p.add_argument("--batches", type=ints, default=(64,), help="comma list (default: 64)")
    p.add_argument("--dtype", type=csv, default=("float32",), help="comma list (default: "
                   "float32)")
    p.add_argument("--activation", default="tanh", help="hidden activation (default: tanh)")
    p.add_argument("--lr", help=LR_HELP)
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument("--budget", type=positive(float), metavar="SECONDS", help="shrink the time "
                   "per case, then the sizes, up front until the estimate fits, and say which")
    add_selection(p, "the variants each framework declares for sweeps on the device; the "
                  "limit loop on the worked example is always added as the serial ceiling")
    add_timed(p, "sweep", 1.0, 1)


def sweep_call(a) -> int:

    sizes = a.sizes
    if a.widths is not None:
        print("note: sweep --widths is now --sizes (the widths d of [d, d, d]); --widths still "
              "works", file=sys.stderr)
        sizes = a.widths if sizes is None else sizes
    if a.activation not in ACTIVATIONS:
        raise BenchError(f"unknown activation {a.activation!r}: choose from "
                         f"{', '.join(ACTIVATIONS)}")
    grid = Grid(SWEEP_SIZES if sizes is None else sizes, a.depths, a.batches, a.dtype,
                a.activation)
    return sweep(grid, lr_of(a.lr), a.seed, a.budget, timed_of(a))


COMMAND = Command(
    "sweep", "time a grid of [d]*(depth+1) networks for the scaling story; write one "
    "JSON file of results",
    "Time a grid of square networks, sizes × depths × batches × dtypes, for the "
    "chosen variants, with the matmul peaks and the serial limit measured in the same "
    "run; --budget fits the plan to a number of seconds up front.",
    ("sweep --budget 120", "sweep --sizes 16,256,1024 --variants numpy,jax --dtype "
     "float32,float64"), sweep_args, sweep_call)
