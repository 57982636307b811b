"""`backprop-bench report`: results/REPORT.md and its plots, from stored results files only.

Nothing is measured here and neither torch nor jax is imported: every number comes from the
JSON files (see ``harness.results``), every derived column from ``harness.summary`` and
``harness.model``. Files from several machines merge into one report, each section labelled
with its machine and device. A file that cannot be read is named in a warning and left out;
the others still make the report.

The report has: where the numbers come from (files, machines, software, settings, how FLOPs
are counted), the machine's ceilings, one section per `run` file (tables per device and a bar
chart of the worked example), one per `sweep` file (time and GFLOP/s by width, the cost model
and two plots), where a GPU starts beating a CPU, the compile costs, and the API of the three
frameworks side by side, read from their source files at report time.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import os
import sys
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness import model, results, summary
from harness.results import ResultsError
from harness.tables import fmt_time, markdown_table
from implementations import registry

DEFAULT_DIR = "results"
DEFAULT_OUT = "REPORT.md"
DPI = 120
FLOPS_NOTE = ("FLOPs are counted as 6 · batch · weights per SGD step: 2 for the forward "
              "matmuls, 4 for the backward ones (input and weight gradients). Elementwise work "
              "(activations, loss, the update) is not counted; it is what makes small networks "
              "overhead-bound.")
MODULE_FRAMEWORK = {registry.module_name(name).rsplit(".", 1)[-1]: name for name in registry.FRAMEWORKS}
COLORS = dict(zip(registry.VARIANTS, [f"C{i}" for i in range(10)]))


@dataclass(frozen=True)
class Source:
    """One valid results file and the name its plots are saved under."""

    path: Path
    run: dict
    name: str

    @property
    def command(self) -> str:
        return self.run["command"]

    def devices(self) -> list[str]:
        found = {c["device"] for c in self.run["cases"]}
        return sorted(found, key=lambda d: (d != "cpu", d))


# ---- entry points -----------------------------------------------------------------------------

def build_report(paths: Sequence[str | Path], out: str | Path) -> Path:
    """Write the Markdown report and its plots (in plots/ beside it); return its path."""
    out = check_out(out)
    paths = [str(p) for p in paths] or [DEFAULT_DIR]
    loaded, problems = usable(*results.load_many(paths))
    for problem in problems:
        print(f"backprop-bench report: warning: {problem}; left out", file=sys.stderr)
    if not loaded:
        raise ResultsError(no_valid_message(paths, problems))
    plots = out.parent / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    text = render(sources_of(loaded), problems, out.parent, plots)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    return out


def check_out(out: str | Path) -> Path:
    """The report path, or ResultsError (one line) if it is a folder or not a *.md file; this
    runs before anything is written."""
    out = Path(out)
    if out.is_dir():
        raise ResultsError(f"report --out must be a Markdown file path (*.md), not {out} "
                           f"(a directory)")
    if out.suffix.lower() != ".md":
        raise ResultsError(f"report --out must be a Markdown file path (*.md), not {out}")
    return out


PROBLEM_FIELDS = ("widths", "activation", "dtype", "batch")
PER_STEP_FIELDS = ("median_s", "iqr_s", "min_s", "noisy")
TIMING_FIELDS = ("first_call_s", "compile_s")


def usable(loaded: list[tuple[Path, dict]],
           problems: list[str]) -> tuple[list[tuple[Path, dict]], list[str]]:
    """Move files lacking a field the report reads (beyond results.validate) to problems."""
    good, problems = [], list(problems)
    for path, run in loaded:
        missing = missing_field(run)
        if missing:
            problems.append(f"{path}: missing or malformed field {missing}")
        else:
            good.append((path, run))
    return good, problems


def missing_field(run: dict) -> str | None:
    """The first field the report needs that the run lacks, or None."""
    if not isinstance(run["machine"], dict) or not isinstance(run["config"], dict):
        return "machine" if not isinstance(run["machine"], dict) else "config"
    for i, c in enumerate(run["cases"]):
        need = [f"problem.{k}" for k in PROBLEM_FIELDS if k not in (c["problem"] or {})]
        if c["status"] == "ok":
            t = c.get("timing") or {}
            per_step = t.get("per_step") or {}
            need += ["flops_per_step"] * ("flops_per_step" not in c)
            need += [f"timing.{k}" for k in TIMING_FIELDS if k not in t]
            need += [f"timing.per_step.{k}" for k in PER_STEP_FIELDS if k not in per_step]
            if "median_s" in per_step and summary.median_of(c) is None:
                need.append("timing.per_step.median_s")  # zero, negative or not a number
        if need:
            return f"{need[0]} (case {i})"
    return None


def no_valid_message(paths: Sequence[str], problems: list[str]) -> str:
    where = ", ".join(paths)
    if not any(Path(p).exists() for p in paths):
        return f"no results files found in {where}: no such file or folder"
    if not problems:
        return f"no results files found in {where}"
    return f"no valid results file in {where} ({len(problems)} left out; first: {problems[0]})"


def cmd_report(args) -> int:
    """Build the report and print where it is."""
    out = Path(args.out) if args.out else Path(DEFAULT_DIR) / DEFAULT_OUT
    print(f"report: {build_report(args.paths, out)}")
    return 0


def register(subparsers) -> None:
    """Add the `report` subcommand to the CLI's subparsers."""
    p = subparsers.add_parser("report", help="build results/REPORT.md and its plots from stored "
                              "results files (nothing is re-measured)")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help=f"results files or folders of them (default: {DEFAULT_DIR}/)")
    p.add_argument("--out", metavar="FILE",
                   help=f"the Markdown file; plots go in plots/ beside it "
                        f"(default: {DEFAULT_DIR}/{DEFAULT_OUT})")
    p.set_defaults(func=cmd_report)


