"""The cost model recovers known overheads and throughputs, and its crossovers follow."""

from __future__ import annotations

import math

import helpers_results as h
import numpy as np
import pytest

from harness.analysis import cost as model

KEY = model.GroupKey("numpy", "cpu", "float32", "tanh", 64, 2)
WIDTHS = (1, 4, 16, 64, 128, 256, 512, 1024, 2048)


def flops_for_width(d: float, batch: int = 64, depth: int = 2) -> float:
    """FLOPs per step of a [d] * (depth + 1) network: 6 * batch * depth * d^2."""
    return 6 * batch * depth * d * d


def synthetic(overhead: float, throughput: float, noise: float = 0.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    F = [flops_for_width(d) for d in WIDTHS]
    t = [(overhead + f / throughput) * rng.lognormal(0.0, noise) for f in F]
    return F, t


def fit_of(overhead: float, throughput: float, **kw) -> model.Fit:
    fit = model.fit_points(KEY, *synthetic(overhead, throughput, **kw))
    assert fit is not None
    return fit


@pytest.mark.parametrize("overhead, throughput", [(19e-6, 120e9), (220e-6, 130e9),
                                                  (0.4e-6, 100e9), (60e-6, 20e12)])
def test_noise_free_data_is_recovered_exactly(overhead, throughput):
    fit = fit_of(overhead, throughput)
    assert fit.overhead_s == pytest.approx(overhead, rel=1e-6)
    assert fit.throughput_flops == pytest.approx(throughput, rel=1e-6)
    assert fit.rms_rel_residual < 1e-6
    assert fit.n_points == len(WIDTHS) and len(fit.residuals) == len(WIDTHS)


@pytest.mark.parametrize("seed", range(5))
def test_three_percent_noise_is_recovered_within_a_few_percent(seed):
    fit = fit_of(19e-6, 120e9, noise=0.03, seed=seed)
    assert fit.overhead_s == pytest.approx(19e-6, rel=0.05)
    assert fit.throughput_flops == pytest.approx(120e9, rel=0.05)
    assert 0.005 < fit.rms_rel_residual < 0.06


def test_residuals_are_relative_to_the_measured_time():
    F, t = synthetic(10e-6, 100e9)
    t[0] *= 1.5
    fit = model.fit_points(KEY, F, t)
    predicted = [fit.predict(f) for f in F]
    assert fit.residuals == pytest.approx([(p - m) / m for p, m in zip(predicted, t)])


def test_overhead_is_never_negative():
    # pure FLOP scaling with a small dip at the smallest size would want a negative intercept
    F = [flops_for_width(d) for d in (64, 256, 1024)]
    t = [0.8 * F[0] / 1e11, F[1] / 1e11, F[2] / 1e11]
    fit = model.fit_points(KEY, F, t)
    assert fit.overhead_s >= 0 and fit.throughput_flops > 0


def test_constant_time_has_infinite_throughput_and_never_stops_being_overhead_bound():
    F = [flops_for_width(d) for d in (1, 2, 4)]
    fit = model.fit_points(KEY, F, [5e-6] * 3)
    assert fit.overhead_s == pytest.approx(5e-6)
    assert math.isinf(fit.throughput_flops) and math.isinf(fit.crossover_flops)


def test_crossover_is_where_the_flop_term_equals_the_overhead():
    fit = fit_of(19e-6, 120e9)
    assert fit.crossover_flops == pytest.approx(19e-6 * 120e9, rel=1e-6)
    d = math.sqrt(19e-6 * 120e9 / (6 * 64 * 2))
    assert fit.crossover_d == pytest.approx(d, rel=1e-6)
    assert fit.predict(fit.crossover_flops) == pytest.approx(2 * fit.overhead_s)


def test_width_for_flops_inverts_the_flop_count():
    assert model.width_for_flops(6 * 64 * 2 * 256 * 256, 64, 2) == 256
    assert model.width_for_flops(flops_for_width(300, 64, 3), 64, 3) == pytest.approx(300)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_fewer_than_three_sizes_give_no_fit(n):
    F, t = synthetic(19e-6, 120e9)
    assert model.fit_points(KEY, F[:n], t[:n]) is None


def test_repeated_sizes_do_not_count_as_sizes():
    F, t = synthetic(19e-6, 120e9)
    assert model.fit_points(KEY, [F[0], F[0], F[1], F[1]], t[:4]) is None


def test_fit_cases_groups_by_variant_device_and_shape():
    fits = model.fit_cases(h.sweep_file().cases)
    keys = {(f.variant, f.device) for f in fits}
    assert keys == set(h.MODEL)  # the single 1-1-1 limit case has no fit
    for f in fits:
        overhead, throughput = h.MODEL[(f.variant, f.device)]
        assert f.overhead_s == pytest.approx(overhead, rel=1e-6)
        assert f.throughput_flops == pytest.approx(throughput, rel=1e-6)
        assert f.group.label() == "float32 tanh b64 depth 2"


def test_fit_cases_skips_cases_that_are_not_ok():
    run = h.sweep_file()
    for c in run.cases:
        if c.variant == "numpy" and c.problem.widths[0] > 16:
            c.fail("failed", "planted")
    assert ("numpy", "cpu") not in {(f.variant, f.device) for f in model.fit_cases(run.cases)}


def gpu_key(variant="torch"):
    return model.GroupKey(variant, "cuda", "float32", "tanh", 64, 2)


def gpu_fit(overhead: float, throughput: float) -> model.Fit:
    return model.fit_points(gpu_key(), *synthetic(overhead, throughput))


def test_gpu_beats_cpu_where_the_lines_cross():
    cpu = fit_of(20e-6, 100e9)
    gpu = gpu_fit(60e-6, 20e12)
    cross = model.best_gpu_beats_best_cpu([cpu], [gpu])
    expected = (60e-6 - 20e-6) / (1 / 100e9 - 1 / 20e12)
    assert cross.flops == pytest.approx(expected, rel=1e-6)
    assert cross.d == pytest.approx(math.sqrt(expected / (6 * 64 * 2)), rel=1e-6)
    assert cpu.predict(cross.flops) == pytest.approx(gpu.predict(cross.flops), rel=1e-9)


def test_gpu_that_never_or_always_wins_has_no_crossover():
    cpu = fit_of(20e-6, 100e9)
    slower_gpu = gpu_fit(60e-6, 50e9)
    faster_gpu = gpu_fit(5e-6, 20e12)
    assert model.best_gpu_beats_best_cpu([cpu], [slower_gpu]) is None
    assert model.best_gpu_beats_best_cpu([cpu], [faster_gpu]) is None
    assert model.always_faster([faster_gpu], [cpu]) and not model.always_faster([slower_gpu], [cpu])


def test_crossover_beyond_the_sane_range_is_none():
    cpu = fit_of(20e-6, 100e9)
    gpu = gpu_fit(1000.0, 101e9)  # crosses at ~1e16 FLOPs
    assert model.best_gpu_beats_best_cpu([cpu], [gpu]) is None
    cross = model.best_gpu_beats_best_cpu([cpu], [gpu], max_flops=1e17)
    assert cross.flops == pytest.approx(1.01e16, rel=1e-3)


def test_best_gpu_against_best_cpu_uses_the_fastest_fit_at_each_size():
    fast_small = fit_of(1e-6, 50e9)
    fast_large = model.fit_points(model.GroupKey("torch", "cpu", "float32", "tanh", 64, 2),
                                  *synthetic(200e-6, 200e9))
    gpu = gpu_fit(60e-6, 20e12)
    cross = model.best_gpu_beats_best_cpu([fast_small, fast_large], [gpu])
    expected = (60e-6 - 1e-6) / (1 / 50e9 - 1 / 20e12)  # fast_small is the faster one there
    assert cross.flops == pytest.approx(expected, rel=1e-6)
    cpu_best = min(fast_small.predict(cross.flops), fast_large.predict(cross.flops))
    assert gpu.predict(cross.flops) == pytest.approx(cpu_best, rel=1e-6)
    assert model.best_at([fast_large, fast_small], cross.flops) is fast_small
    assert model.best_at([fast_small, fast_large], 1e12) is fast_large


def test_removed_helpers_are_gone():
    for name in ("gpu_beats_cpu", "flops_for_width", "pays_off_after"):
        assert not hasattr(model, name), name


# ---- d = 1 left out, poor fits, measured range ----------------------------------------------

def sweep_with_scalar_d1(widths) -> list:
    """jax-fori cases on the cost line, except d = 1, which runs 50× faster (a scalar program)."""
    rng = np.random.default_rng(0)
    cases = []
    for d in widths:
        prob = h.problem((d, d, d))
        t = 20e-6 + h.flops(prob) / 100e9
        cases.append(h.ok_case("jax-fori", "cpu", prob, t / 50 if d == 1 else t, rng, sigma=0.0))
    return cases


def test_d1_is_left_out_when_three_other_widths_remain():
    (fit,) = model.fit_cases(sweep_with_scalar_d1((1, 16, 64, 256)))
    assert fit.left_out == (1,) and fit.n_points == 3
    assert fit.overhead_s == pytest.approx(20e-6, rel=1e-6)
    assert fit.throughput_flops == pytest.approx(100e9, rel=1e-6)
    assert fit.d_range == pytest.approx((16, 256))
    assert not fit.poor


def test_d1_is_kept_when_fewer_than_three_other_widths_remain():
    (fit,) = model.fit_cases(sweep_with_scalar_d1((1, 64, 256)))
    assert fit.left_out == () and fit.n_points == 3
    assert fit.d_range == pytest.approx((1, 256))
    assert fit.rms_rel_residual > 0.1  # the scalar d = 1 point pulls the line off


def test_a_fit_is_poor_above_the_threshold():
    F, t = synthetic(19e-6, 120e9)
    good = model.fit_points(KEY, F, t)
    bad = model.fit_points(KEY, F, [x * (2.0 if i % 2 else 0.5) for i, x in enumerate(t)])
    assert not good.poor and bad.rms_rel_residual > model.POOR_FIT and bad.poor
