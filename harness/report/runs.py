"""One section per `run` file: a bar chart per network, the run table per device, failures."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from harness.record import counts, summary
from harness.record import rows as records
from harness.record.results import Case
from harness.report import plots, state
from harness.report.fits import model_table
from harness.report.sources import Source, device_label, image, machine_label, origin
from harness.tables import markdown_table, md_code, md_escape


def section(source: Source, out_dir: Path, plot_dir: Path | None) -> str:
    run = source.run
    parts = [f"## Run: {source.file} · {machine_label(run)}", origin(source)]
    panels = dot_panels(source)
    if panels and plot_dir is not None:  # None: too many runs to draw each (report.render)
        chart = plot_dir / f"{source.name}-worked-example.png"
        plots.run_dots(machine_label(run, md=False), panels, chart)
        parts.append(image(chart, out_dir, "time per step per variant"))
    rows = summary.in_order(run, summary.derive(run))
    for device in run.devices():
        mine = [r for r in rows if r.case.device == device]
        parts += [f"### {device_label(run, device)}", summary_table(mine),
                  problem_list(r.case for r in mine), state.memory_table(run, device),
                  counts_table(run, device)]
    if run.notes:
        parts.append("Skipped: " + md_escape("; ".join(run.notes)) + ".")
    parts.append(model_table(source))
    return "\n\n".join(p for p in parts if p)


def summary_table(rows: list[summary.Row]) -> str:
    """The `run` table (harness.record.rows), in Markdown (the device is in the heading
    above)."""
    headers = records.headers()
    keep = [i for i, h in enumerate(headers) if h != "device"]
    table = [[cells[i] for i in keep] for cells in (records.row_cells(r, True) for r in rows)]
    return markdown_table([headers[i] for i in keep], table,
                          "".join(records.align()[i] for i in keep))


def counts_table(run, device: str) -> str:
    """The instructions per step of the cases counted under Valgrind (run --measure)."""
    table = counts.table(run, markdown=True, device=device)
    return f"{md_escape(counts.caption(run))}\n\n{table}" if table else ""


def problem_list(cases: Iterable[Case]) -> str:
    return "\n".join(f"- {md_code(c.label)} on {c.problem.label()}: **{c.status}**: "
                     f"{md_escape(c.reason or 'no reason recorded')}" for c in cases if not c.ok)


def dot_panels(source: Source) -> list[tuple[str, list[tuple[str, Case]]]]:
    """(network label, [(row label, case)]) per network, in the run's order."""
    run = source.run
    rows = summary.in_order(run, summary.derive(run))
    several = len({r.case.device for r in rows}) > 1
    panels: dict[str, list] = {}
    for r in rows:
        c = r.case
        if c.ok:
            label = f"{c.label} ({c.device})" if several else c.label
            panels.setdefault(r.network, []).append((label, c))
    return [(("worked example: " if n.startswith("1-1-1 ") else "") + n, b)
            for n, b in panels.items()]
