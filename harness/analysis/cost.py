"""A two-parameter cost model of one SGD step: time = overhead + FLOPs / throughput.

For each (variant, device) the cases that differ only in size (same dtype, activation, bias,
batch and depth: a ``GroupKey``) are fitted by weighted least squares on *relative* residuals
(weights 1/t, so that a 10 µs point counts as much as a 10 ms one), constrained to
overhead >= 0 and throughput > 0 (``scipy.optimize.nnls`` on the weighted system
t_i ~ a + b F_i, with b = 1 / throughput). At least ``MIN_SIZES`` distinct sizes are needed.

The fit gives the size where a variant stops being overhead-bound (its FLOP term equals its
fixed overhead: F = overhead * throughput) and, for a CPU and a GPU fit, the size where the
GPU's predicted time drops below the CPU's. Sizes are FLOPs per step, counted as in
``Problem.flops_per_step``: 6 * batch * weights, so a [d] * (depth + 1) network with batch B
does F = 6 B depth d^2 and d = sqrt(F / (6 B depth)).

Two things the numbers alone hide are kept with each fit:

- the d = 1 network of a [d] * (depth + 1) grid is left out of the fit when the group has at
  least ``MIN_SIZES`` other widths (``left_out``): XLA and numba compile a 1-wide network to a
  scalar program, not a matmul, so its time says nothing about the FLOP line;
- a fit whose rms relative residual is above ``POOR_FIT`` is ``poor``: a straight line in
  FLOPs does not describe those points, and what is read off it is a rough guide only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from harness.record.results import Case

MIN_SIZES = 3
MAX_FLOPS = 1e15  # beyond this (d ~ 10^6 at batch 64) a crossover is not a sane prediction
POOR_FIT = 0.25  # rms relative residual above which a fit is marked "poor fit"


@dataclass(frozen=True)
class GroupKey:
    """What the cases of one fit share: everything except the network's width."""

    variant: str
    device: str
    dtype: str
    activation: str
    batch: int
    depth: int
    bias: bool = False
    workers: int = 1  # data-parallel workers: each N is a group of its own

    def label(self) -> str:
        """e.g. 'float32 tanh b64 depth 2' (and ' ×2' on two workers)."""
        bias = "+b" if self.bias else ""
        many = f" ×{self.workers}" if self.workers > 1 else ""
        return f"{self.dtype} {self.activation}{bias} b{self.batch} depth {self.depth}{many}"


@dataclass(frozen=True)
class Fit:
    """time per step = overhead_s + flops / throughput_flops, fitted to ``n_points`` cases.

    ``residuals`` are relative, (predicted - measured) / measured, one per point in the order
    of ``flops`` and ``times_s``. ``left_out`` holds the widths of the measured networks that
    were not fitted (the d = 1 network; see the module docstring).
    """

    variant: str
    device: str
    group: GroupKey
    overhead_s: float
    throughput_flops: float
    n_points: int
    flops: tuple[float, ...]
    times_s: tuple[float, ...]
    residuals: tuple[float, ...]
    rms_rel_residual: float
    left_out: tuple[int, ...] = ()

    @property
    def poor(self) -> bool:
        """True if the rms relative residual is above ``POOR_FIT``."""
        return self.rms_rel_residual > POOR_FIT

    @property
    def flops_range(self) -> tuple[float, float]:
        """The smallest and largest FLOPs per step of the fitted points."""
        return min(self.flops), max(self.flops)

    @property
    def d_range(self) -> tuple[float, float]:
        """The widths of a [d] * (depth + 1) network at either end of ``flops_range``."""
        lo, hi = self.flops_range
        return (width_for_flops(lo, self.group.batch, self.group.depth),
                width_for_flops(hi, self.group.batch, self.group.depth))

    @property
    def crossover_flops(self) -> float:
        """FLOPs per step where the FLOP term equals the overhead (overhead * throughput)."""
        if self.overhead_s == 0:
            return 0.0
        return self.overhead_s * self.throughput_flops

    @property
    def crossover_d(self) -> float:
        """The width d of a [d] * (depth + 1) network at ``crossover_flops``."""
        return width_for_flops(self.crossover_flops, self.group.batch, self.group.depth)

    def predict(self, flops):
        """Predicted seconds per step at ``flops`` (a number or an array)."""
        return self.overhead_s + np.asarray(flops, dtype=float) / self.throughput_flops


@dataclass(frozen=True)
class Crossover:
    """The size where one fit's predicted time drops below another's."""

    flops: float
    d: float | None  # None when the two fits are for different batches or depths


