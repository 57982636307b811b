"""The one list of per-case columns, and what is drawn from it: the flat rows (one dict per
case, for a DataFrame, a CSV file, pytest-benchmark's ``extra_info``) and the table that
`backprop-bench run` prints and the report shows per device.

A ``Column`` is a name (the key of a flat row), how its value is read from a case and its run,
and, for a column of the run table, its header, alignment, place and cell. A new per-case
figure is one entry in ``COLUMNS`` beside the code that measures it.

Every row has the same keys (``NAMES``), whatever the case's status; a figure the case does
not have (the time of a failed case, the memory of a later process) is None. Times are
seconds per SGD step; ``x_limit``, ``x_reference`` and ``compile_s`` are the derived columns
of ``harness.record.summary`` (``compile_s`` only for variants that compile: those with a
registered baseline); the ``instructions_*`` columns are a counted case's instructions per
step (``harness.record.counts``). Values are str, int, float, bool or None, so that a row is
JSON-able as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from harness.record import counts, summary
from harness.record.results import Case, Run
from harness.record.summary import Row, fmt_pct, reference_name, status_text
from harness.tables import fmt_ratio, fmt_time, md_code, md_escape, text_table


class Source(NamedTuple):
    """What a column reads: the case's derived row, its run, and the file it came from."""

    row: Row
    run: Run
    file: str | None

    @property
    def case(self) -> Case:
        return self.row.case


def timing(s: Source):
    """The timing of an ok case, None for the others (a failed case's timing is kept in its
    file, but discarded: it is not a result)."""
    return s.case.timing if s.case.ok else None


def per_step(name: str) -> Callable[[Source], Any]:
    """A statistic the case's ``Measurement`` derives (median, q1, ...), for an ok case."""
    return lambda s: getattr(timing(s), name) if timing(s) else None


def memory(name: str) -> Callable[[Source], Any]:
    return lambda s: (s.case.memory or {}).get(name)


def counted(name: str) -> Callable[[Source], Any]:
    return lambda s: counts.columns(s.case).get(name)


def plain(value: Callable[[Source], Any], fmt: Callable[[Any], str] = str
          ) -> Callable[[Row, bool], str]:
    """A table cell that is its value, formatted (the same in Markdown)."""
    return lambda row, markdown: fmt(value(Source(row, None, None)))


@dataclass(frozen=True)
class Column:
    """One per-case figure: ``name`` and ``value`` in every flat row; where ``place`` is set, a
    column of the run table too (its ``header``, ``align``ment and ``cell``, at that place)."""

    name: str
    value: Callable[[Source], Any]
    header: str | Callable[[], str] | None = None
    align: str = "r"
    place: int | None = None
    cell: Callable[[Row, bool], str] | None = None

    def header_text(self) -> str:
        return self.header() if callable(self.header) else self.header

    def cell_text(self, row: Row, markdown: bool) -> str:
        if self.cell is not None:
            return self.cell(row, markdown)
        return plain(self.value)(row, markdown)


def gpu_name(s: Source):
    return (s.run.machine.gpu or {}).get("name")


def variant_cell(row: Row, markdown: bool) -> str:
    return md_code(row.case.label) if markdown else row.case.label


def status_cell(row: Row, markdown: bool) -> str:
    """Markdown keeps a failure short (the reasons are listed under the table)."""
    c = row.case
    return c.status if markdown and not c.ok else status_text(c)


