"""Published figures of hardware that is not here, for the scaling model's predictions on
paper: in this one place, every figure with its source."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Interconnect:
    """A machine that is not here, as published: NCCL all-reduce bus bandwidth and latency
    ranges (low, high), and where each figure comes from (name, URL)."""

    name: str
    workers: int
    bus_GBps: tuple[float, float]
    latency_us: tuple[float, float]
    sources: tuple[tuple[str, str], ...]


NCCL_TESTS = ("nccl-tests README, and doc/PERFORMANCE.md for bus bandwidth: busbw = algbw · "
              "2(N-1)/N for all-reduce", "https://github.com/NVIDIA/nccl-tests")
ON_PAPER = (
    Interconnect(
        "8 GPUs over NVLink 4 (H100/H200 SXM, NVSwitch)", 8, (370.0, 480.0), (5.0, 30.0),
        (("NVIDIA DGX H100 datasheet: NVLink 4, 900 GB/s bidirectional per GPU",
          "https://resources.nvidia.com/en-us-dgx-systems/ai-enterprise-dgx"),
         NCCL_TESTS,
         ("NVIDIA's published all_reduce_perf results for 8×H100 SXM: about 370-480 GB/s "
          "bus bandwidth at large messages", "https://github.com/NVIDIA/nccl-tests"))),
    Interconnect(
        "2 nodes, 1 GPU each, over 400 Gb/s InfiniBand NDR", 2, (40.0, 48.0), (5.0, 30.0),
        (("NVIDIA DGX H100 datasheet: ConnectX-7, 400 Gb/s InfiniBand (50 GB/s line rate) "
          "per NIC", "https://resources.nvidia.com/en-us-dgx-systems/ai-enterprise-dgx"),
         NCCL_TESTS,
         ("NVIDIA's published multi-node all_reduce_perf results: about 40-48 GB/s bus "
          "bandwidth per 400 Gb/s NIC", "https://github.com/NVIDIA/nccl-tests"))),
)
