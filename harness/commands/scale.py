"""`backprop-bench scale`: the data-parallel step on N = 1, 2, ... workers, and its model.

For each distributed variant and each [d, d, d] network, the plan times

* **strong scaling**: the global batch B fixed, each of N workers taking B/N rows;
* **weak scaling**: B rows per worker, N·B in all;
* **compute points**: one worker with batch B/N, the compute term of the model at N;

with the same engine, checks, worker processes and results file as `run` (command
"scale"; the grid says B, the workers and the modes). Then, per framework and N > 1, the
all-reduce alone over message sizes up to the gradient's (``harness.procs.allreduce``), stored as
``Ceilings.allreduce`` and fitted by ``harness.analysis.scaling``, which also makes the
predictions; the report's scaling section (``harness.report.scaling``) shows them.

The published figures the report uses to predict the step on hardware that is not here are
``harness.analysis.published.ON_PAPER``.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

from harness import PROG
from harness.analysis import scaling as scale_model
from harness.analysis.scaling import MODES, fit_allreduce, global_batch, gradient_bytes
from harness.commands import check_workers, plans
from harness.commands.base import Command, OutputClosed, require_device
from harness.commands.options import (
    LR_HELP,
    add_selection,
    add_timed,
    csv,
    ints,
    lr_of,
    positive,
    timed_of,
)
from harness.commands.run import claim, exit_status
from harness.measure.timing import TimingConfig
from harness.procs import allreduce, runner
from harness.record import store, summary
from harness.tables import fmt_ratio, fmt_time, text_table
from implementations.launch import OVERSUBSCRIBE
from implementations.problem import ACTIVATIONS, DTYPES, BenchError

DEFAULT_SIZES = (16, 256, 1024)
DEFAULT_WORKERS = (1, 2)
DEFAULT_BATCH = 64
ALLREDUCE_BUDGET = 12  # × --time-per-case: 3 s by default


@dataclass(frozen=True)
class Options:
    """What `scale` was asked for, besides the options it shares with `run`."""

    sizes: tuple[int, ...] = DEFAULT_SIZES
    workers: tuple[int, ...] = DEFAULT_WORKERS
    batch: int = DEFAULT_BATCH
    modes: tuple[str, ...] = ("strong", "weak")
    dtype: str = "float32"
    activation: str = "tanh"
    lr: float | None = None
    seed: int = 0
    oversubscribe: bool = False
    allreduce: bool = True

    def grid(self) -> dict:
        return {"sizes": list(self.sizes), "workers": list(self.workers), "batch": self.batch,
                "modes": list(self.modes), "dtype": self.dtype, "activation": self.activation}


def allow_oversubscribe(on: bool) -> None:
    """``--oversubscribe``: let more workers than cores share them (each case says so)."""
    if on:
        os.environ[OVERSUBSCRIBE] = "1"


def wanted(o: Options) -> tuple[set[tuple[int, int, int]], list[str]]:
    """The (d, global batch, workers) points to time, and notes on what was left out."""

    points, notes = set(), []
    for n in o.workers:
        for mode in o.modes:
            if mode == "strong" and o.batch % n:
                notes.append(f"strong scaling on {n} workers: global batch {o.batch} is not "
                             f"divisible by {n}; left out")
                continue
            points |= {(d, global_batch(mode, o.batch, n), n) for d in o.sizes}
            if mode == "strong" and n > 1:  # compute(B/N): the model's compute term
                points |= {(d, o.batch // n, 1) for d in o.sizes}
    return points, notes


def validate(o: Options) -> None:

    if not o.sizes or not o.workers or not o.modes:
        raise BenchError("scale needs at least one size, one worker count and one mode")
    if min(o.workers) < 1 or min(o.sizes) < 1 or o.batch < 1:
        raise BenchError("--workers, --sizes and --batch must be 1 or more")
    bad = [m for m in o.modes if m not in MODES]
    if bad:
        raise BenchError(f"unknown scaling {bad[0]!r}: choose from {', '.join(MODES)}")


def variants_of(names, frameworks) -> list:
    """The distributed variants asked for, or all of them."""

    return check_workers.variants_for(names, frameworks)


def make_plan(o: Options, t, threads: int):
    """The runner's plan: problems × (variants at each N), filtered to ``wanted``."""

    validate(o)
    points, notes = wanted(o)
    if not points:
        raise BenchError("nothing to time: " + "; ".join(notes))
    shapes = sorted({(d, b) for d, b, _ in points})
    problems = [plans.problem((d,) * 3, o.activation, "linear", False, o.dtype, b, o.lr,
                              o.seed) for d, b in shapes]
    for n in sorted({n for _, _, n in points}):  # the networks each worker count runs
        plans.check_workers_memory(n, [(p.spec, p.batch) for p in problems
                                       if (p.spec.widths[0], p.batch, n) in points])
    chosen = variants_of(t.variants, t.frameworks)
    at = [v.at(n) for v in chosen for n in sorted({n for _, _, n in points})]
    plan = runner.Plan("scale", t.device, problems, at, threads,
                       TimingConfig(budget_s=t.time_per_case), [], True, grid=o.grid(),
                       processes=t.processes, case_timeout_s=t.timeout,
                       include=lambda p, v: (p.spec.widths[0], p.batch, v.workers) in points)
    plan.notes = notes
    return plan


