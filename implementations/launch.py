"""Worker processes for the data-parallel Trainers: cores, and torch's elastic launcher.

``cores_for`` gives each of N workers its share of this process's cores: one core each (a
worker is the CPU's analogue of one device), refusing more workers than cores unless
``BACKPROP_BENCH_OVERSUBSCRIBE=1`` allows it (then the workers share cores, and say so).

``RankGroup`` starts N rank processes with ``torch.distributed.launcher.api.elastic_launch``
(what ``torchrun --standalone`` runs: c10d rendezvous on a free localhost port, no restarts)
in a background thread, so that the Trainer's own process stays free to time them, and talks
to them through queues: one command queue per rank, one answer queue for all. A rank that
raises answers ("error", rank, reason) before it dies; a rank that dies or hangs ends the
launcher (the others fail their next collective within the process-group timeout), and the
group raises ``RankFailure`` with the reason. Ranks die with the thread that started them
(``PR_SET_PDEATHSIG``), and ``close()`` (also run when the group is garbage or the process
exits) stops them, kills any left by pid and removes their log folder.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import math
import multiprocessing as mp
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from implementations.contract import Unavailable
from implementations.problem import BenchError

OVERSUBSCRIBE = "BACKPROP_BENCH_OVERSUBSCRIBE"
PG_TIMEOUT = "BACKPROP_BENCH_PG_TIMEOUT"
DEFAULT_PG_TIMEOUT_S = 60.0  # well under the runner's per-case timeout (180 s and more)
SHUTDOWN_S = 5  # SIGTERM to SIGKILL, for ranks the launcher has to stop
POLL_S = 0.2
PR_SET_PDEATHSIG = 1


class RankFailure(RuntimeError):
    """A rank raised, died or hung: the reason, in one line."""


def pg_timeout_s() -> float:
    """The process-group timeout: how long a collective waits for a missing rank (a setting
    that is not a finite number of seconds above 0 is a BenchError, one line)."""
    text = os.environ.get(PG_TIMEOUT, "").strip()
    if not text:
        return DEFAULT_PG_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise BenchError(f"{PG_TIMEOUT}={text!r}: must be a number of seconds above 0")
    return value


def oversubscribe_allowed() -> bool:
    """Whether BACKPROP_BENCH_OVERSUBSCRIBE lets workers share cores ("1"; "0" or unset: no)."""
    text = os.environ.get(OVERSUBSCRIBE, "").strip()
    if text not in ("", "0", "1"):
        raise BenchError(f"{OVERSUBSCRIBE}={text!r}: must be 1 (allow) or 0 (refuse)")
    return text == "1"


def cores_for(workers: int, allowed: list[int] | None = None) -> tuple[list[list[int]], bool]:
    """(the cores of each worker, oversubscribed): one core per worker, in order.

    Raises Unavailable when there are fewer cores than workers, unless the environment
    variable BACKPROP_BENCH_OVERSUBSCRIBE=1 allows it; then workers share cores round-robin.
    """
    allowed = sorted(os.sched_getaffinity(0) if allowed is None else allowed)
    if workers <= len(allowed):
        return [[c] for c in allowed[:workers]], False
    if not oversubscribe_allowed():
        raise Unavailable(f"{workers} workers need {workers} cores, this process has "
                          f"{len(allowed)} ({allowed}): refused, since workers sharing a core "
                          f"time each other (--oversubscribe or {OVERSUBSCRIBE}=1 allows it)")
    return [[allowed[r % len(allowed)]] for r in range(workers)], True


def pin_threads_to(cores: list[int]) -> None:
    """Pin every thread this process has started so far (and later ones) to ``cores``."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cores)
        except OSError:  # a thread that has just ended
            pass


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when the thread that started it ends; ``parent_pid``
    (0: not known) is the parent that should be there, so that one that died before the
    request took effect is seen."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return  # not Linux: the parent's own clean-up is all there is
    if parent_pid and os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def resolve(module: str, name: str):
    """``module.name`` in a rank: the module is already loaded after fork; after spawn it is
    imported (an extra framework file through the registry, which knows its path)."""
    if module not in sys.modules:
        from implementations import (
            registry,  # the registry reads every framework file: only a spawned rank needs it
        )

        by_module = {registry.module_name(f): f for f in registry.FRAMEWORKS}
        if module in by_module:
            registry.import_module(by_module[module])
        else:
            importlib.import_module(module)
    return getattr(sys.modules[module], name)


def serve(commands, answers, rank: int, handle: Callable[[str, object], object]) -> None:
    """A rank's loop on its own command queue: run each command until "stop"; answer
    (name, rank, reply) unless the reply is None; on an exception answer ("error", rank,
    reason) and re-raise."""
    while True:
        name, arg = commands.get()
        if name == "stop":
            return
        try:
            reply = handle(name, arg)
        except BaseException as exc:
            answers.put(("error", rank, one_line(exc)))
            raise
        if reply is not None:
            answers.put((name, rank, reply))


def one_line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:300]


@dataclass
class Outcome:
    """What elastic_launch returned ({rank: value}) or raised, once it has ended."""

    result: dict | None = None
    error: BaseException | None = None


