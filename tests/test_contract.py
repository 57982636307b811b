"""The implementation contract as code: every module against the Protocols, the array frameworks
parallel to NumPy's file, and one more framework added in one file (tests/fake_framework.py)."""

from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import cli
from harness.record import store
from implementations import contract, registry

ROOT = Path(__file__).resolve().parents[1]
FAKE = Path(__file__).with_name("fake_framework.py")
PARALLEL = ("numpy_backprop.py", "torch_backprop.py", "jax_backprop.py", "autograd_backprop.py",
            "mlx_backprop.py", "tf_backprop.py")


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
