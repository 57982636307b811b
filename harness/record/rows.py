"""Results as flat rows: one dict per case, for a DataFrame, a CSV file or a spreadsheet.

Every row has the same keys (``COLUMNS``), whatever the case's status; a figure the case does
not have (the time of a failed case, the memory of a later process) is None. Times are
seconds per SGD step; ``x_limit``, ``x_reference`` and ``compile_s`` are the derived columns
of ``harness.record.summary`` (``compile_s`` only for variants that compile: those with a
registered baseline); the ``instructions_*`` columns are a counted case's instructions per
step (``harness.record.counts``). Values are str, int, float, bool or None, so that a row is
JSON-able as it is.
"""

from __future__ import annotations

from harness.record import counts, summary
from harness.record.results import Case, Run

COLUMNS = (
    "file", "command", "created", "machine", "cpu", "gpu", "commit", "dirty",
    "device", "variant", "framework", "kind", "network", "widths", "width", "depth",
    "activation", "bias", "dtype", "batch", "lr", "seed",
    "status", "reason", "noisy", "disturbed",
    "median_s", "iqr_s", "q1_s", "q3_s", "min_s", "mean_s", "iqr_pct", "round_spread_pct",
    "blocks", "block_steps", "first_call_s", "compile_s", "pays_off",
    "flops_per_step", "gflops", "n_weights", "x_limit", "x_reference",
    "warm_call_added_bytes", "first_call_added_bytes", "minimum_bytes", "growth_bytes",
    "leaks", "memory_source", *counts.COLUMNS,
)
MEMORY_FIELDS = ("warm_call_added_bytes", "first_call_added_bytes", "minimum_bytes",
                 "growth_bytes", "leaks")


def run_records(run: Run, file: str | None = None) -> list[dict]:
    """One row per case of a run, in the run's order; ``file`` names the results file."""
    return [case_record(run, row, file) for row in summary.derive(run)]


def case_record(run: Run, row: summary.Row, file: str | None = None) -> dict:
    """The flat row of one case (``summary.Row``: the case and its derived columns)."""
    c = row.case
    record = {"file": file, **run_columns(run), **problem_columns(c),
              "status": c.status, "reason": c.reason, "noisy": c.noisy,
              "disturbed": c.disturbed, **timing_columns(c),
              "compile_s": row.compile, "pays_off": row.pays_off,
              "flops_per_step": c.flops_per_step,
              "gflops": c.flops_per_step / c.median / 1e9 if c.ok else None,
              "n_weights": c.n_weights, "x_limit": row.x_limit, "x_reference": row.x_reference,
              **memory_columns(c), **counts.columns(c)}
    return {k: record.get(k) for k in COLUMNS}


def run_columns(run: Run) -> dict:
    gpu = (run.machine.gpu or {}).get("name")
    return {"command": run.command, "created": run.created, "machine": run.machine.hostname,
            "cpu": run.machine.cpu, "gpu": gpu, "commit": run.commit.id,
            "dirty": run.commit.dirty}


def problem_columns(c: Case) -> dict:
    p = c.problem
    return {"device": c.device, "variant": c.variant, "framework": c.framework,
            "kind": c.kind, "network": p.label(), "widths": "-".join(map(str, p.widths)),
            "width": p.square_width, "depth": p.depth, "activation": p.activation,
            "bias": p.bias, "dtype": p.dtype, "batch": p.batch, "lr": p.lr, "seed": p.seed}


def timing_columns(c: Case) -> dict:
    """The per-step statistics of an ok case; all None for the others (a failed case's
    timing is kept in its file, but discarded: it is not a result)."""
    if not c.ok:
        return {}
    t, s = c.timing, c.timing.per_step
    return {"median_s": s.median_s, "iqr_s": s.iqr_s, "q1_s": s.q1_s, "q3_s": s.q3_s,
            "min_s": s.min_s, "mean_s": s.mean_s, "iqr_pct": c.iqr_pct,
            "round_spread_pct": c.round_spread_pct, "blocks": s.blocks,
            "block_steps": t.block_steps, "first_call_s": t.first_call_s}


def memory_columns(c: Case) -> dict:
    memory = c.memory or {}
    out = {k: memory.get(k) for k in MEMORY_FIELDS}
    out["memory_source"] = memory.get("source")
    return out
