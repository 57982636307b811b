"""The one way the harness runs work in a child process.

The parent starts ``python -m MODULE`` (behind an optional prefix of the command, Valgrind's),
writes the job as JSON to its stdin, and reads its answers as typed messages
(``harness.procs.messages``) on a pipe of its own. So:

* **answers on a channel of their own**: the child's stdout and stderr go to a log that is
  unlinked at once, so nothing a framework or a ``sitecustomize`` prints can be taken for an
  answer; the log's last line says why a child died;
* **it dies with its parent** (``PR_SET_PDEATHSIG``, asked before the command is executed,
  so that a prefix such as Valgrind is covered from its first instruction): a SIGKILL of the
  command leaves no child running;
* **it is killed with its whole process group**: it runs in a session of its own, killed at
  once on a timeout or an interrupt; and the lifeline (``harness.procs.lifeline``) kills
  whatever it started, and removes the folder it was given, once the parent is done with it,
  however the parent ends.

``run`` drives one child through its messages (the runner's workers); ``ask`` is the short
form for a child that gives one ``Answer`` (the isolated frameworks of ``check`` and ``demo``,
``check --workers``, the all-reduce timing). The child's side is ``serve`` (one answer) or
``channel`` (a stream of messages, the worker's).
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.measure import callgrind
from harness.procs import lifeline, messages
from harness.record import schema
from harness.tables import printable

ROOT = str(Path(__file__).resolve().parents[2])
STOP_S = 30  # a child that has closed its channel gets this long to exit, then is killed
LINE_CHARS = 400  # of a log's last line, as it is shown and stored


def environment(channel_fd: int) -> dict:
    """The child's environment: this checkout first on its path, and its channel."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    env[messages.CHANNEL_FD] = str(channel_fd)
    return env


def command(module: str) -> list[str]:
    return [sys.executable, "-m", module]


def run(argv: list[str], job, on_message: Callable, timeout: Callable[[], float],
        env: Callable[[dict], dict] | None = None, folder: Path | None = None
        ) -> tuple[int | None, str, bool]:
    """Run one child (``argv``, its environment made by ``env`` from ``environment``) until
    it closes its channel or a read times out (then its process group is killed), passing
    each message to ``on_message``; (exit status, last line of its log, timed out). A
    ``folder`` is made for the child before it starts and removed after it, even when this
    process is killed."""
    read_end, write_end = os.pipe()
    with tempfile.TemporaryFile() as log, lifeline.Lifeline(folder) as life:
        try:
            proc = subprocess.Popen(life.command(argv), stdin=subprocess.PIPE, stdout=log,
                                    stderr=log,
                                    pass_fds=(write_end, life.fd),
                                    env=(env or dict)({**environment(write_end), **life.env()}),
                                    start_new_session=True)
        finally:
            os.close(write_end)
        reader, timed_out, done = messages.Reader(read_end), False, False
        try:
            try:
                body = schema.to_dict(job) if not isinstance(job, dict) else job
                proc.stdin.write(json.dumps(body, allow_nan=True).encode())
                proc.stdin.close()
            except BrokenPipeError:
                pass  # a child gone before its job: judged by its exit
            # on_message's own errors (our stdout closed: BrokenPipeError) end the child
            while (message := reader.next(timeout(), lambda: proc.poll() is None)) is not None:
                on_message(message)
            done = True
        except messages.Timeout:
            timed_out = True
        except schema.SchemaError:
            done = True  # a garbled message: the child is judged by its exit
        finally:  # interrupted (Ctrl-C, SIGTERM) or timed out: the child is killed at once
            os.close(read_end)
            status = stop(proc, force=not done)
        return status, last_line(log), timed_out


@dataclass
class Gathered:
    """Everything a child sent before it ended, and how it ended."""

    answers: list[dict] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    status: int | None = None
    last: str = ""
    timed_out: bool = False

    def ended(self, timeout_s: float, case_timeout_s: float | None) -> str | None:
        """Why it ended before answering (None: it exited 0, answered): one line."""
        if self.timed_out and self.started and case_timeout_s:
            return (f"{self.started[-1]} did not finish within {case_timeout_s:g} s "
                    f"(--timeout): its process was killed")
        if self.timed_out:
            return f"timed out after {timeout_s:g} s (the process was killed)"
        if self.answers and self.status == 0:
            return None
        said = f": {self.last}" if self.last else " (it wrote nothing to its log)"
        return f"its process exited with status {self.status} before it answered{said}"[:500]


def gather(module: str, job, timeout_s: float, case_timeout_s: float | None = None
           ) -> Gathered:
    """``python -m module`` on ``job``: every Answer it sent, the cases it began, and how it
    ended. ``timeout_s`` bounds the wait for each message; a child that sends CaseStarted
    gets ``case_timeout_s`` for that case from then on."""
    got = Gathered()

    def take(message) -> None:
        if isinstance(message, messages.Answer):
            got.answers.append(message.body)
        elif isinstance(message, messages.CaseStarted):
            got.started.append(message.id)

    def timeout() -> float:
        return case_timeout_s if got.started and case_timeout_s else timeout_s

    got.status, got.last, got.timed_out = run(command(module), job, take, timeout)
    return got


def ask(module: str, job, timeout_s: float, case_timeout_s: float | None = None) -> dict:
    """``python -m module`` on ``job``: its last Answer's body, or {"error": reason} when it
    crashed, timed out (then it was killed) or answered nothing."""
    got = gather(module, job, timeout_s, case_timeout_s)
    error = got.ended(timeout_s, case_timeout_s)
    return {"error": error} if error else got.answers[-1]


def stop(proc: subprocess.Popen, force: bool) -> int | None:
    """Wait for a child that has closed its channel, or kill its whole process group (at
    once if ``force``, or when it does not exit); its exit status."""
    try:
        if not force:
            return proc.wait(timeout=STOP_S)
    except subprocess.TimeoutExpired:
        pass
    finally:
        if proc.returncode is None:
            kill_group(proc)
    return proc.returncode


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def last_line(log) -> str:
    """The last line of a child's log, or Valgrind's account of why it stopped one, as plain
    text (``tables.printable``): it is shown and stored, and a child may have written anything."""
    log.seek(0)
    lines = [printable(line) for line in log.read().decode(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    return printable(callgrind.why_it_died(lines) or (lines[-1] if lines else ""), LINE_CHARS)


# ---- the child's side ---------------------------------------------------------------------------

def channel():
    """In a child: the channel's writer (None when this process was not started by
    ``run``). It dies with the parent and has its guard already: ``run`` started it so."""
    return messages.writer()


def serve(fn: Callable[[dict], dict]) -> int:
    """A child's main: answer ``fn(job)`` once on the channel (exit 2 outside ``run``)."""
    stream = channel()
    if stream is None:
        print(f"{sys.argv[0]}: started by the harness only", file=sys.stderr)
        return 2
    job = json.loads(sys.stdin.read())
    answer = fn(job) if not takes_channel(fn) else fn(job, stream)
    messages.send(stream, messages.Answer(answer))
    return 0


def takes_channel(fn: Callable) -> bool:
    """Whether ``fn`` takes the channel as its second argument (to say CaseStarted)."""

    return len(inspect.signature(fn).parameters) >= 2


def case_started(stream, case: str) -> None:
    """In a child: the case it begins now (the parent's per-case timeout starts)."""
    if stream is not None:
        messages.send(stream, messages.CaseStarted(case))
