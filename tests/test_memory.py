"""Memory per step: /proc/self/status accounting, GPU helpers through fakes, the minimum a
step needs, and the leak detector on leaking and non-leaking fake Trainers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.measure import memory
from harness.measure.timing import TimingConfig, time_trainer

LINUX = Path("/proc/self/status").exists()
MIB = memory.MIB

STATUS = """Name:\tpython
Umask:\t0022
State:\tR (running)
VmPeak:\t  145620 kB
VmSize:\t  145620 kB
VmHWM:\t   27660 kB
VmRSS:\t   26148 kB
RssAnon:\t   12000 kB
VmSwap:\t       0 kB
Threads:\t1
"""


def status(rss_kb: int, hwm_kb: int) -> str:
    return f"Name:\tpython\nVmHWM:\t{hwm_kb:8d} kB\nVmRSS:\t{rss_kb:8d} kB\n"


def test_parse_status():
    parsed = memory.parse_status(STATUS)
    assert parsed["VmRSS"] == 26148 * 1024 and parsed["VmHWM"] == 27660 * 1024
    assert "RssAnon" not in parsed and "Threads" not in parsed
    assert memory.parse_status("") == {}
    assert memory.parse_status("VmRSS:\tlots kB\n") == {}


@pytest.mark.skipif(not LINUX, reason="needs /proc/self")
def test_the_resident_meter_sees_a_freed_peak_after_its_reset():
    size = 64 * MIB
    meter = memory.RssMeter()
    if not meter.reset():
        pytest.skip("clear_refs cannot be written on this machine")
    before = meter.in_use()
    a = np.ones(size // 8)  # touched, so resident
    del a
    assert meter.peak() - before >= 0.9 * size
    assert meter.in_use() < before + 0.5 * size


# --- the minimum a step needs ------------------------------------------------------------


def test_minimum_bytes_worked_example():
    # 2 weights, 2 gradients, x + h1 + h2 = 3 activations, 8 bytes each
    assert memory.minimum_breakdown([1, 1, 1], False, 1, "float64")["total"] == 7 * 8


def test_minimum_bytes_wider_network():
    # parameters 4*16+16 + 16*16+16 + 16*4+4 = 420, gradients 420,
    # activations 8 * (4 + 16 + 16 + 4) = 320: 1160 float32 values
    assert memory.minimum_breakdown((4, 16, 16, 4), True, 8, np.float32) == {
        "parameters": 1680, "gradients": 1680, "activations": 1280, "total": 4640}
    # the pre-activations a_1..a_3 add 8 * (16 + 16 + 4) values
    assert memory.minimum_breakdown((4, 16, 16, 4), True, 8, "float32",
                                    pre_activations=True)["total"] == 4640 + 8 * 36 * 4


# --- leaks -------------------------------------------------------------------------------


def phase(steps: int, before: int, after: int, added: int) -> dict:
    return {"rss_before_bytes": before, "rss_after_bytes": after, "added_bytes": added,
            "steps": steps}


def test_growth_flags_growth_beyond_floor_and_working_set():
    short = phase(10, 100 * MIB, 100 * MIB, 2 * MIB)
    verdict = memory.growth(short, phase(100, 100 * MIB, 150 * MIB, 50 * MIB))
    assert verdict["leaks"] is True
    assert verdict["growth_bytes"] == 50 * MIB and verdict["bytes_per_step"] == 0.5 * MIB
    assert verdict["threshold_bytes"] == memory.LEAK_FLOOR_BYTES
    assert "grew 50.0 MiB over 100 steps" in verdict["reason"]


def test_growth_ignores_noise_below_floor_or_working_set():
    small = memory.growth(phase(10, 0, 0, 0), phase(100, 0, 3 * MIB, 3 * MIB))
    assert small["leaks"] is False and small["reason"] is None
    big_step = phase(10, 0, 0, 200 * MIB)  # a step with 200 MiB of temporaries
    noisy = memory.growth(big_step, phase(100, 0, 150 * MIB, 200 * MIB))
    assert noisy["leaks"] is False and noisy["threshold_bytes"] == 200 * MIB


def test_growth_unreadable():
    verdict = memory.growth(phase(1, None, None, None), phase(10, None, None, None))
    assert verdict["leaks"] is None and verdict["reason"]


class LeakingTrainer:
    """Keeps a 1 MB array per step: a leak."""

    def __init__(self):
        self.kept = []

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.kept.append(np.ones(1_000_000 // 8))


class SteadyTrainer:
    """Makes temporaries (1 MB, and 48 MB: above glibc's largest mmap threshold, so that it
    goes back to the OS when freed) every step and keeps nothing."""

    def __init__(self):
        self.w = np.ones(1000)

    def run(self, steps: int) -> None:
        for _ in range(steps):
            t = np.ones(1_000_000 // 8) + np.ones(48 * MIB // 8).sum()
            self.w = self.w + t[:1000] * 0


def account(trainer) -> dict:
    """The memory figures of a case: the timing engine with a StepMemory probe."""
    probe = memory.StepMemory(memory.RssMeter())
    time_trainer(trainer, TimingConfig(target_block_s=0.002, min_blocks=3, budget_s=0.02,
                                       max_block_steps=64, warmup_blocks=1), probe=probe)
    probe.warm_call(trainer)
    return probe.result(memory.minimum_breakdown((4, 4), False, 1, "float64"))


@pytest.mark.skipif(not LINUX, reason="needs /proc/self")
def test_a_leaking_trainer_is_flagged_through_the_timing_engine():
    result = account(LeakingTrainer())
    assert result["leaks"] is True, result
    assert result["growth_bytes"] > 4 * MIB and "grew" in result["leak_reason"]
    json.dumps(result)


@pytest.mark.skipif(not LINUX, reason="needs /proc/self")
def test_a_steady_trainer_is_not_flagged_and_its_step_is_seen():
    result = account(SteadyTrainer())
    assert result["leaks"] is False, result
    assert result["warm_call_added_bytes"] > 40 * MIB  # its 48 MB temporary, freed each step
    assert result["minimum_bytes"] == 2 * 16 * 8 + 8 * 8 and result["block"] == 1


class FakeMeter:
    """A device allocator that cannot reset its peak, as JAX's."""

    source = "fake"

    def __init__(self):
        self.used, self.top = 100, 100

    def in_use(self):
        return self.used

    def peak(self):
        return self.top

    def reset(self):
        return False

    def run(self, grow: int):
        self.top = max(self.top, self.used + grow)


def test_a_peak_that_cannot_be_reset_counts_only_when_the_run_raised_it():
    meter = FakeMeter()
    probe = memory.StepMemory(meter)
    assert probe.added(lambda: meter.run(50)) == 50  # raised the lifetime peak: known
    assert probe.added(lambda: meter.run(10)) is None  # below the earlier peak: unknown
