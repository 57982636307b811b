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
from harness.check import example_file, session
from harness.check import learner as learners
from harness.commands import check_example as check_example_command
from harness.commands import plans
from harness.measure import machine_state
from harness.measure.environment import default_threads
from harness.measure.timing import TimingConfig
from harness.procs import isolated, messages, worker
from harness.record import rows as flat
from harness.record import store
from harness.record.results import Case, ProblemRecord, ResultsError, Run
from implementations import registry
from implementations.contract import Variant
from implementations.problem import BenchError, Problem, SpecError, make_problem, parse_widths

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
    if isinstance(widths, (bytes, dict)) or not isinstance(widths, Sequence):
        raise ApiTypeError(f"widths must be a sequence of integers or '4,16,4', not "
                           f"{type(widths).__name__}")
    if not isinstance(bias, bool):
        raise ApiTypeError(f"bias must be True or False, not {bias!r}")
    for name, value in (("activation", activation), ("dtype", dtype)):
        if not isinstance(value, str):
            raise ApiTypeError(f"{name} must be a string, not {value!r}")
    if isinstance(batch, bool) or not isinstance(batch, int):
        raise ApiTypeError(f"batch must be an integer, not {batch!r}")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float))):
        raise ApiTypeError(f"lr must be a number or None, not {lr!r}")
    spec, batch = plans.network(tuple(widths), activation, "linear", bias, dtype, batch)
    return make_problem(spec, batch, lr, seed)  # its memory checked first, as the CLI does


class ApiTypeError(BenchError, TypeError):
    """An argument of the wrong type, said in one line."""


def device_of(device: str) -> str:
    if not isinstance(device, str) or device not in DEVICES:
        raise BenchError(f"unknown device {device!r}: choose cpu or cuda (or gpu)")
    return DEVICES[device]


def time(variant: str | Variant, problem: Problem, device: str = "cpu",
         seconds: float = 0.25) -> Case:
    """Time one variant on one problem and verify it, as one case of ``backprop-bench run``:
    ``harness.measure.timing.time_trainer`` (first call apart, K calibrated, ``seconds`` of timed
    blocks), then ``harness.procs.worker.verify`` against the float64 reference. Returns the
    ``Case``: ``status`` "ok", "failed" or "unavailable" (with ``reason``), ``median`` in
    seconds per step, ``timing`` (the ``Measurement``: the raw block times, from which
    ``timing.iqr``, ``timing.min`` and the rest are derived), ``check``, ``memory`` and the
    machine's ``state``.

    It runs in this process, after whatever this process did before, with its thread pools
    as they are, and the problem is rebuilt from its record (network, batch, lr, seed) as the
    CLI's worker does. Numbers to publish come from ``backprop-bench run``, whose separate
    processes are the careful way.
    """
    if not isinstance(variant, (str, Variant)):
        raise ApiTypeError(f"variant must be a variant's name or a Variant, not {variant!r}")
    if not isinstance(problem, Problem):
        raise ApiTypeError("problem must be a Problem, from backprop_bench.problem(...)")
    v = registry.get(variant.name if isinstance(variant, Variant) else variant)
    device = device_of(device)
    if isinstance(seconds, bool) or not (isinstance(seconds, (int, float))
                                         and math.isfinite(seconds) and seconds > 0):
        raise BenchError(f"seconds {seconds!r} must be a finite number above 0")
    job = messages.JobCase(ProblemRecord.of(problem), v.name, device)
    start = machine_state.snapshot(sample_s=0, static=False)
    case = worker.run_case(job, TimingConfig(budget_s=float(seconds)), COMPILED)
    case.state = machine_state.assess(start, machine_state.snapshot(sample_s=0, static=False))
    return case


def check(problem: Problem, frameworks: Sequence[str] | None = None, device: str = "cpu",
          steps: int = 100, include_all: bool = False, threads: int | None = None
          ) -> checks.Report:
    """Check gradients as ``backprop-bench check`` does: each framework's loss and gradients,
    and each variant's own, against float64 finite differences, the exact float64 chain rule
    and the closed form (1-1-1), then every variant of those frameworks trained ``steps``
    steps against the float64 reference (``steps=0``: gradients only); each judged on its own
    evidence, with a one-line diagnosis when it fails (``report.diagnoses``). ``frameworks``
    defaults to every installed one (the others become notes); variants whose cold build
    takes minutes are left out unless cached or ``include_all``. Each framework's settings
    (``threads``, default all usable cores) are applied as ``run`` applies them, in this
    process, and recorded in ``report.settings``. Returns the ``harness.check.Report``:
    ``passed``, ``rows``, ``notes``, ``failed()``, ``failures()``, ``diagnoses``;
    ``harness.check.render(report, [problem])`` prints it as the CLI does."""
    threads = threads_of(threads)
    return check_problems([problem], frameworks, device, steps, include_all, threads)


def check_impl(path: str | os.PathLike, problems: Sequence[Problem] | None = None,
               frameworks: Sequence[str] | None = None, steps: int = 100,
               threads: int | None = None) -> checks.Report:
    """Check a learner's own backward pass in a file (``grads(params, x, y)`` and optionally
    ``sgd_step`` and ``trace``, on NumPy, torch or JAX arrays; see ``harness.check.learner``)
    like a framework, on ``problems`` (default: the default networks of ``check``, with the
    file's ACTIVATION, OUTPUT_ACTIVATION and BIAS), beside the frameworks (default: every
    installed one; ``[]``: none). The file runs in a process of its own, under the check's
    timeout; its subject in the report is the file's name."""
    path, threads, problems = path_of(path), threads_of(threads), problems_of(problems)
    learner = learners.read_learner(path)  # its declarations only: it runs in a child
    if problems is None:
        problems = plans.check_problems(plans.Networks(), learner.activation, learner.bias,
                                        learner.output_activation)
    return check_problems(list(problems), frameworks, "cpu", steps, False, threads, learner)