def sources_of(loaded: list[tuple[Path, dict]]) -> list[Source]:
    """Sources sorted by machine, command and time, each with a unique plot name."""
    ordered = sorted(loaded, key=lambda pr: (machine_label(pr[1]), pr[1]["command"] != "run",
                                             str(pr[1].get("created"))))
    sources, used = [], set()
    for path, run in ordered:
        name = "".join(c if c.isalnum() or c in "-_" else "-" for c in path.stem)
        while name in used:
            name += "-2"
        used.add(name)
        sources.append(Source(path, run, name))
    return sources


def render(sources: list[Source], problems: list[str], out_dir: Path, plots: Path) -> str:
    """The whole Markdown text."""
    parts = [title(sources), provenance(sources, problems), ceilings_section(sources)]
    parts += [run_section(s, out_dir, plots) for s in sources if s.command != "sweep"]
    parts += [sweep_section(s, out_dir, plots) for s in sources if s.command == "sweep"]
    parts += [gpu_vs_cpu_section(sources), compile_section(sources), api_section()]
    return "\n\n".join(p for p in parts if p) + "\n"


# ---- labels and small formatters --------------------------------------------------------------

def cpu_label(machine: dict) -> str:
    cores = machine.get("usable_cores") or machine.get("cores")
    return f"{machine.get('cpu') or 'unknown CPU'}" + (f" ×{cores}" if cores else "")


def gpu_name(run: dict) -> str:
    return (run["machine"].get("gpu") or {}).get("name") or "unknown GPU"


def device_label(run: dict, device: str) -> str:
    """'cpu · Intel(R) Xeon(R) Processor ×2' or 'cuda · NVIDIA H200'."""
    if device == "cuda":
        return f"cuda · {gpu_name(run)}"
    return f"{device} · {cpu_label(run['machine'])}"


def machine_label(run: dict) -> str:
    m = run["machine"]
    gpu = f" + {gpu_name(run)}" if m.get("gpu") else ""
    return f"{m.get('hostname', '?')} ({cpu_label(m)}{gpu})"


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


def rel_link(path: Path, out_dir: Path) -> str:
    return Path(os.path.relpath(path, out_dir)).as_posix()


def image(path: Path, out_dir: Path, alt: str) -> str:
    return f"![{alt}]({rel_link(path, out_dir)})"


def settings(run: dict, framework: str) -> dict:
    return ((run.get("frameworks") or {}).get(framework) or {}).get("settings") or {}


# ---- where the numbers come from --------------------------------------------------------------

def title(sources: list[Source]) -> str:
    machines = sorted({machine_label(s.run) for s in sources})
    return (f"# backprop-bench report\n\nBuilt from {len(sources)} stored results file(s) from "
            f"{len(machines)} machine(s); nothing was re-measured. Regenerate with "
            f"`backprop-bench report`.")


def provenance(sources: list[Source], problems: list[str]) -> str:
    parts = ["## Where the numbers come from", files_table(sources)]
    if problems:
        parts.append("Left out (could not be read):\n\n" + "\n".join(f"- {p}" for p in problems))
    parts += ["### Machines", machines_table(sources), "### Software", software_table(sources),
              "### Settings", settings_table(sources), "### How FLOPs are counted", FLOPS_NOTE]
    return "\n\n".join(parts)


def files_table(sources: list[Source]) -> str:
    rows = []
    for s in sources:
        run, commit = s.run, s.run.get("commit") or {}
        dirty = " (dirty)" if commit.get("dirty") else ""
        counts = {st: sum(c["status"] == st for c in run["cases"]) for st in results.STATUSES}
        state = " (interrupted)" if run.get("interrupted") else ""
        rows.append([f"`{s.path.name}`", run["command"] + state,
                     "; ".join(device_label(run, d) for d in s.devices()),
                     run.get("created", "—"),
                     f"`{str(commit.get('id') or '?')[:10]}`{dirty}",
                     " / ".join(str(counts[st]) for st in results.STATUSES)])
    return markdown_table(["file", "command", "devices", "created", "commit",
                           "ok / failed / unavailable"], rows, "lllllr")


def machines_table(sources: list[Source]) -> str:
    rows = {}
    for s in sources:
        m, gpu = s.run["machine"], s.run["machine"].get("gpu") or {}
        rows[machine_label(s.run)] = [m.get("hostname"), m.get("cpu"), m.get("cores"),
                                      m.get("usable_cores"), m.get("memory_gb"), m.get("os"),
                                      gpu.get("name", "—"), gpu.get("driver", "—"),
                                      gpu.get("cuda", settings(s.run, "torch").get("cuda")
                                              or "—")]
    return markdown_table(["host", "CPU", "cores", "usable", "memory (GB)", "OS", "GPU",
                           "driver", "CUDA"], list(rows.values()), "llrrrllll")


def blas(run: dict) -> str:
    pools = settings(run, "numpy").get("blas") or []
    return ", ".join(f"{p.get('internal_api')} {p.get('version')}"
                     + (f" ({p['architecture']})" if p.get("architecture") else "")
                     for p in pools) or "—"


def software_table(sources: list[Source]) -> str:
    keys = ("python", "numpy", "torch", "jax", "jaxlib", "numba")
    rows = [[f"`{s.path.name}`", *(s.run["software"].get(k) or "—" for k in keys), blas(s.run)]
            for s in sources]
    return markdown_table(["file", *keys, "BLAS"], rows, "l" * (len(keys) + 2))


