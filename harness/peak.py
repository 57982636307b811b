"""The machine's matmul ceiling, measured per framework and device in the same run.

An n x n by n x n product is 2 n^3 FLOPs. It is timed with the framework's own matmul on
random data (never zeros), one sync per repetition, after a warm-up; the best of the
median-of-repetitions is the achieved peak.
"""

from __future__ import annotations

import time

import numpy as np


def measure_peak(framework: str, module, device: str, dtype: str, n: int,
                 repeats: int = 7) -> dict:
    """GFLOP/s of a framework module's matmul for one (device, dtype, n)."""
    rng = np.random.default_rng(1)
    result = {"framework": framework, "device": device, "dtype": dtype, "n": n}
    try:
        module.check_device(device)
        a = module.to_framework(rng.standard_normal((n, n)).astype(dtype), device)
        b = module.to_framework(rng.standard_normal((n, n)).astype(dtype), device)
        module.sync([(a @ b, None)])  # warm-up
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            module.sync([(a @ b, None)])
            samples.append(time.perf_counter() - t0)
    except Exception as exc:  # a ceiling we cannot measure is reported, not fatal
        return {**result, "error": f"{type(exc).__name__}: {exc}"}
    median = float(np.median(samples))
    return {**result, "samples_s": samples, "median_s": median,
            "gflops": 2.0 * n**3 / median / 1e9}