def check_example(path: str | os.PathLike, frameworks: Sequence[str] | None = None,
                  include_all: bool = False):
    """Reproduce a published worked example from a TOML or JSON file in every framework (see
    ``harness.check.example``). Returns its ``Outcome``: ``passed``,
    ``results(value)``, ``failed()``, ``unreproduced()``;
    ``harness.check.example.render(outcome)`` prints it."""
    example = example_file.read_example(path_of(path))
    names = names_of(frameworks)
    selection = session.select(names, None, [example.problem], "cpu", include_all)
    outcome = check_example_command.run_example(example, selection, lambda text: None)
    outcome.notes = selection.notes + outcome.notes
    return outcome


def path_of(path) -> str | os.PathLike:
    """A file's path, as given (str or os.PathLike), or a one-line ApiTypeError."""
    if not isinstance(path, (str, os.PathLike)) or not isinstance(os.fspath(path), str):
        raise ApiTypeError(f"path must be a file's path (str or os.PathLike), not "
                           f"{path!r}"[:200])
    return path


def threads_of(threads) -> int | None:
    """Threads for every framework: None (all usable cores), or a whole number from 1 to
    the usable cores, as ``--threads`` takes it; else a one-line error."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise ApiTypeError(f"threads must be a whole number or None, not {threads!r}"[:200])
    usable = default_threads()
    if not 1 <= threads <= usable:
        raise SpecError(f"threads {threads}: give 1 to {usable} (the cores usable here), or "
                        f"None for all of them")
    return threads


def problems_of(problems) -> list[Problem] | None:
    """A list of Problems, or None (the default networks); else a one-line error."""
    if problems is None:
        return None
    if isinstance(problems, Problem):
        raise ApiTypeError("problems must be a list of Problems: for one, [problem]")
    if isinstance(problems, (str, bytes)) or not isinstance(problems, Iterable):
        raise ApiTypeError(f"problems must be a list of Problems, not {problems!r}"[:200])
    problems = list(problems)
    if not problems:
        raise BenchError("problems is empty: give at least one Problem, or None for the "
                         "default networks of check")
    return problems


def runs_of(runs) -> list[Run]:
    """The Runs that ``load`` returns (one, or a list), or a one-line ApiTypeError."""
    if isinstance(runs, Run):
        return [runs]
    if isinstance(runs, (str, os.PathLike, bytes)):
        raise ApiTypeError(f"runs must be the Runs that load() returns, not a path: "
                           f"records(load({runs!r}))"[:200])
    items = list(runs) if isinstance(runs, Iterable) else [runs]
    if not all(isinstance(r, Run) for r in items):
        raise ApiTypeError(f"runs must be a Run or a list of Runs, from load(), not "
                           f"{runs!r}"[:200])
    return items


def names_of(frameworks: Sequence[str] | None) -> tuple[str, ...] | None:
    if frameworks is None:
        return None
    if isinstance(frameworks, str) or not all(isinstance(f, str) for f in frameworks):
        raise ApiTypeError(f"frameworks must be a list of framework names, not {frameworks!r}")
    return tuple(frameworks)


def check_problems(problems: list[Problem], frameworks, device: str, steps: int,
                   include_all: bool, threads: int | None, learner=None) -> checks.Report:
    device = device_of(device)
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise ApiTypeError(f"steps must be a whole number, not {steps!r}")
    if steps < 0:
        raise SpecError(f"steps {steps} must be 0 or more")
    if not all(isinstance(p, Problem) for p in problems):
        raise ApiTypeError("problem must be a Problem, from backprop_bench.problem(...)")
    names = names_of(frameworks)
    if names == () and learner is None:
        raise BenchError("frameworks is empty: name at least one framework")
    selection = session.select(names or None, None, problems, device, include_all, learner)
    if names == ():
        selection.modules, selection.variants = {}, []
    return session.check(problems, selection, steps, device, threads or default_threads(),
                         say=lambda text: None, elsewhere=isolated.elsewhere)


def load(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Run]:
    """The runs in results files, or in folders of them (searched for *.json as the CLI
    does). A file that cannot be read is a warning and left out; none readable is a
    ``ResultsError``."""
    if isinstance(paths, (bytes, bytearray)) or not isinstance(paths, (str, os.PathLike,
                                                                      Iterable)):
        raise ApiTypeError(f"paths must be a path or a list of paths, not {paths!r}")
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not all(isinstance(p, (str, os.PathLike)) for p in items):
        raise ApiTypeError(f"paths must be str or os.PathLike, not {items!r}"[:200])
    loaded, problems = store.read_runs([str(p) for p in items])
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
    """One flat dict per case of every run, with the columns of ``harness.record.rows.NAMES``
    (its file when it came from ``load``, machine, device, variant, framework, kind, network,
    widths, dtype, batch, status, median_s, iqr_s, min_s, first_call_s, compile_s,
    flops_per_step, gflops, memory figures, ...); times in seconds per step."""
    return [row for run in runs_of(runs) for row in flat.run_records(run, FILES.get(id(run)))]


def dataframe(runs: Run | Iterable[Run]):
    """``records(runs)`` as a pandas DataFrame, one row per case; needs pandas installed."""
    try:
        import pandas  # optional: only to_pandas needs pandas
    except ImportError:
        raise BenchError("dataframe() needs pandas, which is not installed: pip install "
                         "pandas") from None
    return pandas.DataFrame(records(runs), columns=list(flat.NAMES))