def settings_table(sources: list[Source]) -> str:
    rows = []
    for s in sources:
        run, torch = s.run, settings(s.run, "torch")
        overhead = (run.get("ceilings") or {}).get("engine_overhead") or {}
        frac = overhead.get("fraction_of_block")
        rows.append([f"`{s.path.name}`", run["config"].get("threads", "—"),
                     tf32(torch), settings(run, "jax").get("matmul_precision", "—"),
                     timing_text(run["config"].get("timing") or {}),
                     "—" if frac is None else f"{100 * frac:.2g}%"])
    return markdown_table(["file", "threads", "torch TF32 (matmul / cuDNN)",
                           "JAX matmul precision", "timing", "engine overhead (% of a block)"],
                          rows, "lrlllr")


def tf32(torch: dict) -> str:
    if "tf32_matmul" not in torch:
        return "—"
    on = {True: "on", False: "off", None: "—"}
    return f"{on[torch.get('tf32_matmul')]} / {on[torch.get('tf32_cudnn')]}"


def timing_text(t: dict) -> str:
    if not t:
        return "—"
    return (f"blocks of ≥ {1e3 * t.get('target_block_s', 0):g} ms, ≥ {t.get('min_blocks')} "
            f"blocks and {t.get('budget_s'):g} s per case, {t.get('warmup_blocks')} warm-up")


# ---- ceilings ---------------------------------------------------------------------------------

def peaks(run: dict) -> list[dict]:
    """The run's matmul peaks with framework names as in the registry (numpy, torch, jax)."""
    out = []
    for p in (run.get("ceilings") or {}).get("matmul_peak") or []:
        fw = MODULE_FRAMEWORK.get(p.get("framework"), p.get("framework"))
        out.append({**p, "framework": fw})
    return out


def peak_of(run: dict, framework: str, device: str, dtype: str) -> float | None:
    """The best measured GFLOP/s of one framework's matmul on a device and dtype."""
    found = [p["gflops"] for p in peaks(run) if "gflops" in p and p["framework"] == framework
             and p["device"] == device and p["dtype"] == dtype]
    return max(found) if found else None


def machine_peak(run: dict, device: str, dtype: str) -> tuple[float, str] | None:
    """(GFLOP/s, framework) of the best matmul on a device and dtype across frameworks."""
    found = [(p["gflops"], p["framework"]) for p in peaks(run)
             if "gflops" in p and p["device"] == device and p["dtype"] == dtype]
    return max(found) if found else None


def limit_case(run: dict) -> dict | None:
    """The ok `limit` case on the 1-1-1 network, if the run has one."""
    return next((c for c in summary.ok_cases(run) if c["variant"] == "limit"
                 and c["problem"]["widths"] == [1, 1, 1]), None)


def ceilings_section(sources: list[Source]) -> str:
    parts = ["## Ceilings", "The fastest each machine can go: the measured matmul peak per "
             "framework, device and dtype (an n×n by n×n product is 2n³ FLOPs), and the serial "
             "chain of the 1-1-1 worked example run as a compiled loop."]
    for s in sources:
        parts += [f"### `{s.path.name}` · {machine_label(s.run)}", peak_table(s.run),
                  limit_lines(s.run)]
    return "\n\n".join(p for p in parts if p)


def peak_table(run: dict) -> str:
    rows = [[p["framework"], device_label(run, p["device"]), p["dtype"], p.get("n", "—"),
             fmt_gflops(p["gflops"]) if "gflops" in p else f"error: {p.get('error', '?')}"]
            for p in peaks(run)]
    if not rows:
        return "No matmul peak was measured."
    return markdown_table(["framework", "device", "dtype", "n", "matmul GFLOP/s"], rows,
                          "lllrr")


def limit_lines(run: dict) -> str:
    lines = []
    case = limit_case(run)
    if case:
        ns = 1e9 * case["timing"]["per_step"]["median_s"]
        lines.append(f"- the `limit` loop (numba, {summary.network_label(case['problem'])}): "
                     f"**{ns:.3g} ns/step**")
    c_limit = (run.get("ceilings") or {}).get("c_limit") or {}
    if "ns_per_step" in c_limit:
        lines.append(f"- the C loop (gcc -O2): **{c_limit['ns_per_step']:.3g} ns/step**")
    return "\n".join(lines)


# ---- run files --------------------------------------------------------------------------------

def run_section(source: Source, out_dir: Path, plots: Path) -> str:
    run = source.run
    parts = [f"## Run: `{source.path.name}` · {machine_label(run)}"]
    chart = plots / f"{source.name}-worked-example.png"
    if plot_run_bars(run, chart):
        parts.append(image(chart, out_dir, "time per step per variant"))
    rows = summary.in_order(run, summary.derive(run))
    for device in source.devices():
        parts += [f"### {device_label(run, device)}",
                  summary_table([r for r in rows if r["case"]["device"] == device]),
                  problem_list([r["case"] for r in rows if r["case"]["device"] == device])]
    notes = run.get("notes") or []
    if notes:
        parts.append("Skipped: " + "; ".join(notes) + ".")
    parts.append(model_table(source))
    return "\n\n".join(p for p in parts if p)


