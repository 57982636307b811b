"""check catches the bugs users write in MLX, Equinox and autograd steps (the planted bugs of
tests/fake_buggy_more.py): each makes check exit 1 and is named among the failures.

The networks are named explicitly (batch 5, three outputs, non-square layers), on which each
bug changes what is computed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import import_or_skip

from harness import cli
from implementations import registry

NET = ["--widths", "3,4,4,3", "--activation", "tanh", "--bias", "--batch", "5"]


@pytest.fixture
def with_bugs(monkeypatch):
    monkeypatch.setenv(registry.ENV, str(Path(__file__).with_name("fake_buggy_more.py")))
    registry.discover()
    yield
    monkeypatch.delenv(registry.ENV)
    registry.discover()


@pytest.mark.parametrize("variant, dtypes", [
    ("mlx-nn-element-mean", "float32,float64"),
    ("mlx-nn-float32-lr", "float64"),  # right in float32: only float64 can see it
    ("jax-equinox-batch-sum", "float64"),
    ("autograd-no-half", "float64"),
])
def test_a_bug_users_write_fails_check(with_bugs, variant, dtypes, capsys):
    import_or_skip("buggy-more")
    assert cli.main(["check", "--framework", "numpy", "--variants", variant, *NET,
                     "--dtype", dtypes, "--steps", "5"]) == 1
    verdict = capsys.readouterr().out.split("\nFAILED: ")[1]
    assert verdict.splitlines()[0] == variant
    assert "3-4-4-3 tanh+b f64 b5" in verdict
