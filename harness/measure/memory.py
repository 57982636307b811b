"""Memory per training step: what running steps adds, the network's minimum, and leaks.

- resident memory (``RssMeter``): on Linux, writing "5" to /proc/self/clear_refs resets the
  process's peak RSS (VmHWM) to its current RSS, so VmHWM read afterwards is the peak since
  the reset; the reset is process-wide;
- ``minimum_breakdown(widths, bias, batch, dtype)``: what one SGD step needs at the least.
- ``growth(short, long)``: whether memory keeps growing with the number of steps.
- ``StepMemory``: the accounting of one case, fed by the timing engine's hooks (a
  ``timing.Probe``), on resident memory (``RssMeter``) or a device's allocator
  (``DeviceMeter``, where the framework module reports one).

Every function returns a JSON-able dict (or an int) and never raises for lack of /proc or a
device.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from implementations.problem import numpy_dtype

PROC_SELF = Path("/proc/self")
MIB = 1 << 20
LEAK_FLOOR_BYTES = 4 * MIB  # allocator noise (pymalloc arenas, malloc trimming) stays below
LEAK_PEAK_RATIO = 1.0  # growth must also exceed one short phase's whole working set


# --- CPU --------------------------------------------------------------------------------


def parse_status(text: str) -> dict:
    """{VmRSS, VmHWM, ...: bytes} from /proc/PID/status text (fields in kB); {} if none."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if key.startswith("Vm") and len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            out[key] = int(parts[0]) * 1024
    return out


def read_status(proc_self: Path = PROC_SELF) -> dict:
    try:
        return parse_status((proc_self / "status").read_text())
    except (OSError, UnicodeDecodeError):
        return {}


def reset_peak(proc_self: Path = PROC_SELF) -> bool:
    """Reset VmHWM to the current RSS (Linux 4.0+); False where that is not allowed."""
    try:
        fd = os.open(proc_self / "clear_refs", os.O_WRONLY)  # never create it
    except OSError:
        return False
    try:
        return os.write(fd, b"5") == 1
    except OSError:
        return False
    finally:
        os.close(fd)


# --- the minimum a step needs ------------------------------------------------------------


def minimum_breakdown(widths: Sequence[int], bias: bool, batch: int, dtype: Any,
                      pre_activations: bool = False) -> dict:
    """{parameters, gradients, activations, total}: the least memory one SGD step of the
    network needs, in bytes.

    Counted, each at ``dtype``'s size:

    - the parameters: every W (fan_in x fan_out) and, with ``bias``, every b (fan_out);
    - their gradients: the same number of values;
    - the activations backprop must keep from the forward pass: the input x (batch x
      widths[0]) and each layer's output h_l = phi(a_l) (batch x widths[l]), i.e.
      batch x sum(widths). dE/dW_l = h_{l-1}^T dE/da_l needs every layer's input, and phi'
      of every activation here (linear, sigmoid, tanh, relu) is computable from h_l, so the
      pre-activations a_l are not needed; ``pre_activations=True`` adds them
      (batch x sum(widths[1:])), as the NumPy implementation keeps them.

    Not counted: the targets y, the loss, the backward pass's transient dE/dh and dE/da (one
    layer at a time), framework overhead (autograd graphs, allocator caches, compiled code).
    """
    item = numpy_dtype(dtype).itemsize
    params = sum(a * b + (b if bias else 0) for a, b in zip(widths, widths[1:]))
    values = batch * sum(widths)
    if pre_activations:
        values += batch * sum(widths[1:])
    out = {"parameters": params * item, "gradients": params * item, "activations": values * item}
    out["total"] = sum(out.values())
    return out


# --- leaks -------------------------------------------------------------------------------


def growth(short: dict, long: dict) -> dict:
    """Whether resident memory grows with the number of steps.

    ``short`` holds the ``added_bytes`` of a short run (one warm call), ``long`` the
    ``rss_before_bytes`` and ``rss_after_bytes`` around many ``steps``. A variant leaks if
    memory grew over the long phase by more than
    ``threshold_bytes`` = max(LEAK_FLOOR_BYTES, LEAK_PEAK_RATIO x the short phase's added
    peak): a working set freed and retaken can move the RSS by up to its own size, a leak's
    growth scales with the steps. Returns ``{leaks (None if unreadable), growth_bytes,
    bytes_per_step, threshold_bytes, step_peak_bytes, reason}``.
    """
    start, end = long.get("rss_before_bytes"), long.get("rss_after_bytes")
    peak = short.get("added_bytes")
    if start is None or end is None:
        return {"leaks": None, "growth_bytes": None, "bytes_per_step": None,
                "threshold_bytes": None, "step_peak_bytes": peak,
                "reason": "resident memory is not readable here"}
    grown = end - start
    threshold = int(max(LEAK_FLOOR_BYTES, LEAK_PEAK_RATIO * (peak or 0)))
    leaks = grown > threshold
    reason = (f"resident memory grew {grown / MIB:.1f} MiB over {long['steps']} steps "
              f"(threshold {threshold / MIB:.1f} MiB)") if leaks else None
    return {"leaks": leaks, "growth_bytes": grown, "bytes_per_step": grown / long["steps"],
            "threshold_bytes": threshold, "step_peak_bytes": peak, "reason": reason}


