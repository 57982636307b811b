"""`backprop-bench list`: the variants, and whether each can run here."""

from __future__ import annotations

import argparse

from harness.commands.base import Command
from harness.measure.environment import gpu_info
from harness.procs import isolated, messages
from harness.tables import text_table
from implementations import registry
from implementations.contract import Unavailable
from implementations.problem import BenchError


def list_variants(check_imports: bool) -> int:
    """The variants, what each declares it runs (beyond its devices, where that is less than
    every dtype, activation and network: ``Variant.runs``), and whether each can run here:
    from the packages and devices present, without importing any framework, unless
    ``check_imports`` asks for the import itself (a framework that needs a process of its
    own is imported in one)."""

    gpu = gpu_info()
    imported = isolated_imports() if check_imports else {}
    rows = []
    for v in registry.VARIANTS.values():
        status = imported.get(v.name) or variant_status(v, gpu is not None, check_imports)
        rows.append([v.name, v.framework, v.kind, "/".join(v.devices), v.runs() or "—",
                     v.description, status])
    print(text_table(["variant", "framework", "kind", "devices", "runs only", "what", "here"],
                     rows, "lllllll"))
    if not check_imports:
        print("\n(packages found, not imported; `list --check` imports each framework)")
    for old, (new, why) in registry.RENAMED.items():
        print(f"({old} is now called {new}: {why}; the old name still works)")
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
            answers = isolated.ask(messages.ImportRequest([v.name for v in mine], "cpu"))
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


def list_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--check", action="store_true", help="import every framework to say "
                   "whether it really starts (slower)")


COMMAND = Command(
    "list", "list the variants and whether they can run here",
    "List every registered variant with its framework, kind, devices and whether it "
    "can run here, from the packages and devices present (no framework is imported "
    "unless --check asks for it).", ("list", "list --check"), list_args,
    lambda a: list_variants(a.check))
