"""The report's plots (``plots_ladder`` draws the ladder's and a step's parts): with it, the
only modules that import matplotlib.

Each variant has one colour everywhere, from its place in the registry (the palette wraps
around). Every PNG is saved with the metadata ``Software: backprop-bench report``, so that a
later report knows which files in its plots folder are its own to overwrite.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from harness.analysis import cost as model
from harness.record.results import Case
from harness.record.summary import fmt_bytes
from harness.tables import fmt_time
from implementations import registry

DPI = 120
SOFTWARE = "backprop-bench report"
# matplotlib's tab20 then tab20b: 40 colours, so that variants rarely share one
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
           "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5", "#393b79",
           "#637939", "#8c6d31", "#843c39", "#7b4173", "#5254a3", "#8ca252", "#bd9e39",
           "#ad494a", "#a55194", "#6b6ecf", "#b5cf6b", "#e7ba52", "#d6616b", "#ce6dbd",
           "#9c9ede", "#cedb9c", "#e7cb94", "#e7969c", "#de9ed6"]


def color_of(variant: str) -> str:
    """The variant's colour, the same in every plot: by its registry position, wrapping
    around the palette; grey for a name this registry does not know."""
    names = list(registry.VARIANTS)
    return PALETTE[names.index(variant) % len(PALETTE)] if variant in names else "grey"


def is_ours(path: Path) -> bool:
    """True if ``path`` is a PNG written by this report (its Software metadata says so)."""
    try:
        from PIL import Image  # Pillow comes with matplotlib: only the report reads its PNGs

        with Image.open(path) as image:
            return image.info.get("Software") == SOFTWARE
    except Exception:
        return False


def new_figure(width: float, height: float):
    import matplotlib  # matplotlib takes a second to import: only the report draws
    from matplotlib.figure import (
        Figure,  # matplotlib takes a second to import: only the report draws
    )

    # every label is plain text: a "$...$" in a stored name is shown, never read as mathtext
    # (where an unknown macro is an error)
    matplotlib.rcParams["text.parse_math"] = False
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save(fig, path: Path) -> None:
    fig.savefig(path, dpi=DPI, metadata={"Software": SOFTWARE})


# ---- run files: medians with their IQR, per network ---------------------------------------------

KIND_MARKERS = {"idiomatic": "o", "optimised": "D"}


def run_dots(title: str, panels: list[tuple[str, list[tuple[str, Case]]]], path: Path) -> None:
    """Per network (label, [(row label, case)]): each case's per-step median as a dot with
    its IQR as a whisker, on a log time axis (dots, not bars: a bar's length on a log axis
    depends on where the axis starts). Colour: the variant; shape: idiomatic (circle) or
    optimised (diamond); hollow: noisy (IQR over 10%) or disturbed."""
    fig = new_figure(7.5, 1.0 + sum(0.3 * len(rows) + 0.7 for _, rows in panels))
    axes = fig.subplots(len(panels), 1, squeeze=False,
                        gridspec_kw={"height_ratios": [len(r) + 1.5 for _, r in panels]})[:, 0]
    for ax, (label, rows) in zip(axes, panels):
        draw_dots(ax, rows)
        ax.set_title(label, fontsize=10, loc="left")
    axes[-1].set_xlabel("time per SGD step: median, whiskers from the 25th to the 75th "
                        "percentile (log scale)", fontsize=9)
    dot_legend(fig)
    fig.suptitle(f"{title}: time per step per variant", fontsize=11)
    save(fig, path)


def draw_dots(ax, rows: list[tuple[str, Case]]) -> None:
    y = np.arange(len(rows))
    lows, highs = [], []
    for yi, (_, c) in zip(y, rows):
        t = c.timing
        lo, hi = min(t.q1, t.median), max(t.q3, t.median)
        lows.append(lo)
        highs.append(hi)
        color = color_of(c.variant)
        hollow = c.noisy or c.disturbed
        ax.errorbar(t.median, yi, xerr=[[t.median - lo], [hi - t.median]],
                    fmt=KIND_MARKERS.get(c.kind, "o"), color=color, ms=6, capsize=3,
                    mfc="white" if hollow else color)
        ax.text(hi * 1.25, yi, fmt_time(t.median) + ("  noisy" if c.noisy else ""),
                va="center", fontsize=8)
    ax.set_yticks(y, [label for label, _ in rows], fontsize=9)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(min(lows) / 3, max(highs) * 20)
    time_axis(ax.xaxis)
    ax.grid(True, axis="x", which="major", alpha=0.3)


def time_axis(axis) -> None:
    """Ticks at powers of ten, labelled as the tables write times (5.7 ns, 3.15 µs, 25 ms)."""
    from matplotlib.ticker import (  # matplotlib takes a second to import: only the report draws
        FuncFormatter,
        LogLocator,
    )

    axis.set_major_locator(LogLocator(base=10))
    axis.set_major_formatter(FuncFormatter(lambda x, _: fmt_time(x)))


def dot_legend(fig) -> None:
    from matplotlib.lines import (
        Line2D,  # matplotlib takes a second to import: only the report draws
    )

    handles = [Line2D([], [], marker=m, ls="", color="grey", label=kind)
               for kind, m in KIND_MARKERS.items()]
    handles.append(Line2D([], [], marker="o", ls="", color="grey", mfc="white",
                          label="noisy or disturbed"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9)


# ---- sweep files: time and % of peak against size ---------------------------------------------

def ok_points(cases: dict[int, Case]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(widths, FLOPs, seconds per step) of the ok cases, by width."""
    ok = sorted((d, c) for d, c in cases.items() if c.ok)
    return (np.array([d for d, _ in ok], dtype=float),
            np.array([c.flops_per_step for _, c in ok], dtype=float),
            np.array([c.median for _, c in ok], dtype=float))


