"""Run in a process of its own by tests/test_contract.py: import each framework named on the
command line, one after another, and print (as JSON) the process-wide state each import
changed that another framework in the same process would read.

The state looked at: the recursion limit and the switch interval, the signal handlers, the
garbage collector's settings, the thread stack size, the locale, the umask, a trace or
profile function, NumPy's error state and print options, and every environment variable
(thread counts, devices, backends). A framework that is not ``isolated`` shares ``check``'s
and ``demo``'s process with the others, and must change none of it.
"""

from __future__ import annotations

import gc
import json
import locale
import os
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from implementations import registry  # noqa: E402

SIGNALS = ("SIGINT", "SIGTERM", "SIGCHLD", "SIGPIPE", "SIGHUP", "SIGUSR1", "SIGUSR2")


def state() -> dict[str, str]:
    """The process-wide state, one readable string per item."""
    found = {"recursion limit": sys.getrecursionlimit(),
             "switch interval": sys.getswitchinterval(),
             "gc": (gc.isenabled(), gc.get_threshold()),
             "thread stack size": threading.stack_size(),
             "locale": locale.setlocale(locale.LC_ALL),
             "umask": os.umask(os.umask(0o022)),
             "trace and profile functions": (sys.gettrace(), sys.getprofile()),
             "NumPy error state": np.geterr(),
             "NumPy print options": np.get_printoptions()}
    found.update({f"handler of {name}": signal.getsignal(getattr(signal, name))
                  for name in SIGNALS})
    found.update({f"${key}": value for key, value in os.environ.items()})
    return {k: repr(v) for k, v in found.items()}


def changes(before: dict, after: dict) -> dict[str, list]:
    return {k: [before.get(k), after.get(k)] for k in sorted(before.keys() | after.keys())
            if before.get(k) != after.get(k)}


def main(names: list[str]) -> int:
    out = {}
    for name in names:
        before = state()
        try:
            registry.import_module(name)
        except registry.Unavailable as exc:
            out[name] = {"unavailable": str(exc)}
            continue
        out[name] = changes(before, state())
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
