"""The machine's ceilings, part of the results model: what the hardware allows, measured in
the same run as the cases (matmul peaks, the serial limit loops, the floor of a call, the
all-reduce of the data-parallel step)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Peak:
    """A measured matmul ceiling: the seconds of each n×n matmul, stored as measured, from
    which its median and GFLOP/s are derived (or why it could not be measured)."""

    framework: str
    device: str
    dtype: str
    n: int
    samples_s: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def median_s(self) -> float | None:
        return float(np.median(self.samples_s)) if self.samples_s else None

    @property
    def gflops(self) -> float | None:
        """2 n³ floating-point operations over the median matmul, in GFLOP/s."""
        median = self.median_s
        return 2.0 * self.n**3 / median / 1e9 if median else None


@dataclass
class AllreduceCurve:
    """The all-reduce alone among ``workers`` workers: seconds per call by message size.

    ``backend`` says what carried it ("gloo", "nccl", "xla-cpu in-process", ...); the
    medians and minima are per call, over blocks of ``calls`` back-to-back calls.
    """

    framework: str
    backend: str
    device: str
    workers: int
    bytes: list[int] = field(default_factory=list)
    median_s: list[float] = field(default_factory=list)
    min_s: list[float] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)
    error: str | None = None


@dataclass
class CallFloor:
    """The cost of one call that does (almost) nothing: the overhead floor under every call
    of that kind (an empty compiled graph, one eager op), per call."""

    framework: str
    name: str
    per_call_s: float
    calls: int


@dataclass
class Ceilings:
    """The machine's ceilings measured in the same run."""

    matmul_peak: list[Peak] = field(default_factory=list)
    engine_overhead: dict | None = None
    c_limit: dict | None = None
    allreduce: list[AllreduceCurve] = field(default_factory=list)  # `scale` runs only
    call_floors: list[CallFloor] = field(default_factory=list)

    def peak(self, device: str, dtype: str, framework: str | None = None) -> Peak | None:
        """The best measured peak on a device and dtype (of one framework, if named)."""
        found = [p for p in self.matmul_peak if p.gflops and p.device == device
                 and p.dtype == dtype and framework in (None, p.framework)]
        return max(found, key=lambda p: p.gflops) if found else None

    @property
    def c_limit_s(self) -> float | None:
        ns = (self.c_limit or {}).get("ns_per_step")
        return ns * 1e-9 if isinstance(ns, (int, float)) and ns > 0 else None