def launch_in_thread(config, entry, args: tuple, outcome: Outcome) -> None:
    """The launcher thread's body (a function, so that the thread holds no group)."""
    from torch.distributed.launcher.api import (
        elastic_launch,  # a framework, heavy: imported where it is used
    )

    try:
        outcome.result = elastic_launch(config, entry)(*args)
    except BaseException as exc:  # ChildFailedError, or a rendezvous that failed
        outcome.error = exc


def describe(error: BaseException | None) -> str:
    """The launcher's failure in one line: which rank ended how."""
    failures = getattr(error, "failures", None)
    if not failures:
        return one_line(error) if error else ""
    parts = []
    for rank, f in sorted(failures.items()):
        said = (f.message or "").strip().splitlines() if isinstance(f.message, str) else []
        why = f"signal {-f.exitcode}" if f.exitcode < 0 else f"status {f.exitcode}"
        parts.append(f"rank {rank} exited with {why}" + (f" ({said[0][:150]})" if said else ""))
    return "; ".join(parts)


def shutdown(commands: list, thread: threading.Thread, pids: list[int], logs: str) -> None:
    """Stop the ranks: ask, wait, then SIGKILL any still there; remove their logs."""
    for q in commands:
        try:
            q.put(("stop", None))
        except (OSError, ValueError):
            pass
    thread.join(SHUTDOWN_S + 5)
    if thread.is_alive():
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        thread.join(SHUTDOWN_S + 5)
    shutil.rmtree(logs, ignore_errors=True)


class RankGroup:
    """N rank processes running ``entry(job, commands, answers)``; see the module docstring.

    ``entry`` must be a module-level function (a spawned rank imports it by name).
    """

    def __init__(self, workers: int, entry: Callable, job, device: str):
        from torch.distributed.elastic.multiprocessing import (
            DefaultLogsSpecs,  # a framework, heavy: imported where it is used
        )
        from torch.distributed.launcher.api import (
            LaunchConfig,  # a framework, heavy: imported where it is used
        )

        # its warning that, from a thread, it cannot catch signals to stop its ranks: they
        # die with that thread (die_with_parent) and with close()
        logging.getLogger("torch.distributed.elastic.multiprocessing.api").setLevel(
            logging.ERROR)

        # fork starts a rank in a fraction of a second where spawn re-imports torch (seconds
        # on a small machine); the parent never computes with torch before it forks, and
        # each rank runs one thread. CUDA cannot be used in a child forked after the parent
        # touched it, so on a GPU the ranks are spawned.
        method = "spawn" if device == "cuda" else "fork"
        ctx = mp.get_context(method)
        self.commands = [ctx.Queue() for _ in range(workers)]
        self.answers = ctx.Queue()
        self.logs = tempfile.mkdtemp(prefix="backprop-bench-ranks-")
        config = LaunchConfig(
            min_nodes=1, max_nodes=1, nproc_per_node=workers, rdzv_backend="c10d",
            rdzv_endpoint="localhost:0", run_id=str(uuid.uuid4()), max_restarts=0,
            monitor_interval=0.1, start_method=method, shutdown_timeout=SHUTDOWN_S,
            logs_specs=DefaultLogsSpecs(log_dir=self.logs))
        self.outcome = Outcome()
        self.thread = threading.Thread(
            target=launch_in_thread, name="rank-launcher", daemon=True,
            args=(config, entry, (job, self.commands, self.answers), self.outcome))
        self.pids: list[int] = []
        self._finalizer = weakref.finalize(self, shutdown, self.commands, self.thread,
                                           self.pids, self.logs)
        self.thread.start()
        try:
            self.info = self.collect("ready", workers)
        except BaseException:
            self.close()
            raise
        self.pids += [i["pid"] for i in self.info]

    def send(self, name: str, arg=None) -> None:
        for q in self.commands:
            q.put((name, arg))

    def ask(self, name: str, arg=None, answers: int | None = None) -> list:
        """Send a command to every rank; the answers of the first ``answers`` ranks."""
        self.send(name, arg)
        return self.collect(name, len(self.commands) if answers is None else answers)

    def collect(self, name: str, count: int) -> list:
        """The next ``count`` answers called ``name``, by rank; RankFailure if a rank
        raised or the launcher ended first."""
        got: dict[int, object] = {}
        while len(got) < count:
            try:
                kind, rank, payload = self.answers.get(timeout=POLL_S)
            except queue.Empty:
                if not self.thread.is_alive():
                    raise RankFailure(self.failure("the workers ended")) from None
                continue
            if kind == "error":
                raise RankFailure(self.failure(f"rank {rank}: {payload}"))
            if kind == name:
                got[rank] = payload
        return [got[r] for r in sorted(got)]

    def failure(self, first: str) -> str:
        """The reason, with the launcher's account of every rank once it has ended."""
        self.thread.join(SHUTDOWN_S + 10)
        said = describe(self.outcome.error)
        return f"{first}; {said}" if said and said not in first else first

    def close(self) -> None:
        self._finalizer()
