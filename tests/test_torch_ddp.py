"""torch-ddp: right on one and two workers, refusals, faults that end a case, and the
multi-node launch path (two torchrun agents on localhost).

Multi-process tests use tiny networks and a 3 s process-group timeout; every test looks in
/proc for processes it started (marked by an environment variable) that outlived it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from harness import check
from harness.measure.timing import TimingConfig
from harness.procs import messages, worker
from harness.record.results import ProblemRecord
from implementations import launch, numpy_backprop, registry
from implementations.contract import Unavailable
from implementations.problem import NetworkSpec, flatten, make_problem

pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[1]
BUGS = Path(__file__).with_name("fake_ddp_bugs.py")
MARK = "BACKPROP_BENCH_TEST_MARK"


def tiny(dtype: str = "float64", batch: int = 8):
    return make_problem(NetworkSpec((4, 8, 4), "tanh", "linear", True, dtype), batch)


def survivors(mark: str) -> list[int]:
    """Live processes whose environment carries ``MARK=mark`` (zombies do not count)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if f"{MARK}={mark}".encode() in environ.split(b"\0") and state != "Z":
            found.append(int(pid))
    return found


@pytest.fixture
def marked(monkeypatch):
    """A mark for the processes this test starts, and a 3 s process-group timeout."""
    mark = uuid.uuid4().hex
    monkeypatch.setenv(MARK, mark)
    monkeypatch.setenv(launch.PG_TIMEOUT, "3")
    yield mark
    deadline = time.monotonic() + 10
    while survivors(mark) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert survivors(mark) == [], "processes left behind"


@pytest.mark.parametrize("workers", [1, 2])
def test_the_step_is_right_and_every_worker_agrees(marked, workers):
    problem = tiny()
    trainer = registry.get("torch-ddp").at(workers).make(problem)
    try:
        _, ref = numpy_backprop.grads(problem.spec, check.rounded_start(problem), problem.x,
                                      problem.y)
        for g in trainer.rank_grads():
            assert max(check.normalised_errors(flatten(g), flatten(ref))) < 1e-12
        trainer.run(10)
        report = check.compare_to_reference(problem, "ddp", trainer.params(),
                                            check.rounded_start(problem), 10)
        assert report.passed, report.failures()
        ranks = trainer.rank_params()
        assert len(ranks) == workers
        for r in ranks:  # bitwise equal
            assert all(np.array_equal(a, b) for a, b in zip(flatten(r), flatten(ranks[0])))
        assert trainer.distributed["workers"] == workers
        assert trainer.distributed["cores"] == [[c] for c in sorted(os.sched_getaffinity(0))
                                                ][:workers]
    finally:
        trainer.close()


def test_more_workers_than_cores_are_refused_unless_allowed(monkeypatch):
    monkeypatch.delenv(launch.OVERSUBSCRIBE, raising=False)
    with pytest.raises(Unavailable, match="3 workers need 3 cores"):
        launch.cores_for(3, [0, 1])
    assert launch.cores_for(2, [5, 7]) == ([[5], [7]], False)
    monkeypatch.setenv(launch.OVERSUBSCRIBE, "1")
    assert launch.cores_for(3, [0, 1]) == ([[0], [1], [0]], True)


def test_too_many_workers_and_an_uneven_batch_make_the_case_unavailable(monkeypatch):
    monkeypatch.delenv(launch.OVERSUBSCRIBE, raising=False)
    cores = len(os.sched_getaffinity(0))
    many = registry.get("torch-ddp").at(cores + 1)
    problem = tiny(batch=8 * (cores + 1))
    with pytest.raises(Unavailable, match="cores"):
        many.make(problem)
    assert "not divisible by 3 workers" in registry.get("torch-ddp").at(3).why_not(tiny(), "cpu")
    assert "one worker only" in registry.get("torch").at(2).why_not(tiny(), "cpu")


@pytest.fixture
def with_bugs(monkeypatch):
    monkeypatch.setenv(registry.ENV, str(BUGS))
    registry.discover()
    yield
    monkeypatch.delenv(registry.ENV)
    registry.discover()


@pytest.mark.parametrize("variant, said", [
    ("ddp-crash", r"rank 1 exited with status 3|Connection (reset|closed) by peer"),
    ("ddp-hang", r"Timed out waiting 3000ms")])
def test_a_crashing_or_hanging_rank_fails_the_case(marked, with_bugs, variant, said):
    """The surviving rank's collective fails at once (a crash) or after the process-group
    timeout (a hang); the launcher then ends every rank. Which failure the launcher names
    first is a race, so either account will do."""
    job = messages.JobCase(ProblemRecord.of(tiny("float32")), variant, "cpu", workers=2)
    start = time.monotonic()
    case = worker.run_case(job, TimingConfig(budget_s=0.05), set())
    assert case.status == "failed" and re.search(said, case.reason), case.reason
    assert case.id.endswith("/x2") and case.workers == 2
    assert time.monotonic() - start < 30  # the process-group timeout is 3 s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_torchrun_nodes_on_localhost_train_together(marked, tmp_path):
    """The README's command, twice, as two "nodes" meeting at a c10d rendezvous. On one host
    both agents would try to host the rendezvous store (the loser falls back to a client);
    ``is_host`` says which one does, so that the two cannot race."""
    port, out = free_port(), tmp_path / "ddp.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node",
           "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{port}", "--rdzv-id",
           "test", "--max-restarts", "0", "--rdzv-conf", "is_host={}", "-m",
           "harness.procs.multinode", "torchrun", "--widths", "4,8,4", "--batch", "8", "--steps",
           "10", "--dtype", "float64", "--timeout", "30", "--out", str(out)]
    nodes = [subprocess.Popen([a.format(int(i == 0)) for a in cmd], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True) for i in range(2)]
    logs = [""] * len(nodes)

    def read(i: int) -> None:  # both nodes at once, so that either one's log is there on a hang
        logs[i] = nodes[i].communicate()[0]

    readers = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(len(nodes))]
    try:
        for r in readers:
            r.start()
        deadline = time.monotonic() + 150
        for r in readers:
            r.join(max(0.0, deadline - time.monotonic()))
    finally:  # a hung rendezvous must not outlive the test
        for n in nodes:
            if n.poll() is None:
                os.killpg(n.pid, 9)
        for r in readers:
            r.join(10)
    assert [n.returncode for n in nodes] == [0, 0], logs
    summary = json.loads(out.read_text())
    assert summary["world"] == 2 and summary["rank_spread"] == 0.0
    assert summary["trajectory_error"] < 1e-8 and summary["passed"]
