"""The implementation contract as code: every module against the Protocols, the array frameworks
parallel to NumPy's file, and one more framework added in one file (tests/fake_framework.py)."""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import cli
from harness.record import store
from implementations import contract, registry
from implementations.problem import NetworkSpec, make_problem

ROOT = Path(__file__).resolve().parents[1]
FAKE = Path(__file__).with_name("fake_framework.py")
PARALLEL = ("numpy_backprop.py", "torch_backprop.py", "jax_backprop.py", "autograd_backprop.py",
            "mlx_backprop.py", "tf_backprop.py", "tinygrad_backprop.py", "paddle_backprop.py")


def importable() -> dict:
    modules = {}
    for name in registry.FRAMEWORKS:
        try:
            modules[name] = registry.import_module(name)
        except contract.Unavailable:
            pass
    return modules


def assert_contract(name: str) -> None:
    """The module of framework ``name`` against the Protocols (raises AssertionError)."""
    module = registry.import_module(name)
    fw = registry.FRAMEWORKS[name]
    protocol = contract.FrameworkModule if fw.gradients else contract.LoopModule
    assert isinstance(module, protocol)
    for method in ("check_device", "settings", *(("forward", "loss", "grads", "sgd_step",
                                                  "to_framework", "to_numpy", "sync")
                                                 if fw.gradients else ())):
        want = list(inspect.signature(getattr(protocol, method)).parameters)[1:]
        got = list(inspect.signature(getattr(module, method)).parameters)
        assert got == want, (name, method)
    for v in registry.variants_of(name):
        trainer = getattr(module, v.trainer)
        assert callable(trainer.run) and callable(trainer.params)
        if v.loop:
            loop = getattr(module, v.loop)
            assert loop.block >= 1, v.name
            assert isinstance(getattr(loop, "autograd", False), bool), v.name


@pytest.mark.parametrize("name", list(registry.FRAMEWORKS))
def test_every_registered_module_keeps_the_contract(name):
    if registry.FRAMEWORKS[name].isolated:  # it must be imported in a process of its own
        code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                f"import test_contract as t; from implementations import registry\n"
                f"try:\n    t.assert_contract({name!r})\n"
                f"except registry.Unavailable as exc:\n    print('skip:', exc)")
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        if done.stdout.startswith("skip:"):
            pytest.skip(done.stdout)
        return
    try:
        assert_contract(name)
    except contract.Unavailable as exc:
        pytest.skip(str(exc))


def top_level_names(path: Path, stop: str = "Trainer") -> list[str]:
    """The module's top-level assignments, functions and classes, in order, up to ``stop``."""
    names = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            names.append(node.targets[0].id)
        if names and names[-1] == stop:
            break
    return [n for n in names if not n.isupper() or n in ("FRAMEWORK", "VARIANTS",
                                                         "ACTIVATIONS")]


@pytest.mark.parametrize("name", PARALLEL[1:])
def test_the_array_frameworks_define_numpy_s_names_in_the_same_order(name):
    here = ROOT / "implementations"
    assert top_level_names(here / name) == top_level_names(here / PARALLEL[0])
    assert top_level_names(here / PARALLEL[0])[:3] == ["FRAMEWORK", "VARIANTS", "ACTIVATIONS"]


# environment variables an import may set, and why no framework's results depend on them
HARMLESS_VARIABLES = {
    "TF_CPP_MIN_LOG_LEVEL": "jaxlib's C++ log level (which messages XLA prints)",
    "TPU_SKIP_MDS_QUERY": "jaxlib: do not ask a cloud metadata server for a TPU",
}


