"""The framework modules and their Trainers: the worked example's numbers, gradients, contract.

The reference values are those of ANCHORS.md ("Reference values for the worked example").
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CONTRACT_FRAMEWORKS, available_modules, import_or_skip
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.check import check_gradients, check_trajectory
from implementations import registry
from implementations.problem import (
    ACTIVATIONS,
    NetworkSpec,
    cast_problem,
    flatten,
    make_problem,
    map_params,
    unflatten,
)

OUTPUT_0 = 0.045
LOSS_0 = 0.5460125
GRAD_W_IH, GRAD_W_HO = 0.3135, 0.15675
W_IH_1, W_HO_1 = 0.11865, 0.284325
W_IH_100, W_HO_100 = -0.98661309459782, 1.01356846211392
LOSS_100 = 3.4e-15

REL = {"float64": 1e-12, "float32": 1e-5}
HERE = Path(__file__).resolve().parent

# torch.compile costs seconds per variant (the torch variants measured against a baseline):
# these run in one float64 test only; the whole-loop compiles (AOTInductor, unrolled blocks of
# 64 and 256 steps) cost a minute or more cold, and run only with --slow.
COMPILED = tuple(n for n, v in registry.VARIANTS.items()
                 if v.framework.startswith("torch") and v.baseline and "cpu" in v.devices)
SLOW = ("torch-loop", "torch-block-64", "torch-block-256")
CPU_VARIANTS = [n for n, v in registry.VARIANTS.items() if "cpu" in v.devices]
# Keras picks its backend per process: its variants are checked in processes of their own
# (test_check's idiomatic test, test_cli's demo tests)
ISOLATED = tuple(n for n in CPU_VARIANTS
                 if registry.FRAMEWORKS[registry.VARIANTS[n].framework].isolated)
FAST_VARIANTS = [n for n in CPU_VARIANTS if n not in COMPILED + ISOLATED]
# the variants declared float64 only: the loops over Python floats (the worked example's,
# micrograd's) and numba's
SCALAR_VARIANTS = [n for n in FAST_VARIANTS if registry.VARIANTS[n].dtypes == ("float64",)]


def scalar(module, value) -> float:
    return float(np.asarray(module.to_numpy(value)).reshape(-1)[0])


def framework_problem(module, problem, trainable=True):
    """x, y and params of the problem, rounded to its dtype, as the module's arrays."""
    x, y, params = cast_problem(problem)
    fparams = map_params(lambda a: module.to_framework(a, "cpu", trainable=trainable), params)
    return module.to_framework(x, "cpu"), module.to_framework(y, "cpu"), fparams


@pytest.fixture
def example(framework, dtype):
    """(module, net, x, y, params) of the worked example in one framework and dtype; skipped
    with its reason where the framework declares it cannot run it (a float64-only one)."""
    name, module = framework
    problem = make_problem(NetworkSpec(dtype=dtype))
    skip_unless_declared(name, problem)
    x, y, params = framework_problem(module, problem)
    return module, problem.spec, x, y, params


def skip_unless_declared(framework: str, problem) -> None:
    """Skip, with the reason, where the framework's functions (its main variant's
    declarations) cannot run this problem."""
    reason = registry.main_variant(framework).why_not(problem, "cpu")
    if reason:
        pytest.skip(reason)


def weights(module, params) -> tuple[float, float]:
    (w_ih, _), (w_ho, _) = params
    return scalar(module, w_ih), scalar(module, w_ho)


# ---- the worked example through each module's functions ---------------------------------------


def test_forward_gives_0_045(example, dtype):
    module, net, x, _, params = example
    assert scalar(module, module.forward(net, params, x)) == pytest.approx(OUTPUT_0, rel=REL[dtype])


def test_loss_is_0_5460125(example, dtype):
    module, net, x, y, params = example
    assert scalar(module, module.loss(net, params, x, y)) == pytest.approx(LOSS_0, rel=REL[dtype])


def test_gradients_are_0_3135_and_0_15675(example, dtype):
    module, net, x, y, params = example
    E, g = module.grads(net, params, x, y)
    assert scalar(module, E) == pytest.approx(LOSS_0, rel=REL[dtype])
    assert weights(module, g) == pytest.approx((GRAD_W_IH, GRAD_W_HO), rel=REL[dtype])
    assert g[0][1] is None and g[1][1] is None  # no bias, no bias gradient


