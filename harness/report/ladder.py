"""What each layer of abstraction costs, and where the time goes inside one step.

The ladder: every variant declares the rung it is built on (``Variant.below``: torch-nn on
torch-optim on torch on torch-manual; jax-flax on jax; Keras on its backend), and the table
shows each rung's time per step and what it adds over that rung. The phases: the forward
pass, the gradient (forward and backward) and the update, timed apart by the same engine
for the variants that can split their step; the parts are set against the whole step.
"""

from __future__ import annotations

from pathlib import Path

from harness.record import summary
from harness.record.results import Case, Run
from harness.report import plots_ladder
from harness.report.sources import Source, image, machine_label, origin
from harness.tables import fmt_ratio, fmt_time, markdown_table, md_code

LADDER_INTRO = ("Each rung is a variant built on the one below it (the registry's `below`): "
                "raw tensor operations, autograd, the optimizer, the module system, "
                "compilation, a library on top. *adds* is its time per step minus the rung "
                "below's, on the same network and in the same run.")
PHASES_INTRO = ("The parts of one step, each timed apart by the same engine (K repetitions, "
                "one sync): the forward pass with the loss, the gradient (forward and "
                "backward) and the update alone. *backward* is the gradient minus the forward. "
                "Where the parts add up to within 15% of the whole step, the split is a fair "
                "picture; where they fall short, the rest of the step is what no part "
                "contains (Python between the parts, dispatch, allocation); where they add up "
                "to more, each part paid its own dispatch and sync, which the fused step pays "
                "once.")
TOLERANCE = 0.15


def ladder_section(source: Source, out_dir: Path, plot_dir: Path | None) -> str:
    ladders = summary.ladders(source.run)
    if not ladders:
        return ""
    parts = [f"## The abstraction ladder: {source.file} · {machine_label(source.run)}",
             origin(source), LADDER_INTRO]
    if plot_dir is not None:
        png = plot_dir / f"{source.name}-ladder.png"
        plots_ladder.ladder(machine_label(source.run, md=False), ladders, png)
        parts.append(image(png, out_dir, "the abstraction ladder"))
    for (problem, device), rungs in ladders.items():
        parts += [f"### {problem.label()} · {device}",
                  markdown_table(summary.LADDER_HEADERS,
                                 [summary.ladder_cells(r, markdown=True) for r in rungs],
                                 "llrrr")]
    return "\n\n".join(parts)


def split(case: Case) -> dict | None:
    """{forward, backward, update, parts, step, rest} in seconds per step, or None."""
    ph = case.phases
    if not case.ok or not {"forward", "gradient", "update"} <= set(ph):
        return None
    forward, gradient, update = (ph[k].median for k in ("forward", "gradient", "update"))
    parts = gradient + update
    return {"forward": forward, "backward": max(0.0, gradient - forward), "update": update,
            "parts": parts, "step": case.median, "rest": case.median - parts}


def verdict(s: dict) -> str:
    share = s["parts"] / s["step"]
    if abs(share - 1) <= TOLERANCE:
        return f"parts {fmt_ratio(share)} the step: a fair split"
    if share < 1:
        return (f"parts {fmt_ratio(share)} the step: {fmt_time(s['rest'])} is in no part "
                f"(Python, dispatch, allocation)")
    return f"parts {fmt_ratio(share)} the step: each part pays a dispatch the step pays once"


def phase_rows(run: Run) -> list[tuple[Case, dict]]:
    rows = summary.in_order(run, summary.derive(run))
    return [(r.case, s) for r in rows if (s := split(r.case))]


def phases_section(source: Source, out_dir: Path, plot_dir: Path | None) -> str:
    found = phase_rows(source.run)
    if not found:
        return ""
    parts = [f"## Where the time goes in one step: {source.file} · "
             f"{machine_label(source.run)}", origin(source), PHASES_INTRO]
    if plot_dir is not None:
        png = plot_dir / f"{source.name}-phases.png"
        plots_ladder.phases(machine_label(source.run, md=False), found, png)
        parts.append(image(png, out_dir, "the parts of one step"))
    table = [[c.problem.label(), md_code(c.variant), c.device, fmt_time(s["step"]),
              fmt_time(s["forward"]), fmt_time(s["backward"]), fmt_time(s["update"]),
              verdict(s)] for c, s in found]
    parts.append(markdown_table(["network", "variant", "device", "whole step", "forward",
                                 "backward", "update", "the parts against the step"], table,
                                "lllrrrrl"))
    return "\n\n".join(parts)