def test_a_framework_that_shares_a_process_leaves_its_process_wide_state_alone():
    """Every framework that is not ``isolated`` is imported, one after another, in one fresh
    process (as ``check`` and ``demo`` import them): none may change the recursion limit, a
    signal handler, NumPy's error state, an environment variable (a thread count, a
    device), ... that another framework there would read. One that must is declared
    ``isolated`` (tinygrad, PaddlePaddle) and always runs in a process of its own."""
    names = [n for n, f in registry.FRAMEWORKS.items() if not f.isolated]
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "helpers_import_state.py"),
                           *names], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    changed = json.loads(done.stdout.splitlines()[-1])
    assert set(changed) == set(names)
    for name, found in changed.items():
        found.pop("unavailable", None)
        bad = {k: v for k, v in found.items() if k.lstrip("$") not in HARMLESS_VARIABLES}
        assert not bad, (f"importing {name} changes process-wide state: {bad}; declare it "
                         f"isolated=True (a process of its own), or leave that state alone")


def test_unavailable_lives_in_the_contract_not_the_registry():
    assert contract.Unavailable.__module__ == "implementations.contract"
    for path in (ROOT / "implementations").glob("*.py"):
        assert "from implementations.registry import" not in path.read_text(), path.name


def test_no_harness_module_keeps_a_list_of_framework_or_variant_names():
    names = set(registry.FRAMEWORKS) | set(registry.VARIANTS)
    pattern = re.compile(r"""["']([a-z][a-z0-9-]*)["']""")
    # numpy: a package (BASE_PACKAGES), and check's reference trajectory; python: its version
    allowed = {"numpy", "python"}
    for path in (ROOT / "harness").rglob("*.py"):
        code = "\n".join(line for line in path.read_text().splitlines()
                         if not line.strip().startswith("#"))
        found = set(pattern.findall(code)) & names - allowed
        found -= {"limit"}  # the registry *role* "limit", not the variant
        assert not found, (path.name, found)


def test_declarations_may_use_only_literals(tmp_path, monkeypatch):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nFRAMEWORK = Framework('bad', 'Bad', (os.name,))\nVARIANTS = ()\n")
    monkeypatch.setenv(registry.ENV, str(bad))
    registry.discover()
    try:
        assert "bad" not in registry.FRAMEWORKS and "numpy" in registry.FRAMEWORKS
        assert any("may use only literals" in p for p in registry.PROBLEMS), registry.PROBLEMS
    finally:
        monkeypatch.delenv(registry.ENV)
        registry.discover()


# ---- a fourth framework in one file ------------------------------------------------------------

@pytest.fixture
def with_fake(monkeypatch):
    monkeypatch.setenv(registry.ENV, str(FAKE))
    registry.discover()
    yield
    monkeypatch.delenv(registry.ENV)
    registry.discover()