def test_one_sgd_step_at_lr_0_1_gives_0_11865_and_0_284325(example, dtype):
    module, net, x, y, params = example
    params = module.sgd_step(net, params, x, y, 0.1)
    assert weights(module, params) == pytest.approx((W_IH_1, W_HO_1), rel=REL[dtype])


def test_hundred_sgd_steps_learn_to_invert_the_input(example, dtype):
    module, net, x, y, params = example
    for _ in range(100):
        params = module.sgd_step(net, params, x, y, 0.1)
    assert weights(module, params) == pytest.approx((W_IH_100, W_HO_100), rel=REL[dtype])
    assert_trained_loss(scalar(module, module.loss(net, params, x, y)), dtype)


def assert_trained_loss(E: float, dtype: str) -> None:
    if dtype == "float64":
        assert E == pytest.approx(LOSS_100, rel=0.02)
    else:  # float32 rounding of y_hat ~ -1 leaves E at the level of eps^2
        assert 0.0 <= E < 1e-12


def test_module_arrays_keep_the_dtype(example, dtype):
    module, net, x, y, params = example
    if not module.FRAMEWORK.arrays:
        pytest.skip(f"{module.FRAMEWORK.name} computes with Python floats, which have no dtype")
    out = np.asarray(module.to_numpy(module.forward(net, params, x)))
    _, g = module.grads(net, params, x, y)
    assert out.dtype == np.dtype(dtype)
    assert all(np.asarray(module.to_numpy(t)).dtype == np.dtype(dtype) for t in flatten(g))


# ---- the worked example through every Trainer --------------------------------------------------


def make_trainer(variant_name: str, problem):
    """The variant's Trainer on the CPU, or skip with the reason it cannot run here."""
    variant = registry.VARIANTS[variant_name]
    reason = variant.why_not(problem, "cpu")
    if reason:
        pytest.skip(reason)
    try:
        return variant.make(problem, "cpu")
    except registry.Unavailable as exc:
        pytest.skip(str(exc))


def trainer_weights(trainer) -> tuple[float, float]:
    (w_ih, _), (w_ho, _) = trainer.params()
    return float(w_ih.reshape(-1)[0]), float(w_ho.reshape(-1)[0])


def assert_trainer_follows_the_worked_example(trainer, dtype: str) -> None:
    rel = REL[dtype]
    assert trainer.loss() == pytest.approx(LOSS_0, rel=rel)
    trainer.run(0)
    assert trainer_weights(trainer) == pytest.approx((0.15, 0.3), rel=rel)
    trainer.run(1)
    assert trainer_weights(trainer) == pytest.approx((W_IH_1, W_HO_1), rel=rel)
    trainer.run(99)
    assert trainer_weights(trainer) == pytest.approx((W_IH_100, W_HO_100), rel=rel)
    assert_trained_loss(trainer.loss(), dtype)
    assert all(t.dtype == np.dtype(dtype) for t in flatten(trainer.params()))


@pytest.mark.parametrize("variant_name", FAST_VARIANTS)
def test_trainer_reproduces_the_worked_example(variant_name, worked_example, dtype):
    trainer = make_trainer(variant_name, worked_example)
    assert_trainer_follows_the_worked_example(trainer, dtype)


@pytest.mark.parametrize("variant_name", [
    pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in COMPILED])
def test_compiled_torch_trainer_reproduces_the_worked_example_in_float64(variant_name):
    trainer = make_trainer(variant_name, make_problem(NetworkSpec(dtype="float64")))
    assert_trainer_follows_the_worked_example(trainer, "float64")


ISOLATED_FRAMEWORKS = list(dict.fromkeys(registry.VARIANTS[n].framework for n in ISOLATED))


