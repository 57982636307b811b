"""torch-loop: the whole SGD loop in generated C++ (AOTInductor of a torch.while_loop).

Its first build compiles for a minute or more (then the package is reloaded from the
Inductor cache), so these tests are marked slow: ``pytest --slow``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import check, cli
from implementations import registry, torch_compiled
from implementations.problem import NetworkSpec, make_problem

pytestmark = pytest.mark.slow


def test_torch_loop_runs_any_number_of_steps_in_one_call():
    trainer = registry.get("torch-loop").make(make_problem())
    trainer.run(1)
    assert [W.item() for W, _ in trainer.params()] == pytest.approx([0.11865, 0.284325],
                                                                    rel=1e-15)
    trainer.run(99 + 3 * torch_compiled.FusedLoop.unroll)  # blocks of 256 and a remainder
    report = check.check_trajectory(make_problem(), registry.get("torch-loop"), 1000)
    assert report.passed, report.failures()


def test_torch_loop_follows_the_reference_on_a_wider_network():
    problem = make_problem(NetworkSpec((3, 5, 3), "tanh", bias=True), batch=4, lr=0.3, seed=1)
    report = check.check_trajectory(problem, registry.get("torch-loop"), 300)
    assert report.passed, report.failures()


def test_the_built_package_is_reloaded_by_the_next_trainer():
    registry.get("torch-loop").make(make_problem())
    path = next(Path(p).parent for p in [torch_compiled.package_path(("probe",))])
    assert any(path.glob("torch-loop-*.pt2"))


@pytest.fixture
def with_bug(monkeypatch):
    monkeypatch.setenv(registry.ENV, str(Path(__file__).with_name("fake_buggy_loop.py")))
    registry.discover()
    yield
    monkeypatch.delenv(registry.ENV)
    registry.discover()


def test_a_planted_bug_in_the_fused_loop_fails_check(with_bug, capsys):
    assert cli.main(["check", "--framework", "numpy", "--variants", "torch-loop-double-lr",
                     "--dtype", "float64", "--steps", "300"]) == 1
    assert "torch-loop-double-lr float64" in capsys.readouterr().out.split("FAILED")[1]
