"""Where a GPU starts beating a CPU: the crossovers of the fitted cost models (``model``)."""

from __future__ import annotations

from harness.analysis import cost as model
from harness.report.fits import POOR_FIT_NOTE
from harness.report.sources import (
    Source,
    device_label,
    fmt_measured_width,
    fmt_width,
    single_device,
    variant_rank,
)
from harness.tables import markdown_table, md_code

INTRO = ("## Where a GPU starts beating a CPU\n\nFrom the fitted cost models: the smallest "
         "size where the GPU's predicted time per step drops below the CPU's. CPU and GPU "
         "fits are paired within each results file, and across files that measured the same "
         "networks when one of the two files cannot make the pair on its own (a CPU-only "
         "file against a GPU file); two files from one GPU machine are not mixed. *best* "
         "compares the fastest fitted variant on each side at every size; *fastest at the "
         "crossover* names them there (where the GPU is faster at every size: at the "
         "smallest width both sides measured; where it never is: at the largest). ")


def frameworks(*sources: Source):
    """A variant's framework as these files declare it (``Run.declaration``), or None."""

    def framework_of(variant: str) -> str | None:
        found = (s.run.declaration(variant) for s in sources)
        return next((d.framework for d in found if d), None)

    return framework_of


def section(sources: list[Source]) -> str:

    per_file = [(s, sorted(model.fit_cases(s.run.cases), key=lambda f: variant_rank(f.variant)))
                for s in single_device(sources)]
    rows: dict[tuple, list] = {}
    for pair in model.pairings(per_file):
        label = pair_label(pair.cpu_file, pair.gpu_file, pair.cpu[0], pair.gpu[0])
        framework_of = frameworks(pair.cpu_file, pair.gpu_file)
        for variant, framework, cpu, gpu in model.comparisons(pair.cpu, pair.gpu, framework_of):
            name = md_code(variant) if variant else group_name(framework, cpu, gpu)
            row = cells(model.verdict(cpu, gpu), label, pair.shape.label())
            if tuple(row) in rows:  # the same comparison under another name: one row
                rows[tuple(row)][0] += f", {name}"
            else:
                rows[tuple(row)] = [name, *row]
    rows = list(rows.values())
    if not rows:
        return ""
    return (INTRO + POOR_FIT_NOTE + "\n\n"
            + markdown_table(["compared", "fastest at the crossover", "CPU → GPU", "networks",
                              "GPU faster from d ≈", "FLOPs per step"], rows, "llllrr"))


def pair_label(cpu_source: Source, gpu_source: Source, cpu: model.Fit, gpu: model.Fit) -> str:
    """'`a.json`: cpu · X → cuda · Y', or with both file names when they differ."""
    cpu_dev = device_label(cpu_source.run, cpu.device)
    gpu_dev = device_label(gpu_source.run, gpu.device)
    if cpu_source is gpu_source:
        return f"{cpu_source.file}: {cpu_dev} → {gpu_dev}"
    return f"{cpu_source.file} ({cpu_dev}) → {gpu_source.file} ({gpu_dev})"


def group_name(framework: str | None, cpu: list[model.Fit], gpu: list[model.Fit]) -> str:
    """'best torch' / 'best of all' if both sides have several fits; else a side with one fit
    is named by its variant: 'best GPU vs `numpy` (CPU)', 'best torch GPU vs `torch` (CPU)'."""
    if len(cpu) > 1 and len(gpu) > 1:
        return f"best {framework}" if framework else "best of all"

    def side(fits: list[model.Fit], where: str) -> str:
        if len(fits) == 1:
            return f"{md_code(fits[0].variant)} ({where})"
        return f"best {framework} {where}" if framework else f"best {where}"

    return f"{side(gpu, 'GPU')} vs {side(cpu, 'CPU')}"


def fit_name(fit: model.Fit, where: str) -> str:
    return f"{md_code(fit.variant)} ({where}{', poor fit' if fit.poor else ''})"


def cells(v: model.Verdict, pair: str, networks: str) -> list[str]:
    """[fastest at the crossover, pair, networks, d, FLOPs] of one comparison."""
    where = "" if v.at_d is None else f" at d = {v.at_d:.0f}"
    fastest = f"{fit_name(v.gpu_best, 'GPU')} vs {fit_name(v.cpu_best, 'CPU')}{where}"
    if v.outcome == "crosses":
        d_text = (fmt_width(v.cross.d) if v.cross.d is None
                  else fmt_measured_width(v.cross.d, v.d_lo, v.d_hi))
        return [fastest, pair, networks, d_text, f"{v.cross.flops:.3g}"]
    if v.outcome == "always":
        return [fastest, pair, networks,
                f"GPU faster at every size (extrapolated below d = {v.d_lo:.0f})", "—"]
    return [fastest, pair, networks,
            f"never (below 10¹⁵ FLOPs; extrapolated above d = {v.d_hi:.0f})", "—"]
