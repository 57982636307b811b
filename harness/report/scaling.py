"""One section per `scale` file: strong and weak scaling, the all-reduce fits, a plot of
efficiency against N, and predictions on paper for hardware that is not here.

Measured figures are per-step medians; every predicted figure says so. The model is
``harness.analysis.scaling``'s: step(N) = compute(b) + allreduce(gradient bytes) - overlap, with
overlap 0. On paper, compute(b) comes from the single-device variant's cost model fitted on a
GPU in any of the report's files (``harness.analysis.cost``), and the all-reduce from the published
figures of ``harness.analysis.published.ON_PAPER``.
"""

from __future__ import annotations

from pathlib import Path

from harness.analysis import cost as model
from harness.analysis import scaling as scale_model
from harness.analysis.published import ON_PAPER
from harness.record.results import Run
from harness.report import plots
from harness.report.runs import problem_list
from harness.report.sources import Source, device_label, image, machine_label
from harness.tables import fmt_ratio, fmt_time, markdown_table, md_code, md_escape

INTRO = ("How to read it: strong scaling keeps the global batch (each of N workers takes B/N "
         "rows), weak scaling keeps each worker's batch (N·B rows in all). Speed-up is against "
         "one worker: time per step (strong) or samples per second (weak); efficiency is "
         "speed-up / N. *Predicted* is step(N) = compute(b) + allreduce(gradient bytes) - "
         "overlap: compute(b) is the same variant measured on one worker with this point's "
         "per-worker batch, allreduce the fit below at the gradient's size, overlap 0 (not "
         "measured). On a CPU a worker is one core.")
HEADERS = ["network", "variant", "N", "batch / worker", "per step", "speed-up", "efficiency",
           "predicted", "pred. speed-up", "pred. efficiency", "compute(b)", "all-reduce (fit)",
           "status"]


def section(source: Source, sources: list[Source], out_dir: Path, plot_dir: Path) -> str:
    run = source.run
    if run.command != "scale" or not run.config.grid:
        return ""
    grid = run.config.grid
    parts = [f"## Scaling: {source.file} · {machine_label(run)}", INTRO]
    for mode in scale_model.MODES:
        pts = scale_model.points(run, mode)
        for device in dict.fromkeys(p.device for p in pts):
            mine = [p for p in pts if p.device == device]
            batch = (f"global batch {grid['batch']}" if mode == "strong"
                     else f"{grid['batch']} per worker")
            parts += [f"### {mode.capitalize()} scaling, {batch} · {device_label(run, device)}",
                      markdown_table(HEADERS, [cells(p) for p in mine], "llrrrrrrrrrrl"),
                      problem_list(p.case for p in mine)]
    parts.append(allreduce_table(run))
    png = plot_dir / f"{source.name}-scaling.png"
    if draw(run, machine_label(run, md=False), png):
        parts.append(image(png, out_dir, "efficiency against workers"))
    parts.append(on_paper(run, sources))
    return "\n\n".join(p for p in parts if p)


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


def cells(p: scale_model.Point) -> list[str]:
    c = p.case
    return [c.problem.network(), md_code(p.variant), p.workers, p.worker_batch,
            fmt_time(p.measured_s), fmt_ratio(p.ratio("speedup")), pct(p.ratio("efficiency")),
            fmt_time(p.predicted_s), fmt_ratio(p.ratio("speedup", True)),
            pct(p.ratio("efficiency", True)), fmt_time(p.compute.median if p.compute else None),
            fmt_time(p.allreduce_s) if p.workers > 1 else "—", "ok" if c.ok else c.status]


def allreduce_table(run: Run) -> str:
    """The fits t = alpha + bytes / beta, one per framework, backend, device and N."""
    rows, failed = [], []
    for curve in run.ceilings.allreduce:
        fit = scale_model.fit_allreduce(curve)
        if fit is None:
            failed.append(f"- {curve.framework} on {curve.workers} workers: "
                          f"{md_escape(curve.error or 'too few sizes to fit')}")
            continue
        largest = curve.median_s[curve.bytes.index(max(curve.bytes))]
        rows.append([curve.framework, md_escape(curve.backend), curve.device, curve.workers,
                     fmt_time(fit.alpha_s), f"{fit.beta_Bps / 1e9:.3g} GB/s",
                     f"{fit.rms_rel_residual:.2f} / {fit.max_rel_residual:.2f}",
                     "**poor fit**" if fit.poor else "ok",
                     f"{fit.bytes_range[0]:,} – {fit.bytes_range[1]:,} B",
                     fmt_time(largest)])
    if not rows and not failed:
        return ""
    text = ("### The all-reduce alone: t = α + bytes / β\n\nFitted by non-negative least "
            "squares on relative residuals; a fit whose rms relative residual is above "
            f"{model.POOR_FIT:g}, or that misses a point by more than {2 * model.POOR_FIT:g}, "
            "is marked poor (a line in bytes does not describe the points: "
            "small messages cost about the same, whatever their size).")
    if rows:
        text += "\n\n" + markdown_table(
            ["framework", "backend", "device", "N", "α", "β", "rel. residual rms / max", "fit",
             "sizes", "at the largest"], rows, "lllrrrrlrr")
    return text + ("\n\n" + "\n".join(failed) if failed else "")


