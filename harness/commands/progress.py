"""A progress bar with an ETA for long runs (stderr; one line per case when not a terminal)."""

from __future__ import annotations

import sys
import time

from harness.record.results import Case
from harness.tables import fmt_time


class Bar:
    """Call ``update(case, done, total)`` after each case; ``close()`` at the end."""

    def __init__(self, total: int, stream=None, width: int = 30):
        self.total, self.width = total, width
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def line(self, done: int, label: str) -> str:
        elapsed = time.monotonic() - self.start
        eta = elapsed / done * (self.total - done) if done else 0.0
        filled = int(self.width * done / max(1, self.total))
        bar = "#" * filled + "-" * (self.width - filled)
        return (f"[{bar}] {done}/{self.total}  elapsed {clock(elapsed)}  ETA {clock(eta)}  "
                f"{label}")

    def update(self, case: Case, done: int, total: int) -> None:
        self.total = total
        result = f"{fmt_time(case.median)}/step" if case.ok else case.status
        label = f"{case.id}: {result}"
        if self.tty:
            self.stream.write("\r\033[K" + self.line(done, label)[:200])
        else:
            self.stream.write(self.line(done, label) + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s"
