"""The command line's first moments, while ``harness.cli`` imports the rest of the harness.

That import takes about 0.3 s, and a Ctrl-C or a SIGTERM during it would end the process with
a traceback from deep inside an import (Ctrl-C), or with no word at all (SIGTERM). Importing
this module, which ``harness.cli`` does before anything else of ours, makes either end the
process with one line and the status a shell expects (130, 143); ``done()``, once the rest has
imported, gives the signals back to Python, and ``cli.main`` takes over (it exits 130 with
the same line). A process that set handlers of its own before it imported ``harness.cli``
keeps them, and one that imports it outside its main thread is left as it is.

It imports nothing but the standard library.
"""

from __future__ import annotations

import os
import signal

from harness import PROG

PYTHONS = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}


def end(signum: int, frame) -> None:
    """One line and the signal's exit status: nothing else can run yet."""
    os.write(2, f"{PROG}: interrupted\n".encode())
    os._exit(128 + signum)


def guard() -> dict:
    """``end`` for each signal that still has Python's handler; {signal: Python's handler}."""
    kept = {}
    for signum, python in PYTHONS.items():
        try:
            if signal.getsignal(signum) is python:
                kept[signum] = signal.signal(signum, end)
        except ValueError:  # not the main thread: signals are not ours to set
            return kept
    return kept


KEPT = guard()


def done() -> None:
    """Python's handlers back (the rest of the command line has imported)."""
    for signum, python in KEPT.items():
        if signal.getsignal(signum) is end:
            signal.signal(signum, python)
    KEPT.clear()
