"""Faults, reproduced end to end: every item of the hardening issue, and what must hold.

For each fault: the exit status (non-zero where the command could not do what was asked),
exactly one line on stderr and no traceback for a refusal (one error line, after warnings if
any, for a command that ran first), a results file that loads
(``store.read_run``) with every finished case, and no hang (every subprocess has a timeout).
The faulty frameworks are tests/fake_faulty.py (a good variant, and one that hangs, one
that dies, one that leaks a process) and tests/fake_missing.py (not installed), registered
through BACKPROP_BENCH_FRAMEWORKS.

Item -> test (here, unless another module is named):
 1. two runs, one --out: test_two_runs_with_one_out_never_lose_a_run,
    test_a_run_that_claims_an_out_in_use_is_refused,
    test_simultaneous_claims_of_one_path_let_one_through,
    test_a_file_written_between_the_check_and_the_lock_is_not_overwritten;
    default names: test_two_runs_without_out_write_two_files, and
    test_store.py::test_default_names_do_not_collide_within_a_second (the same second)
 2. per-case timeout: test_a_hanging_case_times_out_and_the_run_goes_on,
    test_the_default_timeout_scales_with_the_time_per_case
 3. import failing with RuntimeError: test_contract.py::
    test_a_broken_framework_is_unavailable_with_the_reason (list --check, demo),
    test_asking_for_a_broken_framework_is_one_line_exit_2 (check --framework),
    test_running_a_broken_framework_exits_1_with_one_line (run --variants); here:
    test_a_broken_framework_is_a_note_in_a_default_check,
    test_a_broken_framework_on_cuda_is_one_line_with_the_reason (check/run --device cuda)
 4. a missing framework asked for: test_asking_for_a_missing_framework_is_not_success; and
    test_cli.py::test_asking_for_a_missing_framework_is_one_line_and_exit_2
 5. memory: test_a_network_too_big_for_memory_is_refused_before_any_array,
    test_networks_that_fit_alone_but_not_together_are_refused; sweep --depths 100000000:
    test_sweep.py::test_bad_sweep_input_is_one_line_and_exit_2, and as deep in run and
    check: test_a_network_too_deep_to_finish_is_refused_as_in_sweep
 6. report over README.md and plots/: test_report.py::
    test_report_refuses_to_overwrite_a_file_it_did_not_write,
    test_report_refuses_to_overwrite_a_plot_it_did_not_write
 7. wrong-typed fields: test_results.py::
    test_a_wrong_typed_field_is_one_line_naming_the_file_and_the_field; in a folder, and
    compare: test_wrong_typed_files_are_left_out_of_a_report_and_refused_by_compare
 8. unwritable report location: test_an_unwritable_report_location_is_one_line (/sys, /proc);
    test_report.py::test_an_unwritable_report_location_is_one_line (a file as a folder)
 9. --time-per-case inf: test_runner.py::test_bad_run_input_is_one_line_and_exit_2 (run);
    here: test_infinite_times_are_refused_in_sweep_too, test_a_huge_finite_timeout_is_honoured
10. Markdown escaping: test_report.py::
    test_text_from_a_results_file_cannot_break_a_table_or_inject_html (host, reason); here:
    test_cpu_and_file_names_are_escaped_in_tables_and_html
11. stray stdout: test_stray_output_of_a_sitecustomize_or_framework_is_not_a_message
12. results files 0600: test_store.py::test_a_results_file_is_readable_by_others;
    a FIFO: test_a_fifo_named_json_hangs_neither_report_nor_compare, and
    test_store.py::test_a_fifo_is_not_read;
    check --device gpu: test_check_takes_gpu_as_run_does;
    a lost case's reason: test_a_worker_dying_in_a_case_loses_that_case_only, and
    test_runner.py::test_a_lost_case_with_an_empty_log_does_not_end_in_a_colon;
    "saved in X" never written: test_an_interrupt_before_the_first_write_says_nothing_was_saved;
    a killed run (finished: null): test_sigkill_of_the_runner_leaves_no_process_and_no_log,
    and test_report.py::test_a_killed_run_is_marked_incomplete;
    a refused run's --out folders: test_a_refused_run_creates_no_folders;
    --out '': test_an_empty_out_is_an_error_in_every_command, and
    test_runner.py::test_an_empty_out_is_an_error_not_the_default_path;
    SIGKILL of the runner: test_sigkill_of_the_runner_leaves_no_process_and_no_log;
    SIGINT, SIGTERM: test_an_interrupt_keeps_the_finished_cases_and_kills_the_workers, and
    test_runner.py::test_ctrl_c_leaves_a_valid_file_with_every_finished_case;
    what a worker starts, even one holding its channel open:
    test_a_process_a_worker_starts_dies_with_it

The second hardening round (its items by number):
 1. a README cut on a full disk: test_a_readme_that_cannot_be_written_stays_whole_and_is_named
 2. a closed stdout: test_a_closed_stdout_marks_the_run_interrupted_with_its_finished_cases,
    test_a_closed_pipe_after_a_reading_command_is_one_line (export, csv, compare, list, report)
 3. a plugin that exits at import:
    test_a_plugin_that_ends_its_process_at_import_is_unavailable_not_a_silent_pass
 4. children answering on stdout: test_what_a_sitecustomize_prints_is_never_taken_for_an_answer
 5. check timeouts: test_a_hanging_variant_fails_its_check_with_the_cause_and_the_rest_go_on,
    test_a_hang_in_c_fails_its_subject_in_one_line_within_the_grace,
    test_a_timeout_in_an_isolated_check_is_a_failure_of_its_case
 6, 7. bad plugin files, literal-only declarations:
    test_a_bad_framework_file_is_one_line_and_the_others_still_work
 8. a failing call floor: test_a_failing_call_floor_costs_only_the_floor
 9. a corrupt torch-loop package: test_torch_loop_package.py
10. wrong types in free-form fields, 11. inconsistent values:
    test_a_wrong_or_inconsistent_value_is_refused_on_load_and_left_out,
    test_compare_json_is_json_even_for_extreme_ratios
12. Markdown, HTML and mathtext: test_report.py::
    test_every_stored_string_is_escaped_in_the_report_the_readme_and_the_plots
13. a full disk: test_a_full_disk_in_run_is_one_line_keeps_the_finished_cases_and_no_lock,
    test_a_full_disk_in_export_is_one_line_and_no_lock
14. locales: test_a_plain_locale_gets_plain_output_not_a_traceback
15. workers' memory: test_oversubscribed_workers_are_bounded_by_memory
16. a process in a session of its own: test_a_process_a_worker_starts_dies_with_it
    [faulty-session]
17. BACKPROP_BENCH_* settings: test_a_bad_setting_is_a_one_line_error_exit_2
18. SIGKILL of check: test_sigkill_of_check_leaves_no_isolated_process
19. Python API arguments: test_api.py
20. a large folder: test_report.py (the plots capped, the progress line)
21. a reused pid's lock: test_store.py; CSV formulas:
    test_csv_export_quotes_what_a_spreadsheet_would_read_as_a_formula; jax-sharded and
    --oversubscribe: test_jax_sharded.py::test_oversubscribe_gives_more_host_devices_than_cores

The fourth hardening round (issue 25; its items in order):
 1. counts at the default --count-target: test_instructions.py::
    test_a_count_at_the_default_target_is_a_count_not_a_time,
    test_a_block_that_counts_no_more_than_the_empty_block_is_not_counted; a run whose every
    count failed exits 1: test_instructions.py::test_a_run_whose_every_count_failed_is_no_success,
    test_what_a_counting_worker_prints_is_plain_text_and_a_run_that_counts_nothing_fails, and
    compare says so: test_instructions.py::test_comparing_files_without_counts_is_one_line;
    the README's commands at their defaults (demo, check, run with and without --measure
    instructions, sweep, scale, report, compare, export, list): test_readme_defaults.py
 2. counts, FLOPs and weights that cannot be: test_a_wrong_or_inconsistent_value_is_refused_on_
    load_and_left_out [count-*, flops, weights]; per_step 0 in report, compare --measure
    instructions, export, CSV and bb.records:
    test_a_count_of_zero_per_step_is_one_line_never_a_division_by_zero; one case twice:
    test_a_file_with_a_case_twice_is_refused_in_one_line
 3. a counting worker that never starts: test_a_counting_worker_that_never_starts_waits_only_
    count_timeout; SIGKILL of a counting run (the process and the bb-callgrind-* folder):
    test_sigkill_of_a_counting_run_leaves_no_process_and_no_folder; an unwritable HOME:
    test_an_unwritable_home_is_one_line; a valgrind whose --version fails:
    test_a_valgrind_whose_version_fails_is_not_used; escapes and random bytes in a worker's
    log: test_what_a_counting_worker_prints_is_plain_text_and_a_run_that_counts_nothing_fails
 4. the Python API's arguments (check_impl and check_example given None, an int or bytes;
    threads "x", 1.5, -1, 999; problems that are one Problem or []; records of None, a path,
    [1]): test_api.py::test_a_wrong_argument_is_a_one_line_error_at_the_api_boundary,
    test_api.py::test_threads_are_refused_as_the_command_line_refuses_them
 5. Ctrl-C and SIGTERM while harness.cli imports (python -m and the console script's form):
    test_cli.py::test_a_signal_while_the_command_line_imports_is_one_line; --threads 1.5:
    test_cli.py::test_a_count_that_is_not_whole_says_so; a timeout inside a torch.compile
    build: test_check.py::test_a_timeout_a_compiler_wraps_is_said_as_the_timeout_it_is

The learner's path (issue 24): a hostile file (exits, kills itself, loops at import or in
grads, sys.exit, a raised KeyboardInterrupt, a patched NumPy, writes into its inputs, E as an
array or complex) fails alone and the references stand:
test_check_learner.py::test_a_hostile_learner_fails_alone_and_the_references_and_numpy_stand;
options --impl or --example cannot honour: test_check_learner.py::test_an_option_*; a bad
declaration, a directory: test_check_learner.py::test_a_bad_declaration_is_one_line,
test_a_directory_is_not_a_learner; a worked example's file (unknown keys, booleans,
tolerances inf, nan and < 0, 1e400, a directory, a FIFO, a NUL byte, nested 100,000 deep, a
name on two lines): test_check_user.py::test_a_bad_example_file_is_one_line,
test_a_file_that_is_no_example_is_one_line; a plugin that hangs in C fails its own row:
test_a_hang_in_c_fails_its_subject_in_one_line_within_the_grace
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import helpers_results as h
import pytest

import backprop_bench as bb
from harness import cli
from harness.commands import check as check_command
from harness.commands import plans
from harness.commands import run as run_command
from harness.measure import callgrind, environment
from harness.measure.instructions import Instructions
from harness.measure.timing import TimingConfig
from harness.procs import runner
from harness.record import schema, store
from harness.record.results import ResultsError
from harness.report import build_report
from harness.report import compile as compile_section
from harness.report.sources import sources_of
from implementations import registry
from implementations.problem import BenchError, make_problem

ROOT = Path(__file__).resolve().parents[1]
FAULTY = Path(__file__).with_name("fake_faulty.py")
MISSING = Path(__file__).with_name("fake_missing.py")
FAST = ["--no-peak", "--processes", "1", "--time-per-case", "0.05"]
GIB = 2**30


# ---- helpers ----------------------------------------------------------------------------------

def environ(tmp_path: Path, **extra: str) -> dict:
    """The environment of a bench subprocess: this checkout, the fake frameworks, a private
    temporary folder, and a token that marks every process it starts."""
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp),
           registry.ENV: os.pathsep.join([str(FAULTY), str(MISSING)]),
           "FAULTS_TOKEN": uuid.uuid4().hex, "FAULTY_MARKER": str(tmp_path / "marker")}
    env.update(extra)
    return env


def bench(env: dict, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *argv], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def start(env: dict, *argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *argv], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def one_line(stderr: str, *fragments: str) -> str:
    """The one line on stderr, which must hold every fragment and be no traceback."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def error_line(stderr: str, *fragments: str) -> str:
    """Like one_line, for a command that ran before it failed or was interrupted: warnings
    about what it ran (a busy machine, ...) may come before its one error line."""
    lines = stderr.strip().splitlines()
    assert lines and all(line.startswith("warning: ") for line in lines[:-1]), stderr
    return one_line(lines[-1], *fragments)


