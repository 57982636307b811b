"""One framework's cases, in a process of its own: ``python -m harness.worker``.

The parent (``harness.runner``) writes a JSON job to stdin and reads JSON lines back, one
per finished case, so that every finished case is saved even if a later one crashes the
process. Threads are pinned before the framework is imported. Anything the frameworks print
goes to stderr; the protocol has stdout to itself.

Each case is timed, then verified, and only a verified case keeps status "ok":

0. for ``numpy``, whose float64 trajectory is the reference of all the others, its loss and
   gradients are checked against the independent forward pass and finite differences;
1. the timed Trainer's parameters must be finite (else: diverged);
2. it runs V more steps (V = K, capped at ``MAX_VERIFY_STEPS`` and so that the float64
   reference costs at most ``REFERENCE_BUDGET_S``), compared with the float64 reference
   trajectory from where it stood: the timed code path, in its final state, computes the
   right update;
3. a fresh Trainer runs N steps from the shared starting point against the reference.
"""

from __future__ import annotations

import json
import math
import os
import sys
import traceback

REFERENCE_BUDGET_S = 0.15
MAX_VERIFY_STEPS = 1000  # float32 drifts from the float64 reference over very long runs
FRESH_STEPS = 100


def emit(stream, message: dict) -> None:
    stream.write(json.dumps(message, allow_nan=False) + "\n")
    stream.flush()


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
    import numpy as np

    from harness import check
    from implementations import registry
    from implementations.problem import flatten, map_params

    report = check.Report()
    if fresh and variant.name == "numpy":  # the reference trajectory is NumPy's: check it
        modules = {"numpy": registry.import_module("numpy")}
        check.check_gradients(problem, modules, device, report, fd_entries(problem))
    start = map_params(lambda a: np.asarray(a, dtype=np.float64), trainer.params())
    if not all(np.all(np.isfinite(t)) for t in flatten(start)):
        after = f" after {steps_done:,} steps" if steps_done else ""
        return False, f"diverged: non-finite parameters{after}", {}
    block = max(1, int(getattr(trainer, "block", 1)))
    v = reference_steps(problem, min(block_steps, MAX_VERIFY_STEPS), block)
    trainer.run(v)
    check.compare_to_reference(problem, f"{variant.name} (timed)", trainer.params(), start, v,
                               report)
    if fresh:
        n = reference_steps(problem, FRESH_STEPS, 1)
        check.check_trajectory(problem, variant, n, device, report)
    if report.passed:
        return True, None, report.as_dict()
    return False, "wrong result: " + report.failures()[0], report.as_dict()


def run_case(job_case: dict, device: str, cfg, seen: set) -> dict:
    """Time and verify one (problem, variant) pair; never raises.

    ``job_case["block_steps"]``, when given, fixes K (a later process of a pooled case).
    """
    from dataclasses import replace

    from harness.results import case_id
    from harness.timing import time_trainer
    from implementations import registry
    from implementations.problem import NetworkSpec, make_problem

    p = job_case["problem"]
    variant = registry.get(job_case["variant"])
    dev = job_case.get("device", device)
    spec = NetworkSpec(tuple(p["widths"]), p["activation"], p["output_activation"], p["bias"],
                       p["dtype"])
    problem = make_problem(spec, p["batch"], p["lr"], p["seed"])
    case = {
        "id": case_id(dev, variant.name, problem.as_dict()), "variant": variant.name,
        "framework": variant.framework, "kind": variant.kind, "device": dev,
        "problem": problem.as_dict(), "n_weights": spec.n_weights(),
        "flops_per_step": problem.flops_per_step(), "status": "failed", "reason": None,
        "first_in_process": variant.name not in seen, "timing": None, "check": None,
    }
    try:
        trainer = variant.make(problem, dev)
        seen.add(variant.name)
        m = time_trainer(trainer, replace(cfg, block_steps=job_case.get("block_steps")))
        case["timing"] = m.as_dict()
        passed, reason, report = verify(problem, variant, trainer, m.block_steps, dev,
                                        m.total_steps, fresh=not job_case.get("block_steps"))
        case.update(status="ok" if passed else "failed", reason=reason, check=report)
        if not passed:
            case["timing"]["per_step"]["discarded"] = True
    except registry.Unavailable as exc:
        case.update(status="unavailable", reason=str(exc))
    except Exception as exc:  # a crashing variant is a result, not the end of the run
        last = traceback.extract_tb(exc.__traceback__)[-1]
        case.update(status="failed", reason=f"crashed: {type(exc).__name__}: {exc} "
                    f"({os.path.basename(last.filename)}:{last.lineno})".replace("\n", " "))
    if case["status"] == "ok" and not math.isfinite(case["timing"]["per_step"]["median_s"]):
        case.update(status="failed", reason="no finite timing")
    return case


def warm_up(module, devices) -> None:
    """One tiny product per device before the first case, so that starting the backend (CUDA
    context, XLA client, thread pools) is not billed to whichever case happens to be first."""
    import numpy as np

    for device in devices:
        try:
            a = module.to_framework(np.ones((2, 2), dtype=np.float32), device)
            module.sync([(a @ a, None)])
        except Exception:  # the case itself will report what is wrong with the device
            pass


def main() -> int:
    job = json.loads(sys.stdin.read())
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints go to stderr
    sys.stdout = sys.stderr

    from harness.environment import pin_threads

    pinning = pin_threads(job["threads"])
    from harness.peak import measure_peak
    from harness.timing import TimingConfig
    from implementations import registry

    framework = registry.FRAMEWORKS[job["framework"]]
    try:
        module = registry.import_module(framework.name)
        settings = module.settings(job["threads"])
    except registry.Unavailable as exc:
        emit(out, {"type": "framework", "name": framework.name, "error": str(exc)})
        settings = None
    if settings is not None:
        emit(out, {"type": "framework", "name": framework.name, "settings": settings,
                   "pinning": pinning})
        for peak in job.get("peaks", []):
            emit(out, {"type": "peak", **measure_peak(framework.name, module, **peak)})
        if framework.arrays:
            warm_up(module, {c.get("device", job["device"]) for c in job["cases"]})
    cfg = TimingConfig(**job["timing"])
    seen: set = set()
    for job_case in job["cases"]:
        emit(out, {"type": "case", **run_case(job_case, job["device"], cfg, seen)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
