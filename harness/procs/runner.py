"""Compose a run: plan the cases, run one worker process per framework, save case by case.

Each framework runs in its own process (``harness.procs.worker``), so thread pools, JIT caches and
GPU memory never interfere. Every finished case is written to the results file at once
(atomically), so Ctrl-C, SIGTERM or a crashing worker leaves a valid file with every finished
case. A case that runs past its timeout has its worker's whole process group killed, is
recorded as failed ("timed out after N s"), and a fresh worker goes on with the cases after
it. Workers run in sessions of their own (a Ctrl-C reaches only the runner, which kills them)
and die with the runner even when it is killed outright. With ``Plan.count``, counting rounds
follow the timed ones: the same worker under Valgrind (``harness.measure.callgrind``) adds each ok
case's instructions per step to it (``harness.measure.instructions``); a case that cannot be counted
keeps its times and says why.
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.measure import callgrind, environment, machine_state
from harness.measure.climit import measure_c_limit
from harness.measure.instructions import THREADS, CountConfig, Instructions
from harness.measure.timing import TimingConfig, engine_overhead
from harness.procs import child, messages
from harness.procs.messages import CaseCounted
from harness.record import schema, store
from harness.record.results import (
    CallFloor,
    Case,
    Commit,
    Config,
    Declared,
    FrameworkRecord,
    Machine,
    Peak,
    ProblemRecord,
    Run,
    case_id,
    now,
)
from harness.tables import printable
from implementations import registry
from implementations.contract import Variant
from implementations.problem import BenchError, Problem

STARTUP_S = 120.0  # imports, the matmul peaks and the warm-up, before the first case starts
CASE_TIMEOUT_BASE_S = 300.0  # a cold AOTInductor or 256-step torch.compile build: minutes
CASE_TIMEOUT_PER_BUDGET = 20.0  # and the timed blocks, the checks, the calibration


def default_case_timeout(timing: TimingConfig) -> float:
    """Seconds one case may take before its worker is killed: scaled to its time budget."""
    return CASE_TIMEOUT_BASE_S + CASE_TIMEOUT_PER_BUDGET * timing.budget_s


@dataclass
class Plan:
    """What to run: problems × variants on a device, and how to time them."""

    command: str
    device: str
    problems: list[Problem]
    variants: list[Variant]
    threads: int
    timing: TimingConfig = field(default_factory=TimingConfig)
    peaks: list[str] = field(default_factory=list)  # dtypes whose matmul peak is measured
    explicit_variants: bool = False
    notes: list[str] = field(default_factory=list)
    grid: dict | None = None
    extra_cases: list[tuple[Problem, Variant]] = field(default_factory=list)
    processes: int = 1  # worker processes per framework, pooled into each case
    skip: dict[int, tuple[str, ...]] = field(default_factory=dict)  # problem index -> variants
    case_timeout_s: float | None = None
    include: Callable[[Problem, Variant], bool] | None = None  # None: every pair (see scale)
    count: CountConfig | None = None  # also count instructions per step under Valgrind

    def cases(self) -> list[tuple[Problem, Variant, str]]:
        """(problem, variant, device) triples that can run; the rest are skipped, each with
        the reason its variant's declarations give (``Variant.why_not``), in ``self.notes``
        (replaced on every call) and so in the results file and the report. Variants named
        explicitly of which not one can run any case asked for are an error. The reference
        variants (a ``role``) run on the CPU when the run is on a GPU."""
        out, notes = [], []
        for v in self.variants:
            for i, p in enumerate(self.problems):
                if v.name in self.skip.get(i, ()) or (self.include and not self.include(p, v)):
                    continue
                dev = self.device
                if dev not in v.devices and v.role and "cpu" in v.devices:
                    dev = "cpu"
                reason = v.why_not(p, dev)
                if reason:
                    notes.append(reason)
                else:
                    out.append((p, v, dev))
        if self.explicit_variants and not out and notes:
            first = self.variants[0].name
            raise BenchError(f"variant {first} cannot run any case asked for: {notes[0]}"
                             if len(self.variants) == 1 else
                             f"no variant asked for can run any case asked for: {notes[0]}")
        self.notes = list(dict.fromkeys(notes))
        out += [(p, v, "cpu") for p, v in self.extra_cases if not v.why_not(p, "cpu")]
        problems = self.problems + [p for p, _ in self.extra_cases]
        order = {id(p): i for i, p in enumerate(problems)}
        return sorted(out, key=lambda c: order[id(c[0])])

    def timeout_s(self) -> float:
        return self.case_timeout_s or default_case_timeout(self.timing)

    def config(self) -> Config:
        return Config(
            device=self.device, variants=list(dict.fromkeys(v.name for v in self.variants)),
            problems=[ProblemRecord.of(p) for p in self.problems], threads=self.threads,
            timing=self.timing, processes=self.processes, peaks=list(self.peaks),
            extra_cases=[{"problem": schema.to_dict(ProblemRecord.of(p)), "variant": v.name}
                         for p, v in self.extra_cases],
            python=sys.executable, grid=self.grid, count=self.count)


def new_run(plan: Plan) -> Run:
    """The run's header: machine, software, commit, environment, config and the CPU's
    ceilings."""
    run = Run(plan.command, Machine(**environment.machine_info()),
              environment.software_info(), Commit(**environment.commit_info()), plan.config())
    run.notes = list(dict.fromkeys(plan.notes))
    run.declared = {v.name: Declared.of(v) for v in [*plan.variants,
                                                     *(v for _, v in plan.extra_cases)]}
    run.environment = environment.environment_info()
    run.ceilings.engine_overhead = engine_overhead(plan.timing)
    run.ceilings.c_limit = measure_c_limit()
    return run


def execute(plan: Plan, path: Path, on_case: Callable[[Case, int, int], None],
            say: Callable[[str], None] = lambda text: print(text, file=sys.stderr),
            on_count: Callable[[Case, int, int], None] | None = None) -> Run:
    """Run the plan, writing the results file after every case; returns the run.

    With ``plan.processes`` > 1 (``--rounds``) every framework's worker runs that many times,
    one round after another, the frameworks in a rotated order each round so that drift hits
    them alike; the later rounds reuse the first round's K and their samples are pooled into
    the same case, so that its IQR also holds the noise between processes. Before timing, the
    machine is looked at for 0.5 s: a busy neighbour or CPU steal is said in one line (``say``)
    and recorded; every case records the machine's state while it ran. With ``plan.count``,
    the rounds that count the cases that timed ok follow, each counted case told to
    ``on_count``.
    """
    cases = plan.cases()
    if not cases:
        raise BenchError("nothing to run: " + ("; ".join(dict.fromkeys(plan.notes)) or
                                              "no variant matches"))
    run = new_run(plan)
    start = look_at_machine(run, say)
    store.write(run, path)
    progress = {"done": 0, "total": len(cases) * plan.processes}

    def report(case: Case, tell: Callable[[Case, int, int], None] = on_case) -> None:
        progress["done"] += 1
        tell(case, progress["done"], progress["total"])

    unwritable = False
    try:
        rounds(plan, run, path, cases, report)
        if plan.count is not None:
            ok = {c.id for c in run.ok_cases()}
            countable = [c for c in cases if triple_id(c) in ok]
            progress["total"] += len(countable) * plan.processes
            rounds(plan, run, path, countable, lambda case: report(case, on_count or on_case),
                   plan.count)
    except (KeyboardInterrupt, BrokenPipeError):  # Ctrl-C, SIGTERM, or our stdout closed
        run.interrupted = True
        raise
    except store.WriteError as exc:  # a full disk: the file holds the last write, whole
        unwritable = True
        raise store.WriteError(f"{exc}; it holds the cases finished before, and the run "
                               f"stopped") from None
    finally:
        run.finished = now()
        end = machine_state.snapshot(sample_s=0.2, static=False)
        run.machine_state.update(after=machine_state.compact(end),
                                 during=machine_state.assess(start, end))
        if not unwritable:
            store.write(run, path)
    return run


def rounds(plan: Plan, run: Run, path: Path, cases: list, report: Callable[[Case], None],
           count: CountConfig | None = None) -> None:
    """``plan.processes`` rounds of one worker per framework, the frameworks in a rotated
    order each round; counting workers (under Valgrind) with ``count``."""
    for round_ in range(plan.processes):
        for framework in rotated(list(registry.FRAMEWORKS), round_):
            mine = [c for c in cases if c[1].framework == framework]
            if mine:
                Round(plan, run, path, framework, round_, report, count=count).execute(mine)


def triple_id(triple) -> str:
    p, v, d = triple
    return case_id(d, v.name, ProblemRecord.of(p), v.workers)


def rotated(items: list, k: int) -> list:
    k %= max(1, len(items))
    return items[k:] + items[:k]


def look_at_machine(run: Run, say: Callable[[str], None]) -> dict:
    """Watch the machine for half a second before timing; say (one line) and record what
    would distort the timings. Returns the snapshot the run's state is measured from."""
    first = machine_state.snapshot(sample_s=0, static=False)
    state = machine_state.snapshot(sample_s=0.5)
    warnings = machine_state.assess(first, state)["reasons"]
    run.machine_state = {"before": machine_state.compact(state), "warnings_before": warnings}
    if warnings:
        say(f"warning: the machine is not quiet ({'; '.join(warnings)}): timings may be "
            f"slower than they should, and the cases it disturbs are marked")
    return state


