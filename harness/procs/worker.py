"""One framework's cases, in a process of its own: ``python -m harness.procs.worker``.

The parent (``harness.procs.runner``) writes a ``messages.Job`` to stdin; the worker answers on its
own channel (``harness.procs.messages``), one message per event, so that every finished case is
saved even if a later one crashes or hangs the process. Threads are pinned before the
framework is imported. The worker dies with its parent (Linux: ``PR_SET_PDEATHSIG``).

Each case is timed, then verified, and only a verified case keeps status "ok":

0. for the reference variant (NumPy, the "× reference" column), its loss and gradients are
   checked against the independent forward pass, the finite differences and the exact
   float64 chain rule of ``harness.check`` (which every trajectory below is compared with);
1. the timed Trainer's parameters must be finite (else: diverged);
2. it runs V more steps (V = K, capped at ``MAX_VERIFY_STEPS`` and so that the float64
   reference costs at most ``REFERENCE_BUDGET_S``), compared with the float64 reference
   trajectory from where it stood: the timed code path, in its final state, computes the
   right update;
3. a fresh Trainer runs N steps from the shared starting point against the reference.

A counting job (``Job.count``: the worker runs under Valgrind, started by the runner's
counting rounds) counts each case's instructions per step instead
(``harness.measure.instructions``).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace

import numpy as np

from harness import check
from harness.check import workers
from harness.check.report import crash_reason
from harness.measure import memory
from harness.measure.callgrind import Counter
from harness.measure.environment import pin_threads
from harness.measure.instructions import CountConfig, Instructions, count_trainer
from harness.measure.peak import measure_peak
from harness.measure.timing import Probe, time_trainer
from harness.procs import child, messages
from harness.record import schema
from harness.record.results import CallFloor, Case, case_id
from implementations import registry
from implementations.contract import Unavailable
from implementations.problem import flatten, map_params

REFERENCE_BUDGET_S = 0.15
MAX_VERIFY_STEPS = 1000  # float32 drifts from the float64 reference over very long runs
FRESH_STEPS = 100


def reference_steps(problem, budget_steps: int, block: int) -> int:
    """Steps whose float64 NumPy reference costs about REFERENCE_BUDGET_S, a multiple of block."""
    est = 5e-6 + problem.flops_per_step() / 2e9  # NumPy float64 on a CPU core, conservatively
    v = min(budget_steps, max(1, int(REFERENCE_BUDGET_S / est)))
    return max(block, v - v % block)


def fd_entries(problem) -> int:
    """Finite-difference entries per tensor that cost about a second of float64 NumPy."""
    forward_flops = max(1, problem.flops_per_step() // 3)  # one forward pass of 6·B·W
    per_tensor = int(1e9 / (2 * forward_flops) / len(problem.spec.param_names()))
    return max(2, min(48, per_tensor))


def verify(problem, variant, trainer, block_steps: int, device: str,
           steps_done: int | None = None, fresh: bool = True) -> tuple[bool, str | None, dict]:
    """The checks of the module docstring; (passed, reason, check report dict).

    ``fresh=False`` skips checks 0 and 3 (a later process of a pooled case: the first process
    already made them, from the same start).
    """
    report = check.Report()
    if fresh and variant.role == "reference":  # everyone's reference trajectory: check it
        modules = {variant.framework: registry.import_module(variant.framework)}
        check.check_gradients(problem, modules, device, report, fd_entries(problem))
    start = map_params(lambda a: np.asarray(a, dtype=np.float64), trainer.params())
    if not all(np.all(np.isfinite(t)) for t in flatten(start)):
        after = f" after {steps_done:,} steps" if steps_done else ""
        return False, f"diverged: non-finite parameters{after}", {}
    block = max(1, int(getattr(trainer, "block", 1)))
    v = reference_steps(problem, min(block_steps, MAX_VERIFY_STEPS), block)
    trainer.run(v)
    label = getattr(variant, "label", variant.name)
    check.compare_to_reference(problem, f"{label} (timed)", trainer.params(), start, v, report)
    if getattr(variant, "distributed", False):  # every worker must hold the same parameters
        workers.check_ranks(problem, f"{label} (timed)", trainer, report)
    if fresh:
        n = reference_steps(problem, FRESH_STEPS, 1)
        check.check_trajectory(problem, variant, n, device, report)
    if report.passed:
        return True, None, report.as_dict()
    return False, "wrong result: " + report.failures()[0], report.as_dict()


def run_case(job_case: messages.JobCase, cfg, compiled_before: set) -> Case:
    """Time and verify one (problem, variant) pair; never raises.

    ``compiled_before`` holds the compiling variants this process has already run: the first
    of them pays the process's one-time compiler start-up, and says so (first_in_process).
    """
    variant = registry.get(job_case.variant).at(job_case.workers)
    problem = job_case.problem.problem()
    case = Case.new(problem, variant, job_case.device)
    fresh = not job_case.block_steps  # the first process of a case; later ones only time
    # a distributed variant's memory is in its worker processes, which this one cannot see
    measure = fresh and not variant.distributed
    try:
        trainer = variant.make(problem, job_case.device)
        case.distributed = getattr(trainer, "distributed", None)
        if variant.baseline:
            case.first_in_process = not compiled_before
            compiled_before.add(variant.name)
        probe = memory_probe(variant, job_case.device) if measure else Probe()
        m = time_trainer(trainer, replace(cfg, block_steps=job_case.block_steps), probe=probe)
        case.timing = m
        if measure:
            probe.warm_call(trainer)
            case.memory = probe.result(minimum(problem))
        passed, reason, report = verify(problem, variant, trainer, m.block_steps,
                                        job_case.device, m.total_steps, fresh=fresh)
        case.check = report
        if passed:
            case.status = "ok"
            if fresh and hasattr(trainer, "phases"):
                case.phases = time_phases(trainer.phases(), cfg)
        else:
            case.fail("failed", reason)
    except Unavailable as exc:
        case.fail("unavailable", str(exc))
    except Exception as exc:  # a crashing variant is a result, not the end of the run
        case.fail("failed", crash_reason(exc))
    return case


def count_case(job_case, cfg: CountConfig, counter) -> messages.CaseCounted:
    """Count and verify one (problem, variant) pair in a counting worker; never raises."""
    start = time.monotonic()
    variant = registry.get(job_case.variant).at(job_case.workers)
    problem = job_case.problem.problem()
    cid = case_id(job_case.device, variant.name, job_case.problem, variant.workers)
    try:
        if variant.distributed:
            raise Unavailable("its steps run in worker processes of their own, which the "
                              "counter does not follow")
        trainer = variant.make(problem, job_case.device)
        counted = count_trainer(trainer, cfg, counter, job_case.block_steps)
        passed, reason, _ = verify(problem, variant, trainer, counted.block_steps,
                                          job_case.device, fresh=False)
        if not passed:
            counted = Instructions.failed(f"under valgrind: {reason}")
    except Unavailable as exc:
        counted = Instructions.failed(f"unavailable under valgrind: {exc}")
    except Exception as exc:  # a variant that crashes under Valgrind is a finding, not the end
        counted = Instructions.failed(f"under valgrind: {crash_reason(exc)}")
    counted.wall_s = [time.monotonic() - start]
    return messages.CaseCounted(cid, counted)


class Phase:
    """One part of a step (forward, gradient or update) as the timing engine's unit."""

    def __init__(self, run):
        self.run = run


