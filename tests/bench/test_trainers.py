"""The same Trainers through pytest-benchmark: `make bench-pytest`.

The timing engine (harness.timing.prepare) measures the first call apart and calibrates K;
pytest-benchmark then times rounds of ``trainer.run(K)`` (one device sync each, owned by the
Trainer). Each round's time is stored divided by its K steps, with ``iterations`` = K, so the
tables, the JSON and ``pytest-benchmark compare`` are all per SGD step, comparable across
variants and runs. Every timed Trainer is verified against the float64 reference afterwards,
as in ``backprop-bench run``. Unlike the CLI, all frameworks share this one process.
"""

from __future__ import annotations

import pytest

from harness import worker
from harness.timing import TimingConfig, prepare
from implementations import registry
from implementations.problem import NetworkSpec, make_problem

NETWORKS = {
    "1-1-1 linear f64 b1": (NetworkSpec(), 1),
    "16-16-16 tanh f32 b64": (NetworkSpec((16, 16, 16), "tanh", dtype="float32"), 64),
    "256-256-256 tanh f32 b64": (NetworkSpec((256, 256, 256), "tanh", dtype="float32"), 64),
}
CFG = TimingConfig(target_block_s=0.02, warmup_blocks=2)


def per_step(benchmark, k: int) -> None:
    """Turn the rounds of run(K) into per-step times, as pytest-benchmark's iterations do."""
    meta = benchmark.stats
    meta.stats.data[:] = [t / k for t in meta.stats.data]
    meta.iterations = k


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("network", list(NETWORKS))
@pytest.mark.parametrize("variant", list(registry.VARIANTS))
def test_trainer_step(benchmark, variant, network, device):
    spec, batch = NETWORKS[network]
    problem = make_problem(spec, batch=batch)
    v = registry.get(variant)
    reason = v.why_not(problem, device)
    if reason:
        pytest.skip(reason)
    try:
        trainer = v.make(problem, device)
    except registry.Unavailable as exc:
        pytest.skip(str(exc))
    first, first_steps, k, _ = prepare(trainer, CFG)
    benchmark.group = f"{network} on {device}"
    benchmark.extra_info.update(variant=variant, device=device, kind=v.kind, block_steps=k,
                                first_call_s=first, first_call_steps=first_steps)
    benchmark.pedantic(trainer.run, args=(k,), rounds=15, iterations=1)
    per_step(benchmark, k)
    passed, why, _ = worker.verify(problem, v, trainer, k, device)
    assert passed, why