@dataclass
class Round:
    """The worker processes of one framework in one round; every case saved as it arrives."""

    plan: Plan
    run: Run
    path: Path
    framework: str
    round_: int
    on_case: Callable[[Case], None]
    current: str | None = None  # the id of the case the worker is on
    state: dict | None = None  # the machine when that case started
    floored: bool = False  # its call floors asked for already
    count: CountConfig | None = None  # a counting round: its workers run under Valgrind
    framework_error: str | None = None  # why the framework did not start under Valgrind
    framework_settings: dict | None = None  # its settings in the counting worker

    def run_cases(self, pending: list, peaks: list) -> list:
        """One worker for the pending cases; returns those it did not finish."""
        job = self.job(pending, peaks)
        ids = [triple_id(c) for c in pending]
        got: set[str] = set()
        self.current = None  # a fresh worker: its start-up has STARTUP_S, not a case's timeout
        status, last, timed_out = self.start_worker(job, lambda m: self.receive(m, got))
        left = [c for c, i in zip(pending, ids) if i not in got]
        if timed_out and left and self.count is not None and self.current is None and not got:
            for triple in left:  # it never started: a fresh one would wait as long again
                self.lose(triple, self.timed_out(started=False))
            return []
        if timed_out and left:
            self.lose(left[0], self.timed_out())
            return left[1:]
        if self.current is not None and left:  # it died in that case: the rest go on
            self.lose(left[0], lost_reason(status, last))
            return left[1:]
        for p, v, d in left:
            self.lose((p, v, d), lost_reason(status, last))
        return []

    def start_worker(self, job: messages.Job, on_message: Callable
                     ) -> tuple[int | None, str, bool]:
        if self.count is None:
            return run_worker(job, on_message, self.timeout)
        # the dumps' folder: made by the child's starter, removed by its lifeline (even when
        # this process is killed); its name as long as a mkdtemp one, so that the counted
        # process's arguments are
        out = Path(tempfile.gettempdir()) / f"bb-callgrind-{uuid.uuid4().hex[:8]}"
        argv = callgrind.command(WORKER, out)
        return run_worker(job, on_message, self.timeout, argv,
                          lambda env: callgrind.fixed_environment(env, out), out)

    def timed_out(self, started: bool = True) -> str:
        if self.count is None:
            return (f"timed out after {self.plan.timeout_s():g} s (the worker was killed; "
                    f"--timeout sets the limit)")
        if not started:
            return (f"its counting worker did not start within {self.count.startup_s:g} s "
                    f"under valgrind (it was killed; --count-timeout sets the limit)")
        return (f"took longer than {self.count.timeout_s:g} s under valgrind (the worker was "
                f"killed; --count-timeout sets the limit)")

    def execute(self, mine: list) -> None:
        pending, peaks = list(mine), self.peaks(mine)
        while pending:
            pending, peaks = self.run_cases(pending, peaks), []

    def timeout(self) -> float:
        if self.count is not None:
            return self.count.startup_s if self.current is None else self.count.timeout_s
        return STARTUP_S if self.current is None else self.plan.timeout_s()

    def job(self, pending: list, peaks: list) -> messages.Job:
        by_id = {c.id: c for c in self.run.cases}
        k = fixed_k if self.count is None else counted_k
        cases = [messages.JobCase(ProblemRecord.of(p), v.name, d, k(
            by_id.get(triple_id((p, v, d)))), v.workers) for p, v, d in pending]
        if self.count is not None:
            return messages.Job(self.framework, self.plan.device, THREADS, self.plan.timing,
                                cases, count=self.count)
        floors, self.floored = self.round_ == 0 and not self.floored, True
        return messages.Job(self.framework, self.plan.device, self.plan.threads,
                            self.plan.timing, cases, peaks, floors)

    def peaks(self, mine: list) -> list[messages.PeakJob]:
        """The matmul ceilings to measure in this framework's first worker: one per dtype
        asked for, on every device its cases use (a CPU reference in a GPU run gets its CPU
        peak), at the framework's own size."""
        fw = registry.get_framework(self.framework)
        if self.round_ or not fw.arrays or self.count is not None:
            return []
        devices = dict.fromkeys(d for _, _, d in mine)
        return [messages.PeakJob(d, t, fw.peak_n.get(d, 2048)) for d in devices
                for t in self.plan.peaks]

    def receive(self, message, got: set) -> None:
        plain_text(message)
        if isinstance(message, messages.CaseStarted):
            self.current = message.id
            self.state = machine_state.snapshot(sample_s=0, static=False)
        elif isinstance(message, Case):
            got.add(message.id)
            self.current = None
            end = machine_state.snapshot(sample_s=0, static=False)
            message.state = machine_state.assess(self.state or end, end)
            self.on_case(self.run.add(message))
            store.write(self.run, self.path)
        elif isinstance(message, CaseCounted):
            got.add(message.id)
            self.current = None
            self.counted(message.id, message.instructions)
        elif isinstance(message, messages.FrameworkReady) and self.round_ == 0 and \
                self.count is None:
            self.run.frameworks[message.name] = FrameworkRecord(message.settings,
                                                                message.pinning)
        elif isinstance(message, messages.FrameworkReady) and self.count is not None:
            self.framework_settings = {**message.settings, "pinning": message.pinning}
        elif isinstance(message, messages.FrameworkFailed) and self.count is not None:
            self.framework_error = f"under valgrind: {message.error}"
        elif isinstance(message, messages.FrameworkFailed) and self.round_ == 0:
            self.run.frameworks[message.name] = FrameworkRecord(error=message.error)
        elif isinstance(message, Peak):
            self.run.ceilings.matmul_peak.append(message)
        elif isinstance(message, CallFloor):
            self.run.ceilings.call_floors.append(message)

    def lose(self, triple, reason: str) -> None:
        if self.count is not None:  # the case keeps its times; it could not be counted
            self.counted(triple_id(triple), Instructions.failed(self.framework_error or reason))
            return
        p, v, d = triple
        case = Case.new(p, v, d)
        case.fail("failed", reason)
        self.on_case(self.run.add(case))
        store.write(self.run, self.path)

    def counted(self, cid: str, counted: Instructions) -> None:
        """Add a process's count to its case (pooled with earlier rounds'), and save."""
        case = next(c for c in self.run.cases if c.id == cid)
        counted.settings = counted.settings or self.framework_settings
        if case.instructions is None:
            case.instructions = counted
        else:
            case.instructions.pool(counted)
        self.on_case(case)
        store.write(self.run, self.path)