@pytest.mark.parametrize("name", ISOLATED_FRAMEWORKS)
def test_a_framework_of_its_own_process_passes_the_same_tests_there(name):
    """The tests above (functional core, every Trainer on the worked example, copies,
    snapshots, a wider network), made of a framework that needs a process of its own in one
    (tests/helpers_isolated.py); skipped, with the reason, where it cannot run here."""
    fw = registry.FRAMEWORKS[name]
    missing = [p for p in fw.packages if not registry.package_exists(p)]
    if missing:
        pytest.skip(f"{name}: {missing[0]} is not installed")
    done = subprocess.run([sys.executable, str(HERE / "helpers_isolated.py"), name],
                          cwd=HERE.parent, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    if done.stdout.startswith("skip: "):
        pytest.skip(done.stdout.strip()[6:])
    assert done.stdout.startswith("ok: "), done.stdout


def test_every_cpu_variant_is_tested_on_the_worked_example():
    assert set(FAST_VARIANTS) | set(COMPILED) | set(ISOLATED) == set(CPU_VARIANTS)
    assert {"python", "numpy", "limit", "torch", "jax", "jax-eager", "jax-fori"} <= set(
        FAST_VARIANTS)


def curved(variant_name: str) -> str:
    """The first of tanh, relu and sigmoid that the variant declares (linear if none)."""
    declared = registry.VARIANTS[variant_name].activations
    return next((a for a in ("tanh", "relu", "sigmoid") if a in declared), "linear")


@pytest.mark.parametrize("variant_name", FAST_VARIANTS)
def test_trainer_follows_the_reference_trajectory_on_a_wider_curved_network(variant_name,
                                                                             dtype):
    problem = make_problem(NetworkSpec((3, 5, 3), curved(variant_name), bias=True,
                                       dtype=dtype), batch=4, lr=0.3, seed=1)
    make_trainer(variant_name, problem)  # skips what cannot run this network
    report = check_trajectory(problem, registry.VARIANTS[variant_name], 20)
    assert len(report.rows) == 4
    assert report.passed, report.failures()


@pytest.mark.parametrize("variant_name", FAST_VARIANTS)
def test_worked_example_variants_follow_the_reference_with_sigmoid_relu_and_bias(variant_name):
    problem = make_problem(NetworkSpec(activation="sigmoid", output_activation="relu", bias=True))
    make_trainer(variant_name, problem)
    report = check_trajectory(problem, registry.VARIANTS[variant_name], 30)
    assert len(report.rows) == 4
    assert report.passed, report.failures()


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("variant_name", SCALAR_VARIANTS)
def test_scalar_loops_follow_the_reference_for_every_activation(variant_name, activation):
    """Each activation a scalar loop declares, on the worked example with a bias (one it
    does not declare is skipped with its reason)."""
    problem = make_problem(NetworkSpec(activation=activation, output_activation=activation,
                                       bias=True))
    make_trainer(variant_name, problem)
    report = check_trajectory(problem, registry.VARIANTS[variant_name], 30)
    assert report.passed, report.failures()


# ---- gradients of random networks --------------------------------------------------------------


@st.composite
def networks(draw, dtype: str = "float64"):
    """A random (problem) on a network of 2-4 layers of 1-6 units, input width == output width."""
    n = draw(st.integers(2, 4))
    inner = draw(st.lists(st.integers(1, 6), min_size=n - 1, max_size=n - 1))
    widths = (*inner, inner[0]) if n > 1 else tuple(inner)
    spec = NetworkSpec(widths, draw(st.sampled_from(ACTIVATIONS)),
                       draw(st.sampled_from(ACTIVATIONS)), draw(st.booleans()), dtype)
    return make_problem(spec, batch=draw(st.integers(1, 5)), seed=draw(st.integers(0, 2**16)))


def modules_for(problem) -> dict:
    """Every importable contract module whose own limits allow this problem."""
    return {name: m for name, m in available_modules().items()
            if registry.main_variant(name).why_not(problem, "cpu") is None}


def assert_gradients_agree(problem) -> None:
    modules = modules_for(problem)
    report = check_gradients(problem, modules)
    assert {r.subject for r in report.rows} == set(modules)
    assert report.passed, f"{problem.spec.label()} batch {problem.batch}: {report.failures()}"


@settings(max_examples=15, deadline=None, derandomize=True, database=None)
@given(networks("float64"))
def test_random_float64_networks_agree_with_finite_differences_in_every_framework(problem):
    assert_gradients_agree(problem)


@settings(max_examples=5, deadline=None, derandomize=True, database=None)
@given(networks("float32"))
def test_random_float32_networks_agree_with_finite_differences_in_every_framework(problem):
    assert_gradients_agree(problem)


def test_python_joins_the_gradient_check_on_the_worked_example():
    problem = make_problem(NetworkSpec(activation="sigmoid", bias=True))
    assert "python" in modules_for(problem)
    assert_gradients_agree(problem)


def small_tanh_problem():
    return make_problem(NetworkSpec((2, 3, 2), "tanh", "sigmoid", bias=True), batch=3, seed=5)


def test_torch_loss_passes_autograd_gradcheck_in_float64():
    torch_backprop = import_or_skip("torch")
    import torch

    problem = small_tanh_problem()
    x, y, params = framework_problem(torch_backprop, problem)
    flat = tuple(flatten(params))
    assert all(t.dtype == torch.float64 and t.requires_grad for t in flat)

    def loss_of(*tensors):
        return torch_backprop.loss(problem.spec, unflatten(problem.spec, tensors), x, y)

    assert torch.autograd.gradcheck(loss_of, flat, eps=1e-6, atol=1e-8, rtol=1e-6)


def test_jax_loss_passes_check_grads_in_float64():
    jax_backprop = import_or_skip("jax")
    from jax.test_util import check_grads

    problem = small_tanh_problem()
    x, y, params = framework_problem(jax_backprop, problem)
    assert all(t.dtype == np.float64 for t in flatten(params))  # x64 really is on

    def loss_of(p):
        return jax_backprop.loss(problem.spec, p, x, y)

    check_grads(loss_of, (params,), order=2, modes=["rev"])


# ---- the contract: no mutation, copies out ----------------------------------------------------


def snapshot(problem):
    return [problem.x.copy(), problem.y.copy()] + [t.copy() for t in flatten(problem.params0)]


def assert_unchanged(problem, before) -> None:
    for a, b in zip([problem.x, problem.y] + flatten(problem.params0), before):
        np.testing.assert_array_equal(a, b)


# the problems the contract tests ask for, the first one a variant declares it can run
CONTRACT_PROBLEMS = (dict(spec=NetworkSpec((2, 3, 2), "tanh", bias=True), batch=3),
                     dict(spec=NetworkSpec((2, 3, 2), "relu", bias=True), batch=3),
                     dict(spec=NetworkSpec(activation="sigmoid", bias=True)),
                     dict(spec=NetworkSpec()))


def problem_for(variant):
    """A problem with a bias and a hidden layer that the variant declares it runs: a 2-3-2
    tanh network if it can, else the nearest it can (the worked example with sigmoid, ...)."""
    for kwargs in CONTRACT_PROBLEMS:
        problem = make_problem(**kwargs)
        if variant.why_not(problem, "cpu") is None:
            return problem
    pytest.skip(f"{variant.name} declares none of the contract tests' problems")


@pytest.mark.parametrize("name", CONTRACT_FRAMEWORKS)
def test_module_functions_do_not_mutate_the_problem(name):
    module = import_or_skip(name)
    problem = problem_for(registry.main_variant(name))
    before = snapshot(problem)
    x, y, params = framework_problem(module, problem)
    module.grads(problem.spec, params, x, y)
    for _ in range(3):
        params = module.sgd_step(problem.spec, params, x, y, 0.5)
    assert_unchanged(problem, before)


@pytest.mark.parametrize("variant_name", FAST_VARIANTS)
def test_trainer_does_not_mutate_the_problem(variant_name):
    problem = problem_for(registry.VARIANTS[variant_name])
    before = snapshot(problem)
    make_trainer(variant_name, problem).run(3)
    assert_unchanged(problem, before)


@pytest.mark.parametrize("variant_name", FAST_VARIANTS)
def test_trainer_params_are_copies_that_writing_does_not_reach(variant_name):
    trainer = make_trainer(variant_name, make_problem())
    W = trainer.params()[0][0]
    if W.flags.writeable:
        W[...] = 42.0
    else:  # a read-only view (JAX) cannot be written at all
        with pytest.raises(ValueError):
            W[...] = 42.0
    assert trainer_weights(trainer) == (0.15, 0.3)
    assert trainer.loss() == pytest.approx(LOSS_0, rel=1e-12)


@pytest.mark.parametrize("variant_name", FAST_VARIANTS)
def test_trainer_params_are_a_snapshot_that_later_steps_do_not_change(variant_name):
    trainer = make_trainer(variant_name, make_problem())
    first = trainer.params()
    trainer.run(2)
    assert float(first[0][0].reshape(-1)[0]) == 0.15
    assert trainer_weights(trainer) != (0.15, 0.3)