def summary_table(rows: list[dict]) -> str:
    """The `run` table of harness.summary, in Markdown (the device is in the heading above)."""
    keep = [i for i, h in enumerate(summary.HEADERS) if h != "device"]
    table = [[cells[i] for i in keep] for cells in (summary.row_cells(r, True) for r in rows)]
    return markdown_table([summary.HEADERS[i] for i in keep], table,
                          "".join(summary.ALIGN[i] for i in keep))


def problem_list(cases: Iterable[dict]) -> str:
    bad = [c for c in cases if c["status"] != "ok"]
    return "\n".join(f"- `{c['variant']}` on {summary.network_label(c['problem'])}: "
                     f"**{c['status']}**: {c.get('reason') or 'no reason recorded'}" for c in bad)


def plot_run_bars(run: dict, path: Path) -> bool:
    """Horizontal bars of per-step time, one panel per network (the worked example first)."""
    panels = bar_panels(run)
    if not panels:
        return False
    fig = new_figure(7.5, 0.8 + sum(0.32 * len(b) + 0.7 for _, b in panels))
    axes = fig.subplots(len(panels), 1, squeeze=False,
                        gridspec_kw={"height_ratios": [len(b) + 1.5 for _, b in panels]})[:, 0]
    for ax, (label, bars) in zip(axes, panels):
        draw_bars(ax, bars)
        ax.set_title(label, fontsize=10, loc="left")
    axes[-1].set_xlabel("time per SGD step (log scale)")
    bar_legend(fig, any(c["device"] != "cpu" for _, bars in panels for _, _, c in bars))
    fig.suptitle(f"{machine_label(run)}: time per step per variant", fontsize=11)
    save(fig, path)
    return True


def bar_panels(run: dict) -> list[tuple[str, list[tuple[str, float, dict]]]]:
    """(network label, [(bar label, seconds, case)]) per network, in the run's order."""
    rows = summary.in_order(run, summary.derive(run))
    several = len({r["case"]["device"] for r in rows}) > 1
    panels: dict[str, list] = {}
    for r in rows:
        c = r["case"]
        if c["status"] == "ok":
            label = f"{c['variant']} ({c['device']})" if several else c["variant"]
            panels.setdefault(r["network"], []).append((label, r["median"], c))
    return [(("worked example: " if n.startswith("1-1-1 ") else "") + n, b)
            for n, b in panels.items()]


KIND_COLORS = {"idiomatic": "C0", "optimised": "C1"}


