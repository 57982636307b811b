"""The Python API, for a notebook or a script: ``import backprop_bench as bb``.

``variants()`` lists what can be timed, ``problem(...)`` makes a network and its data,
``check(problem)`` checks gradients as ``backprop-bench check`` does, ``time(variant,
problem)`` times and verifies one variant with the CLI's engine and checks, and ``load``,
``records`` and ``dataframe`` turn results files into rows for analysis. Errors a user can fix
are ``BenchError`` with a one-line message, as on the command line.

Everything here runs in the caller's process. The CLI's ``run`` times each framework in a
process of its own, with its threads pinned and its caches cold: it is the careful way, and
``load`` reads what it wrote.
"""

from __future__ import annotations

import math
import os
import warnings
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path

from harness import check as checks
from harness import machine_state, messages, store, worker
from harness import records as flat
from harness.results import Case, ProblemRecord, ResultsError, Run
from harness.timing import TimingConfig
from implementations import registry
from implementations.contract import Unavailable, Variant
from implementations.problem import BenchError, NetworkSpec, Problem, make_problem, parse_widths

DEVICES = {"cpu": "cpu", "cuda": "cuda", "gpu": "cuda"}
# The file each loaded Run came from, for records(); a Run has no field for it (it is not part
# of the results), and the entry goes when the Run does.
FILES: dict[int, str] = {}
COMPILED: set[str] = set()  # compiling variants timed in this process (first_in_process)


def variants() -> list[Variant]:
    """Every registered variant, in registry order, installed or not: each has ``name``,
    ``framework``, ``kind``, ``devices``, ``dtypes`` and ``description``, and
    ``why_not(problem, device)`` says why it cannot run a problem (None if it can)."""
    return list(registry.VARIANTS.values())


def problem(widths: Sequence[int] | str = (1, 1, 1), activation: str = "linear",
            dtype: str = "float64", batch: int = 1, lr: float | None = None, seed: int = 0,
            bias: bool = False) -> Problem:
    """A network (``widths`` input to output, as a sequence or "4,16,4"), its seeded data
    and starting weights. The default is the worked example: 1-1-1 linear, X = 1 -> Y = -1.
    ``lr`` defaults to 0.1, times 16/width for networks wider than 16."""
    if isinstance(widths, str):
        widths = parse_widths(widths)
    spec = NetworkSpec(tuple(widths), activation, bias=bias, dtype=dtype)
    return make_problem(spec, batch, lr, seed)


def device_of(device: str) -> str:
    if device not in DEVICES:
        raise BenchError(f"unknown device {device!r}: choose cpu or cuda (or gpu)")
    return DEVICES[device]


def time(variant: str | Variant, problem: Problem, device: str = "cpu",
         seconds: float = 0.25) -> Case:
    """Time one variant on one problem and verify it, as one case of ``backprop-bench run``:
    ``harness.timing.time_trainer`` (first call apart, K calibrated, ``seconds`` of timed
    blocks), then ``harness.worker.verify`` against the float64 reference. Returns the
    ``Case``: ``status`` "ok", "failed" or "unavailable" (with ``reason``), ``median`` in
    seconds per step, ``timing``, ``check``, ``memory`` and the machine's ``state``.

    It runs in this process, after whatever this process did before, with its thread pools
    as they are, and the problem is rebuilt from its record (network, batch, lr, seed) as the
    CLI's worker does. Numbers to publish come from ``backprop-bench run``, whose separate
    processes are the careful way.
    """
    v = registry.get(variant.name if isinstance(variant, Variant) else variant)
    device = device_of(device)
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
        raise BenchError(f"seconds {seconds!r} must be a finite number above 0")
    job = messages.JobCase(ProblemRecord.of(problem), v.name, device)
    start = machine_state.snapshot(sample_s=0, static=False)
    case = worker.run_case(job, TimingConfig(budget_s=float(seconds)), COMPILED)
    case.state = machine_state.assess(start, machine_state.snapshot(sample_s=0, static=False))
    return case


