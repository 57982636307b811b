"""The scaling model: the all-reduce fit, batch arithmetic, predictions, and on paper."""

from __future__ import annotations

import math

import helpers_results as h
import helpers_scale as hs
import pytest

from harness.analysis import cost as model
from harness.analysis import published
from harness.analysis import scaling as scale_model
from harness.record.results import AllreduceCurve


def test_the_fit_recovers_a_known_alpha_and_beta():
    run = hs.scale_file()
    fits = {f.framework: f for f in scale_model.allreduce_fits(run)}
    assert set(fits) == {"torch-ddp", "jax-sharded"}
    for variant, (alpha, beta) in hs.ALLREDUCE.items():
        fit = fits[variant]
        assert fit.alpha_s == pytest.approx(alpha, rel=1e-6)
        assert fit.beta_Bps == pytest.approx(beta, rel=1e-6)
        assert fit.rms_rel_residual < 1e-6 and not fit.poor and fit.n_points == 10
        assert fit.predict(8e6) == pytest.approx(alpha + 8e6 / beta)


def test_a_flat_curve_is_a_poor_fit_and_a_failed_one_none():
    sizes = [4, 64, 1024, 16384, 262144, 1 << 20, 1 << 22]
    knee = [1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1.2e-3, 20e-3]  # flat to 1 MB, then steep
    fit = scale_model.fit_allreduce(AllreduceCurve("f", "gloo", "cpu", 2, sizes, knee, knee))
    assert fit.poor and fit.max_rel_residual > 2 * model.POOR_FIT
    assert scale_model.fit_allreduce(AllreduceCurve("f", "?", "cpu", 2, error="no")) is None
    few = AllreduceCurve("f", "gloo", "cpu", 2, [4, 8], [1e-3, 1e-3], [1e-3, 1e-3])
    assert scale_model.fit_allreduce(few) is None


def test_strong_and_weak_batches():
    assert scale_model.global_batch("strong", 64, 4) == 64
    assert scale_model.global_batch("weak", 64, 4) == 256
    assert scale_model.worker_batch("strong", 64, 4) == 16
    assert scale_model.worker_batch("weak", 64, 4) == 64
    with pytest.raises(ValueError, match="not divisible by 3"):
        scale_model.worker_batch("strong", 64, 3)


def test_prediction_arithmetic():
    assert scale_model.predict_step(2e-3, 1e-3) == pytest.approx(3e-3)
    assert scale_model.predict_step(2e-3, 1e-3, overlap_s=0.5e-3) == pytest.approx(2.5e-3)
    assert scale_model.speedup("strong", 2, 4e-3, 2.5e-3) == pytest.approx(1.6)
    assert scale_model.efficiency("strong", 2, 4e-3, 2.5e-3) == pytest.approx(0.8)
    assert scale_model.speedup("weak", 2, 4e-3, 5e-3) == pytest.approx(1.6)
    assert scale_model.efficiency("weak", 2, 4e-3, 5e-3) == pytest.approx(0.8)
    # NCCL's ring: 2(N-1)/N of the bytes over the bus bandwidth, plus the latency
    assert scale_model.paper_allreduce(8e6, 8, 400e9, 10e-6) == pytest.approx(45e-6)
    assert scale_model.paper_allreduce(8e6, 2, 40e9, 5e-6) == pytest.approx(205e-6)
    assert scale_model.gradient_bytes(h.problem((16, 16, 16))) == 2 * 16 * 16 * 4


def test_points_match_the_model_when_the_times_do():
    run = hs.scale_file()
    strong = scale_model.points(run, "strong")
    weak = scale_model.points(run, "weak")
    assert {(p.workers, p.global_batch, p.worker_batch) for p in strong} == {(1, 64, 64),
                                                                            (2, 64, 32)}
    assert {(p.workers, p.global_batch, p.worker_batch) for p in weak} == {(1, 64, 64),
                                                                          (2, 128, 64)}
    for p in strong + weak:
        assert p.predicted_s == pytest.approx(p.measured_s, rel=1e-6)
        assert p.ratio("efficiency", True) == pytest.approx(p.ratio("efficiency"), rel=1e-6)
    two = next(p for p in strong if p.workers == 2 and p.variant == "jax-sharded"
               and p.network.startswith("256-"))
    t1, t2 = hs.step("jax-sharded", 256, 64, 1), hs.step("jax-sharded", 256, 32, 2)
    assert two.ratio("speedup") == pytest.approx(t1 / t2, rel=1e-3)
    assert two.allreduce_s == pytest.approx(30e-6 + 2 * 256 * 256 * 4 / 4e9)


def test_on_paper_steps_use_the_gpu_fit_and_the_published_ranges():
    fit = model.fit_points(model.GroupKey("torch", "cuda", "float32", "tanh", 64, 2),
                           [6 * 64 * 2 * d * d for d in (16, 256, 1024, 4096)],
                           [50e-6 + 6 * 64 * 2 * d * d / 20e12 for d in (16, 256, 1024, 4096)])
    prob = h.problem((1024, 1024, 1024))
    nvlink = published.ON_PAPER[0]
    compute, comm, step = scale_model.paper_step(fit, prob, "strong", 64, nvlink.workers,
                                                 480e9, 5e-6)
    assert compute == pytest.approx(50e-6 + 6 * 8 * 2 * 1024 ** 2 / 20e12, rel=1e-6)
    assert comm == pytest.approx(5e-6 + 2 * 7 / 8 * 8 * 1024 ** 2 / 480e9)
    assert step == pytest.approx(compute + comm)
    for ic in published.ON_PAPER:  # every figure names where it comes from
        assert ic.sources and all(url.startswith("https://") for _, url in ic.sources)
        assert ic.bus_GBps[0] <= ic.bus_GBps[1] and ic.latency_us[0] <= ic.latency_us[1]
    assert math.isclose(scale_model.fitted_compute(fit, prob, 64), fit.predict(
        6 * 64 * 2 * 1024 ** 2))
