"""The ``backprop-bench`` command line: demo, check, list (and the timing commands).

Every user error ends as one line on stderr and exit status 2; a check that finds a
disagreement exits 1. Tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from harness import compare, progress, report, sweep
from harness.environment import default_threads
from implementations import registry
from implementations.problem import (
    ACTIVATIONS,
    DEFAULT_LR,
    DTYPES,
    BenchError,
    NetworkSpec,
    SpecError,
    make_problem,
    parse_widths,
    validate_lr,
)

PROG = "backprop-bench"


LR_HELP = ("SGD learning rate (default: 0.1, times 16/width for networks wider than 16, so "
           "that plain SGD stays stable)")


def lr_from(args) -> float | None:
    """--lr as a checked float, or None for the per-network default."""
    return None if args.lr is None else validate_lr(args.lr)


class UsageError(BenchError):
    """A bad command line."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line and exit status 2, with no usage dump, and no
    abbreviated flags (``--out`` must never be read as ``--output-activation``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise UsageError(f"{message} (see '{self.prog} --help')")


# ---- shared option groups ---------------------------------------------------------------------

def csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def add_network_args(p: argparse.ArgumentParser, dtype_default: str = "float64") -> None:
    g = p.add_argument_group("network")
    g.add_argument("--widths", default="1,1,1",
                   help="layer widths, input to output, e.g. 4,16,16,4 (default: 1,1,1)")
    g.add_argument("--activation", default="linear",
                   help=f"hidden activation: {', '.join(ACTIVATIONS)} (default: linear)")
    g.add_argument("--output-activation", default="linear",
                   help="output activation (default: linear)")
    g.add_argument("--bias", action="store_true", help="give every layer a bias (default: off)")
    g.add_argument("--dtype", default=dtype_default,
                   help=f"comma list of {', '.join(DTYPES)} (default: {dtype_default})")
    g.add_argument("--batch", type=int, default=1,
                   help="samples per step; batch 1 with input width 1 is X=1 -> Y=-1, "
                        "otherwise a seeded batch x in [-1, 1], y = -x (default: 1)")
    g.add_argument("--lr", help=LR_HELP)
    g.add_argument("--seed", type=int, default=0, help="seed for data and weights (default: 0)")


def add_timing_network_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("networks (default: 1-1-1 linear float64 batch 1, and 16-16-16 "
                             "and 256-256-256 tanh float32 batch 64)")
    g.add_argument("--widths", nargs="+", metavar="W", help="one or more networks, e.g. "
                   "1,1,1 256,256,256")
    g.add_argument("--activation", help="hidden activation (default: linear for the default "
                   "1-1-1 and for --widths, tanh for the default wider networks)")
    g.add_argument("--output-activation", default="linear", help="(default: linear)")
    g.add_argument("--bias", action="store_true", help="give every layer a bias")
    g.add_argument("--dtype", help="comma list of float32, float64 (default: float64 for "
                   "1-1-1, float32 otherwise)")
    g.add_argument("--batch", type=int, help="(default: 1 for 1-1-1, 64 otherwise)")
    g.add_argument("--lr", help=LR_HELP)
    g.add_argument("--seed", type=int, default=0, help="(default: 0)")


def dtypes_from(args) -> list[str]:
    dtypes = list(dict.fromkeys(csv(args.dtype)))
    for d in dtypes:
        if d not in DTYPES:
            raise SpecError(f"unknown dtype {d!r}: choose from {', '.join(DTYPES)}")
    if not dtypes:
        raise SpecError(f"--dtype is empty: choose from {', '.join(DTYPES)}")
    return dtypes


def problems_from(args, widths: Sequence[int] | None = None) -> list:
    """One problem per dtype asked for, from the network options."""
    lr = lr_from(args)
    widths = tuple(widths) if widths is not None else parse_widths(args.widths)
    return [
        make_problem(NetworkSpec(widths, args.activation, args.output_activation, args.bias, d),
                     batch=args.batch, lr=lr, seed=args.seed)
        for d in dtypes_from(args)
    ]


def frameworks_from(text: str | None, *, contract_only: bool = True) -> dict[str, object]:
    """Import the frameworks asked for (all by default). Asked-for but missing is an error;
    missing from the default set is only reported."""
    asked = csv(text) if text is not None else None
    if asked == []:
        raise UsageError("--framework is empty: name at least one framework")
    names = asked or [n for n, f in registry.FRAMEWORKS.items() if f.gradients or not contract_only]
    modules = {}
    for name in names:
        fw = registry.get_framework(name)
        if contract_only and not fw.gradients:
            variants = ", ".join(v.name for v in registry.variants_of(name))
            raise BenchError(f"{name} has no forward/grads functions, only a training loop: "
                             f"use its variant ({variants}) with 'check --variants' or 'run'")
        try:
            modules[name] = registry.import_module(name)
        except registry.Unavailable as exc:
            if asked:
                raise
            print(f"note: {exc}", file=sys.stderr)
    if not modules:
        raise BenchError("no framework is available")
    return modules


# ---- commands ---------------------------------------------------------------------------------

def cmd_demo(args) -> int:
    from harness import demo

    lr = validate_lr(args.lr)
    if args.epochs < 0:
        raise UsageError(f"--epochs {args.epochs} must be 0 or more")
    problem = make_problem(lr=lr)
    with np.errstate(all="ignore"):  # a diverging lr is reported below, not as warnings
        results = {name: demo.replay(m, problem, args.epochs)
                   for name, m in frameworks_from(args.framework).items()}
    print(demo.render(results, lr))
    diverged = demo.diverged(results)
    if diverged:
        print(f"{PROG}: error: training diverged (non-finite loss or weights) with lr {lr:g} "
              f"in {', '.join(diverged)}", file=sys.stderr)
        return 1
    return 0


def cmd_check(args) -> int:
    from harness import check

    problems = problems_from(args)
    modules = frameworks_from(args.framework)
    variants = variants_for_check(args, modules)
    if args.steps <= 0:
        raise UsageError(f"--steps {args.steps} must be 1 or more")
    if args.variants is not None:
        for v in variants:
            reasons = [v.why_not(p, args.device) for p in problems]
            if all(reasons):
                raise BenchError(f"variant {v.name} cannot run any case asked for: {reasons[0]}")
    report = check.Report()
    for problem in problems:
        usable = {}
        for name, module in modules.items():
            reason = registry.main_variant(name).why_not(problem, args.device)
            if reason:
                report.notes.append(f"gradients: {reason}; skipped")
            else:
                usable[name] = module
        if usable:
            check.check_gradients(problem, usable, args.device, report)
        for v in variants:
            reason = v.why_not(problem, args.device)
            if reason:
                report.notes.append(f"trajectory: {reason}; skipped")
                continue
            try:
                check.check_trajectory(problem, v, args.steps, args.device, report)
            except registry.Unavailable as exc:
                report.notes.append(f"trajectory: {exc}; skipped")
    if not report.rows:
        raise BenchError("nothing was checked: " + "; ".join(dict.fromkeys(report.notes)))
    print(render_check(report, problems))
    return 0 if report.passed else 1


def variants_for_check(args, modules) -> list:
    if args.variants is not None:
        return variants_from(args.variants)
    return [v for v in registry.VARIANTS.values()
            if v.framework in modules or (v.framework == "numba" and "numpy" in modules
                                          and args.framework is None)]


def render_check(report, problems) -> str:
    from harness.check import TOLERANCES
    from harness.tables import text_table

    out = []
    for problem in problems:
        d = problem.spec.dtype
        t = TOLERANCES[d]
        out.append(f"\n{problem.spec.label()}, batch {problem.batch}: tolerances "
                   f"FD {t.finite_differences:.0e}, closed form {t.closed_form:.0e}, "
                   f"frameworks {t.frameworks:.0e}, trajectory {t.trajectory:.0e}")
        rows = [r for r in report.rows if r.dtype == d]
        losses = [r for r in rows if r.reference == "reference loss"]
        if losses:
            out.append("loss E vs the reference forward pass: " + ", ".join(
                f"{r.subject} {r.error:.1e}{'' if r.passed else ' FAIL'}" for r in losses))
        grad_rows = {}
        for r in rows:
            if r.reference not in ("trajectory", "reference loss"):
                grad_rows.setdefault((r.subject, r.tensor), {})[r.reference] = r
        table = []
        for (subject, tensor), refs in grad_rows.items():
            cells = [refs.get(k) for k in ("finite differences", "closed form", "frameworks")]
            ok = all(c.passed for c in cells if c)
            table.append([subject, tensor] + [f"{c.error:.1e}" if c else "n/a" for c in cells]
                         + ["ok" if ok else "FAIL"])
        if table:
            out.append(text_table(["framework", "tensor", "vs FD", "vs closed form",
                                   "vs others", "result"], table, "llrrrl"))
        traj = {}
        for r in rows:
            if r.reference == "trajectory":
                traj.setdefault(r.subject, []).append(r)
        if traj:
            trows = []
            for subject, rs in traj.items():
                worst = max(rs, key=lambda r: r.error)
                trows.append([subject, worst.detail.replace("after ", ""), worst.tensor,
                              f"{worst.error:.1e}", "ok" if all(r.passed for r in rs) else "FAIL"])
            out.append("")
            out.append(text_table(["trajectory of", "steps", "worst tensor", "error", "result"],
                                  trows, "lrlrl"))
    for note in dict.fromkeys(report.notes):
        out.append(f"note: {note}")
    failures = report.failures()
    if failures:
        out.append(f"\nFAILED: {len(failures)} comparison(s) out of tolerance")
        out += [f"  {f}" for f in failures]
    else:
        out.append(f"\nPASSED: all {len(report.rows)} comparisons within tolerance")
    return "\n".join(out)


DEFAULT_NETWORKS = (
    # the worked example, then two wider networks: overhead-bound and compute-bound
    dict(widths=(1, 1, 1), activation="linear", dtype="float64", batch=1),
    dict(widths=(16, 16, 16), activation="tanh", dtype="float32", batch=64),
    dict(widths=(256, 256, 256), activation="tanh", dtype="float32", batch=64),
)
# Left out of the default run (not of explicit --widths/--variants) to keep it within 90 s
# with a cold torch.compile cache: jax-eager retraces at the same ~5 ms whatever the width,
# and torch-block's 16-step graph costs 7-8 s to compile per network; it stays on the worked
# example, where amortising dispatch is the story.
DEFAULT_SKIP = {(16, 16, 16): ("jax-eager", "torch-block"),
                (256, 256, 256): ("jax-eager", "torch-block")}


def timing_problems(args) -> list:
    """The networks of run: the defaults, or --widths (one or more), × --dtype, without
    repeats (a repeated network would be pooled as if it came from another process)."""
    lr = lr_from(args)
    dtypes = None if args.dtype is None else dtypes_from(args)
    if args.widths is None:
        nets = [dict(n, activation=args.activation or n["activation"], dtype=d,
                     batch=n["batch"] if args.batch is None else args.batch)
                for n in DEFAULT_NETWORKS for d in (dtypes or [n["dtype"]])]
    else:
        nets = []
        for text in args.widths:
            widths = parse_widths(text)
            one = widths == (1, 1, 1)
            nets += [dict(widths=widths, activation=args.activation or "linear", dtype=d,
                          batch=(1 if one else 64) if args.batch is None else args.batch)
                     for d in (dtypes or ["float64" if one else "float32"])]
    problems = [make_problem(NetworkSpec(n["widths"], n["activation"], args.output_activation,
                                         args.bias, n["dtype"]), batch=n["batch"], lr=lr,
                             seed=args.seed) for n in nets]
    unique = {json.dumps(p.as_dict(), sort_keys=True): p for p in problems}
    return list(unique.values())


def default_skip(problems) -> dict[int, tuple[str, ...]]:
    """DEFAULT_SKIP by the index of each problem in this run."""
    return {i: DEFAULT_SKIP[p.spec.widths] for i, p in enumerate(problems)
            if p.spec.widths in DEFAULT_SKIP}


def device_from(text: str) -> str:
    device = {"gpu": "cuda"}.get(text, text)
    if device not in registry.ALL_DEVICES:
        raise UsageError(f"unknown device {text!r}: choose cpu or cuda (or gpu)")
    if device == "cuda":
        require_cuda()
    return device


def require_cuda() -> None:
    """A one-line error unless some framework here sees a CUDA device."""
    from harness.environment import gpu_info

    reasons = []
    for name in ("torch", "jax"):
        try:
            registry.import_module(name).check_device("cuda")
            return
        except registry.Unavailable as exc:
            reasons.append(str(exc))
    gpu = gpu_info()
    seen = f" (nvidia-smi sees {gpu['name']})" if gpu else ""
    raise BenchError("--device cuda: no CUDA device is usable here" + seen + ": " +
                     "; ".join(reasons))


def cmd_run(args) -> int:
    from harness import results, runner, summary
    from harness.environment import default_threads, machine_info
    from harness.timing import TimingConfig

    device = device_from(args.device)
    problems = timing_problems(args)
    explicit = args.variants is not None
    variants = variants_from(args.variants) if explicit else list(registry.VARIANTS.values())
    check_positive(args)
    timing = TimingConfig(budget_s=args.time_per_case)
    peaks = [] if args.no_peak else default_peaks(problems, device)
    plan = runner.Plan("run", device, problems, variants, args.threads or default_threads(),
                       timing, peaks, explicit, processes=args.processes,
                       skip={} if args.widths or explicit else default_skip(problems))
    path = results.ensure_writable(Path(args.out) if args.out else results.default_path(
        "run", device, machine_info(), Path(args.results_dir)), args.force)
    plan.cases()  # an explicit variant that can run nothing fails here, before any output
    print(f"backprop-bench run: writing {path}", flush=True)
    try:
        run = runner.execute(plan, path, lambda c, d, t: print(summary.case_line(c, d, t),
                                                                 flush=True))
    except KeyboardInterrupt:
        print(f"interrupted: the finished cases are saved in {path}", file=sys.stderr)
        return 130
    print()
    print(summary.run_table(run))
    for note in run.get("notes", []):
        print(f"note: skipped, {note}")
    print(f"\nresults: {path}")
    return 0 if all(c["status"] != "failed" for c in run["cases"]) else 1


def cmd_sweep(args) -> int:

    from harness import results, runner, sweep
    from harness.environment import default_threads, machine_info
    from harness.timing import TimingConfig

    device = device_from(args.device)
    lr = lr_from(args)
    grid = sweep.Grid(tuple(ints(args.widths, "--widths")), tuple(ints(args.depths, "--depths")),
                      tuple(ints(args.batches, "--batches")), tuple(dtypes_from(args)),
                      args.activation)
    if args.activation not in ACTIVATIONS:
        raise SpecError(f"unknown activation {args.activation!r}: choose from "
                        f"{', '.join(ACTIVATIONS)}")
    explicit = args.variants is not None
    variants = variants_from(args.variants) if explicit else sweep.default_variants(device)
    check_positive(args)
    threads = args.threads or default_threads()

    def make_plan(g, timing):
        problems = g.problems(lr, args.seed)
        peaks = [] if args.no_peak else default_peaks(problems, device)
        return runner.Plan("sweep", device, problems, variants, threads, timing, peaks, False,
                           extra_config={"grid": g.as_dict()}, processes=args.processes,
                           extra_cases=[(sweep.ceiling_problem(lr), registry.get("limit"))])

    def estimate(g, timing):
        return sweep.estimate_s(make_plan(g, timing).cases(), timing, args.processes)

    timing = TimingConfig(budget_s=args.time_per_case)
    grid, timing, message = sweep.fit_budget(grid, timing, args.budget, estimate)
    plan = make_plan(grid, timing)
    cases = plan.cases()
    if explicit:
        grid_points = {id(p) for p in plan.problems}
        runnable = {v.name for p, v, _ in cases if id(p) in grid_points}
        for v in variants:
            if v.name not in runnable:
                raise BenchError(f"variant {v.name} cannot run any point of this grid on "
                                 f"{device}")
    path = results.ensure_writable(Path(args.out) if args.out else results.default_path(
        "sweep", device, machine_info(), Path(args.results_dir)), args.force)
    print(f"backprop-bench sweep: {len(cases)} cases, estimated "
          f"{sweep.estimate_s(cases, timing, args.processes):.0f} s; writing {path}",
          flush=True)
    if message:
        print(message, flush=True)
    bar = progress.Bar(len(cases))
    try:
        run = runner.execute(plan, path, bar.update)
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted: the finished cases are saved in {path}", file=sys.stderr)
        return 130
    bar.close()
    failed = [c for c in run["cases"] if c["status"] == "failed"]
    for c in failed:
        print(f"FAILED {c['id']}: {c['reason']}")
    print(f"results: {path}  ({len(run['cases']) - len(failed)} ok or unavailable, "
          f"{len(failed)} failed); make a report with: backprop-bench report {path}")
    return 1 if failed else 0


def variants_from(text: str) -> list:
    names = list(dict.fromkeys(csv(text)))
    if not names:
        raise UsageError(f"--variants is empty: choose from {', '.join(registry.VARIANTS)}")
    return [registry.get(n) for n in names]


def check_positive(args) -> None:
    for flag, value in (("--time-per-case", args.time_per_case), ("--threads", args.threads),
                        ("--processes", args.processes), ("--batch", getattr(args, "batch", None))):
        if value is not None and not value > 0:
            raise UsageError(f"{flag} {value:g}: must be positive")
    usable = default_threads()
    if args.threads is not None and args.threads > usable:
        raise UsageError(f"--threads {args.threads}: only {usable} cores are usable here")


def ints(text: str, flag: str) -> list[int]:
    try:
        return [int(p) for p in csv(text)]
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected comma-separated integers") from None


def default_peaks(problems, device: str) -> list[str]:
    """Dtypes whose matmul peak is worth measuring: those of networks that do real matmuls."""
    return sorted({p.spec.dtype for p in problems if p.flops_per_step() > 6 * 64})


def cmd_list(args) -> int:
    from harness.tables import text_table

    rows = []
    for v in registry.VARIANTS.values():
        try:
            registry.import_module(v.framework)
            status = "available"
        except registry.Unavailable as exc:
            status = f"unavailable: {exc}"
        rows.append([v.name, v.kind, "/".join(v.devices), v.description, status])
    print(text_table(["variant", "kind", "devices", "what", "status"], rows, "lllll"))
    return 0


# ---- parser -----------------------------------------------------------------------------------

def build_parser() -> Parser:
    p = Parser(prog=PROG, description="Are this framework's gradients right, and what does one "
               "training step really cost? NumPy, PyTorch and JAX on the backprop worked "
               "example and wider MLPs.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    d = sub.add_parser("demo", help="replay the worked example in every framework, side by side")
    d.add_argument("--framework", help="comma list (default: every available one)")
    d.add_argument("--epochs", type=int, default=100, help="SGD steps (default: 100)")
    d.add_argument("--lr", default=str(DEFAULT_LR), help=f"learning rate (default: {DEFAULT_LR})")
    d.set_defaults(func=cmd_demo)

    c = sub.add_parser("check", help="verify gradients against finite differences, the closed "
                       "form, each other and a training trajectory; exit 1 on any disagreement")
    add_network_args(c, dtype_default="float64,float32")
    c.add_argument("--framework", help="comma list of frameworks whose gradients are checked "
                   "(default: every available one)")
    c.add_argument("--variants", help="comma list of variants whose trajectory is checked "
                   "(default: every variant of the frameworks checked)")
    c.add_argument("--steps", type=int, default=100, help="trajectory length (default: 100)")
    c.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="(default: cpu)")
    c.set_defaults(func=cmd_check)

    r = sub.add_parser("run", help="time the SGD update loop of every variant, check it, and "
                       "write one JSON file of results",
                       description="Time and check every variant. The default is the worked "
                       "example (1-1-1, float64) with every variant, and 16-16-16 and "
                       "256-256-256 tanh float32 batch 64 without jax-eager and torch-block, "
                       "in about 60-90 s; --widths or --variants run exactly what they name.")
    add_timing_network_args(r)
    r.add_argument("--device", default="cpu", help="cpu or cuda (also: gpu) (default: cpu)")
    r.add_argument("--variants", help=f"comma list of {', '.join(registry.VARIANTS)} "
                   "(default: every variant that can run each network on the device)")
    r.add_argument("--threads", type=int, help="threads for every framework (default: all "
                   "usable cores)")
    r.add_argument("--time-per-case", type=float, default=0.25,
                   help="seconds of timed blocks per case and process, after calibration "
                        "(default: 0.25)")
    r.add_argument("--processes", type=int, default=2,
                   help="worker processes per framework, one round after another; their "
                        "samples are pooled, so the IQR includes the noise between processes "
                        "(default: 2)")
    r.add_argument("--no-peak", action="store_true", help="skip measuring the matmul peak")
    r.add_argument("--out", help="results file (default: results/run-DEVICE-HOST-TIME.json)")
    r.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    r.add_argument("--results-dir", default="results", help=argparse.SUPPRESS)
    r.set_defaults(func=cmd_run)

    w = sub.add_parser("sweep", help="time a grid of [d]*(depth+1) networks for the scaling "
                       "story; write one JSON file of results")
    w.add_argument("--widths", default=",".join(map(str, sweep.DEFAULT_WIDTHS)),
                   help="comma list of d (default: 1,2,4,...,2048)")
    w.add_argument("--depths", default="2", help="comma list of weight layers (default: 2, "
                   "the [d, d, d] network)")
    w.add_argument("--batches", default="64", help="comma list (default: 64)")
    w.add_argument("--dtype", default="float32", help="comma list (default: float32)")
    w.add_argument("--activation", default="tanh", help="hidden activation (default: tanh)")
    w.add_argument("--lr", help=LR_HELP)
    w.add_argument("--seed", type=int, default=0, help="(default: 0)")
    w.add_argument("--device", default="cpu", help="cpu or cuda (also: gpu) (default: cpu)")
    w.add_argument("--variants", help="comma list (default on cpu: numpy, torch, jax, "
                   "jax-scan; on cuda: torch, torch-cudagraph, jax, jax-scan); the limit "
                   "loop on the worked example is always added as the serial ceiling")
    w.add_argument("--budget", type=float, help="seconds: shrink the time per case, then the "
                   "widths, up front until the estimate fits, and say which")
    w.add_argument("--threads", type=int, help="(default: all usable cores)")
    w.add_argument("--time-per-case", type=float, default=1.0, help="(default: 1.0)")
    w.add_argument("--processes", type=int, default=1,
                   help="worker processes per framework, pooled (default: 1)")
    w.add_argument("--no-peak", action="store_true", help="skip measuring the matmul peak")
    w.add_argument("--out", help="results file (default: results/sweep-DEVICE-HOST-TIME.json)")
    w.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    w.add_argument("--results-dir", default="results", help=argparse.SUPPRESS)
    w.set_defaults(func=cmd_sweep)

    report.register(sub)
    compare.register(sub)

    ls = sub.add_parser("list", help="list the variants and whether they can run here")
    ls.set_defaults(func=cmd_list)
    return p


def interrupt(signum, frame):
    """SIGTERM (from `timeout`, a scheduler) ends a run like Ctrl-C: finished cases are kept."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, interrupt)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return args.func(args)
    except BenchError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
