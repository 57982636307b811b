"""MLX (mlx_backprop): its float64 is float64, and a wheel that cannot load makes it
unavailable with the reason (the bugs users write in mlx-nn: tests/test_check_planted_more.py).

The worked example, the trajectories and the gradients of random networks run in
tests/test_implementations.py with every other in-process framework.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import import_or_skip

from implementations import numpy_backprop, registry
from implementations.problem import NetworkSpec, make_problem

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_float64_activations_are_float64_accurate(activation):
    mlx_backprop = import_or_skip("mlx")
    a = np.random.default_rng(0).uniform(-4.0, 4.0, size=(64, 8))
    got = mlx_backprop.to_numpy(mlx_backprop.ACTIVATIONS[activation](
        mlx_backprop.to_framework(a)))
    want = numpy_backprop.ACTIVATIONS[activation](a)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)


def test_to_framework_keeps_float64_which_mx_array_alone_does_not():
    mlx_backprop = import_or_skip("mlx")
    import mlx.core as mx

    a = np.array([0.1, 1.0 / 3.0])
    assert mx.array(a).dtype == mx.float32  # MLX's default, and why the dtype is given
    assert mlx_backprop.to_numpy(mlx_backprop.to_framework(a)).tolist() == a.tolist()


def test_the_idiomatic_optimizer_steps_with_the_float64_learning_rate():
    import_or_skip("mlx")
    problem = make_problem(NetworkSpec(dtype="float64"), lr=0.1)
    trainer = registry.get("mlx-nn").make(problem)
    assert trainer.optimizer.learning_rate.item() == 0.1  # not 0.10000000149 (float32)


@pytest.fixture
def broken_mlx(tmp_path):
    """An environment where 'import mlx.core' fails as a wheel built for a newer glibc does."""
    core = tmp_path / "mlx" / "core"
    core.mkdir(parents=True)
    (core / "__init__.py").write_text(
        "raise ImportError(\"/lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.35' not found\")\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}


def bench(env, *argv):
    return subprocess.run([sys.executable, "-m", "harness.cli", *argv], env=env,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_an_mlx_wheel_that_cannot_load_is_unavailable_with_the_reason(broken_mlx):
    reason = "mlx_backprop.py is installed but fails to import (ImportError: "
    asked = bench(broken_mlx, "check", "--framework", "mlx")
    assert asked.returncode == 2 and len(asked.stderr.splitlines()) == 1, asked.stderr
    assert reason in asked.stderr and "GLIBC_2.35" in asked.stderr
    left_out = bench(broken_mlx, "check", "--framework", "numpy", "--variants", "numpy,mlx")
    assert left_out.returncode == 0 and "Traceback" not in left_out.stderr, left_out.stderr
    assert reason in left_out.stdout + left_out.stderr
