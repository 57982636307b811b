"""What each subcommand does, from typed options: compose the harness modules and print.

``harness.cli`` parses the command line into these functions' arguments; the policy (default
networks, variants, peaks) is ``harness.commands.plans``. Each function returns the exit
status: 0, or 1 when a check failed or a case failed; user errors raise ``BenchError`` (one
line, exit 2).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from harness.commands import plans
from harness.measure.environment import default_threads
from implementations import registry
from implementations.contract import Unavailable
from implementations.problem import BenchError, make_problem

PROG = "backprop-bench"


def note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


def require_device(device: str) -> None:
    """A one-line error unless some framework here can use the device (the CPU always)."""
    if device == "cpu":
        return
    from harness.measure.environment import gpu_info

    reasons = []
    for name in dict.fromkeys(v.framework for v in registry.VARIANTS.values()
                              if device in v.devices):
        try:
            registry.import_module(name).check_device(device)
            return
        except Unavailable as exc:
            reasons.append(str(exc))
    gpu = gpu_info()
    seen = f" (nvidia-smi sees {gpu['name']})" if gpu else ""
    raise BenchError(f"--device {device}: no framework here can use it{seen}: "
                     + "; ".join(dict.fromkeys(reasons)))


# ---- demo -------------------------------------------------------------------------------------

def demo(frameworks: tuple[str, ...] | None, epochs: int, lr: float,
         variant_names: tuple[str, ...] | None = None) -> int:
    from harness.commands import demo as replay
    from harness.measure.check.render import settings_line
    from harness.measure.check.session import apply_settings, gradient_modules

    if epochs < 0:
        raise BenchError(f"--epochs {epochs} must be 0 or more")
    problem = make_problem(lr=lr)
    notes: list[str] = []
    modules = gradient_modules(frameworks, notes)
    settings, failed = apply_settings(modules, default_threads())
    for text in notes + failed:
        note(text)
    with np.errstate(all="ignore"):  # a diverging lr is reported below, not as warnings
        results = {name: replay.replay(m, problem, epochs) for name, m in modules.items()}
        if results:
            print(replay.render(results, lr))
        trainers = demo_trainers(problem, epochs, frameworks, variant_names, settings)
    if not (results or trainers):
        raise BenchError("no framework is available: " + "; ".join(notes))
    if trainers:
        print(replay.render_trainers(trainers))
    print(f"\n{settings_line(settings)}")
    diverged = replay.diverged(results) + [n for n, (snaps, _) in trainers.items()
                                           if not np.isfinite(float(snaps[-1][1]))]
    if diverged:
        print(f"{PROG}: error: training diverged (non-finite loss or weights) with lr {lr:g} "
              f"in {', '.join(diverged)}", file=sys.stderr)
        return 1
    return 0


def demo_trainers(problem, epochs: int, frameworks, variant_names,
                  settings: dict | None = None) -> dict:
    """{variant: (snapshots at 0, 1 and the last epoch, its own gradients or None)} for every
    variant that runs the worked example here (a variant asked for by name must). A variant
    whose cold build takes minutes joins only if it is built already, or asked for by name;
    each framework run here gets its settings first (into ``settings``)."""
    from harness.commands import demo as replay
    from harness.measure.check import session

    default = [v for v in registry.VARIANTS.values()
               if frameworks is None or v.framework in frameworks]
    variants, explicit = plans.variants(variant_names, None, default)
    for v in variants:
        if explicit and v.why_not(problem, "cpu"):
            raise BenchError(f"{v.name}: {v.why_not(problem, 'cpu')}")
    runnable = [v for v in variants if not v.why_not(problem, "cpu")]
    if not explicit:
        runnable, slow = session.split_slow(runnable, [problem], "cpu")
        if slow:
            note(session.left_out_note(slow).replace("'check --all' includes them (or name "
                                                     "them with --variants)",
                                                     "name them with --variants"))
    out = {}
    for framework in dict.fromkeys(v.framework for v in runnable):
        mine = [v for v in runnable if v.framework == framework]
        if settings is not None and not registry.FRAMEWORKS[framework].isolated:
            applied, notes = session.apply_settings([framework], default_threads())
            settings.update({k: v for k, v in applied.items() if k != "pinning"})
            for text in notes:
                note(text)
        print(f"demo: {', '.join(v.name for v in mine)}", file=sys.stderr)
        for name, got in replay.replay_variants(mine, problem,
                                                sorted({0, min(1, epochs), epochs})).items():
            if isinstance(got, str):  # the reason it could not run
                if explicit:
                    raise Unavailable(got)
                note(got)
            else:
                out[name] = got
    return out


# ---- check ------------------------------------------------------------------------------------

def check(networks: plans.Networks, frameworks: tuple[str, ...] | None,
          variant_names: tuple[str, ...] | None, steps: int, device: str,
          workers: int | None = None, oversubscribe: bool = False, include_all: bool = False,
          impl: str | None = None, example: str | None = None,
          threads: int | None = None) -> int:
    """`check`: 0 if every subject passed on its own evidence, 1 if one failed."""
    from harness.measure.check import learner as learners
    from harness.measure.check import session
    from harness.measure.check.render import render
    from harness.measure.environment import default_threads

    if steps <= 0:
        raise BenchError(f"--steps {steps} must be 1 or more")
    if example is not None:
        from harness.measure.check import example as examples

        return examples.command(example, frameworks, variant_names, device, include_all)
    if workers is not None:  # the data-parallel variants, each in a fresh process
        from harness.commands import scale
        from harness.procs import distcheck

        scale.allow_oversubscribe(oversubscribe)
        require_device(device)
        return distcheck.command(networks, frameworks, variant_names, steps, device, workers)
    learner = learners.load(impl) if impl is not None else None
    if learner is not None and networks.output_activation == "linear":
        networks = replace(networks, output_activation=learner.output_activation)
    problems = plans.check_problems(networks, learner and learner.activation,
                                    learner and learner.bias)
    require_device(device)
    selection = session.select(frameworks, variant_names, problems, device, include_all,
                               learner)
    usable = default_threads()
    if threads is not None and threads > usable:
        raise BenchError(f"--threads {threads}: only {usable} cores are usable here")
    report = session.run(problems, selection, steps, device, threads or usable)
    print(render(report, problems, steps))
    return 0 if report.passed else 1


# ---- report, compare, export, list ------------------------------------------------------------

def report(paths: list[str], out: str | None, force: bool, readme: str | None = None) -> int:
    from harness.report import DEFAULT_DIR, DEFAULT_OUT, build_report

    target = Path(out) if out is not None else Path(DEFAULT_DIR) / DEFAULT_OUT
    if out is not None and not out.strip():
        raise BenchError("--out is empty: give a Markdown file path")
    print(f"report: {build_report(paths, target, force, readme and Path(readme))}")
    return 0


def compare(a: str, b: str, fail_above: float | None, fmt: str = "text") -> int:
    from harness.record import compare as comparing

    return comparing.main(a, b, fail_above, fmt)


def export(paths: list[str], fmt: str, out: str, force: bool) -> int:
    from harness.record import export as exporting

    return exporting.main(paths, fmt, out, force)


def list_variants(check_imports: bool) -> int:
    """The variants and whether each can run here: from the packages and devices present,
    without importing any framework, unless ``check_imports`` asks for the import itself
    (a framework that needs a process of its own is imported in one)."""
    from harness.measure.environment import gpu_info
    from harness.tables import text_table

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
    from harness.procs import isolated

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
