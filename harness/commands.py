"""What each subcommand does, from typed options: compose the harness modules and print.

``harness.cli`` parses the command line into these functions' arguments; the policy (default
networks, variants, peaks) is ``harness.plans``. Each function returns the exit status: 0, or
1 when a check failed or a case failed; user errors raise ``BenchError`` (one line, exit 2).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from harness import plans
from implementations import registry
from implementations.contract import Unavailable
from implementations.problem import BenchError, make_problem

PROG = "backprop-bench"


def note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


def modules_for(frameworks: tuple[str, ...] | None) -> dict[str, object]:
    """The gradient modules of the frameworks asked for (all by default). Asked-for but
    missing is an error; missing from the default set is only a note."""
    if frameworks == ():
        raise BenchError("--framework is empty: name at least one framework")
    names = frameworks or [n for n, f in registry.FRAMEWORKS.items() if f.gradients]
    modules = {}
    for name in names:
        fw = registry.get_framework(name)
        if not fw.gradients:
            variants = ", ".join(v.name for v in registry.variants_of(name))
            raise BenchError(f"{name} has no forward/grads functions, only a training loop: "
                             f"use its variant ({variants}) with 'check --variants' or 'run'")
        try:
            modules[name] = registry.import_module(name)
        except Unavailable as exc:
            if frameworks:
                raise
            note(str(exc))
    if not modules:
        raise BenchError("no framework is available")
    return modules


def require_device(device: str) -> None:
    """A one-line error unless some framework here can use the device (the CPU always)."""
    if device == "cpu":
        return
    from harness.environment import gpu_info

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
    from harness import demo as replay

    if epochs < 0:
        raise BenchError(f"--epochs {epochs} must be 0 or more")
    problem = make_problem(lr=lr)
    with np.errstate(all="ignore"):  # a diverging lr is reported below, not as warnings
        results = {name: replay.replay(m, problem, epochs)
                   for name, m in modules_for(frameworks).items()}
        print(replay.render(results, lr))
        trainers = demo_trainers(problem, epochs, frameworks, variant_names)
    if trainers:
        print(replay.render_trainers(trainers))
    diverged = replay.diverged(results) + [n for n, (snaps, _) in trainers.items()
                                           if not np.isfinite(float(snaps[-1][1]))]
    if diverged:
        print(f"{PROG}: error: training diverged (non-finite loss or weights) with lr {lr:g} "
              f"in {', '.join(diverged)}", file=sys.stderr)
        return 1
    return 0


def demo_trainers(problem, epochs: int, frameworks, variant_names) -> dict:
    """{variant: (snapshots at 0, 1 and the last epoch, its own gradients or None)} for every
    variant that runs the worked example here (a variant asked for by name must)."""
    from harness import demo as replay

    default = [v for v in registry.VARIANTS.values()
               if frameworks is None or v.framework in frameworks]
    variants, explicit = plans.variants(variant_names, None, default)
    for v in variants:
        if explicit and v.why_not(problem, "cpu"):
            raise BenchError(f"{v.name}: {v.why_not(problem, 'cpu')}")
    runnable = [v for v in variants if not v.why_not(problem, "cpu")]
    out = {}
    for framework in dict.fromkeys(v.framework for v in runnable):
        mine = [v for v in runnable if v.framework == framework]
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
          workers: int | None = None, oversubscribe: bool = False) -> int:
    from harness import check as checks

    if steps <= 0:
        raise BenchError(f"--steps {steps} must be 1 or more")
    if workers is not None:  # the data-parallel variants, each in a fresh process
        from harness import distcheck, scale

        scale.allow_oversubscribe(oversubscribe)
        require_device(device)
        return distcheck.command(networks, frameworks, variant_names, steps, device, workers)
    problems = plans.check_problems(networks)
    require_device(device)
    modules = modules_for(frameworks)
    default = [v for v in registry.VARIANTS.values() if not v.distributed and (
        v.framework in modules
        or (frameworks is None and not registry.FRAMEWORKS[v.framework].gradients))]
    variants, explicit = plans.variants(variant_names, None, default)
    parallel = [v.name for v in variants if v.distributed]
    variants = [v for v in variants if not v.distributed]
    for v in variants if explicit else []:
        reasons = [v.why_not(p, device) for p in problems]
        if all(reasons):
            raise BenchError(f"variant {v.name} cannot run any case asked for: {reasons[0]}")
    report = checks.Report()
    report.notes += [f"{name} is data-parallel: 'check --workers N' checks it; skipped"
                     for name in parallel]
    for problem in problems:
        check_problem(problem, modules, variants, steps, device, report)
    if not report.rows:
        raise BenchError("nothing was checked: " + "; ".join(dict.fromkeys(report.notes)))
    print(checks.render(report, problems))
    return 0 if report.passed else 1


def check_problem(problem, modules: dict, variants: list, steps: int, device: str,
                  report) -> None:
    """Gradients of every usable module, then the trajectory of every variant; progress on
    stderr, since a wide network takes a while."""
    from harness import check as checks

    label = f"{problem.spec.label()} b{problem.batch}"
    usable = {}
    for name, module in modules.items():
        reason = registry.main_variant(name).why_not(problem, device)
        if reason:
            report.notes.append(f"gradients: {reason}; skipped")
        else:
            usable[name] = module
    local = [v for v in variants if not registry.FRAMEWORKS[v.framework].isolated]
    trainers = own_gradients(problem, local, device, report)
    trainers.update(isolated_checks(problem, [v for v in variants if v not in local], steps,
                                    device, report))
    if usable or trainers:
        print(f"checking {label}: gradients of {', '.join([*usable, *trainers])}",
              file=sys.stderr)
        checks.check_gradients(problem, usable, device, report, trainers=trainers)
    for v in local:
        reason = v.why_not(problem, device)
        if reason:
            report.notes.append(f"trajectory: {reason}; skipped")
            continue
        print(f"checking {label}: {steps} steps of {v.name}", file=sys.stderr)
        try:
            checks.check_trajectory(problem, v, steps, device, report)
        except Unavailable as exc:
            report.notes.append(f"trajectory: {exc}; skipped")


def isolated_checks(problem, variants: list, steps: int, device: str, report) -> dict:
    """Check the variants of frameworks that need a process of their own, one process per
    framework (``harness.isolated``): their trajectory rows go into the report, their own
    gradients come back to be compared with everyone's, by name."""
    from harness import check as checks
    from harness import isolated, schema
    from harness.results import ProblemRecord

    runnable = []
    for v in variants:
        reason = v.why_not(problem, device)
        if reason:
            report.notes.append(f"trajectory: {reason}; skipped")
        else:
            runnable.append(v)
    gradients = {}
    for framework in dict.fromkeys(v.framework for v in runnable):
        names = [v.name for v in runnable if v.framework == framework]
        print(f"checking {checks.label(problem)}: {', '.join(names)}, in a process of its own",
              file=sys.stderr)
        answers = isolated.ask({"do": "check", "variants": names, "steps": steps,
                                "device": device,
                                "problem": schema.to_dict(ProblemRecord.of(problem))})
        for name, answer in answers.items():
            if "unavailable" in answer:
                report.notes.append(f"{name}: {answer['unavailable']}; skipped")
                continue
            report.rows += [checks.Row(**row) for row in answer["rows"]]
            if "grads" in answer:
                gradients[name] = isolated.Gradients(answer["loss"], answer["grads"],
                                                     problem.spec)
    return gradients