def width_for_flops(flops: float, batch: int, depth: int) -> float:
    """d such that a [d] * (depth + 1) network with this batch does ``flops`` per step."""
    return math.sqrt(flops / (6 * batch * depth))


def fit_line(flops: Sequence[float], times_s: Sequence[float]) -> tuple[float, float]:
    """(a, b) >= 0 minimising sum(((a + b F_i - t_i) / t_i)^2)."""
    from scipy.optimize import nnls  # here, so that importing the CLI stays fast

    F = np.asarray(flops, dtype=float)
    t = np.asarray(times_s, dtype=float)
    A = np.column_stack([1.0 / t, F / t])
    scale = np.linalg.norm(A, axis=0)
    scale[scale == 0] = 1.0  # columns of wildly different size: solve in scaled units
    x, _ = nnls(A / scale, np.ones_like(t))
    a, b = x / scale
    return float(a), float(b)


def fit_points(key: GroupKey, flops: Sequence[float], times_s: Sequence[float]) -> Fit | None:
    """The fit of one group's points, or None with fewer than MIN_SIZES distinct sizes."""
    if len(set(flops)) < MIN_SIZES or min(times_s) <= 0:
        return None
    a, b = fit_line(flops, times_s)
    t = np.asarray(times_s, dtype=float)
    residuals = (a + b * np.asarray(flops, dtype=float) - t) / t
    return Fit(key.variant, key.device, key, a, math.inf if b == 0 else 1.0 / b, len(t),
               tuple(map(float, flops)), tuple(map(float, t)), tuple(map(float, residuals)),
               float(np.sqrt(np.mean(residuals**2))))


def group_key(case: Case) -> GroupKey:
    """The group a results case belongs to."""
    p = case.problem
    return GroupKey(case.variant, case.device, p.dtype, p.activation, p.batch, p.depth, p.bias,
                    case.workers)


def fit_cases(cases: Iterable[Case]) -> list[Fit]:
    """One fit per group of ok cases that has at least MIN_SIZES sizes.

    The d = 1 network is left out of a group that has at least MIN_SIZES other sizes.
    """
    groups: dict[GroupKey, list[tuple[float, float, int | None]]] = {}
    for c in cases:
        if c.ok and c.flops_per_step > 0:
            groups.setdefault(group_key(c), []).append(
                (float(c.flops_per_step), c.median, c.problem.square_width))
    fits = []
    for key, points in groups.items():
        points.sort(key=lambda p: p[:2])
        others = [p for p in points if p[2] != 1]
        left_out: tuple[int, ...] = ()
        if len(others) < len(points) and len({f for f, _, _ in others}) >= MIN_SIZES:
            points, left_out = others, (1,)
        fit = fit_points(key, [f for f, _, _ in points], [t for _, t, _ in points])
        if fit is not None:
            fits.append(dataclasses.replace(fit, left_out=left_out))
    return fits


def common_d(flops: float, fits: Sequence[Fit]) -> float | None:
    """The width for ``flops`` if every fit has the same batch and depth, else None."""
    shapes = {(f.group.batch, f.group.depth) for f in fits}
    if len(shapes) != 1:
        return None
    batch, depth = shapes.pop()
    return width_for_flops(flops, batch, depth)


def always_faster(fast: Sequence[Fit], slow: Sequence[Fit], lo: float = 1.0) -> bool:
    """True if the best of ``fast`` is already faster than the best of ``slow`` at ``lo``."""
    return _best(fast, lo) < _best(slow, lo)


def _best(fits: Sequence[Fit], flops: float) -> float:
    return min(float(f.predict(flops)) for f in fits)


def best_at(fits: Sequence[Fit], flops: float) -> Fit:
    """The fit that predicts the least time at ``flops`` (the first of equals)."""
    return min(fits, key=lambda f: float(f.predict(flops)))


def best_gpu_beats_best_cpu(cpu_fits: Sequence[Fit], gpu_fits: Sequence[Fit],
                            max_flops: float = MAX_FLOPS) -> Crossover | None:
    """Where the fastest GPU fit at each size first beats the fastest CPU fit at that size.

    Both sides are lower envelopes of lines, so the crossover is found on a log grid and then
    refined with brentq. None when the GPU is never faster below ``max_flops``, or is faster
    from the start (no overhead to pay back); ``always_faster`` tells the two apart.
    """
    from scipy.optimize import brentq  # scipy takes about a second to import

    if not cpu_fits or not gpu_fits or always_faster(gpu_fits, cpu_fits):
        return None
    grid = np.logspace(0, math.log10(max_flops), 1501)

    def gap(F):
        return _best(gpu_fits, F) - _best(cpu_fits, F)

    below = [i for i, F in enumerate(grid) if gap(F) < 0]
    if not below:
        return None
    i = below[0]
    flops = brentq(gap, grid[i - 1], grid[i], rtol=1e-10)
    return Crossover(flops, common_d(flops, [*cpu_fits, *gpu_fits]))


