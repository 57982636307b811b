"""Flat rows of results: one dict per case, the same keys for every case."""

from __future__ import annotations

import json

import helpers_results as h
import pytest

from harness.record import rows as records


@pytest.fixture
def run():
    return h.run_file()


def by_variant(rows: list[dict], variant: str, widths: str = "1-1-1") -> dict:
    return next(r for r in rows if r["variant"] == variant and r["widths"] == widths)


def test_every_row_has_every_column_in_order_whatever_the_status(run):
    rows = records.run_records(run, "results/run.json")
    assert len(rows) == len(run.cases)
    assert all(list(r) == list(records.NAMES) for r in rows)
    assert {r["status"] for r in rows} == {"ok", "failed", "unavailable"}
    assert {r["file"] for r in rows} == {"results/run.json"}


def test_an_ok_row_has_the_per_step_figures_and_its_throughput(run):
    case = next(c for c in run.cases if c.variant == "numpy" and c.problem.widths == (16,) * 3)
    row = by_variant(records.run_records(run), "numpy", "16-16-16")
    assert row["median_s"] == case.median and row["iqr_s"] == case.timing.iqr
    assert row["block_steps"] == case.timing.block_steps
    assert row["gflops"] == pytest.approx(case.flops_per_step / case.median / 1e9)
    assert row["network"] == "16-16-16 tanh float32 b64" and row["width"] == 16
    assert row["depth"] == 2 and row["dtype"] == "float32" and row["batch"] == 64
    assert row["machine"] == "cpu-box" and row["commit"] == "0123456789abcdef"


def test_a_failed_case_has_its_reason_and_no_time(run):
    row = by_variant(records.run_records(run), "jax-fori", "16-16-16")
    assert row["status"] == "failed" and "W1 error" in row["reason"]
    assert row["median_s"] is None and row["gflops"] is None and row["first_call_s"] is None


def test_derived_columns_are_the_summarys(run):
    rows = records.run_records(run)
    numpy, limit = by_variant(rows, "numpy"), by_variant(rows, "limit")
    assert numpy["x_limit"] == pytest.approx(numpy["median_s"] / limit["median_s"])
    assert numpy["x_reference"] == pytest.approx(1.0)
    assert numpy["compile_s"] is None  # it does not compile: its first call is a cold call
    assert by_variant(rows, "torch-compile")["compile_s"] == pytest.approx(2.4, rel=0.01)


def test_memory_figures_become_columns(run):
    run.cases[1].memory = {"source": "rss", "warm_call_added_bytes": 4096,
                           "minimum_bytes": 24, "growth_bytes": 0, "leaks": False}
    row = records.run_records(run)[1]
    assert row["warm_call_added_bytes"] == 4096 and row["minimum_bytes"] == 24
    assert row["leaks"] is False and row["memory_source"] == "rss"
    assert records.run_records(run)[0]["warm_call_added_bytes"] is None


def test_rows_are_json_able_scalars(run):
    rows = records.run_records(run, "r.json")
    assert json.loads(json.dumps(rows)) == rows
    assert all(v is None or isinstance(v, (str, int, float, bool)) for r in rows
               for v in r.values())