def draw(run: Run, title: str, path: Path) -> bool:
    """The efficiency plot, if there is anything on several workers to draw."""
    panels = {}
    for mode in scale_model.MODES:
        lines = {}
        for p in scale_model.points(run, mode):
            key = f"{p.variant} {p.network.split(' ')[0]}"
            line = lines.setdefault(key, ([], [], []))
            line[0].append(p.workers)
            line[1].append(p.ratio("efficiency"))
            line[2].append(p.ratio("efficiency", True))
        if any(len(ns) > 1 for ns, _, _ in lines.values()):
            panels[f"{mode} scaling"] = lines
    if not panels:
        return False
    plots.scaling_efficiency(f"{title}\nefficiency against one worker", panels, path)
    return True


def gpu_fits(sources: list[Source]) -> list[tuple[model.Fit, Source]]:
    return [(f, s) for s in sources for f in model.fit_cases(s.run.cases)
            if f.device == "cuda"]


def on_paper(run: Run, sources: list[Source]) -> str:
    """Predicted steps on the machines of ``ON_PAPER``, from a GPU cost model."""
    grid, fits = run.config.grid, gpu_fits(sources)
    rows, used, missing = [], {}, set()
    for case in run.cases:
        v = run.declaration(case.variant)
        if case.workers != 1 or case.problem.batch != grid["batch"] or not v or not v.replicates:
            continue
        found = scale_model.compute_fit([f for f, _ in fits], v.replicates, "cuda",
                                        case.problem, grid["batch"])
        if found is None:
            missing.add(v.replicates)
            continue
        used[found] = next(s for f, s in fits if f is found)
        rows += paper_rows(case, case.variant, found, grid)
    notes = [f"- no GPU cost model of {md_code(m)} among the files of this report (a `sweep "
             f"--device cuda` of it gives one)" for m in sorted(missing)]
    if not rows:
        return "\n".join(["### On paper: predicted, not measured", *notes]) if notes else ""
    origin = "; ".join(dict.fromkeys(f"{md_code(f.variant)} {f.group.label()} from {s.file}"
                                     for f, s in used.items()))
    cited = "\n".join(dict.fromkeys(f"- {md_escape(name)}: <{url}>" for ic in ON_PAPER
                                    for name, url in ic.sources))
    return "\n\n".join([
        "### On paper: predicted, not measured",
        f"Every figure here is **predicted**. compute(b) is the single-device GPU cost model "
        f"({origin}; overhead + FLOPs / throughput, scaled to each per-worker batch), the "
        f"all-reduce 2(N-1)/N · bytes / bus bandwidth + latency with the published ranges "
        f"below; a range runs from the best case (high bandwidth, low latency) to the worst. "
        f"Overlap is taken as 0.",
        markdown_table(["network", "variant", "machine", "N", "scaling", "compute(b)",
                        "all-reduce", "predicted step", "predicted efficiency"], rows,
                       "llllrlrrr"),
        "Sources (figures as published; not re-measured here):\n" + cited, *notes])


def paper_rows(case, variant: str, fit: model.Fit, grid: dict) -> list[list]:
    out = []
    for ic in ON_PAPER:
        for mode in grid["modes"]:
            if mode == "strong" and grid["batch"] % ic.workers:
                continue
            cases = [scale_model.paper_step(fit, case.problem, mode, grid["batch"], ic.workers,
                                            bw * 1e9, lat * 1e-6)
                     for bw, lat in ((ic.bus_GBps[1], ic.latency_us[0]),
                                     (ic.bus_GBps[0], ic.latency_us[1]))]
            base = scale_model.fitted_compute(fit, case.problem, grid["batch"])
            eff = [scale_model.efficiency(mode, ic.workers, base, step) for _, _, step in cases]
            out.append([case.problem.network(), md_code(variant), md_escape(ic.name), ic.workers,
                        mode, fmt_time(cases[0][0]),
                        span(fmt_time(cases[0][1]), fmt_time(cases[1][1])),
                        span(fmt_time(cases[0][2]), fmt_time(cases[1][2])),
                        span(pct(eff[0]), pct(eff[1]))])
    return out


def span(best: str, worst: str) -> str:
    return best if best == worst else f"{best} – {worst}"
