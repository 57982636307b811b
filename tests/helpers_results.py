"""Synthetic results files for the reporting tests: same schema as harness.results, no timing.

Per-step times follow the cost model (overhead + FLOPs / throughput), and raw block samples
are lognormal around them, seeded, so that tests know the true answer.
"""

from __future__ import annotations

import numpy as np

from harness import results
from harness.timing import Stats
from implementations import registry

CPU_MACHINE = {"hostname": "cpu-box", "cpu": "Intel(R) Xeon(R) Processor", "cores": 2,
               "usable_cores": 2, "memory_gb": 23.5, "os": "Linux-test", "gpu": None}
GPU_MACHINE = {"hostname": "gpu-box", "cpu": "AMD EPYC 9654", "cores": 16, "usable_cores": 16,
               "memory_gb": 128.0, "os": "Linux-test",
               "gpu": {"name": "NVIDIA H200", "driver": "565.57", "cuda": "12.6"}}
SOFTWARE = {"python": "3.11.7", "numpy": "2.4.6", "torch": "2.13.0", "jax": "0.10.2",
            "jaxlib": "0.10.2", "numba": "0.68.1"}
TIMING = {"target_block_s": 0.02, "min_blocks": 7, "max_blocks": 200, "budget_s": 1.0,
          "warmup_blocks": 2, "max_block_steps": 1 << 26}

# (overhead s/step, throughput FLOP/s) per (variant, device), roughly as in ANCHORS.md
MODEL = {
    ("numpy", "cpu"): (19e-6, 120e9),
    ("torch", "cpu"): (220e-6, 130e9),
    ("jax", "cpu"): (15e-6, 110e9),
    ("jax-scan", "cpu"): (0.4e-6, 120e9),
    ("torch", "cuda"): (60e-6, 20e12),
    ("torch-cudagraph", "cuda"): (8e-6, 25e12),
    ("jax", "cuda"): (25e-6, 22e12),
}


def problem(widths, batch: int = 64, dtype: str = "float32", activation: str = "tanh") -> dict:
    return {"widths": list(widths), "activation": activation, "output_activation": "linear",
            "bias": False, "dtype": dtype, "batch": batch, "lr": 0.1, "seed": 0}


def flops(prob: dict) -> int:
    w = prob["widths"]
    return 6 * prob["batch"] * sum(a * b for a, b in zip(w, w[1:]))


def samples(per_step_s: float, rng: np.random.Generator, blocks: int = 30,
            block_steps: int = 100, sigma: float = 0.03) -> list[float]:
    """Raw block times (seconds per block of block_steps) lognormal around per_step_s."""
    return list(per_step_s * block_steps * rng.lognormal(0.0, sigma, blocks))


def ok_case(variant: str, device: str, prob: dict, per_step_s: float,
            rng: np.random.Generator, compile_s: float = 0.0, **timing_kw) -> dict:
    """An ok case whose samples are lognormal around per_step_s."""
    block_steps = timing_kw.pop("block_steps", 100)
    raw = samples(per_step_s, rng, block_steps=block_steps, **timing_kw)
    stats = Stats(raw, block_steps)
    timing = {"first_call_s": compile_s + stats.median, "first_call_steps": 1,
              "compile_s": compile_s, "block_steps": block_steps, "samples_s": raw,
              "per_step": stats.as_dict()}
    return {**_case_head(variant, device, prob), "status": "ok", "reason": None,
            "timing": timing, "check": {"passed": True, "rows": []}, "first_in_process": True}


def bad_case(variant: str, device: str, prob: dict, status: str, reason: str) -> dict:
    return {**_case_head(variant, device, prob), "status": status, "reason": reason}


