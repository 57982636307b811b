"""harness.check: the checker must catch a wrong backward pass, and its references
must be right."""

from __future__ import annotations

import dataclasses
import math
import re
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from harness import check, cli
from implementations import numpy_backprop, registry
from implementations.problem import NetworkSpec, flatten, make_problem, map_params

# ---- a hand-written backward pass with one deliberate bug at a time ---------------------------

BUGS = ("no activation derivative", "no 1/batch", "W instead of W.T", "gradient times 2",
        "gradient transposed")


def manual_grads(net, params, x, y, bug=None):
    """numpy_backprop.grads written out again, with ``bug`` (one of BUGS) switched in."""
    acts = net.layer_activations()
    hs, as_ = [x], []
    for (W, b), act in zip(params, acts):
        a = hs[-1] @ W if b is None else hs[-1] @ W + b
        as_.append(a)
        hs.append(numpy_backprop.ACTIVATIONS[act](a))
    r = hs[-1] - y
    E = 0.5 * np.sum(r * r) / x.shape[0]
    dh = r if bug == "no 1/batch" else r / x.shape[0]
    g = [None] * len(params)
    for l in reversed(range(len(params))):
        W, b = params[l]
        derivative = numpy_backprop.DERIVATIVES[acts[l]]
        dphi = 1.0 if derivative is None else derivative(as_[l], hs[l + 1])
        da = dh if bug == "no activation derivative" else dh * dphi
        gW = hs[l].T @ da
        if bug == "gradient transposed":
            gW = gW.T
        g[l] = (gW, None if b is None else da.sum(axis=0))
        dh = da @ W if bug == "W instead of W.T" else da @ W.T
    if bug == "gradient times 2":
        g = map_params(lambda t: 2.0 * t, g)
    return E, g


def fake_framework(bug=None):
    """A contract module whose grads is manual_grads with ``bug``."""
    return SimpleNamespace(to_framework=numpy_backprop.to_framework,
                           to_numpy=numpy_backprop.to_numpy,
                           grads=partial(manual_grads, bug=bug))


def problem_for(bug):
    """A network on which ``bug`` changes the gradients (square where W vs W.T must matter)."""
    widths = {"W instead of W.T": (4, 4, 4), "gradient transposed": (3, 5, 3)}.get(bug, (3, 5, 3))
    return make_problem(NetworkSpec(widths, "tanh", bias=True), batch=4, seed=2)


def failing_tensors(report, subject, reference="finite differences"):
    return {r.tensor for r in report.rows
            if r.subject == subject and r.reference == reference and not r.passed}


def test_the_fake_framework_without_a_bug_passes():
    report = check.check_gradients(problem_for(None), {"manual": fake_framework()})
    assert report.rows and report.passed, report.failures()


@pytest.mark.parametrize("bug", BUGS)
def test_a_wrong_backward_pass_fails_the_check(bug):
    report = check.check_gradients(problem_for(bug), {"manual": fake_framework(bug)})
    assert report.passed is False
    assert failing_tensors(report, "manual")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bug", BUGS)
def test_the_failure_names_framework_dtype_tensor_error_and_tolerance(bug, dtype):
    problem = make_problem(NetworkSpec(problem_for(bug).spec.widths, "tanh", bias=True,
                                       dtype=dtype), batch=4, seed=2)
    report = check.check_gradients(problem, {"manual": fake_framework(bug)})
    tol = check.TOLERANCES[dtype].finite_differences
    pattern = re.compile(rf"manual {dtype} ([Wb]\d) vs finite differences: "
                         rf"error (\S+) > tolerance {tol:.0e}( \(shape .*\))?$")
    matches = [pattern.match(f) for f in report.failures()]
    named = {m.group(1) for m in matches if m}
    assert named == failing_tensors(report, "manual") != set()
    for m in filter(None, matches):
        assert float(m.group(2)) > tol


def test_missing_activation_derivative_is_localised_to_the_layers_before_the_output():
    # The output layer is linear, so only W1 and b1 see the missing tanh'(a_1).
    report = check.check_gradients(problem_for(None),
                                   {"manual": fake_framework("no activation derivative")})
    assert failing_tensors(report, "manual") == {"W1", "b1"}


