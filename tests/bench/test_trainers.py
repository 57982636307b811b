"""The same Trainers through pytest-benchmark: `make bench-pytest`.

Each test makes one variant's Trainer for one network and device. The timing engine
(``harness.measure.timing.prepare``) times the first call apart and calibrates K so that one
``trainer.run(K)`` takes at least 20 ms (or ``--benchmark-min-time``, if longer), then
``benchmark.pedantic`` times rounds of ``run(K)``, one device sync each, owned by the
Trainer. The rounds are timed by ``PerStepClock``, pytest-benchmark's own timer
(``--benchmark-timer``) divided by K, so every figure pytest-benchmark stores, prints and
compares (``--benchmark-compare``, ``--benchmark-compare-fail``) is seconds per SGD step,
comparable across variants and across runs whose K differ; ``iterations`` is 1 (one call of
``run(K)`` per round) and ``extra_info`` holds K (``block_steps``) and the first call.

pytest-benchmark's options, as its own ``benchmark()`` reads them for one call per round:
rounds = max(``--benchmark-min-rounds``, ``--benchmark-max-time`` / one block), and
``--benchmark-warmup`` adds up to ``--benchmark-warmup-iterations`` warm-up rounds on top of
the engine's own warm-up (the first call, the calibration and two blocks, always run: a
compiling variant needs them). ``--benchmark-disable-gc`` and ``--benchmark-cprofile`` work as
usual; ``--benchmark-precision`` and ``--benchmark-calibration-precision`` do not apply (K is
the engine's, the rounds fixed up front).

Counting instead of timing: under ``python -m harness.measure.callgrind -- python -m pytest
tests/bench --benchmark-only --benchmark-timer harness.measure.callgrind.counter``, each test
counts rounds of ``run(K)`` in instructions with the counter of ``backprop-bench run
--measure instructions`` (one thread, K from the counter, the warm-up uninstrumented), so
that the stored figures are instructions per SGD step and
``--benchmark-compare-fail=median:1%`` gates on them.

Every timed Trainer is verified against the float64 reference afterwards, as in
``backprop-bench run``; unlike the CLI, all frameworks share this one process, and so the
frameworks that need a process of their own (``Framework.isolated``: Keras, TensorFlow,
tinygrad, PaddlePaddle, whose imports set process-wide state, and PaddlePaddle imported after
TensorFlow ends the process with a segmentation fault) are left out, with that reason. Under
``--benchmark-disable`` each test runs ``run(block)`` once and verifies the Trainer: a smoke
test (``make test``) of the worked example that leaves out the variants that compile (a
registered baseline: compiling takes seconds each, and ``tests/test_implementations.py``
checks them).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import pytest
from pytest_benchmark.utils import load_timer

from harness.measure.timing import TimingConfig, prepare
from harness.procs import worker
from implementations import registry
from implementations.problem import NetworkSpec, make_problem

NETWORKS = {
    "1-1-1 linear f64 b1": (NetworkSpec(), 1),
    "16-16-16 tanh f32 b64": (NetworkSpec((16, 16, 16), "tanh", dtype="float32"), 64),
    "256-256-256 tanh f32 b64": (NetworkSpec((256, 256, 256), "tanh", dtype="float32"), 64),
}
SMOKE_NETWORK = "1-1-1 linear f64 b1"
MIN_BLOCK_S = 0.02  # the engine's block: long enough that the clock and the call are noise


class PerStepClock:
    """A pytest-benchmark timer that reads ``base() / steps``: a round of ``run(K)`` timed
    with it is stored as seconds per step."""

    def __init__(self) -> None:
        self.base: Callable[[], float] = time.perf_counter
        self.steps = 1
        self.__name__ = "perf_counter / K"  # how pytest-benchmark names a timer in its JSON

    def __call__(self) -> float:
        return self.base() / self.steps

    def count(self, base: Callable[[], float], steps: int) -> None:
        self.base, self.steps = base, steps
        self.__name__ = f"{getattr(base, '__name__', 'timer')} / K"


CLOCK = PerStepClock()
pytestmark = pytest.mark.benchmark(timer=CLOCK)


def rounds_of(config: pytest.Config, block_s: float) -> tuple[int, int]:
    """(rounds, warm-up rounds) from pytest-benchmark's options for rounds of one block."""
    max_time = float(config.getoption("benchmark_max_time"))  # its default is a string
    rounds = max(int(config.getoption("benchmark_min_rounds")),
                 math.ceil(max_time / max(block_s, 1e-9)))
    warmup = int(config.getoption("benchmark_warmup_iterations"))
    return rounds, min(rounds, warmup) if config.getoption("benchmark_warmup") else 0


