"""The typed results model: the only way code reads or writes results.

A results file holds one ``Run``: where it ran (``Machine``, software versions, ``Commit``),
what was asked (``Config``), each variant's declaration as it ran (``Declared``: the report
reads a variant's role, baseline and rung from the file, and the registry only for a file
that does not say), the frameworks' settings, the machine's ``Ceilings`` and one
``Case`` per (device, variant, problem), each with its ``timing.Measurement`` (the first call,
K and the raw block times, from which every statistic is derived), its check and, when
counted, its ``Instructions`` per step
(``harness.measure.instructions``). ``Run.from_dict`` validates a whole file once
(``harness.record.schema``), so that every reader after it may trust every field;
``to_dict`` is the inverse. ``harness.record.store`` reads and writes the files.

Schema versions: 4 is written: measurements stored as they were measured, the statistics
derived (3 stored them beside the samples; 2 had no ``instructions``). Version 1 to 3 files
still load, upgraded by ``harness.record.upgrade``; any other version is refused with one line.

Still plain dicts, validated on load by ``harness.record.shapes`` rather than typed here: a
case's ``check`` (``check.Report.as_dict``), ``state``, ``memory`` and ``distributed``, and
the run's ``machine_state``; their writers own their shape.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from harness.measure.ceilings import AllreduceCurve, CallFloor, Ceilings, Peak  # noqa: F401 (the model)
from harness.measure.instructions import CountConfig, Instructions
from harness.measure.timing import Measurement, TimingConfig
from harness.record import schema, shapes, upgrade
from implementations import registry
from implementations.problem import BenchError, NetworkSpec, Problem, make_problem

SCHEMA = "backprop-bench/results"
SCHEMA_VERSION = upgrade.VERSION
READABLE_VERSIONS = (1, 2, 3, 4)
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


@dataclass(frozen=True)
class Declared:
    """A variant as its framework file declared it when the run was made (``Variant``): what
    the report reads of a variant, stored with the run, so that a variant renamed, given
    another role or moved on the ladder since does not relabel an old file."""

    framework: str
    kind: str
    label: str = ""  # its framework's label ("PyTorch")
    role: str | None = None  # "limit", "reference", "gpu-limit" (Variant.role)
    baseline: str | None = None  # what its compile cost is measured against
    below: str | None = None  # the rung it is built on (the abstraction ladder)
    replicates: str | None = None  # the single-device variant each data-parallel worker runs

    @classmethod
    def of(cls, v) -> Declared:
        """The declaration of a registry ``Variant``."""
        fw = registry.FRAMEWORKS.get(v.framework)
        return cls(v.framework, v.kind, fw.label if fw else v.framework, v.role, v.baseline,
                   v.below, v.replicates)


def case_id(device: str, variant: str, problem: ProblemRecord, workers: int = 1) -> str:
    """A stable key for a case: device, variant, network, batch, and "/xN" on N > 1 workers."""
    many = f"/x{workers}" if workers > 1 else ""
    return f"{device}/{variant}/{problem.network()}/b{problem.batch}{many}"


@dataclass
class ProcessRecord:
    """What one worker process contributed to a case pooled over several: its status and its
    own measurement (whose samples are also in the case's pooled one)."""

    status: str
    timing: Measurement | None = None

    @property
    def median(self) -> float | None:
        return self.timing.median if self.status == "ok" and self.timing else None


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
    timing: Measurement | None = None  # kept when the case fails, but then not a result
    check: dict | None = None
    first_in_process: bool | None = None
    processes: list[ProcessRecord] = field(default_factory=list)
    state: dict | None = None  # the machine while it ran: machine_state.assess()
    memory: dict | None = None  # memory.StepMemory.result()
    phases: dict[str, Measurement] = field(default_factory=dict)  # forward, gradient, update
    workers: int = 1  # data-parallel workers (a distributed variant), each batch/workers rows
    distributed: dict | None = None  # its Trainer's ``distributed``: backend, cores, ...
    instructions: Instructions | None = None  # counted under Valgrind (run --measure)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")
        if self.n_weights < 0 or self.flops_per_step < 0 or self.workers < 1:
            raise ValueError(f"n_weights {self.n_weights}, flops_per_step "
                             f"{self.flops_per_step} and workers {self.workers}: no count is "
                             f"negative, and a case runs on one worker or more")
        if self.status == "ok" and not (self.timing and self.timing.samples_s):
            raise ValueError(f"{self.id} is ok but has no timed samples")
        if self.status == "ok" and not self.timing.median > 0:
            raise ValueError(f"{self.id} is ok but has no positive per-step median")

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
        return self.timing.median if self.ok else None

    @property
    def compile_s(self) -> float | None:
        """An ok case's first call beyond what its steps cost in its own process's steady
        state: in a case pooled over several processes, the first process's."""
        if not self.ok:
            return None
        first = self.processes[0].timing if self.processes else None
        return (first or self.timing).compile_s

    @property
    def iqr_pct(self) -> float | None:
        return 100 * self.timing.iqr / self.median if self.ok else None

    @property
    def noisy(self) -> bool:
        return bool(self.ok and self.timing.noisy)

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
        medians = [m for p in self.processes if (m := p.median)]
        if not self.ok or len(medians) < 2:
            return None
        return 100 * (max(medians) - min(medians)) / self.median

    def fail(self, status: str, reason: str) -> None:
        """Mark the case failed or unavailable; a timing it has is kept, but is no result."""
        self.status, self.reason = status, reason

    def pool(self, other: Case) -> None:
        """Add the same case from another process: its samples, or its failure."""
        if not self.processes:
            self.processes = [ProcessRecord(self.status, self.timing)]
        self.processes.append(ProcessRecord(other.status, other.timing))
        if other.disturbed:  # disturbed in any process: disturbed, with every reason
            reasons = (self.state or {}).get("reasons", []) + other.state["reasons"]
            self.state = {**other.state, "reasons": list(dict.fromkeys(reasons))}
        if not self.ok:
            return
        if not other.ok:
            self.fail(other.status, f"process {len(self.processes)}: {other.reason}")
            return
        self.timing = self.timing.pool(other.timing)


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
    low_precision: dict | None = None  # {format: what the CPU offers}: environment's flags


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
    # each variant's declaration when it ran ({}: a file from before they were stored)
    declared: dict[str, Declared] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ids = [c.id for c in self.cases]
        twice = next((i for i in ids if ids.count(i) > 1), None)
        if twice is not None:  # which copy would compare, report or export hold? None: refused
            raise ValueError(f"case {twice!r} is in the file {ids.count(twice)} times (a run "
                             f"holds each case once)")

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
            run = schema.from_dict(cls, upgrade.to_current(data), "run")
            shapes.validate(run)
        except schema.SchemaError as exc:
            where = str(exc).removeprefix("run.").removeprefix("run: ")
            raise ResultsError(f"{name}: {where}") from None
        run.schema_version = SCHEMA_VERSION  # upgraded: what it holds now is version 4
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

    def declaration(self, variant: str) -> Declared | None:
        """What this file says a variant is; for a file that does not say, the registry's
        declaration (None: a variant it does not know either)."""
        if variant in self.declared:
            return self.declared[variant]
        v = registry.VARIANTS.get(variant)
        return Declared.of(v) if v else None

    def with_role(self, role: str) -> list[str]:
        """The variants with this role ("limit", "reference"), as this file declares them (the
        registry's order first, then those it no longer knows)."""
        names = list(dict.fromkeys([*registry.VARIANTS, *self.declared]))
        return [n for n in names if (d := self.declaration(n)) and d.role == role]

    def devices(self) -> list[str]:
        """The devices of the cases, the CPU first."""
        return sorted({c.device for c in self.cases}, key=lambda d: (d != "cpu", d))