COLUMNS = (
    Column("file", lambda s: s.file),
    Column("command", lambda s: s.run.command),
    Column("created", lambda s: s.run.created),
    Column("machine", lambda s: s.run.machine.hostname),
    Column("cpu", lambda s: s.run.machine.cpu),
    Column("gpu", gpu_name),
    Column("commit", lambda s: s.run.commit.id),
    Column("dirty", lambda s: s.run.commit.dirty),
    Column("device", lambda s: s.case.device, "device", "l", 3),
    Column("variant", lambda s: s.case.variant, "variant", "l", 1, variant_cell),
    Column("framework", lambda s: s.case.framework),
    Column("kind", lambda s: s.case.kind, "kind", "l", 2,
           lambda row, md: md_escape(row.case.kind) if md else row.case.kind),
    Column("network", lambda s: s.case.problem.label(), "network", "l", 0),
    Column("widths", lambda s: "-".join(map(str, s.case.problem.widths))),
    Column("width", lambda s: s.case.problem.square_width),
    Column("depth", lambda s: s.case.problem.depth),
    Column("activation", lambda s: s.case.problem.activation),
    Column("bias", lambda s: s.case.problem.bias),
    Column("dtype", lambda s: s.case.problem.dtype),
    Column("batch", lambda s: s.case.problem.batch),
    Column("lr", lambda s: s.case.problem.lr),
    Column("seed", lambda s: s.case.problem.seed),
    Column("status", lambda s: s.case.status, "status", "l", 13, status_cell),
    Column("reason", lambda s: s.case.reason),
    Column("noisy", lambda s: s.case.noisy),
    Column("disturbed", lambda s: s.case.disturbed),
    Column("median_s", per_step("median"), "per step", "r", 4,
           lambda row, md: fmt_time(row.case.median)),
    Column("iqr_s", per_step("iqr")),
    Column("q1_s", per_step("q1")),
    Column("q3_s", per_step("q3")),
    Column("min_s", per_step("min"), "min", "r", 7, plain(per_step("min"), fmt_time)),
    Column("mean_s", per_step("mean")),
    Column("iqr_pct", lambda s: s.case.iqr_pct if s.case.ok else None, "IQR", "r", 5,
           lambda row, md: fmt_pct(row.case.iqr_pct)),
    Column("round_spread_pct", lambda s: s.case.round_spread_pct if s.case.ok else None,
           "between rounds", "r", 6, lambda row, md: fmt_pct(row.case.round_spread_pct)),
    Column("blocks", per_step("blocks")),
    Column("block_steps", lambda s: timing(s) and timing(s).block_steps),
    Column("first_call_s", lambda s: timing(s) and timing(s).first_call_s, "first call", "r",
           10, plain(lambda s: timing(s) and timing(s).first_call_s, fmt_time)),
    Column("compile_s", lambda s: s.row.compile, "compile", "r", 11,
           lambda row, md: fmt_time(row.compile)),
    Column("pays_off", lambda s: s.row.pays_off, "pays off after", "r", 12,
           lambda row, md: row.pays_off or "—"),
    Column("flops_per_step", lambda s: s.case.flops_per_step),
    Column("gflops", lambda s: s.case.flops_per_step / s.case.median / 1e9 if s.case.ok
           else None),
    Column("n_weights", lambda s: s.case.n_weights),
    Column("x_limit", lambda s: s.row.x_limit, "× limit", "r", 8,
           lambda row, md: fmt_ratio(row.x_limit)),
    Column("x_reference", lambda s: s.row.x_reference, lambda: f"× {reference_name()}", "r", 9,
           lambda row, md: fmt_ratio(row.x_reference)),
    *(Column(name, memory(name)) for name in (
        "warm_call_added_bytes", "first_call_added_bytes", "minimum_bytes", "growth_bytes",
        "leaks")),
    Column("memory_source", memory("source")),
    *(Column(name, counted(name)) for name in counts.COLUMNS),
)
NAMES = tuple(c.name for c in COLUMNS)
TABLE = tuple(sorted((c for c in COLUMNS if c.place is not None), key=lambda c: c.place))


# ---- the flat rows -------------------------------------------------------------------------

def run_records(run: Run, file: str | None = None) -> list[dict]:
    """One row per case of a run, in the run's order; ``file`` names the results file."""
    return [case_record(run, row, file) for row in summary.derive(run)]


def case_record(run: Run, row: Row, file: str | None = None) -> dict:
    """The flat row of one case (``summary.Row``: the case and its derived columns)."""
    source = Source(row, run, file)
    return {c.name: c.value(source) for c in COLUMNS}


# ---- the run table ---------------------------------------------------------------------------

def headers() -> list[str]:
    return [c.header_text() for c in TABLE]


def align() -> str:
    return "".join(c.align for c in TABLE)


def row_cells(row: Row, markdown: bool = False) -> list[str]:
    """The cells of one derived row, in ``headers()`` order; Markdown quotes the variant and
    keeps the status short (the reasons are listed under the table). "compile" is "—" for a
    variant with no registered baseline (it does not compile; its first call is a cold call)."""
    return [c.cell_text(row, markdown) for c in TABLE]


def run_table(run: Run) -> str:
    """The table `backprop-bench run` prints at the end."""
    return text_table(headers(), [row_cells(r) for r in summary.in_order(run,
                                                                        summary.derive(run))],
                      align())
