"""The shapes of a results file's free-form fields, checked on load like the typed ones.

A Run keeps some fields as plain dicts, because what fills them grows with the suite: the
environment, the machine's state before, after and during the run (``machine_state``), and per
case the machine while it ran (``state``), its memory, its check and its data-parallel set-up.
The report, ``export`` and ``compare`` read known keys inside them; a file whose key holds the
wrong type (``environment.variables: 5``, ``machine_state.before: 5``,
``memory.first_call_added_bytes: [1]``) would crash them half-way. ``validate(run)`` checks
every key they read against the dataclasses below (with ``schema.from_dict``: unknown keys are
allowed, a missing key is None) and raises ``schema.SchemaError`` naming the first bad one, so
that such a file is one line and is left out, as a wrong-typed typed field is.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.record import schema


@dataclass
class CompilationCache:
    enabled: bool | None = None
    dir: str | None = None
    warm_at_start: bool | None = None
    min_compile_time_s: float | None = None


@dataclass
class Environment:
    variables: dict[str, str | None] | None = None
    jax_compilation_cache: CompilationCache | None = None
    packages: dict[str, str | None] | None = None


@dataclass
class Process:
    pid: int | None = None
    name: str | None = None
    cpu_pct: float | None = None


@dataclass
class Static:
    cpu_model: str | None = None
    flags: list[str] | None = None
    source: str | None = None
    physical_cores: int | None = None
    logical_cpus: int | None = None
    usable_cpus: int | None = None


@dataclass
class Snapshot:
    """machine_state.snapshot(): what /proc said at one moment."""

    time: float | None = None
    monotonic: float | None = None
    sample_s: float | None = None
    loadavg: dict[str, float] | None = None
    cpu_times: dict[str, float] | None = None
    busy_processes: list[Process] | None = None
    clock_ticks: int | None = None
    logical_cpus: int | None = None
    governors: list[str] | dict[str, str] | str | None = None
    no_turbo: bool | int | str | None = None
    boost: bool | int | str | None = None
    static: Static | None = None


@dataclass
class Assessment:
    """machine_state.assess(): the machine over an interval."""

    disturbed: bool | None = None
    reasons: list[str] | None = None
    interval_s: float | None = None
    steal_pct: float | None = None
    iowait_pct: float | None = None
    busiest: Process | None = None
    busy: list[Process] | None = None
    load1: float | None = None
    logical_cpus: int | None = None


@dataclass
class MachineState:
    before: Snapshot | None = None
    after: Snapshot | None = None
    warnings_before: list[str] | None = None
    during: Assessment | None = None


@dataclass
class Minimum:
    parameters: int | None = None
    gradients: int | None = None
    activations: int | None = None
    total: int | None = None


@dataclass
class Memory:
    """memory.StepMemory.result(), and a device's memory on a GPU."""

    source: str | None = None
    start_bytes: int | None = None
    first_call_added_bytes: int | None = None
    resting_bytes: int | None = None
    end_bytes: int | None = None
    timed_steps: int | None = None
    warm_call_added_bytes: int | None = None
    block: int | None = None
    minimum_bytes: int | None = None
    minimum: Minimum | None = None
    growth_bytes: int | None = None
    leaks: bool | None = None
    leak_reason: str | None = None


@dataclass
class CheckRow:
    subject: str | None = None
    dtype: str | None = None
    tensor: str | None = None
    reference: str | None = None
    error: float | None = None
    tolerance: float | None = None
    detail: str | None = None
    problem: str | None = None
    passed: bool | None = None


@dataclass
class Check:
    passed: bool | None = None
    rows: list[CheckRow] | None = None
    notes: list[str] | None = None


@dataclass
class Distributed:
    workers: int | None = None
    backend: str | None = None
    cores: list[list[int]] | None = None
    oversubscribed: bool | None = None
    pg_timeout_s: float | None = None


def validate(run) -> None:
    """SchemaError naming the first key of a free-form field that has the wrong type."""
    if run.environment is not None:
        schema.from_dict(Environment, run.environment, "run.environment")
    if run.machine_state is not None:
        schema.from_dict(MachineState, run.machine_state, "run.machine_state")
    for i, case in enumerate(run.cases):
        where = f"run.cases[{i}]"
        for name, shape in (("state", Assessment), ("memory", Memory), ("check", Check),
                            ("distributed", Distributed)):
            value = getattr(case, name)
            if value is not None:
                schema.from_dict(shape, value, f"{where}.{name}")
