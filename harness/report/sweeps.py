"""One section per `sweep` file: time and GFLOP/s by width and variant, plots, the model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from harness.analysis import cost as model
from harness.record.results import Case, Run
from harness.report import plots
from harness.report.fits import model_table
from harness.report.runs import problem_list
from harness.report.sources import (
    Source,
    device_label,
    fmt_gflops,
    fmt_pct,
    image,
    machine_label,
    origin,
    variant_order,
)
from harness.tables import fmt_time, markdown_table, md_code

ByVariant = dict[str, dict[int, Case]]


def sweep_groups(run: Run) -> dict[model.GroupKey, ByVariant]:
    """{shape (a GroupKey with no variant): {variant: {d: case}}} for square networks, where
    a shape has at least two widths."""
    groups: dict[model.GroupKey, ByVariant] = {}
    for c in run.cases:
        d = c.problem.square_width
        if d is not None:
            shape = dataclasses.replace(model.group_key(c), variant="")
            groups.setdefault(shape, {}).setdefault(c.variant, {})[d] = c
    return {k: v for k, v in groups.items()
            if len({d for cases in v.values() for d in cases}) >= 2}


def shape_label(shape: model.GroupKey) -> str:
    bias = "+b" if shape.bias else ""
    return (f"[d]×{shape.depth + 1} {shape.activation}{bias} {shape.dtype}, "
            f"batch {shape.batch}")


def section(source: Source, out_dir: Path, plot_dir: Path | None) -> str:
    run = source.run
    parts = [f"## Sweep: {source.file} · {machine_label(run)}", origin(source)]
    for shape, by_variant in sweep_groups(run).items():
        parts.append(f"### {shape_label(shape)} · {device_label(run, shape.device)}")
        parts += [time_table(by_variant), gflops_table(run, shape, by_variant),
                  problem_list(c for cases in by_variant.values() for c in cases.values())]
    if plot_dir is not None:
        parts += sweep_plots(source, out_dir, plot_dir)
    parts.append(model_table(source))
    return "\n\n".join(p for p in parts if p)


def cell_status(case: Case | None) -> str | None:
    if case is None:
        return "—"
    return None if case.ok else case.status


def widths_of(by_variant: ByVariant) -> list[int]:
    return sorted({d for cases in by_variant.values() for d in cases})


def time_table(by_variant: ByVariant) -> str:
    names = variant_order(by_variant)
    rows = []
    for d in widths_of(by_variant):
        cells = [by_variant[v].get(d) for v in names]
        rows.append([d, *(cell_status(c) or fmt_time(c.median) for c in cells)])
    return ("Time per step (median):\n\n"
            + markdown_table(["d", *(md_code(v) for v in names)], rows, "r" * (len(names) + 1)))


def gflops_cell(run: Run, case: Case | None, machine: float | None) -> str:
    status = cell_status(case)
    if status:
        return status
    achieved = case.flops_per_step / case.median / 1e9
    own = run.ceilings.peak(case.device, case.problem.dtype, case.framework)
    own_pct = fmt_pct(100 * achieved / own.gflops) if own else "—"
    machine_pct = fmt_pct(100 * achieved / machine) if machine else "—"
    return f"{fmt_gflops(achieved)} ({own_pct} / {machine_pct})"


def gflops_table(run: Run, shape: model.GroupKey, by_variant: ByVariant) -> str:
    names = variant_order(by_variant)
    best = run.ceilings.peak(shape.device, shape.dtype)
    rows = [[d, *(gflops_cell(run, by_variant[v].get(d), best and best.gflops) for v in names)]
            for d in widths_of(by_variant)]
    peak_text = (f"the machine peak is the best matmul across frameworks on this device and "
                 f"dtype: {fmt_gflops(best.gflops)} GFLOP/s ({best.framework})" if best
                 else "no matmul peak was measured for this device and dtype")
    return (f"Achieved GFLOP/s (% of the same framework's matmul peak / % of the machine peak; "
            f"{peak_text}):\n\n"
            + markdown_table(["d", *(md_code(v) for v in names)], rows, "r" * (len(names) + 1)))


def sweep_plots(source: Source, out_dir: Path, plot_dir: Path) -> list[str]:
    """Time vs FLOPs and % of peak vs width, one pair of figures per network shape."""
    run = source.run
    fits = {f.group: f for f in model.fit_cases(run.cases)}
    by_shape: dict[model.GroupKey, dict[str, ByVariant]] = {}
    for shape, by_variant in sweep_groups(run).items():
        key = dataclasses.replace(shape, device="")
        by_shape.setdefault(key, {})[shape.device] = by_variant
    out = []
    machine = machine_label(run, md=False)
    for i, (shape, by_device) in enumerate(by_shape.items()):
        time_png, peak_png = (plot_dir / f"{source.name}-{i}-{kind}.png"
                              for kind in ("time", "peak"))
        titles = {d: device_label(run, d, md=False) for d in by_device}
        plots.sweep_times(f"{machine}\ntime per SGD step, {shape_label(shape)}", shape,
                          by_device, titles, fits, variant_order, time_png)
        out.append(image(time_png, out_dir, "time per step"))
        panels = {}
        for d in by_device:  # a panel with no peak would pin the shared y axis to 0..1
            best = run.ceilings.peak(d, shape.dtype)
            if best:
                panels[d] = (f"{titles[d]}\npeak {fmt_gflops(best.gflops)} GFLOP/s "
                             f"({best.framework})", best.gflops)
        if panels:
            plots.sweep_peak(f"{machine}\nachieved FLOP rate, {shape_label(shape)}", by_device,
                             panels, variant_order, peak_png)
            out.append(image(peak_png, out_dir, "% of matmul peak"))
        for d, by_variant in by_device.items():
            if any(c.memory for cases in by_variant.values() for c in cases.values()):
                png = plot_dir / f"{source.name}-{i}-memory-{d}.png"
                plots.sweep_memory(f"{machine}, {titles[d]}\nmemory per step, "
                                   f"{shape_label(shape)}", by_variant, variant_order, png)
                out.append(image(png, out_dir, "memory per step"))
    return out
