"""The machine's ceilings: matmul peaks per framework, device and dtype, and the serial limit."""

from __future__ import annotations

from harness.record.results import Case, Run
from harness.report.sources import Source, device_label, fmt_gflops, machine_label
from harness.tables import fmt_time, markdown_table, md_code, md_escape


def section(sources: list[Source]) -> str:
    parts = ["## Ceilings", "The fastest each machine can go: the measured matmul peak per "
             "framework, device and dtype (an n×n by n×n product is 2n³ FLOPs), and the serial "
             "chain of the 1-1-1 worked example run as a compiled loop."]
    for s in sources:
        parts += [f"### {s.file} · {machine_label(s.run)}", peak_table(s.run),
                  limit_lines(s.run)]
    return "\n\n".join(p for p in parts if p)


def peak_table(run: Run) -> str:
    rows = [[md_escape(p.framework), device_label(run, p.device), p.dtype, p.n,
             fmt_gflops(p.gflops) if p.gflops else f"error: {md_escape(p.error or '?')}"]
            for p in run.ceilings.matmul_peak]
    if not rows:
        return "No matmul peak was measured."
    return markdown_table(["framework", "device", "dtype", "n", "matmul GFLOP/s"], rows,
                          "lllrr")


def limit_case(run: Run) -> Case | None:
    """The ok case of the "limit" variant on the 1-1-1 network, if the run has one."""
    limits = set(run.with_role("limit"))
    return next((c for c in run.ok_cases() if c.variant in limits
                 and c.problem.is_worked_example), None)


def limit_lines(run: Run) -> str:
    lines = []
    case = limit_case(run)
    if case:
        lines.append(f"- the {md_code(case.variant)} loop ({case.problem.label()}): "
                     f"**{1e9 * case.median:.3g} ns/step**")
    gpu = set(run.with_role("gpu-limit"))
    for c in (c for c in run.ok_cases() if c.variant in gpu):
        lines.append(f"- the {md_code(c.variant)} kernel on {c.device} ({c.problem.label()}): "
                     f"**{1e9 * c.median:.3g} ns/step**, one launch per block of "
                     f"{c.timing.block_steps:,} steps")
    c_limit = run.ceilings.c_limit_s
    if c_limit:
        lines.append(f"- the C loop (gcc -O2): **{1e9 * c_limit:.3g} ns/step**")
    for floor in run.ceilings.call_floors:
        lines.append(f"- the floor of a call ({md_escape(floor.framework)}): "
                     f"{md_escape(floor.name)}, **{fmt_time(floor.per_call_s)}**")
    return "\n".join(lines)
