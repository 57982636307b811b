"""Instructions per SGD step: the one timing engine, with Callgrind's counter as its clock.

The count of one case, in a counting process (``harness.measure.callgrind.command``; the runner
starts one per framework after the timed ones, with every thread pool pinned to one thread
and ``PYTHONHASHSEED`` fixed):

1. the Trainer's first call(s) and one block run uninstrumented: compiling under
   instrumentation would take minutes, and it is not what is counted;
2. instrumentation starts, and K doubles from the Trainer's block until one block counts at
   least ``target`` instructions (``steps_per_block``); a K given (so that the processes of
   one case share it) replaces it, but the doubling runs all the same: a process that skips
   it leaves the allocator in another state and counts 0.08% more (NumPy, 1-1-1);
3. the empty block (``timing.engine_overhead``: the counter's own call and an empty ``run``)
   is counted ``EMPTY_BLOCKS`` times;
4. the engine's blocks (``timing.measure_blocks``) run with the counter as their clock and
   that K: ``warmup_blocks`` blocks, then ``blocks`` blocks counted, each block's count kept
   (in instructions: an ``Instructions`` holds them, never a ``timing.Measurement``, whose
   samples are seconds);
5. instrumentation stops, and the Trainer is verified against the float64 reference as a
   timed one is (``worker.verify``), so a wrong count cannot post a number.

Per step = (median block − empty block) / K: what one SGD step executes, with the block's one
sync spread over its K steps, as the time per step has it. A case that cannot be counted
(the framework does not start under Valgrind, a timeout, a wrong result) keeps its times and
says why in ``Instructions.error``: unavailable for counting, never left out. A count is
checked as a count (``count``: finite and not negative, K at least one step, per step above
0), as a time is checked as a time.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from harness.measure import callgrind
from harness.measure.timing import TimingConfig, engine_overhead, measure_blocks, timed

EMPTY_BLOCKS = 7
THREADS = 1  # one thread per framework: what the count describes, recorded with it
STARTUP_S = 600.0  # a counting worker's imports: torch takes ~35 s under Valgrind
CASE_TIMEOUT_S = 900.0  # a case's uninstrumented compile and its counted blocks
MAX_BLOCK_STEPS = TimingConfig().max_block_steps


def count(value: float, name: str) -> None:
    """ValueError unless ``value`` is a count of instructions a process could have made:
    finite and not negative (a negative count is a corrupt file, and compares as a lie)."""
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} {value!r} is not a count of instructions")


@dataclass(frozen=True)
class CountConfig:
    """How to count one case: instructions per block at least, blocks kept, warm-up blocks;
    ``timeout_s`` per case and ``startup_s`` for a counting worker's start-up (a case that
    takes longer, or whose worker does not start in time, is unavailable for counting)."""

    target: float = 2e7
    blocks: int = 9
    warmup_blocks: int = 1
    timeout_s: float = CASE_TIMEOUT_S
    startup_s: float = STARTUP_S

    def timing(self, block_steps: int | None) -> TimingConfig:
        """The engine's configuration for counting, in instructions instead of seconds."""
        return TimingConfig(target_block_s=self.target, min_blocks=self.blocks,
                            max_blocks=self.blocks, budget_s=0.0,
                            warmup_blocks=self.warmup_blocks, block_steps=block_steps)


