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


def test_measure_cpu_accounting_from_canned_status(tmp_path):
    (tmp_path / "clear_refs").write_text("")
    (tmp_path / "status").write_text(status(rss_kb=1000, hwm_kb=1000))

    def run():  # what the kernel would show after a run that peaked at 5000 kB
        assert (tmp_path / "clear_refs").read_text() == "5"
        (tmp_path / "status").write_text(status(rss_kb=1200, hwm_kb=5000))

    result = memory.measure_cpu(run, proc_self=tmp_path)
    assert result == {"rss_before_bytes": 1000 * 1024, "peak_bytes": 5000 * 1024,
                      "rss_after_bytes": 1200 * 1024, "added_bytes": 4000 * 1024,
                      "peak_reset": True, "source": "proc"}


def test_measure_cpu_falls_back_to_getrusage(tmp_path):
    (tmp_path / "status").write_text(status(rss_kb=1000, hwm_kb=3000))  # no clear_refs
    calls = []
    result = memory.measure_cpu(lambda: calls.append(1), proc_self=tmp_path)
    assert calls == [1]
    assert result["peak_reset"] is False and result["source"] == "getrusage"
    assert result["rss_before_bytes"] == 1000 * 1024
    json.dumps(result)


def test_measure_cpu_with_nothing_readable(tmp_path):
    result = memory.measure_cpu(lambda: None, proc_self=tmp_path / "missing")
    assert result["peak_reset"] is False and result["rss_before_bytes"] is None
    assert result["added_bytes"] is None


def test_measure_cpu_propagates_the_run_error(tmp_path):
    with pytest.raises(ZeroDivisionError):
        memory.measure_cpu(lambda: 1 / 0, proc_self=tmp_path)


@pytest.mark.skipif(not LINUX, reason="needs /proc/self")
def test_measure_cpu_sees_a_freed_peak_here():
    size = 64 * MIB

    def run():
        a = np.ones(size // 8)  # touched, so resident
        del a

    result = memory.measure_cpu(run)
    if not result["peak_reset"]:
        pytest.skip("clear_refs cannot be written on this machine")
    assert result["source"] == "proc"
    assert result["added_bytes"] >= 0.9 * size
    assert result["rss_after_bytes"] < result["rss_before_bytes"] + 0.5 * size


# --- GPU helpers through fakes -----------------------------------------------------------


class FakeCuda:
    """torch.cuda's allocator counters: run_fn calls alloc/free."""

    def __init__(self, available: bool = True, broken: bool = False):
        self.available, self.broken = available, broken
        self.allocated, self.peak, self.syncs = 1000, 9999, 0

    def is_available(self):
        return self.available

    def synchronize(self, device=None):
        if self.broken:
            raise RuntimeError("CUDA error: device lost")
        self.syncs += 1

    def reset_peak_memory_stats(self, device=None):
        self.peak = self.allocated

    def memory_allocated(self, device=None):
        return self.allocated

    def max_memory_allocated(self, device=None):
        return self.peak

    def alloc(self, n):
        self.allocated += n
        self.peak = max(self.peak, self.allocated)


class FakeTorch:
    def __init__(self, cuda):
        self.cuda = cuda


def test_measure_torch_with_a_fake_device():
    cuda = FakeCuda()

    def run():
        cuda.alloc(5000)
        cuda.alloc(-4000)

    result = memory.measure_torch(FakeTorch(cuda), run, device=0)
    assert result == {"available": True, "reason": None, "bytes_before": 1000,
                      "peak_bytes": 6000, "bytes_after": 2000, "added_bytes": 5000,
                      "peak_reset": True}
    assert cuda.syncs == 2


@pytest.mark.parametrize("torch", [FakeTorch(FakeCuda(available=False)), object(),
                                   FakeTorch(FakeCuda(broken=True))])
def test_measure_torch_unavailable_gives_none_and_still_runs(torch):
    calls = []
    result = memory.measure_torch(torch, lambda: calls.append(1))
    assert calls == [1]
    assert result["available"] is False and result["reason"]
    assert result["peak_bytes"] is None and result["added_bytes"] is None


def test_measure_torch_propagates_the_run_error():
    with pytest.raises(KeyError):
        memory.measure_torch(FakeTorch(FakeCuda()), lambda: {}["x"])


class FakeJaxDevice:
    def __init__(self, stats):
        self.stats = stats

    def memory_stats(self):
        return None if self.stats is None else dict(self.stats)


def test_measure_jax_new_peak_is_known():
    device = FakeJaxDevice({"bytes_in_use": 100, "peak_bytes_in_use": 500})

    def run():
        device.stats = {"bytes_in_use": 300, "peak_bytes_in_use": 2100}

    result = memory.measure_jax(device, run)
    assert result == {"available": True, "reason": None, "bytes_before": 100,
                      "peak_bytes": 2100, "bytes_after": 300, "added_bytes": 2000,
                      "peak_reset": False}


def test_measure_jax_peak_not_raised_is_unknown():
    device = FakeJaxDevice({"bytes_in_use": 100, "peak_bytes_in_use": 5000})
    result = memory.measure_jax(device, lambda: None)
    assert result["available"] is True and result["peak_bytes"] is None
    assert "did not raise the lifetime peak" in result["reason"]


@pytest.mark.parametrize("device", [FakeJaxDevice(None), object()])
def test_measure_jax_without_statistics(device):
    calls = []
    result = memory.measure_jax(device, lambda: calls.append(1))
    assert calls == [1]
    assert result["available"] is False and result["bytes_before"] is None
    assert "memory_stats() is None" in result["reason"]


# --- the minimum a step needs ------------------------------------------------------------


def test_minimum_bytes_worked_example():
    # 2 weights, 2 gradients, x + h1 + h2 = 3 activations, 8 bytes each
    assert memory.minimum_bytes([1, 1, 1], False, 1, "float64") == 7 * 8


def test_minimum_bytes_wider_network():
    # parameters 4*16+16 + 16*16+16 + 16*4+4 = 420, gradients 420,
    # activations 8 * (4 + 16 + 16 + 4) = 320: 1160 float32 values
    assert memory.minimum_breakdown((4, 16, 16, 4), True, 8, np.float32) == {
        "parameters": 1680, "gradients": 1680, "activations": 1280, "total": 4640}
    assert memory.minimum_bytes((4, 16, 16, 4), True, 8, "float32") == 4640
    # the pre-activations a_1..a_3 add 8 * (16 + 16 + 4) values
    assert memory.minimum_bytes((4, 16, 16, 4), True, 8, "float32",
                                pre_activations=True) == 4640 + 8 * 36 * 4


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