def time_phases(phases: dict, cfg) -> dict:
    """Each part of the step timed by the same engine, with a shorter budget: a Measurement each."""
    short = replace(cfg, target_block_s=min(cfg.target_block_s, 0.01),
                  budget_s=min(cfg.budget_s, 0.05), min_blocks=5, warmup_blocks=1,
                  block_steps=None)
    return {name: time_trainer(Phase(fn), short) for name, fn in phases.items()}


def memory_probe(variant, device: str):
    """The memory accounting of a case: its device's allocator, or resident memory."""
    return memory.StepMemory(memory.meter_for(registry.import_module(variant.framework),
                                              device))


def minimum(problem) -> dict:
    s = problem.spec
    return memory.minimum_breakdown(s.widths, s.bias, problem.batch, s.dtype)


def warm_up(module, devices) -> None:
    """One tiny product per device before the first case, so that starting the backend (CUDA
    context, XLA client, thread pools) is not billed to whichever case happens to be first."""
    for device in devices:
        try:
            a = module.to_framework(np.ones((2, 2), dtype=np.float32), device)
            module.sync([(a @ a, None)])
        except Exception:  # the case itself will report what is wrong with the device
            pass


def start_framework(job: messages.Job, channel):
    """Import and set up the framework; its module, or None after a FrameworkFailed."""
    try:
        module = registry.import_module(job.framework)
        settings = module.settings(job.threads)
    except Unavailable as exc:
        messages.send(channel, messages.FrameworkFailed(job.framework, str(exc)))
        return None
    except Exception as exc:
        messages.send(channel, messages.FrameworkFailed(job.framework, crash_reason(exc)))
        return None
    return module, settings


def main() -> int:
    channel = child.channel()  # dies with the runner; the lifeline guards what it starts
    if channel is None:
        print("harness.procs.worker: started by harness.procs.runner only", file=sys.stderr)
        return 2
    job = schema.from_dict(messages.Job, json.loads(sys.stdin.read()), "job")

    pinning = pin_threads(job.threads)
    started = start_framework(job, channel)
    if started is not None:
        module, settings = started
        messages.send(channel, messages.FrameworkReady(job.framework, settings, pinning))
        for peak in job.peaks:
            messages.send(channel, measure_peak(job.framework, module, peak.device, peak.dtype,
                                                peak.n))
        if registry.get_framework(job.framework).arrays:
            warm_up(module, {c.device for c in job.cases})
    compiled_before: set = set()
    counter = counter_for(job)
    for job_case in job.cases:
        messages.send(channel, messages.CaseStarted(
            case_id(job_case.device, job_case.variant, job_case.problem, job_case.workers)))
        if counter is not None:  # a counting job (harness.measure.instructions), under Valgrind

            messages.send(channel, count_case(job_case, job.count, counter))
        else:
            messages.send(channel, run_case(job_case, job.timing, compiled_before))
    if started is not None and job.floors:
        send_call_floors(job.framework, started[0], channel)
    return 0


def send_call_floors(framework: str, module, channel) -> None:
    """The framework's call floors, measured after its cases: a compiler that fails (or
    crashes) here costs only the floor, and each case has shown its own cause."""
    if not hasattr(module, "call_floors"):
        return
    try:
        floors = module.call_floors()
    except Exception as exc:
        print(f"harness.procs.worker: the call floors of {framework} are left out: "
              f"{crash_reason(exc)}", file=sys.stderr)
        return
    for name, (per_call, calls) in floors.items():
        messages.send(channel, CallFloor(framework, name, per_call, calls))


def counter_for(job: messages.Job):
    """Callgrind's counter for a counting job (its cases count instructions), else None."""
    if job.count is None:
        return None
    return Counter()


if __name__ == "__main__":
    sys.exit(main())