def plain_text(message) -> None:
    """The reasons a worker sends, as plain text (``tables.printable``): they are shown and
    stored, and a framework's error may hold a terminal's escapes."""
    if isinstance(message, Case) and message.reason:
        message.reason = printable(message.reason)
    elif isinstance(message, CaseCounted) and message.instructions.error:
        message.instructions.error = printable(message.instructions.error)
    elif isinstance(message, messages.FrameworkFailed):
        message.error = printable(message.error)


def fixed_k(case: Case | None) -> int | None:
    """The K an earlier process used for this case, so that samples can be pooled."""
    return case.timing.block_steps if case and case.ok else None


def counted_k(case: Case | None) -> int | None:
    """The K an earlier counting process used for this case (its counts are pooled)."""
    counted = case.instructions if case else None
    return counted.block_steps if counted and counted.ok else None


def lost_reason(status: int | None, last: str) -> str:
    said = f": {last}" if last else " (it wrote nothing to its log)"
    return f"worker process exited with status {status} before this case finished{said}"[:500]


WORKER = child.command("harness.procs.worker")


def run_worker(job: messages.Job, on_message: Callable, timeout: Callable[[], float],
               argv: list[str] = WORKER, env: Callable[[dict], dict] | None = None,
               folder: Path | None = None) -> tuple[int | None, str, bool]:
    """Run one worker (``argv``: the worker, or the worker under Valgrind, with ``folder``
    for its dumps) through the one child mechanism (``harness.procs.child.run``); (exit
    status, last line of its log, timed out)."""
    return child.run(argv, job, on_message, timeout, env, folder)
