"""GPU checks: run on a machine with CUDA (scripts/gpu_check.sh), skipped elsewhere."""

from __future__ import annotations

import numpy as np
import pytest

from harness import check
from implementations import registry
from implementations.problem import NetworkSpec, make_problem


def cuda_frameworks() -> dict:
    found = {}
    for name in ("torch", "jax"):
        try:
            module = registry.import_module(name)
            module.check_device("cuda")
            found[name] = module
        except registry.Unavailable:
            pass
    return found


FRAMEWORKS = cuda_frameworks()
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not FRAMEWORKS, reason="needs a CUDA device for torch or jax")]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_worked_example_gradients_on_gpu(dtype):
    problem = make_problem(NetworkSpec(dtype=dtype))
    for name, module in FRAMEWORKS.items():
        _, g = check.framework_loss_and_gradients(module, problem, "cuda")
        np.testing.assert_allclose([g[0].item(), g[1].item()], [0.3135, 0.15675],
                                   rtol=1e-6 if dtype == "float32" else 1e-12, err_msg=name)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_wide_network_gradients_agree_on_gpu(dtype):
    spec = NetworkSpec((32, 64, 64, 32), "tanh", bias=True, dtype=dtype)
    report = check.check_gradients(make_problem(spec, batch=16), FRAMEWORKS, "cuda")
    assert report.passed, report.failures()


@pytest.mark.parametrize("variant", ["torch", "torch-cudagraph", "jax", "jax-fori"])
def test_gpu_trainers_follow_the_reference_trajectory(variant):
    v = registry.get(variant)
    if v.framework not in FRAMEWORKS:
        pytest.skip(f"{v.framework} has no CUDA device")
    for spec, batch in [(NetworkSpec(), 1), (NetworkSpec((64, 128, 64), "tanh",
                                                          dtype="float32"), 32)]:
        report = check.check_trajectory(make_problem(spec, batch=batch), v, 50, "cuda")
        assert report.passed, report.failures()


def test_tf32_is_off():
    if "torch" in FRAMEWORKS:
        import torch

        assert not torch.backends.cuda.matmul.allow_tf32
    if "jax" in FRAMEWORKS:
        from implementations.jax_backprop import config_flag

        assert str(config_flag("jax_default_matmul_precision")) == "highest"
