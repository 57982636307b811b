"""What every subcommand shares: the program's name, notes on stderr, the device check."""

from __future__ import annotations

import sys

from harness.measure.environment import gpu_info
from implementations import registry
from implementations.contract import Unavailable
from implementations.problem import BenchError

PROG = "backprop-bench"


def note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


def require_device(device: str) -> None:
    """A one-line error unless some framework here can use the device (the CPU always)."""
    if device == "cpu":
        return
    reasons = []
    for name in dict.fromkeys(v.framework for v in registry.VARIANTS.values()
                              if device in v.devices):
        try:
            registry.import_module(name).check_device(device)
            return
        except Unavailable as exc:
            reasons.append(str(exc))
    gpu = gpu_info()
    seen = f" (nvidia-smi sees {gpu['name']})" if gpu else ""
    raise BenchError(f"--device {device}: no framework here can use it{seen}: "
                     + "; ".join(dict.fromkeys(reasons)))