# ---- where a GPU starts beating a CPU, across the fits of several files -----------------------

def shape_of(fit: Fit) -> GroupKey:
    """The network shape of a fit: its group without variant and device."""
    return dataclasses.replace(fit.group, variant="", device="")


@dataclass(frozen=True)
class Pairing:
    """The CPU fits of one file against the GPU fits of another (or the same) file, for one
    network shape. ``cpu_file`` and ``gpu_file`` are the caller's keys for the files."""

    cpu_file: object
    gpu_file: object
    shape: GroupKey
    cpu: tuple[Fit, ...]
    gpu: tuple[Fit, ...]


def pairings(per_file: Sequence[tuple[object, Sequence[Fit]]]) -> list[Pairing]:
    """Every (CPU side, GPU side) worth comparing: a file's own CPU and GPU fits, and across
    files only where one of the two cannot make a pair on its own (so two files from one GPU
    machine, each with a CPU side, are not mixed)."""
    shapes = list(dict.fromkeys(shape_of(f) for _, fits in per_file for f in fits))
    out = []
    for shape in shapes:
        sides = [(key, tuple(f for f in fits if shape_of(f) == shape and f.device != "cuda"),
                  tuple(f for f in fits if shape_of(f) == shape and f.device == "cuda"))
                 for key, fits in per_file]
        for ckey, cpu, gpu_of_c in sides:
            for gkey, cpu_of_g, gpu in sides:
                if cpu and gpu and (ckey is gkey or not (gpu_of_c and cpu_of_g)):
                    out.append(Pairing(ckey, gkey, shape, cpu, gpu))
    return out


def comparisons(cpu: Sequence[Fit], gpu: Sequence[Fit], framework_of) -> list[
        tuple[str | None, str | None, list[Fit], list[Fit]]]:
    """(variant, framework, CPU fits, GPU fits) to compare, each once: every variant fitted on
    both sides, every framework with several fits on a side, and the best of all (both None).
    ``framework_of`` maps a variant name to its framework (None if unknown)."""
    both = [v for v in dict.fromkeys(f.variant for f in cpu) if v in {f.variant for f in gpu}]
    out = [(v, None, [f for f in cpu if f.variant == v], [f for f in gpu if f.variant == v])
           for v in both]
    for fw in sorted({framework_of(f.variant) for f in gpu} - {None}):
        c = [f for f in cpu if framework_of(f.variant) == fw]
        g = [f for f in gpu if framework_of(f.variant) == fw]
        if c and g and (len(c) > 1 or len(g) > 1):
            out.append((None, fw, c, g))
    out.append((None, None, list(cpu), list(gpu)))
    unique, seen = [], set()
    for item in out:
        key = (frozenset(map(id, item[2])), frozenset(map(id, item[3])))
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


@dataclass(frozen=True)
class Verdict:
    """Where the best GPU fit first beats the best CPU fit, and who is fastest there.

    ``outcome``: "crosses" (at ``cross``), "always" (the GPU is faster at every size: the
    fastest are named at the smallest width both sides measured) or "never" (below
    MAX_FLOPS: named at the largest). ``d_lo``/``d_hi``: the widths both sides measured.
    """

    outcome: str
    cross: Crossover | None
    cpu_best: Fit
    gpu_best: Fit
    at_d: float | None
    d_lo: float
    d_hi: float


def verdict(cpu: Sequence[Fit], gpu: Sequence[Fit]) -> Verdict:
    cross = best_gpu_beats_best_cpu(cpu, gpu)
    lo = max(min(f.flops_range[0] for f in cpu), min(f.flops_range[0] for f in gpu))
    hi = min(max(f.flops_range[1] for f in cpu), max(f.flops_range[1] for f in gpu))
    if cross is not None:
        outcome, at = "crosses", cross.flops
    else:
        outcome = "always" if always_faster(gpu, cpu) else "never"
        at = lo if outcome == "always" else hi
    c, g = best_at(cpu, at), best_at(gpu, at)
    d_lo, d_hi = max(c.d_range[0], g.d_range[0]), min(c.d_range[1], g.d_range[1])
    return Verdict(outcome, cross, c, g, None if cross else common_d(at, [*cpu, *gpu]),
                   d_lo, d_hi)
