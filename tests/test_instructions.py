"""Instructions per step (harness.measure.callgrind, harness.measure.instructions,
harness.record.counts).

Without Valgrind: the counting algorithm against a ledger that knows the answer, the record,
compare on counts, export, the results schema and the one-line refusals. With Valgrind (the
tests marked by ``needs_valgrind``, skipped cleanly where it cannot count): the counter on a
plain Python loop, and the proof: a planted op of ~2.4% more instructions on the worked
example is flagged by compare on counts, two counts of the same code agree to 0.1%, and a
default-mode timing pair cannot tell the two apart. Those run NumPy's 1-1-1 step with
``--count-target 2e6`` (blocks of 32-64 steps) and take about 25 s together on 2 cores.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import helpers_results as h
import numpy as np
import pytest

from harness import cli
from harness.commands.run import count_status
from harness.measure import callgrind
from harness.measure.instructions import CountConfig, Instructions, count_trainer, steps_per_block
from harness.measure.timing import NullTrainer
from harness.record import counts, export, store
from harness.record import rows as records
from harness.record.results import ResultsError, Run

ROOT = Path(__file__).resolve().parent.parent
PLANTED = ROOT / "tests" / "fake_overhead.py"
needs_valgrind = pytest.mark.skipif(callgrind.unavailable() is not None,
                                    reason=f"cannot count here: {callgrind.unavailable()}")


# ---- the counting algorithm, against a ledger ------------------------------------------------

class Ledger:
    """Instructions executed so far: a Trainer adds FIXED per call and PER_STEP per step, the
    counter COST per reading (after it reads, as Callgrind's zero comes after the dump)."""

    FIXED, PER_STEP, COST = 7, 100, 3

    def __init__(self):
        self.n, self.started_after_runs, self.runs, self.running = 0, None, 0, False


class LedgerCounter:
    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def start(self):
        self.ledger.started_after_runs, self.ledger.running = self.ledger.runs, True

    def stop(self):
        self.ledger.running = False

    def __call__(self) -> float:
        value = self.ledger.n
        self.ledger.n += Ledger.COST
        return float(value)


class LedgerTrainer:
    block, first_calls = 1, 2

    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def run(self, steps: int) -> None:
        self.ledger.runs += 1
        self.ledger.n += Ledger.FIXED + Ledger.PER_STEP * steps


def test_a_count_is_the_median_block_less_the_empty_block_over_k():
    ledger = Ledger()
    got = count_trainer(LedgerTrainer(ledger), CountConfig(target=2000), LedgerCounter(ledger))
    # K doubles from 1 until a block reaches 2000: 3 + 7 + 100·32 is the first that does
    assert got.block_steps == 32
    assert got.empty_block == Ledger.COST
    assert got.per_step == Ledger.PER_STEP + Ledger.FIXED / 32
    assert got.samples == [Ledger.COST + Ledger.FIXED + Ledger.PER_STEP * 32] * 9
    assert ledger.started_after_runs == 3  # two first calls and one block, uninstrumented
    assert not ledger.running


def test_a_given_k_is_kept_for_the_processes_of_one_case():
    ledger = Ledger()
    got = count_trainer(LedgerTrainer(ledger), CountConfig(target=2000), LedgerCounter(ledger),
                        block_steps=48)
    assert got.block_steps == 48
    assert got.per_step == Ledger.PER_STEP + Ledger.FIXED / 48


def test_k_is_a_power_of_two_of_the_block_that_first_reaches_the_target():
    ledger = Ledger()
    trainer = LedgerTrainer(ledger)
    trainer.block = 3
    assert steps_per_block(trainer, 3, CountConfig(target=2000), LedgerCounter(ledger)) == 24
    assert steps_per_block(NullTrainer(), 1, CountConfig(target=1), LedgerCounter(ledger)) == 1


class NumpySized(LedgerTrainer):
    """A Trainer that counts as NumPy's 1-1-1 step does, ~97 k instructions a step."""

    def run(self, steps: int) -> None:
        self.ledger.runs += 1
        self.ledger.n += 97_000 * steps


def test_a_count_at_the_default_target_is_a_count_not_a_time():
    # its blocks count 2.5e7 instructions: as seconds (Measurement's check) that is 290 days,
    # and every case of run --measure instructions was "not counted" at the default target
    ledger = Ledger()
    got = count_trainer(NumpySized(ledger), CountConfig(), LedgerCounter(ledger))
    assert got.ok and got.block_steps == 256 and got.per_step == pytest.approx(97_000, rel=1e-3)
    assert min(got.samples) > 1e7


def test_a_block_that_counts_no_more_than_the_empty_block_is_not_counted():
    ledger = Ledger()
    got = count_trainer(NullTrainer(), CountConfig(target=1), LedgerCounter(ledger))
    assert not got.ok and "no more than the empty block" in got.error


def test_a_run_whose_every_count_failed_is_no_success(capsys):
    run = counted_run({"numpy": 0.0, "torch": 0.0})
    assert count_status(run.cases) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["backprop-bench: error: no case could be counted (2 tried): crashed: X"]
    assert count_status(counted_run({"numpy": 0.0, "torch": 5e5}).cases) == 0
    assert count_status(h.run_file().cases) == 0  # nothing was to be counted


# ---- the record --------------------------------------------------------------------------------

def counted(per_step: float, processes=None, k: int = 64, version: str = "3.19.0",
            threads: int = 1) -> Instructions:
    processes = processes or [per_step]
    return Instructions(per_step, k, [p * k for p in processes], 4500.0, list(processes),
                        [9.0] * len(processes), valgrind=version, threads=threads,
                        options=["setarch -R", "--tool=callgrind"])


def test_processes_pool_into_one_count_with_their_spread():
    i = counted(100_000.0)
    i.pool(counted(100_050.0))
    i.pool(counted(99_990.0))
    assert i.processes == [100_000.0, 100_050.0, 99_990.0]
    assert i.per_step == 100_000.0
    assert i.spread_pct == pytest.approx(0.06)
    assert len(i.samples) == 3 and i.counter == "callgrind 3.19.0, 1 thread"


def test_a_process_that_could_not_count_makes_the_case_not_counted():
    i = counted(100_000.0)
    i.pool(Instructions.failed("took longer than 900 s under valgrind"))
    assert not i.ok and i.error == "process 2: took longer than 900 s under valgrind"
    i.pool(counted(1.0))  # nothing pools into a count that failed
    assert not i.ok and i.per_step is None


# ---- compare on counts -------------------------------------------------------------------------

def counted_run(per_step: dict[str, float], seed: int = 0, **kw) -> Run:
    """A run of numpy, torch and jax on one network, each counted at per_step[variant]."""
    rng = np.random.default_rng(seed)
    cases = []
    for variant, n in per_step.items():
        case = h.ok_case(variant, "cpu", h.WORKED, 10e-6, rng)
        case.instructions = counted(n, **kw) if n else Instructions.failed("crashed: X")
        cases.append(case)
    return h.new_run("run", "cpu", h.CPU_MACHINE, cases)


BASE = {"numpy": 96_900.0, "torch": 522_900.0, "jax": 72_500.0, "python": 4_100.0}


def verdicts(a: Run, b: Run, threshold: float = counts.FAIL_ABOVE_PCT) -> dict[str, str]:
    return {r.case_id.split("/")[1]: r.verdict for r in
            counts.compare_runs(a, b, threshold).rows}


def test_counts_more_or_fewer_beyond_the_threshold_and_the_same_within():
    b = dict(BASE, numpy=BASE["numpy"] * 1.024, jax=BASE["jax"] * 0.97,
             torch=BASE["torch"] * 1.004)
    a_run, b_run = counted_run(BASE), counted_run(b)
    assert verdicts(a_run, b_run) == {"numpy": "more", "torch": "same", "jax": "fewer",
                                      "python": "same"}
    assert verdicts(a_run, b_run, threshold=0.1)["torch"] == "more"
    bad = counts.regressions(counts.compare_runs(a_run, b_run), 1.0)
    assert bad == ["cpu/numpy/1-1-1 linear float64/b1: +2.40% instructions per step"]


def test_a_case_not_counted_by_the_same_counter_in_b_is_lost():
    a = counted_run(BASE)
    b = counted_run(dict(BASE, torch=0.0))  # torch: not counted in B
    b.cases[2].instructions = counted(BASE["jax"], version="3.22.0")
    b.cases = b.cases[1:]  # numpy missing in B
    comparison = counts.compare_runs(a, b, name_b="b.json")
    lost = dict(comparison.lost)
    assert [r.case_id.split("/")[1] for r in comparison.rows] == ["python"]
    assert lost["cpu/numpy/1-1-1 linear float64/b1"] == "missing in b.json"
    assert lost["cpu/torch/1-1-1 linear float64/b1"] == "not counted in b.json: crashed: X"
    assert "callgrind 3.22.0, 1 thread in b.json" in lost["cpu/jax/1-1-1 linear float64/b1"]
    assert len(counts.regressions(comparison, 50.0)) == 3


def test_comparing_files_without_counts_is_one_line(tmp_path):
    run = counted_run(BASE)
    for c in run.cases:
        c.instructions = None
    with pytest.raises(ResultsError, match="run both with --measure instructions"):
        counts.compare_runs(run, run)
    failed = counted_run({"numpy": 0.0, "torch": 0.0})  # every count failed: said so
    with pytest.raises(ResultsError, match=r"no case of b.json was counted \(2 tried; the "
                                           r"first: crashed: X\)"):
        counts.compare_runs(counted_run(BASE), failed, name_b="b.json")


def write(tmp_path: Path, name: str, run: Run) -> Path:
    path = tmp_path / name
    store.write(run, path)
    return path


def test_compare_measure_instructions_gates_at_one_percent_by_default(tmp_path, capsys):
    a = write(tmp_path, "a.json", counted_run(BASE))
    b = write(tmp_path, "b.json", counted_run(dict(BASE, numpy=BASE["numpy"] * 1.015)))
    assert cli.main(["compare", str(a), str(b), "--measure", "instructions"]) == 1
    out = capsys.readouterr().out
    assert "+1.50% instructions per step" in out and "FAIL: 1 case(s) regressed" in out
    assert cli.main(["compare", str(a), str(b), "--measure", "instructions",
                     "--fail-above", "2"]) == 0
    capsys.readouterr()
    assert cli.main(["compare", str(a), str(b), "--measure", "instructions", "--format",
                     "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["threshold_pct"] == 1.0 and len(doc["rows"]) == 4 and len(doc["regressions"]) == 1
    assert cli.main(["compare", str(a), str(b), "--measure", "instructions", "--format",
                     "md"]) == 1
    assert "**FAIL**: 1 case(s) regressed" in capsys.readouterr().out
    assert cli.main(["compare", str(a), str(b)]) == 0  # on time: no gate unless asked


# ---- the record in files, tables and exports ----------------------------------------------------

def test_counts_are_stored_beside_the_times_and_old_files_still_load(tmp_path):
    path = write(tmp_path, "a.json", counted_run(BASE))
    loaded = store.read_run(path)
    assert loaded.cases[0].instructions == counted(BASE["numpy"])
    data = json.loads(path.read_text())
    data["schema_version"] = 2
    for c in data["cases"]:
        del c["instructions"]
    old = write(tmp_path, "old.json", Run.from_dict(copy.deepcopy(data), "old.json"))
    assert all(c.instructions is None for c in store.read_run(old).cases)


def test_csv_and_pytest_benchmark_json_carry_the_counts(tmp_path):
    run = counted_run(dict(BASE, torch=0.0))
    rows = {r["variant"]: r for r in records.run_records(run)}
    assert rows["numpy"]["instructions_per_step"] == BASE["numpy"]
    assert rows["numpy"]["instructions_counter"] == "callgrind 3.19.0, 1 thread"
    assert rows["torch"]["instructions_per_step"] is None
    assert rows["torch"]["instructions_reason"] == "crashed: X"
    path = write(tmp_path, "a.json", run)
    table = list(csv.DictReader(io.StringIO(export.to_csv([(path, run)]))))
    assert float(table[0]["instructions_per_step"]) == BASE["numpy"]
    doc, _ = export.to_pytest_benchmark([(path, run)])
    extra = {b["name"]: b["extra_info"] for b in doc["benchmarks"]}
    assert extra["jax"]["instructions_per_step"] == BASE["jax"]
    assert extra["jax"]["instructions_block_steps"] == 64


def test_the_counts_table_says_why_a_case_was_not_counted():
    run = counted_run(dict(BASE, torch=0.0))
    text = counts.table(run)
    assert "96.9 k" in text and "not counted: crashed: X" in text
    assert counts.table(run, markdown=True).count("\n") == 5  # header, rule, 4 cases
    assert "callgrind 3.19.0, 1 thread, setarch -R --tool=callgrind" in counts.caption(run)
    for c in run.cases:
        c.instructions = None
    assert counts.table(run) == ""


def test_a_distributed_variant_is_unavailable_for_counting_with_the_reason():
    from harness.procs.messages import JobCase
    from harness.procs.worker import count_case

    job_case = JobCase(h.problem((4, 16, 16, 4), batch=8), "torch-ddp", "cpu", None, 2)
    got = count_case(job_case, CountConfig(), callgrind.Counter())
    assert got.id == "cpu/torch-ddp/4-16-16-4 tanh float32/b8/x2"
    assert not got.instructions.ok
    assert "worker processes of their own" in got.instructions.error


# ---- refusals ---------------------------------------------------------------------------------

def test_measure_instructions_without_valgrind_is_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(callgrind, "valgrind", lambda: None)
    rc = cli.main(["run", "--measure", "instructions", "--widths", "1,1,1", "--variants",
                   "numpy", "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err == ["backprop-bench: error: valgrind is not installed: apt-get install valgrind"]
    assert not (tmp_path / "r.json").exists()


def test_measure_instructions_on_a_gpu_is_one_line(capsys):
    rc = cli.main(["run", "--measure", "instructions", "--device", "cuda", "--widths", "1,1,1",
                   "--variants", "numpy"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "counts on the CPU only" in err[0]


def test_a_counting_worker_gets_a_fixed_environment(monkeypatch, tmp_path):
    monkeypatch.setattr(callgrind, "library", lambda: Path("/cache/libbb_callgrind.so"))
    parent = {"PATH": "/usr/bin", "HOME": "/root", "SHLVL": "3", "OLDPWD": "/somewhere",
              "BACKPROP_BENCH_CHANNEL_FD": "7", "OMP_NUM_THREADS": "1", "XLA_FLAGS": "--xla_foo",
              "GITHUB_RUN_ID": "12345"}
    env = callgrind.fixed_environment(parent, tmp_path)
    assert "SHLVL" not in env and "OLDPWD" not in env and "GITHUB_RUN_ID" not in env
    assert env["PATH"] == "/usr/bin" and env["BACKPROP_BENCH_CHANNEL_FD"] == "7"
    assert env["OMP_NUM_THREADS"] == "1" and env["XLA_FLAGS"] == "--xla_foo"
    assert env["PYTHONHASHSEED"] == "0" and env["MALLOC_ARENA_MAX"] == "1"
    assert env[callgrind.COUNTING] == "1"
    assert env[callgrind.OUT_ENV] == str(tmp_path.resolve() / "callgrind.out")


def test_valgrind_says_why_it_stopped_a_worker():
    log = ["W1202 _package.py:1059] Device information mismatch for AOTI_CPU_ISA",
           "==23139== ", "==23139== Process terminating with default action of signal 4 "
           "(SIGILL)", "==23139==  Illegal opcode at address 0x2723C8EB",
           "==23139==    at 0x2723C8EB: ???", "==23139==    by 0xDE0C7BA: pybind11_meta_call"]
    why = callgrind.why_it_died(log)
    assert why.startswith("valgrind: Process terminating with default action of signal 4 "
                          "(SIGILL): Illegal opcode at address 0x2723C8EB")
    assert "AVX-512" in why
    assert callgrind.why_it_died(["Traceback (most recent call last):", "boom"]) is None


def test_a_dump_without_a_summary_is_an_error(tmp_path):
    dump = tmp_path / "callgrind.out.1"
    dump.write_text("# callgrind format\nversion: 1\nevents: Ir\nsummary: 4242\n\nfl=x\n")
    assert callgrind.summary_of(dump) == 4242
    dump.write_text("# callgrind format\nevents: Ir\nfl=x\n0 12\ntotals: 12\n")
    with pytest.raises(callgrind.CallgrindError, match="without a summary"):
        callgrind.summary_of(dump)


def test_the_wrapper_without_a_command_is_one_line(capsys):
    assert callgrind.main(["--", ]) == 2
    assert callgrind.main(["--cache-sim=yes", "--", "true"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 2


@needs_valgrind
def test_the_counter_refuses_to_start_outside_valgrind():
    with pytest.raises(callgrind.CallgrindError, match="not a counting process"):
        callgrind.Counter(out="/tmp/nowhere").start()


# ---- under Valgrind ---------------------------------------------------------------------------

LOOP = """
import itertools, json
from harness.measure import callgrind
from harness.measure.timing import timed

class Loop:  # the same instructions every iteration: nothing allocated, nothing specialised
    def run(self, k):
        for _ in itertools.repeat(None, k):
            pass

c = callgrind.Counter()
c.start()
print(json.dumps({k: [timed(Loop(), k, c) for _ in range(4)] for k in (0, 1000, 2000)}))
"""


@needs_valgrind
def test_the_counter_counts_a_loop_exactly_again_and_in_proportion():
    out = subprocess.run([sys.executable, "-m", "harness.measure.callgrind", "--", sys.executable,
                          "-c", LOOP], capture_output=True, text=True, timeout=300, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    # the first block of each is a warm-up (Python specialises the code it runs); the others
    # move by the ~1,000 instructions of a garbage collection that falls into a block or not
    got = {int(k): sorted(v[1:]) for k, v in json.loads(out.stdout).items()}
    assert all(v[-1] - v[0] <= 2_500 for v in got.values())
    per_1000 = got[1000][1] - got[0][1]
    assert per_1000 > 50_000  # tens of instructions per iteration of a Python loop
    assert got[2000][1] - got[1000][1] == pytest.approx(per_1000, rel=0.03)


def bench(*argv: str, planted: bool = False) -> subprocess.Popen:
    env = {**os.environ, "BACKPROP_BENCH_FRAMEWORKS": str(PLANTED)}
    env.pop("BACKPROP_BENCH_PLANTED_OP", None)
    if planted:
        env["BACKPROP_BENCH_PLANTED_OP"] = "1"
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *argv], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def counted_runs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Three runs of numpy-planted, counted: two of the same code, one planted; all at once
    (a count does not care what else the machine does)."""
    paths = [tmp_path / f"{name}.json" for name in ("a", "a2", "b")]
    procs = [bench("run", "--measure", "instructions", "--widths", "1,1,1", "--variants",
                   "numpy-planted", "--no-peak", "--time-per-case", "0.05", "--count-target",
                   "2e6", "--out", str(path), planted=path.stem == "b") for path in paths]
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out
    return tuple(paths)


@needs_valgrind
def test_counts_flag_a_planted_op_that_a_timing_pair_cannot(tmp_path, capsys):
    a, a2, b = counted_runs(tmp_path)
    one = store.read_run(a).cases[0].instructions
    assert one.ok and 90_000 < one.per_step < 110_000 and one.threads == 1
    assert cli.main(["compare", str(a), str(a2), "--measure", "instructions"]) == 0
    same = counts.compare_runs(store.read_run(a), store.read_run(a2)).rows[0]
    # 0.12% apart once on a fresh clone (the NOTES measured up to 0.5% between processes):
    # far below the planted op's 1.5-4%, which is what this test is about
    assert same.ratio == pytest.approx(1.0, abs=0.005) and same.verdict == "same"
    assert cli.main(["compare", str(a), str(b), "--measure", "instructions"]) == 1
    planted = counts.compare_runs(store.read_run(a), store.read_run(b)).rows[0]
    assert 1.015 < planted.ratio < 1.04 and planted.verdict == "more"
    capsys.readouterr()
    assert cli.main(["compare", str(a), str(b)]) == 0  # on time: one process a side, no test
    assert "1 n/a" in capsys.readouterr().out
