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
"""

from __future__ import annotations

import os
import subprocess
import sys

ENV = "BACKPROP_BENCH_LIFELINE_FD"

# -I -S: no site, no sitecustomize, no PYTHONPATH: a bare interpreter that starts in
# milliseconds and runs nothing but this
GUARD = ("import os, signal, sys\n"
         "fd = int(sys.argv[1])\n"
         "while os.read(fd, 4096):\n"
         "    pass\n"
         "os.killpg(0, signal.SIGKILL)\n")

_guard: subprocess.Popen | None = None  # kept referenced for the worker's whole life


class Lifeline:
    """The runner's side, around one worker: ``fd`` and ``env()`` go to the worker; leaving
    the ``with`` block closes the write end, and the guard kills what is left."""

    def __enter__(self) -> Lifeline:
        self.fd, self._write_end = os.pipe()
        return self

    def env(self) -> dict[str, str]:
        return {ENV: str(self.fd)}

    def __exit__(self, *exc) -> None:
        os.close(self._write_end)
        os.close(self.fd)


def guard() -> None:
    """The worker's side: start the guard on the lifeline named in the environment (if any),
    before anything else is started."""
    global _guard
    fd = os.environ.get(ENV)
    if not fd or _guard is not None:
        return
    _guard = subprocess.Popen([sys.executable, "-I", "-S", "-c", GUARD, fd],
                              pass_fds=(int(fd),), stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(int(fd))  # the guard holds it now; the framework's children need not
