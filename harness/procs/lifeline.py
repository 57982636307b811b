"""Nothing a child starts outlives its run, even when the runner is killed outright.

A child runs in a process group of its own, but a SIGKILL of the runner cannot be caught, and
the processes the child starts (a compiler server, a data loader, anything a framework
spawns) would be orphaned, still running. So the runner hands each child the read end of a
pipe, the *lifeline*, whose only write end the runner holds; its end comes when the runner is
done with the child (``Lifeline`` closes it after the child has exited or been killed), or
when the runner dies, however it dies (the kernel closes it).

Every child starts as this file, run by a bare interpreter (``python -I -S lifeline.py FD
TOKEN PARENT FOLDER -- COMMAND ...``, the prefix ``Lifeline.command`` gives), which

1. asks Linux to SIGKILL it when the runner's thread ends (``PR_SET_PDEATHSIG``), and ends at
   once if the runner is already gone: the request survives ``exec``, so it covers COMMAND
   from its first instruction, a prefix such as ``setarch`` and ``valgrind`` included, not
   only once COMMAND's own Python has started;
2. forks the *guard*, which holds nothing but the lifeline and blocks reading it;
3. makes FOLDER (private: a counting worker's Callgrind dumps) if one is named, and becomes
   COMMAND.

When the lifeline ends, the guard kills every process whose environment holds the
lifeline's token (``TOKEN_ENV``, which everything the child starts inherits, so that a
process that left the group with ``setsid`` is found too), waits for the child to be gone,
removes FOLDER and kills its whole process group, itself last. The runner does the same
after a child it stopped (a finish, or a timeout, when the guard died with the group). What
neither reaches: a process that started with an environment of its own (``env={}``, ``env
-i``), and one another user owns.

It imports nothing but the standard library: it runs before, and outside, everything else.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import sys
import time
import uuid
from pathlib import Path

TOKEN_ENV = "BACKPROP_BENCH_LIFELINE_TOKEN"
PR_SET_PDEATHSIG = 1
GONE_S = 5.0  # how long the guard waits for the child to be gone before removing its folder


class Lifeline:
    """The runner's side, around one child: ``command(argv)`` starts it behind the guard,
    with ``fd`` passed and ``env()`` in its environment; leaving the ``with`` block closes the
    write end, and whatever is left is killed and ``folder`` removed."""

    def __init__(self, folder: Path | None = None):
        self.folder = folder

    def __enter__(self) -> Lifeline:
        self.fd, self._write_end = os.pipe()
        self.token = uuid.uuid4().hex
        return self

    def env(self) -> dict[str, str]:
        return {TOKEN_ENV: self.token}

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` behind the guard: this file, run by a bare interpreter (-I -S: no site,
        no sitecustomize, no PYTHONPATH: it starts in milliseconds and runs nothing else)."""
        return [sys.executable, "-I", "-S", __file__, str(self.fd), self.token,
                str(os.getpid()), str(self.folder or ""), "--", *argv]

    def __exit__(self, *exc) -> None:
        os.close(self._write_end)
        os.close(self.fd)
        sweep(self.token)
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)


def marker(token: str) -> bytes:
    return f"{TOKEN_ENV}={token}".encode()


def sweep(token: str) -> list[int]:
    """SIGKILL every process of ours whose environment holds this lifeline's token (what a
    child started, in its group or out of it), but this one; the pids killed."""
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


# ---- the child's first moments: this file as a program ----------------------------------------

def die_with(parent: int) -> None:
    """Step 1: SIGKILL this process when the runner's thread ends; gone at once if it has."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the runner's own clean-up is all there is
    if os.getppid() != parent:  # the runner died before the request took effect
        os._exit(1)


def guard(fd: int, token: str, folder: str) -> None:
    """Step 2, in the forked guard: hold only the lifeline, wait for its end, then kill and
    remove what the child left (the module docstring); never returns."""
    child = os.getppid()
    null = os.open(os.devnull, os.O_RDWR)
    for std in (0, 1, 2):
        os.dup2(null, std)
    os.closerange(3, fd)  # the child's channel, stdin and log are not the guard's to hold
    os.closerange(fd + 1, 1 << 16)
    while os.read(fd, 4096):
        pass
    sweep(token)
    deadline = time.monotonic() + GONE_S
    while os.getppid() == child and time.monotonic() < deadline:  # until it can write no more
        time.sleep(0.01)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
    os.killpg(0, signal.SIGKILL)


def main(argv: list[str]) -> None:
    """``lifeline.py FD TOKEN PARENT FOLDER -- COMMAND ...``: steps 1 to 3."""
    fd, token, parent, folder = int(argv[0]), argv[1], int(argv[2]), argv[3]
    command = argv[argv.index("--") + 1:]
    die_with(parent)
    if os.fork() == 0:
        try:
            guard(fd, token, folder)
        finally:
            os._exit(0)
    os.close(fd)  # the guard holds it now; the child and what it starts need not
    if folder:
        os.mkdir(folder, 0o700)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
