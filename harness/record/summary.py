"""Derived columns of a run, computed from stored cases only (nothing is re-measured).

For each case: per-step median, IQR as a % of the median, min, × the limit (the variant with
the registry role "limit" on the same network), × the reference (role "reference": NumPy), the
first call, the compile cost (first call beyond its steps' steady-state cost; only for
variants that compile, i.e. have a registered baseline: for the others the first call is just
a cold call) and the number of steps after which compiling pays off against that baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.measure.timing import steps_to_pay_off
from harness.record.results import Case, Run
from harness.tables import fmt_ratio, fmt_time, md_code, text_table
from implementations import registry


def role_of(run: Run, variant: str) -> str | None:
    """A variant's role as the run declares it (``Run.declaration``)."""
    d = run.declaration(variant)
    return d.role if d else None


def baseline_of(run: Run, variant: str) -> str | None:
    """The variant a variant's compile cost is measured against, as the run declares it."""
    d = run.declaration(variant)
    return d.baseline if d else None


def below_of(run: Run, variant: str) -> str | None:
    """The rung a variant is built on, as the run declares it."""
    d = run.declaration(variant)
    return d.below if d else None


def reference_name() -> str:
    """The name of the reference variant, for column headers ("numpy")."""
    refs = registry.with_role("reference")
    return refs[0].name if refs else "reference"


@dataclass
class Row:
    """A case and its derived columns (None where a reference is missing)."""

    case: Case
    x_limit: float | None = None
    x_reference: float | None = None
    compile: float | None = None
    pays_off: str | None = None

    @property
    def network(self) -> str:
        return self.case.problem.label()


def derive(run: Run) -> list[Row]:
    """One Row per case, in the run's order."""
    by = {(c.problem, c.device, c.variant): c for c in run.ok_cases()}
    refs = {(c.problem, role_of(run, c.variant)): c for c in run.ok_cases()
            if role_of(run, c.variant)}
    rows = []
    for c in run.cases:
        row = Row(c)
        if c.ok:
            base = baseline_of(run, c.variant)
            row.compile = c.compile_s if base else None
            for role, attr in (("limit", "x_limit"), ("reference", "x_reference")):
                r = refs.get((c.problem, role))
                if r is not None:
                    setattr(row, attr, c.median / r.median)
            row.pays_off = pays_off(c, by.get((c.problem, c.device, base)))
        rows.append(row)
    return rows


def pays_off(case: Case, base: Case | None) -> str | None:
    """Steps until the compiled case's total time is below its baseline's; None when there is
    no baseline case."""
    if base is None:
        return None
    n = steps_to_pay_off(case.compile_s, case.median, base.compile_s,
                         base.median)
    return "never" if n is None else f"{n:,.0f} steps"


def status_text(case: Case) -> str:
    """ok, or what to mistrust: noisy (IQR over 10%), disturbed (the machine was busy),
    leaks (memory grows with the steps); or the failure and its reason."""
    if not case.ok:
        return f"{case.status.upper()}: {case.reason}"
    flags = [name for name, on in (("noisy", case.noisy), ("disturbed", case.disturbed),
                                   ("leaks", case.leaks),
                                   ("oversubscribed", case.oversubscribed)) if on]
    return ", ".join(flags) or "ok"


def in_order(run: Run, rows: list[Row]) -> list[Row]:
    """Rows sorted by the run's network order, then device, then registry variant order."""
    nets = {p: i for i, p in enumerate(run.config.problems)}
    names = {name: i for i, name in enumerate(registry.VARIANTS)}

    def key(r: Row):
        c = r.case
        return (nets.get(c.problem, len(nets)), c.device != "cpu",
                names.get(c.variant, len(names)), c.workers)

    return sorted(rows, key=key)


def fmt_pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.0f}%"


def fmt_bytes(n: float | None) -> str:
    """1.5 KiB, 23 MiB, 1.02 GiB; '—' when unknown."""
    if n is None:
        return "—"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


MEMORY_HEADERS = ["network", "variant", "device", "first call adds", "a warm step adds",
                  "at rest", "minimum", "growth over the timed steps", "leaks"]


