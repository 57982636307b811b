"""Results files of versions 1 to 3 read as version 4: the statistics they stored beside the
samples are derived again, and agree with what they stored."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from harness.record import store, upgrade
from harness.record.results import SCHEMA_VERSION, ResultsError, Run

ROOT = Path(__file__).resolve().parent.parent
POOLED = ROOT / "results" / "run-cpu-vm-20261129-040155.json"  # version 2, 5 processes a case
PHASES = ROOT / "results" / "run-cpu-vm-20261202-025517.json"  # version 3, with phases


def raw(path: Path) -> dict:
    return json.loads(path.read_text())


def test_each_process_of_an_old_pooled_case_gets_its_own_samples_back():
    data = raw(POOLED)
    run = Run.from_dict(data, POOLED.name)
    checked = 0
    for old, case in zip(data["cases"], run.cases):
        for stored, process in zip(old["processes"], case.processes):
            if stored["status"] != "ok":
                continue
            assert process.timing.blocks == stored["blocks"]
            assert process.median == pytest.approx(stored["median_s"], rel=1e-12)
            assert process.timing.iqr == pytest.approx(stored["iqr_s"], rel=1e-9, abs=1e-18)
            assert process.timing.compile_s == pytest.approx(stored["compile_s"], rel=1e-9)
            checked += 1
        if case.ok:
            assert case.median == pytest.approx(old["timing"]["per_step"]["median_s"], rel=1e-12)
            assert case.compile_s == pytest.approx(old["timing"]["compile_s"], rel=1e-12)
    assert checked >= 100


def test_an_old_phase_is_one_block_at_its_stored_median():
    data = raw(PHASES)
    run = Run.from_dict(data, PHASES.name)
    old = next(c for c in data["cases"] if c.get("phases"))
    case = next(c for c in run.cases if c.id == old["id"])
    for name, stats in old["phases"].items():
        assert case.phases[name].samples_s == [stats["median_s"]]
        assert case.phases[name].median == stats["median_s"]


def test_an_old_file_is_written_back_as_version_4_without_the_derived_figures(tmp_path):
    run = store.read_run(POOLED)
    assert run.schema_version == SCHEMA_VERSION == upgrade.VERSION == 4
    store.write(run, tmp_path / "again.json")
    cases = json.dumps(json.loads((tmp_path / "again.json").read_text())["cases"])
    assert '"per_step"' not in cases and '"median_s"' not in cases and '"compile_s"' not in cases
    again = store.read_run(tmp_path / "again.json")
    assert [c.median for c in again.cases] == [c.median for c in run.cases]
    assert [c.compile_s for c in again.cases] == [c.compile_s for c in run.cases]


def test_processes_whose_blocks_do_not_add_up_keep_their_status_and_no_samples():
    data = raw(POOLED)
    data["cases"][0]["processes"][1]["blocks"] += 1
    case = Run.from_dict(data, "odd.json").cases[0]
    assert [p.status for p in case.processes] == ["ok"] * 5
    assert all(p.timing is None for p in case.processes)
    assert case.ok and case.median is not None  # the pooled samples are still the case's


def test_the_upgrade_leaves_its_input_alone_and_a_current_file_as_it_is():
    data = raw(POOLED)
    before = copy.deepcopy(data)
    upgrade.to_current(data)
    assert data == before
    current = store.read_run(POOLED).to_dict()
    assert upgrade.to_current(current) is current


@pytest.mark.parametrize("where, value, fragment", [
    (("phases", "forward", "median_s"), "fast", "phases.forward.samples_s[0]: expected a finite"),
    (("phases", "forward", "median_s"), -1.0, "phases.forward: samples_s[0] -1.0 s"),
    (("processes", 0, "first_call_s"), -2.0, "processes[0].timing: first_call_s -2.0"),
])
def test_a_corrupt_old_file_is_refused_with_one_line(where, value, fragment):
    data = raw(POOLED)
    case = next(c for c in data["cases"] if c.get("phases") and c.get("processes"))
    target = case
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    with pytest.raises(ResultsError) as err:
        Run.from_dict(data, "old.json")
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_a_renamed_variant_takes_its_name_now_in_an_old_file():
    data = raw(POOLED)
    assert "jax-scan" in data["config"]["variants"]
    run = Run.from_dict(data, POOLED.name)
    assert "jax-scan" not in run.config.variants and "jax-fori" in run.config.variants
    fori = [c for c in run.cases if c.variant == "jax-fori"]
    assert fori and all("/jax-fori/" in c.id for c in fori)
    assert not any("jax-scan" in c.id or c.variant == "jax-scan" for c in run.cases)
    data["config"]["extra_cases"] = [{"problem": {}, "variant": "jax-scan"}, {"variant": "limit"}]
    extra = Run.from_dict(data, POOLED.name).config.extra_cases
    assert [e["variant"] for e in extra] == ["jax-fori", "limit"]


def test_a_matmul_peak_is_stored_as_its_samples_and_derives_what_old_files_stored(tmp_path):
    data = raw(POOLED)
    run = Run.from_dict(data, POOLED.name)
    stored = data["ceilings"]["matmul_peak"]
    assert stored and [p.gflops for p in run.ceilings.matmul_peak] == [p.get("gflops")
                                                                       for p in stored]
    assert [p.median_s for p in run.ceilings.matmul_peak] == [p.get("median_s") for p in stored]
    store.write(run, tmp_path / "again.json")
    peaks = json.loads((tmp_path / "again.json").read_text())["ceilings"]["matmul_peak"]
    assert all("gflops" not in p and "median_s" not in p and "samples_s" in p for p in peaks)
