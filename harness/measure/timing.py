"""The one timing engine: the CLI, the sweep and the pytest-benchmark suite all call it.

The timed unit is ``Trainer.run(K)``: K SGD steps and exactly one device sync, which the
Trainer owns. The engine

1. times the first call, ``run(block)``, on its own (tracing, compiling, capturing);
2. calibrates K by growing it until one block takes at least ``target_block_s``
   (these calls double as warm-up), or takes K as given (``block_steps``, so that samples
   from several processes share one K), then runs ``warmup_blocks`` more blocks untimed;
3. times blocks of K steps until it has ``min_blocks`` and ``budget_s`` has passed (or
   ``max_blocks``), keeping every block's raw time;
4. returns one ``Measurement`` holding those raw times, from which the per-step median, IQR
   and min are derived; it is noisy when IQR / median exceeds ``NOISY_IQR``.

Two optional Trainer attributes shape this: ``block``, the number of steps it fuses (K is
kept a multiple of it so that timing never measures a remainder path), and ``first_calls``,
the number of ``run(block)`` calls that still trace, compile or capture (a framework that
compiles on its second call, not its first, says 2): they are all timed as the first call.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

NOISY_IQR = 0.10


@dataclass(frozen=True)
class TimingConfig:
    """How long and how hard to time one case."""

    target_block_s: float = 0.02
    min_blocks: int = 7
    max_blocks: int = 200
    budget_s: float = 1.0
    warmup_blocks: int = 2
    max_block_steps: int = 1 << 26
    block_steps: int | None = None  # a fixed K (from an earlier process): no calibration

    def as_dict(self) -> dict:
        return dict(self.__dict__)


SHORTEST_S = 1e-12  # a picosecond: no positive time a measurement holds is shorter
LONGEST_S = 1e7  # 115 days: nor longer (so that every ratio of two times is finite)


def seconds(value: float, name: str) -> None:
    """ValueError unless ``value`` is a time a machine could have measured: 0, or from a
    picosecond to LONGEST_S (a negative time or 1e-320 s is a corrupt file: 1/1e-320 is inf)."""
    if value < 0 or 0 < value < SHORTEST_S or value > LONGEST_S:
        raise ValueError(f"{name} {value!r} s is not a measured time")


@dataclass
class Measurement:
    """One timing as it was measured: the first call, K and the raw block times.

    It is stored as it is (``harness.record.results``); every statistic is derived from the
    samples (seconds per block of ``block_steps`` steps), and ``pool`` joins the samples of
    several processes that timed the same K."""

    first_call_s: float
    first_call_steps: int
    block_steps: int
    samples_s: list[float]
    calibration: list[tuple[int, float]] = field(default_factory=list)
    warmup_blocks: int = 0
    total_steps: int = 0
    first_calls: int = 1  # the run(block) calls timed as the first call (Trainer.first_calls)

    def __post_init__(self) -> None:
        if self.block_steps < 1 or self.first_call_steps < 0 or self.total_steps < 0:
            raise ValueError(f"block_steps {self.block_steps}, first_call_steps "
                             f"{self.first_call_steps} and total_steps {self.total_steps}: a "
                             f"block has at least one step, and no count is negative")
        seconds(self.first_call_s, "first_call_s")
        for i, s in enumerate(self.samples_s):
            seconds(s, f"samples_s[{i}]")

    def per_step_s(self) -> np.ndarray:
        """Each block's time divided by K: seconds per step, one value per block."""
        return np.asarray(self.samples_s, dtype=float) / self.block_steps

    @property
    def blocks(self) -> int:
        return len(self.samples_s)

    @property
    def median(self) -> float:
        return float(np.median(self.per_step_s()))

    @property
    def q1(self) -> float:
        return float(np.percentile(self.per_step_s(), 25))

    @property
    def q3(self) -> float:
        return float(np.percentile(self.per_step_s(), 75))

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @property
    def min(self) -> float:
        return float(np.min(self.per_step_s()))

    @property
    def mean(self) -> float:
        return float(np.mean(self.per_step_s()))

    @property
    def noisy(self) -> bool:
        return self.iqr > NOISY_IQR * self.median

    @property
    def compile_s(self) -> float:
        """First-call time beyond what its steps cost in the steady state (never negative)."""
        return max(0.0, self.first_call_s - self.first_call_steps * self.median)

    def pool(self, other: Measurement) -> Measurement:
        """This measurement with another process's samples of the same K added (a new one:
        neither is changed); the first call stays this one's."""
        if other.block_steps != self.block_steps:
            raise ValueError(f"pooling K {other.block_steps} into K {self.block_steps}")
        return replace(self, samples_s=self.samples_s + other.samples_s,
                       total_steps=self.total_steps + other.total_steps)


