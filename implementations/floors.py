"""The call floor, measured one way for every framework: what one call that does (almost)
nothing costs, the overhead under every call of that kind (an eager op, a compiled graph).

A framework's ``call_floors()`` names its candidates and calls ``measure``; the worker sends
the result as ``CallFloor`` ceilings after its cases (``harness.procs.worker``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

SAMPLES = 7  # the floor is their median


def measure(candidates: tuple[tuple[str, Callable], ...], arg,
            calls: int) -> dict[str, tuple[float, int]]:
    """{name: (seconds per call, calls)}: each ``fn(arg)`` warmed up once (its trace or
    compile), then ``SAMPLES`` blocks of ``calls`` calls, their median per call. A candidate
    whose warm-up raises (a compiler that cannot build here) is left out; the others stay."""
    floors = {}
    for name, fn in candidates:
        try:
            fn(arg)
        except Exception:  # this floor is left out; each case shows its own cause
            continue
        samples = []
        for _ in range(SAMPLES):
            t0 = time.perf_counter()
            for _ in range(calls):
                fn(arg)
            samples.append((time.perf_counter() - t0) / calls)
        floors[name] = (sorted(samples)[SAMPLES // 2], calls)
    return floors
