"""Equinox (equinox_mlp): the model holds the start point, and its own gradients pass check on
a wider network (a bug users write: tests/test_check_planted_more.py).

The worked example and the trajectories run in tests/test_implementations.py with every other
in-process variant.
"""

from __future__ import annotations

import re

import numpy as np
from conftest import import_or_skip

from harness import cli
from implementations import registry
from implementations.problem import NetworkSpec, make_problem

NET = ["--widths", "3,4,4,3", "--activation", "tanh", "--bias", "--batch", "5"]


def test_the_model_holds_the_problem_s_start_point_in_its_dtype(dtype):
    import_or_skip("equinox")
    problem = make_problem(NetworkSpec((3, 5, 2, 3), "tanh", bias=True, dtype=dtype), batch=4)
    trainer = registry.get("jax-equinox").make(problem)
    for (W, b), (W0, b0) in zip(trainer.params(), problem.params0):
        assert W.dtype == np.dtype(dtype) and W.shape == W0.shape
        np.testing.assert_allclose(W, W0, rtol=1e-6)
        np.testing.assert_allclose(b, b0, rtol=1e-6)


def test_jax_equinox_s_own_gradients_pass_check_on_a_wider_network(capsys):
    import_or_skip("equinox")
    code = cli.main(["check", "--framework", "numpy", "--variants", "jax-equinox", *NET,
                     "--dtype", "float32,float64", "--steps", "20"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert len(re.findall(r"^jax-equinox\s+\S+\s+\d\S*\s+\d\S*\s.*\sok$", out, re.M)) == 2
