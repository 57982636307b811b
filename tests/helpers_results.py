"""Synthetic results files for the reporting tests, built through the typed results model.

Per-step times follow the cost model (overhead + FLOPs / throughput), and raw block samples
are lognormal around them, seeded, so that tests know the true answer.
"""

from __future__ import annotations

import numpy as np

from harness.measure.timing import Measurement, TimingConfig
from harness.record.results import (
    Case,
    Ceilings,
    Commit,
    Config,
    FrameworkRecord,
    Machine,
    Peak,
    ProblemRecord,
    Run,
    case_id,
)
from implementations import registry

CPU_MACHINE = Machine("cpu-box", "Intel(R) Xeon(R) Processor", 2, 2, 23.5, "Linux-test")
GPU_MACHINE = Machine("gpu-box", "AMD EPYC 9654", 16, 16, 128.0, "Linux-test",
                      {"name": "NVIDIA H200", "driver": "565.57", "cuda": "12.6"})
SOFTWARE = {"python": "3.11.7", "numpy": "2.4.6", "torch": "2.13.0", "jax": "0.10.2",
            "jaxlib": "0.10.2", "numba": "0.68.1"}

# (overhead s/step, throughput FLOP/s) per (variant, device), roughly as in ANCHORS.md
MODEL = {
    ("numpy", "cpu"): (19e-6, 120e9),
    ("torch", "cpu"): (220e-6, 130e9),
    ("jax", "cpu"): (15e-6, 110e9),
    ("jax-fori", "cpu"): (0.4e-6, 120e9),
    ("torch", "cuda"): (60e-6, 20e12),
    ("torch-cudagraph", "cuda"): (8e-6, 25e12),
    ("jax", "cuda"): (25e-6, 22e12),
}


def problem(widths, batch: int = 64, dtype: str = "float32",
            activation: str = "tanh") -> ProblemRecord:
    return ProblemRecord(tuple(widths), activation, "linear", False, dtype, batch, 0.1, 0)


def flops(prob: ProblemRecord) -> int:
    w = prob.widths
    return 6 * prob.batch * sum(a * b for a, b in zip(w, w[1:]))


def samples(per_step_s: float, rng: np.random.Generator, blocks: int = 30,
            block_steps: int = 100, sigma: float = 0.03) -> list[float]:
    """Raw block times (seconds per block of block_steps) lognormal around per_step_s."""
    return list(per_step_s * block_steps * rng.lognormal(0.0, sigma, blocks))


def timing(raw: list[float], block_steps: int, compile_s: float = 0.0) -> Measurement:
    """A measurement of the raw block times ``raw`` whose first call costs ``compile_s`` more
    than one step."""
    median = float(np.median(raw)) / block_steps
    return Measurement(compile_s + median, 1, block_steps, list(raw))


def peak(framework: str, device: str, n: int, gflops: float) -> Peak:
    """A float32 matmul peak of ``gflops``: one n×n matmul timed at 2 n³ / gflops."""
    return Peak(framework, device, "float32", n, [2.0 * n**3 / (gflops * 1e9)])


def one_time(per_step_s: float) -> Measurement:
    """A measurement of one block of one step: a process's median, say."""
    return Measurement(0.0, 1, 1, [per_step_s])


def ok_case(variant: str, device: str, prob: ProblemRecord, per_step_s: float,
            rng: np.random.Generator, compile_s: float = 0.0, **timing_kw) -> Case:
    """An ok case whose samples are lognormal around per_step_s."""
    block_steps = timing_kw.pop("block_steps", 100)
    raw = samples(per_step_s, rng, block_steps=block_steps, **timing_kw)
    case = head(variant, device, prob)
    case.status, case.timing = "ok", timing(raw, block_steps, compile_s)
    case.check, case.first_in_process = {"passed": True, "rows": []}, True
    return case


def bad_case(variant: str, device: str, prob: ProblemRecord, status: str, reason: str) -> Case:
    case = head(variant, device, prob)
    case.fail(status, reason)
    return case


