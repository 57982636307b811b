"""`backprop-bench report`: a Markdown report and its plots, from stored results files only.

Nothing is measured here and neither torch nor jax is imported: every number comes from the
JSON files (``harness.record.results``), every derived column from ``harness.record.summary`` and
``harness.analysis.cost``. Files from several machines merge into one report, each section labelled
with its machine and device. A file that cannot be read is named in a warning and left out;
the others still make the report.

One module per section: ``provenance`` (files, machines, software, settings), ``ceilings``,
``runs`` (one per `run` file), ``sweeps`` (one per `sweep` file), ``fits`` (the cost model),
``gpu_cpu`` (where a GPU starts beating a CPU), ``compile`` and ``code`` (the step functions
side by side); ``plots`` and ``plots_ladder`` draw every figure; ``sources`` names machines
and devices.

The report never overwrites a file it did not write (the Markdown starts with ``MARKER``,
each PNG carries it in its metadata) unless asked to with ``force``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.record import store
from harness.record.results import ResultsError
from harness.report import (
    ceilings,
    code,
    compile,
    glance,
    gpu_cpu,
    ladder,
    plots,
    provenance,
    runs,
    scaling,
    sweeps,
)
from harness.report.sources import Source, machine_label, sources_of

DEFAULT_DIR = "results"
DEFAULT_OUT = "REPORT.md"
MARKER = "<!-- written by backprop-bench report: regenerate it with `backprop-bench report` -->"


def build_report(paths: Sequence[str | Path], out: str | Path, force: bool = False,
                 readme: Path | None = None) -> Path:
    """Write the Markdown report and its plots (in plots/ beside it); return its path.
    With ``readme``, also rewrite that README's generated "at a glance" block."""
    out = check_out(Path(out), force)
    paths = [str(p) for p in paths] or [DEFAULT_DIR]
    loaded, problems = store.read_runs(paths)
    if not loaded:  # one line: the error names the first bad file and counts the others
        raise ResultsError(no_valid_message(paths, problems))
    for problem in problems:
        print(f"backprop-bench report: warning: {problem}; left out", file=sys.stderr)
    sources = sources_of(loaded)
    plot_dir = out.parent / "plots"
    for s in sources:
        for png in plot_dir.glob(f"{s.name}-*.png"):
            store.check_overwrite(png, plots.is_ours, force, "backprop-bench report")
    try:
        plot_dir.mkdir(parents=True, exist_ok=True)
        text = render(sources, problems, out.parent, plot_dir,
                      lambda line: print(line, file=sys.stderr, flush=True))
        store.write_text(text, out)  # atomically: a full disk leaves the old report whole
    except OSError as exc:
        raise ResultsError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    except store.WriteError as exc:
        raise ResultsError(f"{exc}: the report is not written") from None
    if readme is not None:
        try:
            glance.update_readme(Path(readme), sources)
        except OSError as exc:
            raise ResultsError(f"cannot write {readme} (the report {out} is written): "
                               f"{exc.strerror or exc}") from None
        except store.WriteError as exc:
            raise ResultsError(f"{exc} (the report {out} is written; the README is whole)") \
                from None
    return out


def is_ours(path: Path) -> bool:
    try:
        with open(path, errors="replace") as f:
            return f.readline().strip() == MARKER
    except OSError:
        return False


def check_out(out: Path, force: bool) -> Path:
    """The report path, or ResultsError (one line) if it is a folder, not a *.md file, or a
    file the report did not write; this runs before anything is written."""
    if out.is_dir():
        raise ResultsError(f"report --out must be a Markdown file path (*.md), not {out} "
                           f"(a directory)")
    if out.suffix.lower() != ".md":
        raise ResultsError(f"report --out must be a Markdown file path (*.md), not {out}")
    store.check_overwrite(out, is_ours, force, "backprop-bench report")
    return out


def no_valid_message(paths: Sequence[str], problems: list[str]) -> str:
    where = ", ".join(paths)
    if not any(Path(p).exists() for p in paths):
        return f"no results files found in {where}: no such file or folder"
    if not problems:
        return f"no results files found in {where}"
    return f"no valid results file in {where} ({len(problems)} left out; first: {problems[0]})"


def title(sources: list[Source]) -> str:
    machines = sorted({machine_label(s.run) for s in sources})
    return (f"{MARKER}\n# backprop-bench report\n\nBuilt from {len(sources)} stored results "
            f"file(s) from {len(machines)} machine(s); nothing was re-measured. Regenerate "
            f"with `backprop-bench report`.")


MAX_PLOTTED = 12  # results files drawn, the newest first: a folder of 1000 needs no 3000 PNGs

# the sections of one results file, by the command that wrote it, in the report's order
PER_FILE = (("run", runs.section), ("run", ladder.ladder_section),
            ("run", ladder.phases_section), ("sweep", sweeps.section))
PLOTTED = tuple(dict.fromkeys(command for command, _ in PER_FILE))  # the files with plots


def render(sources: list[Source], problems: list[str], out_dir: Path, plot_dir: Path,
           say=lambda text: None) -> str:
    """The whole Markdown text: the summary, the contents, the results, then where they come
    from. The plots of each file are drawn for the MAX_PLOTTED newest run and sweep files;
    the others have their tables only, and the report says so."""
    drawn = {id(s) for s in sorted((s for s in sources if s.command in PLOTTED),
                                   key=lambda s: s.run.created, reverse=True)[:MAX_PLOTTED]}

    def where(s: Source) -> Path | None:
        return plot_dir if id(s) in drawn else None

    if len(sources) > MAX_PLOTTED:  # a long report says what it is doing
        say(f"report: {len(sources)} results file(s), plots for {len(drawn)}")
    body = [section(s, out_dir, where(s)) for command, section in PER_FILE
            for s in sources if s.command == command]
    undrawn = sum(s.command in PLOTTED for s in sources) - len(drawn)
    if undrawn > 0:
        body.append(f"## Plots left out\n\nThe plots of the {MAX_PLOTTED} newest run and sweep "
                    f"files are drawn; the {undrawn} older ones have their tables only (build "
                    f"a report of fewer files to see theirs).")
    body += [scaling.section(s, sources, out_dir, plot_dir) for s in sources]
    body += [gpu_cpu.section(sources), compile.section(sources), code.section(sources),
             provenance.section(sources, problems), ceilings.section(sources)]
    body = [p for p in body if p]
    parts = [title(sources), glance.section(sources), contents(body), *body]
    return "\n\n".join(parts) + "\n"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, only letters, digits, - and _, spaces to -."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def contents(parts: list[str]) -> str:
    """A table of contents of the ## headings."""
    headings = [line[3:] for p in parts for line in p.splitlines() if line.startswith("## ")]
    return "## Contents\n\n" + "\n".join(f"- [{h}](#{slug(h)})" for h in headings)