def wait_for(path: Path, seconds: float = 30) -> list[int]:
    """The pids a faulty Trainer wrote to its marker once it is stuck."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return [int(p) for p in path.read_text().split()]


def running(pid: int) -> bool:
    """True if the process exists and is not a zombie (a zombie is dead, not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def processes_of(token: str) -> list[int]:
    """The live processes whose environment holds the token: a run and all it started."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            marked = f"FAULTS_TOKEN={token}".encode() in (proc / "environ").read_bytes()
        except OSError:
            continue
        if marked and running(int(proc.name)):
            found.append(int(proc.name))
    return found


def gone(token: str, seconds: float = 5) -> list[int]:
    """[] once every process of the run has died (waiting up to ``seconds``), else those left."""
    deadline = time.monotonic() + seconds
    while (left := processes_of(token)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def statuses(path: Path) -> dict[str, str]:
    return {c.variant: c.status for c in store.read_run(path).cases}


@pytest.fixture
def with_fakes(monkeypatch):
    """The fake frameworks registered in this process too (for cli.main)."""
    monkeypatch.setenv(registry.ENV, os.pathsep.join([str(FAULTY), str(MISSING)]))
    registry.discover()
    yield
    monkeypatch.delenv(registry.ENV)
    registry.discover()


# ---- 1. concurrent runs -----------------------------------------------------------------------

def test_two_runs_with_one_out_never_lose_a_run(tmp_path):
    env, out = environ(tmp_path), tmp_path / "r.json"
    runs = [start(env, "run", "--widths", w, "--variants", "numpy", *FAST, "--out", str(out))
            for w in ("1,1,1", "2,2,2")]
    done = [(p, *p.communicate(timeout=60)) for p in runs]
    assert sorted(p.returncode for p, _, _ in done) == [0, 2]
    (winner, _, _), = [d for d in done if d[0].returncode == 0]
    (_, _, err), = [d for d in done if d[0].returncode == 2]
    line = one_line(err, str(out))
    assert "being written by another run" in line or "already exists" in line
    run = store.read_run(out)  # the winner's cases, all of them
    widths = ("1,1,1", "2,2,2")[runs.index(winner)]
    assert [c.problem.widths for c in run.cases] == [tuple(map(int, widths.split(",")))]
    assert run.complete and all(c.ok for c in run.cases)


def test_a_run_that_claims_an_out_in_use_is_refused(tmp_path):
    env, out = environ(tmp_path), tmp_path / "r.json"
    first = start(env, "run", "--widths", "1,1,1", "--variants", "numpy,faulty-hang", *FAST,
                  "--out", str(out))
    try:
        wait_for(tmp_path / "marker")  # the first run is in its second case, stuck
        for force, refusal in (([], f"{out} already exists"), (["--force"], f"{out} is being "
                                f"written by another run (pid {first.pid}, lock ")):
            second = bench(env, "run", "--widths", "1,1,1", "--variants", "numpy", *FAST,
                           *force, "--out", str(out))
            assert second.returncode == 2
            one_line(second.stderr, refusal)
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
    assert statuses(out) == {"numpy": "ok"}  # the first run's finished case, not overwritten


def test_a_file_written_between_the_check_and_the_lock_is_not_overwritten(tmp_path,
                                                                          monkeypatch):
    out, other = tmp_path / "r.json", h.run_file()
    take_lock = store.take_lock

    def another_run_finishes_first(lock):
        store.write(other, out)  # it held the lock, wrote and released it meanwhile
        take_lock(lock)

    monkeypatch.setattr(store, "take_lock", another_run_finishes_first)
    with pytest.raises(ResultsError, match="already exists"):
        store.claim(out)
    assert store.read_run(out) == other and not store.lock_path(out).exists()


def claim_each(paths: list[str], barrier, results) -> None:
    for path in paths:
        barrier.wait()  # both processes claim the same path at the same moment
        try:
            store.claim(Path(path))
            results.put("claimed")
            time.sleep(0.01)
            store.release(Path(path))
        except ResultsError:
            results.put("refused")


def test_simultaneous_claims_of_one_path_let_one_through(tmp_path):
    # a lock file is created empty, then its pid is written: a claim in between used to take
    # it for a stale lock, and both runs wrote the same file (about 1 round in 6)
    context = multiprocessing.get_context("fork")
    paths = [str(tmp_path / f"r{i}.json") for i in range(100)]
    barrier, results = context.Barrier(2), context.Queue()
    procs = [context.Process(target=claim_each, args=(paths, barrier, results))
             for _ in range(2)]
    for p in procs:
        p.start()
    got = [results.get(timeout=30) for _ in range(2 * len(paths))]
    for p in procs:
        p.join(timeout=30)
    assert got.count("claimed") == len(paths) and got.count("refused") == len(paths)


def test_two_runs_without_out_write_two_files(tmp_path):
    env, folder = environ(tmp_path), tmp_path / "results"
    runs = [start(env, "run", "--widths", "1,1,1", "--variants", "numpy", *FAST,
                  "--results-dir", str(folder)) for _ in range(2)]
    for p in runs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    files = sorted(folder.glob("run-cpu-*.json"))
    assert len(files) == 2
    for f in files:
        assert statuses(f) == {"numpy": "ok"} and store.read_run(f).complete
    assert not list(folder.glob(".*.lock"))


# ---- 2. timeouts ------------------------------------------------------------------------------

def test_a_hanging_case_times_out_and_the_run_goes_on(tmp_path):
    # the hanging Trainer leaks a process too; the fresh worker after it starts slowly (2.5 s,
    # longer than the case timeout: its start-up has the start-up allowance, not --timeout)
    env, out = environ(tmp_path, FAULTY_IMPORT_DELAY="2.5"), tmp_path / "r.json"
    began = time.monotonic()
    proc = bench(env, "run", "--widths", "1,1,1", "--variants", "faulty-leak,faulty-ok",
                 "--timeout", "2", *FAST, "--out", str(out))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert time.monotonic() - began < 30
    run = store.read_run(out)
    cases = {c.variant: c for c in run.cases}
    assert cases["faulty-leak"].status == "failed"
    assert cases["faulty-leak"].reason.startswith("timed out after 2 s")
    assert cases["faulty-ok"].ok, cases["faulty-ok"].reason
    assert run.complete
    worker, leaked = wait_for(tmp_path / "marker")
    assert not running(worker) and not running(leaked)  # its whole process group was killed


def test_the_default_timeout_scales_with_the_time_per_case():
    def plan(budget, timeout=None):
        return runner.Plan("run", "cpu", [make_problem()], [registry.get("numpy")], 1,
                           TimingConfig(budget_s=budget), case_timeout_s=timeout)

    assert plan(1).timeout_s() == runner.CASE_TIMEOUT_BASE_S + runner.CASE_TIMEOUT_PER_BUDGET
    assert plan(10).timeout_s() - plan(1).timeout_s() == 9 * runner.CASE_TIMEOUT_PER_BUDGET
    assert plan(10, timeout=3).timeout_s() == 3  # --timeout


# ---- 3. a framework that fails to import with something else than ImportError -----------------

BROKEN = "jax: jax is installed but fails to import (RuntimeError: simulated broken install)"


@pytest.fixture
def broken_jax(tmp_path) -> dict:
    pkg = tmp_path / "site" / "jax"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('simulated broken install')\n")
    env = environ(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "site"), str(ROOT)])
    return env


def test_a_broken_framework_on_cuda_is_one_line_with_the_reason(broken_jax, tmp_path):
    proc = bench(broken_jax, "run", "--device", "cuda", "--variants", "jax", *FAST, "--out",
                 str(tmp_path / "r.json"))
    # 2 without a GPU (no framework can use it), 1 with one (the variant could not run)
    assert proc.returncode in (1, 2)
    line = error_line(proc.stderr, BROKEN)
    assert "jax: jax is not installed" not in line


# ---- 4. a framework asked for by name that is not installed -----------------------------------

GHOST = "ghost: backprop_bench_ghost_package is not installed"


@pytest.mark.parametrize("argv, status", [
    (["run", "--variants", "ghost,numpy", "--widths", "1,1,1", *FAST], 1),
    (["check", "--framework", "ghost"], 2),
])
def test_asking_for_a_missing_framework_is_not_success(tmp_path, argv, status):
    out = tmp_path / "r.json"
    proc = bench(environ(tmp_path), *argv, *(["--out", str(out)] if argv[0] == "run" else []))
    assert proc.returncode == status
    (one_line if status == 2 else error_line)(proc.stderr, GHOST)
    if argv[0] == "run":  # the file says so too, and keeps what did run
        assert statuses(out) == {"ghost": "unavailable", "numpy": "ok"}


# ---- 5. memory --------------------------------------------------------------------------------

@pytest.fixture
def memory(monkeypatch):
    """A machine with 24 GiB available, on which building any problem fails the test."""
    available = {"bytes": 24 * GIB}
    monkeypatch.setattr(environment, "meminfo", lambda key: available["bytes"])

    def built(*args, **kwargs):
        raise AssertionError("a problem was built before the memory check refused it")

    monkeypatch.setattr(plans, "make_problem", built)
    return available


@pytest.mark.parametrize("argv", [
    ["run", "--widths", "65536,65536,65536"],
    ["run", "--widths", "25000,25000,25000"],
    ["run", "--widths", "40000,40000,40000"],
    ["run", "--widths", "4,4", "--batch", "10000000000000"],
    ["sweep", "--sizes", "30000"],
    ["sweep", "--sizes", "8", "--batches", "10000000000000"],
    ["sweep", "--sizes", "1024", "--depths", "1000"],
    ["check", "--widths", "65536,65536,65536"],
    ["check", "--batch", "10000000000000"],
])
def test_a_network_too_big_for_memory_is_refused_before_any_array(memory, tmp_path, capsys,
                                                                  argv):
    out = ["--out", str(tmp_path / "o" / "r.json")] if argv[0] != "check" else []
    assert cli.main([*argv, *out, *(FAST if argv[0] != "check" else [])]) == 2
    one_line(capsys.readouterr().err, "needs about", "GiB of memory; this machine has 24 GiB "
                                      "available")
    assert not (tmp_path / "o").exists()


def test_networks_that_fit_alone_but_not_together_are_refused(memory, tmp_path, capsys):
    one = plans.bytes_needed(make_spec(8000), 64)
    memory["bytes"] = int(1.05 * one / plans.MEMORY_HEADROOM)  # room for one such case
    plans.check_memory(make_spec(8000), 64)
    plans.check_memory(make_spec(8001), 64)
    for argv in (["run", "--widths", "8000,8000,8000", "8001,8001,8001", *FAST],
                 ["sweep", "--sizes", "8000,8001", *FAST]):
        assert cli.main([*argv, "--out", str(tmp_path / "o" / "r.json")]) == 2
        one_line(capsys.readouterr().err, "these 2 networks need about", "together")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["run", "check"])
def test_a_network_too_deep_to_finish_is_refused_as_in_sweep(tmp_path, command):
    # sweep --depths 100000000 is refused (test_sweep.py); 30,000 layers of width 1 fit in
    # memory, but check and run were still working on them minutes later
    deep = ",".join(["1"] * 30_001)
    out = ["--out", str(tmp_path / "r.json"), *FAST] if command == "run" else []
    proc = bench(environ(tmp_path), command, "--widths", deep, *out)
    assert proc.returncode == 2
    one_line(proc.stderr, "a network of 30000 weight layers is over the limit of 1000")


def make_spec(d: int):
    from implementations.problem import NetworkSpec

    return NetworkSpec((d, d, d), "tanh", dtype="float32")


# ---- 7. wrong-typed fields --------------------------------------------------------------------

BAD_FIELDS = {"software": (("software",), None), "machine": (("machine",), None),
              "problem": (("cases", 0, "problem"), 3),
              "widths": (("cases", 0, "problem", "widths"), None)}


def test_wrong_typed_files_are_left_out_of_a_report_and_refused_by_compare(tmp_path, capsys):
    folder = tmp_path / "results"
    folder.mkdir()
    store.write(h.run_file(), folder / "good.json")
    for name, (path, value) in BAD_FIELDS.items():
        data = h.run_file().to_dict()
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        (folder / f"bad-{name}.json").write_text(json.dumps(data))
    assert cli.main(["report", str(folder), "--out", str(tmp_path / "R.md")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == len(BAD_FIELDS) and "Traceback" not in "\n".join(err)
    for name in BAD_FIELDS:
        assert any(f"bad-{name}.json" in line and "left out" in line for line in err), name
    assert "## Run:" in (tmp_path / "R.md").read_text()
    for name in BAD_FIELDS:
        assert cli.main(["compare", str(folder / f"bad-{name}.json"),
                         str(folder / "good.json")]) == 2
        one_line(capsys.readouterr().err, f"bad-{name}.json")


# ---- 8. an unwritable report location ---------------------------------------------------------

@pytest.mark.parametrize("out", ["/sys/kernel/x.md", "/proc/x.md"])
def test_an_unwritable_report_location_is_one_line(tmp_path, capsys, out):
    store.write(h.run_file(), tmp_path / "run.json")
    assert cli.main(["report", str(tmp_path), "--out", out]) == 2
    one_line(capsys.readouterr().err, f"cannot write the report to {out}")


# ---- 9. infinite and huge times ---------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--time-per-case", "--budget", "--timeout"])
def test_infinite_times_are_refused_in_sweep_too(tmp_path, capsys, flag):
    assert cli.main(["sweep", "--sizes", "1", "--variants", "numpy", "--no-peak", flag, "inf",
                     "--out", str(tmp_path / "s.json")]) == 2
    one_line(capsys.readouterr().err, "must be a finite number above 0")
    assert not (tmp_path / "s.json").exists()


def test_a_huge_finite_timeout_is_honoured(tmp_path):
    out = tmp_path / "r.json"
    proc = bench(environ(tmp_path), "run", "--widths", "1,1,1", "--variants", "numpy", *FAST,
                 "--timeout", "1e308", "--out", str(out))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert statuses(out) == {"numpy": "ok"} and store.read_run(out).complete


# ---- 10. Markdown escaping --------------------------------------------------------------------

EVIL = "x|y <img src=x onerror=alert(1)> *z*"


def test_cpu_and_file_names_are_escaped_in_tables_and_html(tmp_path):
    run = h.run_file()
    run.machine = dataclasses.replace(run.machine, cpu=f"cpu {EVIL}")  # not the shared one
    store.write(run, tmp_path / f"run {EVIL}.json")
    text = build_report([tmp_path], tmp_path / "R.md").read_text()
    code = "`run x\\|y <img src=x onerror=alert(1)> *z*.json`"  # inline code: shown as is
    assert "cpu x\\|y &lt;img src=x onerror=alert(1)&gt; \\*z\\*" in text and code in text
    assert "<img" not in text.replace(code, "")
    # the sweep's compile table is folded in <details>: its <summary> is HTML, not Markdown
    html = compile_section.section(sources_of([(tmp_path / f"s {EVIL}.json",
                                                h.sweep_file())]))
    summary = next(line for line in html.splitlines() if "<summary>" in line)
    assert "<img" not in summary and "&lt;img" in summary


# ---- 11. stray output on a worker's stdout ----------------------------------------------------

def test_stray_output_of_a_sitecustomize_or_framework_is_not_a_message(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "print(42)\nprint('{\"type\": \"case\", \"body\": {}}')\n")
    env = environ(tmp_path, FAULTY_IMPORT_PRINT="1")
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    out = tmp_path / "r.json"
    proc = bench(env, "run", "--widths", "1,1,1", "--variants", "numpy,faulty-ok", *FAST,
                 "--out", str(out))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert statuses(out) == {"numpy": "ok", "faulty-ok": "ok"} and store.read_run(out).complete


# ---- 12. the smaller items --------------------------------------------------------------------

def test_a_fifo_named_json_hangs_neither_report_nor_compare(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    store.write(h.run_file(), folder / "good.json")
    os.mkfifo(folder / "pipe.json")
    env = environ(tmp_path)
    proc = bench(env, "report", str(folder), "--out", str(tmp_path / "R.md"), timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    for argv in (["report", str(folder / "pipe.json"), "--out", str(tmp_path / "P.md")],
                 ["compare", str(folder / "pipe.json"), str(folder / "good.json")]):
        proc = bench(env, *argv)
        assert proc.returncode == 2
        one_line(proc.stderr, "pipe.json: not a regular file")


def test_check_takes_gpu_as_run_does(monkeypatch, capsys):
    def no_gpu(device):
        raise BenchError(f"--device {device}: no framework here can use it")

    monkeypatch.setattr(check_command, "require_device", no_gpu)
    monkeypatch.setattr(run_command, "require_device", no_gpu)
    for argv in (["check", "--device", "gpu"], ["run", "--device", "gpu", *FAST]):
        assert cli.main(argv) == 2
        one_line(capsys.readouterr().err, "--device cuda: no framework here can use it")


def test_a_worker_dying_in_a_case_loses_that_case_only(tmp_path):
    out = tmp_path / "r.json"
    proc = bench(environ(tmp_path), "run", "--widths", "1,1,1", "--variants",
                 "faulty-die,faulty-ok", *FAST, "--out", str(out))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    cases = {c.variant: c for c in store.read_run(out).cases}
    assert cases["faulty-die"].reason == ("worker process exited with status 3 before this "
                                          "case finished (it wrote nothing to its log)")
    assert cases["faulty-ok"].ok, cases["faulty-ok"].reason  # a fresh worker went on


def test_an_interrupt_before_the_first_write_says_nothing_was_saved(tmp_path, monkeypatch,
                                                                    capsys):
    def interrupted(plan):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "new_run", interrupted)
    out = tmp_path / "r.json"
    argv = ["run", "--widths", "1,1,1", "--variants", "numpy", *FAST, "--out", str(out)]
    assert cli.main(argv) == 130
    one_line(capsys.readouterr().err, "interrupted: nothing was saved")
    assert not out.exists()
    older = h.run_file()
    store.write(older, out)  # an older run, which --force would replace
    assert cli.main([*argv, "--force"]) == 130
    one_line(capsys.readouterr().err, "interrupted: nothing was saved")
    assert store.read_run(out) == older


@pytest.mark.parametrize("argv", [  # and a memory refusal: test_a_network_too_big_for_memory...
    ["run", "--variants", "nope"],
    ["run", "--variants", "limit", "--widths", "4,4"],
    ["sweep", "--variants", "limit", "--sizes", "4"],
])
def test_a_refused_run_creates_no_folders(tmp_path, capsys, argv):
    assert cli.main([*argv, *FAST, "--out", str(tmp_path / "a" / "b" / "r.json")]) == 2
    one_line(capsys.readouterr().err)
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("argv", [["sweep", "--sizes", "1", "--variants", "numpy", *FAST],
                                  ["run", "--widths", "1,1,1", "--variants", "numpy", *FAST],
                                  ["report"]])  # small runs, should one start after all
@pytest.mark.parametrize("out", ["", "  "])
def test_an_empty_out_is_an_error_in_every_command(tmp_path, monkeypatch, capsys, argv, out):
    monkeypatch.chdir(tmp_path)
    assert cli.main([*argv, "--out", out]) == 2
    one_line(capsys.readouterr().err, "--out is empty")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_keeps_the_finished_cases_and_kills_the_workers(tmp_path, signum):
    env, out = environ(tmp_path), tmp_path / "r.json"
    proc = start(env, "run", "--widths", "1,1,1", "--variants", "numpy,faulty-leak", *FAST,
                 "--out", str(out))
    wait_for(tmp_path / "marker")
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    error_line(err, f"interrupted: the finished cases are saved in {out}")
    run = store.read_run(out)
    assert statuses(out) == {"numpy": "ok"} and run.interrupted and not run.complete
    assert gone(env["FAULTS_TOKEN"]) == []


def test_sigkill_of_the_runner_leaves_no_process_and_no_log(tmp_path):
    env, out = environ(tmp_path), tmp_path / "r.json"
    proc = start(env, "run", "--widths", "1,1,1", "--variants", "numpy,faulty-leak", *FAST,
                 "--out", str(out))
    worker, leaked = wait_for(tmp_path / "marker")
    assert running(worker) and running(leaked)
    proc.kill()
    proc.communicate(timeout=30)
    # the worker (PR_SET_PDEATHSIG), what it started and its guard (the lifeline) all die
    assert gone(env["FAULTS_TOKEN"]) == []
    assert not list((tmp_path / "tmp").iterdir())  # the worker's log was an unlinked file
    run = store.read_run(out)  # every case finished before the kill
    assert statuses(out) == {"numpy": "ok"} and run.finished is None and not run.complete
    text = build_report([out], tmp_path / "R.md").read_text()
    assert "(incomplete: killed, or still running)" in text


@pytest.mark.parametrize("variant", ["faulty-spawn", "faulty-fork", "faulty-session"])
def test_a_process_a_worker_starts_dies_with_it(tmp_path, variant):
    # faulty-session's child left the worker's process group: the lifeline's token finds it
    # faulty-fork's child holds the worker's channel open: the run used to wait for the
    # start-up timeout (120 s) after its last case
    env, out = environ(tmp_path), tmp_path / "r.json"
    began = time.monotonic()
    proc = bench(env, "run", "--widths", "1,1,1", "--variants", variant, *FAST,
                 "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - began < 30
    _, leaked = wait_for(tmp_path / "marker")
    assert statuses(out) == {variant: "ok"}
    assert gone(env["FAULTS_TOKEN"]) == [] and not running(leaked)


# ---- a bad framework file: one line naming it, the other frameworks unaffected ---------------

BAD_PLUGINS = {
    "syntax.py": ("def x(:\n", "syntax.py:1: invalid syntax"),
    "keyword.py": ("FRAMEWORK = Framework('k', label='k', packages=(), bogus=1)\nVARIANTS = ()\n",
                   "unexpected keyword argument 'bogus'"),
    "listed.py": ("FRAMEWORK = Framework('l', label='l', packages=())\n"
                  "VARIANTS = [Variant('l', 'idiomatic', 'd')]\n", "VARIANTS must be a tuple"),
    "twin.py": ("FRAMEWORK = Framework('numpy', label='n', packages=())\n"
                "VARIANTS = (Variant('numpy-twin', 'idiomatic', 'd'),)\n",
                "framework numpy is declared already"),
    "escape.py": ("FRAMEWORK = Framework('e', label='e', packages=(), "
                  "order=__import__('os').system('touch PWNED'))\nVARIANTS = ()\n",
                  "may use only literals"),
    "attribute.py": ("FRAMEWORK = Framework('a', label=().__class__.__name__, packages=())\n"
                     "VARIANTS = ()\n", "may use only literals"),
    "huge.py": ("FRAMEWORK = Framework('h', label='x' * (9 ** 9 ** 9), packages=())\n"
                "VARIANTS = ()\n", "may use only literals"),
}


@pytest.mark.parametrize("name", [*BAD_PLUGINS, "binary.py", "missing.py", "folder"])
def test_a_bad_framework_file_is_one_line_and_the_others_still_work(tmp_path, name):
    if name == "binary.py":
        (tmp_path / name).write_bytes(b"\xff\xfe\x00bad")
        expected = "binary.py: not UTF-8 text"
    elif name == "folder":
        (tmp_path / name).mkdir()
        expected = "is not a file"
    elif name == "missing.py":
        expected = "is not a file"
    else:
        text, expected = BAD_PLUGINS[name]
        (tmp_path / name).write_text(text)
    env = {**os.environ, "BACKPROP_BENCH_FRAMEWORKS": str(tmp_path / name)}
    for argv in (["--version"], ["list"], ["compare", "--help"]):
        done = subprocess.run([sys.executable, "-m", "harness.cli", *argv], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        warnings = [line for line in done.stderr.splitlines() if "warning" in line]
        assert len(warnings) == 1 and expected in warnings[0], done.stderr
        assert "Traceback" not in done.stderr
        if argv == ["list"]:
            assert re.search(r"^numpy\s", done.stdout, re.M)
    assert not (tmp_path / "PWNED").exists()


# ---- files rewritten atomically, and the error names the file ---------------------------------

def test_a_readme_that_cannot_be_written_stays_whole_and_is_named(tmp_path, monkeypatch, capsys):
    import errno

    from harness.report import glance

    results = tmp_path / "results"
    results.mkdir()
    store.write(h.run_file(), results / "run.json")
    readme = tmp_path / "README.md"
    text = f"# x\n\n{glance.START}\nold\n{glance.END}\n" + "tail " * 8000
    readme.write_text(text)
    real = store.os.replace

    def full(src, dst):
        if str(dst) == str(readme):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(store.os, "replace", full)
    code = cli.main(["report", str(results), "--out", str(tmp_path / "R.md"),
                     "--readme", str(readme)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(readme) in err[0] and "No space" in err[0]
    assert readme.read_text() == text  # whole, not cut
    assert (tmp_path / "R.md").exists()  # the report itself was written
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("env", [{"PYTHONIOENCODING": "ascii"},
                                 {"PYTHONUTF8": "0", "LC_ALL": "C", "LANG": "C"}])
def test_a_plain_locale_gets_plain_output_not_a_traceback(env):
    base = {**os.environ, **env}
    for argv in (["--version"], ["list"], ["check", "--framework", "numpy", "--widths", "2,3,2",
                                            "--steps", "2", "--dtype", "float64"]):
        done = subprocess.run([sys.executable, "-m", "harness.cli", *argv], env=base, cwd=ROOT,
                              capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
        assert b"Traceback" not in done.stderr
        if env.get("PYTHONIOENCODING") == "ascii":
            done.stdout.decode("ascii")  # nothing it cannot encode


@pytest.mark.parametrize("name, value", [
    ("BACKPROP_BENCH_PG_TIMEOUT", "abc"), ("BACKPROP_BENCH_PG_TIMEOUT", "nan"),
    ("BACKPROP_BENCH_PG_TIMEOUT", "-1"), ("BACKPROP_BENCH_PG_TIMEOUT", "0"),
    ("BACKPROP_BENCH_PG_TIMEOUT", "inf"), ("BACKPROP_BENCH_OVERSUBSCRIBE", "yes"),
    ("BACKPROP_BENCH_COMMIT", "not a commit"),
])
def test_a_bad_setting_is_a_one_line_error_exit_2(monkeypatch, capsys, name, value):
    monkeypatch.setenv(name, value)
    assert cli.main(["check", "--workers", "2", "--variants", "torch-ddp"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and name in err[0] and "error" in err[0]


@pytest.mark.parametrize("ending", ["import os\nos._exit(0)\n", "import sys\nsys.exit(0)\n"])
def test_a_plugin_that_ends_its_process_at_import_is_unavailable_not_a_silent_pass(
        tmp_path, ending):
    plug = tmp_path / "quitter.py"
    plug.write_text(ending + "FRAMEWORK = Framework('quitter', label='q', packages=())\n"
                    "VARIANTS = (Variant('quitter', 'idiomatic', 'ends at import'),)\n")
    env = {**os.environ, "BACKPROP_BENCH_FRAMEWORKS": str(plug)}

    def cli_run(*argv):
        return subprocess.run([sys.executable, "-m", "harness.cli", *argv], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=300)

    named = cli_run("check", "--framework", "quitter")
    assert named.returncode == 2 and "quitter" in named.stderr, named
    assert len(named.stderr.strip().splitlines()) == 1
    beside = cli_run("check", "--framework", "numpy,quitter", "--variants", "numpy")
    assert beside.returncode == 2 and "quitter" in beside.stderr
    if "_exit" in ending:  # list --check imports every framework: once is enough
        listed = cli_run("list", "--check")
        assert re.search(r"^quitter\s.*unavailable", listed.stdout, re.M), listed.stdout
    demo = cli_run("demo", "--framework", "quitter")
    assert demo.returncode != 0 and "quitter" in demo.stderr


# ---- free-form fields and inconsistent values are refused on load ------------------------------

def planted(path: tuple, value) -> dict:
    """h.run_file() as JSON, with ``value`` planted at ``path`` (keys and list indices)."""
    data = h.run_file().to_dict()
    data["environment"] = {"variables": {"OMP_NUM_THREADS": "1"}, "packages": {"numpy": "2"}}
    data["machine_state"] = {"before": {"loadavg": {"load1": 0.1}}, "warnings_before": []}
    data["cases"][0]["memory"] = {"source": "rss", "first_call_added_bytes": 10}
    data["cases"][0]["instructions"] = schema.to_dict(COUNTED)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


COUNTED = Instructions(97_000.0, 256, [2.49e7] * 9, 4_500.0, [97_000.0], [4.0],
                       valgrind="3.19.0")
PLANTED = {  # name: (where, value, a fragment of the one line that refuses the file)
    "variables": (("environment", "variables"), 5, "environment.variables"),
    "before": (("machine_state", "before"), 5, "machine_state.before"),
    "memory": (("cases", 0, "memory", "first_call_added_bytes"), [1],
               "cases[0].memory.first_call_added_bytes"),
    "state": (("cases", 0, "state"), {"reasons": "busy"}, "cases[0].state.reasons"),
    "block-steps-0": (("cases", 0, "timing", "block_steps"), 0, "block_steps 0"),
    "no-samples": (("cases", 1, "timing", "samples_s"), [], "has no timed samples"),
    "denormal": (("cases", 1, "timing", "samples_s", 0), 1e-320, "samples_s[0] 1e-320"),
    "negative": (("cases", 1, "timing", "samples_s", 0), -1.0, "samples_s[0] -1.0"),
    "process": (("cases", 1, "processes"),
                [{"status": "ok", "timing": {"first_call_s": -2.0, "first_call_steps": 1,
                                             "block_steps": 1, "samples_s": [1e-3]}}],
                "first_call_s -2.0"),
    # counts: the same corruption as in a time is refused the same way
    "count-negative": (("cases", 0, "instructions", "samples", 3), -1942.0,
                       "samples[3] -1942.0 is not a count of instructions"),
    "count-per-step": (("cases", 0, "instructions", "per_step"), -19428.0, "per_step -19428.0"),
    "count-per-step-0": (("cases", 0, "instructions", "per_step"), 0,
                         "per_step 0.0: a counted step executes at least one instruction"),
    "count-block-steps-0": (("cases", 0, "instructions", "block_steps"), 0,
                            "block_steps 0: a counted block has at least one step"),
    "count-empty-block": (("cases", 0, "instructions", "empty_block"), -3.0, "empty_block -3.0"),
    "count-process": (("cases", 0, "instructions", "processes"), [-97_000.0],
                      "processes[0] -97000.0"),
    "flops": (("cases", 0, "flops_per_step"), -10, "flops_per_step -10"),
    "weights": (("cases", 0, "n_weights"), -2, "n_weights -2"),
}


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_a_wrong_or_inconsistent_value_is_refused_on_load_and_left_out(tmp_path, capsys, name):
    where, value, fragment = PLANTED[name]
    folder = tmp_path / "results"
    folder.mkdir()
    store.write(h.run_file(), folder / "good.json")
    bad = folder / "bad.json"
    bad.write_text(json.dumps(planted(where, value)))
    assert cli.main(["report", str(folder), "--out", str(tmp_path / "R.md")]) == 0
    one_line(capsys.readouterr().err, "bad.json", fragment, "left out")
    assert "## Run:" in (tmp_path / "R.md").read_text()
    for argv in (["export", str(bad), "--format", "csv"],
                 ["compare", str(folder / "good.json"), str(bad), "--format", "json"]):
        assert cli.main(argv) == 2, argv
        one_line(capsys.readouterr().err, "bad.json", fragment)


def test_the_same_fields_well_formed_still_load(tmp_path):
    path = tmp_path / "fine.json"
    path.write_text(json.dumps(planted(("cases", 0, "memory", "leaks"), False)))
    run = store.read_run(path)
    assert run.environment["variables"] == {"OMP_NUM_THREADS": "1"}
    assert run.cases[0].memory["first_call_added_bytes"] == 10
    assert run.cases[0].instructions == COUNTED


@pytest.mark.parametrize("argv", [["report", "{bad}", "--out", "{tmp}/R.md"],
                                  ["compare", "{bad}", "{bad}", "--measure", "instructions"],
                                  ["export", "{bad}"], ["export", "{bad}", "--format", "csv"]])
def test_a_count_of_zero_per_step_is_one_line_never_a_division_by_zero(tmp_path, capsys, argv):
    bad = tmp_path / "zero.json"
    bad.write_text(json.dumps(planted(("cases", 0, "instructions", "per_step"), 0)))
    status = cli.main([a.format(bad=bad, tmp=tmp_path) for a in argv])
    assert status == 2 and not (tmp_path / "R.md").exists()
    one_line(capsys.readouterr().err, "zero.json", "per_step 0.0")
    with pytest.raises(ResultsError, match="zero.json: .*per_step 0.0"):
        bb.records(bb.load(bad))


def test_a_file_with_a_case_twice_is_refused_in_one_line(tmp_path, capsys):
    data = h.run_file().to_dict()
    data["cases"].append(copy.deepcopy(data["cases"][1]))  # which copy would compare use?
    path = tmp_path / "twice.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="twice.json: case 'cpu/numpy/1-1-1 linear float64/"
                                           "b1' is in the file 2 times"):
        store.read_run(path)
    store.write(h.run_file(), tmp_path / "good.json")
    assert cli.main(["compare", str(tmp_path / "good.json"), str(path)]) == 2
    one_line(capsys.readouterr().err, "twice.json", "is in the file 2 times")


def test_compare_json_is_json_even_for_extreme_ratios(tmp_path, capsys):
    slow, fast = h.run_file(), h.run_file()
    for case in slow.cases:
        if case.ok:
            h.set_median(case, 1e4)
    for case in fast.cases:
        if case.ok:
            h.set_median(case, 1e-11)
    store.write(slow, tmp_path / "a.json")
    store.write(fast, tmp_path / "b.json")
    cli.main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--format", "json"])
    text = capsys.readouterr().out
    assert "Infinity" not in text and "NaN" not in text
    json.loads(text)


# ---- CSV cells a spreadsheet would run ---------------------------------------------------------

def test_csv_export_quotes_what_a_spreadsheet_would_read_as_a_formula(tmp_path, capsys):
    run = h.run_file()
    run.cases[-1].reason = '=HYPERLINK("http://x","click")'
    run.machine = dataclasses.replace(run.machine, hostname="@SUM(A1)")  # not the shared one
    store.write(run, tmp_path / "r.json")
    assert cli.main(["export", str(tmp_path / "r.json"), "--format", "csv"]) == 0
    rows = list(__import__("csv").DictReader(capsys.readouterr().out.splitlines()))
    reasons = [r["reason"] for r in rows if r["reason"]]
    assert "'=HYPERLINK(\"http://x\",\"click\")" in reasons
    assert not any(v.startswith(("=", "+", "@")) for r in rows for v in r.values() if v)
    assert any(r["median_s"] and float(r["median_s"]) > 0 for r in rows)  # numbers stay numbers


# ---- --oversubscribe still has a memory bound --------------------------------------------------

def test_oversubscribed_workers_are_bounded_by_memory(monkeypatch, capsys):
    from harness.commands import plans

    monkeypatch.setattr(plans.environment, "meminfo", lambda field: 4 * GIB)
    assert cli.main(["check", "--workers", "1000", "--oversubscribe", "--variants",
                     "torch-ddp"]) == 2
    one_line(capsys.readouterr().err, "1000 workers need about", "per worker process",
             "4 GiB available")
    assert cli.main(["scale", "--workers", "1,64", "--oversubscribe", "--sizes", "4",
                     "--variants", "torch-ddp", "--out", "/nonexistent/x.json"]) == 2
    one_line(capsys.readouterr().err, "64 workers need about")


# ---- a closed stdout ---------------------------------------------------------------------------

def test_a_closed_stdout_marks_the_run_interrupted_with_its_finished_cases(tmp_path):
    """`run ... | { read l; }`: the reader goes after one line. The file keeps the cases that
    finished and says interrupted; one line on stderr, no traceback, exit 141 (SIGPIPE)."""
    env, out = environ(tmp_path), tmp_path / "r.json"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", "--widths", "1,1,1",
                             "4,4", "8,8", "16,16", "--variants", "numpy", *FAST, "--out",
                             str(out)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141
    error_line(err, "stdout was closed", f"saved in {out}", "marked interrupted")
    run = store.read_run(out)
    assert run.interrupted and not run.complete and len(run.cases) < 4
    assert all(c.ok for c in run.cases)


@pytest.mark.parametrize("argv", [["export", "{results}"], ["export", "{results}", "--format",
                                                               "csv"],
                                  ["compare", "{results}/a.json", "{results}/b.json"],
                                  ["list"], ["report", "{results}", "--out", "{tmp}/R.md"]])
def test_a_closed_pipe_after_a_reading_command_is_one_line(tmp_path, argv):
    results = tmp_path / "results"
    results.mkdir()
    store.write(h.run_file(), results / "a.json")
    store.write(h.run_file(1), results / "b.json")
    argv = [a.format(results=results, tmp=tmp_path) for a in argv]
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *argv], env=environ(tmp_path),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # `| true`: closed before anything is read
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    lines = err.strip().splitlines()  # a note on what export leaves out may come first
    assert "Traceback" not in err and "stdout was closed" in lines[-1], err
    assert [line for line in lines if "error" in line] == lines[-1:]


# ---- a full disk -------------------------------------------------------------------------------

def fill_disk_after(monkeypatch, target: Path, writes: int) -> None:
    """Every write of ``target`` after the first ``writes`` fails as on a full disk."""
    import errno

    real, done = store.os.replace, []

    def replace(src, dst):
        if str(dst) == str(target):
            if len(done) >= writes:
                raise OSError(errno.ENOSPC, "No space left on device")
            done.append(dst)
        return real(src, dst)

    monkeypatch.setattr(store.os, "replace", replace)


def test_a_full_disk_in_run_is_one_line_keeps_the_finished_cases_and_no_lock(
        tmp_path, monkeypatch, capsys):
    out = tmp_path / "r.json"
    fill_disk_after(monkeypatch, out, 3)  # the start, then two cases
    code = cli.main(["run", "--widths", "1,1,1", "2,2", "4,4", "8,8", "--variants", "numpy",
                     *FAST, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    error_line(err, f"cannot write {out}: No space left on device", "cases finished before")
    assert "Traceback" not in err and "During handling" not in err
    run = store.read_run(out)  # whole: the last write that succeeded
    assert len(run.cases) == 2 and all(c.ok for c in run.cases)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # no lock, no .tmp


def test_a_full_disk_in_export_is_one_line_and_no_lock(tmp_path, monkeypatch, capsys):
    store.write(h.run_file(), tmp_path / "r.json")
    out = tmp_path / "e.json"
    fill_disk_after(monkeypatch, out, 0)
    assert cli.main(["export", str(tmp_path / "r.json"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert f"cannot write {out}: No space left on device" in err[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


# ---- a call floor that fails costs only the floor ---------------------------------------------

@pytest.mark.parametrize("fault", ["", "raise", "exit"])
def test_a_failing_call_floor_costs_only_the_floor(tmp_path, fault):
    env, out = environ(tmp_path, FAULTY_FLOORS=fault), tmp_path / "r.json"
    done = bench(env, "run", "--widths", "1,1,1", "2,2", "--variants", "faulty-ok", *FAST,
                 "--out", str(out), timeout=120)
    assert done.returncode == 0, done.stderr
    run = store.read_run(out)
    assert [c.status for c in run.cases] == ["ok", "ok"]
    floors = [f.name for f in run.ceilings.call_floors if f.framework == "faulty"]
    assert floors == ([] if fault else ["faulty no-op"])


# ---- check --timeout ---------------------------------------------------------------------------

def test_a_hanging_variant_fails_its_check_with_the_cause_and_the_rest_go_on(tmp_path):
    env = environ(tmp_path)
    done = bench(env, "check", "--framework", "faulty", "--variants", "faulty-hang,faulty-ok",
                 "--widths", "2,2", "--dtype", "float64", "--steps", "3", "--timeout", "3",
                 timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert re.search(r"faulty-hang.*timed out: did not finish within 3 s", done.stdout), \
        done.stdout
    assert not re.search(r"faulty-ok.*FAIL", done.stdout)  # it ran after, and passed


def test_a_hang_in_c_fails_its_subject_in_one_line_within_the_grace(tmp_path):
    """A plugin's variant that hangs in C, where no alarm can reach it: the plugin runs in a
    process of its own, whose watchdog ends it; the variant fails with that one line, and the
    check itself ends with exit 1 (it no longer takes the judge's process down with it)."""
    from harness.check import deadline

    env = environ(tmp_path)
    t0 = time.monotonic()
    done = bench(env, "check", "--framework", "faulty", "--variants", "faulty-spin",
                 "--widths", "2,2", "--dtype", "float64", "--steps", "3", "--timeout", "2",
                 timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("  faulty-spin: "))
    assert "faulty-spin on 2-2" in line and "could not be interrupted" in line, line
    assert time.monotonic() - t0 < 2 + deadline.GRACE_S + 30
    assert not gone(env["FAULTS_TOKEN"])


def test_a_timeout_in_an_isolated_check_is_a_failure_of_its_case(tmp_path, monkeypatch):
    """A case of an isolated framework's process that runs past --timeout: the parent kills
    that process (the whole group) and the variant fails with the cause."""
    from harness.check import deadline
    from harness.procs import child

    monkeypatch.setenv(deadline.ENV, "1")
    code = ("import time, sys\n"
            "from harness.procs import child\n"
            "def answer(job, stream):\n"
            "    child.case_started(stream, 'slow-one on 2-2')\n"
            "    time.sleep(3600)\n"
            "sys.exit(child.serve(answer))\n")
    mod = tmp_path / "slowchild.py"
    mod.write_text(code)
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{ROOT}")
    t0 = time.monotonic()
    got = child.ask("slowchild", {}, 60, 1.0)
    assert "slow-one on 2-2 did not finish within 1 s" in got["error"]
    assert time.monotonic() - t0 < 30


# ---- one private channel: nothing a child prints is an answer --------------------------------

SITECUSTOMIZE = """
import atexit, json, sys
print(json.dumps({"report": {"passed": True, "rows": [], "notes": []}, "gradients": {}}))
print('{"type": "answer", "body": {"rows": [], "notes": []}}')
atexit.register(lambda: print('{"type": "answer", "body": {"forged": true}}'))
"""


def test_what_a_sitecustomize_prints_is_never_taken_for_an_answer(tmp_path):
    """Stray output at start and at exit, shaped like both the old stdout answer and a
    channel message, in every process: check --workers and an isolated check still answer
    on their channel only, and a failing check still fails."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = environ(tmp_path, PYTHONPATH=f"{site}{os.pathsep}{ROOT}")
    workers = bench(env, "check", "--workers", "2", "--variants", "torch-ddp", "--widths",
                    "2,3,2", "--steps", "3", timeout=300)
    assert workers.returncode == 0 and "PASSED" in workers.stdout, workers.stderr
    assert "Traceback" not in workers.stderr and "JSONDecodeError" not in workers.stderr
    bugs = environ(tmp_path, PYTHONPATH=f"{site}{os.pathsep}{ROOT}",
                   BACKPROP_BENCH_FRAMEWORKS=str(ROOT / "tests" / "fake_buggy_tf.py"))
    if importlib.util.find_spec("tensorflow") is not None:
        buggy = bench(bugs, "check", "--framework", "buggy-tf", "--widths", "2,3,2",
                      "--steps", "3", "--dtype", "float64", timeout=300)
        assert buggy.returncode == 1 and "FAIL" in buggy.stdout, buggy.stdout + buggy.stderr


def test_sigkill_of_check_leaves_no_isolated_process(tmp_path):
    """kill -9 of `check` while its isolated (TensorFlow) process works: that process dies
    with it (it dies with its parent), and so does everything it started."""
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("needs TensorFlow: the isolated frameworks are TF and Keras")
    env = environ(tmp_path)
    proc = start(env, "check", "--framework", "tf", "--variants", "tf", "--steps", "3000000",
                 "--widths", "2,2", "--dtype", "float64", "--timeout", "300")
    try:
        deadline_s = time.monotonic() + 120
        while time.monotonic() < deadline_s:  # until the isolated process is there
            if any("harness.procs.isolated" in Path(f"/proc/{p}/cmdline").read_text(
                    errors="replace").replace("\0", " ") for p in processes_of(
                    env["FAULTS_TOKEN"]) if Path(f"/proc/{p}/cmdline").exists()):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the isolated process never started")
        time.sleep(2)
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not gone(env["FAULTS_TOKEN"], seconds=15)


# ---- the fourth round: counting processes and what they leave --------------------------------

needs_valgrind = pytest.mark.skipif(callgrind.unavailable() is not None,
                                    reason=f"cannot count here: {callgrind.unavailable()}")
# a valgrind that misbehaves: its --version fails (VERSION=fails), or what it runs hangs
# (RUN=hang) or prints a terminal's escapes and 3,000 random bytes and fails
FAKE_VALGRIND = """#!/bin/sh
VERSION={version} RUN={run}
if [ "$1" = "--version" ]; then
    [ $VERSION = fails ] && {{ echo "valgrind: cannot start"; exit 1; }}
    echo valgrind-3.19.0; exit 0
fi
[ $RUN = hang ] && exec sleep 3600
printf '\\033[2J\\033[31mvalgrind: \\033]0;owned\\007exploded\\n'
head -c 3000 /dev/urandom
exit 1
"""
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def fake_valgrind(tmp_path: Path, version: str = "ok", run: str = "noisy") -> dict:
    """The environment of a run whose PATH finds the misbehaving valgrind first."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "valgrind").write_text(FAKE_VALGRIND.format(version=version, run=run))
    (bin_dir / "valgrind").chmod(0o755)
    return environ(tmp_path, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def counting_run(env: dict, out: Path, *more: str, widths=("1,1,1",)) -> list[str]:
    return ["run", "--measure", "instructions", "--widths", *widths, "--variants", "numpy",
            *FAST, *more, "--out", str(out)]


@needs_valgrind
def test_a_valgrind_whose_version_fails_is_not_used(tmp_path):
    env, out = fake_valgrind(tmp_path, version="fails"), tmp_path / "r.json"
    proc = bench(env, *counting_run(env, out))
    assert proc.returncode == 2 and not out.exists()
    one_line(proc.stderr, "valgrind does not start (valgrind --version failed)")


@needs_valgrind
def test_what_a_counting_worker_prints_is_plain_text_and_a_run_that_counts_nothing_fails(
        tmp_path):
    env, out = fake_valgrind(tmp_path), tmp_path / "r.json"
    proc = bench(env, *counting_run(env, out))
    assert proc.returncode == 1  # every count failed: no success
    error_line(proc.stderr, "no case could be counted (1 tried): worker process exited with "
                            "status 1 before this case finished")
    assert not CONTROL.search(proc.stdout + proc.stderr)  # nothing that moves the terminal
    counted = store.read_run(out).cases[0].instructions
    assert not counted.ok and not CONTROL.search(counted.error) and len(counted.error) <= 500
    assert statuses(out) == {"numpy": "ok"}  # the case keeps its times


@needs_valgrind
def test_a_counting_worker_that_never_starts_waits_only_count_timeout(tmp_path):
    env, out = fake_valgrind(tmp_path, run="hang"), tmp_path / "r.json"
    proc = bench(env, *counting_run(env, out, "--count-timeout", "2",
                                    widths=("1,1,1", "2,2,2")))
    assert proc.returncode == 1, proc.stderr
    reasons = [c.instructions.error for c in store.read_run(out).cases]
    assert reasons == ["its counting worker did not start within 2 s under valgrind (it was "
                       "killed; --count-timeout sets the limit)"] * 2  # one wait, not two
    assert gone(env["FAULTS_TOKEN"]) == [] and not list((tmp_path / "tmp").iterdir())


@needs_valgrind
def test_an_unwritable_home_is_one_line(tmp_path):
    env = environ(tmp_path, HOME="/dev/null")
    env.pop("XDG_CACHE_HOME", None)
    env.pop(callgrind.LIBRARY_ENV, None)
    proc = bench(env, *counting_run(env, tmp_path / "r.json"))
    assert proc.returncode == 2
    one_line(proc.stderr, "cannot keep the Callgrind helper in /dev/null/.cache/backprop-bench "
                          "(Not a directory): set XDG_CACHE_HOME to a folder you can write")


def counting_processes(tmp_path: Path) -> list[int]:
    """The live counting processes of a run in this test's temporary folder, once they have
    become Valgrind: not their starter and its guard (``harness.procs.lifeline``)."""
    found, marks = [], (f"TMPDIR={tmp_path / 'tmp'}".encode(), f"{callgrind.COUNTING}=1".encode())
    for proc in Path("/proc").iterdir():
        try:
            environ_ = (proc / "environ").read_bytes()
            line = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if all(m in environ_ for m in marks) and b"lifeline.py" not in line and running(
                int(proc.name)):
            found.append(int(proc.name))
    return found


@needs_valgrind
def test_sigkill_of_a_counting_run_leaves_no_process_and_no_folder(tmp_path):
    # killed before the counting process has started Python (here it never does), so before
    # Python could ask to die with its parent: it was left running, in its own session, with
    # the bb-callgrind-* folder beside it
    env, out = fake_valgrind(tmp_path, run="hang"), tmp_path / "r.json"
    proc = start(env, *counting_run(env, out))
    deadline = time.monotonic() + 120
    while not (counting := counting_processes(tmp_path)):
        assert time.monotonic() < deadline and proc.poll() is None, "it never counted"
        time.sleep(0.01)
    assert list((tmp_path / "tmp").glob("bb-callgrind-*"))
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while (any(map(running, counting)) or list((tmp_path / "tmp").iterdir())) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(running, counting)) and not list((tmp_path / "tmp").iterdir())
