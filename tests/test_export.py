"""`backprop-bench export`: pytest-benchmark JSON that pytest-benchmark reads, and CSV."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import helpers_results as h
import numpy as np
import pytest
from pytest_benchmark.stats import Stats

from harness import cli
from harness.record import export, store
from harness.record import rows as records

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def two_files(tmp_path) -> tuple[Path, Path]:
    a, b = tmp_path / "run-a.json", tmp_path / "run-b.json"
    store.write(h.run_file(seed=0), a)
    store.write(h.run_file(seed=5), b)
    return a, b


def exported(path: Path, *args: str) -> dict:
    return json.loads(export.render(export.load([str(path)]), "pytest-benchmark", *args))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 31])
def test_statistics_are_computed_as_pytest_benchmark_computes_them(n):
    data = list(np.random.default_rng(n).lognormal(-10, 0.3, n))
    theirs = Stats()
    for x in data:
        theirs.update(x)
    ours = export.benchmark_stats(data, 7)
    assert ours == {**theirs.as_dict(), "data": data, "iterations": 7}


def test_each_ok_case_is_a_benchmark_of_per_step_times_with_iterations_k(two_files):
    run = store.read_run(two_files[0])
    doc = exported(two_files[0])
    assert set(doc) == {"machine_info", "commit_info", "benchmarks", "datetime", "version"}
    assert len(doc["benchmarks"]) == len(run.ok_cases())
    case = run.ok_cases()[1]
    bench = next(b for b in doc["benchmarks"] if b["fullname"] == case.id)
    t = case.timing
    assert bench["stats"]["iterations"] == t.block_steps
    assert bench["stats"]["data"] == pytest.approx([s / t.block_steps for s in t.samples_s])
    assert bench["stats"]["median"] == pytest.approx(case.median)
    assert bench["group"] == f"{case.problem.label()} on cpu" and bench["name"] == case.variant
    assert bench["extra_info"]["block_steps"] == t.block_steps
    assert list(bench["extra_info"]) == list(records.NAMES)
    assert doc["commit_info"]["id"] == run.commit.id
    assert doc["machine_info"]["node"] == run.machine.hostname


def test_failed_and_unavailable_cases_are_left_out_and_said(two_files, capsys):
    doc = exported(two_files[0])
    assert not any("jax-fori" in b["fullname"] or "torch-block" in b["fullname"]
                   for b in doc["benchmarks"])
    assert "2 failed or unavailable case(s) left out" in capsys.readouterr().err


def test_several_files_export_together_with_unique_names(two_files):
    doc = json.loads(export.render(export.load([str(two_files[0].parent)]), "pytest-benchmark"))
    names = [b["fullname"] for b in doc["benchmarks"]]
    assert len(names) == len(set(names)) == 2 * len(store.read_run(two_files[0]).ok_cases())
    assert any(n.startswith("run-b.json::") for n in names)


def test_pytest_benchmark_compare_reads_two_exports(two_files, tmp_path):
    outs = []
    for path in two_files:
        out = tmp_path / f"{path.stem}.pytest-benchmark.json"
        assert cli.main(["export", str(path), "--out", str(out)]) == 0
        outs.append(out)
    table = tmp_path / "compare.csv"
    proc = subprocess.run([sys.executable, "-m", "pytest_benchmark", "compare", *map(str, outs),
                           "--group-by", "group", f"--csv={table}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "1-1-1 linear float64 b1 on cpu" in proc.stdout
    with open(table) as f:
        rows = list(csv.DictReader(f))
    ok = len(store.read_run(two_files[0]).ok_cases())
    assert len(rows) == 2 * ok
    numpy = [r for r in rows if r["name"] == "cpu/numpy/1-1-1 linear float64/b1"]
    assert len(numpy) == 2 and all(1e-6 < float(r["median"]) < 1e-5 for r in numpy)


def test_csv_has_one_row_per_case_with_the_records_columns(two_files, tmp_path):
    out = tmp_path / "cases.csv"
    assert cli.main(["export", str(two_files[0]), "--format", "csv", "--out", str(out)]) == 0
    with open(out) as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == records.NAMES
    assert len(rows) == len(store.read_run(two_files[0]).cases)  # failed ones too
    failed = next(r for r in rows if r["status"] == "failed")
    assert failed["median_s"] == "" and failed["reason"]
    expected = records.run_records(store.read_run(two_files[0]))[0]["median_s"]
    assert float(rows[0]["median_s"]) == expected


def test_the_default_out_is_standard_output(two_files, capsys):
    assert cli.main(["export", str(two_files[0]), "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith(",".join(records.NAMES[:3]))


def test_an_existing_out_is_never_overwritten_without_force(two_files, tmp_path, capsys):
    out = tmp_path / "a.json"
    out.write_text("mine")
    assert cli.main(["export", str(two_files[0]), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err and out.read_text() == "mine"
    assert cli.main(["export", str(two_files[0]), "--out", str(out), "--force"]) == 0
    assert json.loads(out.read_text())["benchmarks"]


def test_export_never_writes_over_a_file_it_reads(two_files, capsys):
    argv = ["export", str(two_files[0]), "--out", str(two_files[0]), "--force"]
    assert cli.main(argv) == 2
    assert "one of the files being exported" in capsys.readouterr().err
    assert store.read_run(two_files[0]).cases


@pytest.mark.parametrize("argv, message", [
    (["export", "nowhere.json"], "no valid results file"),
    (["export", "x.json", "--format", "xml"], "invalid choice"),
    (["export", "x.json", "--out", " "], "--out is empty"),
])
def test_bad_export_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "x.json").write_text(json.dumps(h.run_file().to_dict()))
    with pytest.MonkeyPatch.context() as m:
        m.chdir(tmp_path)
        assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0


def test_export_is_a_listed_command_with_examples():
    command = next(c for c in cli.COMMANDS if c.name == "export")
    assert len(command.examples) == 2 and "pytest-benchmark" in command.description