def test_the_fake_framework_is_listed(with_fake, capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^fake\s+fake\s+idiomatic\s+cpu", out, re.M)
    assert re.search(r"^fake-twice\s+fake\s+optimised", out, re.M)
    assert re.search(r"^fake-leaky\s+fake\s+idiomatic", out, re.M)


def test_the_fake_framework_passes_check(with_fake, capsys):
    code = cli.main(["check", "--framework", "numpy,fake", "--variants", "fake,fake-twice",
                     "--widths", "3,5,3", "--activation", "tanh", "--bias", "--batch", "4",
                     "--steps", "10"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"^fake\s+\S+\s+\d\S*\s+\d\S*\s.*\sok$", out, re.M) and "PASSED" in out


def test_the_fake_framework_runs_and_reports(with_fake, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = cli.main(["run", "--variants", "numpy,fake,fake-twice", "--widths", "1,1,1",
                     "--time-per-case", "0.05", "--processes", "1", "--no-peak",
                     "--out", str(out)])
    assert code == 0, capsys.readouterr()
    run = store.read_run(out)
    assert {c.variant: c.status for c in run.cases} == {"numpy": "ok", "fake": "ok",
                                                        "fake-twice": "ok"}
    assert run.software.get("json") is None and run.frameworks["fake"].settings
    assert next(c for c in run.cases if c.variant == "fake-twice").timing.block_steps % 2 == 0
    text = (tmp_path / "REPORT.md")
    assert cli.main(["report", str(out), "--out", str(text)]) == 0
    report = text.read_text()
    assert "`fake`" in report and "`fake-twice`" in report and "**fake**" in report


def test_a_leaking_variant_is_flagged(with_fake, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = cli.main(["run", "--variants", "fake-leaky", "--widths", "1,1,1", "--time-per-case",
                     "0.2", "--rounds", "1", "--no-peak", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    (case,) = store.read_run(out).cases
    assert case.ok and case.leaks and "grew" in case.memory["leak_reason"]
    assert "LEAKS" in printed and "leaks" in printed


@pytest.fixture
def broken_jax(tmp_path):
    """An environment where 'import jax' raises RuntimeError (like OSError from a broken CUDA
    library): installed, but failing."""
    pkg = tmp_path / "jax"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('simulated broken install')\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}


BROKEN = "jax: jax is installed but fails to import (RuntimeError: simulated broken install)"


def bench(env, *argv):
    return subprocess.run([sys.executable, "-m", "harness.cli", *argv], env=env,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.mark.parametrize("argv", [["list", "--check"], ["demo", "--variants", "numpy"]])
def test_a_broken_framework_is_unavailable_with_the_reason(broken_jax, argv):
    proc = bench(broken_jax, *argv)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert BROKEN in proc.stdout + proc.stderr


def test_asking_for_a_broken_framework_is_one_line_exit_2(broken_jax):
    proc = bench(broken_jax, "check", "--framework", "jax")
    assert proc.returncode == 2 and proc.stderr.splitlines() == [f"backprop-bench: error: "
                                                                  f"{BROKEN}"]


def test_running_a_broken_framework_exits_1_with_one_line(broken_jax, tmp_path):
    out = tmp_path / "r.json"
    proc = bench(broken_jax, "run", "--variants", "jax", "--widths", "1,1,1", "--no-peak",
                 "--processes", "1", "--out", str(out))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("warning:")]
    assert errors == [f"backprop-bench: error: jax could not run here: {BROKEN}"]
    assert store.read_run(out).cases[0].status == "unavailable"


# ---- what a variant declares it runs -----------------------------------------------------------

SMALL_RELU = contract.Variant("small", "idiomatic", "declared", dtypes=contract.FLOAT64_ONLY,
                              activations=("linear", "relu"), biases=(True,), max_width=4,
                              max_layers=2, max_batch=3)


@pytest.mark.parametrize("spec, batch, reason", [
    (NetworkSpec((2, 3, 2), "relu", bias=True), 3, None),
    (NetworkSpec((2, 3, 2), "relu", bias=True, dtype="float32"), 3,
     "small runs float64 only, not float32"),
    (NetworkSpec((2, 3, 2), "tanh", bias=True), 3,
     "small runs the activations linear, relu only, not tanh"),
    (NetworkSpec((2, 3, 2), "relu", "sigmoid", bias=True), 3,
     "small runs the activations linear, relu only, not sigmoid"),
    (NetworkSpec((2, 2), "tanh", bias=True), 3, None),  # no hidden layer: tanh is not used
    (NetworkSpec((2, 3, 2), "relu"), 3, "small runs networks with a bias only"),
    (NetworkSpec((2, 5, 2), "relu", bias=True), 3, "small runs layers up to 4 wide only, not "
                                                  "2-5-2"),
    (NetworkSpec((2, 3, 3, 2), "relu", bias=True), 3, "small runs up to 2 weight layers only, "
                                                     "not 3 (2-3-3-2)"),
    (NetworkSpec((2, 3, 2), "relu", bias=True), 4, "small runs batches up to 3 only, not 4"),
])
def test_why_not_reads_every_declaration(spec, batch, reason):
    assert SMALL_RELU.why_not(make_problem(spec, batch=batch), "cpu") == reason
    assert SMALL_RELU.why_not(make_problem(spec, batch=batch), "cuda") == ("small runs on cpu "
                                                                           "only, not cuda")


def test_make_refuses_what_the_declarations_refuse():
    with pytest.raises(contract.Unavailable, match="with a bias only"):
        SMALL_RELU.make(make_problem(NetworkSpec((2, 3, 2), "relu"), batch=3))


def test_a_variant_says_what_it_runs_where_that_is_less_than_everything():
    assert SMALL_RELU.runs() == ("float64; linear, relu; with a bias; up to 4 wide, 2 layers, "
                                 "batch 3")
    assert registry.get("numpy").runs() == ""
    assert registry.get("python").runs() == "float64; 1-1-1, batch 1"
    assert contract.Variant("n", "idiomatic", "", biases=(False,)).runs() == "no bias"


@pytest.mark.parametrize("declaration, fragment", [
    ("activations=('linear', 'softmax')", "activations ('linear', 'softmax') must be"),
    ("activations=()", "activations () must be a non-empty tuple"),
    ("biases=(1,)", "biases (1,) must be"),
    ("dtypes=('float8',)", "dtypes ('float8',) must be"),
    ("devices=('tpu',)", "devices ('tpu',) must be"),
    ("max_width=0", "max_width 0 must be a positive integer or None"),
    ("max_batch=True", "max_batch True must be a positive integer"),
    ("max_layers=2.5", "max_layers 2.5 must be"),
])
def test_a_declaration_the_suite_cannot_read_leaves_its_file_out_with_the_reason(
        tmp_path, monkeypatch, declaration, fragment):
    bad = tmp_path / "limits.py"
    bad.write_text(f"FRAMEWORK = Framework('limits', 'Limits', ())\n"
                   f"VARIANTS = (Variant('limits', 'idiomatic', 'x', {declaration}),)\n")
    monkeypatch.setenv(registry.ENV, str(bad))
    registry.discover()
    try:
        assert "limits" not in registry.FRAMEWORKS and "numpy" in registry.FRAMEWORKS
        assert any(fragment in p and "left out" in p for p in registry.PROBLEMS), registry.PROBLEMS
    finally:
        monkeypatch.delenv(registry.ENV)
        registry.discover()


def test_list_shows_what_each_variant_declares_it_runs(with_fake, capsys):
    assert cli.main(["list"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines()
                if line.startswith("fake-small "))
    assert "linear, tanh; with a bias; up to 4 wide, 2 layers, batch 4" in line


def test_check_skips_what_a_variant_declares_it_cannot_run_with_the_reason(with_fake, capsys):
    code = cli.main(["check", "--framework", "numpy,fake", "--variants", "fake,fake-small",
                     "--widths", "3,4,3", "3,5,3", "--activation", "tanh", "--bias",
                     "--batch", "4", "--dtype", "float64", "--steps", "5"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"^fake-small\s.*\sok$", out, re.M), out
    assert "not run here: fake-small (layers up to 4 wide only, not 3-5-3)" in out, out


def test_run_skips_a_case_a_variant_cannot_run_records_why_and_exits_0(with_fake, tmp_path,
                                                                        capsys):
    out = tmp_path / "r.json"
    code = cli.main(["run", "--variants", "fake,fake-small", "--widths", "1,1,1", "3,5,3",
                     "--activation", "tanh", "--bias", "--time-per-case", "0.05",
                     "--processes", "1", "--no-peak", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    run = store.read_run(out)
    assert {(c.variant, c.problem.widths) for c in run.cases} == {
        ("fake", (1, 1, 1)), ("fake", (3, 5, 3)), ("fake-small", (1, 1, 1))}
    assert all(c.status == "ok" for c in run.cases)
    assert run.notes == ["fake-small runs layers up to 4 wide only, not 3-5-3"]
    assert "note: skipped, fake-small runs layers up to 4 wide only, not 3-5-3" in printed
    report = tmp_path / "REPORT.md"
    assert cli.main(["report", str(out), "--out", str(report)]) == 0
    assert "Skipped: fake-small runs layers up to 4 wide only, not 3-5-3" in report.read_text()


def test_run_refuses_when_no_variant_asked_for_can_run_any_case(with_fake, tmp_path, capsys):
    code = cli.main(["run", "--variants", "fake-small", "--widths", "3,5,3", "--bias",
                     "--no-peak", "--out", str(tmp_path / "r.json")])
    assert code == 2
    assert "variant fake-small cannot run any case asked for: fake-small runs layers up to 4 " \
           "wide only" in capsys.readouterr().err