def test_untransposed_weight_in_the_backward_pass_is_localised_to_earlier_layers():
    report = check.check_gradients(problem_for("W instead of W.T"),
                                   {"manual": fake_framework("W instead of W.T")})
    assert failing_tensors(report, "manual") == {"W1", "b1"}


def test_a_doubled_gradient_fails_every_tensor_with_error_one():
    problem = problem_for("gradient times 2")
    report = check.check_gradients(problem, {"manual": fake_framework("gradient times 2")})
    rows = [r for r in report.rows if r.reference == "finite differences"]
    assert {r.tensor for r in rows if not r.passed} == set(problem.spec.param_names())
    # |2g - g| / |g| = 1, up to the finite-difference error
    assert all(r.error == pytest.approx(1.0, rel=1e-5) for r in rows)


def test_a_wrong_framework_fails_alone_and_is_the_odd_one_out_of_the_others():
    problem = problem_for(None)
    report = check.check_gradients(problem, {"numpy": numpy_backprop,
                                             "manual": fake_framework("gradient times 2")})
    assert failing_tensors(report, "numpy") == set()  # numpy itself agrees with FD
    assert failing_tensors(report, "numpy", "frameworks") == set()  # not blamed for manual
    assert failing_tensors(report, "manual", "frameworks") == set(problem.spec.param_names())
    assert report.failed() == ["manual"]


def test_a_wrong_gradient_on_the_worked_example_fails_the_closed_form():
    report = check.check_gradients(make_problem(),
                                   {"manual": fake_framework("gradient times 2")})
    assert failing_tensors(report, "manual", "closed form") == {"W1", "W2"}


# ---- wrong Trainers ---------------------------------------------------------------------------


class OffByOneTrainer(numpy_backprop.Trainer):
    """Runs one step fewer than asked."""

    def run(self, steps: int) -> None:
        super().run(max(steps - 1, 0))


def DoubleLearningRateTrainer(problem, device="cpu"):
    """Trains with twice the problem's learning rate."""
    return numpy_backprop.Trainer(dataclasses.replace(problem, lr=2 * problem.lr), device)


class NanTrainer(numpy_backprop.Trainer):
    def params(self):
        return map_params(lambda a: np.full_like(a, np.nan), super().params())


def fake_variant(name, trainer_class):
    return SimpleNamespace(name=name, make=lambda problem, device="cpu": trainer_class(problem))


def trajectory_problem(dtype="float64"):
    return make_problem(NetworkSpec((3, 5, 3), "tanh", bias=True, dtype=dtype), batch=4, lr=0.3)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_numpy_trainer_follows_the_reference_trajectory(dtype):
    report = check.check_trajectory(trajectory_problem(dtype), registry.VARIANTS["numpy"], 10)
    assert len(report.rows) == 4 and report.passed, report.failures()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("trainer_class", [OffByOneTrainer, DoubleLearningRateTrainer,
                                           NanTrainer])
def test_a_wrong_trainer_fails_the_trajectory_check(trainer_class, dtype):
    variant = fake_variant("wrong", trainer_class)
    report = check.check_trajectory(trajectory_problem(dtype), variant, 10)
    assert report.passed is False
    failures = report.failures()
    assert failures and all(f.startswith(f"wrong {dtype} ") for f in failures)
    assert all(f.endswith("after 10 steps") and "vs trajectory" in f for f in failures)


def test_compare_to_reference_fails_one_step_short_and_passes_on_the_step():
    problem = trajectory_problem()
    start = check.rounded_start(problem)
    nine = check.reference_trajectory(problem, start, 9)
    ten = check.reference_trajectory(problem, start, 10)
    assert not check.compare_to_reference(problem, "short", nine, start, 10).passed
    report = check.compare_to_reference(problem, "exact", ten, start, 10)
    assert report.passed and all(r.error == 0.0 for r in report.rows)


# ---- the CLI exits 1 when a framework is wrong ----------------------------------------------


CHECK_ARGS = ["check", "--framework", "numpy", "--widths", "2,3,2", "--activation", "tanh",
              "--batch", "3", "--dtype", "float64", "--steps", "5"]


def test_cli_check_passes_with_the_real_backward_pass(capsys):
    assert cli.main(CHECK_ARGS) == 0
    assert "PASSED" in capsys.readouterr().out