def own_gradients(problem, variants: list, device: str, report) -> dict:
    """Fresh Trainers of the variants that compute their gradients their own way (a
    ``grads()`` method: nn.Module, Flax, Keras), by name."""
    trainers = {}
    for v in variants:
        if v.why_not(problem, device):
            continue
        try:
            cls = getattr(registry.import_module(v.framework), v.trainer)
            if hasattr(cls, "grads"):
                trainers[v.name] = v.make(problem, device)
        except Unavailable as exc:
            report.notes.append(f"gradients: {exc}; skipped")
    return trainers


# ---- report, compare, export, list ------------------------------------------------------------

def report(paths: list[str], out: str | None, force: bool, readme: str | None = None) -> int:
    from harness.report import DEFAULT_DIR, DEFAULT_OUT, build_report

    target = Path(out) if out is not None else Path(DEFAULT_DIR) / DEFAULT_OUT
    if out is not None and not out.strip():
        raise BenchError("--out is empty: give a Markdown file path")
    print(f"report: {build_report(paths, target, force, readme and Path(readme))}")
    return 0


def compare(a: str, b: str, fail_above: float | None, fmt: str = "text",
            measure: str = "time") -> int:
    from harness import compare as comparing

    return comparing.main(a, b, fail_above, fmt, measure)


def export(paths: list[str], fmt: str, out: str, force: bool) -> int:
    from harness import export as exporting

    return exporting.main(paths, fmt, out, force)


def list_variants(check_imports: bool) -> int:
    """The variants and whether each can run here: from the packages and devices present,
    without importing any framework, unless ``check_imports`` asks for the import itself
    (a framework that needs a process of its own is imported in one)."""
    from harness.environment import gpu_info
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
    from harness import isolated

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
