"""tinygrad (implementations/tinygrad_backprop.py) where it differs from the others: its CPU
device needs a C compiler at run time. (Its functions and Trainers are tested as every
isolated framework's are: tests/test_implementations.py, tests/helpers_isolated.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from implementations import registry

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not registry.package_exists("tinygrad"),
                                reason="tinygrad: tinygrad is not installed")
NO_COMPILER = {**os.environ, "CC": "backprop-bench-no-such-compiler",
               "PYTHONPATH": str(ROOT)}
REASON = ("tinygrad: its CPU device compiles every kernel with backprop-bench-no-such-compiler,"
          " which is not installed here (apt-get install clang, or set CC to a clang)")


def bench(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *argv], cwd=ROOT,
                          env=NO_COMPILER, capture_output=True, text=True, timeout=300)


def test_without_a_c_compiler_every_variant_is_unavailable_with_the_install_command():
    code = ("from implementations import registry\n"
            "from implementations.problem import make_problem\n"
            "for v in registry.variants_of('tinygrad'):\n"
            "    try:\n"
            "        v.make(make_problem())\n"
            "    except registry.Unavailable as exc:\n"
            "        print(v.name, exc)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=NO_COMPILER,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [v.name for v in
                                                    registry.variants_of("tinygrad")]
    assert all(REASON in line for line in lines), lines


def test_without_a_c_compiler_check_passes_the_others_and_says_why_not_tinygrad():
    done = bench("check", "--framework", "numpy,tinygrad")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "PASSED" in done.stdout and "Traceback" not in done.stderr
    assert f"note: tinygrad-nn: {REASON}" in done.stdout
