"""The typed results model: one validation on load, with one-line errors naming the field."""

from __future__ import annotations

import copy
import dataclasses
import json

import helpers_results as h
import numpy as np
import pytest

from harness.procs import runner
from harness.record import results, summary
from harness.record.results import Declared, ResultsError, Run
from harness.report import ceilings
from implementations import registry
from implementations.problem import make_problem


def as_dict() -> dict:
    return h.run_file().to_dict()


def load(data, name="f.json") -> Run:
    return Run.from_dict(json.loads(json.dumps(data)), name)


def test_a_run_round_trips_through_its_dict():
    run = h.run_file()
    again = load(run.to_dict())
    assert again == run
    assert again.cases[0].problem == h.WORKED and isinstance(again.cases[0].problem.widths, tuple)


@pytest.mark.parametrize("path, value, message", [
    (("software",), None, "software: expected an object, got None"),
    (("machine",), None, "machine: expected an object"),
    (("cases", 0, "problem"), 3, "cases[0].problem: expected an object, got 3"),
    (("cases", 0, "problem", "widths"), None, "cases[0].problem.widths: expected a list"),
    (("cases", 0, "problem", "widths"), [1, "x", 1], "cases[0].problem.widths[1]: expected an "
                                                    "integer"),
    (("cases", 0, "timing", "samples_s", 1), "fast", "cases[0].timing.samples_s[1]: expected a "
                                                   "finite number, got 'fast'"),
    (("cases", 1, "status"), "great", "unknown status 'great'"),
    (("config", "threads"), True, "config.threads: expected an integer, got True"),
    (("cases",), {"a": 1}, "cases: expected a list"),
])
def test_a_wrong_typed_field_is_one_line_naming_the_file_and_the_field(path, value, message):
    data = as_dict()
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ResultsError) as err:
        load(data, "bad.json")
    text = str(err.value)
    assert text.startswith("bad.json: ") and message in text and "\n" not in text


def test_a_missing_required_field_is_named():
    data = as_dict()
    del data["cases"][0]["variant"]
    with pytest.raises(ResultsError, match=r"cases\[0\]: missing field 'variant'"):
        load(data)


@pytest.mark.parametrize("median", [0.0, -1.0])
def test_an_ok_case_needs_a_positive_median(median):
    data = as_dict()
    data["cases"][0]["timing"]["samples_s"] = [median] * 5
    with pytest.raises(ResultsError, match="no positive per-step median|-1.0 s is not a "
                                           "measured time"):
        load(data)


def test_an_ok_case_without_timing_is_rejected():
    data = as_dict()
    data["cases"][0]["timing"] = None
    with pytest.raises(ResultsError, match="is ok but has no timed samples"):
        load(data)


@pytest.mark.parametrize("data, message", [
    ({"schema": "something else"}, "not a backprop-bench results file"),
    ({"schema": results.SCHEMA, "schema_version": 99}, "schema version 99"),
    ({"schema": results.SCHEMA, "schema_version": results.SCHEMA_VERSION}, "missing field"),
    ([], "not a backprop-bench results file"),
])
def test_a_file_of_another_kind_or_version_is_refused(data, message):
    with pytest.raises(ResultsError, match=message):
        load(data)


def test_a_version_1_file_loads_as_the_current_version():
    data = as_dict()
    data["schema_version"] = 1
    for case in data["cases"]:
        case.pop("processes")
    assert load(data).schema_version == results.SCHEMA_VERSION


def test_unknown_fields_of_a_newer_file_are_ignored():
    data = as_dict()
    data["cases"][0]["from_the_future"] = {"x": 1}
    assert load(data).cases[0].variant == "python"


def test_case_id_is_stable_and_readable():
    problem = results.ProblemRecord((4, 16, 4), "tanh", bias=True, dtype="float32", batch=8)
    assert results.case_id("cpu", "jax", problem) == "cpu/jax/4-16-4 tanh+b float32/b8"


def test_pooling_adds_samples_and_recomputes_the_statistics():
    a, b = h.run_file(0).cases[1], h.run_file(1).cases[1]
    n = len(a.timing.samples_s)
    merged = copy.deepcopy(a)
    merged.pool(b)
    assert len(merged.timing.samples_s) == n + len(b.timing.samples_s)
    assert merged.timing.blocks == len(merged.timing.samples_s)
    assert merged.median == pytest.approx(np.median(merged.timing.per_step_s()))
    assert [p.median for p in merged.processes] == [a.median, b.median]
    assert len(a.timing.samples_s) == n  # pooling makes a new measurement: A's is unchanged


