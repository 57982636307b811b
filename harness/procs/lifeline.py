"""Nothing a worker starts outlives its run, even when the runner is killed outright.

A worker runs in a process group of its own and dies with the runner (``PR_SET_PDEATHSIG``),
but the processes *it* starts (a compiler server, a data loader, anything a framework
spawns) would not: they would be orphaned, still running. So the runner hands each worker
the read end of a pipe, the *lifeline*, whose only write end the runner holds; the worker
starts a tiny guard process in its group that blocks reading it. The read ends only when
every write end is closed: when the runner is done with the worker (``Lifeline`` closes it
after the worker has exited or been killed), or when the runner dies, however it dies (the
kernel closes it). Then the guard kills its whole process group: whatever the worker left
behind, and itself.

A process that leaves the group (``setsid``, ``start_new_session=True``) is out of reach of
a group kill. Each lifeline therefore carries a token in the worker's environment
(``TOKEN_ENV``), which every process the worker starts inherits: the guard, and the parent
after it stopped the worker (a finish or a timeout, when the guard died with the group),
kill every process whose environment holds it (``sweep``). What neither reaches: a process
that started with an environment of its own (``env={}``, ``env -i``), and one another user
owns.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

ENV = "BACKPROP_BENCH_LIFELINE_FD"
TOKEN_ENV = "BACKPROP_BENCH_LIFELINE_TOKEN"

# -I -S: no site, no sitecustomize, no PYTHONPATH: a bare interpreter that starts in
# milliseconds and runs nothing but this
GUARD = ("import os, signal, sys\n"
         "fd, token = int(sys.argv[1]), sys.argv[2].encode()\n"
         "while os.read(fd, 4096):\n"
         "    pass\n"
         "for pid in (p for p in os.listdir('/proc') if p.isdigit()):\n"
         "    try:\n"
         "        if int(pid) != os.getpid() and token and token in open(\n"
         "                f'/proc/{pid}/environ', 'rb').read():\n"
         "            os.kill(int(pid), signal.SIGKILL)\n"
         "    except OSError:\n"
         "        pass\n"
         "os.killpg(0, signal.SIGKILL)\n")

_guard: subprocess.Popen | None = None  # kept referenced for the worker's whole life


class Lifeline:
    """The runner's side, around one worker: ``fd`` and ``env()`` go to the worker; leaving
    the ``with`` block closes the write end, and the guard kills what is left."""

    def __enter__(self) -> Lifeline:
        self.fd, self._write_end = os.pipe()
        self.token = uuid.uuid4().hex
        return self

    def env(self) -> dict[str, str]:
        return {ENV: str(self.fd), TOKEN_ENV: self.token}

    def __exit__(self, *exc) -> None:
        os.close(self._write_end)
        os.close(self.fd)
        sweep(self.token)


def marker(token: str) -> bytes:
    return f"{TOKEN_ENV}={token}".encode()


def sweep(token: str) -> list[int]:
    """SIGKILL every process of ours whose environment holds this lifeline's token (what a
    worker started, in its group or out of it); the pids killed."""
    mark, killed = marker(token), []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        if pid == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if mark in f.read():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
        except OSError:  # gone already, or not ours to read
            pass
    return killed


def guard() -> None:
    """The worker's side: start the guard on the lifeline named in the environment (if any),
    before anything else is started."""
    global _guard
    fd = os.environ.get(ENV)
    if not fd or _guard is not None:
        return
    token = marker(os.environ.get(TOKEN_ENV, "")).decode() if os.environ.get(TOKEN_ENV) else ""
    _guard = subprocess.Popen([sys.executable, "-I", "-S", "-c", GUARD, fd, token],
                              pass_fds=(int(fd),), stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(int(fd))  # the guard holds it now; the framework's children need not