def counted(benchmark, trainer) -> int:
    """Count rounds of run(K) in instructions (``harness.measure.instructions``): the warm-up runs
    uninstrumented, K comes from the counter, and every stored figure is instructions per
    SGD step (the counter's own few thousand per round included); returns K."""
    from harness.measure import callgrind, instructions

    cfg = instructions.CountConfig()
    try:
        k = instructions.prepare_count(trainer, cfg, callgrind.counter)
        CLOCK.count(callgrind.counter, k)
        benchmark.extra_info.update(block_steps=k, unit="instructions per SGD step",
                                    counter=f"{callgrind.TOOL} {callgrind.version()}, 1 thread",
                                    options=" ".join(callgrind.options()))
        benchmark.pedantic(trainer.run, args=(k,), rounds=cfg.blocks,
                           warmup_rounds=cfg.warmup_blocks, iterations=1)
    finally:
        callgrind.counter.stop()
    return k


def timed(benchmark, trainer, config: pytest.Config) -> int:
    """Time rounds of run(K), K from the engine; returns K. With pytest-benchmark's timer
    ``harness.measure.callgrind.counter`` (under ``python -m harness.measure.callgrind``),
    count them."""
    from harness.measure import callgrind

    if load_timer(config.getoption("benchmark_timer")).target is callgrind.counter:
        return counted(benchmark, trainer)
    min_time = float(config.getoption("benchmark_min_time"))
    cfg = TimingConfig(target_block_s=max(MIN_BLOCK_S, min_time), warmup_blocks=2)
    first, first_steps, k, history = prepare(trainer, cfg)
    rounds, warmup = rounds_of(config, history[-1][1] if history else cfg.target_block_s)
    CLOCK.count(load_timer(config.getoption("benchmark_timer")).target, k)
    benchmark.extra_info.update(block_steps=k, first_call_s=first, first_call_steps=first_steps,
                                unit="seconds per SGD step")
    benchmark.pedantic(trainer.run, args=(k,), rounds=rounds, warmup_rounds=warmup,
                       iterations=1)
    return k


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("network", list(NETWORKS))
@pytest.mark.parametrize("variant", list(registry.VARIANTS))
def test_trainer_step(benchmark, request, variant, network, device):
    spec, batch = NETWORKS[network]
    problem = make_problem(spec, batch=batch)
    v = registry.get(variant)
    reason = v.why_not(problem, device)
    if reason:
        pytest.skip(reason)
    if registry.FRAMEWORKS[v.framework].isolated:
        pytest.skip(f"{v.framework} runs in a process of its own (Framework.isolated): its "
                    f"import would change this one for the others (`backprop-bench run` "
                    f"times it)")
    if not benchmark.enabled and (v.baseline or network != SMOKE_NETWORK):
        pytest.skip("the --benchmark-disable smoke run is the worked example, without the "
                    "variants that compile")
    try:
        trainer = v.make(problem, device)
    except registry.Unavailable as exc:
        pytest.skip(str(exc))
    benchmark.group = f"{network} on {device}"
    benchmark.extra_info.update(variant=variant, device=device, kind=v.kind)
    if benchmark.enabled:
        k = timed(benchmark, trainer, request.config)
    else:  # pedantic runs it once
        k = max(1, int(getattr(trainer, "block", 1)))
        benchmark.pedantic(trainer.run, args=(k,))
    passed, why, _ = worker.verify(problem, v, trainer, k, device)
    assert passed, why
