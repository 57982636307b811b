"""The command line's value types and shared option groups: each turns flags into typed
values (``plans.Networks``, ``Timed``) or fails with one line."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass

from harness.check import deadline
from harness.commands import plans
from harness.measure.environment import default_threads
from harness.procs.runner import CASE_TIMEOUT_BASE_S, CASE_TIMEOUT_PER_BUDGET
from implementations import registry
from implementations.problem import ACTIVATIONS, DTYPES, BenchError, parse_widths, validate_lr

LR_HELP = ("SGD learning rate (default: 0.1, times 16/width for networks wider than 16, so "
           "that plain SGD stays stable)")
DEVICES = {"cpu": "cpu", "cuda": "cuda", "gpu": "cuda"}


class UsageError(BenchError):
    """A bad command line."""


@dataclass(frozen=True)
class Timed:
    """The options `run` and `sweep` share."""

    device: str
    variants: tuple[str, ...] | None
    frameworks: tuple[str, ...] | None
    threads: int | None
    time_per_case: float
    processes: int
    no_peak: bool
    out: str | None
    force: bool
    timeout: float | None
    results_dir: str
    count: bool = False  # also count instructions per step under Valgrind (run --measure)
    count_target: float | None = None  # instructions per counted block (None: the default)
    count_timeout: float | None = None  # the longest wait on a counting worker (None: defaults)

    def thread_count(self) -> int:
        usable = default_threads()
        if self.threads is not None and self.threads > usable:
            raise BenchError(f"--threads {self.threads}: only {usable} cores are usable here")
        return self.threads or usable


# ---- value types (argparse ``type=``: a bad value is one line) --------------------------------

def csv(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in csv(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers") from None


def positive(kind: type) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number above 0")
        return value

    return parse


def percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a percentage >= 0")
    return value


def device(text: str) -> str:
    if text not in DEVICES:
        raise argparse.ArgumentTypeError(f"unknown device {text!r}: choose cpu or cuda (or gpu)")
    return DEVICES[text]


def widths(text: str) -> tuple[int, ...]:
    try:
        return parse_widths(text)
    except BenchError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def lr_of(text: str | None) -> float | None:
    return None if text is None else validate_lr(text)


# ---- argument groups --------------------------------------------------------------------------

def add_networks(p: argparse.ArgumentParser, defaults: str) -> None:
    g = p.add_argument_group("networks", defaults)
    g.add_argument("--widths", nargs="+", metavar="W", type=widths,
                   help="one or more networks, input to output: 4,16,16,4 1,1,1")
    g.add_argument("--activation", help=f"hidden activation: {', '.join(ACTIVATIONS)}")
    g.add_argument("--output-activation", default="linear", help="(default: linear)")
    g.add_argument("--bias", action=argparse.BooleanOptionalAction, default=None,
                   help="give every layer a bias (--no-bias: none)")
    g.add_argument("--dtype", type=csv, help=f"comma list of {', '.join(DTYPES)}")
    g.add_argument("--batch", type=int, help="samples per step; batch 1 with input width 1 is "
                   "X=1 -> Y=-1, otherwise a seeded batch x in [-1, 1], y = -x")
    g.add_argument("--lr", help=LR_HELP)
    g.add_argument("--seed", type=int, default=0, help="seed for data and weights (default: 0)")


def networks_of(a) -> plans.Networks:
    if a.activation is not None and a.activation not in ACTIVATIONS:
        raise BenchError(f"unknown activation {a.activation!r}: choose from "
                         f"{', '.join(ACTIVATIONS)}")
    if a.seed < 0:
        raise BenchError(f"seed {a.seed} must be a non-negative integer")
    return plans.Networks(None if a.widths is None else tuple(a.widths), a.activation,
                          a.output_activation, a.bias, a.dtype, a.batch, lr_of(a.lr), a.seed)


def add_selection(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--variants", type=csv, metavar="V,V", help=f"comma list of variants "
                   f"({', '.join(registry.VARIANTS)}); default: {what}")
    p.add_argument("--framework", type=csv, metavar="F,F", help="comma list of frameworks "
                   f"({', '.join(registry.FRAMEWORKS)}): all their variants")


def add_timed(p: argparse.ArgumentParser, command: str, per_case: float, processes: int) -> None:
    p.add_argument("--device", type=device, default="cpu", help="cpu or cuda (also: gpu)")
    p.add_argument("--threads", type=positive(int), help="threads for every framework "
                   "(default: all usable cores)")
    p.add_argument("--time-per-case", type=positive(float), default=per_case,
                   help=f"seconds of timed blocks per case and process (default: {per_case})")
    p.add_argument("--rounds", "--processes", dest="processes", type=positive(int),
                   default=processes, metavar="N",
                   help="rounds of worker processes, one per framework each, the frameworks "
                        "in a rotated order every round; samples are pooled (the IQR includes "
                        "the noise between processes) and the spread between rounds is shown; "
                        f"5 or more give compare its verdicts (default: {processes}; "
                        f"--processes is the old name)")
    p.add_argument("--timeout", type=positive(float), metavar="SECONDS",
                   help="per case: a case that takes longer has its worker killed and is "
                        f"recorded as failed (default: {CASE_TIMEOUT_BASE_S:g} s + "
                        f"{CASE_TIMEOUT_PER_BUDGET:g} × --time-per-case)")
    p.add_argument("--no-peak", action="store_true", help="skip measuring the matmul peak")
    p.add_argument("--out", help=f"results file (default: results/{command}-DEVICE-HOST-TIME"
                   ".json); an existing file is never overwritten without --force")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--results-dir", default="results", help=argparse.SUPPRESS)


def timed_of(a) -> Timed:
    if a.out is not None and not a.out.strip():
        raise UsageError("--out is empty: give a file path")
    return Timed(a.device, a.variants, a.framework, a.threads, a.time_per_case,
                          a.processes, a.no_peak, a.out, a.force, a.timeout, a.results_dir,
                          getattr(a, "measure", "time") == "instructions",
                          getattr(a, "count_target", None), getattr(a, "count_timeout", None))


def add_check_timeout(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=positive(float), metavar="SECONDS",
                   help="per piece of work (one variant's gradients or trajectory on one "
                        "network): one that takes longer fails with that cause and the rest "
                        "go on; one that cannot be interrupted (a hang in C) ends the command "
                        f"{deadline.GRACE_S:g} s later, exit {deadline.EXIT_HUNG} (default: "
                        f"{deadline.DEFAULT_S:g} s)")


def with_check_timeout(a: argparse.Namespace, call: Callable[[], int]) -> int:
    """``call()`` with check's --timeout in force (here and in the processes it starts)."""
    with deadline.seconds_set(a.timeout):
        return call()
