"""A time limit on each piece of check work (one subject's gradients or trajectory on one
network): `check --timeout`, and the same in `demo` and in the processes they start.

``limit(what)`` is used by ``judge.attempt``. In the main thread it arms SIGALRM: work that
runs past ``seconds()`` raises ``CaseTimeout`` there, which ``attempt`` turns into a failing
row with that cause, and the check goes on with the next piece. Work that hangs where Python
never runs again (inside a C call, or a JIT callback waiting on another thread) cannot be
interrupted; a watchdog thread then ends the process ``GRACE_S`` later with one line on
stderr and exit status ``EXIT_HUNG``, and the processes it started die with it (they die
with their parent).
"""

from __future__ import annotations

import math
import os
import signal
import threading
from contextlib import contextmanager

DEFAULT_S = 600.0  # a cold torch-loop build takes about 4 minutes here
GRACE_S = 15.0
EXIT_HUNG = 124  # as timeout(1) exits
ENV = "BACKPROP_BENCH_CHECK_TIMEOUT"  # how a child process learns its parent's --timeout

_active = threading.local()


class CaseTimeout(Exception):
    """A piece of check work that ran past its time limit."""


def seconds() -> float:
    """The limit in seconds: ``--timeout`` (passed on to children in ENV), or DEFAULT_S."""
    text = os.environ.get(ENV, "")
    try:
        value = float(text) if text else DEFAULT_S
    except ValueError:
        value = DEFAULT_S
    return value if math.isfinite(value) and value > 0 else DEFAULT_S


def set_seconds(value: float | None) -> None:
    """``--timeout``: for this process and every check process it starts."""
    if value is not None:
        os.environ[ENV] = repr(float(value))


@contextmanager
def seconds_set(value: float | None):
    """``set_seconds`` for the body only (the command, in a process that may run others)."""
    before = os.environ.get(ENV)
    set_seconds(value)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before


@contextmanager
def limit(what: str):
    """Run the body within ``seconds()``: CaseTimeout if it runs past them, the end of the
    process if it cannot be interrupted. Nested limits are the outer one's."""
    if getattr(_active, "on", False) or threading.current_thread() is not threading.main_thread():
        yield
        return
    limit_s = seconds()

    def alarm(signum, frame):
        raise CaseTimeout(f"did not finish within {limit_s:g} s (--timeout); stopped there")

    finished = threading.Event()

    def watchdog() -> None:
        if not finished.wait(limit_s + GRACE_S):
            os.write(2, f"backprop-bench: error: {what} did not finish within {limit_s:g} s "
                        f"(--timeout) and could not be interrupted (it hangs outside Python): "
                        f"the check stopped\n".encode(errors="replace"))
            os._exit(EXIT_HUNG)

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, limit_s)
    threading.Thread(target=watchdog, name="check-deadline", daemon=True).start()
    _active.on = True
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        finished.set()
        _active.on = False