def timed(trainer, steps: int, clock: Callable[[], float]) -> float:
    t0 = clock()
    trainer.run(steps)
    return clock() - t0


def calibrate(trainer, block: int, cfg: TimingConfig, clock) -> tuple[int, list]:
    """Grow K (a multiple of block) until run(K) takes at least target_block_s."""
    k, history = block, []
    while True:
        dt = timed(trainer, k, clock)
        history.append((k, dt))
        if dt >= cfg.target_block_s or k >= cfg.max_block_steps:
            return k, history
        grow = cfg.target_block_s / dt * 1.2 if dt > 0 else 1024.0
        k = min(cfg.max_block_steps, k * int(min(max(2.0, grow), 1024.0)))
        k = max(block, k - k % block)


class Probe:
    """What the engine tells an observer, always outside a timed region: ``before_first()``
    and ``after_first()`` around the first call(s), ``ready()`` after the warm-up and
    ``done(steps)`` after the timed blocks (the memory accounting of ``harness.measure.memory``)."""

    def before_first(self) -> None: ...

    def after_first(self) -> None: ...

    def ready(self) -> None: ...

    def done(self, steps: int) -> None: ...


def prepare(trainer, cfg: TimingConfig = TimingConfig(),
            clock: Callable[[], float] = time.perf_counter,
            probe: Probe | None = None) -> tuple[float, int, int, list]:
    """Steps 1 and 2: (first-call seconds, its steps, calibrated K, calibration history)."""
    probe = probe or Probe()
    block = max(1, int(getattr(trainer, "block", 1)))
    calls = max(1, int(getattr(trainer, "first_calls", 1)))
    probe.before_first()
    first = sum(timed(trainer, block, clock) for _ in range(calls))
    probe.after_first()
    if cfg.block_steps:
        k, history = cfg.block_steps, []
    else:
        k, history = calibrate(trainer, block, cfg, clock)
    for _ in range(cfg.warmup_blocks):
        trainer.run(k)
    probe.ready()
    return first, block * calls, k, history


def measure_blocks(trainer, cfg: TimingConfig = TimingConfig(),
                   clock: Callable[[], float] = time.perf_counter,
                   probe: Probe | None = None) -> tuple[float, int, int, list, list[float]]:
    """Steps 1 to 3 in the clock's own unit: (first call, its steps, K, calibration history,
    every timed block's reading). Nothing here assumes seconds: ``time_trainer`` makes the
    readings of a clock a ``Measurement``, and ``harness.measure.instructions`` makes those
    of Callgrind's counter, which are instructions, an ``Instructions``; each checks its own
    unit."""
    probe = probe or Probe()
    first, first_steps, k, history = prepare(trainer, cfg, clock, probe)
    samples: list[float] = []
    start = clock()
    while len(samples) < cfg.max_blocks and (
        len(samples) < cfg.min_blocks or clock() - start < cfg.budget_s
    ):
        samples.append(timed(trainer, k, clock))
    probe.done(len(samples) * k)
    return first, first_steps, k, history, samples


def time_trainer(trainer, cfg: TimingConfig = TimingConfig(),
                 clock: Callable[[], float] = time.perf_counter,
                 probe: Probe | None = None) -> Measurement:
    """Time ``trainer.run`` as described in the module docstring (``clock`` in seconds)."""
    first, first_steps, k, history, samples = measure_blocks(trainer, cfg, clock, probe)
    total = first_steps + sum(s for s, _ in history) + (cfg.warmup_blocks + len(samples)) * k
    calls = max(1, int(getattr(trainer, "first_calls", 1)))
    return Measurement(first, first_steps, k, samples, history, cfg.warmup_blocks, total, calls)


def steps_to_pay_off(compiled_first_s: float, compiled_step_s: float, base_first_s: float,
                     base_step_s: float) -> float | None:
    """Steps after which the compiled variant's total time is below the baseline's.

    None when it never pays off (its steady state is not faster); 0 when it never costs more.
    """
    extra = compiled_first_s - base_first_s
    saving = base_step_s - compiled_step_s
    if saving <= 0:
        return None
    return max(0.0, math.ceil(extra / saving))


class NullTrainer:
    """A Trainer that does nothing: timing it measures the engine's own cost per block."""

    block = 1

    def run(self, steps: int) -> None:
        return None


def engine_overhead(cfg: TimingConfig = TimingConfig(), blocks: int = 2000,
                    clock: Callable[[], float] = time.perf_counter) -> dict:
    """The engine's cost per timed block (a clock pair and a call), against target_block_s."""
    trainer = NullTrainer()
    samples = [timed(trainer, 1, clock) for _ in range(blocks)]
    per_block = float(np.median(samples))
    return {"per_block_s": per_block, "fraction_of_block": per_block / cfg.target_block_s}
