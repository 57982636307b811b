"""The Python API (harness.api, imported as backprop_bench), and the README's example of it."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import helpers_results as h
import pytest

import backprop_bench as bb
from harness import api, check
from harness.record import store
from harness.record.results import Case, ResultsError
from implementations import registry

ROOT = Path(__file__).resolve().parents[1]
LEARNER = ROOT / "examples" / "learner_backprop.py"


def readme_example() -> str:
    """The first ```python block under the README's "## Python API" heading."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n## Python API\n"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def without_jax(monkeypatch):
    """Make 'import jax' fail, as on a machine without it."""
    monkeypatch.setitem(sys.modules, "jax", None)


def test_the_package_exports_the_api():
    assert (bb.variants, bb.problem, bb.check, bb.time) == (api.variants, api.problem,
                                                            api.check, api.time)
    assert (bb.load, bb.records, bb.dataframe) == (api.load, api.records, api.dataframe)
    assert issubclass(ResultsError, bb.BenchError)


def test_variants_are_the_registrys():
    assert bb.variants() == list(registry.VARIANTS.values())
    assert {"name", "framework", "kind", "devices", "description"} <= set(vars(bb.variants()[0]))


def test_the_default_problem_is_the_worked_example():
    p = bb.problem()
    assert p.spec.widths == (1, 1, 1) and p.spec.activation == "linear"
    assert p.spec.dtype == "float64" and p.batch == 1 and p.x[0, 0] == 1.0 and p.lr == 0.1


def test_a_problem_takes_widths_as_a_sequence_or_text():
    p = bb.problem("4,16,4", activation="tanh", dtype="float32", batch=8, bias=True, seed=2)
    assert p.spec.widths == (4, 16, 4) and p.spec.bias and p.x.shape == (8, 4) and p.seed == 2
    assert bb.problem([4, 16, 4], seed=2, batch=8).x.tolist() == p.x.tolist()


@pytest.mark.parametrize("kwargs, message", [
    ({"widths": (4, 16, 2)}, "input width"), ({"activation": "gelu"}, "unknown activation"),
    ({"dtype": "float8"}, "unknown dtype"), ({"batch": 0}, "batch"), ({"lr": -1}, "learning"),
])
def test_an_impossible_problem_is_a_one_line_error(kwargs, message):
    with pytest.raises(bb.BenchError, match=message):
        bb.problem(**kwargs)


def test_time_returns_a_timed_and_verified_case():
    case = bb.time("numpy", bb.problem(), seconds=0.05)
    assert isinstance(case, Case) and case.ok, case.reason
    assert case.median > 0 and case.check["passed"] and case.timing.block_steps >= 1
    assert case.memory is not None and case.state is not None
    assert case.id == "cpu/numpy/1-1-1 linear float64/b1"


def test_time_of_a_variant_that_cannot_run_here_is_an_unavailable_case():
    case = bb.time(registry.get("torch-cudagraph"), bb.problem(), seconds=0.05)
    assert case.status == "unavailable" and "cuda" in case.reason


@pytest.mark.parametrize("args, message", [
    (("nope",), "unknown variant 'nope'"), (("numpy", "tpu"), "unknown device 'tpu'"),
    (("numpy", "cpu", 0), "seconds 0 must be"),
])
def test_bad_time_arguments_are_one_line_errors(args, message):
    with pytest.raises(bb.BenchError, match=message):
        bb.time(args[0], bb.problem(), *args[1:])


def test_check_returns_the_report_of_gradients_and_trajectories():
    report = bb.check(bb.problem(), frameworks=["numpy", "python"], steps=10)
    assert isinstance(report, check.Report) and report.passed
    references = {r.reference for r in report.rows}
    assert {"finite differences", "closed form", "frameworks", "trajectory"} <= references
    assert {r.subject for r in report.rows if r.reference == "trajectory"} == {"numpy",
                                                                               "python"}


def test_check_notes_what_cannot_run_the_problem():
    report = bb.check(bb.problem(dtype="float32"), frameworks=["numpy", "python"], steps=0)
    assert report.passed and not any(r.reference == "trajectory" for r in report.rows)
    assert any(n.startswith("gradients: python runs float64 only") for n in report.notes)


def test_check_of_a_named_framework_that_is_missing_is_an_error(without_jax):
    with pytest.raises(bb.BenchError, match="jax is not installed"):
        bb.check(bb.problem(), frameworks=["numpy", "jax"])


def test_a_missing_framework_outside_the_named_ones_is_a_note(without_jax):
    from harness.check import session

    notes = []
    modules = session.gradient_modules(None, notes, asked=False)
    assert "numpy" in modules and "jax" not in modules
    assert "jax: jax is not installed" in notes


def test_check_with_nothing_to_check_is_a_one_line_error():
    with pytest.raises(bb.BenchError, match="nothing was checked"):
        bb.check(bb.problem(dtype="float32"), frameworks=["python"])


def test_load_reads_folders_and_records_name_each_file(tmp_path):
    store.write(h.run_file(), tmp_path / "a.json")
    (tmp_path / "sub").mkdir()
    store.write(h.gpu_run_file(), tmp_path / "sub" / "b.json")
    runs = bb.load(tmp_path)
    rows = bb.records(runs)
    assert len(runs) == 2 and len(rows) == sum(len(r.cases) for r in runs)
    assert {Path(r["file"]).name for r in rows} == {"a.json", "b.json"}


def test_records_of_a_run_that_was_not_loaded_name_no_file():
    rows = bb.records(h.run_file())
    assert rows and {r["file"] for r in rows} == {None}


def test_load_warns_about_a_bad_file_and_keeps_the_others(tmp_path):
    store.write(h.run_file(), tmp_path / "a.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.warns(UserWarning, match="bad.json: not valid JSON"):
        assert len(bb.load([tmp_path / "a.json", str(tmp_path / "bad.json")])) == 1


def test_load_of_nothing_readable_is_a_one_line_error(tmp_path):
    with pytest.raises(ResultsError, match="no valid results file"):
        bb.load(tmp_path / "nowhere")


def test_dataframe_has_one_row_per_case_and_the_records_columns():
    pandas = pytest.importorskip("pandas")
    run = h.run_file()
    df = bb.dataframe([run])
    assert isinstance(df, pandas.DataFrame) and len(df) == len(run.cases)
    assert df.loc[df.variant == "numpy", "median_s"].notna().all()


def test_dataframe_without_pandas_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(bb.BenchError, match="pip install pandas") as err:
        bb.dataframe(h.run_file())
    assert "\n" not in str(err.value)


def test_the_readme_example_runs(monkeypatch, capsys):
    pytest.importorskip("pandas")  # the example ends with a DataFrame (the test extra has it)
    monkeypatch.chdir(ROOT)
    exec(compile(readme_example(), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "gradients right: True" in out and re.search(r"^ok [\d.]+ µs per step", out, re.M)
    assert "jax-fori" in out and "median_s" in out


@pytest.mark.parametrize("call, kind, fragment", [
    (lambda: bb.problem(batch=10**13), bb.BenchError, "of memory"),
    (lambda: bb.problem(bias="no"), TypeError, "bias must be True or False"),
    (lambda: bb.problem(widths=b"1,1,1"), TypeError, "widths must be a sequence"),
    (lambda: bb.problem(batch=2.5), TypeError, "batch must be an integer"),
    (lambda: bb.check(bb.problem(), frameworks="numpy"), TypeError, "list of framework names"),
    (lambda: bb.check("1-1-1"), TypeError, "problem must be a Problem"),
    (lambda: bb.check(bb.problem(), steps=1.5), TypeError, "steps must be a whole number"),
    (lambda: bb.check(bb.problem(), steps=-1), ValueError, "must be 0 or more"),
    (lambda: bb.time("numpy", bb.problem(), seconds=True), bb.BenchError, "seconds"),
    (lambda: bb.time("numpy", "1-1-1"), TypeError, "problem must be a Problem"),
    (lambda: bb.load(b"/tmp"), TypeError, "paths must be a path"),
    (lambda: bb.load([3]), TypeError, "paths must be str or os.PathLike"),
    # the fourth hardening round
    *[(lambda a=arg: bb.check_impl(a), TypeError, "path must be a file's path")
      for arg in (None, 3, b"examples/learner_backprop.py")],
    *[(lambda a=arg: bb.check_example(a), TypeError, "path must be a file's path")
      for arg in (None, 3, b"examples/mazur-2015.toml")],
    (lambda: bb.check_impl(LEARNER, problems=bb.problem()), TypeError, r"for one, \[problem\]"),
    (lambda: bb.check_impl(LEARNER, problems=5), TypeError, "problems must be a list"),
    (lambda: bb.check_impl(LEARNER, problems=[]), bb.BenchError, "problems is empty"),
    (lambda: bb.records(None), TypeError, "runs must be a Run or a list of Runs"),
    (lambda: bb.records([1]), TypeError, "runs must be a Run or a list of Runs"),
    (lambda: bb.records("results"), TypeError, r"not a path: records\(load\('results'\)\)"),
    (lambda: bb.dataframe("results"), TypeError, "not a path"),
])
def test_a_wrong_argument_is_a_one_line_error_at_the_api_boundary(call, kind, fragment):
    with pytest.raises(kind, match=fragment) as info:
        call()
    assert isinstance(info.value, bb.BenchError) and "\n" not in str(info.value)


CHECKS = {"check": lambda **kw: bb.check(bb.problem(), frameworks=["numpy"], **kw),
          "check_impl": lambda **kw: bb.check_impl(LEARNER, frameworks=[], **kw)}


@pytest.mark.parametrize("threads, kind, fragment", [
    ("x", TypeError, "threads must be a whole number or None, not 'x'"),
    (1.5, TypeError, "threads must be a whole number or None, not 1.5"),
    (True, TypeError, "threads must be a whole number or None, not True"),
    (-1, ValueError, "threads -1: give 1 to"), (0, ValueError, "threads 0: give 1 to"),
    (999, ValueError, "threads 999: give 1 to"),
])
@pytest.mark.parametrize("name", CHECKS)
def test_threads_are_refused_as_the_command_line_refuses_them(name, threads, kind, fragment):
    before = os.environ.get("OMP_NUM_THREADS")
    with pytest.raises(kind, match=re.escape(fragment)) as info:
        CHECKS[name](threads=threads)
    assert isinstance(info.value, bb.BenchError) and "\n" not in str(info.value)
    assert os.environ.get("OMP_NUM_THREADS") == before  # -1 was set in the caller's process