def _case_head(variant: str, device: str, prob: dict) -> dict:
    v = registry.VARIANTS[variant]
    return {"id": results.case_id(device, variant, prob), "variant": variant,
            "framework": v.framework, "kind": v.kind, "device": device, "problem": prob,
            "n_weights": flops(prob) // (6 * prob["batch"]), "flops_per_step": flops(prob)}


def new_run(command: str, device: str, machine: dict, cases: list[dict],
            problems: list[dict] | None = None, grid: dict | None = None) -> dict:
    config = {"device": device, "variants": sorted({c["variant"] for c in cases}),
              "problems": problems if problems is not None else _problems_of(cases),
              "threads": machine["usable_cores"], "timing": TIMING}
    if grid:
        config["grid"] = grid
    run = results.new_run(command, machine, SOFTWARE,
                          {"id": "0123456789abcdef", "branch": "main", "dirty": False}, config)
    run["frameworks"] = frameworks(device)
    run["ceilings"] = ceilings(device)
    run["cases"] = cases
    run["finished"] = run["created"]
    return run


def _problems_of(cases: list[dict]) -> list[dict]:
    seen = {}
    for c in cases:
        seen.setdefault(results.case_id("", "", c["problem"]), c["problem"])
    return list(seen.values())


def frameworks(device: str) -> dict:
    cuda = device == "cuda"
    return {
        "numpy": {"settings": {"blas": [{"internal_api": "openblas", "version": "0.3.31",
                                         "num_threads": 2}]}},
        "torch": {"settings": {"torch_threads": 2, "tf32_matmul": False, "tf32_cudnn": False,
                               "cuda": "12.6" if cuda else None,
                               "inductor_cache": {"dir": "/tmp/x", "warm_at_start": cuda}}},
        "jax": {"settings": {"backend": "gpu" if cuda else "cpu", "matmul_precision": "highest",
                             "x64": False}},
    }


def ceilings(device: str) -> dict:
    peaks = [{"framework": "numpy", "device": "cpu", "dtype": "float32", "n": 2048,
              "gflops": 198.5, "median_s": 0.0865, "samples_s": [0.0865]},
             {"framework": "torch", "device": "cpu", "dtype": "float32", "n": 2048,
              "gflops": 245.3, "median_s": 0.07, "samples_s": [0.07]},
             {"framework": "python", "device": "cpu", "dtype": "float32", "n": 2048,
              "error": "AttributeError: no sync"}]
    if device == "cuda":
        peaks += [{"framework": "torch", "device": "cuda", "dtype": "float32", "n": 8192,
                   "gflops": 51000.0, "median_s": 0.0216, "samples_s": [0.0216]},
                  {"framework": "jax", "device": "cuda", "dtype": "float32", "n": 8192,
                   "gflops": 48000.0, "median_s": 0.0229, "samples_s": [0.0229]}]
    return {"matmul_peak": peaks, "c_limit": {"ns_per_step": 5.7},
            "engine_overhead": {"per_block_s": 8.5e-8, "fraction_of_block": 4.25e-6}}


WORKED = problem((1, 1, 1), batch=1, dtype="float64", activation="linear")


def run_file(seed: int = 0) -> dict:
    """A CPU `run`: the worked example and one wider network, with a failure and a skip."""
    rng = np.random.default_rng(seed)
    wide = problem((16, 16, 16))
    cases = [ok_case("python", "cpu", WORKED, 116e-9, rng),
             ok_case("numpy", "cpu", WORKED, 3.15e-6, rng),
             ok_case("limit", "cpu", WORKED, 5.7e-9, rng, compile_s=0.2),
             ok_case("torch", "cpu", WORKED, 65e-6, rng),
             ok_case("torch-compile", "cpu", WORKED, 24e-6, rng, compile_s=2.4),
             ok_case("jax-eager", "cpu", WORKED, 2e-3, rng),
             ok_case("jax", "cpu", WORKED, 5.7e-6, rng, compile_s=0.05),
             ok_case("numpy", "cpu", wide, 22e-6, rng),
             ok_case("torch", "cpu", wide, 225e-6, rng),
             bad_case("jax-scan", "cpu", wide, "failed", "check failed: W1 error 3e-2"),
             bad_case("torch-block", "cpu", wide, "unavailable", "torch: Inductor missing")]
    return new_run("run", "cpu", CPU_MACHINE, cases)


def gpu_run_file(seed: int = 2) -> dict:
    """A GPU `run` of the worked example: cuda cases and the cpu references."""
    rng = np.random.default_rng(seed)
    cases = [ok_case("numpy", "cpu", WORKED, 3.2e-6, rng),
             ok_case("limit", "cpu", WORKED, 5.9e-9, rng, compile_s=0.1),
             ok_case("torch", "cuda", WORKED, 90e-6, rng),
             ok_case("torch-cudagraph", "cuda", WORKED, 9e-6, rng, compile_s=1.5),
             ok_case("jax", "cuda", WORKED, 30e-6, rng, compile_s=0.2)]
    return new_run("run", "cuda", GPU_MACHINE, cases)


SWEEP_WIDTHS = (1, 16, 64, 256, 1024)


def sweep_file(seed: int = 1, widths=SWEEP_WIDTHS, noise: float = 0.0) -> dict:
    """A GPU `sweep`: numpy on cpu, torch/jax on cpu and cuda, times from MODEL."""
    rng = np.random.default_rng(seed)
    cases = [ok_case("limit", "cpu", WORKED, 5.9e-9, rng, compile_s=0.1)]
    for (variant, device), (overhead, throughput) in MODEL.items():
        for d in widths:
            prob = problem((d, d, d))
            t = (overhead + flops(prob) / throughput) * rng.lognormal(0.0, noise)
            cases.append(ok_case(variant, device, prob, t, rng, compile_s=0.5, sigma=0.0))
    grid = {"widths": list(widths), "depths": [2], "batches": [64], "dtypes": ["float32"],
            "activation": "tanh"}
    return new_run("sweep", "cuda", GPU_MACHINE, cases, grid=grid)


def run_cli(argv: list[str], register) -> int:
    """harness.cli.main(argv), with ``register``'s subcommand added if cli lacks it yet."""
    import argparse

    from harness import cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if argv[0] not in sub.choices:
        register(sub)
    build = cli.build_parser
    cli.build_parser = lambda: parser
    try:
        return cli.main(argv)
    finally:
        cli.build_parser = build