def draw_bars(ax, bars: list[tuple[str, float, dict]]) -> None:
    """Bars coloured by kind (idiomatic, optimised), hatched on a GPU, labelled with times."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    y = np.arange(len(bars))
    times = [t for _, t, _ in bars]
    for yi, (_, t, c) in zip(y, bars):
        ax.barh(yi, t, color=KIND_COLORS.get(c.get("kind"), "grey"),
                hatch="//" if c["device"] != "cpu" else None, edgecolor="white")
        ax.text(t * 1.15, yi, fmt_time(t), va="center", fontsize=8)
    ax.set_yticks(y, [label for label, _, _ in bars], fontsize=9)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(min(times) / 3, max(times) * 12)
    ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: fmt_time(x)))
    ax.grid(True, axis="x", which="major", alpha=0.3)


def bar_legend(fig, gpu: bool) -> None:
    """Kinds by colour (and GPU by hatching), below the panels so that no bar is covered."""
    from matplotlib.patches import Patch

    handles = [Patch(color=col, label=kind) for kind, col in KIND_COLORS.items()]
    if gpu:
        handles.append(Patch(facecolor="grey", hatch="//", edgecolor="white", label="on the GPU"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9)


# ---- sweep files ------------------------------------------------------------------------------

def square_width(problem: dict) -> int | None:
    w = problem["widths"]
    return w[0] if len(set(w)) == 1 else None


def sweep_groups(run: dict) -> dict[model.GroupKey, dict[str, dict[int, dict]]]:
    """{shape (a GroupKey with no variant): {variant: {d: case}}} for square networks, where
    a shape has at least two widths."""
    groups: dict[model.GroupKey, dict[str, dict[int, dict]]] = {}
    for c in run["cases"]:
        d = square_width(c["problem"])
        if d is not None:
            shape = dataclasses.replace(model.group_key(c), variant="")
            groups.setdefault(shape, {}).setdefault(c["variant"], {})[d] = c
    return {k: v for k, v in groups.items()
            if len({d for cases in v.values() for d in cases}) >= 2}


def variant_rank(name: str) -> tuple[int, str]:
    """Sort key: registry order, unknown names last."""
    order = list(registry.VARIANTS)
    return (order.index(name) if name in order else len(order), name)


def variant_order(names: Iterable[str]) -> list[str]:
    return sorted(set(names), key=variant_rank)


def sweep_section(source: Source, out_dir: Path, plots: Path) -> str:
    run = source.run
    parts = [f"## Sweep: `{source.path.name}` · {machine_label(run)}"]
    fits = {f.group: f for f in model.fit_cases(run["cases"])}
    for shape, by_variant in sweep_groups(run).items():
        parts.append(f"### {shape_label(shape)} · {device_label(run, shape.device)}")
        parts += [sweep_time_table(by_variant), sweep_gflops_table(run, shape, by_variant),
                  problem_list(c for cases in by_variant.values() for c in cases.values())]
    parts += sweep_plots(source, fits, out_dir, plots)
    parts.append(model_table(source))
    return "\n\n".join(p for p in parts if p)


def shape_label(shape: model.GroupKey) -> str:
    bias = "+b" if shape.bias else ""
    return (f"[d]×{shape.depth + 1} {shape.activation}{bias} {shape.dtype}, "
            f"batch {shape.batch}")


def cell_status(case: dict | None) -> str | None:
    if case is None:
        return "—"
    return None if case["status"] == "ok" else case["status"]


def median(case: dict) -> float:
    return case["timing"]["per_step"]["median_s"]


def widths_of(by_variant: dict[str, dict[int, dict]]) -> list[int]:
    return sorted({d for cases in by_variant.values() for d in cases})


def sweep_time_table(by_variant: dict[str, dict[int, dict]]) -> str:
    names = variant_order(by_variant)
    rows = []
    for d in widths_of(by_variant):
        cells = [by_variant[v].get(d) for v in names]
        rows.append([d, *(cell_status(c) or fmt_time(median(c)) for c in cells)])
    return ("Time per step (median):\n\n"
            + markdown_table(["d", *(f"`{v}`" for v in names)], rows, "r" * (len(names) + 1)))


def gflops_cell(run: dict, case: dict | None, machine: float | None) -> str:
    status = cell_status(case)
    if status:
        return status
    achieved = case["flops_per_step"] / median(case) / 1e9
    own = peak_of(run, case["framework"], case["device"], case["problem"]["dtype"])
    own_pct = fmt_pct(100 * achieved / own) if own else "—"
    machine_pct = fmt_pct(100 * achieved / machine) if machine else "—"
    return f"{fmt_gflops(achieved)} ({own_pct} / {machine_pct})"


def sweep_gflops_table(run: dict, shape: model.GroupKey,
                       by_variant: dict[str, dict[int, dict]]) -> str:
    names = variant_order(by_variant)
    best = machine_peak(run, shape.device, shape.dtype)
    rows = [[d, *(gflops_cell(run, by_variant[v].get(d), best and best[0]) for v in names)]
            for d in widths_of(by_variant)]
    peak_text = (f"the machine peak is the best matmul across frameworks on this device and "
                 f"dtype: {fmt_gflops(best[0])} GFLOP/s ({best[1]})" if best
                 else "no matmul peak was measured for this device and dtype")
    return (f"Achieved GFLOP/s (% of the same framework's matmul peak / % of the machine peak; "
            f"{peak_text}):\n\n"
            + markdown_table(["d", *(f"`{v}`" for v in names)], rows, "r" * (len(names) + 1)))


def model_table(source: Source) -> str:
    fits = sorted(model.fit_cases(source.run["cases"]),
                  key=lambda f: (f.device != "cpu", variant_rank(f.variant)))
    if not fits:
        return ""
    rows = [[f"`{f.variant}`", device_label(source.run, f.device), f.group.label(),
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


POOR_FIT_NOTE = (f"A fit whose rms relative residual is above {model.POOR_FIT:.0%} is marked "
                 f"*poor fit*: a line in FLOPs does not describe its points, so what is read off "
                 f"it is a rough guide; a width outside the fitted widths is marked "
                 f"*extrapolated*.")


def points_text(fit: model.Fit) -> str:
    left = ", ".join(map(str, fit.left_out))
    return f"{fit.n_points} (d = {left} left out)" if fit.left_out else str(fit.n_points)


def fit_quality(fit: model.Fit) -> str:
    rms = fmt_pct(100 * fit.rms_rel_residual)
    return f"{rms} (poor fit)" if fit.poor else rms


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


# ---- plots ------------------------------------------------------------------------------------

def new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save(fig, path: Path) -> None:
    fig.savefig(path, dpi=DPI)


def sweep_plots(source: Source, fits: dict, out_dir: Path, plots: Path) -> list[str]:
    """Time vs FLOPs and % of peak vs width, one pair of figures per network shape."""
    by_shape: dict[model.GroupKey, dict[str, dict[str, dict[int, dict]]]] = {}
    for shape, by_variant in sweep_groups(source.run).items():
        key = dataclasses.replace(shape, device="")
        by_shape.setdefault(key, {})[shape.device] = by_variant
    out = []
    for i, (shape, by_device) in enumerate(by_shape.items()):
        time_png, peak_png = (plots / f"{source.name}-{i}-{kind}.png" for kind in ("time", "peak"))
        plot_times(source.run, shape, by_device, fits, time_png)
        out.append(image(time_png, out_dir, "time per step"))
        with_peak = {d: v for d, v in by_device.items()
                     if machine_peak(source.run, d, shape.dtype)}
        if with_peak:  # a panel with no peak would pin the shared y axis to 0..1
            plot_peak(source.run, shape, with_peak, peak_png)
            out.append(image(peak_png, out_dir, "% of matmul peak"))
    return out


def ok_points(cases: dict[int, dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(widths, FLOPs, seconds per step) of the ok cases, by width."""
    ok = sorted((d, c) for d, c in cases.items() if c["status"] == "ok")
    return (np.array([d for d, _ in ok], dtype=float),
            np.array([c["flops_per_step"] for _, c in ok], dtype=float),
            np.array([median(c) for _, c in ok], dtype=float))


def device_axes(fig, n: int):
    return fig.subplots(1, n, sharey=True, squeeze=False)[0]


