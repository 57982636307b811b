"""harness.cli: one clear line and exit 2 for every user error; demo, check and list work."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import available_modules

from harness import cli
from harness.commands import plans
from implementations import registry
from implementations.problem import BenchError

ROOT = Path(__file__).resolve().parents[1]
ERROR_PREFIX = "backprop-bench: error:"
# compiling torch variants cost seconds each; isolated frameworks a process each
FAST_VARIANTS = ",".join(n for n, v in registry.VARIANTS.items()
                         if "cpu" in v.devices
                         and not (v.framework.startswith("torch") and v.baseline)
                         and not registry.FRAMEWORKS[v.framework].isolated)


def run_cli(argv, capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(argv, capsys, fragment: str) -> str:
    """cli.main(argv) exits 2 with exactly one stderr line, the error, containing fragment."""
    code, out, err = run_cli(argv, capsys)
    lines = err.splitlines()
    assert code == 2
    assert len(lines) == 1, err
    assert lines[0].startswith(ERROR_PREFIX)
    assert fragment in lines[0]
    assert "Traceback" not in err and out == ""
    return lines[0]


# ---- user errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("widths, fragment", [
    ("1,0,1", "every width must be 1 or more, got 0"),
    ("0,0", "every width must be 1 or more, got 0"),
    ("2,-3,2", "every width must be 1 or more, got -3"),
    ("-1,4,-1", "every width must be 1 or more, got -1"),
    ("70000,1,70000", "over the limit"),
    ("4,x,4", "expected integers"),
    ("", "expected integers"),
])
def test_bad_width_is_one_line_and_exit_2(widths, fragment, capsys):
    assert_one_line_error(["check", "--framework", "numpy", f"--widths={widths}"], capsys,
                          fragment)


def test_negative_first_width_without_equals_is_still_one_line(capsys):
    # argparse takes '-1,4,-1' for an option, so it reports a missing value, in one line.
    assert_one_line_error(["check", "--widths", "-1,4,-1"], capsys,
                          "expected at least one argument")


@pytest.mark.parametrize("flag", ["--activation", "--output-activation"])
def test_unknown_activation_is_one_line_and_exit_2(flag, capsys):
    assert_one_line_error(["check", "--framework", "numpy", flag, "softmax"], capsys,
                          "unknown activation 'softmax': choose from linear, sigmoid, tanh, relu")


@pytest.mark.parametrize("command", ["demo", "check"])
def test_unknown_framework_is_one_line_and_exit_2(command, capsys):
    line = assert_one_line_error([command, "--framework", "no-such-framework"], capsys,
                                 "unknown framework 'no-such-framework'")
    assert "numpy" in line and "jax" in line  # it lists the choices


def test_input_width_different_from_output_width_is_one_line_and_exit_2(capsys):
    assert_one_line_error(["check", "--framework", "numpy", "--widths", "4,8,3"], capsys,
                          "input width (4) to equal the output width (3)")


@pytest.mark.parametrize("lr", ["nan", "inf", "-inf", "0", "0.0", "-1", "-0.5"])
@pytest.mark.parametrize("command", ["demo", "check"])
def test_non_finite_or_non_positive_learning_rate_is_one_line_and_exit_2(command, lr, capsys):
    assert_one_line_error([command, "--framework", "numpy", f"--lr={lr}"], capsys,
                          "must be finite and positive")


def test_learning_rate_that_is_not_a_number_is_one_line_and_exit_2(capsys):
    assert_one_line_error(["demo", "--lr", "fast"], capsys, "is not a number")


@pytest.mark.parametrize("argv, fragment", [
    (["demo", "--bogus"], "unrecognized arguments: --bogus"),
    (["check", "--fast", "--framework", "numpy"], "unrecognized arguments: --fast"),
    (["--verbose"], "unrecognized arguments"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["check", "--batch", "two"], "invalid int value: 'two'"),
    (["check", "--device", "tpu"], "unknown device 'tpu'"),
    (["demo", "--epochs"], "expected one argument"),
])
def test_bad_command_line_is_one_line_and_exit_2(argv, fragment, capsys):
    assert_one_line_error(argv, capsys, fragment)


@pytest.mark.parametrize("argv, fragment", [
    (["check", "--framework", "numpy", "--batch", "0"], "batch 0 must be a positive integer"),
    (["check", "--framework", "numpy", "--dtype", "float8"], "unknown dtype 'float8'"),
    (["check", "--framework", "numpy", "--dtype", ","], "--dtype is empty"),
    (["check", "--framework", "numpy", "--steps", "0"], "--steps 0 must be 1 or more"),
    (["check", "--framework", "numpy", "--variants", "bogus"], "unknown variant 'bogus'"),
    (["demo", "--framework", "numpy", "--epochs", "-1"], "--epochs -1 must be 0 or more"),
])
def test_other_bad_options_are_one_line_and_exit_2(argv, fragment, capsys):
    assert_one_line_error(argv, capsys, fragment)


def test_negative_seed_is_one_line_and_exit_2(capsys):
    # Today numpy's default_rng raises ValueError("expected non-negative integer"): a traceback.
    assert_one_line_error(["check", "--framework", "numpy", "--seed", "-1"], capsys, "seed")


def test_framework_that_is_not_installed_is_one_line_and_exit_2(monkeypatch, capsys):
    ghost = registry.Framework("ghost", "Ghost", ("ghost_package_not_installed",))
    monkeypatch.setitem(registry.FRAMEWORKS, "ghost", ghost)
    assert_one_line_error(["demo", "--framework", "ghost"], capsys,
                          "ghost: ghost_package_not_installed is not installed")


@pytest.fixture
def without_jax(monkeypatch):
    """Make 'import jax' fail, as on a machine without it."""
    monkeypatch.setitem(sys.modules, "jax", None)


def test_asking_for_a_missing_framework_is_one_line_and_exit_2(without_jax, capsys):
    assert_one_line_error(["check", "--framework", "numpy,jax"], capsys,
                          "jax: jax is not installed")


def test_a_missing_framework_outside_the_asked_set_is_only_a_note(without_jax, capsys):
    code, out, err = run_cli(["demo", "--epochs", "1", "--variants", "numpy"], capsys)
    assert code == 0
    assert err.splitlines() == [line for line in err.splitlines()
                                if line.startswith(("note:", "demo:"))]
    assert "note: jax: jax is not installed" in err
    assert re.search(r"^\s*numpy\s+-?\d", out, re.M)
    assert not re.search(r"^\s*jax\s", out, re.M)


def test_list_marks_the_variants_of_a_missing_framework_unavailable(without_jax, capsys):
    code, out, _ = run_cli(["list"], capsys)
    assert code == 0
    for name in ("jax", "jax-eager", "jax-fori"):
        line = next(line for line in out.splitlines() if line.split()[0] == name)
        assert "unavailable: jax: jax is not installed" in line


def test_no_command_prints_help_and_exits_2(capsys):
    code, out, _ = run_cli([], capsys)
    assert code == 2 and "demo" in out and "check" in out


def test_a_user_error_end_to_end_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "demo", "--lr", "nan"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "backprop-bench: error: learning rate 'nan' must be finite and positive"]
    assert proc.stdout == ""


# ---- what works --------------------------------------------------------------------------------


IDIOMATIC = "torch-manual,torch-nn,jax-flax,keras-jax,keras-torch"


def test_demo_prints_the_worked_example_in_every_framework(contract_modules, capsys):
    code, out, _ = run_cli(["demo", "--variants", IDIOMATIC], capsys)
    assert code == 0
    names = list(contract_modules)
    assert {"python", "numpy"} <= set(names)
    for name in names:
        assert re.search(rf"\b{name}\s+0\.045\s+0\.5460125\s+0\.15\s+0\.3$", out, re.M), name
        assert re.search(rf"\b{name}\s+0\.03373516125\s+0\.5343041918\s+0\.11865\s+0\.284325$",
                         out, re.M), name
        assert re.search(rf"^{name}\s+-0\.39999997\s+199\.99998$", out, re.M), name
    spread = float(re.search(r"Largest difference between frameworks.*: (\S+)$", out,
                             re.M).group(1))
    assert spread < 1e-12


def test_demo_replays_the_worked_example_with_the_idiomatic_variants(capsys):
    code, out, _ = run_cli(["demo", "--framework", "numpy", "--variants", IDIOMATIC], capsys)
    assert code == 0
    trainers = out.split("every variant's own Trainer")[1]
    for name in IDIOMATIC.split(","):
        assert re.search(rf"^{name}\s+0\s+0\.5460125\s+0\.15\s+0\.3", trainers, re.M), name
    for name in ("torch-nn", "jax-flax", "keras-jax", "keras-torch"):  # their own gradients
        assert re.search(rf"^{name}\s.*0\.3135, 0\.15675$", trainers, re.M), name
    assert trainers.count("-0.98661309459782  1.01356846211392") == 5

def test_demo_epochs_sets_the_last_row(capsys):
    code, out, _ = run_cli(["demo", "--framework", "numpy", "--epochs", "1", "--variants",
                            "numpy"], capsys)
    assert code == 0
    epochs = [int(m) for m in re.findall(r"^\s+(\d+)\s+numpy", out, re.M)]
    assert epochs == [0, 1]


def test_check_passes_on_the_default_worked_example(capsys):
    code, out, _ = run_cli(["check", "--variants", FAST_VARIANTS], capsys)
    assert code == 0
    assert "PASSED" in out and "FAILED" not in out
    assert "1-1-1 linear f64" in out and "3-4-4-3 tanh+b f32" in out
    for name in available_modules():
        assert re.search(rf"^{name}\s+\S+\s+\d\S*\s+\d\S*\s.*\sok$", out, re.M), name


def test_check_of_a_framework_without_gradient_functions_checks_its_loop(capsys):
    code, out, _ = run_cli(["check", "--framework", "numba"], capsys)
    assert code == 0 and "PASSED" in out
    assert re.search(r"^limit\s+—\s+—\s+—\s+—\s+—\s+\S+\s+ok$", out, re.M), out


def test_check_passes_on_a_wider_network(capsys):
    argv = ["check", "--widths", "3,6,3", "--activation", "tanh", "--bias", "--batch", "4",
            "--framework", "numpy,torch", "--variants", "numpy,torch", "--steps", "10"]
    code, out, _ = run_cli(argv, capsys)
    assert code == 0 and "PASSED" in out


def test_list_lists_every_variant(capsys):
    code, out, _ = run_cli(["list"], capsys)
    assert code == 0
    lines = out.split("\n\n")[0].splitlines()[2:]
    assert [line.split()[0] for line in lines] == list(registry.VARIANTS)
    for line in lines:
        assert line.split()[2] in ("idiomatic", "optimised")


def test_list_imports_no_framework_unless_asked():
    code = ("import sys; from harness import cli; cli.main(['list']); "
            "bad = [m for m in ('torch', 'jax', 'numba') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, capture_output=True)


def test_list_says_a_gpu_only_variant_cannot_run_without_a_gpu(capsys, monkeypatch):
    from harness.measure import environment

    monkeypatch.setattr(environment, "gpu_info", lambda: None)
    code, out, _ = run_cli(["list"], capsys)
    line = next(line for line in out.splitlines() if line.startswith("torch-cudagraph"))
    assert "unavailable: no GPU here" in line


def test_the_readme_lists_every_registered_variant_with_its_kind():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("## The variants")[1].split("\n\n")[2]
    for v in registry.VARIANTS.values():
        assert f"| `{v.name}` | {v.framework} | {v.kind} |" in table, (
            f"{v.name} is not in the README's variants table: python scripts/variants_table.py "
            f"--write regenerates it")


def test_demo_on_a_cold_compile_cache_leaves_the_slow_builds_out_and_says_so(tmp_path):
    """`make bench` on a fresh machine: demo's Trainers leave out what compiles for minutes
    (nothing is built in an empty Inductor cache), with a note, and still replay the rest."""
    pytest.importorskip("torch")
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-m", "harness.cli", "demo", "--framework", "torch",
                           "--epochs", "2"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "left out: torch-nn-compile" in done.stderr, done.stderr
    assert "torch-nn" in done.stdout


def test_an_old_variant_name_still_works_with_one_note(capsys, monkeypatch):
    monkeypatch.setattr(registry, "_noted", set())
    chosen, explicit = plans.variants(("jax-scan", "jax-fori", "jax-scan"), None, [])
    assert [v.name for v in chosen] == ["jax-fori"] and explicit
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "variant jax-scan is now called jax-fori" in err
    assert "old name still works" in err
    with pytest.raises(BenchError, match="unknown variant 'jax-scam'"):
        registry.get("jax-scam")
    assert cli.main(["list"]) == 0
    assert "(jax-scan is now called jax-fori" in capsys.readouterr().out


@pytest.mark.parametrize("flag", ["--threads", "--rounds"])
def test_a_count_that_is_not_whole_says_so(capsys, flag):
    assert_one_line_error(["run", flag, "1.5"], capsys, "'1.5' is not a whole number")


# a sitecustomize that holds the import of harness.commands (harness.cli's first after the
# guard) for a minute, once it has said so: a signal then lands while the command line imports
SLOW_IMPORT = """
import importlib.abc, os, sys, time

class Slow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "harness.commands":
            open(os.environ["SLOW_MARKER"], "w").close()
            time.sleep(60)
        return None

sys.meta_path.insert(0, Slow())
"""
ENTRIES = {"python -m": ["-m", "harness.cli", "--version"],
           "console script": ["-c", "import sys; from harness.cli import main; sys.exit(main())",
                              "--version"]}


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("entry", ENTRIES)
def test_a_signal_while_the_command_line_imports_is_one_line(tmp_path, signum, status, entry):
    (tmp_path / "sitecustomize.py").write_text(SLOW_IMPORT)
    marker = tmp_path / "importing"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}",
           "SLOW_MARKER": str(marker)}
    proc = subprocess.Popen([sys.executable, *ENTRIES[entry]], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == status and out == ""
    assert err.splitlines() == ["backprop-bench: interrupted"], err
