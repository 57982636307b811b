"""The bar charts of the abstraction ladder and of the parts of one step, drawn with the
figure, colours and metadata of ``harness.report.plots``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.report.plots import new_figure, save
from harness.tables import fmt_time


def ladder(title: str, ladders: dict, path: Path) -> None:
    """Per network, a bar per rung on a linear time axis: the rung below's time in grey, what
    this rung adds in orange, or, for a rung faster than the one below, what it saves as an
    outlined bar from its own time to the rung below's (so each layer's cost is a length)."""
    panels = list(ladders.items())
    fig = new_figure(8.0, 1.0 + sum(0.3 * len(r) + 0.8 for _, r in panels))
    axes = fig.subplots(len(panels), 1, squeeze=False,
                        gridspec_kw={"height_ratios": [len(r) + 1.5 for _, r in panels]})[:, 0]
    for ax, ((problem, device), rungs) in zip(axes, panels):
        y = np.arange(len(rungs))
        for yi, r in zip(y, rungs):
            base = r.below.median if r.below else 0.0
            ax.barh(yi, min(base, r.case.median), color=LADDER_COLORS["below"])
            if r.case.median >= base:
                ax.barh(yi, r.case.median - base, left=base,
                        color=LADDER_COLORS["adds" if r.below else "bottom"])
            else:
                ax.barh(yi, base - r.case.median, left=r.case.median, fill=False,
                        edgecolor=LADDER_COLORS["saves"], hatch="///", linewidth=0.8)
            ax.text(max(r.case.median, base), yi, "  " + fmt_time(r.case.median),
                    va="center", fontsize=8)
        ax.set_yticks(y, ["  " * r.depth + r.case.variant for r in rungs], fontsize=9)
        ax.invert_yaxis()
        ax.set_xlim(0, max(r.case.median for r in rungs) * 1.3)
        ax.xaxis.set_major_formatter(_time_formatter())
        ax.set_title(f"{problem.label()} · {device}", fontsize=10, loc="left")
        ax.grid(True, axis="x", alpha=0.3)
    axes[-1].set_xlabel("time per SGD step")
    from matplotlib.patches import (
        Patch,  # matplotlib takes a second to import: only the report draws
    )

    handles = [Patch(color=LADDER_COLORS[k], label=label) for k, label in (
        ("bottom", "a bottom rung"), ("below", "the rung below"), ("adds", "what this rung adds"))]
    handles.append(Patch(fill=False, edgecolor=LADDER_COLORS["saves"], hatch="///",
                         label="what this rung saves"))
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8)
    fig.suptitle(f"{title}: the abstraction ladder", fontsize=11)
    save(fig, path)


LADDER_COLORS = {"bottom": "#4c72b0", "below": "#d9d9d9", "adds": "#dd8452", "saves": "#55a868"}


PART_COLORS = {"forward": "#4c72b0", "backward": "#dd8452", "update": "#55a868",
               "rest": "#c7c7c7"}


def phases(title: str, found: list, path: Path) -> None:
    """A stacked bar per case, in % of its whole step: forward, backward, update and the rest
    of the step (hatched grey); parts that add up to more than the step run past 100%."""
    from matplotlib.patches import (
        Patch,  # matplotlib takes a second to import: only the report draws
    )

    fig = new_figure(8.0, 1.4 + 0.32 * len(found))
    ax = fig.subplots()
    y = np.arange(len(found))
    for yi, (_, s) in zip(y, found):
        left = 0.0
        for part in ("forward", "backward", "update"):
            share = 100 * s[part] / s["step"]
            ax.barh(yi, share, left=left, color=PART_COLORS[part])
            left += share
        if s["rest"] > 0:
            ax.barh(yi, 100 - left, left=left, color=PART_COLORS["rest"], hatch="//")
        ax.text(max(left, 100) + 2, yi, fmt_time(s["step"]) + " a step", va="center",
                fontsize=8)
    ax.axvline(100, color="k", lw=1)
    ax.set_yticks(y, [f"{c.variant} · {c.problem.label()}" for c, _ in found], fontsize=8)
    ax.invert_yaxis()
    longest = max(max(100.0, 100 * s["parts"] / s["step"]) for _, s in found)
    ax.set_xlim(0, max(150, 1.3 * longest + 10))  # room for the "… a step" label past a bar
    ax.set_xlabel("% of the whole step (the line at 100%)", fontsize=9)
    handles = [Patch(color=c, label=p) for p, c in PART_COLORS.items() if p != "rest"]
    handles.append(Patch(facecolor=PART_COLORS["rest"], hatch="//", label="in no part"))
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=9)
    fig.suptitle(f"{title}: where the time goes in one step", fontsize=11)
    save(fig, path)


def _time_formatter():
    from matplotlib.ticker import (
        FuncFormatter,  # matplotlib takes a second to import: only the report draws
    )

    return FuncFormatter(lambda x, _: fmt_time(x) if x > 0 else "0")
