"""jax-sharded: right on one and two host devices (in a fresh process, as JAX needs), its
all-reduce timing, refusals, and the multi-process path through jax.distributed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax")
ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, numpy as np
from harness import check
from implementations import numpy_backprop, registry
from implementations.problem import NetworkSpec, flatten, make_problem
out = {}
for dtype in ("float64", "float32"):
    for n in (1, 2):
        p = make_problem(NetworkSpec((4, 8, 4), "tanh", "linear", True, dtype), 8)
        t = registry.get("jax-sharded").at(n).make(p)
        _, ref = numpy_backprop.grads(p.spec, check.rounded_start(p), p.x, p.y)
        grad = max(max(check.normalised_errors(flatten(g), flatten(ref)))
                   for g in t.rank_grads())
        t.run(10)
        traj = check.compare_to_reference(p, "x", t.params(), check.rounded_start(p), 10)
        ranks = t.rank_params()
        same = all(np.array_equal(a, b) for r in ranks for a, b in zip(flatten(r),
                                                                       flatten(ranks[0])))
        out[f"{dtype} {n}"] = {"grad": grad, "traj": traj.passed, "same": same,
                               "ranks": len(ranks), "info": t.distributed}
mod = registry.import_module("jax-sharded")
out["allreduce"] = mod.time_allreduce(2, [4, 1024], "cpu", 0.2)
print(json.dumps(out))
"""


def run_python(code: str, env=None, timeout=120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores")
def test_one_and_two_devices_are_right_and_agree():
    proc = run_python(CHILD)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    for dtype, tol in (("float64", 1e-12), ("float32", 1e-5)):
        for n in (1, 2):
            case = got[f"{dtype} {n}"]
            assert case["grad"] < tol and case["traj"] and case["same"], (dtype, n, case)
            cores = [[c] for c in sorted(os.sched_getaffinity(0))[:n]]
            assert case["ranks"] == n and case["info"]["cores"] == cores
    curve = got["allreduce"]
    assert curve["bytes"] == [4, 1024] and curve["backend"] == "xla-cpu in-process"
    assert all(t > 0 for t in curve["median_s"])


def test_a_process_that_started_jax_with_one_device_refuses_two():
    code = ("import jax; jax.devices()\n"
            "from implementations import registry\n"
            "from implementations.contract import Unavailable\n"
            "from implementations.problem import NetworkSpec, make_problem\n"
            "p = make_problem(NetworkSpec((2, 2), 'tanh'), 4)\n"
            "try:\n"
            "    registry.get('jax-sharded').at(2).make(p)\n"
            "except Unavailable as exc:\n"
            "    print(exc)\n")
    proc = run_python(code, {"XLA_FLAGS": ""})
    assert "2 workers need 2 cpu devices, this process has 1" in proc.stdout, proc.stderr


def test_oversubscribe_gives_more_host_devices_than_cores():
    """--oversubscribe (BACKPROP_BENCH_OVERSUBSCRIBE=1) before JAX starts: more workers than
    cores run, sharing them, and say so; without it the refusal names the flag."""
    cores = len(os.sched_getaffinity(0))
    code = ("import json\n"
            "from implementations import registry\n"
            "from implementations.contract import Unavailable\n"
            "from implementations.problem import NetworkSpec, make_problem\n"
            f"p = make_problem(NetworkSpec((2, 2), 'tanh'), {2 * (cores + 1)})\n"
            "try:\n"
            f"    t = registry.get('jax-sharded').at({cores + 1}).make(p)\n"
            "    print(json.dumps(t.distributed))\n"
            "except Unavailable as exc:\n"
            "    print(exc)\n")
    shared = run_python(code, {"XLA_FLAGS": "", "BACKPROP_BENCH_OVERSUBSCRIBE": "1"})
    info = json.loads(shared.stdout.strip().splitlines()[-1])
    assert info["oversubscribed"] and info["host_devices"] >= cores + 1, shared.stdout
    refused = run_python(code, {"XLA_FLAGS": "", "BACKPROP_BENCH_OVERSUBSCRIBE": "0"})
    assert f"{cores + 1} workers need {cores + 1} cpu devices, this process has {cores} (one " \
        "host device per usable core, 8 per core with --oversubscribe" in refused.stdout, \
        refused.stdout + refused.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_together_through_jax_distributed(tmp_path):
    """The README's jax.distributed commands, both processes on localhost."""
    port, out = free_port(), tmp_path / "jax.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "harness.procs.multinode", "jax-distributed", "--coordinator",
         f"localhost:{port}", "--num-processes", "2", "--process-id", str(i), "--widths",
         "4,8,4", "--batch", "8", "--steps", "10", "--dtype", "float64", "--timeout", "60",
         "--out", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True) for i in (0, 1)]
    try:
        logs = [p.communicate(timeout=120)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 9)
    assert [p.returncode for p in procs] == [0, 0], logs
    summary = json.loads(out.read_text())
    assert summary["world"] == 2 and summary["rank_spread"] == 0.0 and summary["passed"]
    assert summary["trajectory_error"] < 1e-8
