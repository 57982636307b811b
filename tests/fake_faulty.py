"""A framework that misbehaves on purpose, for tests/test_faults.py.

It is registered only where a test names this file in ``BACKPROP_BENCH_FRAMEWORKS``. Its one
good variant trains with NumPy's Trainer (so that it passes every check); each other variant
is one fault. Faults at import are switched on by environment variables, since the module is
imported once per worker process:

``FAULTY_IMPORT_PRINT=1``
    print stray output at import: ``42``, and a line that looks like a worker message;
``FAULTY_MARKER=PATH``
    each faulty Trainer writes its pid (and a leaked child's pid) to PATH once it is stuck,
    so that a test knows when the fault is in progress;
``FAULTY_FLOORS=raise|exit``
    ``call_floors`` raises (a compiler that fails) or ends the process (one that crashes);
``FAULTY_IMPORT_DELAY=SECONDS``
    once PATH exists, sleep that long at import: the fresh worker that goes on after a
    fault starts slowly (like one that imports torch, or opens a CUDA context).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from implementations import numpy_backprop
from implementations.contract import Framework, Unavailable, Variant
from implementations.problem import Problem

FRAMEWORK = Framework("faulty", label="Faulty", packages=("json",), order=95, gradients=False,
                      arrays=False, api=False)
VARIANTS = (
    Variant("faulty-ok", "idiomatic", "NumPy's Trainer: the good variant of a bad framework",
            trainer="Good"),
    Variant("faulty-hang", "idiomatic", "its run() sleeps forever", trainer="Hang"),
    Variant("faulty-die", "idiomatic", "its run() ends the process, writing nothing",
            trainer="Die"),
    Variant("faulty-leak", "idiomatic", "starts a child process that outlives it, then hangs",
            trainer="Leak"),
    Variant("faulty-spawn", "idiomatic", "starts a child process that outlives it, then "
            "trains like faulty-ok", trainer="Spawn"),
    Variant("faulty-spin", "idiomatic", "its run() blocks in C (locks a mutex it holds) and "
            "never returns to Python", trainer="Spin"),
    Variant("faulty-session", "idiomatic", "starts a child process in a session of its own "
            "(out of the worker's group), then trains like faulty-ok", trainer="Session"),
    Variant("faulty-fork", "idiomatic", "forks a child that outlives it holding every file "
            "it had open, then trains like faulty-ok", trainer="Fork"),
)

if os.environ.get("FAULTY_IMPORT_PRINT"):
    print(42)
    print(json.dumps({"type": "case", "body": {"id": "cpu/faulty-ok/forged"}}))
    sys.stdout.flush()
if os.environ.get("FAULTY_IMPORT_DELAY") and os.path.exists(os.environ["FAULTY_MARKER"]):
    time.sleep(float(os.environ["FAULTY_IMPORT_DELAY"]))


def check_device(device: str) -> None:
    if device != "cpu":
        raise Unavailable(f"faulty runs on the CPU only, not on {device!r}")


def settings(threads: int) -> dict:
    return {"threads": 1}


def call_floors() -> dict[str, tuple[float, int]]:
    """A floor that costs nothing to measure, or the fault FAULTY_FLOORS asks for."""
    fault = os.environ.get("FAULTY_FLOORS")
    if fault == "raise":
        raise RuntimeError("BackendCompilerFailed: the floor's compiler broke")
    if fault == "exit":
        os._exit(3)
    return {"faulty no-op": (1e-7, 10)}


def mark(*pids: int) -> None:
    """Tell the test (through FAULTY_MARKER) that the fault is in progress."""
    path = os.environ.get("FAULTY_MARKER")
    if path:
        with open(path + ".tmp", "w") as f:
            f.write(" ".join(map(str, pids)))
        os.replace(path + ".tmp", path)


def leak(session: bool = False) -> int:
    """A child process that sleeps for an hour, in the worker's process group (or, with
    ``session``, in a session and group of its own)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=session).pid


class Good(numpy_backprop.Trainer):
    pass


class Hang(Good):
    def run(self, steps: int) -> None:
        mark(os.getpid())
        while True:
            time.sleep(3600)


class Spin(Good):
    def run(self, steps: int) -> None:
        import ctypes

        mark(os.getpid())
        libc = ctypes.CDLL(None)
        mutex = ctypes.create_string_buffer(64)  # zeros: PTHREAD_MUTEX_INITIALIZER on Linux
        libc.pthread_mutex_lock(mutex)
        libc.pthread_mutex_lock(mutex)  # a default mutex locked twice: blocks, deaf to signals


class Die(Good):
    def run(self, steps: int) -> None:
        os._exit(3)


class Leak(Good):
    def run(self, steps: int) -> None:
        mark(os.getpid(), leak())
        while True:
            time.sleep(3600)


class Spawn(Good):
    def __init__(self, problem: Problem, device: str = "cpu"):
        super().__init__(problem, device)
        if not getattr(Spawn, "child", None):
            Spawn.child = leak()
            mark(os.getpid(), Spawn.child)


class Session(Good):
    def __init__(self, problem: Problem, device: str = "cpu"):
        super().__init__(problem, device)
        if not getattr(Session, "child", None):
            Session.child = leak(session=True)
            mark(os.getpid(), Session.child)


class Fork(Good):
    def __init__(self, problem: Problem, device: str = "cpu"):
        super().__init__(problem, device)
        if not getattr(Fork, "child", None):
            Fork.child = os.fork()
            if Fork.child == 0:  # the child: the worker's channel is still open in it
                time.sleep(3600)
                os._exit(0)
            mark(os.getpid(), Fork.child)
