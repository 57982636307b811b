"""HIPS autograd (autograd_backprop): its gradients are the hand-written chain rule's (a bug
users write: tests/test_check_planted_more.py).

The worked example, the trajectories and the gradients of random networks run in
tests/test_implementations.py with every other in-process framework.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import import_or_skip
from test_implementations import framework_problem

from implementations import numpy_backprop
from implementations.problem import NetworkSpec, flatten, make_problem


@pytest.mark.parametrize("activation", ["linear", "sigmoid", "tanh", "relu"])
def test_the_tape_gives_the_hand_written_chain_rule(activation, dtype):
    autograd_backprop = import_or_skip("autograd")
    problem = make_problem(NetworkSpec((3, 5, 4, 3), activation, "sigmoid", bias=True,
                                       dtype=dtype), batch=4, seed=3)
    x, y, params = framework_problem(autograd_backprop, problem)
    E, g = autograd_backprop.grads(problem.spec, params, x, y)
    E_ref, g_ref = numpy_backprop.grads(problem.spec, params, x, y)
    rtol = {"float64": 1e-12, "float32": 1e-5}[dtype]
    assert np.asarray(E).dtype == np.dtype(dtype) and np.isclose(E, E_ref, rtol=rtol)
    for a, b in zip(flatten(g), flatten(g_ref)):
        assert a.dtype == np.dtype(dtype)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())
