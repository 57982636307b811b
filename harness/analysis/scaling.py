"""The data-parallel cost model: step(N) = compute(b) + allreduce(gradient bytes) - overlap.

``b`` is the batch one worker takes: B/N in strong scaling (the global batch B fixed), B in
weak scaling (B per worker, N·B in all). ``compute(b)`` is the same variant measured on one
worker with batch b, ``allreduce(S)`` the all-reduce alone among N workers, fitted as
t = alpha + S / beta per framework, backend, device and N (``fit_allreduce``, by the same
non-negative least squares on relative residuals as ``harness.analysis.cost``), and
``overlap`` is 0:
nothing here measures how much of the all-reduce hides under the backward pass (DDP's one
bucket for these two-layer networks starts only after the last gradient). Everything is
computed from stored results: nothing is re-measured.

On paper (``paper_step``), the all-reduce of S bytes among N GPUs is
alpha + 2(N-1)/N · S / busbw, busbw being NCCL's bus bandwidth (nccl-tests' definition), and
compute(b) comes from the single-device variant's GPU cost model, scaled by FLOPs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from harness.analysis import cost as model
from harness.record.results import AllreduceCurve, Case, ProblemRecord, Run

MODES = ("strong", "weak")
MIN_SIZES = 3


@dataclass(frozen=True)
class AllreduceFit:
    """t = alpha_s + bytes / beta_Bps for one curve; residuals relative, as in model.Fit."""

    framework: str
    backend: str
    device: str
    workers: int
    alpha_s: float
    beta_Bps: float
    rms_rel_residual: float
    n_points: int
    bytes_range: tuple[int, int]
    max_rel_residual: float = 0.0

    @property
    def poor(self) -> bool:
        """True when a straight line in bytes does not describe the points: rms relative
        residual above model.POOR_FIT, or some point missed by more than twice that (a flat
        stretch, then a knee, is what all-reduce curves on a CPU look like)."""
        return (self.rms_rel_residual > model.POOR_FIT
                or self.max_rel_residual > 2 * model.POOR_FIT)

    def predict(self, nbytes: float) -> float:
        return self.alpha_s + nbytes / self.beta_Bps


def fit_allreduce(curve: AllreduceCurve) -> AllreduceFit | None:
    """The fit of one measured curve, or None with fewer than MIN_SIZES sizes."""
    if curve.error or len(set(curve.bytes)) < MIN_SIZES or min(curve.median_s) <= 0:
        return None
    a, b = model.fit_line(curve.bytes, curve.median_s)
    t = np.asarray(curve.median_s, dtype=float)
    residuals = (a + b * np.asarray(curve.bytes, dtype=float) - t) / t
    return AllreduceFit(curve.framework, curve.backend, curve.device, curve.workers, a,
                        math.inf if b == 0 else 1.0 / b, float(np.sqrt(np.mean(residuals**2))),
                        len(t), (min(curve.bytes), max(curve.bytes)),
                        float(np.max(np.abs(residuals))))


def allreduce_fits(run: Run) -> list[AllreduceFit]:
    return [f for f in map(fit_allreduce, run.ceilings.allreduce) if f is not None]


def gradient_bytes(problem: ProblemRecord) -> int:
    """What one all-reduce of the gradient moves per worker: every weight and bias."""
    spec = problem.spec()
    return spec.n_weights() * (4 if spec.dtype == "float32" else 8)


def global_batch(mode: str, batch: int, workers: int) -> int:
    """Strong scaling keeps the global batch; weak scaling keeps each worker's."""
    return batch if mode == "strong" else batch * workers


def worker_batch(mode: str, batch: int, workers: int) -> int:
    """The rows each of the workers takes (strong: batch / workers, whole only)."""
    if mode == "weak":
        return batch
    if batch % workers:
        raise ValueError(f"global batch {batch} is not divisible by {workers} workers")
    return batch // workers


def predict_step(compute_s: float, allreduce_s: float, overlap_s: float = 0.0) -> float:
    """step(N) = compute(b) + allreduce(S) - overlap."""
    return compute_s + allreduce_s - overlap_s


def speedup(mode: str, workers: int, base_s: float, step_s: float) -> float:
    """Against one worker: time per step (strong) or samples per second (weak)."""
    return base_s / step_s if mode == "strong" else workers * base_s / step_s