def test_cli_check_exits_1_with_a_broken_backward_pass(monkeypatch, capsys):
    monkeypatch.setitem(numpy_backprop.DERIVATIVES, "tanh", lambda a, h: 1.0)
    assert cli.main(CHECK_ARGS) == 1
    out = capsys.readouterr().out
    assert "FAILED: numpy\n" in out and "PASSED" not in out
    assert "numpy: the derivative of tanh is missing from the backward pass" in out


def test_cli_check_exits_1_when_grads_is_scaled(monkeypatch, capsys):
    real = numpy_backprop.grads

    def doubled(net, params, x, y):
        E, g = real(net, params, x, y)
        return E, map_params(lambda t: 2 * t, g)

    monkeypatch.setattr(numpy_backprop, "grads", doubled)
    assert cli.main(["check", "--framework", "numpy", "--steps", "3"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "closed form" in out


# ---- normalised_errors -------------------------------------------------------------------------


def test_normalised_error_is_relative_to_the_reference():
    errs = check.normalised_errors([np.array([1.1, -2.0])], [np.array([1.0, -2.0])])
    assert errs == [pytest.approx(0.1 / 2.0)]


def test_identical_values_have_zero_error():
    ref = [np.array([[0.3, -1e-4]]), np.array([5.0])]
    assert check.normalised_errors([r.copy() for r in ref], ref) == [0.0, 0.0]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_have_infinite_error(bad):
    errs = check.normalised_errors([np.array([1.0, bad]), np.array([2.0])],
                                   [np.array([1.0, 1.0]), np.array([2.0])])
    assert errs[0] == math.inf and errs[1] == 0.0
    row = check.Row("f", "float64", "W1", "finite differences", errs[0], 1e-6)
    assert not row.passed


def test_tiny_reference_tensor_is_judged_against_the_floor_not_its_own_size():
    # 1e-6 off a 1e-9 gradient, next to a gradient of 1: error 1e-6 / (1e-3 * 1), not 1e3.
    errs = check.normalised_errors([np.array([1.0]), np.array([1e-9 + 1e-6])],
                                   [np.array([1.0]), np.array([1e-9])])
    assert errs == [0.0, pytest.approx(1e-3)]


def test_the_floor_does_not_loosen_a_tensor_above_it():
    errs = check.normalised_errors([np.array([1.0]), np.array([0.011])],
                                   [np.array([1.0]), np.array([0.01])])
    assert errs[1] == pytest.approx(0.1)


def test_all_zero_gradients_compare_without_dividing_by_zero():
    assert check.normalised_errors([np.zeros(3)], [np.zeros(3)]) == [0.0]
    assert check.normalised_errors([np.full(3, 1e-6)], [np.zeros(3)])[0] > 1.0


def test_a_nan_error_never_passes():
    assert not check.Row("f", "float64", "W1", "trajectory", math.nan, 1.0).passed
    assert check.Row("f", "float64", "W1", "trajectory", 1.0, 1.0).passed


# ---- closed form -------------------------------------------------------------------------------


def test_closed_form_matches_the_worked_example():
    problem = make_problem()
    g = check.closed_form(problem, problem.params0)
    assert [float(t.item()) for t in g] == pytest.approx([0.3135, 0.15675], rel=1e-15)


@pytest.mark.parametrize("spec, batch", [
    (NetworkSpec(bias=True), 1),
    (NetworkSpec(), 4),
    (NetworkSpec(bias=True, dtype="float32"), 3),
])
def test_closed_form_matches_numpy_on_linear_one_one_one_networks(spec, batch):
    problem = make_problem(spec, batch=batch, seed=1)
    start = check.rounded_start(problem)
    want = flatten(numpy_backprop.grads(spec, start, problem.x, problem.y)[1])
    got = check.closed_form(problem, start)
    assert len(got) == len(want) == len(spec.param_names())
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("spec", [
    NetworkSpec(activation="sigmoid"),
    NetworkSpec(output_activation="tanh"),
    NetworkSpec((2, 2, 2)),
    NetworkSpec((1, 1)),
])
def test_closed_form_is_none_except_for_the_linear_one_one_one_network(spec):
    problem = make_problem(spec, batch=2)
    assert check.closed_form(problem, problem.params0) is None


# ---- finite differences and the reference loss ---------------------------------------------


def test_finite_differences_are_exact_on_a_known_quadratic(monkeypatch):
    weights = [np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([0.5, -7.0])]

    def quadratic(spec, flat, x, y):  # E = sum_i c_i p_i^2, so dE/dp = 2 c p
        return float(sum(np.sum(c * p * p) for c, p in zip(weights, flat)))

    monkeypatch.setattr(check.reference, "reference_loss", quadratic)
    flat = [np.array([[0.3, -1.2], [2.5, 0.0]]), np.array([-0.8, 10.0])]
    out = check.finite_differences(make_problem(NetworkSpec((2, 2), bias=True), batch=1), flat)
    for (idx, vals), c, p in zip(out, weights, flat):
        np.testing.assert_array_equal(idx, np.arange(p.size))
        np.testing.assert_allclose(vals, (2 * c * p).reshape(-1), rtol=1e-7, atol=1e-9)


def test_finite_differences_match_numpy_on_a_linear_network():
    # A linear network's loss is quadratic in each single weight: central differences are exact.
    problem = make_problem(NetworkSpec((3, 4, 3), bias=True), batch=5, seed=4)
    flat = flatten(problem.params0)
    fd = check.finite_differences(problem, flat)
    _, g = numpy_backprop.grads(problem.spec, problem.params0, problem.x, problem.y)
    for (idx, vals), gt in zip(fd, flatten(g)):
        np.testing.assert_allclose(vals, gt.reshape(-1)[idx], rtol=1e-8, atol=1e-11)


def test_finite_differences_sample_at_most_max_entries_seeded_and_sorted():
    problem = make_problem(NetworkSpec((10, 10)), batch=2)
    flat = flatten(problem.params0)
    (idx, vals), = check.finite_differences(problem, flat, max_entries=7, seed=3)
    (again, _), = check.finite_differences(problem, flat, max_entries=7, seed=3)
    assert len(idx) == len(vals) == 7
    assert len(set(idx)) == 7 and np.all(np.diff(idx) > 0) and idx.max() < 100
    np.testing.assert_array_equal(idx, again)


def test_finite_differences_leave_the_parameters_unchanged():
    problem = make_problem(NetworkSpec((2, 3, 2), "tanh", bias=True), batch=3)
    flat = flatten(problem.params0)
    before = [t.copy() for t in flat]
    check.finite_differences(problem, flat)
    for a, b in zip(flat, before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("activation", ["linear", "sigmoid", "tanh", "relu"])
def test_reference_loss_agrees_with_numpy_loss(activation):
    spec = NetworkSpec((3, 4, 3), activation, activation, bias=True)
    problem = make_problem(spec, batch=6, seed=8)
    want = numpy_backprop.loss(spec, problem.params0, problem.x, problem.y)
    got = check.reference_loss(spec, flatten(problem.params0), problem.x, problem.y)
    assert got == pytest.approx(float(want), rel=1e-13)


def test_rounded_start_is_the_float32_start_in_float64():
    problem = make_problem(NetworkSpec((2, 3, 2), dtype="float32"), batch=2)
    start = check.rounded_start(problem)
    W = start[0][0]
    assert W.dtype == np.float64
    np.testing.assert_array_equal(W, problem.params0[0][0].astype(np.float32))
    assert not np.array_equal(W, problem.params0[0][0])


def test_check_gradients_notes_when_finite_differences_are_sampled():
    problem = make_problem(NetworkSpec((8, 8)), batch=2)  # 64 entries > FD_MAX_ENTRIES
    report = check.check_gradients(problem, {"numpy": numpy_backprop})
    assert report.passed
    assert any("finite differences on" in n for n in report.notes)


def test_a_trainer_that_moves_too_little_fails_on_a_wide_float32_network():
    from harness.check import (
        TOLERANCES,
        reference_trajectory,
        rounded_start,
        trajectory_errors,
    )
    from implementations.problem import NetworkSpec, make_problem

    problem = make_problem(NetworkSpec((512, 512, 512), "tanh", dtype="float32"), batch=64)
    start = rounded_start(problem)
    ref = reference_trajectory(problem, start, 1)
    short = [(s + 0.75 * (r - s), None) for (s, _), (r, _) in zip(start, ref)]
    tol = TOLERANCES["float32"].trajectory
    assert min(trajectory_errors(start, ref, start, "float32")) > 100 * tol  # did nothing
    assert min(trajectory_errors(short, ref, start, "float32")) > 10 * tol  # 3/4 of a step
    right = [(r.astype("float32"), None) for r, _ in ref]
    assert max(trajectory_errors(right, ref, start, "float32")) < tol


def test_the_loss_is_checked_against_the_reference_forward_pass():
    import types

    from harness.check import check_gradients
    from implementations import numpy_backprop
    from implementations.problem import NetworkSpec, make_problem

    def grads(net, params, x, y):
        E, g = numpy_backprop.grads(net, params, x, y)
        return 2 * E, g  # right gradients, wrong loss

    fake = types.SimpleNamespace(to_framework=numpy_backprop.to_framework,
                                 to_numpy=numpy_backprop.to_numpy, grads=grads)
    report = check_gradients(make_problem(NetworkSpec((3, 4, 3), "tanh"), batch=5),
                             {"twice": fake})
    assert not report.passed
    assert any("twice" in f and " E vs reference loss" in f for f in report.failures())


# ---- the idiomatic tier: the check, and the bugs users write -----------------------------

IDIOMATIC = "torch-nn,torch-nn-compile,torch-manual,jax-flax,keras-jax,keras-torch"
WIDE = ["--widths", "4,16,16,4", "--activation", "tanh", "--bias", "--batch", "8"]


def test_the_idiomatic_variants_pass_check_on_a_wider_network(capsys):
    code = cli.main(["check", "--variants", IDIOMATIC, *WIDE, "--dtype", "float32,float64",
                     "--steps", "20"])
    out = capsys.readouterr().out
    assert code == 0, out
    for name in ("torch-nn", "jax-flax", "keras-jax", "keras-torch"):  # their own gradients
        assert re.search(rf"^{name}\s+\S+\s+\d\S*\s+\d\S*\s+—\s+\d", out, re.M), name
    assert "FAILED" not in out


@pytest.fixture
def with_bugs(monkeypatch):
    monkeypatch.setenv(registry.ENV, str(Path(__file__).with_name("fake_buggy_idiomatic.py")))
    registry.discover()
    yield
    monkeypatch.delenv(registry.ENV)
    registry.discover()


@pytest.mark.parametrize("variant", ["torch-nn-no-zero-grad", "torch-nn-element-mean",
                                     "jax-flax-element-mean"])
def test_a_bug_users_write_in_an_idiomatic_step_fails_check(with_bugs, variant, capsys):
    assert cli.main(["check", "--framework", "numpy", "--variants", variant, *WIDE,
                     "--steps", "5"]) == 1
    out = capsys.readouterr().out
    verdict = out.split("\nFAILED: ")[1]
    assert verdict.splitlines()[0] == variant
    assert "4-16-16-4 tanh+b f64 b8" in verdict


# ---- the diagnosis names each bug class ---------------------------------------------------------

def diagnosis_of(report: check.Report, subject: str = "manual") -> str:
    return " | ".join(line for (s, _), lines in report.diagnoses.items() if s == subject
                      for line in lines)


def zero_b1(net, params, x, y):
    E, g = manual_grads(net, params, x, y)
    return E, [(g[0][0], 0 * g[0][1]), *g[1:]]


def wrong_input(net, params, x, y):
    """W3's gradient from h1 (the input of layer 2) instead of h2: same shape on 3-4-4-3."""
    from harness.check.reference import backward

    trace = backward(net, flatten(params), x, y)
    E, g = manual_grads(net, params, x, y)
    return E, [*g[:2], (trace.hs[1].T @ trace.da[2], g[2][1])]


def cosine_derivative(net, params, x, y):
    saved = numpy_backprop.DERIVATIVES["tanh"]
    numpy_backprop.DERIVATIVES["tanh"] = lambda a, h: np.cos(a)
    try:
        return manual_grads(net, params, x, y)
    finally:
        numpy_backprop.DERIVATIVES["tanh"] = saved


@pytest.mark.parametrize("grads, widths, expected", [
    (partial(manual_grads, bug="no activation derivative"), (3, 5, 3),
     "the derivative of tanh is missing from the backward pass"),
    (partial(manual_grads, bug="W instead of W.T"), (4, 4, 4),
     "dE/dh is carried down through W2 where W2ᵀ belongs"),
    (partial(manual_grads, bug="gradient times 2"), (3, 5, 3),
     "every gradient is 2.00× the reference (= 2)"),
    (partial(manual_grads, bug="gradient transposed"), (3, 5, 3),
     "W1's gradient is transposed: shape (5, 3), W1 is (3, 5)"),
    (partial(manual_grads, bug="gradient transposed"), (4, 4, 4), "W1's gradient is transposed"),
    (partial(manual_grads, bug="no 1/batch"), (3, 5, 3),
     "every gradient is 4.00× the reference (= batch 4)"),
    (zero_b1, (3, 5, 3), "b1's gradient is zero"),
    (wrong_input, (3, 4, 4, 3), "W3's gradient uses h1, the input of layer 2, where h2"),
    (cosine_derivative, (3, 5, 3), "the output layer's gradients are right and the hidden "
                                   "layers' (W1, b1) are off by a ratio that varies"),
])
def test_each_gradient_bug_class_is_named_in_one_line(grads, widths, expected):
    fake = SimpleNamespace(to_framework=numpy_backprop.to_framework,
                           to_numpy=numpy_backprop.to_numpy, grads=grads)
    problem = make_problem(NetworkSpec(widths, "tanh", bias=True), batch=4, seed=2)
    report = check.check_gradients(problem, {"numpy": numpy_backprop, "manual": fake})
    assert report.failed() == ["manual"]
    assert expected in diagnosis_of(report), diagnosis_of(report)


def test_a_wrong_loss_beside_right_gradients_is_named():
    def grads(net, params, x, y):
        E, g = numpy_backprop.grads(net, params, x, y)
        return 2 * E, g

    fake = SimpleNamespace(to_framework=numpy_backprop.to_framework,
                           to_numpy=numpy_backprop.to_numpy, grads=grads)
    report = check.check_gradients(make_problem(NetworkSpec((3, 4, 3), "tanh"), batch=5),
                                   {"manual": fake})
    assert "the gradients are right but E is 2.00× the reference loss (= 2)" in (
        diagnosis_of(report))


@pytest.mark.parametrize("trainer_class, expected", [
    (DoubleLearningRateTrainer, "every step is 2.00× the reference step (= 2)"),
    (OffByOneTrainer, "each run(n) makes one step too few"),
])
def test_each_trajectory_bug_class_is_named(trainer_class, expected):
    report = check.check_trajectory(trajectory_problem(), fake_variant("wrong", trainer_class),
                                    10)
    assert expected in diagnosis_of(report, "wrong"), diagnosis_of(report, "wrong")


def test_a_block_variant_runs_its_block_twice_and_then_a_remainder():
    trainer = numpy_backprop.Trainer(trajectory_problem())
    trainer.block = 64
    n = check.steps_for(trainer, 100)
    assert n >= 2 * 64 + 1 and n % 64
    trainer.unroll, trainer.block = 256, 1
    n = check.steps_for(trainer, 100)
    assert n >= 2 * 256 + 1 and n % 256
    assert check.steps_for(numpy_backprop.Trainer(trajectory_problem()), 100) == 100


def test_the_exact_reference_gradient_agrees_with_finite_differences():
    for spec in (NetworkSpec((3, 4, 4, 3), "tanh", bias=True), NetworkSpec((2, 5, 2), "relu"),
                 NetworkSpec((2, 3, 2), "sigmoid", "sigmoid", bias=True)):
        problem = make_problem(spec, batch=5, seed=3)
        flat = flatten(problem.params0)
        exact = check.exact_gradient(problem, flat)
        for (idx, vals), g in zip(check.finite_differences(problem, flat), exact):
            np.testing.assert_allclose(g.reshape(-1)[idx], vals, rtol=1e-6, atol=1e-9)


def test_a_timeout_a_compiler_wraps_is_said_as_the_timeout_it_is():
    """torch.compile wraps what interrupts its build (InternalTorchDynamoError: CaseTimeout):
    the reason is 'timed out', from the cause inside, not 'crashed'."""
    from harness.check import deadline
    from harness.check.report import crash_reason

    class InternalTorchDynamoError(RuntimeError):
        pass

    try:
        try:
            raise deadline.CaseTimeout("did not finish within 5 s (--timeout); stopped there")
        except deadline.CaseTimeout as inner:
            raise InternalTorchDynamoError("CaseTimeout: did not finish ... from user code"
                                           ) from inner
    except InternalTorchDynamoError as exc:
        reason = crash_reason(exc)
    assert reason.startswith("timed out: did not finish within 5 s (--timeout)"), reason
    assert "InternalTorchDynamoError" not in reason