def measure_allreduce(run, plan, o: Options, threads: int, say) -> None:
    """Per framework and N > 1: the all-reduce alone, into ``run.ceilings.allreduce``;
    its timed blocks take ALLREDUCE_BUDGET × the time per case, all sizes together."""

    grads = [gradient_bytes(c.problem) for c in run.cases]
    if not grads:
        return
    sizes = allreduce.sizes_for(grads)
    for framework in dict.fromkeys(v.framework for v in plan.variants):
        for n in sorted(n for n in set(o.workers) if n > 1):
            say(f"all-reduce alone: {framework} on {n} workers, {len(sizes)} sizes")
            curve = allreduce.measure(framework, n, sizes, plan.device, threads,
                                      ALLREDUCE_BUDGET * plan.timing.budget_s)
            run.ceilings.allreduce.append(curve)
            fit = fit_allreduce(curve)
            say(f"  {curve.error}" if curve.error else
                f"  {curve.backend}: alpha {fmt_time(fit.alpha_s)}, beta "
                f"{fit.beta_Bps / 1e9:.3g} GB/s{' (poor fit)' if fit.poor else ''}"
                if fit else "  too few sizes to fit")


def command(o: Options, t) -> int:
    """`backprop-bench scale`: plan, time, check, then the all-reduce; 1 if a case failed."""

    allow_oversubscribe(o.oversubscribe)
    require_device(t.device)
    threads = t.thread_count()
    plan = make_plan(o, t, threads)
    plan.cases()  # a variant that can run nothing fails here, before any output
    path = claim("scale", t)
    print(f"{PROG} scale: writing {path}", flush=True)
    try:
        result = runner.execute(plan, path, lambda c, d, n: print(summary.case_line(c, d, n),
                                                                  flush=True))
        if o.allreduce:
            measure_allreduce(result, plan, o, threads, lambda s: print(s, flush=True))
            store.write(result, path)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted: the finished cases are saved in {path}",
              file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise OutputClosed(f"the finished cases are saved in {path}, marked interrupted") \
            from None
    finally:
        store.release(path)
    print("\n" + tables(result))
    for text in result.notes:
        print(f"note: {text}")
    print(f"\nresults: {path}; the report shows the model: {PROG} report {path}")
    return exit_status(result.cases, True)


def tables(run) -> str:
    """Per mode: time per step, speed-up and efficiency, measured and predicted."""

    out = []
    for mode in scale_model.MODES:
        rows = [[p.variant, p.network, p.workers, p.worker_batch, fmt_time(p.measured_s),
                 fmt_ratio(p.ratio("speedup")), pct(p.ratio("efficiency")),
                 fmt_time(p.predicted_s), pct(p.ratio("efficiency", True)),
                 "ok" if p.case.ok else p.case.status]
                for p in scale_model.points(run, mode)]
        if rows:
            out += [f"{mode} scaling:", text_table(
                ["variant", "network", "N", "batch/worker", "per step", "speed-up",
                 "efficiency", "predicted", "pred. efficiency", "status"], rows,
                "llrrrrrrrl"), ""]
    return "\n".join(out).rstrip()


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


# ---- the subcommand -------------------------------------------------------------------------

def scale_args(p: argparse.ArgumentParser) -> None:

    p.add_argument("--workers", type=ints, default=DEFAULT_WORKERS, metavar="N,N",
                   help="comma list of worker counts, one core (CPU) or one GPU each "
                        f"(default: {','.join(map(str, DEFAULT_WORKERS))})")
    p.add_argument("--sizes", type=ints, default=DEFAULT_SIZES, metavar="D,D",
                   help="comma list of d of the [d, d, d] networks (default: "
                        f"{','.join(map(str, DEFAULT_SIZES))})")
    p.add_argument("--batch", type=positive(int), default=DEFAULT_BATCH,
                   help="the global batch of strong scaling, and each worker's batch of weak "
                        f"scaling (default: {DEFAULT_BATCH})")
    p.add_argument("--scaling", type=csv, default=("strong", "weak"), metavar="MODE,MODE",
                   help="strong, weak or both (default: both)")
    p.add_argument("--dtype", default="float32", help="(default: float32)")
    p.add_argument("--activation", default="tanh", help="hidden activation (default: tanh)")
    p.add_argument("--lr", help=LR_HELP)
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument("--oversubscribe", action="store_true",
                   help="let more workers than cores share them (marked in the results)")
    p.add_argument("--no-allreduce", action="store_true",
                   help="skip timing the all-reduce alone (the model then has no "
                        "prediction)")
    add_selection(p, "every data-parallel variant")
    add_timed(p, "scale", 0.25, 1)


def scale_call(a) -> int:

    if a.activation not in ACTIVATIONS:
        raise BenchError(f"unknown activation {a.activation!r}: choose from "
                         f"{', '.join(ACTIVATIONS)}")
    if a.dtype not in DTYPES:
        raise BenchError(f"unknown dtype {a.dtype!r}: choose from {', '.join(DTYPES)}")
    options = Options(a.sizes, a.workers, a.batch, a.scaling, a.dtype, a.activation,
                            lr_of(a.lr), a.seed, a.oversubscribe, not a.no_allreduce)
    return command(options, timed_of(a))


COMMAND = Command(
    "scale", "time the data-parallel variants on N = 1, 2, ... workers (strong and "
    "weak scaling), with the all-reduce alone and its model; write one JSON file",
    "Time each data-parallel variant on [d, d, d] tanh float32 networks at each number "
    "of workers: strong scaling (the global batch fixed), weak scaling (each worker's "
    "batch fixed) and one worker on B/N rows (the model's compute term), checked as "
    "in run; then the all-reduce alone from 4 bytes to the gradient's size, fitted as "
    "alpha + bytes/beta, so that the report can set step(N) = compute(B/N) + "
    "allreduce(gradient) beside the measurement.",
    ("scale --workers 1,2", "scale --workers 1,2,4 --sizes 256,1024 --scaling strong "
     "--variants torch-ddp"), scale_args, scale_call)
