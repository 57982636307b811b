"""The cost-model table: time per step = overhead + FLOPs / throughput, per variant."""

from __future__ import annotations

from harness.analysis import cost as model
from harness.report.sources import (
    Source,
    device_label,
    fmt_gflops,
    fmt_measured_width,
    fmt_pct,
    variant_rank,
)
from harness.tables import fmt_time, markdown_table, md_code

POOR_FIT_NOTE = (f"A fit whose rms relative residual is above {model.POOR_FIT:.0%} is marked "
                 f"*poor fit*: a line in FLOPs does not describe its points, so what is read off "
                 f"it is a rough guide; a width outside the fitted widths is marked "
                 f"*extrapolated*.")


def model_table(source: Source) -> str:
    fits = sorted(model.fit_cases(source.run.cases),
                  key=lambda f: (f.device != "cpu", variant_rank(f.variant)))
    if not fits:
        return ""
    rows = [[md_code(f.variant), device_label(source.run, f.device), f.group.label(),
             points_text(f), fmt_time(f.overhead_s), fmt_gflops(f.throughput_flops / 1e9),
             fmt_measured_width(f.crossover_d, *f.d_range), fit_quality(f)] for f in fits]
    left_out = ("The d = 1 network is left out of every fit that has at least "
                f"{model.MIN_SIZES} other widths: XLA and numba compile a 1-wide network to a "
                "scalar program, not a matmul, so its time is not on the FLOP line (it is left "
                "out of the other variants' fits too, so that all fits cover the same widths). "
                if any(f.left_out for f in fits) else "")
    return ("Cost model: time per step = overhead + FLOPs / throughput, fitted by least squares "
            "on relative residuals with overhead ≥ 0. A variant stops being overhead-bound "
            "where its FLOP term equals its overhead (d of a [d]×(depth+1) network). "
            + left_out + POOR_FIT_NOTE + "\n\n"
            + markdown_table(["variant", "device", "networks", "points", "overhead per step",
                              "throughput GFLOP/s", "stops being overhead-bound at d ≈",
                              "rms residual"], rows, "lllrrrrr"))


def points_text(fit: model.Fit) -> str:
    left = ", ".join(map(str, fit.left_out))
    return f"{fit.n_points} (d = {left} left out)" if fit.left_out else str(fit.n_points)


def fit_quality(fit: model.Fit) -> str:
    rms = fmt_pct(100 * fit.rms_rel_residual)
    return f"{rms} (poor fit)" if fit.poor else rms
