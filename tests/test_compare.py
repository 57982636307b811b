"""compare A B: a planted regression is found, noise is not, and bad inputs are one line."""

from __future__ import annotations

import copy
import json

import helpers_results as h
import numpy as np
import pytest

from harness import cli
from harness.record import compare, store
from harness.record.results import ProcessRecord, ResultsError

WIDE = h.problem((16, 16, 16))
VARIANTS = ("numpy", "torch", "jax")


def run_with(scale: dict[str, float], seed: int, processes: int = 5, drift: float = 0.03):
    """A run of three variants on one network, each variant's time multiplied by scale, with
    ``processes`` worker processes per case whose medians drift lognormally by ``drift``."""
    rng = np.random.default_rng(seed)
    cases = []
    for v in VARIANTS:
        t = 20e-6 * scale.get(v, 1.0)
        case = h.ok_case(v, "cpu", WIDE, t, rng, blocks=30, sigma=0.03)
        if processes > 1:
            case.processes = [ProcessRecord("ok", h.one_time(t * rng.lognormal(0.0, drift)))
                              for _ in range(processes)]
        cases.append(case)
    return h.new_run("run", "cpu", h.CPU_MACHINE, cases)


def write(tmp_path, name: str, run):
    path = tmp_path / name
    store.write(run, path)
    return path


def main(*argv: str) -> int:
    return cli.main(["compare", *map(str, argv)])


@pytest.fixture
def regression(tmp_path):
    """A and B where torch is 20% slower in B and the others are two draws of one law."""
    return (write(tmp_path, "a.json", run_with({}, seed=1)),
            write(tmp_path, "b.json", run_with({"torch": 1.2}, seed=2)))


def verdicts(a, b) -> dict[str, str]:
    rows = compare.compare_runs(a, b).rows
    return {r.case_id.split("/")[1]: r.verdict for r in rows}


def test_planted_regression_is_slower_and_the_rest_the_same(regression):
    a, b = map(store.read_run, regression)
    assert verdicts(a, b) == {"numpy": "same", "torch": "slower", "jax": "same"}
    torch_row = next(r for r in compare.compare_runs(a, b).rows if "/torch/" in r.case_id)
    assert torch_row.ratio == pytest.approx(1.2, rel=0.05)
    assert torch_row.p_value < compare.ALPHA and torch_row.processes_a == 5


def test_speedup_is_faster(regression):
    a, b = map(store.read_run, regression)
    assert verdicts(b, a)["torch"] == "faster"


def test_identical_runs_are_the_same():
    run = run_with({}, seed=3)
    assert set(verdicts(run, copy.deepcopy(run)).values()) == {"same"}


@pytest.mark.parametrize("seed", range(5))
def test_two_draws_of_one_distribution_are_the_same(seed):
    assert set(verdicts(run_with({}, seed), run_with({}, seed + 100)).values()) == {"same"}


def test_significant_but_tiny_shift_is_the_same():
    a = run_with({}, seed=4, drift=0.001)
    b = copy.deepcopy(a)
    for c in b.cases:  # B: a clean 3% shift of A, significant but below the minimum effect
        for p in c.processes:
            p.timing.samples_s = [s * 1.03 for s in p.timing.samples_s]
    rows = compare.compare_runs(a, b).rows
    assert all(r.p_value < compare.ALPHA and r.verdict == "same" for r in rows)


def test_correlated_blocks_of_one_process_are_not_taken_as_evidence():
    """Two single-process runs: thousands of blocks, but one independent sample a side."""
    a, b = run_with({}, seed=1, processes=1), run_with({"torch": 1.5}, seed=2, processes=1)
    assert set(verdicts(a, b).values()) == {"n/a"}


def test_fail_above_10_percent_fails_on_a_20_percent_regression(regression, capsys):
    assert main(*regression, "--fail-above", "10") == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "torch" in out.split("FAIL")[1]
    assert compare.TEST_NAME in out


def test_fail_above_30_percent_passes_a_20_percent_regression(regression, capsys):
    assert main(*regression, "--fail-above", "30") == 0
    assert "slower" in capsys.readouterr().out


def test_without_fail_above_a_regression_exits_0(regression):
    assert main(*regression) == 0


def test_negative_fail_above_is_a_usage_error(regression, capsys):
    assert main(*regression, "--fail-above", "-5") == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_partial_rerun_is_compared_on_the_cases_it_shares(tmp_path, capsys):
    full = run_with({}, seed=1)
    rerun = run_with({"torch": 1.2}, seed=2)
    rerun.cases = [c for c in rerun.cases if c.variant == "torch"]
    rerun.config.problems = [WIDE]
    assert main(write(tmp_path, "a.json", full), write(tmp_path, "b.json", rerun)) == 0
    out = capsys.readouterr().out
    assert "slower" in out and out.count("only in A:") == 2


def test_different_devices_share_no_case_and_are_one_line_exit_2(tmp_path, capsys):
    a = run_with({}, seed=1)
    b = copy.deepcopy(a)
    for c in b.cases:
        c.id = c.id.replace("cpu/", "cuda/")
    code = main(write(tmp_path, "a.json", a), write(tmp_path, "b.json", b))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no case is ok in both" in err[0]


