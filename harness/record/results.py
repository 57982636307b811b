"""The typed results model: the only way code reads or writes results.

A results file holds one ``Run``: where it ran (``Machine``, software versions, ``Commit``),
what was asked (``Config``), the frameworks' settings, the machine's ``Ceilings`` and one
``Case`` per (device, variant, problem), each with its ``Timing`` (raw samples and
``PerStep`` statistics), its check and, when counted, its ``Instructions`` per step
(``harness.measure.instructions``). ``Run.from_dict`` validates a whole file once
(``harness.record.schema``), so that every reader after it may trust every field;
``to_dict`` is the inverse. ``harness.record.store`` reads and writes the files.

Schema versions: 3 is written (2 and a case's optional ``instructions``). Version 1 and 2
files (the same fields, fewer optional ones) still load; any other version is refused with
one line.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from harness.measure.ceilings import AllreduceCurve, CallFloor, Ceilings, Peak  # noqa: F401 (the model)
from harness.measure.instructions import CountConfig, Instructions
from harness.measure.timing import Measurement, Stats, TimingConfig
from harness.record import schema, shapes
from implementations.problem import BenchError, NetworkSpec, Problem, make_problem

SCHEMA = "backprop-bench/results"
SCHEMA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
STATUSES = ("ok", "failed", "unavailable")


class ResultsError(BenchError):
    """A results file that cannot be read or written."""


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ProblemRecord:
    """The problem of a case: network, batch, learning rate and seed (hashable: a key)."""

    widths: tuple[int, ...]
    activation: str
    output_activation: str = "linear"
    bias: bool = False
    dtype: str = "float64"
    batch: int = 1
    lr: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.widths) < 2 or min(self.widths) < 1 or self.batch < 1:
            raise ValueError(f"not a network: widths {list(self.widths)}, batch {self.batch}")

    @classmethod
    def of(cls, problem: Problem) -> ProblemRecord:
        s = problem.spec
        return cls(s.widths, s.activation, s.output_activation, s.bias, s.dtype, problem.batch,
                   problem.lr, problem.seed)

    def spec(self) -> NetworkSpec:
        return NetworkSpec(self.widths, self.activation, self.output_activation, self.bias,
                           self.dtype)

    def problem(self) -> Problem:
        return make_problem(self.spec(), self.batch, self.lr, self.seed)

    def network(self) -> str:
        """'16-16-16 tanh+b float32': the network without the batch."""
        bias = "+b" if self.bias else ""
        return f"{'-'.join(map(str, self.widths))} {self.activation}{bias} {self.dtype}"

    def label(self) -> str:
        """'16-16-16 tanh float32 b64': how tables name a problem."""
        return f"{self.network()} b{self.batch}"

    @property
    def depth(self) -> int:
        return len(self.widths) - 1

    @property
    def square_width(self) -> int | None:
        """d of a [d] * (depth + 1) network, None for any other shape."""
        return self.widths[0] if len(set(self.widths)) == 1 else None

    @property
    def is_worked_example(self) -> bool:
        return self.widths == (1, 1, 1)


SHORTEST_S = 1e-12  # a picosecond: no positive time a results file holds is shorter
LONGEST_S = 1e7  # 115 days: nor longer (so that every ratio of two times is finite)


def seconds(value: float, name: str) -> None:
    """ValueError unless ``value`` is a time a machine could have measured: 0, or from a
    picosecond to LONGEST_S (a negative time or 1e-320 s is a corrupt file: 1/1e-320 is inf)."""
    if value < 0 or 0 < value < SHORTEST_S or value > LONGEST_S:
        raise ValueError(f"{name} {value!r} s is not a measured time")


def case_id(device: str, variant: str, problem: ProblemRecord, workers: int = 1) -> str:
    """A stable key for a case: device, variant, network, batch, and "/xN" on N > 1 workers."""
    many = f"/x{workers}" if workers > 1 else ""
    return f"{device}/{variant}/{problem.network()}/b{problem.batch}{many}"


@dataclass
class PerStep:
    """Per-step statistics of a case's raw block times (``timing.Stats``)."""

    median_s: float
    q1_s: float
    q3_s: float
    iqr_s: float
    min_s: float
    mean_s: float
    blocks: int
    noisy: bool
    discarded: bool = False  # the case failed its check after timing: not a result

    def __post_init__(self) -> None:
        for name in ("median_s", "q1_s", "q3_s", "iqr_s", "min_s", "mean_s"):
            seconds(getattr(self, name), name)
        if self.blocks < 0:
            raise ValueError(f"blocks {self.blocks} is negative")

    @classmethod
    def of(cls, stats: Stats) -> PerStep:
        return cls(stats.median, stats.q1, stats.q3, stats.iqr, stats.min, stats.mean,
                   len(stats.samples_s), stats.noisy)


