"""micrograd (implementations/micrograd_scalar.py): what its declarations promise holds.

The generic tests (tests/test_implementations.py) run its functions and Trainers on every
network it declares; here, the two things those declarations rest on: the largest network
it declares trains under Python's default recursion limit, and a relu network with a bias,
the widest the default `check` asks for, passes `check`.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import cli
from implementations import registry

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not registry.package_exists("micrograd"),
                                reason="micrograd: micrograd is not installed")

LARGEST = """
import sys
from implementations import registry
from implementations.problem import NetworkSpec, make_problem

assert sys.getrecursionlimit() == 1000
v = registry.get("micrograd")
widths = (v.max_width,) * (v.max_layers + 1)
largest = make_problem(NetworkSpec(widths, "relu", bias=True), batch=v.max_batch)
for name in ("micrograd", "micrograd-nn"):
    registry.get(name).make(largest).run(1)
past = make_problem(NetworkSpec((16, 16, 16), "relu", bias=True), batch=64)
assert v.why_not(past, "cpu") == "micrograd runs batches up to 16 only, not 64"
try:
    v.load().Trainer(past).run(1)  # past the declaration, as a Trainer made by hand would be
except RecursionError:
    print("ok: the largest declared network trains; 16-16-16 at batch 64 recurses too deep")
"""


def test_the_largest_declared_network_trains_within_the_default_recursion_limit():
    done = subprocess.run([sys.executable, "-c", LARGEST], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok: "), done.stdout


def test_micrograd_passes_check_on_a_wider_relu_network_with_a_bias(capsys):
    code = cli.main(["check", "--framework", "numpy,micrograd", "--widths", "4,16,16,4",
                     "--activation", "relu", "--bias", "--batch", "3", "--dtype", "float64",
                     "--steps", "20"])
    out = capsys.readouterr().out
    assert code == 0, out
    for name in ("micrograd", "micrograd-nn"):
        assert re.search(rf"^{name}\s+\S+\s+\d\S*\s+\d\S*\s.*\sok$", out, re.M), name