def test_corrupt_file_is_named_exit_2(tmp_path, capsys):
    good = write(tmp_path, "a.json", run_with({}, seed=1))
    bad = tmp_path / "broken.json"
    bad.write_text('{"schema": "backprop-bench/res')
    assert main(good, bad) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.json" in err[0]


def test_no_case_in_common_is_an_error():
    a = run_with({}, seed=1)
    b = copy.deepcopy(a)
    for c in b.cases:
        c.id += "-other"
    with pytest.raises(ResultsError, match="no case"):
        compare.compare_runs(a, b)


def test_cases_in_one_file_only_or_not_ok_are_listed():
    a, b = run_with({}, seed=1), run_with({}, seed=2)
    b.cases.pop()  # jax only in A
    b.cases[1] = h.bad_case("torch", "cpu", WIDE, "failed", "diverged")
    comparison = compare.compare_runs(a, b)
    assert [r.case_id for r in comparison.rows] == [a.cases[0].id]
    assert comparison.only_in_a == [a.cases[2].id]
    assert any("failed in B" in n and "/torch/" in n for n in comparison.notes)


def test_verdict_with_too_few_processes_is_not_decided():
    ratio, p, word = compare.verdict(np.array([1.0, 1.1]), np.array([2.0, 2.1]))
    assert (round(ratio, 3), p, word) == (1.952, None, "n/a")


# ---- --fail-above: cases lost in B and cases too small for a test ----------------------------

def test_fail_above_counts_a_case_failed_in_b_as_a_regression(tmp_path, capsys):
    a, b = run_with({}, seed=1), run_with({}, seed=2)
    b.cases[1] = h.bad_case("torch", "cpu", WIDE, "failed", "diverged")
    assert main(write(tmp_path, "a.json", a), write(tmp_path, "b.json", b),
                "--fail-above", "10") == 1
    fail = capsys.readouterr().out.split("FAIL")[1].strip().splitlines()
    assert len(fail) == 2  # the headline and one line for the case
    assert "/torch/" in fail[1] and "failed in" in fail[1] and "b.json" in fail[1]


def test_fail_above_counts_cases_unavailable_or_missing_in_b(tmp_path, capsys):
    a, b = run_with({}, seed=1), run_with({}, seed=2)
    b.cases.pop()  # jax missing in B
    b.cases[1] = h.bad_case("torch", "cpu", WIDE, "unavailable", "no torch")
    assert main(write(tmp_path, "a.json", a), write(tmp_path, "b.json", b),
                "--fail-above", "50") == 1
    lines = capsys.readouterr().out.split("FAIL")[1].strip().splitlines()[1:]
    assert len(lines) == 2
    assert any("/torch/" in x and "unavailable in" in x for x in lines)
    assert any("/jax/" in x and "missing in" in x for x in lines)


def test_lost_cases_do_not_fail_without_fail_above(tmp_path):
    a, b = run_with({}, seed=1), run_with({}, seed=2)
    b.cases[1] = h.bad_case("torch", "cpu", WIDE, "failed", "diverged")
    assert main(write(tmp_path, "a.json", a), write(tmp_path, "b.json", b)) == 0


def test_a_case_not_ok_in_a_is_no_regression():
    a, b = run_with({}, seed=1), run_with({}, seed=2)
    a.cases[1] = h.bad_case("torch", "cpu", WIDE, "failed", "diverged")
    b.cases[1] = h.bad_case("torch", "cpu", WIDE, "failed", "diverged")
    b.cases.pop()
    a.cases.pop()  # jax neither here nor there
    assert compare.regressions(compare.compare_runs(a, b), 10) == []


def test_too_few_processes_and_a_ratio_above_the_limit_is_a_regression(tmp_path, capsys):
    a, b = run_with({}, seed=1, processes=2), run_with({"torch": 1.5}, seed=1, processes=2)
    assert {r.verdict for r in compare.compare_runs(a, b).rows} == {"n/a"}
    assert main(write(tmp_path, "a.json", a), write(tmp_path, "b.json", b),
                "--fail-above", "10") == 1
    lines = capsys.readouterr().out.split("FAIL")[1].strip().splitlines()[1:]
    assert len(lines) == 1 and "/torch/" in lines[0]
    assert "too few processes for a test; ratio alone" in lines[0]


def test_too_few_processes_and_a_ratio_below_the_limit_passes(tmp_path):
    a, b = run_with({}, seed=1, processes=2), run_with({"torch": 1.05}, seed=1, processes=2)
    assert main(write(tmp_path, "a.json", a), write(tmp_path, "b.json", b),
                "--fail-above", "10") == 0


# ---- output formats for CI ----------------------------------------------------------------------

def test_markdown_output_is_a_table_with_the_failures(regression, capsys):
    assert main(*regression, "--fail-above", "10", "--format", "md") == 1
    out = capsys.readouterr().out
    assert "| case | A median |" in out and "**FAIL**: 1 case(s) regressed" in out


def test_json_output_has_every_row_and_the_regressions(regression, capsys):
    assert main(*regression, "--fail-above", "10", "--format", "json") == 1
    data = json.loads(capsys.readouterr().out)
    assert len(data["rows"]) == 3 and len(data["regressions"]) == 1
    assert {r["verdict"] for r in data["rows"]} == {"same", "slower"}
