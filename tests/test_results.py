"""Results files: atomic writes, validation with one-line errors that name the file."""

from __future__ import annotations

import json
import os

import pytest

from harness import results
from harness.results import ResultsError


def minimal_run() -> dict:
    run = results.new_run("run", {"hostname": "h"}, {"python": "3"}, {"id": None}, {})
    run["cases"].append({"id": "cpu/numpy/x", "variant": "numpy", "framework": "numpy",
                         "device": "cpu", "problem": {}, "status": "unavailable",
                         "reason": "why"})
    return run


def test_write_then_load_round_trips(tmp_path):
    path = tmp_path / "r.json"
    results.write(minimal_run(), path)
    assert results.load(path)["cases"][0]["reason"] == "why"


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "r.json"
    results.write(minimal_run(), path)
    bad = minimal_run()
    bad["cases"][0]["reason"] = float("nan")  # not valid JSON: the write must fail
    with pytest.raises(ValueError):
        results.write(bad, path)
    assert results.load(path)["cases"][0]["reason"] == "why"  # the old file is intact
    assert os.listdir(tmp_path) == ["r.json"]


@pytest.mark.parametrize(
    "content, message",
    [("{not json", "not valid JSON"),
     (json.dumps({"schema": "something else"}), "not a backprop-bench results file"),
     (json.dumps({"schema": results.SCHEMA, "schema_version": 99}), "schema version 99"),
     (json.dumps({"schema": results.SCHEMA, "schema_version": results.SCHEMA_VERSION}),
      "missing field"),
     ],
)
def test_bad_files_give_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ResultsError) as err:
        results.load(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_an_ok_case_without_timing_is_rejected(tmp_path):
    run = minimal_run()
    run["cases"][0]["status"] = "ok"
    path = tmp_path / "r.json"
    results.write(run, path)
    with pytest.raises(ResultsError, match="no positive per-step median"):
        results.load(path)


def test_load_many_keeps_good_files_and_reports_bad_ones(tmp_path):
    results.write(minimal_run(), tmp_path / "good.json")
    (tmp_path / "bad.json").write_text("[]")
    good, problems = results.load_many([str(tmp_path)])
    assert [p.name for p, _ in good] == ["good.json"]
    assert len(problems) == 1 and "bad.json" in problems[0]


def test_ensure_writable_refuses_a_path_it_cannot_write(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ResultsError, match="cannot write results"):
        results.ensure_writable(blocker / "sub" / "r.json")
    with pytest.raises(ResultsError, match="is a directory"):
        results.ensure_writable(tmp_path)


def test_case_id_is_stable_and_readable():
    problem = {"widths": [4, 16, 4], "activation": "tanh", "bias": True, "dtype": "float32",
               "batch": 8}
    assert results.case_id("cpu", "jax", problem) == "cpu/jax/4-16-4 tanh+b float32/b8"


@pytest.mark.parametrize("median", [0.0, -1.0, float("inf")])
def test_an_ok_case_needs_a_finite_positive_median(tmp_path, median):
    run = minimal_run()
    run["cases"][0].update(status="ok", timing={"per_step": {"median_s": median}})
    path = tmp_path / "r.json"
    path.write_text(json.dumps(run).replace("Infinity", "1e999"))
    with pytest.raises(ResultsError, match="no positive per-step median"):
        results.load(path)


def test_an_existing_results_file_is_never_overwritten_without_force(tmp_path):
    path = tmp_path / "r.json"
    results.write(minimal_run(), path)
    with pytest.raises(ResultsError, match="already exists"):
        results.ensure_writable(path)
    assert results.ensure_writable(path, overwrite=True) == path
