"""The default `check` catches each classic backprop bug, blames only the guilty, says why.

Each bug of ``tests/planted_bugs.py`` is planted at once in a NumPy backward pass, an eager
torch autograd step and an idiomatic nn.Module + torch.optim step; the command is the
default ``check`` (its default networks, dtypes and steps), beside the real NumPy and torch
variants. Each must exit 1, mark the three planted variants FAIL and no other, and name the
bug in its diagnosis. Each framework that joined later brings a bug its users write
(``tests/planted_<framework>.py``), which the default ``check`` must catch and blame on that
variant alone, beside the framework's own variants passing.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import planted_bugs
import pytest
from helpers_check import diagnoses, results

from harness import cli
from implementations import registry

PLUGIN = Path(__file__).with_name("planted_bugs.py")
PLANTED = ("numpy-planted", "torch-planted", "torch-nn-planted")
DIAGNOSIS = {
    "no-batch-mean": r"5\.00× the reference.*\(= batch 5\): the mean over the batch lacks its "
                     r"1/batch",
    "no-half": r"2\.00× the reference.*\(= 2\): the 1/2 of E is missing",
    "w-not-transposed": r"the shapes do not fit: a matrix is used where its transpose belongs",
    "wrong-derivative": r"1 - h is used where tanh' = 1 - h² belongs",
    "sign": r"-1\.00× the reference.*: the sign is flipped",
    "frozen-bias": r"(b1, b2, b3 never moved from the start: frozen|b1's gradient is missing"
                   r".*frozen)",
    "wrong-layer": r"gradient is \w+'s.*: the gradient of another layer",
    # in each subject's own words: .grad for torch's, a sum for NumPy's
    "no-zero-grad": r"the gradients accumulate from step to step: (\.grad is never zeroed "
                    r"between steps: (p\.grad = None|optimizer\.zero_grad\(\)).* is missing|each "
                    r"step adds its gradient to those of the steps before)",
    "output-mean": r"0\.33× the reference.*\(= 1/out width 3\): the loss is averaged over the "
                   r"outputs as well as the batch",
    # the two the default check missed while no default network had either activation
    "sigmoid-derivative": r"at the output layer, tanh's derivative 1 - h² is used for sigmoid "
                          r"\[3-4-4-3 relu→sigmoid\+b f64 b5\]",
    "relu-derivative": r"(the derivative of relu is missing|relu' is taken as 1 everywhere).*"
                       r"\[3-4-4-3 relu→sigmoid\+b f64 b5\]",
}


@pytest.fixture
def plant(monkeypatch):
    """plant(bug): the plugin registered with that bug (none: ""), freshly imported."""

    def plant(bug: str) -> None:
        monkeypatch.setenv(registry.ENV, str(PLUGIN))
        monkeypatch.setenv("BACKPROP_BENCH_PLANTED", bug)
        sys.modules.pop("backprop_bench_extra_planted_bugs", None)
        registry.discover()

    yield plant
    monkeypatch.delenv(registry.ENV)
    sys.modules.pop("backprop_bench_extra_planted_bugs", None)
    registry.discover()


def test_without_a_bug_the_planted_variants_pass_the_default_check(plant, capsys):
    plant("")
    assert cli.main(["check", "--framework", "numpy,planted"]) == 0
    got = results(capsys.readouterr().out)
    assert all(got[name] == {"ok"} for name in PLANTED), got


@pytest.mark.parametrize("bug", sorted(DIAGNOSIS))
def test_the_default_check_catches_the_bug_blames_only_the_guilty_and_names_it(
        plant, capsys, bug):
    plant(bug)
    assert cli.main(["check", "--framework", "numpy,torch,planted"]) == 1
    out = capsys.readouterr().out
    got = results(out)
    failed = {name for name, r in got.items() if "FAIL" in r}
    guilty = ("numpy-planted",) if bug in planted_bugs.NUMPY_ONLY else PLANTED
    assert failed == set(guilty), got
    assert {"numpy", "torch", "torch-manual", "torch-optim", "torch-nn"} <= set(got)
    assert out.split("\nFAILED: ", 1)[1].splitlines()[0] == ", ".join(sorted(
        guilty, key=out.index))  # the verdict names them, and only them
    for name in guilty:
        lines = diagnoses(out, name)
        assert lines and any(re.search(DIAGNOSIS[bug], line) for line in lines), (name, lines)


def test_every_framework_of_the_default_check_passes_beside_a_planted_bug(plant, capsys):
    plant("no-batch-mean")
    assert cli.main(["check"]) == 1
    out = capsys.readouterr().out
    got = results(out)
    assert {name for name, r in got.items() if "FAIL" in r} == set(PLANTED)
    for name in ("numpy", "torch", "jax", "jax-flax", "keras-jax", "keras-torch"):
        assert got.get(name) == {"ok"}, (name, got.get(name))
    assert "left out: " in out and "'check --all' includes them" in out


# ---- a bug users write in each framework that joined later, planted in a file of its own -----

# plugin file: (its framework, the real variants each bug is written on, {bug: diagnosis})
FRAMEWORK_BUGS = {
    "planted_micrograd.py": ("planted-micrograd", ("micrograd-nn",), {
        "micrograd-nn-no-zero-grad": r"the gradients accumulate from step to step: \.grad is "
                                     r"never zeroed between steps: model\.zero_grad\(\) is "
                                     r"missing"}),
    # a float32 0.056 or 1/batch is seen by the float64 networks only, and named as a constant
    # held below the parameters' precision
    "planted_tinygrad.py": ("planted-tinygrad", ("tinygrad-nn",), {
        "tinygrad-nn-float32-lr": r"the learning rate is kept in float32 while the parameters "
                                  r"are float64.*\[3-4-4-3 tanh\+b f64 b5"}),
    "planted_paddle.py": ("planted-paddle", ("paddle-nn", "paddle-static"), {
        "paddle-nn-mse": r"0\.67× the reference.*the loss is averaged over the outputs as well "
                         r"as the batch",
        "paddle-static-scalar": r"the mean's 1/batch is kept in float32 while the parameters are "
                                r"float64.*\[3-4-4-3 tanh\+b f64 b5"}),
}


@pytest.mark.parametrize("plugin", sorted(FRAMEWORK_BUGS))
def test_the_default_check_catches_the_bugs_of_each_new_framework_and_blames_them_alone(
        monkeypatch, capsys, plugin):
    """The default networks, the planted variants beside the real ones they are written on
    (which must pass); skipped where the real framework cannot run here (no C compiler)."""
    planted, real, bugs = FRAMEWORK_BUGS[plugin]
    framework = registry.VARIANTS[real[0]].framework
    if not all(map(registry.package_exists, registry.FRAMEWORKS[framework].packages)):
        pytest.skip(f"{framework}: {registry.FRAMEWORKS[framework].packages[0]} is not "
                    f"installed")
    monkeypatch.setenv(registry.ENV, str(Path(__file__).with_name(plugin)))
    registry.discover()
    try:
        code = cli.main(["check", "--framework", "numpy", "--variants",
                         ",".join([*real, *bugs])])
    finally:
        monkeypatch.delenv(registry.ENV)
        registry.discover()
    out = capsys.readouterr().out
    got = results(out)
    if not any(name in got for name in real):  # its variants are unavailable here
        pytest.skip(next((line for line in out.splitlines() if f"{real[0]}:" in line),
                         f"{real[0]} did not run here"))
    assert code == 1, out
    assert {name for name, r in got.items() if "FAIL" in r} == set(bugs), got
    assert set(out.split("\nFAILED: ", 1)[1].splitlines()[0].split(", ")) == set(bugs)
    assert all(got[name] == {"ok"} for name in (*real, "numpy")), got
    for variant, diagnosis in bugs.items():
        assert any(re.search(diagnosis, line) for line in diagnoses(out, variant)), (variant,
                                                                                    out)