def efficiency(mode: str, workers: int, base_s: float, step_s: float) -> float:
    return speedup(mode, workers, base_s, step_s) / workers


@dataclass(frozen=True)
class Point:
    """One row of a scaling table: a network on N workers, measured and predicted."""

    variant: str
    device: str
    network: str
    mode: str
    workers: int
    global_batch: int
    worker_batch: int
    case: Case | None
    base: Case | None  # one worker, the same global batch (strong) or per-worker batch (weak)
    compute: Case | None  # one worker, this point's per-worker batch
    fit: AllreduceFit | None
    grad_bytes: int

    @property
    def measured_s(self) -> float | None:
        return self.case.median if self.case else None

    @property
    def allreduce_s(self) -> float | None:
        if self.workers == 1:
            return 0.0
        return self.fit.predict(self.grad_bytes) if self.fit else None

    @property
    def predicted_s(self) -> float | None:
        c = self.compute.median if self.compute else None
        return None if c is None or self.allreduce_s is None else predict_step(c, self.allreduce_s)

    def ratio(self, which: str, predicted: bool = False) -> float | None:
        """speedup or efficiency against one worker, measured or predicted."""
        step = self.predicted_s if predicted else self.measured_s
        base = self.base.median if self.base else None
        if step is None or base is None:
            return None
        fn = speedup if which == "speedup" else efficiency
        return fn(self.mode, self.workers, base, step)


def points(run: Run, mode: str) -> list[Point]:
    """The scaling table of one mode, from a `scale` run (its grid says the batch)."""
    grid = run.config.grid or {}
    batch, fits = grid.get("batch"), allreduce_fits(run)
    if mode not in grid.get("modes", ()) or not batch:
        return []
    index = {(c.variant, c.device, c.problem.network(), c.problem.batch, c.workers): c
             for c in run.cases}
    out = []
    for c in sorted(run.cases, key=lambda c: (c.variant, c.device, c.problem.widths,
                                              c.workers)):
        if c.problem.batch != global_batch(mode, batch, c.workers):
            continue
        key = (c.variant, c.device, c.problem.network())
        b = worker_batch(mode, batch, c.workers)
        fit = next((f for f in fits if (f.framework, f.device, f.workers)
                    == (c.framework, c.device, c.workers)), None)
        out.append(Point(c.variant, c.device, c.problem.network(), mode, c.workers,
                         c.problem.batch, b, c, index.get((*key, batch, 1)),
                         index.get((*key, b, 1)), fit, gradient_bytes(c.problem)))
    return out


# ---- on paper: hardware that is not here ------------------------------------------------------

def paper_allreduce(nbytes: float, workers: int, bus_Bps: float, latency_s: float) -> float:
    """NCCL's ring all-reduce among N: latency + 2(N-1)/N · bytes / bus bandwidth."""
    return latency_s + 2 * (workers - 1) / workers * nbytes / bus_Bps


def fitted_compute(fit: model.Fit, problem: ProblemRecord, batch: int) -> float:
    """compute(batch) from a single-device cost model: overhead + FLOPs / throughput."""
    weights = sum(a * b for a, b in zip(problem.widths, problem.widths[1:]))
    return float(fit.predict(6 * batch * weights))


def paper_step(fit: model.Fit, problem: ProblemRecord, mode: str, batch: int, workers: int,
               bus_Bps: float, latency_s: float) -> tuple[float, float, float]:
    """(compute, all-reduce, step) seconds predicted for N GPUs of the fit's kind."""
    compute = fitted_compute(fit, problem, worker_batch(mode, batch, workers))
    comm = paper_allreduce(gradient_bytes(problem), workers, bus_Bps, latency_s)
    return compute, comm, predict_step(compute, comm)


def compute_fit(fits: Iterable[model.Fit], variant: str, device: str,
                problem: ProblemRecord, batch: int) -> model.Fit | None:
    """The cost model of ``variant`` on ``device`` for this network's shape: fitted at
    ``batch`` if there is one, else at any batch; of those, the one on the most points."""
    shape = [f for f in fits if f.variant == variant and f.device == device
             and f.group.workers == 1
             and (f.group.dtype, f.group.activation, f.group.depth, f.group.bias)
             == (problem.dtype, problem.activation, problem.depth, problem.bias)]
    same = [f for f in shape if f.group.batch == batch] or shape
    return max(same, key=lambda f: (f.n_points, -f.rms_rel_residual), default=None)