def test_a_failure_in_a_later_process_fails_the_pooled_case():
    a, b = h.run_file(0).cases[1], copy.deepcopy(h.run_file(1).cases[1])
    b.fail("failed", "wrong result: W1")
    a.pool(b)
    assert a.status == "failed" and a.reason == "process 2: wrong result: W1"
    assert a.timing is not None and a.median is None  # kept in the file, but no result


def test_run_add_pools_a_case_with_the_same_id():
    run = h.run_file()
    n = len(run.cases)
    run.add(copy.deepcopy(run.cases[1]))
    assert len(run.cases) == n and len(run.cases[1].processes) == 2


def test_a_run_keeps_its_environment_and_a_file_without_one_still_loads():
    run = h.run_file()
    run.environment = {"variables": {"OMP_NUM_THREADS": "2"}, "packages": {"numpy": "2.4.6"},
                       "jax_compilation_cache": {"enabled": False, "dir": None}}
    assert load(run.to_dict()).environment == run.environment
    old = run.to_dict()
    del old["environment"]
    assert load(old).environment is None


# ---- what a file says its variants are (issue 26, item 7) -------------------------------------

def test_a_new_run_stores_each_variants_declaration(monkeypatch):
    monkeypatch.setattr(runner, "measure_c_limit", lambda: {"error": "skipped in tests"})
    plan = runner.Plan("run", "cpu", [make_problem()], [registry.get("numpy"),
                                                         registry.get("torch-compile")], 1)
    run = runner.new_run(plan)
    assert run.declared["numpy"] == Declared("numpy", "idiomatic", "NumPy", "reference")
    assert run.declared["torch-compile"].baseline == registry.get("torch-compile").baseline
    assert load(run.to_dict()).declared == run.declared  # stored, and read back


def declared_otherwise() -> Run:
    """h.run_file() whose file says what today's registry does not: python is the limit,
    limit a plain variant, torch built on numpy, torch-compile measured against nothing."""
    run = h.run_file()
    run.declared = {name: Declared.of(registry.VARIANTS[name]) for name in
                    dict.fromkeys(c.variant for c in run.cases)}
    run.declared["python"] = dataclasses.replace(run.declared["python"], role="limit")
    run.declared["limit"] = dataclasses.replace(run.declared["limit"], role=None)
    run.declared["torch"] = dataclasses.replace(run.declared["torch"], below="numpy")
    run.declared["torch-compile"] = dataclasses.replace(run.declared["torch-compile"],
                                                        baseline=None)
    return load(run.to_dict())


def test_a_file_is_read_as_it_declares_its_variants_not_as_the_registry_does():
    run, old = declared_otherwise(), h.run_file()
    assert run.with_role("limit") == ["python"] and old.with_role("limit") == ["limit"]
    rows = {(r.case.variant, r.case.problem): r for r in summary.derive(run)}
    numpy, python = rows[("numpy", h.WORKED)], rows[("python", h.WORKED)]
    assert numpy.x_limit == pytest.approx(numpy.case.median / python.case.median)
    assert rows[("torch-compile", h.WORKED)].compile is None  # no baseline: no compile cost
    rungs = summary.ladders(run)[(h.WORKED, "cpu")]
    torch = next(r for r in rungs if r.case.variant == "torch")
    assert torch.built_on == "numpy" and torch.below.variant == "numpy"
    assert (h.WORKED, "cpu") not in summary.ladders(old)  # today's: torch on torch-manual
    assert "torch  numpy" in summary.ladder_table(run)  # the rung, built on
    assert ceilings.limit_case(run).variant == "python"


def test_a_file_without_declarations_is_read_through_the_registry():
    run = h.run_file()
    assert run.declared == {} and run.declaration("torch") == Declared.of(registry.get("torch"))
    assert run.declaration("no-such-variant") is None
    rows = {(r.case.variant, r.case.problem): r for r in summary.derive(run)}
    assert rows[("torch-compile", h.WORKED)].compile is not None
    assert ceilings.limit_case(run).variant == "limit"