def memory_cells(case: Case) -> list[str] | None:
    """One row of the memory table, or None for a case without memory figures."""
    m = case.memory
    if not m:
        return None
    per_block = f" per {m['block']} steps" if m.get("block", 1) > 1 else ""
    return [case.problem.label(), case.variant, case.device,
            fmt_bytes(m.get("first_call_added_bytes")),
            fmt_bytes(m.get("warm_call_added_bytes")) + per_block,
            fmt_bytes(m.get("resting_bytes")), fmt_bytes(m.get("minimum_bytes")),
            f"{fmt_bytes(m.get('growth_bytes'))} over {m.get('timed_steps', 0):,} steps",
            {True: "LEAKS", False: "no"}.get(m.get("leaks"), "—")]


def memory_table(run: Run) -> str:
    """What each case's steps add to memory, against what the network needs at minimum."""
    rows = [cells for r in in_order(run, derive(run)) if (cells := memory_cells(r.case))]
    return text_table(MEMORY_HEADERS, rows, "lllrrrrrl") if rows else ""


def case_line(case: Case, done: int, total: int) -> str:
    """One progress line per finished case."""
    head = f"[{done}/{total}] {case.device:4} {case.label:15} {case.problem.label():28}"
    if not case.ok:
        return f"{head} {status_text(case)}"
    t = case.timing
    notes = ["noisy: IQR > 10% of median"] * case.noisy
    notes += [f"disturbed: {'; '.join(case.state['reasons'])}"] * case.disturbed
    notes += [f"leaks: {case.memory['leak_reason']}"] if case.leaks else []
    flags = f"  ({'; '.join(notes)})" if notes else ""
    return (f"{head} {fmt_time(case.median):>10}/step  IQR {fmt_time(t.iqr)}"
            f"  first call {fmt_time(t.first_call_s)}{flags}")


# ---- the abstraction ladder: what each layer costs over the one it is built on -------------

def ladder_order(run: Run) -> list[tuple[str, int]]:
    """(variant, depth) of every variant on a ladder (it has a rung below, or one above), as
    the run declares them, the bottom rungs first, each followed by the rungs built on it, in
    registry order (then those the registry no longer knows)."""
    children: dict[str | None, list[str]] = {}
    for name in dict.fromkeys([*registry.VARIANTS, *run.declared]):
        children.setdefault(below_of(run, name), []).append(name)
    out: list[tuple[str, int]] = []

    def visit(name: str, depth: int) -> None:
        out.append((name, depth))
        for child in children.get(name, []):
            visit(child, depth + 1)

    for root in children.get(None, []):
        if root in children:
            visit(root, 0)
    return out


@dataclass
class Rung:
    """One variant of a ladder on one network, against the rung below it."""

    case: Case
    below: Case | None
    depth: int
    built_on: str | None = None  # the rung below's name (measured or not)

    @property
    def adds(self) -> float | None:
        return self.case.median - self.below.median if self.below else None

    @property
    def ratio(self) -> float | None:
        return self.case.median / self.below.median if self.below else None


def ladders(run: Run) -> dict:
    """{(problem, device): [Rung, ...]} for the networks with at least two rungs measured."""
    by = {(c.problem, c.device, c.variant): c for c in run.ok_cases()}
    out = {}
    for problem, device in dict.fromkeys((c.problem, c.device) for c in run.ok_cases()):
        rungs = [Rung(by[(problem, device, name)],
                      by.get((problem, device, below_of(run, name))), depth,
                      below_of(run, name))
                 for name, depth in ladder_order(run) if (problem, device, name) in by]
        if sum(r.below is not None for r in rungs):
            out[(problem, device)] = rungs
    return out


LADDER_HEADERS = ["rung", "built on", "per step", "adds", "× the rung below"]


def ladder_cells(r: Rung, markdown: bool = False) -> list[str]:
    name = ("  " * r.depth + r.case.variant) if not markdown else \
        ("&nbsp;" * 4 * r.depth + md_code(r.case.variant))
    adds = "—" if r.adds is None else ("+" if r.adds >= 0 else "−") + fmt_time(abs(r.adds))
    return [name, r.built_on or "—", fmt_time(r.case.median), adds, fmt_ratio(r.ratio)]


def ladder_table(run: Run) -> str:
    """The ladders `run` prints: per network, each rung against the one it is built on."""
    parts = []
    for (problem, device), rungs in ladders(run).items():
        parts.append(f"{problem.label()} on {device}:\n"
                     + text_table(LADDER_HEADERS, [ladder_cells(r) for r in rungs], "llrrr"))
    return "\n\n".join(parts)
