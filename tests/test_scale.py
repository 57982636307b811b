"""`backprop-bench scale`: which points it plans, the all-reduce sizes, results files that
carry workers (and old ones that do not), and a tiny run end to end."""

from __future__ import annotations

import os
import re
from pathlib import Path

import helpers_results as h
import pytest

from harness import cli
from harness.analysis import scaling as scale_model
from harness.commands import scale
from harness.commands.options import Timed
from harness.procs import allreduce
from harness.record import store
from harness.record.results import Run, case_id
from implementations import registry

ROOT = Path(__file__).resolve().parents[1]


def test_strong_weak_and_compute_points():
    points, notes = scale.wanted(scale.Options(sizes=(16,), workers=(1, 2, 3), batch=64))
    assert points == {(16, 64, 1), (16, 64, 2), (16, 32, 1), (16, 128, 2), (16, 192, 3)}
    assert notes == ["strong scaling on 3 workers: global batch 64 is not divisible by 3; "
                     "left out"]
    weak, _ = scale.wanted(scale.Options(sizes=(8,), workers=(1, 4), modes=("weak",)))
    assert weak == {(8, 64, 1), (8, 256, 4)}


def options(**kw) -> Timed:
    base = dict(device="cpu", variants=None, frameworks=None, threads=None,
                time_per_case=0.05, processes=1, no_peak=True, out=None, force=False,
                timeout=None, results_dir="results")
    return Timed(**{**base, **kw})


def test_the_plan_runs_each_point_once_for_every_data_parallel_variant():
    plan = scale.make_plan(scale.Options(sizes=(4,), workers=(1, 2)), options(), 2)
    got = sorted((v.name, p.batch, v.workers) for p, v, _ in plan.cases())
    every = sorted(v.name for v in registry.VARIANTS.values() if v.distributed)
    assert got == sorted((n, b, w) for n in every for b, w in ((32, 1), (64, 1), (64, 2),
                                                               (128, 2)))
    assert plan.config().variants == [v.name for v in registry.VARIANTS.values()
                                      if v.distributed] and plan.grid["batch"] == 64


def test_bad_options_are_refused_in_one_line(capsys):
    for argv, said in ((["--scaling", "sideways"], "unknown scaling 'sideways'"),
                       (["--variants", "numpy"], "checks the distributed variants"),
                       (["--workers", "0"], "must be 1 or more")):
        assert cli.main(["scale", *argv, "--out", "/nonexistent/x.json"]) == 2
        assert said in capsys.readouterr().err


def test_allreduce_sizes_run_up_to_the_largest_gradient():
    assert allreduce.sizes_for([2048, 512]) == [4, 16, 64, 256, 512, 1024, 2048]
    assert allreduce.sizes_for([4]) == [4]


def test_cases_carry_their_workers_and_old_files_load_with_one():
    prob = h.problem((16, 16, 16))
    assert case_id("cpu", "torch-ddp", prob) == "cpu/torch-ddp/16-16-16 tanh float32/b64"
    assert case_id("cpu", "torch-ddp", prob, 2).endswith("/b64/x2")
    data = h.run_file().to_dict()
    for c in data["cases"]:
        del c["workers"], c["distributed"]
    del data["ceilings"]["allreduce"]
    run = Run.from_dict(data, "old.json")
    assert {c.workers for c in run.cases} == {1} and run.ceilings.allreduce == []
    assert all(c.label == c.variant for c in run.cases)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores")
def test_a_tiny_scale_run_writes_a_results_file(tmp_path, capsys):
    pytest.importorskip("jax")
    out = tmp_path / "scale.json"
    code = cli.main(["scale", "--workers", "1,2", "--sizes", "4", "--batch", "8",
                     "--scaling", "strong", "--variants", "jax-sharded", "--time-per-case",
                     "0.05", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    run = store.read_run(out)
    assert run.command == "scale" and run.config.grid["workers"] == [1, 2]
    assert sorted((c.problem.batch, c.workers, c.status) for c in run.cases) == [
        (4, 1, "ok"), (8, 1, "ok"), (8, 2, "ok")]
    two = next(c for c in run.cases if c.workers == 2)
    assert two.id.endswith("/x2") and two.distributed["workers"] == 2
    assert two.check["passed"] and any(r["reference"] == "worker 0"
                                       for r in two.check["rows"])
    (curve,) = run.ceilings.allreduce
    assert curve.workers == 2 and curve.error is None and curve.bytes[0] == 4
    assert max(curve.bytes) == scale_model.gradient_bytes(two.problem)
    assert re.search(r"^jax-sharded\s+4-4-4 tanh float32\s+2\s+4\s", printed, re.M)
