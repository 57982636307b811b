"""A synthetic `scale` results file whose times follow the scaling model exactly.

compute(b) = OVERHEAD + b · d² · PER_ROW, the all-reduce ALPHA + bytes / BETA per
framework, step(N) = compute(b) + allreduce(gradient bytes): so the model's predictions
equal the "measurements", and a fit of the curves recovers ALPHA and BETA.
"""

from __future__ import annotations

import helpers_results as h
import numpy as np

from harness.analysis.scaling import gradient_bytes
from harness.record.results import AllreduceCurve, Case, case_id
from implementations import registry

OVERHEAD, PER_ROW = 100e-6, 1e-9
ALLREDUCE = {"torch-ddp": (1e-3, 1e9), "jax-sharded": (30e-6, 4e9)}  # alpha s, beta B/s
SIZES = (16, 256)
BATCH = 64


def compute(d: int, b: int) -> float:
    return OVERHEAD + b * d * d * PER_ROW


def step(variant: str, d: int, b: int, workers: int) -> float:
    alpha, beta = ALLREDUCE[variant]
    comm = 0.0 if workers == 1 else alpha + gradient_bytes(h.problem((d, d, d))) / beta
    return compute(d, b) + comm


def case(variant: str, d: int, batch: int, workers: int, rng) -> Case:
    c = h.ok_case(variant, "cpu", h.problem((d, d, d), batch=batch),
                  step(variant, d, batch // workers, workers), rng, sigma=0.0)
    c.workers, c.id = workers, case_id("cpu", variant, c.problem, workers)
    c.distributed = {"workers": workers, "oversubscribed": False}
    return c


def curve(variant: str, framework: str) -> AllreduceCurve:
    alpha, beta = ALLREDUCE[variant]
    sizes = [4 * 4 ** k for k in range(10)]
    return AllreduceCurve(framework, "gloo" if "ddp" in variant else "xla-cpu in-process",
                          "cpu", 2, sizes, [alpha + s / beta for s in sizes],
                          [alpha + s / beta for s in sizes], [8] * len(sizes))


def scale_file(seed: int = 3):
    """Strong (global batch 64) and weak (64 per worker) on 1 and 2 workers."""
    rng = np.random.default_rng(seed)
    cases = []
    for variant in ALLREDUCE:
        for d in SIZES:
            for batch, workers in ((32, 1), (64, 1), (64, 2), (128, 2)):
                cases.append(case(variant, d, batch, workers, rng))
    run = h.new_run("scale", "cpu", h.CPU_MACHINE, cases,
                    grid={"sizes": list(SIZES), "workers": [1, 2], "batch": BATCH,
                          "modes": ["strong", "weak"], "dtype": "float32",
                          "activation": "tanh"})
    run.ceilings.allreduce = [curve(v, registry.VARIANTS[v].framework) for v in ALLREDUCE]
    return run


def gpu_model_file(seed: int = 4):
    """A GPU `run` of torch and jax at three widths: the cost models on paper needs."""
    rng = np.random.default_rng(seed)
    cases = [h.ok_case(v, "cuda", h.problem((d, d, d)),
                       overhead + h.flops(h.problem((d, d, d))) / throughput, rng, sigma=0.0)
             for (v, device), (overhead, throughput) in h.MODEL.items() if device == "cuda"
             and v in ("torch", "jax") for d in (16, 256, 1024)]
    return h.new_run("run", "cuda", h.GPU_MACHINE, cases)
