"""The all-reduce alone, for the scaling model: one fresh process per framework and N.

``measure`` runs ``python -m harness.procs.allreduce`` (``harness.procs.child``), which pins
its threads as a worker does, imports the framework's module and calls its ``time_allreduce(workers,
sizes, device, budget_s)`` (``implementations.contract``): torch.distributed.all_reduce
among N ranks pinned as the Trainer's are (gloo on the CPU, NCCL on CUDA), or psum under
jit over a mesh of N devices (JAX). The message sizes run from 4 bytes to the largest
gradient, in powers of 4, plus every network's exact gradient size.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from harness.measure.environment import pin_threads
from harness.procs import child
from harness.record.results import AllreduceCurve
from implementations import registry
from implementations.contract import Unavailable

BUDGET_S = 3.0  # timed blocks per curve, all sizes together (scale passes its own)
TIMEOUT_S = 180.0


def sizes_for(gradient_bytes: Iterable[int]) -> list[int]:
    """4, 16, 64, ... bytes up to the largest gradient, and each gradient's own size."""
    grads = sorted(set(gradient_bytes))
    sizes, s = set(grads), 4
    while s < grads[-1]:
        sizes.add(s)
        s *= 4
    return sorted(sizes)


def measure(framework: str, workers: int, sizes: list[int], device: str, threads: int,
            budget_s: float = BUDGET_S, timeout_s: float = TIMEOUT_S) -> AllreduceCurve:
    """The curve, or a curve that says why there is none (``error``)."""
    job = {"framework": framework, "workers": workers, "sizes": sizes, "device": device,
           "threads": threads, "budget_s": budget_s}
    got = child.ask("harness.procs.allreduce", job, timeout_s)
    if "error" in got:
        return AllreduceCurve(framework, "?", device, workers, error=got["error"])
    return AllreduceCurve(framework, got["backend"], device, workers, got["bytes"],
                          got["median_s"], got["min_s"], got["calls"])


def time_job(job: dict) -> dict:
    """The child's side: the module's own ``time_allreduce``, or {"error": reason}."""

    pin_threads(job["threads"])

    try:
        module = registry.import_module(job["framework"])
        if not hasattr(module, "time_allreduce"):
            return {"error": f"{job['framework']} has no time_allreduce"}
        return module.time_allreduce(job["workers"], job["sizes"], job["device"],
                                     job["budget_s"])
    except Unavailable as exc:
        return {"error": str(exc)}
    except Exception as exc:  # a rank that failed: the reason goes into the results file
        return {"error": f"{type(exc).__name__}: {exc}"[:500]}


if __name__ == "__main__":
    sys.exit(child.serve(time_job))