def head(variant: str, device: str, prob: ProblemRecord) -> Case:
    v = registry.VARIANTS[variant]
    return Case(case_id(device, variant, prob), variant, v.framework, v.kind, device, prob,
                flops(prob) // (6 * prob.batch), flops(prob))


def new_run(command: str, device: str, machine: Machine, cases: list[Case],
            problems: list[ProblemRecord] | None = None, grid: dict | None = None) -> Run:
    config = Config(device, sorted({c.variant for c in cases}),
                    problems if problems is not None else list(dict.fromkeys(
                        c.problem for c in cases)), machine.usable_cores, TimingConfig(),
                    grid=grid)
    run = Run(command, machine, dict(SOFTWARE), Commit("0123456789abcdef", "main", False),
              config, frameworks=frameworks(device), ceilings=ceilings(device), cases=cases)
    run.finished = run.created
    return run


def frameworks(device: str) -> dict[str, FrameworkRecord]:
    cuda = device == "cuda"
    torch = FrameworkRecord({"torch_threads": 2, "tf32_matmul": False, "tf32_cudnn": False,
                             "cuda": "12.6" if cuda else None,
                             "inductor_cache": {"dir": "/tmp/x", "warm_at_start": cuda}})
    return {"torch-compiled": torch,
        "numpy": FrameworkRecord({"blas": [{"internal_api": "openblas", "version": "0.3.31",
                                            "num_threads": 2}]}),
        "torch": FrameworkRecord({"torch_threads": 2, "tf32_matmul": False, "tf32_cudnn": False,
                                  "cuda": "12.6" if cuda else None,
                                  "inductor_cache": {"dir": "/tmp/x", "warm_at_start": cuda}}),
        "jax": FrameworkRecord({"backend": "gpu" if cuda else "cpu",
                                "matmul_precision": "highest", "x64": False}),
    }


def ceilings(device: str) -> Ceilings:
    peaks = [peak("numpy", "cpu", 2048, 198.5), peak("torch", "cpu", 2048, 245.3),
             Peak("python", "cpu", "float32", 2048, error="AttributeError: no sync")]
    if device == "cuda":
        peaks += [peak("torch", "cuda", 8192, 51000.0), peak("jax", "cuda", 8192, 48000.0)]
    return Ceilings(peaks, {"per_block_s": 8.5e-8, "fraction_of_block": 4.25e-6},
                    {"ns_per_step": 5.7})


WORKED = problem((1, 1, 1), batch=1, dtype="float64", activation="linear")


def run_file(seed: int = 0) -> Run:
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
             bad_case("jax-fori", "cpu", wide, "failed", "check failed: W1 error 3e-2"),
             bad_case("torch-block", "cpu", wide, "unavailable", "torch: Inductor missing")]
    return new_run("run", "cpu", CPU_MACHINE, cases)


def gpu_run_file(seed: int = 2) -> Run:
    """A GPU `run` of the worked example: cuda cases and the cpu references."""
    rng = np.random.default_rng(seed)
    cases = [ok_case("numpy", "cpu", WORKED, 3.2e-6, rng),
             ok_case("limit", "cpu", WORKED, 5.9e-9, rng, compile_s=0.1),
             ok_case("torch", "cuda", WORKED, 90e-6, rng),
             ok_case("torch-cudagraph", "cuda", WORKED, 9e-6, rng, compile_s=1.5),
             ok_case("jax", "cuda", WORKED, 30e-6, rng, compile_s=0.2)]
    return new_run("run", "cuda", GPU_MACHINE, cases)


SWEEP_WIDTHS = (1, 16, 64, 256, 1024)


def sweep_file(seed: int = 1, widths=SWEEP_WIDTHS, noise: float = 0.0) -> Run:
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


def scale_times(case: Case, factor: float) -> None:
    """Multiply every block time of a case: its median, IQR and min scale with them."""
    case.timing.samples_s = [s * factor for s in case.timing.samples_s]


def set_median(case: Case, median: float) -> None:
    """Force a case's per-step median by scaling its samples (0 or a negative one plants a
    corrupt file: the samples are not checked until the file is read)."""
    scale_times(case, median / case.timing.median)
