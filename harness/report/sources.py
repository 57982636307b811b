"""The results files a report is built from, and how the report names machines and devices.

Every text taken from a results file (host names, CPU names, file names, failure reasons)
goes through ``tables.md_escape`` before it lands in the Markdown.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.record.results import Run
from harness.record.store import safe_name
from harness.tables import md_code, md_escape
from implementations import registry


@dataclass(frozen=True)
class Source:
    """One valid results file and the name its plots are saved under."""

    path: Path
    run: Run
    name: str

    @property
    def command(self) -> str:
        return self.run.command

    @property
    def file(self) -> str:
        """The file name as inline code, escaped for a table."""
        return md_code(self.path.name)


def sources_of(loaded: list[tuple[Path, Run]]) -> list[Source]:
    """Sources sorted by machine, command and time, each with a unique plot name."""
    ordered = sorted(loaded, key=lambda pr: (machine_label(pr[1]), pr[1].command != "run",
                                             pr[1].created))
    sources, used = [], set()
    for path, run in ordered:
        name = safe_name(path.stem)
        while name in used:
            name += "-2"
        used.add(name)
        sources.append(Source(path, run, name))
    return sources


def single_device(sources: list[Source]) -> list[Source]:
    """The sources whose cases each ran on one device: not `scale` (data-parallel steps over
    N workers), which the single-device cost model and the GPU-vs-CPU crossovers leave out."""
    return [s for s in sources if s.command != "scale"]


def origin(source: Source) -> str:
    """'From `f.json`, measured at commit `abc` on 2026-11-29T...': which results a section
    is drawn from."""
    c = source.run.commit
    commit = f"commit {md_code(c.id[:10])}" if c.id else "an unknown commit"
    dirty = " (with uncommitted changes)" if c.dirty else ""
    return f"From {source.file}, measured at {commit}{dirty} on {md_escape(source.run.created)}."


def cpu_label(run: Run, md: bool = True) -> str:
    m = run.machine
    cores = m.usable_cores or m.cores
    name = m.cpu or "unknown CPU"
    return (md_escape(name) if md else name) + (f" ×{cores}" if cores else "")


def gpu_name(run: Run, md: bool = True) -> str:
    name = (run.machine.gpu or {}).get("name") or "unknown GPU"
    return md_escape(name) if md else name


def device_label(run: Run, device: str, md: bool = True) -> str:
    """'cpu · Intel(R) Xeon(R) Processor ×2' or 'cuda · NVIDIA H200' (escaped for Markdown
    unless ``md`` is False, as in a plot)."""
    if device == "cuda":
        return f"cuda · {gpu_name(run, md)}"
    return f"{md_escape(device) if md else device} · {cpu_label(run, md)}"


def machine_label(run: Run, md: bool = True) -> str:
    gpu = f" + {gpu_name(run, md)}" if run.machine.gpu else ""
    host = run.machine.hostname
    return f"{md_escape(host) if md else host} ({cpu_label(run, md)}{gpu})"


def settings(run: Run, framework: str) -> dict:
    record = run.frameworks.get(framework)
    return (record.settings if record else None) or {}


def variant_rank(name: str) -> tuple[int, str]:
    """Sort key: registry order, unknown names last."""
    order = list(registry.VARIANTS)
    return (order.index(name) if name in order else len(order), name)


def variant_order(names: Iterable[str]) -> list[str]:
    return sorted(set(names), key=variant_rank)


def fmt_gflops(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "—" if x is None else "∞"
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def fmt_pct(x: float | None) -> str:
    if x is None:
        return "—"
    if 0 < x < 0.01:
        return "<0.01%"
    return f"{x:.0f}%" if x >= 10 else f"{x:.2g}%"


def fmt_width(d: float | None) -> str:
    if d is None:
        return "—"
    if math.isinf(d):
        return "never"
    return "0 (no overhead)" if d == 0 else f"{d:,.0f}"


def fmt_measured_width(d: float | None, lo: float, hi: float) -> str:
    """fmt_width, marked "(extrapolated; ...)" when d lies outside the measured [lo, hi]."""
    text = fmt_width(d)
    if d is None or d == 0 or not math.isfinite(d):
        return text
    if round(d) < round(lo):
        return f"{text} (extrapolated; fitted from {lo:.0f})"
    if round(d) > round(hi):
        return f"{text} (extrapolated; measured up to {hi:.0f})"
    return text


def rel_link(path: Path, out_dir: Path) -> str:
    return Path(os.path.relpath(path, out_dir)).as_posix()


def image(path: Path, out_dir: Path, alt: str) -> str:
    return f"![{alt}]({rel_link(path, out_dir)})"
