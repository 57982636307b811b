"""What each subcommand does, from typed options: compose the harness modules and print.

``harness.cli`` parses the command line into these functions' arguments; the policy (default
networks, variants, peaks) is ``harness.commands.plans``. Each function returns the exit
status: 0, or 1 when a check failed or a case failed; user errors raise ``BenchError`` (one
line, exit 2).
"""

from __future__ import annotations

from pathlib import Path

from harness.commands.base import PROG, note, require_device  # noqa: F401 (the CLI)
from harness.measure.environment import gpu_info
from harness.procs import isolated
from harness.record import compare as comparing
from harness.record import counts
from harness.record import export as exporting
from harness.report import DEFAULT_DIR, DEFAULT_OUT, build_report
from harness.tables import text_table
from implementations import registry
from implementations.contract import Unavailable
from implementations.problem import BenchError

# ---- report, compare, export, list ------------------------------------------------------------

def report(paths: list[str], out: str | None, force: bool, readme: str | None = None) -> int:

    target = Path(out) if out is not None else Path(DEFAULT_DIR) / DEFAULT_OUT
    if out is not None and not out.strip():
        raise BenchError("--out is empty: give a Markdown file path")
    print(f"report: {build_report(paths, target, force, readme and Path(readme))}")
    return 0


def compare(a: str, b: str, fail_above: float | None, fmt: str = "text",
            measure: str = "time") -> int:
    """`compare`: the per-step times, or (``measure`` "instructions") the counts."""
    if measure == "instructions":
        run_a, run_b, name_a, name_b = comparing.read_pair(a, b)
        return counts.print_comparison(run_a, run_b, (a, b, name_a, name_b), fail_above, fmt)
    return comparing.main(a, b, fail_above, fmt)


def export(paths: list[str], fmt: str, out: str, force: bool) -> int:

    return exporting.main(paths, fmt, out, force)


def list_variants(check_imports: bool) -> int:
    """The variants and whether each can run here: from the packages and devices present,
    without importing any framework, unless ``check_imports`` asks for the import itself
    (a framework that needs a process of its own is imported in one)."""

    gpu = gpu_info()
    imported = isolated_imports() if check_imports else {}
    rows = []
    for v in registry.VARIANTS.values():
        status = imported.get(v.name) or variant_status(v, gpu is not None, check_imports)
        rows.append([v.name, v.framework, v.kind, "/".join(v.devices), v.description, status])
    print(text_table(["variant", "framework", "kind", "devices", "what", "here"], rows,
                     "llllll"))
    if not check_imports:
        print("\n(packages found, not imported; `list --check` imports each framework)")
    return 0


def isolated_imports() -> dict[str, str]:
    """{variant: status} of the frameworks that need a process of their own, one process
    each, for those whose packages are installed."""

    out = {}
    for name, fw in registry.FRAMEWORKS.items():
        mine = [v for v in registry.variants_of(name) if "cpu" in v.devices]
        if not fw.isolated or not mine or not all(map(registry.package_exists, fw.packages)):
            continue
        try:
            answers = isolated.ask({"do": "import", "variants": [v.name for v in mine],
                                    "device": "cpu"})
        except BenchError as exc:
            answers = {v.name: {"unavailable": str(exc)} for v in mine}
        for v in mine:
            reason = answers[v.name].get("unavailable")
            out[v.name] = f"unavailable: {reason}" if reason else "available"
    return out


def variant_status(v, has_gpu: bool, check_imports: bool) -> str:
    fw = registry.FRAMEWORKS[v.framework]
    missing = [p for p in fw.packages if not registry.package_exists(p)]
    if missing:
        return f"unavailable: {fw.name}: {missing[0]} is not installed"
    if "cpu" not in v.devices and not has_gpu:
        return "unavailable: no GPU here (nvidia-smi finds none)"
    if not check_imports:
        return "installed"
    device = v.devices[0] if "cpu" not in v.devices else "cpu"
    if fw.isolated:  # imported in a process of its own only (isolated_imports)
        return "installed; needs a process of its own"
    try:
        registry.import_module(v.framework).check_device(device)
    except Unavailable as exc:
        return f"unavailable: {exc}"
    return "available"
