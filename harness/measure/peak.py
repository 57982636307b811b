"""The machine's matmul ceiling, measured per framework and device in the same run.

An n x n by n x n product is 2 n^3 FLOPs. It is timed with the framework's own matmul on
random data (never zeros), one sync per repetition, after a warm-up; the median of the
repetitions is the achieved peak. n comes from the framework's declaration
(``Framework.peak_n``), and a slow framework gets fewer repetitions: they stop once
``MAX_S`` has been spent, after at least ``MIN_REPEATS``.
"""

from __future__ import annotations

import time

import numpy as np

from harness.measure.ceilings import Peak

MAX_S = 3.0
MIN_REPEATS = 3


def measure_peak(framework: str, module, device: str, dtype: str, n: int,
                 repeats: int = 7) -> Peak:
    """GFLOP/s of a framework module's matmul for one (device, dtype, n)."""
    rng = np.random.default_rng(1)
    try:
        module.check_device(device)
        a = module.to_framework(rng.standard_normal((n, n)).astype(dtype), device)
        b = module.to_framework(rng.standard_normal((n, n)).astype(dtype), device)
        module.sync([(a @ b, None)])  # warm-up
        samples, start = [], time.perf_counter()
        while len(samples) < repeats and (len(samples) < MIN_REPEATS
                                          or time.perf_counter() - start < MAX_S):
            t0 = time.perf_counter()
            module.sync([(a @ b, None)])
            samples.append(time.perf_counter() - t0)
    except Exception as exc:  # a ceiling we cannot measure is reported, not fatal
        return Peak(framework, device, dtype, n, error=f"{type(exc).__name__}: {exc}"[:300])
    return Peak(framework, device, dtype, n, samples)