def check(problem: Problem, frameworks: Sequence[str] | None = None, device: str = "cpu",
          steps: int = 100) -> checks.Report:
    """Check gradients as ``backprop-bench check`` does: each framework's loss and gradients
    against float64 finite differences, the closed form (1-1-1) and each other, then every
    variant of those frameworks trained ``steps`` steps against the float64 reference
    (``steps=0``: gradients only). ``frameworks`` defaults to every installed one (the others
    become notes). Returns the ``harness.check.Report``: ``passed``, ``rows``, ``notes``,
    ``failures()``; ``harness.check.render(report, [problem])`` prints it as the CLI does."""
    device = device_of(device)
    if steps < 0:
        raise BenchError(f"steps {steps} must be 0 or more")
    explicit = frameworks is not None
    names = list(frameworks) if explicit else list(registry.FRAMEWORKS)
    if not names:
        raise BenchError("frameworks is empty: name at least one framework")
    report = checks.Report()
    modules = framework_modules(names, explicit, report)
    usable = {n: m for n, m in modules.items() if registry.FRAMEWORKS[n].gradients
              and not skipped("gradients", registry.main_variant(n), problem, device, report)}
    if usable:
        checks.check_gradients(problem, usable, device, report)
    trained = [v for v in variants() if v.framework in modules] if steps else []
    for v in trained:
        if not skipped("trajectory", v, problem, device, report):
            try:
                checks.check_trajectory(problem, v, steps, device, report)
            except Unavailable as exc:
                report.notes.append(f"trajectory: {exc}; skipped")
    if not report.rows:
        raise BenchError("nothing was checked: " + "; ".join(dict.fromkeys(report.notes)))
    return report


def framework_modules(names: list[str], explicit: bool, report: checks.Report) -> dict:
    """The modules of the named frameworks; one that cannot start is an error when it was
    asked for by name, else a note."""
    modules = {}
    for name in names:
        registry.get_framework(name)
        try:
            modules[name] = registry.import_module(name)
        except Unavailable as exc:
            if explicit:
                raise
            report.notes.append(str(exc))
    return modules


def skipped(what: str, v: Variant, problem: Problem, device: str,
            report: checks.Report) -> bool:
    """True, with a note in the report, if the variant cannot run the problem on the device."""
    reason = v.why_not(problem, device)
    if reason:
        report.notes.append(f"{what}: {reason}; skipped")
    return bool(reason)


def load(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Run]:
    """The runs in results files, or in folders of them (searched for *.json as the CLI
    does). A file that cannot be read is a warning and left out; none readable is a
    ``ResultsError``."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    loaded, problems = store.load_many([str(p) for p in items])
    if not loaded:
        where = ", ".join(map(str, items)) or "no path"
        first = f" (first: {problems[0]})" if problems else ""
        raise ResultsError(f"no valid results file in {where}{first}")
    for text in problems:
        warnings.warn(f"{text}; left out", stacklevel=2)
    for path, run in loaded:
        remember(run, path)
    return [run for _, run in loaded]


def remember(run: Run, path: Path) -> None:
    FILES[id(run)] = str(path)
    weakref.finalize(run, FILES.pop, id(run), None)


def records(runs: Run | Iterable[Run]) -> list[dict]:
    """One flat dict per case of every run, with the columns of ``harness.records.COLUMNS``
    (its file when it came from ``load``, machine, device, variant, framework, kind, network,
    widths, dtype, batch, status, median_s, iqr_s, min_s, first_call_s, compile_s,
    flops_per_step, gflops, memory figures, ...); times in seconds per step."""
    runs = [runs] if isinstance(runs, Run) else list(runs)
    return [row for run in runs for row in flat.run_records(run, FILES.get(id(run)))]


def dataframe(runs: Run | Iterable[Run]):
    """``records(runs)`` as a pandas DataFrame, one row per case; needs pandas installed."""
    try:
        import pandas
    except ImportError:
        raise BenchError("dataframe() needs pandas, which is not installed: pip install "
                         "pandas") from None
    return pandas.DataFrame(records(runs), columns=list(flat.COLUMNS))
