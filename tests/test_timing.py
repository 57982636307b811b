"""The timing engine: first call apart, calibration, warm-up, raw samples, stats."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from harness.measure import timing
from harness.measure.timing import Measurement, TimingConfig, steps_to_pay_off, time_trainer


class FakeClock:
    """A clock that advances only when the fake trainer works: deterministic timing."""

    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class FakeTrainer:
    """Costs ``first`` seconds on its first call, then ``per_step`` per step."""

    def __init__(self, clock, per_step=1e-6, first=0.5, block=1):
        self.clock, self.per_step, self.first, self.block = clock, per_step, first, block
        self.calls, self.steps = [], 0

    def run(self, steps):
        self.calls.append(steps)
        self.clock.t += self.per_step * steps + (self.first if len(self.calls) == 1 else 0)
        self.steps += steps


def test_first_call_is_measured_apart_from_the_steady_state():
    clock = FakeClock()
    m = time_trainer(FakeTrainer(clock), TimingConfig(budget_s=0.1), clock)
    assert m.first_call_s == pytest.approx(0.5 + 1e-6)
    assert m.compile_s == pytest.approx(0.5, rel=1e-6)
    assert m.median == pytest.approx(1e-6)
    assert max(m.samples_s) < 0.1  # the first call never lands among the samples


def test_block_is_calibrated_above_the_target_and_kept_a_multiple_of_block():
    clock = FakeClock()
    trainer = FakeTrainer(clock, per_step=1e-7, block=16)
    m = time_trainer(trainer, TimingConfig(target_block_s=0.02, budget_s=0.2), clock)
    assert m.block_steps % 16 == 0
    assert m.block_steps * 1e-7 >= 0.02
    assert all(c % 16 == 0 for c in trainer.calls)


def test_warmup_blocks_are_run_but_not_counted():
    clock = FakeClock()
    trainer = FakeTrainer(clock)
    cfg = TimingConfig(warmup_blocks=3, min_blocks=5, budget_s=0.0)
    m = time_trainer(trainer, cfg, clock)
    after_calibration = trainer.calls[1 + len(m.calibration):]
    assert len(after_calibration) == 3 + len(m.samples_s)
    assert len(m.samples_s) == 5
    assert m.total_steps == trainer.steps


def test_samples_stop_at_max_blocks_and_respect_the_budget():
    clock = FakeClock()
    m = time_trainer(FakeTrainer(clock), TimingConfig(budget_s=1e9, max_blocks=12), clock)
    assert len(m.samples_s) == 12
    clock = FakeClock()
    m = time_trainer(FakeTrainer(clock), TimingConfig(budget_s=0.5, target_block_s=0.02), clock)
    assert 0.5 <= sum(m.samples_s) <= 0.5 + 2 * 0.03


def test_stats_are_per_step_and_flag_noise_over_ten_percent():
    quiet = Measurement(0.0, 0, 100, [1.0, 1.01, 0.99, 1.0, 1.02])
    assert quiet.median == pytest.approx(0.01)
    assert quiet.min == pytest.approx(0.0099)
    assert not quiet.noisy
    noisy = Measurement(0.0, 0, 100, [1.0, 1.5, 0.7, 1.3, 0.8])
    assert noisy.noisy
    assert noisy.q1 == pytest.approx(0.008) and noisy.q3 == pytest.approx(0.013)
    assert noisy.iqr == pytest.approx(0.005) and noisy.blocks == 5


def test_a_measurement_holds_what_was_measured_and_derives_the_rest():
    clock = FakeClock()
    m = time_trainer(FakeTrainer(clock), TimingConfig(budget_s=0.05), clock)
    d = dataclasses.asdict(m)
    assert d["samples_s"] == m.samples_s and d["first_calls"] == 1
    assert not {"median_s", "per_step", "compile_s"} & set(d)  # derived, never stored
    assert m.median == pytest.approx(1e-6) and m.compile_s == pytest.approx(0.5, rel=1e-3)


def test_pooling_joins_the_samples_of_one_k_and_changes_neither_measurement():
    a = Measurement(0.5, 1, 10, [1.0, 1.2], total_steps=30)
    b = Measurement(0.7, 1, 10, [0.8], total_steps=20)
    both = a.pool(b)
    assert both.samples_s == [1.0, 1.2, 0.8] and both.total_steps == 50
    assert both.first_call_s == 0.5 and both.median == pytest.approx(0.1)
    assert a.samples_s == [1.0, 1.2] and b.samples_s == [0.8]
    with pytest.raises(ValueError, match="pooling K 20 into K 10"):
        a.pool(Measurement(0.5, 1, 20, [1.0]))


@pytest.mark.parametrize("field, value", [("first_call_s", -1.0), ("block_steps", 0),
                                          ("samples_s", [1e-320])])
def test_a_time_no_clock_measures_is_refused(field, value):
    kw = {"first_call_s": 0.1, "first_call_steps": 1, "block_steps": 10, "samples_s": [1.0]}
    with pytest.raises(ValueError):
        Measurement(**{**kw, field: value})


@pytest.mark.parametrize(
    "args, expected",
    [((2.0, 1e-6, 0.0, 3e-6), 1_000_000),  # 2 s of compile saved back at 2 µs a step
     ((2.0, 3e-6, 0.0, 1e-6), None),  # slower in the steady state: never
     ((0.0, 1e-6, 0.5, 3e-6), 0)],  # cheaper first call and faster: at once
)
def test_steps_to_pay_off(args, expected):
    assert steps_to_pay_off(*args) == expected


def test_engine_overhead_is_a_tiny_fraction_of_a_block():
    ticks = itertools.count()
    result = timing.engine_overhead(TimingConfig(target_block_s=0.02), blocks=10,
                                    clock=lambda: next(ticks) * 1e-7)
    assert result["per_block_s"] == pytest.approx(1e-7)
    assert result["fraction_of_block"] == pytest.approx(5e-6)
