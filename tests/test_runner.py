"""`backprop-bench run` end to end, and the runner's fault handling.

The end-to-end runs use the cheap variants (python, numpy, limit) with a tiny time per case:
they check behaviour (files, statuses, exit codes), never speed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from harness import cli
from harness.commands import run as run_command
from harness.measure.timing import TimingConfig
from harness.procs import child, messages, runner, worker
from harness.record import store
from harness.record.results import Case, ProblemRecord
from implementations import registry
from implementations.problem import NetworkSpec, make_problem

FAST = ["--time-per-case", "0.05", "--no-peak", "--processes", "1"]


def bench(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_run_writes_a_checked_results_file(tmp_path):
    out = tmp_path / "r.json"
    proc = bench("run", "--variants", "python,numpy,limit", "--widths", "1,1,1", *FAST,
                 "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    run = store.read_run(out)
    assert {c.variant for c in run.cases} == {"python", "numpy", "limit"}
    for case in run.cases:
        assert case.ok, case.reason
        assert case.check["passed"]
        assert len(case.timing.samples_s) >= 7
        assert case.timing.first_call_s > 0
    assert run.machine.cores and run.software["numpy"] and run.commit.dirty is not None
    assert run.frameworks["numpy"].pinning["threads"] >= 1 and run.complete
    assert str(out) in proc.stdout and "× limit" in proc.stdout


def test_a_diverging_run_is_recorded_as_failed_not_timed(tmp_path):
    out = tmp_path / "r.json"
    proc = bench("run", "--variants", "numpy,limit", "--widths", "1,1,1", "--lr", "50", *FAST,
                 "--out", str(out))
    assert proc.returncode == 1
    run = store.read_run(out)
    assert len(run.cases) == 2
    for case in run.cases:
        assert case.status == "failed"
        assert "diverged" in case.reason


@pytest.mark.parametrize(
    "args, message",
    [(["--variants", "nope"], "unknown variant 'nope'"),
     (["--device", "tpu"], "unknown device 'tpu'"),
     (["--framework", "nope"], "unknown framework 'nope'"),
     (["--timeout", "0"], "must be a finite number above 0"),
     (["--time-per-case", "inf"], "must be a finite number above 0"),
     (["--variants", "limit", "--widths", "4,4"], "cannot run any case"),
     (["--widths", "0,1"], "every width must be 1 or more"),
     (["--lr", "inf"], "must be finite and positive")],
)
def test_bad_run_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    assert cli.main(["run", *args, "--out", str(tmp_path / "r.json"), *FAST]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cuda_without_a_gpu_is_one_line(tmp_path, capsys, monkeypatch):
    def no_cuda(device):
        raise cli.BenchError(f"--device {device}: no framework here can use it")

    monkeypatch.setattr(run_command, "require_device", no_cuda)
    assert cli.main(["run", "--device", "gpu", "--out", str(tmp_path / "r.json")]) == 2
    assert "--device cuda: no framework" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_an_empty_out_is_an_error_not_the_default_path(tmp_path, capsys):
    assert cli.main(["run", *FAST, "--results-dir", str(tmp_path), "--out", ""]) == 2
    assert "--out is empty" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_an_unwritable_results_path_fails_before_measuring(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["run", "--variants", "numpy", "--out", str(blocker / "r.json")]) == 2
    assert "cannot write results" in capsys.readouterr().err


def test_ctrl_c_leaves_a_valid_file_with_every_finished_case(tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", "--variants",
                             "python,numpy", "--widths", "1,1,1", "16,16,16", "256,256,256",
                             "--time-per-case", "1", "--no-peak", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        if out.exists() and json.loads(out.read_text())["cases"]:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "finished cases are saved" in err and "Traceback" not in err
    run = store.read_run(out)
    assert run.interrupted and 1 <= len(run.cases) < 4 and not run.complete


def test_a_crashing_variant_becomes_a_failed_case(monkeypatch):
    class Boom:
        def __init__(self, problem, device):
            pass

        def run(self, steps):
            raise RuntimeError("kaboom")

    v = registry.get("numpy")
    monkeypatch.setattr(type(v), "make", lambda self, p, d: Boom(p, d))
    job = messages.JobCase(ProblemRecord.of(make_problem()), v.name, "cpu")
    case = worker.run_case(job, TimingConfig(), set())
    assert case.status == "failed" and "kaboom" in case.reason


def test_a_dying_worker_marks_its_unfinished_cases_failed(tmp_path, monkeypatch):
    def dies_after_one(job, on_message, timeout):
        first = job.cases[0]
        case = Case.new(first.problem.problem(), registry.get(first.variant), "cpu")
        case.fail("failed", "planted")
        on_message(case)
        return -9, "Killed", False

    monkeypatch.setattr(runner, "run_worker", dies_after_one)
    monkeypatch.setattr(runner, "measure_c_limit", lambda: {"error": "skipped in tests"})
    wide = make_problem(NetworkSpec((4, 4, 4)), batch=2)
    plan = runner.Plan("run", "cpu", [make_problem(), wide], [registry.get("numpy")], 1)
    path = tmp_path / "r.json"
    run = runner.execute(plan, path, lambda *a: None)
    reasons = [c.reason for c in run.cases]
    assert any("exited with status -9" in r and "Killed" in r for r in reasons)
    assert len(store.read_run(path).cases) == 2


def test_a_lost_case_with_an_empty_log_does_not_end_in_a_colon():
    reason = runner.lost_reason(1, "")
    assert not reason.endswith(": ") and "wrote nothing" in reason


def test_a_busy_neighbour_is_warned_about_and_marks_the_cases(tmp_path):
    out = tmp_path / "r.json"
    hog = subprocess.Popen([sys.executable, "-c", "while 1: pass"])
    try:
        time.sleep(0.5)
        proc = bench("run", "--variants", "python,numpy", "--widths", "1,1,1", *FAST,
                     "--out", str(out))
    finally:
        hog.kill()
        hog.wait()
    assert proc.returncode == 0, proc.stderr
    warning = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "the machine is not quiet" in warning[0]
    assert f"(pid {hog.pid})" in warning[0]
    run = store.read_run(out)
    assert all(c.disturbed for c in run.cases) and "disturbed" in proc.stdout
    assert run.machine_state["warnings_before"] and run.machine_state["during"]["disturbed"]


def test_rounds_rotate_the_frameworks_and_show_the_spread_between_them():
    assert runner.rotated(["a", "b", "c"], 0) == ["a", "b", "c"]
    assert runner.rotated(["a", "b", "c"], 4) == ["b", "c", "a"]


def test_run_uses_every_variant_that_fits_by_default():
    plan = runner.Plan("run", "cpu", [make_problem()], list(registry.VARIANTS.values()), 1)
    names = {v.name for _, v, _ in plan.cases()}
    assert {"python", "numpy", "limit", "torch", "jax", "jax-fori"} <= names
    assert "torch-cudagraph" not in names


def test_a_gpu_plan_keeps_cpu_references():
    plan = runner.Plan("run", "cuda", [make_problem()], [registry.get("numpy"),
                       registry.get("limit"), registry.get("torch")], 1)
    devices = {v.name: d for _, v, d in plan.cases()}
    assert devices == {"numpy": "cpu", "limit": "cpu", "torch": "cuda"}


def test_worker_env_points_at_this_checkout():
    env = child.environment(7)
    assert env[messages.CHANNEL_FD] == "7"
    assert os.path.isdir(os.path.join(env["PYTHONPATH"].split(os.pathsep)[0], "harness"))


def test_samples_from_several_processes_are_pooled_into_one_case(tmp_path):
    out = tmp_path / "r.json"
    proc = bench("run", "--variants", "numpy", "--widths", "1,1,1", "--time-per-case", "0.05",
                 "--no-peak", "--processes", "3", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    (case,) = store.read_run(out).cases
    assert len(case.processes) == 3
    assert case.timing.blocks == sum(p.timing.blocks for p in case.processes)
    assert case.timing.samples_s == [s for p in case.processes for s in p.timing.samples_s]


def test_run_refuses_to_overwrite_a_results_file_without_force(tmp_path, capsys):
    out = tmp_path / "r.json"
    out.write_text("precious")
    assert cli.main(["run", "--variants", "numpy", "--widths", "1,1,1", *FAST,
                     "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == "precious"


def test_flags_are_never_abbreviated(tmp_path, capsys):
    # "--out" on check must not be read as "--output-activation"
    assert cli.main(["check", "--out", str(tmp_path / "x.json")]) == 2
    assert "unrecognized arguments" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [(["--batch", "0"], "must be a positive integer"),
                                           (["--dtype", ""], "--dtype is empty"),
                                           (["--variants", ""], "--variants is empty"),
                                           (["--threads", "999"], "cores are usable")])
def test_empty_or_zero_run_options_are_errors_not_defaults(tmp_path, capsys, args, message):
    assert cli.main(["run", *args, "--out", str(tmp_path / "r.json"), *FAST]) == 2
    assert message in capsys.readouterr().err


def test_a_new_run_records_the_environment_that_changes_results(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/nonexistent/jax-cache")
    monkeypatch.setattr(runner, "measure_c_limit", lambda: None)  # compiling C is not the point
    plan = runner.Plan("run", "cpu", [make_problem()], [registry.get("numpy")], 1)
    env = runner.new_run(plan).environment
    assert env["variables"]["OMP_NUM_THREADS"] == "1"
    assert env["jax_compilation_cache"]["enabled"] and env["jax_compilation_cache"]["dir"]
    assert env["packages"]["numpy"]