@dataclass
class Timing:
    """What the timing engine measured for one case (``timing.Measurement``)."""

    first_call_s: float
    first_call_steps: int
    compile_s: float
    block_steps: int
    samples_s: list[float]
    per_step: PerStep
    warmup_blocks: int = 0
    calibration: list[tuple[int, float]] = field(default_factory=list)
    total_steps: int = 0
    first_calls: int = 1

    def __post_init__(self) -> None:
        if self.block_steps < 1 or self.first_call_steps < 0 or self.total_steps < 0:
            raise ValueError(f"block_steps {self.block_steps}, first_call_steps "
                             f"{self.first_call_steps} and total_steps {self.total_steps}: a "
                             f"block has at least one step, and no count is negative")
        for name in ("first_call_s", "compile_s"):
            seconds(getattr(self, name), name)
        for i, s in enumerate(self.samples_s):
            seconds(s, f"samples_s[{i}]")

    @classmethod
    def of(cls, m: Measurement, first_calls: int = 1) -> Timing:
        return cls(m.first_call_s, m.first_call_steps, m.compile_s, m.block_steps,
                   list(m.samples_s), PerStep.of(m.stats), m.warmup_blocks,
                   [tuple(c) for c in m.calibration], m.total_steps, first_calls)

    def stats(self) -> Stats:
        return Stats(self.samples_s, self.block_steps)

    def pool(self, other: Timing) -> None:
        """Add another process's samples of the same K; the statistics cover them all."""
        self.samples_s = self.samples_s + other.samples_s
        self.total_steps += other.total_steps
        self.per_step = PerStep.of(self.stats())

    def per_step_samples(self) -> list[float]:
        return [s / self.block_steps for s in self.samples_s]


@dataclass
class ProcessRecord:
    """What one worker process contributed to a case pooled over several."""

    status: str
    first_call_s: float | None = None
    compile_s: float | None = None
    median_s: float | None = None
    iqr_s: float | None = None
    blocks: int | None = None

    def __post_init__(self) -> None:
        for name in ("first_call_s", "compile_s", "median_s", "iqr_s"):
            if getattr(self, name) is not None:
                seconds(getattr(self, name), name)


@dataclass
class Case:
    """One (device, variant, problem): status, timing, check."""

    id: str
    variant: str
    framework: str
    kind: str
    device: str
    problem: ProblemRecord
    n_weights: int
    flops_per_step: int
    status: str = "failed"
    reason: str | None = None
    timing: Timing | None = None
    check: dict | None = None
    first_in_process: bool | None = None
    processes: list[ProcessRecord] = field(default_factory=list)
    state: dict | None = None  # the machine while it ran: machine_state.assess()
    memory: dict | None = None  # memory.StepMemory.result()
    phases: dict[str, PerStep] = field(default_factory=dict)  # forward, gradient, update
    workers: int = 1  # data-parallel workers (a distributed variant), each batch/workers rows
    distributed: dict | None = None  # its Trainer's ``distributed``: backend, cores, ...
    instructions: Instructions | None = None  # counted under Valgrind (run --measure)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")
        if self.status == "ok" and not (self.timing and self.timing.per_step.median_s > 0):
            raise ValueError(f"{self.id} is ok but has no positive per-step median")
        if self.status == "ok" and not self.timing.samples_s:
            raise ValueError(f"{self.id} is ok but has no timed samples")

    @classmethod
    def new(cls, problem: Problem, variant, device: str) -> Case:
        """A case not yet run (status failed, no reason) for a registry Variant."""
        record = ProblemRecord.of(problem)
        workers = variant.workers
        return cls(case_id(device, variant.name, record, workers), variant.name,
                   variant.framework, variant.kind, device, record, problem.spec.n_weights(),
                   problem.flops_per_step(), workers=workers)

    @property
    def label(self) -> str:
        """The variant, with its workers when there are several: 'torch-ddp ×2'."""
        return self.variant if self.workers == 1 else f"{self.variant} ×{self.workers}"

    @property
    def oversubscribed(self) -> bool:
        """True if its workers were allowed to share cores (``--oversubscribe``)."""
        return bool(self.distributed and self.distributed.get("oversubscribed"))

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def median(self) -> float | None:
        """The per-step median of an ok case, else None: the one accessor for a case's time."""
        return self.timing.per_step.median_s if self.ok else None

    @property
    def iqr_pct(self) -> float | None:
        return 100 * self.timing.per_step.iqr_s / self.median if self.ok else None

    @property
    def noisy(self) -> bool:
        return bool(self.ok and self.timing.per_step.noisy)

    @property
    def disturbed(self) -> bool:
        """True if the machine was not quiet while it ran (a busy neighbour, CPU steal)."""
        return bool(self.state and self.state.get("disturbed"))

    @property
    def leaks(self) -> bool:
        """True if its memory grew with the number of steps."""
        return bool(self.memory and self.memory.get("leaks"))

    @property
    def round_spread_pct(self) -> float | None:
        """(max - min) / median of the per-process medians, in %: the noise between rounds."""
        medians = [p.median_s for p in self.processes if p.status == "ok" and p.median_s]
        if not self.ok or len(medians) < 2:
            return None
        return 100 * (max(medians) - min(medians)) / self.median

    def fail(self, status: str, reason: str) -> None:
        """Mark the case failed or unavailable; a timing it has is kept but discarded."""
        self.status, self.reason = status, reason
        if self.timing:
            self.timing.per_step.discarded = True

    def summary(self) -> ProcessRecord:
        t = self.timing
        return ProcessRecord(self.status, t and t.first_call_s, t and t.compile_s,
                             t and t.per_step.median_s, t and t.per_step.iqr_s,
                             t and t.per_step.blocks)

    def pool(self, other: Case) -> None:
        """Add the same case from another process: its samples, or its failure."""
        if not self.processes:
            self.processes = [self.summary()]
        self.processes.append(other.summary())
        if other.disturbed:  # disturbed in any process: disturbed, with every reason
            reasons = (self.state or {}).get("reasons", []) + other.state["reasons"]
            self.state = {**other.state, "reasons": list(dict.fromkeys(reasons))}
        if not self.ok:
            return
        if not other.ok:
            self.fail(other.status, f"process {len(self.processes)}: {other.reason}")
            return
        self.timing.pool(other.timing)


