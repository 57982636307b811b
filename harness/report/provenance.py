"""Where the numbers come from: the files, machines, software and settings of every run."""

from __future__ import annotations

import html

from harness.record.results import STATUSES, Run
from harness.report import state
from harness.report.sources import Source, device_label, machine_label, settings
from harness.tables import markdown_table, md_code, md_escape
from implementations import registry

FLOPS_NOTE = ("FLOPs are counted as 6 · batch · weights per SGD step: 2 for the forward "
              "matmuls, 4 for the backward ones (input and weight gradients). Elementwise work "
              "(activations, loss, the update) is not counted; it is what makes small networks "
              "overhead-bound.")
BASE_PACKAGES = ("python", "numpy")


def section(sources: list[Source], problems: list[str]) -> str:
    parts = ["## Where the numbers come from", files_table(sources)]
    if problems:
        parts.append("Left out (could not be read):\n\n"
                     + "\n".join(f"- {md_escape(p)}" for p in problems))
    parts += ["### Machines", machines_table(sources), state.state_section(sources),
              "### Software", software_table(sources), environment_section(sources),
              "### Settings", settings_table(sources),
              "### How FLOPs are counted", FLOPS_NOTE, "### Memory", state.MEMORY_INTRO]
    return "\n\n".join(p for p in parts if p)


def state_text(run: Run) -> str:
    if run.interrupted:
        return " (interrupted)"
    return "" if run.finished else " (incomplete: killed, or still running)"


def files_table(sources: list[Source]) -> str:
    rows = []
    for s in sources:
        run, commit = s.run, s.run.commit
        dirty = " (dirty)" if commit.dirty else ""
        counts = {st: sum(c.status == st for c in run.cases) for st in STATUSES}
        rows.append([s.file, md_escape(run.command) + state_text(run),
                     "; ".join(device_label(run, d) for d in run.devices()),
                     md_escape(run.created), f"{md_code(str(commit.id or '?')[:10])}{dirty}",
                     " / ".join(str(counts[st]) for st in STATUSES)])
    return markdown_table(["file", "command", "devices", "created", "commit",
                           "ok / failed / unavailable"], rows, "lllllr")


def machines_table(sources: list[Source]) -> str:
    rows = {}
    for s in sources:
        m, gpu = s.run.machine, s.run.machine.gpu or {}
        cuda = gpu.get("cuda") or next((v.get("cuda") for v in (
            settings(s.run, f) for f in s.run.frameworks) if v.get("cuda")), None)
        rows[machine_label(s.run)] = [md_escape(m.hostname), md_escape(m.cpu or "—"), m.cores,
                                      m.usable_cores, m.memory_gb, md_escape(m.os or "—"),
                                      md_escape(gpu.get("name", "—")),
                                      md_escape(gpu.get("driver", "—")), md_escape(cuda or "—")]
    return markdown_table(["host", "CPU", "cores", "usable", "memory (GB)", "OS", "GPU",
                           "driver", "CUDA"], list(rows.values()), "llrrrllll")


def packages(sources: list[Source]) -> list[str]:
    """The packages to show: python and numpy, then every registered framework's, then any
    other a file recorded."""
    names = list(BASE_PACKAGES)
    names += [p for f in registry.FRAMEWORKS.values() for p in f.packages]
    names += [k for s in sources for k in s.run.software]
    return [n for n in dict.fromkeys(names) if any(s.run.software.get(n) for s in sources)]


def software_table(sources: list[Source]) -> str:
    keys = packages(sources)
    rows = [[s.file, *(md_escape(s.run.software.get(k) or "—") for k in keys)] for s in sources]
    return markdown_table(["file", *map(md_escape, keys)], rows, "l" * (len(keys) + 1))


def environment_section(sources: list[Source]) -> str:
    """One line per file that recorded its environment: the variables set that change results
    and JAX's compilation cache; then each distinct package freeze, collapsed."""
    recorded = [s for s in sources if s.run.environment]
    if not recorded:
        return ""
    lines = [f"- {s.file}: {environment_text(s.run.environment)}" for s in recorded]
    return "\n\n".join(["### Environment", "\n".join(lines), *freeze_blocks(recorded)])


def environment_text(env: dict) -> str:
    variables = env.get("variables") or {}
    text = (", ".join(md_code(f"{k}={v}") for k, v in variables.items())
            or "no variable that changes results was set")
    cache = env.get("jax_compilation_cache") or {}
    if cache.get("enabled"):
        warm = "warm" if cache.get("warm_at_start") else "empty"
        text += f"; JAX compilation cache on, {warm} at start"
    return text


def freeze_blocks(sources: list[Source]) -> list[str]:
    """A collapsed block per distinct package freeze, naming the files that share it."""
    groups: dict[tuple, list[str]] = {}
    for s in sources:
        packages = s.run.environment.get("packages") or {}
        if packages:
            groups.setdefault(tuple(packages.items()), []).append(s.path.name)
    blocks = []
    for packages, files in groups.items():
        listing = ", ".join(md_escape(f"{name} {version}") for name, version in packages)
        names = html.escape(", ".join(files))
        blocks.append(f"<details><summary>Installed packages ({len(packages)}): {names}"
                      f"</summary>\n\n{listing}\n\n</details>")
    return blocks


def settings_text(value) -> str:
    """A framework's recorded settings, flattened to 'key value; ...' for one table cell."""
    if isinstance(value, dict):
        return "; ".join(f"{k} {settings_text(v)}" for k, v in value.items()
                         if v not in (None, "", [], {}))
    if isinstance(value, list):
        return ", ".join(settings_text(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def settings_table(sources: list[Source]) -> str:
    rows = []
    for s in sources:
        run = s.run
        overhead = (run.ceilings.engine_overhead or {}).get("fraction_of_block")
        rows.append([s.file, run.config.threads, timing_text(run),
                     "—" if overhead is None else f"{100 * overhead:.2g}%"])
        for name, record in run.frameworks.items():
            text = record.error or settings_text(record.settings or {})
            rows.append(["", "", f"**{md_escape(name)}**: {md_escape(text)}", ""])
    return markdown_table(["file", "threads", "timing / framework settings",
                           "engine overhead (% of a block)"], rows, "lrlr")


def timing_text(run: Run) -> str:
    t = run.config.timing
    return (f"blocks of ≥ {1e3 * t.target_block_s:g} ms, ≥ {t.min_blocks} blocks and "
            f"{t.budget_s:g} s per case, {t.warmup_blocks} warm-up")