@dataclass
class Instructions:
    """A case's instructions per SGD step, or why it could not be counted (``error``).

    ``samples`` are the counted instructions of each block of ``block_steps`` steps, from
    every counting process; ``processes`` each process's per-step count; ``empty_block`` the
    counter's own instructions per block (subtracted); ``wall_s`` the seconds each process
    spent on the case under Valgrind; ``settings`` the framework's own in the counting
    process (its threads, JAX's inline dispatch).
    """

    per_step: float | None = None
    block_steps: int | None = None
    samples: list[float] = field(default_factory=list)
    empty_block: float | None = None
    processes: list[float] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)
    tool: str = callgrind.TOOL
    valgrind: str | None = None
    threads: int = THREADS
    options: list[str] = field(default_factory=list)
    settings: dict | None = None  # the framework's settings in the counting process
    error: str | None = None

    def __post_init__(self) -> None:
        for name in ("samples", "processes", "wall_s"):
            for i, value in enumerate(getattr(self, name)):
                count(value, f"{name}[{i}]")
        if self.empty_block is not None:
            count(self.empty_block, "empty_block")
        if self.per_step is not None and not (math.isfinite(self.per_step)
                                              and self.per_step > 0):
            raise ValueError(f"per_step {self.per_step!r}: a counted step executes at least "
                             f"one instruction")
        if self.per_step is not None and (self.block_steps is None or self.block_steps < 1):
            raise ValueError(f"block_steps {self.block_steps!r}: a counted block has at least "
                             f"one step")
        if any(p <= 0 for p in self.processes) or self.threads < 1:
            raise ValueError(f"processes {self.processes} and threads {self.threads}: every "
                             f"process counted its steps, on one thread or more")

    @property
    def ok(self) -> bool:
        return self.error is None and self.per_step is not None

    @property
    def counter(self) -> str:
        """'callgrind 3.19.0, 1 thread': what counted; counts compare only with the same."""
        threads = "thread" if self.threads == 1 else "threads"
        return f"{self.tool} {self.valgrind or '?'}, {self.threads} {threads}"

    @property
    def spread_pct(self) -> float | None:
        """(max − min) / median of the processes' per-step counts, in %."""
        if not self.ok or len(self.processes) < 2:
            return None
        return 100 * (max(self.processes) - min(self.processes)) / self.per_step

    @classmethod
    def failed(cls, reason: str) -> Instructions:
        return cls(valgrind=callgrind.version(), options=callgrind.options(), error=reason)

    def pool(self, other: Instructions) -> None:
        """Add another process's count of the same case (same K), or its failure."""
        if not self.ok:
            return
        if not other.ok:
            self.per_step, self.error = None, f"process {len(self.processes) + 1}: {other.error}"
            return
        self.samples += other.samples
        self.processes += other.processes
        self.wall_s += other.wall_s
        self.per_step = statistics.median(self.processes)


def steps_per_block(trainer, block: int, cfg: CountConfig, counter) -> int:
    """K: the least block × 2^n steps whose block counts at least ``cfg.target``.

    Doubling, not the engine's growth by the ratio to the target: K then depends on the
    count only where a block of K / 2 steps counts within its noise (~0.1%) of the target,
    so that identical processes, and a run before and after a small change, agree on K.
    """
    k = block
    while k < MAX_BLOCK_STEPS and timed(trainer, k, counter) < cfg.target:
        k *= 2
    return k


def prepare_count(trainer, cfg: CountConfig, counter: callgrind.Counter,
                  block_steps: int | None = None) -> int:
    """Steps 1 and 2 of the module docstring: the warm-up uninstrumented, then counting on
    and K chosen (or ``block_steps``); returns K."""
    block = max(1, int(getattr(trainer, "block", 1)))
    for _ in range(max(1, int(getattr(trainer, "first_calls", 1)))):
        trainer.run(block)
    trainer.run(block)
    counter.start()
    found = steps_per_block(trainer, block, cfg, counter)  # in every process: the same path
    return block_steps or found


def count_trainer(trainer, cfg: CountConfig, counter: callgrind.Counter,
                  block_steps: int | None = None) -> Instructions:
    """Steps 1 to 4 of the module docstring for one Trainer (a counting process only)."""
    try:
        k = prepare_count(trainer, cfg, counter, block_steps)
        empty = engine_overhead(blocks=EMPTY_BLOCKS, clock=counter)["per_block_s"]
        _, _, k, _, samples = measure_blocks(trainer, cfg.timing(k), clock=counter)
    finally:
        counter.stop()
    per_step = (statistics.median(samples) - empty) / k
    if per_step <= 0:
        return Instructions.failed(f"its blocks of {k:,} steps counted no more than the empty "
                                   f"block ({statistics.median(samples):.0f} against "
                                   f"{empty:.0f} instructions): nothing left to count")
    return Instructions(per_step, k, list(samples), empty, [per_step],
                        valgrind=callgrind.version(), options=callgrind.options())