@dataclass
class FrameworkRecord:
    """A framework's settings in the worker process, or why it could not start."""

    settings: dict | None = None
    pinning: dict | None = None
    error: str | None = None


@dataclass
class Machine:
    hostname: str = "?"
    cpu: str | None = None
    cores: int | None = None
    usable_cores: int | None = None
    memory_gb: float | None = None
    os: str | None = None
    gpu: dict | None = None


@dataclass
class Commit:
    id: str | None = None
    branch: str | None = None
    dirty: bool | None = None
    source: str | None = None


@dataclass
class Config:
    """What was asked for: device, variants, problems and how they were timed."""

    device: str
    variants: list[str]
    problems: list[ProblemRecord]
    threads: int
    timing: TimingConfig = field(default_factory=TimingConfig)
    processes: int = 1
    peaks: list = field(default_factory=list)  # dtypes (version 1 files: also {device, dtype})
    extra_cases: list[dict] = field(default_factory=list)
    python: str | None = None
    grid: dict | None = None
    count: CountConfig | None = None  # how instructions were counted (run --measure)


@dataclass
class Run:
    """One results file."""

    command: str
    machine: Machine
    software: dict[str, str | None]
    commit: Commit
    config: Config
    schema: str = SCHEMA
    schema_version: int = SCHEMA_VERSION
    created: str = field(default_factory=now)
    finished: str | None = None
    interrupted: bool = False
    frameworks: dict[str, FrameworkRecord] = field(default_factory=dict)
    ceilings: Ceilings = field(default_factory=Ceilings)
    machine_state: dict | None = None  # {"before", "after", "warnings_before", "during"}
    notes: list[str] = field(default_factory=list)
    cases: list[Case] = field(default_factory=list)
    # environment.environment_info(): variables, compilation caches, packages (None: older file)
    environment: dict | None = None

    @classmethod
    def from_dict(cls, data, name: str) -> Run:
        """A validated Run, or ResultsError naming the file and the first bad field."""
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise ResultsError(f"{name}: not a backprop-bench results file")
        if data.get("schema_version") not in READABLE_VERSIONS:
            raise ResultsError(f"{name}: schema version {data.get('schema_version')!r}, this "
                               f"backprop-bench reads versions "
                               f"{', '.join(map(str, READABLE_VERSIONS))}")
        try:
            run = schema.from_dict(cls, data, "run")
            shapes.validate(run)
        except schema.SchemaError as exc:
            where = str(exc).removeprefix("run.").removeprefix("run: ")
            raise ResultsError(f"{name}: {where}") from None
        run.schema_version = SCHEMA_VERSION  # versions 1 and 2 have the same fields, and fewer
        return run

    def to_dict(self) -> dict:
        return schema.to_dict(self)

    @property
    def complete(self) -> bool:
        """False for a run that was interrupted or killed before it finished."""
        return self.finished is not None and not self.interrupted

    def ok_cases(self) -> list[Case]:
        return [c for c in self.cases if c.ok]

    def add(self, case: Case) -> Case:
        """Add a case, or pool it into the case with the same id; returns that case."""
        old = next((c for c in self.cases if c.id == case.id), None)
        if old is None:
            self.cases.append(case)
            return case
        old.pool(case)
        return old

    def devices(self) -> list[str]:
        """The devices of the cases, the CPU first."""
        return sorted({c.device for c in self.cases}, key=lambda d: (d != "cpu", d))