# --- one case, through the timing engine's hooks ----------------------------------------------


class RssMeter:
    """Resident memory of this process: in use (VmRSS), peak since the last reset (VmHWM)."""

    source = "resident memory of the worker process (VmRSS, VmHWM)"

    def __init__(self, proc_self: Path = PROC_SELF):
        self.proc_self = proc_self

    def in_use(self) -> int | None:
        return read_status(self.proc_self).get("VmRSS")

    def peak(self) -> int | None:
        return read_status(self.proc_self).get("VmHWM")

    def reset(self) -> bool:
        return reset_peak(self.proc_self)


class DeviceMeter:
    """A device's allocator, through the framework module's optional ``device_memory(device)``
    ({"in_use": bytes, "peak": bytes} or None) and ``reset_device_memory_peak(device)``
    (True if the peak could be reset; JAX's cannot)."""

    def __init__(self, module: Any, device: str):
        self.module, self.device = module, device
        self.source = f"{device} allocator ({getattr(module, '__name__', '?')}.device_memory)"

    def read(self, key: str) -> int | None:
        try:
            stats = self.module.device_memory(self.device)
        except Exception:  # a broken driver costs the figure, not the case
            return None
        return None if stats is None else stats.get(key)

    def in_use(self) -> int | None:
        return self.read("in_use")

    def peak(self) -> int | None:
        return self.read("peak")

    def reset(self) -> bool:
        try:
            return bool(self.module.reset_device_memory_peak(self.device))
        except Exception:
            return False


def meter_for(module: Any, device: str) -> RssMeter | DeviceMeter:
    """The device's allocator where the framework reports one, else resident memory."""
    if device != "cpu" and hasattr(module, "device_memory"):
        meter = DeviceMeter(module, device)
        if meter.in_use() is not None:
            return meter
    return RssMeter()


class StepMemory:
    """A ``timing.Probe`` that accounts one case's memory, outside every timed region:

    - ``start_bytes``: in use before the first call (the Trainer's starting state);
    - ``first_call_added_bytes``: the peak during the first call(s) over that (tracing and
      compiling included);
    - ``warm_call_added_bytes``: the peak during one warm ``run(block)`` over what was in use
      just before it (``warm_call``, after timing): what a step adds in the steady state;
    - ``growth_bytes`` over the timed steps (after a garbage collection at both ends), and
      ``leaks`` when it exceeds ``growth``'s threshold: memory that grows with the steps.

    A peak that cannot be reset (a lifetime peak) is used only where the run raised it.
    """

    def __init__(self, meter):
        self.meter = meter
        self.figures: dict[str, Any] = {"source": meter.source}

    def added(self, run_fn: Callable[[], object]) -> int | None:
        gc.collect()
        reset = self.meter.reset()
        before, old_peak = self.meter.in_use(), self.meter.peak()
        run_fn()
        peak = self.meter.peak()
        if before is None or peak is None or (not reset and peak <= (old_peak or 0)):
            return None
        return max(0, peak - before)

    def before_first(self) -> None:
        gc.collect()
        self.reset_ok = self.meter.reset()
        self.figures["start_bytes"] = self.start = self.meter.in_use()
        self.old_peak = self.meter.peak()

    def after_first(self) -> None:
        peak = self.meter.peak()
        known = None not in (self.start, peak) and (self.reset_ok or peak > (self.old_peak or 0))
        self.figures["first_call_added_bytes"] = max(0, peak - self.start) if known else None

    def ready(self) -> None:
        gc.collect()
        self.figures["resting_bytes"] = self.meter.in_use()

    def done(self, steps: int) -> None:
        gc.collect()
        self.figures.update(end_bytes=self.meter.in_use(), timed_steps=steps)

    def warm_call(self, trainer: Any) -> None:
        block = max(1, int(getattr(trainer, "block", 1)))
        self.figures["warm_call_added_bytes"] = self.added(lambda: trainer.run(block))
        self.figures["block"] = block

    def result(self, minimum: dict) -> dict:
        f = self.figures
        verdict = growth({"added_bytes": f.get("warm_call_added_bytes")},
                         {"rss_before_bytes": f.get("resting_bytes"),
                          "rss_after_bytes": f.get("end_bytes"),
                          "steps": max(1, f.get("timed_steps") or 1)})
        return {**f, "minimum_bytes": minimum["total"], "minimum": minimum,
                "growth_bytes": verdict["growth_bytes"], "leaks": verdict["leaks"],
                "leak_reason": verdict["reason"]}
