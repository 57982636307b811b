"""`check --workers N`: the data-parallel variants pass; planted bugs exit 1 at N = 2 (and
hide at N = 1, which is why the check needs N >= 2)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from harness import cli
from harness.check import workers
from harness.commands import check_workers, plans
from implementations import launch, registry

HERE = Path(__file__).resolve().parent
BUGS = os.pathsep.join(str(HERE / f) for f in ("fake_ddp_bugs.py", "fake_sharded_bugs.py"))


def result_of(out: str, label: str) -> str:
    """The last column of the table row that starts with ``label``."""
    rows = re.findall(rf"^{re.escape(label)}\s.*?(\w+)\s*$", out, re.M)
    assert rows, (label, out)
    return rows[-1]


def test_the_data_parallel_variants_pass_on_two_workers(capsys):
    code = cli.main(["check", "--workers", "2", "--dtype", "float64", "--steps", "10"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASSED" in out and "batch 16, 2 workers" in out
    for v in registry.VARIANTS.values():
        if v.distributed:
            assert result_of(out, v.at(2).label) == "ok"


@pytest.fixture
def with_bugs(monkeypatch):
    monkeypatch.setenv(registry.ENV, BUGS)
    monkeypatch.setenv(launch.PG_TIMEOUT, "3")
    registry.discover()
    yield
    monkeypatch.delenv(registry.ENV)
    registry.discover()


def test_planted_bugs_fail_the_check_on_two_workers(with_bugs, capsys):
    code = cli.main(["check", "--workers", "2", "--variants", "ddp-sum,ddp-nosync-rank1,"
                     "sharded-psum,sharded-nopsum", "--dtype", "float64", "--steps", "5"])
    out = capsys.readouterr().out
    assert code == 1, out
    for label in ("ddp-sum ×2", "ddp-nosync-rank1 ×2", "sharded-psum ×2",
                  "sharded-nopsum ×2"):
        assert result_of(out, label) == "FAIL"
    failures = out[out.index("FAILED"):]
    assert re.search(r"ddp-sum ×2 float64 W1 vs full-batch gradient: error 1\.0", failures)
    assert re.search(r"sharded-psum ×2 float64 W1 vs full-batch gradient: error 1\.0", failures)
    assert "sharded-nopsum ×2 float64 W1 vs worker 0" in failures  # the devices drift apart
    assert "ddp-nosync-rank1 ×2 float64 - vs run" in failures  # the others wait in vain


def test_at_one_worker_the_same_bugs_are_invisible(with_bugs, capsys):
    code = cli.main(["check", "--workers", "1", "--variants", "sharded-psum,sharded-nopsum",
                     "--dtype", "float64", "--steps", "5"])
    assert code == 0, capsys.readouterr().out


def test_workers_check_only_data_parallel_variants(capsys):
    assert cli.main(["check", "--workers", "2", "--variants", "numpy"]) == 2
    assert "checks the distributed variants" in capsys.readouterr().err


def test_default_networks_scale_the_batch_with_the_workers():
    problems = check_workers.problems_for(plans.Networks(), 4)
    assert {p.batch for p in problems} == {32}
    assert {p.spec.dtype for p in problems} == {"float64", "float32"}
    assert problems[0].spec.widths == workers.WORKERS_NETWORK
    assert check_workers.problems_for(plans.Networks(batch=6), 3)[0].batch == 6


def test_a_plain_check_skips_data_parallel_variants_with_a_note(capsys):
    code = cli.main(["check", "--framework", "numpy", "--variants", "numpy,torch-ddp",
                     "--steps", "5"])
    out = capsys.readouterr().out
    assert code == 0 and "torch-ddp is data-parallel: 'check --workers N' checks it" in out