def device_axes(fig, n: int):
    return fig.subplots(1, n, sharey=True, squeeze=False)[0]


def sweep_times(title: str, shape: model.GroupKey, by_device: dict, panel_titles: dict,
                fits: dict[model.GroupKey, model.Fit], order, path: Path) -> None:
    """Log-log µs per step against FLOPs per step, measured (solid) and fitted (dashed, over
    the fitted points only); ``shape`` has no variant or device, ``fits`` are by group,
    ``by_device`` is {device: {variant: {d: case}}}."""
    from matplotlib.lines import (
        Line2D,  # matplotlib takes a second to import: only the report draws
    )

    fig = new_figure(5.6 * len(by_device) + 1.6, 4.6)
    left_out = False
    for ax, (device, by_variant) in zip(device_axes(fig, len(by_device)), by_device.items()):
        for variant in order(by_variant):
            fit = fits.get(dataclasses.replace(shape, variant=variant, device=device))
            left_out |= bool(fit and fit.left_out)
            draw_time_line(ax, variant, by_variant[variant], fit)
        ax.set_xscale("log")
        ax.set_yscale("log")
        time_axis(ax.yaxis)
        add_width_axis(ax, shape, sorted({d for cases in by_variant.values() for d in cases}))
        ax.set_xlabel("FLOPs per step (6 · batch · weights)")
        ax.set_title(panel_titles[device], fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    fig.axes[0].set_ylabel("time per step")
    label = "fit: overhead + FLOPs/throughput" + ("\n(d = 1 left out)" if left_out else "")
    legend(fig, order, [Line2D([], [], color="grey", ls="--", label=label)])
    fig.suptitle(title, fontsize=11)
    save(fig, path)


def draw_time_line(ax, variant: str, cases: dict[int, Case], fit: model.Fit | None) -> None:
    _, flops, seconds = ok_points(cases)
    if not len(flops):
        return
    ax.plot(flops, seconds, "o-", color=color_of(variant), label=variant, ms=4)
    if fit is not None:  # over the fitted points only (the d = 1 point may be left out)
        grid = np.geomspace(*fit.flops_range, 100)
        ax.plot(grid, fit.predict(grid), "--", color=color_of(variant), lw=1)


def add_width_axis(ax, shape: model.GroupKey, widths: list[int]) -> None:
    """A top axis with the measured widths d of the [d]×(depth+1) networks at their FLOPs."""
    k = 6 * shape.batch * shape.depth
    top = ax.secondary_xaxis("top", functions=(lambda F: np.sqrt(np.maximum(F, 1e-12) / k),
                                               lambda d: k * np.asarray(d) ** 2))
    top.set_xticks(widths, [str(d) for d in widths], fontsize=7)
    top.set_xlabel("width d", fontsize=9)


def legend(fig, order, extra: list | None = None) -> None:
    """One legend for all panels, outside them on the right, one entry per label."""
    seen = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    labels = order(seen)
    handles = [seen[n] for n in labels] + (extra or [])
    if not handles:
        return
    fig.legend(handles=handles, labels=labels + [h.get_label() for h in extra or []],
               loc="outside right center", fontsize=9)


def sweep_peak(title: str, by_device: dict, panels: dict, order, path: Path) -> None:
    """% of the machine's matmul peak against width d; ``panels`` is {device: (title, peak
    GFLOP/s)} for the devices that have a peak."""
    fig = new_figure(5.6 * len(panels) + 1.6, 4.3)
    for ax, device in zip(device_axes(fig, len(panels)), panels):
        panel_title, best = panels[device]
        by_variant = by_device[device]
        for variant in order(by_variant):
            widths, flops, seconds = ok_points(by_variant[variant])
            if len(widths):
                pct = 100 * flops / seconds / 1e9 / best
                ax.plot(widths, pct, "o-", color=color_of(variant), label=variant, ms=4)
        ax.set_xscale("log", base=2)
        ticks = sorted({d for cases in by_variant.values() for d in cases})
        ax.set_xticks(ticks, [str(d) for d in ticks])
        ax.tick_params(axis="x", labelrotation=45)
        ax.set_xlabel("width d")
        ax.set_title(panel_title, fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    fig.axes[0].set_ylabel("% of the machine's matmul peak")
    legend(fig, order)
    fig.suptitle(title, fontsize=11)
    save(fig, path)


FLOOR_BYTES = 1024  # a log axis has no 0: a step that adds nothing is drawn here, hollow


def sweep_memory(title: str, by_variant: dict[str, dict[int, Case]], order, path: Path) -> None:
    """Bytes a warm step and the first call add, against width d, with the network's
    minimum (parameters, gradients, activations) as a line; one panel each."""
    fig = new_figure(12.5, 4.3)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, name in zip(axes, ("warm_call_added_bytes", "first_call_added_bytes"),
                             ("a warm step adds", "the first call adds")):
        minimum = {}
        for variant in order(by_variant):
            points = sorted((d, c.memory[key], c.memory["minimum_bytes"])
                            for d, c in by_variant[variant].items()
                            if c.ok and c.memory and c.memory.get(key) is not None)
            if not points:
                continue
            widths = np.array([p[0] for p in points], dtype=float)
            added = np.array([max(p[1], FLOOR_BYTES) for p in points], dtype=float)
            ax.plot(widths, added, "-", color=color_of(variant), label=variant, lw=1)
            zero = np.array([p[1] < FLOOR_BYTES for p in points])
            ax.plot(widths[~zero], added[~zero], "o", color=color_of(variant), ms=4)
            ax.plot(widths[zero], added[zero], "o", mfc="none", color=color_of(variant), ms=4)
            minimum.update({p[0]: p[2] for p in points})
        if minimum:
            ds = sorted(minimum)
            ax.plot(ds, [minimum[d] for d in ds], "k--", lw=1.5, label="minimum the network needs")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ticks = sorted({d for cases in by_variant.values() for d in cases})
        ax.set_xticks(ticks, [str(d) for d in ticks])
        ax.tick_params(axis="x", labelrotation=45)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("width d")
        ax.yaxis.set_major_locator(_byte_locator())
        ax.yaxis.set_major_formatter(_bytes_formatter())
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel(f"bytes (hollow: adds nothing, drawn at {FLOOR_BYTES // 1024} KiB)")
    legend(fig, lambda names: order(n for n in names if n in by_variant)
           + [n for n in names if n not in by_variant])
    fig.suptitle(title, fontsize=11)
    save(fig, path)


def _byte_locator():
    from matplotlib.ticker import (
        LogLocator,  # matplotlib takes a second to import: only the report draws
    )

    return LogLocator(base=4, numticks=12)


def _bytes_formatter():
    from matplotlib.ticker import (
        FuncFormatter,  # matplotlib takes a second to import: only the report draws
    )


    return FuncFormatter(lambda y, _: fmt_bytes(y))


# ---- scale files: efficiency against workers ----------------------------------------------------

def scaling_efficiency(title: str, panels: dict[str, dict[str, tuple[list, list, list]]],
                       path: Path) -> None:
    """Efficiency against N, one panel per scaling mode: measured solid, predicted dashed,
    one colour per line ({panel: {label: (workers, measured, predicted)}}; None is a gap)."""
    from matplotlib.lines import (
        Line2D,  # matplotlib takes a second to import: only the report draws
    )

    fig = new_figure(5.2 * len(panels) + 1.8, 4.2)
    labels = list(dict.fromkeys(label for lines in panels.values() for label in lines))
    for ax, (name, lines) in zip(device_axes(fig, len(panels)), panels.items()):
        for label, (ns, measured, predicted) in lines.items():
            color = PALETTE[labels.index(label) % len(PALETTE)]
            for values, style in ((measured, "o-"), (predicted, "s--")):
                pts = [(n, 100 * v) for n, v in zip(ns, values) if v is not None]
                if pts:
                    ax.plot(*zip(*pts), style, color=color, ms=4,
                            label=label if style == "o-" else None)
        ticks = sorted({n for ns, _, _ in lines.values() for n in ns})
        ax.set_xticks(ticks, [str(n) for n in ticks])
        ax.axhline(100, color="grey", lw=0.8)
        ax.set_xlabel("workers N")
        ax.set_title(name, fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    fig.axes[0].set_ylabel("efficiency (% of N × one worker)")
    legend(fig, lambda names: [n for n in labels if n in names],
           [Line2D([], [], color="grey", ls="-", marker="o", label="measured"),
            Line2D([], [], color="grey", ls="--", marker="s", label="predicted")])
    fig.suptitle(title, fontsize=11)
    save(fig, path)
