"""One JSON job in a fresh Python process: for work that needs a process of its own.

A JAX process fixes its number of host devices when JAX starts, and a data-parallel
Trainer's ranks are best forked from a process that has computed nothing yet, so
``check --workers`` and ``scale``'s all-reduce timing run their framework code through
here: ``run(module, job, timeout_s)`` starts ``python -m module`` in a session of its own,
writes ``job`` as JSON to its stdin and reads a JSON object from the last line of its
stdout; on a crash or a timeout (then the whole session is killed) it returns
``{"error": reason}``. The child calls ``serve(fn)``, which dies with its parent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable

from harness.procs import messages


def run(module: str, job: dict, timeout_s: float) -> dict:
    """``python -m module`` on ``job``; its answer, or {"error": reason}."""
    from harness.procs.runner import worker_env

    env = worker_env(-1)
    del env[messages.CHANNEL_FD]  # no message channel: the answer is the last stdout line
    proc = subprocess.Popen([sys.executable, "-m", module], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(json.dumps(job), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill(proc)
        return {"error": f"timed out after {timeout_s:g} s (the process was killed)"}
    except BaseException:
        kill(proc)
        raise
    lines = out.strip().splitlines()
    if proc.returncode or not lines:
        last = (err.strip().splitlines() or ["(nothing on stderr)"])[-1]
        return {"error": f"exited with status {proc.returncode}: {last}"[:500]}
    return json.loads(lines[-1])


def kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.communicate()


def serve(fn: Callable[[dict], dict]) -> int:
    """The child's side: die with the parent, answer ``fn(job)`` on one stdout line."""
    from harness.procs.worker import die_with_parent

    die_with_parent()
    answer = fn(json.loads(sys.stdin.read()))
    sys.stdout.write(json.dumps(answer) + "\n")
    return 0