def plot_times(run: dict, shape: model.GroupKey, by_device: dict,
               fits: dict[model.GroupKey, model.Fit], path: Path) -> None:
    """Log-log µs per step against FLOPs per step, measured (solid) and fitted (dashed, over
    the fitted points only); ``shape`` has no variant or device, ``fits`` are by group."""
    from matplotlib.lines import Line2D

    fig = new_figure(5.6 * len(by_device) + 1.6, 4.6)
    left_out = False
    for ax, (device, by_variant) in zip(device_axes(fig, len(by_device)), by_device.items()):
        for variant in variant_order(by_variant):
            fit = fits.get(dataclasses.replace(shape, variant=variant, device=device))
            left_out |= bool(fit and fit.left_out)
            draw_time_line(ax, variant, by_variant[variant], fit)
        ax.set_xscale("log")
        ax.set_yscale("log")
        add_width_axis(ax, shape)
        ax.set_xlabel("FLOPs per step (6 · batch · weights)")
        ax.set_title(device_label(run, device), fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    fig.axes[0].set_ylabel("time per step (µs)")
    label = "fit: overhead + FLOPs/throughput" + ("\n(d = 1 left out)" if left_out else "")
    extra = [Line2D([], [], color="grey", ls="--", label=label)]
    legend(fig, extra)
    fig.suptitle(f"{machine_label(run)}\ntime per SGD step, {shape_label(shape)}", fontsize=11)
    save(fig, path)


def draw_time_line(ax, variant: str, cases: dict[int, dict], fit: model.Fit | None) -> None:
    _, flops, seconds = ok_points(cases)
    if not len(flops):
        return
    ax.plot(flops, 1e6 * seconds, "o-", color=COLORS.get(variant), label=variant, ms=4)
    if fit is not None:  # over the fitted points only (the d = 1 point may be left out)
        grid = np.geomspace(*fit.flops_range, 100)
        ax.plot(grid, 1e6 * fit.predict(grid), "--", color=COLORS.get(variant), lw=1)


def add_width_axis(ax, shape: model.GroupKey) -> None:
    """A top axis with the width d of the [d]×(depth+1) network at each FLOP count."""
    k = 6 * shape.batch * shape.depth
    top = ax.secondary_xaxis("top", functions=(lambda F: np.sqrt(np.maximum(F, 1e-12) / k),
                                               lambda d: k * np.asarray(d) ** 2))
    top.set_xlabel("width d", fontsize=9)


def legend(fig, extra: list | None = None) -> None:
    """One legend for all panels, outside them on the right, one entry per label."""
    seen = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    labels = variant_order(seen)
    handles = [seen[n] for n in labels] + (extra or [])
    if not handles:
        return
    fig.legend(handles=handles, labels=labels + [h.get_label() for h in extra or []],
               loc="outside right center", fontsize=9)


def plot_peak(run: dict, shape: model.GroupKey, by_device: dict, path: Path) -> None:
    """% of the machine's matmul peak (best across frameworks) against width d."""
    fig = new_figure(5.6 * len(by_device) + 1.6, 4.3)
    for ax, (device, by_variant) in zip(device_axes(fig, len(by_device)), by_device.items()):
        best = machine_peak(run, device, shape.dtype)
        for variant in variant_order(by_variant):
            widths, flops, seconds = ok_points(by_variant[variant])
            if best and len(widths):
                pct = 100 * flops / seconds / 1e9 / best[0]
                ax.plot(widths, pct, "o-", color=COLORS.get(variant), label=variant, ms=4)
        ax.set_xscale("log", base=2)
        ticks = widths_of(by_variant)
        ax.set_xticks(ticks, [str(d) for d in ticks])
        ax.tick_params(axis="x", labelrotation=45)
        ax.set_xlabel("width d")
        peak = f"peak {fmt_gflops(best[0])} GFLOP/s ({best[1]})" if best else "no peak measured"
        ax.set_title(f"{device_label(run, device)}\n{peak}", fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    fig.axes[0].set_ylabel("% of the machine's matmul peak")
    legend(fig)
    fig.suptitle(f"{machine_label(run)}\nachieved FLOP rate, {shape_label(shape)}",
                 fontsize=11)
    save(fig, path)


# ---- GPU against CPU --------------------------------------------------------------------------

def gpu_vs_cpu_section(sources: list[Source]) -> str:
    per_file = [(s, model.fit_cases(s.run["cases"])) for s in sources]
    rows = []
    for shape in shapes_of(f for _, fits in per_file for f in fits):
        sides = [(s, [f for f in fits if same_shape(f, shape) and not on_gpu(f)],
                  [f for f in fits if same_shape(f, shape) and on_gpu(f)]) for s, fits in per_file]
        for cs, cpu, gpu_of_cs in sides:
            for gs, cpu_of_gs, gpu in sides:
                if cpu and gpu and paired(cs, gs, bool(gpu_of_cs), bool(cpu_of_gs)):
                    rows += crossover_rows(cpu, gpu, pair_label(cs, gs, cpu[0], gpu[0]), shape)
    if not rows:
        return ""
    return ("## Where a GPU starts beating a CPU\n\nFrom the fitted cost models: the smallest "
            "size where the GPU's predicted time per step drops below the CPU's. CPU and GPU "
            "fits are paired within each results file, and across files that measured the same "
            "networks when one of the two files cannot make the pair on its own (a CPU-only "
            "file against a GPU file); two files from one GPU machine are not mixed. *best* "
            "compares the fastest fitted variant on each side at every size; *fastest at the "
            "crossover* names them there (where the GPU is faster at every size: at the "
            "smallest width both sides measured; where it never is: at the largest). "
            + POOR_FIT_NOTE + "\n\n"
            + markdown_table(["compared", "fastest at the crossover", "CPU → GPU", "networks",
                              "GPU faster from d ≈", "FLOPs per step"], rows, "llllrr"))


def on_gpu(fit: model.Fit) -> bool:
    return fit.device == "cuda"


def shape_of(fit: model.Fit) -> model.GroupKey:
    return dataclasses.replace(fit.group, variant="", device="")


def same_shape(fit: model.Fit, shape: model.GroupKey) -> bool:
    return shape_of(fit) == shape


def shapes_of(fits: Iterable[model.Fit]) -> list[model.GroupKey]:
    """The network shapes of the fits, in first-seen order."""
    return list(dict.fromkeys(map(shape_of, fits)))


def paired(cpu_source: Source, gpu_source: Source, cpu_source_has_gpu: bool,
           gpu_source_has_cpu: bool) -> bool:
    """Pair a file's own CPU and GPU fits; across files, only where one of them cannot make the
    pair on its own (so two files from one GPU machine are not mixed)."""
    if cpu_source is gpu_source:
        return True
    return not (cpu_source_has_gpu and gpu_source_has_cpu)


def pair_label(cpu_source: Source, gpu_source: Source, cpu: model.Fit, gpu: model.Fit) -> str:
    """'`a.json`: cpu · X → cuda · Y', or with both file names when they differ."""
    cpu_dev = device_label(cpu_source.run, cpu.device)
    gpu_dev = device_label(gpu_source.run, gpu.device)
    if cpu_source is gpu_source:
        return f"`{cpu_source.path.name}`: {cpu_dev} → {gpu_dev}"
    return f"`{cpu_source.path.name}` ({cpu_dev}) → `{gpu_source.path.name}` ({gpu_dev})"


def crossover_rows(cpu: list[model.Fit], gpu: list[model.Fit], pair: str,
                   shape: model.GroupKey) -> list[list]:
    """One row per variant fitted on both sides, per framework with several fits on a side,
    and the best of all, each comparison once."""
    both = variant_order({f.variant for f in cpu} & {f.variant for f in gpu})
    comparisons = [(f"`{v}`", [f for f in cpu if f.variant == v],
                    [f for f in gpu if f.variant == v]) for v in both]
    for fw in sorted({registry.VARIANTS[f.variant].framework for f in gpu
                      if f.variant in registry.VARIANTS}):
        c, g = framework_fits(cpu, fw), framework_fits(gpu, fw)
        if c and g and (len(c) > 1 or len(g) > 1):
            comparisons.append((group_name(fw, c, g), c, g))
    comparisons.append((group_name(None, cpu, gpu), cpu, gpu))
    rows, seen = [], set()
    for name, c, g in comparisons:
        key = (frozenset(map(id, c)), frozenset(map(id, g)))
        if key not in seen:
            seen.add(key)
            rows.append([name, *crossover_cells(c, g, pair, shape.label())])
    return rows


def group_name(framework: str | None, cpu: list[model.Fit], gpu: list[model.Fit]) -> str:
    """'best torch' / 'best of all' if both sides have several fits; else a side with one fit
    is named by its variant: 'best GPU vs `numpy` (CPU)', 'best torch GPU vs `torch` (CPU)'."""
    if len(cpu) > 1 and len(gpu) > 1:
        return f"best {framework}" if framework else "best of all"

    def side(fits: list[model.Fit], where: str) -> str:
        if len(fits) == 1:
            return f"`{fits[0].variant}` ({where})"
        return f"best {framework} {where}" if framework else f"best {where}"

    return f"{side(gpu, 'GPU')} vs {side(cpu, 'CPU')}"


def framework_fits(fits: list[model.Fit], framework: str) -> list[model.Fit]:
    return [f for f in fits if f.variant in registry.VARIANTS
            and registry.VARIANTS[f.variant].framework == framework]


def fit_name(fit: model.Fit, where: str) -> str:
    return f"`{fit.variant}` ({where}{', poor fit' if fit.poor else ''})"


def crossover_cells(cpu: list[model.Fit], gpu: list[model.Fit], pair: str,
                    networks: str) -> list[str]:
    """[fastest at the crossover, pair, networks, d, FLOPs] of one comparison."""
    cross = model.best_gpu_beats_best_cpu(cpu, gpu)
    lo = max(min(f.flops_range[0] for f in cpu), min(f.flops_range[0] for f in gpu))
    hi = min(max(f.flops_range[1] for f in cpu), max(f.flops_range[1] for f in gpu))
    if cross is not None:
        at, where = cross.flops, ""
    else:
        at = lo if model.always_faster(gpu, cpu) else hi
        d = model.common_d(at, [*cpu, *gpu])
        where = "" if d is None else f" at d = {d:.0f}"
    c, g = model.best_at(cpu, at), model.best_at(gpu, at)
    fastest = f"{fit_name(g, 'GPU')} vs {fit_name(c, 'CPU')}{where}"
    d_lo, d_hi = max(c.d_range[0], g.d_range[0]), min(c.d_range[1], g.d_range[1])
    if cross is not None:
        d_text = (fmt_width(cross.d) if cross.d is None
                  else fmt_measured_width(cross.d, d_lo, d_hi))
        return [fastest, pair, networks, d_text, f"{cross.flops:.3g}"]
    if model.always_faster(gpu, cpu):
        return [fastest, pair, networks,
                f"GPU faster at every size (extrapolated below d = {d_lo:.0f})", "—"]
    return [fastest, pair, networks,
            f"never (below 10¹⁵ FLOPs; extrapolated above d = {d_hi:.0f})", "—"]


# ---- compile cost -----------------------------------------------------------------------------

def compile_section(sources: list[Source]) -> str:
    rows = [row for s in sources if s.command != "sweep" for row in compile_rows(s)]
    parts = []
    if rows:
        parts.append(compile_table(rows))
    for s in (s for s in sources if s.command == "sweep"):
        srows = compile_rows(s)
        if srows:
            parts.append(f"<details><summary>Compile costs in the sweep "
                         f"<code>{s.path.name}</code></summary>\n\n{compile_table(srows)}"
                         f"\n\n</details>")
    if not parts:
        return ""
    return ("## Compile cost\n\nFirst call: the first `run(block)` of a fresh Trainer "
            "(tracing, compiling, capturing). Compile: the first call beyond what its steps "
            "cost in the steady state. Pays off after: steps until the compiled variant's total "
            "time is below its baseline's (registry `baseline`).\n\n" + "\n\n".join(parts))


def compile_table(rows: list[list]) -> str:
    return markdown_table(["file", "device", "network", "variant", "baseline", "first call",
                           "compile", "Inductor cache", "first in process", "pays off after"],
                          rows, "llllrrrlll")


def compile_rows(source: Source) -> list[list]:
    """One row per ok case of a variant that is measured against a baseline."""
    run = source.run
    rows = []
    for r in summary.in_order(run, summary.derive(run)):
        c = r["case"]
        base = summary.baseline_of(c["variant"])
        if c["status"] == "ok" and base:
            rows.append([f"`{source.path.name}`", device_label(run, c["device"]), r["network"],
                         f"`{c['variant']}`",
                         f"`{base}`", fmt_time(r["first"]), fmt_time(r["compile"]),
                         inductor_state(run, c), yes_no(c.get("first_in_process")),
                         r["pays_off"] or "—"])
    return rows


def inductor_state(run: dict, case: dict) -> str:
    if case.get("framework") != "torch":
        return "—"
    warm = (settings(run, "torch").get("inductor_cache") or {}).get("warm_at_start")
    return {True: "warm", False: "cold"}.get(warm, "—")


def yes_no(x) -> str:
    return {True: "yes", False: "no"}.get(x, "—")


# ---- the API side by side ---------------------------------------------------------------------

API_FILES = {"NumPy": "numpy_backprop.py", "PyTorch": "torch_backprop.py",
             "JAX": "jax_backprop.py"}
API_FUNCTIONS = ("forward", "grads", "sgd_step", "Trainer.run")


def implementations_dir() -> Path:
    return Path(registry.__file__).resolve().parent


def function_sources(path: Path, names: Sequence[str] = API_FUNCTIONS) -> dict[str, str]:
    """The source of each named top-level function or Class.method, read with ast."""
    text = path.read_text()
    nodes = {}
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            nodes[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for sub in node.body:
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    nodes.setdefault(f"{node.name}.{sub.name}", sub)
    lines = text.splitlines()
    return {n: node_source(lines, nodes[n]) for n in names if n in nodes}


def node_source(lines: list[str], node: ast.AST) -> str:
    start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return textwrap.dedent("\n".join(lines[start - 1:node.end_lineno]))


def code_lines(source: str) -> int:
    """Lines of a function that are code: not blank, not comments, not the docstring."""
    node = ast.parse(source).body[0]
    skip = set()
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
            and isinstance(first.value.value, str):
        skip = set(range(first.lineno, first.end_lineno + 1))
    return sum(1 for i, line in enumerate(source.splitlines(), 1)
               if i not in skip and line.strip() and not line.strip().startswith("#"))


def api_section() -> str:
    root = implementations_dir()
    sources = {fw: function_sources(root / f) if (root / f).exists() else {}
               for fw, f in API_FILES.items()}
    counts = [[f"`{fn}`", *(code_lines(sources[fw][fn]) if fn in sources[fw] else "—"
                            for fw in API_FILES)] for fn in API_FUNCTIONS]
    files = ", ".join(f"`implementations/{f}`" for f in API_FILES.values())
    parts = ["## The API side by side",
             f"Read from {files} in the checkout that built this report, at report time"
             f"{checkout_text(root)}. This may differ from the code that ran: the commits the "
             f"results files were measured at are listed under *Where the numbers come from*. "
             f"Lines of code per function (without docstring, comments and blank lines):",
             markdown_table(["function", *API_FILES], counts, "l" + "r" * len(API_FILES))]
    parts += [side_by_side(fn, sources) for fn in API_FUNCTIONS]
    return "\n\n".join(parts)


def git_head(root: Path) -> str | None:
    """`git rev-parse --short HEAD` of the checkout holding ``root``, or None."""
    import subprocess

    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    head = done.stdout.strip()
    return head if done.returncode == 0 and head else None


def api_files_dirty(root: Path) -> bool:
    """True if the API files differ from HEAD (uncommitted changes); False if unknown."""
    import subprocess

    try:
        done = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", *API_FILES.values()],
                              cwd=root, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 1


def checkout_text(root: Path) -> str:
    """' (commit `abc1234`)', with uncommitted changes noted; '' outside a git checkout."""
    head = git_head(root)
    if head is None:
        return ""
    dirty = ", with uncommitted changes to these files" if api_files_dirty(root) else ""
    return f" (commit `{head}`{dirty})"


def side_by_side(function: str, sources: dict[str, dict[str, str]]) -> str:
    """An HTML table with one column per framework, each holding a fenced code block."""
    head = "".join(f"<th>{fw}</th>" for fw in sources)
    cells = "</td><td>".join(
        f"\n\n```python\n{src[function]}\n```\n\n" if function in src else "\n\n(not defined)\n\n"
        for src in sources.values())
    return (f"### `{function}`\n\n<table>\n<tr>{head}</tr>\n<tr valign=\"top\"><td>{cells}"
            f"</td></tr>\n</table>")
