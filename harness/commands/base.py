"""What every subcommand shares: the program's name, notes on stderr, the device check."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

from harness.measure.environment import gpu_info
from implementations import launch, registry
from implementations.contract import Unavailable
from implementations.problem import BenchError

EXIT_OUTPUT_CLOSED = 141  # 128 + SIGPIPE, as a shell reports a process killed by it


class OutputClosed(Exception):
    """Our stdout was closed (``| head``) while a command wrote to it; ``where`` says what
    was kept ("the finished cases are saved in r.json, marked interrupted")."""

    def __init__(self, where: str = ""):
        super().__init__(where)
        self.where = where


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


def check_environment() -> None:
    """A one-line error (exit 2) for a BACKPROP_BENCH_* variable set to what it cannot be,
    before anything runs (the framework files are the registry's to say)."""
    launch.pg_timeout_s()
    launch.oversubscribe_allowed()
    commit = os.environ.get("BACKPROP_BENCH_COMMIT", "")
    if commit and not re.fullmatch(r"[0-9a-fA-F]{7,64}", commit.strip()):
        raise BenchError(f"BACKPROP_BENCH_COMMIT={commit!r}: must be a commit id (hexadecimal)")


@dataclass(frozen=True)
class Command:
    """A subcommand: its module defines COMMAND, and harness.cli lists it."""

    name: str
    help: str
    description: str
    examples: tuple[str, ...]
    arguments: Callable[[argparse.ArgumentParser], None]
    call: Callable[[argparse.Namespace], int]
