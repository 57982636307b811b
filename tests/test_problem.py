"""implementations.problem: the network spec, its validation, the seeded data and parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest

from implementations.problem import (
    NetworkSpec,
    SpecError,
    cast_problem,
    flatten,
    make_problem,
    parse_widths,
    unflatten,
    validate_lr,
)

# ---- NetworkSpec validation -------------------------------------------------------------------


@pytest.mark.parametrize("widths", [(1, 0, 1), (0, 3, 0), (2, -1, 2), (-4, 4, -4)])
def test_width_below_one_is_a_spec_error_naming_the_width(widths):
    bad = min(widths)
    with pytest.raises(SpecError, match=rf"every width must be 1 or more, got {bad}"):
        NetworkSpec(widths)


@pytest.mark.parametrize("widths", [(1, 2.5, 1), (1, 2.0, 1), (1, "2", 1), (1, True, 1)])
def test_non_integer_width_is_a_spec_error(widths):
    with pytest.raises(SpecError, match="every width must be an integer"):
        NetworkSpec(widths)


def test_numpy_integer_widths_are_accepted():
    assert NetworkSpec((np.int64(2), np.int32(3), np.int64(2))).depth == 2


def test_a_single_width_is_a_spec_error():
    with pytest.raises(SpecError, match="at least an input and an output width"):
        NetworkSpec((3,))


def test_width_over_the_limit_is_a_spec_error():
    with pytest.raises(SpecError, match="over the limit"):
        NetworkSpec((1, 1 << 17, 1))


@pytest.mark.parametrize("field", ["activation", "output_activation"])
def test_unknown_activation_is_a_spec_error_listing_the_choices(field):
    with pytest.raises(SpecError) as info:
        NetworkSpec(**{field: "softmax"})
    assert str(info.value) == (
        "unknown activation 'softmax': choose from linear, sigmoid, tanh, relu"
    )


@pytest.mark.parametrize("dtype", ["half", "bf16", "f64", "", "float8"])
def test_unknown_dtype_is_a_spec_error_listing_the_choices(dtype):
    with pytest.raises(SpecError, match=r"unknown dtype .*choose from float32, float64, "
                                        r"bfloat16, float16"):
        NetworkSpec(dtype=dtype)


@pytest.mark.parametrize("dtype, label", [("bfloat16", "bf16"), ("float16", "f16")])
def test_a_low_precision_network_rounds_its_start_to_its_format(dtype, label):
    problem = make_problem(NetworkSpec((3, 4, 3), "tanh", dtype=dtype), batch=2)
    x, _, params = cast_problem(problem)
    assert str(x.dtype) == dtype and f" {label}" in problem.spec.label()
    assert np.all(x.astype(np.float64) != problem.x)  # rounded, the problem's own left whole


@pytest.mark.parametrize("widths", [(1, 1, 2), (4, 16, 3), (3, 1)])
def test_input_width_must_equal_output_width(widths):
    with pytest.raises(SpecError) as info:
        make_problem(NetworkSpec(widths))
    message = str(info.value)
    assert f"input width ({widths[0]})" in message
    assert f"output width ({widths[-1]})" in message


def test_spec_errors_are_one_line():
    for kwargs in [dict(widths=(1, 0, 1)), dict(activation="gelu"), dict(dtype="int8"),
                   dict(widths=(2, 3))]:
        with pytest.raises(SpecError) as info:
            make_problem(NetworkSpec(**kwargs))
        assert "\n" not in str(info.value)


def test_spec_error_is_a_value_error_the_cli_can_catch():
    from implementations.problem import BenchError

    with pytest.raises(ValueError):
        NetworkSpec((0, 1, 0))
    assert issubclass(SpecError, BenchError)


def test_widths_given_as_a_list_are_stored_as_a_tuple_and_the_spec_hashes():
    spec = NetworkSpec([2, 3, 2])
    assert spec.widths == (2, 3, 2)
    assert hash(spec) == hash(NetworkSpec((2, 3, 2)))


# ---- NetworkSpec helpers -----------------------------------------------------------------------


def test_param_names_without_bias():
    assert NetworkSpec((4, 8, 8, 4)).param_names() == ["W1", "W2", "W3"]


def test_param_names_with_bias_interleave_w_and_b():
    assert NetworkSpec((2, 3, 2), bias=True).param_names() == ["W1", "b1", "W2", "b2"]


def test_layer_activations_are_hidden_then_output():
    spec = NetworkSpec((2, 3, 3, 2), activation="tanh", output_activation="sigmoid")
    assert spec.layer_activations() == ("tanh", "tanh", "sigmoid")


def test_n_weights_counts_weights_and_biases():
    assert NetworkSpec((2, 3, 2)).n_weights() == 2 * 3 + 3 * 2
    assert NetworkSpec((2, 3, 2), bias=True).n_weights() == 2 * 3 + 3 + 3 * 2 + 2


def test_label_names_widths_activation_bias_and_dtype():
    assert NetworkSpec().label() == "1-1-1 linear f64"
    spec = NetworkSpec((64, 64, 64), activation="tanh", bias=True, dtype="float32")
    assert spec.label() == "64-64-64 tanh+b f32"


def test_parse_widths_reads_a_comma_list():
    assert parse_widths("4,16,16,4") == (4, 16, 16, 4)


@pytest.mark.parametrize("text", ["", "4,,4", "a,b", "1,1.5,1"])
def test_parse_widths_rejects_non_integers_with_a_spec_error(text):
    with pytest.raises(SpecError, match="expected integers"):
        parse_widths(text)


# ---- make_problem ------------------------------------------------------------------------------


def test_default_problem_is_the_worked_example():
    problem = make_problem()
    assert problem.spec == NetworkSpec((1, 1, 1), "linear", "linear", False, "float64")
    np.testing.assert_array_equal(problem.x, [[1.0]])
    np.testing.assert_array_equal(problem.y, [[-1.0]])
    (w_ih, b_h), (w_ho, b_o) = problem.params0
    np.testing.assert_array_equal(w_ih, [[0.15]])
    np.testing.assert_array_equal(w_ho, [[0.3]])
    assert b_h is None and b_o is None
    assert problem.lr == 0.1
    assert problem.batch == 1


def test_worked_example_with_bias_starts_from_zero_biases():
    (_, b_h), (_, b_o) = make_problem(NetworkSpec(bias=True)).params0
    np.testing.assert_array_equal(b_h, [0.0])
    np.testing.assert_array_equal(b_o, [0.0])


def test_seeded_batch_inverts_its_inputs_within_minus_one_to_one():
    problem = make_problem(NetworkSpec((3, 5, 3)), batch=64, seed=7)
    assert problem.x.shape == (64, 3)
    np.testing.assert_array_equal(problem.y, -problem.x)
    assert np.all(problem.x >= -1.0) and np.all(problem.x <= 1.0)
    assert problem.x.min() < -0.5 and problem.x.max() > 0.5  # spread, not a constant


def test_same_seed_gives_the_same_arrays():
    spec = NetworkSpec((3, 4, 3), bias=True)
    a, b = make_problem(spec, batch=5, seed=3), make_problem(spec, batch=5, seed=3)
    np.testing.assert_array_equal(a.x, b.x)
    for ta, tb in zip(flatten(a.params0), flatten(b.params0)):
        np.testing.assert_array_equal(ta, tb)


def test_different_seeds_give_different_arrays():
    spec = NetworkSpec((3, 4, 3))
    a, b = make_problem(spec, batch=5, seed=3), make_problem(spec, batch=5, seed=4)
    assert not np.array_equal(a.x, b.x)
    assert not np.array_equal(a.params0[0][0], b.params0[0][0])


def test_params_have_the_documented_shapes_and_dtype():
    spec = NetworkSpec((3, 5, 2, 3), bias=True)
    params = make_problem(spec, batch=2).params0
    assert [(W.shape, b.shape) for W, b in params] == [((3, 5), (5,)), ((5, 2), (2,)),
                                                       ((2, 3), (3,))]
    assert all(t.dtype == np.float64 for t in flatten(params))


def test_initial_weights_lie_in_torch_linear_range():
    params = make_problem(NetworkSpec((16, 4, 16), bias=True), batch=2).params0
    for (W, b), fan_in in zip(params, (16, 4)):
        bound = 1.0 / math.sqrt(fan_in)
        assert np.abs(W).max() <= bound and np.abs(b).max() <= bound


@pytest.mark.parametrize("batch", [0, -1, 1.5, True, "2"])
def test_batch_must_be_a_positive_integer(batch):
    with pytest.raises(SpecError, match="batch"):
        make_problem(batch=batch)


@pytest.mark.parametrize("seed", [-1, -100])
def test_negative_seed_is_a_spec_error(seed):
    # numpy's default_rng raises a bare ValueError for a negative seed: the CLI shows a traceback.
    with pytest.raises(SpecError, match="seed"):
        make_problem(NetworkSpec((2, 2)), batch=2, seed=seed)


def test_cast_problem_rounds_once_to_the_dtype_and_leaves_the_problem_float64():
    problem = make_problem(NetworkSpec((2, 3, 2), bias=True, dtype="float32"), batch=4)
    x, y, params = cast_problem(problem)
    assert x.dtype == y.dtype == np.float32
    assert all(t.dtype == np.float32 for t in flatten(params))
    np.testing.assert_array_equal(x, problem.x.astype(np.float32))
    assert problem.x.dtype == np.float64
    assert all(t.dtype == np.float64 for t in flatten(problem.params0))


# ---- learning rate -----------------------------------------------------------------------------


@pytest.mark.parametrize("lr", [math.nan, math.inf, -math.inf, 0, 0.0, -0.1, "nan", "-1"])
def test_non_finite_or_non_positive_learning_rate_is_a_spec_error(lr):
    with pytest.raises(SpecError, match="must be finite and positive"):
        validate_lr(lr)
    with pytest.raises(SpecError):
        make_problem(lr=lr)


@pytest.mark.parametrize("lr", [None, "fast", [0.1], object()])
def test_learning_rate_that_is_not_a_number_is_a_spec_error(lr):
    with pytest.raises(SpecError, match="is not a number"):
        validate_lr(lr)


@pytest.mark.parametrize("lr, expected", [(0.1, 0.1), ("0.05", 0.05), (2, 2.0)])
def test_valid_learning_rate_comes_back_as_a_float(lr, expected):
    value = validate_lr(lr)
    assert type(value) is float and value == expected


# ---- flatten, unflatten, FLOPs -----------------------------------------------------------------


@pytest.mark.parametrize("bias", [False, True])
def test_flatten_then_unflatten_round_trips(bias):
    spec = NetworkSpec((2, 3, 4, 2), bias=bias)
    params = make_problem(spec, batch=2).params0
    flat = flatten(params)
    assert len(flat) == len(spec.param_names())
    back = unflatten(spec, flat)
    assert len(back) == spec.depth
    for (W, b), (W2, b2) in zip(params, back):
        assert W2 is W and b2 is b


def test_flatten_follows_param_names_order():
    spec = NetworkSpec((2, 3, 2), bias=True)
    flat = flatten(make_problem(spec, batch=2).params0)
    assert [t.shape for t in flat] == [(2, 3), (3,), (3, 2), (2,)]


@pytest.mark.parametrize("widths, batch", [((1, 1, 1), 1), ((4, 16, 16, 4), 8), ((3, 7, 3), 5)])
def test_flops_per_step_is_six_times_batch_times_weights(widths, batch):
    problem = make_problem(NetworkSpec(widths, bias=True), batch=batch)
    weights = sum(a * b for a, b in zip(widths, widths[1:]))
    assert problem.flops_per_step() == 6 * batch * weights


def test_problem_as_dict_has_the_network_and_the_run_settings():
    d = make_problem(NetworkSpec((2, 3, 2)), batch=3, lr=0.5, seed=9).as_dict()
    assert d == {"widths": [2, 3, 2], "activation": "linear", "output_activation": "linear",
                 "bias": False, "dtype": "float64", "batch": 3, "lr": 0.5, "seed": 9}
