"""compare A B: a planted regression is found, noise is not, and bad inputs are one line."""

from __future__ import annotations

import copy
import math

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


# ---- --fail-above: cases lost in B and cases too small for a test ----------------------------

def test_fail_above_counts_a_case_failed_in_b_as_a_regression(tmp_path, capsys):
    a, b = run_with({}, seed=1), run_with({}, seed=2)
    b["cases"][1] = h.bad_case("torch", "cpu", WIDE, "failed", "diverged")
    paths = write(tmp_path, "a.json", a), write(tmp_path, "b.json", b)
    assert cli(*paths, "--fail-above", "10") == 1
    fail = capsys.readouterr().out.split("FAIL")[1].strip().splitlines()
    assert len(fail) == 2  # the headline and one line for the case
    assert "/torch/" in fail[1] and "failed in" in fail[1] and "b.json" in fail[1]


def test_fail_above_counts_cases_unavailable_or_missing_in_b(tmp_path, capsys):
    a, b = run_with({}, seed=1), run_with({}, seed=2)
    b["cases"].pop()  # jax missing in B
    b["cases"][1] = h.bad_case("torch", "cpu", WIDE, "unavailable", "no torch")
    assert cli(write(tmp_path, "a.json", a), write(tmp_path, "b.json", b),
               "--fail-above", "50") == 1
    lines = capsys.readouterr().out.split("FAIL")[1].strip().splitlines()[1:]
    assert len(lines) == 2
    assert any("/torch/" in x and "unavailable in" in x for x in lines)
    assert any("/jax/" in x and "missing in" in x for x in lines)


def test_lost_cases_do_not_fail_without_fail_above(tmp_path):
    a, b = run_with({}, seed=1), run_with({}, seed=2)
    b["cases"][1] = h.bad_case("torch", "cpu", WIDE, "failed", "diverged")
    assert cli(write(tmp_path, "a.json", a), write(tmp_path, "b.json", b)) == 0


def test_a_case_not_ok_in_a_is_no_regression():
    a, b = run_with({}, seed=1), run_with({}, seed=2)
    a["cases"][1] = h.bad_case("torch", "cpu", WIDE, "failed", "diverged")
    b["cases"][1] = h.bad_case("torch", "cpu", WIDE, "failed", "diverged")
    b["cases"].pop()
    a["cases"].pop()  # jax neither here nor there
    assert compare.regressions(compare.compare_runs(a, b), 10) == []


def one_sample_runs(ratio: float) -> tuple[dict, dict]:
    """A and B with a single block per case; B's torch is ``ratio`` times A's."""
    a, b = run_with({}, seed=1), run_with({}, seed=1)
    for ca, cb in zip(a["cases"], b["cases"]):
        for c in (ca, cb):
            c["timing"]["samples_s"] = c["timing"]["samples_s"][:1]
        if "/torch/" in cb["id"]:
            cb["timing"]["samples_s"] = [ratio * ca["timing"]["samples_s"][0]]
    return a, b


def test_too_few_samples_and_a_ratio_above_the_limit_is_a_regression(tmp_path, capsys):
    a, b = one_sample_runs(1.5)
    assert {r.verdict for r in compare.compare_runs(a, b).rows} == {"n/a"}
    assert cli(write(tmp_path, "a.json", a), write(tmp_path, "b.json", b),
               "--fail-above", "10") == 1
    lines = capsys.readouterr().out.split("FAIL")[1].strip().splitlines()[1:]
    assert len(lines) == 1 and "/torch/" in lines[0]
    assert "too few samples for a test; ratio alone" in lines[0] and "1.5×" in lines[0]


def test_too_few_samples_and_a_ratio_below_the_limit_passes(tmp_path):
    a, b = one_sample_runs(1.05)
    assert cli(write(tmp_path, "a.json", a), write(tmp_path, "b.json", b),
               "--fail-above", "10") == 0


# ---- results that lack a usable per-step time --------------------------------------------------

def no_samples(run: dict) -> dict:
    for c in run["cases"]:
        c["timing"]["samples_s"] = []
    return run


@pytest.mark.parametrize("median", [0.0, -1e-6, float("nan"), float("inf"), None])
def test_a_missing_or_zero_median_in_b_is_a_note_not_a_crash(median):
    a, b = no_samples(run_with({}, seed=1)), no_samples(run_with({}, seed=2))
    ps = b["cases"][1]["timing"]["per_step"]
    if median is None:
        del ps["median_s"]
    else:
        ps["median_s"] = median
    comparison = compare.compare_runs(a, b)
    assert len(comparison.rows) == 2
    assert any("/torch/" in n and "no usable per-step time in B" in n for n in comparison.notes)
    lost = compare.regressions(comparison, 10)
    assert len(lost) == 1 and "/torch/" in lost[0] and "no usable per-step time in B" in lost[0]
    compare.render(comparison, "A", "B")


def test_a_zero_median_in_a_is_a_note_and_no_regression():
    a, b = no_samples(run_with({}, seed=1)), no_samples(run_with({}, seed=2))
    a["cases"][0]["timing"]["per_step"]["median_s"] = 0.0
    comparison = compare.compare_runs(a, b)
    assert any("no usable per-step time in A" in n for n in comparison.notes)
    assert compare.regressions(comparison, 10) == []


@pytest.mark.parametrize("bad", [{"samples_s": [0.0, 0.0, 0.0]}, {"block_steps": 0},
                                 {"samples_s": [float("nan")] * 3},
                                 {"per_step": None, "samples_s": []}])
def test_unusable_samples_fall_back_to_the_median_or_a_note(bad):
    a, b = run_with({}, seed=1), run_with({}, seed=2)
    b["cases"][1]["timing"].update(bad)
    comparison = compare.compare_runs(a, b)  # no ZeroDivisionError, KeyError or TypeError
    torch_rows = [r for r in comparison.rows if "/torch/" in r.case_id]
    if bad.get("per_step", {}) is None:
        assert not torch_rows and compare.regressions(comparison, 10)
    else:
        assert torch_rows[0].verdict == "n/a" and math.isfinite(torch_rows[0].ratio)
