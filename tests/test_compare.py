"""compare A B: a planted regression is found, noise is not, and bad inputs are one line."""

from __future__ import annotations

import copy

import helpers_results as h
import numpy as np
import pytest

from harness import compare, results
from harness.results import ResultsError

WIDE = h.problem((16, 16, 16))
VARIANTS = ("numpy", "torch", "jax")


def run_with(scale: dict[str, float], seed: int) -> dict:
    """A run of three variants on one network, each variant's time multiplied by scale."""
    rng = np.random.default_rng(seed)
    cases = [h.ok_case(v, "cpu", WIDE, 20e-6 * scale.get(v, 1.0), rng, blocks=30, sigma=0.03)
             for v in VARIANTS]
    return h.new_run("run", "cpu", h.CPU_MACHINE, cases)


def write(tmp_path, name: str, run: dict):
    path = tmp_path / name
    results.write(run, path)
    return path


def cli(*argv: str) -> int:
    return h.run_cli(["compare", *map(str, argv)], compare.register)


@pytest.fixture
def regression(tmp_path):
    """A and B where torch is 20% slower in B and the others are two draws of one law."""
    return (write(tmp_path, "a.json", run_with({}, seed=1)),
            write(tmp_path, "b.json", run_with({"torch": 1.2}, seed=2)))


def verdicts(a: dict, b: dict) -> dict[str, str]:
    rows = compare.compare_runs(a, b).rows
    return {r.case_id.split("/")[1]: r.verdict for r in rows}


def test_planted_regression_is_slower_and_the_rest_the_same(regression):
    a, b = map(results.load, regression)
    assert verdicts(a, b) == {"numpy": "same", "torch": "slower", "jax": "same"}
    torch_row = next(r for r in compare.compare_runs(a, b).rows if "/torch/" in r.case_id)
    assert torch_row.ratio == pytest.approx(1.2, rel=0.03)
    assert torch_row.p_value < compare.ALPHA


def test_speedup_is_faster(regression):
    a, b = map(results.load, regression)
    assert verdicts(b, a)["torch"] == "faster"


def test_identical_samples_are_the_same():
    run = run_with({}, seed=3)
    assert set(verdicts(run, copy.deepcopy(run)).values()) == {"same"}


@pytest.mark.parametrize("seed", range(5))
def test_two_draws_of_one_distribution_are_the_same(seed):
    assert set(verdicts(run_with({}, seed), run_with({}, seed + 100)).values()) == {"same"}


def test_significant_but_tiny_shift_is_the_same():
    a, b = run_with({}, seed=4), run_with({v: 1.03 for v in VARIANTS}, seed=5)
    for ca, cb in zip(a["cases"], b["cases"]):  # make B a clean 3% shift of A
        cb["timing"]["samples_s"] = [1.03 * s for s in ca["timing"]["samples_s"]]
    rows = compare.compare_runs(a, b).rows
    assert all(r.p_value < compare.ALPHA and r.verdict == "same" for r in rows)


def test_fail_above_10_percent_fails_on_a_20_percent_regression(regression, capsys):
    assert cli(*regression, "--fail-above", "10") == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "torch" in out.split("FAIL")[1]
    assert compare.TEST_NAME in out
    assert "Mann–Whitney U, two-sided, α = 0.01, min effect 5%" in out


def test_fail_above_30_percent_passes_a_20_percent_regression(regression, capsys):
    assert cli(*regression, "--fail-above", "30") == 0
    assert "slower" in capsys.readouterr().out


def test_without_fail_above_a_regression_exits_0(regression):
    assert cli(*regression) == 0


def test_negative_fail_above_is_a_usage_error(regression, capsys):
    assert cli(*regression, "--fail-above", "-5") == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_different_device_is_one_line_exit_2(tmp_path, capsys):
    a = run_with({}, seed=1)
    b = copy.deepcopy(a)
    b["config"]["device"] = "cuda"
    code = cli(write(tmp_path, "a.json", a), write(tmp_path, "b.json", b))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "different configs" in err[0]


def test_different_problems_are_one_line_exit_2(tmp_path, capsys):
    a = run_with({}, seed=1)
    b = copy.deepcopy(a)
    b["config"]["problems"][0]["batch"] = 32
    assert cli(write(tmp_path, "a.json", a), write(tmp_path, "b.json", b)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different configs" in err[0]


def test_corrupt_file_is_named_exit_2(tmp_path, capsys):
    good = write(tmp_path, "a.json", run_with({}, seed=1))
    bad = tmp_path / "broken.json"
    bad.write_text('{"schema": "backprop-bench/res')
    assert cli(good, bad) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.json" in err[0]


def test_no_case_in_common_is_an_error():
    a = run_with({}, seed=1)
    b = copy.deepcopy(a)
    for c in b["cases"]:
        c["id"] += "-other"
    with pytest.raises(ResultsError, match="no case"):
        compare.compare_runs(a, b)


def test_cases_in_one_file_only_or_not_ok_become_notes():
    a, b = run_with({}, seed=1), run_with({}, seed=2)
    b["cases"].pop()  # jax only in A
    b["cases"][1] = h.bad_case("torch", "cpu", WIDE, "failed", "diverged")
    comparison = compare.compare_runs(a, b)
    assert [r.case_id for r in comparison.rows] == [a["cases"][0]["id"]]
    assert any("only in A" in n and "/jax/" in n for n in comparison.notes)
    assert any("failed in B" in n and "/torch/" in n for n in comparison.notes)


def test_verdict_without_samples_is_not_decided():
    ratio, p, word = compare.verdict(np.array([1.0]), np.array([2.0]))
    assert (ratio, p, word) == (2.0, None, "n/a")
