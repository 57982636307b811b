"""`check --workers N`: the data-parallel variants on N workers, each framework in a fresh
process (``harness.procs.distcheck``), and the table it prints."""

from __future__ import annotations

from harness import check
from harness.check.workers import GRADIENT, RANKS, WORKERS_NETWORK
from harness.commands import plans
from harness.procs.distcheck import check_all
from harness.tables import text_table
from implementations import registry
from implementations.problem import BenchError, Problem


def problems_for(networks: plans.Networks, workers: int) -> list[Problem]:
    """The networks of `check --workers N`: those asked for, or 4-16-16-4 tanh; batch 8·N
    unless given; float64 and float32 unless given."""
    widths = networks.widths or (WORKERS_NETWORK,)
    activation = networks.activation or ("tanh" if networks.widths is None else "linear")
    batch = networks.batch if networks.batch is not None else 8 * workers
    bias = bool(networks.bias)
    return plans.unique([plans.problem(w, activation, networks.output_activation, bias,
                                       d, batch, networks.lr, networks.seed) for w in widths
                         for d in plans.dtypes_of(networks, ("float64", "float32"))])


def variants_for(names: tuple[str, ...] | None, frameworks: tuple[str, ...] | None) -> list:
    """The distributed variants asked for (by name or framework), or all of them."""
    every = [v for v in registry.VARIANTS.values() if v.distributed]
    chosen, _ = plans.variants(names, frameworks, every)
    plain = [v.name for v in chosen if not v.distributed]
    if plain:
        raise BenchError(f"--workers checks the distributed variants "
                         f"({', '.join(v.name for v in every)}), not {', '.join(plain)}")
    if not chosen:
        raise BenchError("no distributed variant to check")
    return chosen


def render(report: check.Report, problems: list[Problem], workers: int, steps: int) -> str:
    """Per network: one line per variant with its worst error against each reference."""
    out = []
    for p in problems:
        tol = check.TOLERANCES[p.spec.dtype]
        out.append(f"\n{p.spec.label()}, batch {p.batch}, {workers} workers: tolerances "
                   f"gradient {tol.frameworks:.0e}, trajectory {tol.trajectory:.0e}, workers "
                   f"bitwise equal")
        rows = [r for r in report.rows if r.problem == check.label(p)]
        table = []
        for subject in dict.fromkeys(r.subject for r in rows):
            mine = [r for r in rows if r.subject == subject]
            cells = [worst(mine, ref) for ref in (GRADIENT, "trajectory", RANKS)]
            table.append([subject, *cells, "ok" if all(r.passed for r in mine) else "FAIL"])
        if table:
            out.append(text_table(["variant", "gradient vs full batch",
                                   f"trajectory ({steps} steps)", "spread between workers",
                                   "result"], table, "lrrrl"))
    out += [f"note: {n}" for n in dict.fromkeys(report.notes)]
    failures = report.failures()
    if failures:
        out.append(f"\nFAILED: {len(failures)} comparison(s) out of tolerance")
        out += [f"  {f}" for f in failures]
    else:
        out.append(f"\nPASSED: all {len(report.rows)} comparisons within tolerance")
    return "\n".join(out)


def worst(rows: list[check.Row], reference: str) -> str:
    mine = [r for r in rows if r.reference == reference]
    return f"{max(r.error for r in mine):.1e}" if mine else "n/a"


def command(networks: plans.Networks, frameworks: tuple[str, ...] | None,
            names: tuple[str, ...] | None, steps: int, device: str, workers: int) -> int:
    """`check --workers N`: 0 if every comparison passed, 1 otherwise."""
    if workers < 1:
        raise BenchError(f"--workers {workers} must be 1 or more")
    problems = problems_for(networks, workers)
    plans.check_workers_memory(workers, [(p.spec, p.batch) for p in problems])
    variants = variants_for(names, frameworks)
    report = check_all(problems, variants, workers, steps, device)
    if not report.rows:
        raise BenchError("nothing was checked: " + "; ".join(dict.fromkeys(report.notes)))
    print(render(report, problems, workers, steps))
    return 0 if report.passed else 1
