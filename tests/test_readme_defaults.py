"""The README's commands, as it shows them, at the defaults of everything that decides what is
measured (the count target, the timeouts, the time per case, the dtypes, the block sizes, the
rounds): only the variants and the networks are narrowed, so that it stays quick, and each
output is checked for what the README promises of it.

`run --measure instructions` once counted nothing at its default --count-target, and exited 0,
while its tests passed with a target of their own: this module is where a default that breaks
a command shows. The commands that make results files run at once, as subprocesses (about
40 s of CPU on 2 cores); report, compare and export then read those files.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.measure import callgrind
from harness.measure.instructions import CountConfig
from harness.measure.timing import TimingConfig
from harness.record import store

ROOT = Path(__file__).resolve().parents[1]
COUNTS = callgrind.unavailable() is None  # counting needs Valgrind, installed on this machine
# name: the README's command, narrowed to some variants and networks (and an --out)
MAKERS = {
    "run": "run --widths 1,1,1 --variants numpy --out {d}/run.json",
    "count": "run --measure instructions --widths 1,1,1 --variants numpy --out {d}/head.json",
    "sweep": "sweep --budget 120 --sizes 1,16 --variants numpy --out {d}/sweep.json",
    "scale": "scale --workers 1,2 --sizes 16 --variants jax-sharded --out {d}/scale.json",
    "demo": "demo --framework numpy",
    "check": "check --framework numpy",
    "list": "list",
}


def start(argv: str, folder: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(folder)}
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *argv.format(d=folder).split()],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[Path, dict[str, tuple[int, str, str]]]:
    """The folder of results files, and each command's (exit status, stdout, stderr)."""
    folder = tmp_path_factory.mktemp("readme")
    procs = {name: start(argv, folder) for name, argv in MAKERS.items()
             if name != "count" or COUNTS}
    outputs = {name: p.communicate(timeout=900) for name, p in procs.items()}
    return folder, {name: (procs[name].returncode, *outputs[name]) for name in procs}


def finished(made, name: str) -> tuple[str, str]:
    """A command's stdout and stderr, once it exited 0 with no traceback."""
    status, out, err = made[1][name]
    assert status == 0 and "Traceback" not in err, f"{MAKERS[name]}: {status}\n{out}\n{err}"
    return out, err


def bench(*argv: str) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "harness.cli", *argv], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


def test_demo_replays_the_worked_example_to_its_printed_digits(made):
    out, _ = finished(made, "demo")
    for value in ("0.5460125", "0.11865", "0.284325", "-0.98661309459782", "1.01356846211392",
                  "-0.39999997", "199.99998"):
        assert value in out, value


def test_check_passes_numpy_on_every_default_network(made):
    out, _ = finished(made, "check")
    for network in ("1-1-1 linear f64, batch 1", "3-4-4-3 tanh+b f64, batch 5",
                    "3-4-4-3 tanh+b f32, batch 5"):
        assert network in out, network
    assert re.search(r"^PASSED: all \d+ comparisons within tolerance$", out, re.M)


def test_run_times_checks_and_stores_each_case(made):
    out, _ = finished(made, "run")
    path = made[0] / "run.json"
    assert f"results: {path}" in out and re.search(r"^1-1-1 linear float64 b1\s+numpy\s", out,
                                                    re.M)
    run = store.read_run(path)
    case, = run.cases
    m, target = case.timing, TimingConfig().target_block_s
    assert case.ok and case.check["passed"] and run.complete
    # K calibrated until a block took at least 20 ms, at least 7 blocks, the first call apart
    assert m.calibration[-1] == (m.block_steps, m.calibration[-1][1])
    assert m.calibration[-1][1] >= target and m.blocks >= TimingConfig().min_blocks
    assert m.first_call_s > 0 and case.memory and run.ceilings.engine_overhead


@pytest.mark.skipif(not COUNTS, reason=f"cannot count here: {callgrind.unavailable()}")
def test_run_measure_instructions_counts_at_the_default_target(made):
    out, _ = finished(made, "count")
    assert re.search(r"numpy .* [\d.]+ k instructions/step \(K [\d,]+, ", out), out
    counted = store.read_run(made[0] / "head.json").cases[0].instructions
    assert counted.ok, counted.error
    assert 50_000 < counted.per_step < 200_000  # NumPy's 1-1-1 step: about 97 k
    k = counted.block_steps
    assert k & (k - 1) == 0 and min(counted.samples) >= CountConfig().target  # K doubled to it
    assert len(counted.samples) == CountConfig().blocks and counted.counter.startswith(
        "callgrind ")


def test_sweep_times_the_grid_within_its_budget(made):
    out, _ = finished(made, "sweep")
    assert "results:" in out and "0 failed" in out
    cases = store.read_run(made[0] / "sweep.json").cases
    assert {c.problem.widths for c in cases if c.variant == "numpy" and c.ok} == {(1, 1, 1),
                                                                                 (16, 16, 16)}


def test_scale_times_one_and_two_workers_and_the_allreduce(made):
    finished(made, "scale")
    run = store.read_run(made[0] / "scale.json")
    assert all(c.ok for c in run.cases) and {c.workers for c in run.cases} == {1, 2}
    assert run.ceilings.allreduce


def test_report_builds_every_section_from_the_files(made, tmp_path):
    for name in ("run", "sweep", "scale") + (("count",) if COUNTS else ()):
        finished(made, name)
    status, out, err = bench("report", str(made[0]), "--out", str(tmp_path / "REPORT.md"))
    assert status == 0, err
    text = (tmp_path / "REPORT.md").read_text()
    assert "## Run:" in text and "Scaling" in text and (tmp_path / "plots").is_dir()
    if COUNTS:
        assert "Instructions per SGD step" in text


def test_compare_gives_a_ratio_per_shared_case(made):
    finished(made, "run")
    path = str(made[0] / "run.json")
    status, out, err = bench("compare", path, path, "--fail-above", "10")
    assert status == 0, err
    assert re.search(r"^cpu/numpy/1-1-1 linear float64/b1 .* 1× +1 / 1 .* n/a$", out, re.M)
    assert "rerun both with --rounds 5 for verdicts" in out  # one process a side: no test


@pytest.mark.skipif(not COUNTS, reason=f"cannot count here: {callgrind.unavailable()}")
def test_compare_measure_instructions_gates_on_counts(made):
    finished(made, "count")
    head = str(made[0] / "head.json")
    status, out, err = bench("compare", head, head, "--measure", "instructions")
    assert status == 0, err
    assert re.search(r"cpu/numpy/1-1-1 linear float64/b1 .* 1\.0000× .* \+0\.00% .* same", out)


def test_export_writes_pytest_benchmark_json_and_csv(made, tmp_path):
    finished(made, "run")
    run = made[0] / "run.json"
    status, _, err = bench("export", str(run), "--out", str(tmp_path / "a.json"))
    assert status == 0, err
    benchmark, = json.loads((tmp_path / "a.json").read_text())["benchmarks"]
    k = store.read_run(run).cases[0].timing.block_steps
    assert benchmark["name"] == "numpy" and benchmark["stats"]["iterations"] == k
    files = [run, *([made[0] / "head.json"] if COUNTS and finished(made, "count") else [])]
    status, out, err = bench("export", *map(str, files), "--format", "csv")
    assert status == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == len(files) and all(float(r["median_s"]) > 0 for r in rows)
    assert [bool(r["instructions_per_step"]) for r in rows] == [False, True][:len(files)]


def test_list_says_what_can_run_here(made):
    out, _ = finished(made, "list")
    assert re.search(r"^numpy\s", out, re.M) and "jax-fori" in out
