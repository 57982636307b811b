"""The runner <-> worker protocol: one typed message per kind, on a channel of its own.

The runner writes one ``Job`` as JSON to the worker's stdin. The worker answers on a pipe
whose file descriptor it finds in ``BACKPROP_BENCH_CHANNEL_FD``: one JSON line per message,
``{"type": kind, "body": {...}}``, typed by ``KINDS``. Its stdout and stderr go to a log, so
nothing a framework, a ``sitecustomize`` or a stray ``print`` writes can ever be read as a
message. Every message is validated on arrival (``harness.record.schema``).
"""

from __future__ import annotations

import json
import os
import select
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.measure.instructions import CountConfig, Instructions
from harness.measure.timing import TimingConfig
from harness.record import schema
from harness.record.results import CallFloor, Case, Peak, ProblemRecord

CHANNEL_FD = "BACKPROP_BENCH_CHANNEL_FD"
MAX_WAIT_S = 86400.0  # one select() at most: it overflows on 1e308 s; longer waits loop
POLL_S = 1.0  # how often a reader given ``alive`` asks whether the writer is still there


@dataclass
class PeakJob:
    """A matmul peak to measure: device, dtype, n x n."""

    device: str
    dtype: str
    n: int


@dataclass
class JobCase:
    """A case to time and check; ``block_steps`` fixes K (a later process of a pooled case);
    ``workers`` is the number of data-parallel workers of a distributed variant."""

    problem: ProblemRecord
    variant: str
    device: str
    block_steps: int | None = None
    workers: int = 1


@dataclass
class Job:
    """Everything one worker process does: one framework's cases."""

    framework: str
    device: str
    threads: int
    timing: TimingConfig
    cases: list[JobCase]
    peaks: list[PeakJob] = field(default_factory=list)
    floors: bool = False  # measure the framework's call floors (its first worker only)
    count: CountConfig | None = None  # count instructions, not time (a process under Valgrind)


@dataclass
class FrameworkReady:
    """The framework imported; its settings and the thread pinning made."""

    name: str
    settings: dict
    pinning: dict | None = None


@dataclass
class FrameworkFailed:
    """The framework could not be imported or set up: every case is unavailable."""

    name: str
    error: str


@dataclass
class CaseStarted:
    """The worker begins a case (the runner's timeout for it starts now)."""

    id: str


@dataclass
class CaseCounted:
    """The worker's answer for one case of a counting job: its id and its count."""

    id: str
    instructions: Instructions


@dataclass
class Answer:
    """A child's one answer (``child.ask``): a JSON object, infinities allowed (a failed
    check row's error)."""

    body: dict


# ---- the requests of an isolated child (``harness.procs.isolated``), one per process ----------

@dataclass
class CheckRequest:
    """The evidence of one process group's gradient functions and variants on every problem
    (``session.collect``)."""

    problems: list[dict]  # harness.check.evidence.problem_json
    variants: list[str]
    steps: int
    device: str
    threads: int
    functions: list[str] = field(default_factory=list)  # frameworks whose gradient functions


@dataclass
class LearnerRequest:
    """A learner's file imported and called on every problem (``harness.check.learner``)."""

    path: str
    framework: str
    problems: list[dict]
    steps: int


@dataclass
class ReplayRequest:
    """The variants' Trainers at the given epochs, and their gradients at the start (demo,
    check --example)."""

    problem: dict
    variants: list[str]
    epochs: list[int]


@dataclass
class ImportRequest:
    """Whether each variant's framework imports and can use the device (list --check)."""

    variants: list[str]
    device: str


REQUESTS = {"check": CheckRequest, "learner": LearnerRequest, "replay": ReplayRequest,
            "import": ImportRequest}


def request_json(request) -> dict:
    """A request as the JSON a child reads on its stdin."""
    kind = next(k for k, cls in REQUESTS.items() if isinstance(request, cls))
    return {"type": kind, "body": schema.to_dict(request)}


def request_of(data) -> object:
    """The typed request a child read, or ProtocolError."""
    if not isinstance(data, dict) or data.get("type") not in REQUESTS:
        raise ProtocolError(f"unknown request: {str(data)[:80]!r}")
    return schema.from_dict(REQUESTS[data["type"]], data.get("body"), data["type"])


KINDS = {"answer": Answer, "framework": FrameworkReady, "framework-failed": FrameworkFailed,
         "peak": Peak, "floor": CallFloor, "case-started": CaseStarted, "case": Case,
         "case-counted": CaseCounted}
NAMES = {cls: name for name, cls in KINDS.items()}


class ProtocolError(schema.SchemaError):
    """A message that is not valid."""


def encode(message) -> str:
    return json.dumps({"type": NAMES[type(message)], "body": schema.to_dict(message)},
                      allow_nan=isinstance(message, Answer)) + "\n"


def decode(line: str):
    """The typed message of one line, or ProtocolError."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"message is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("type") not in KINDS:
        raise ProtocolError(f"unknown message: {line[:80]!r}")
    return schema.from_dict(KINDS[data["type"]], data.get("body"), data["type"])


class Timeout(Exception):
    """No message within the time allowed."""


class Reader:
    """Reads messages from the channel's read end, with a deadline per read."""

    def __init__(self, fd: int):
        self.fd, self.buffer, self.eof = fd, b"", False

    def next(self, timeout: float | None, alive: Callable[[], bool] | None = None):
        """The next message; None at end of channel, or once ``alive()`` says the writer has
        exited (a process it started may hold the channel open); Timeout when ``timeout``
        passes first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.buffer:
            if self.eof:
                return None
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            wait = None if left is None else min(left, MAX_WAIT_S)
            if alive is not None:
                wait = POLL_S if wait is None else min(wait, POLL_S)
            ready, _, _ = select.select([self.fd], [], [], wait)
            if not ready:
                if alive is not None and not alive():
                    return None
                if wait == left:
                    raise Timeout
                continue
            chunk = os.read(self.fd, 1 << 16)
            self.eof = not chunk
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return decode(line.decode(errors="replace"))


def writer():
    """The worker's end of the channel (from the environment), or None outside a runner."""
    fd = os.environ.get(CHANNEL_FD)
    return os.fdopen(int(fd), "w", buffering=1) if fd else None


def send(stream, message) -> None:
    stream.write(encode(message))
    stream.flush()
