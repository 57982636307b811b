"""The ``backprop-bench`` command line: parsing only; ``harness.commands.basic`` does the work.

Every subcommand is one ``Command`` in ``COMMANDS`` (name, help, description, examples, its
arguments, and how to call its function with typed values). Every user error ends as one line
on stderr and exit status 2; a check or a case that fails exits 1. Tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import codecs
import os
import signal
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness import __version__
from harness.commands import basic as commands
from harness.commands import check, demo, scale, timed
from harness.commands.base import EXIT_OUTPUT_CLOSED, OutputClosed, check_environment
from harness.commands.options import (
    LR_HELP,
    UsageError,
    add_networks,
    add_selection,
    add_timed,
    csv,
    device,
    ints,
    lr_of,
    networks_of,
    percent,
    positive,
    timed_of,
)
from harness.commands.sweep import SWEEP_SIZES, Grid
from harness.measure.check import deadline
from harness.measure.instructions import CountConfig
from harness.record import compare, export
from harness.record.counts import FAIL_ABOVE_PCT as COUNT_FAIL_ABOVE_PCT
from harness.report import DEFAULT_DIR, DEFAULT_OUT
from implementations import registry
from implementations.problem import (
    ACTIVATIONS,
    DEFAULT_LR,
    DTYPES,
    BenchError,
    validate_lr,
)

PROG = commands.PROG
COUNT_TARGET = CountConfig().target


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line and exit status 2, with no usage dump, and no
    abbreviated flags (``--out`` must never be read as ``--output-activation``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise UsageError(f"{message} (see '{self.prog} --help')")


# ---- the subcommands --------------------------------------------------------------------------

def demo_args(p: Parser) -> None:
    p.add_argument("--framework", type=csv, metavar="F,F",
                   help="comma list (default: every available one)")
    p.add_argument("--variants", type=csv, metavar="V,V", help="comma list of variants whose "
                   "Trainers replay it too (default: every variant of the frameworks shown)")
    p.add_argument("--epochs", type=int, default=100, help="SGD steps (default: 100)")
    p.add_argument("--lr", default=str(DEFAULT_LR), help=f"learning rate (default: {DEFAULT_LR})")
    add_check_timeout(p)


def add_check_timeout(p: Parser) -> None:
    p.add_argument("--timeout", type=positive(float), metavar="SECONDS",
                   help="per piece of work (one variant's gradients or trajectory on one "
                        "network): one that takes longer fails with that cause and the rest "
                        "go on; one that cannot be interrupted (a hang in C) ends the command "
                        f"{deadline.GRACE_S:g} s later, exit {deadline.EXIT_HUNG} (default: "
                        f"{deadline.DEFAULT_S:g} s)")


def timed_check(a: argparse.Namespace, call: Callable[[], int]) -> int:
    """``call()`` with check's --timeout in force (here and in the processes it starts)."""
    deadline.set_seconds(a.timeout)
    return call()


def check_args(p: Parser) -> None:
    add_networks(p, "default: the worked example (1-1-1 linear, batch 1, float64) and 3-4-4-3 "
                 "tanh with bias, batch 5, float64 and float32: together they catch the classic "
                 "backprop bugs (a dropped 1/batch, a missing 1/2, W for W^T, a wrong "
                 "derivative, ...); --activation, --bias/--no-bias and --batch change both; "
                 "--widths networks take batch 5 (1-1-1: batch 1) unless --batch is given")
    add_selection(p, "every variant of the frameworks checked, but those whose cold build "
                  "takes minutes and is not cached yet (said in the output; --all includes "
                  "them)")
    p.add_argument("--all", dest="include_all", action="store_true",
                   help="also the variants whose cold build takes minutes (torch-loop, the "
                        "torch.compile blocks), building them where they are not cached")
    p.add_argument("--impl", metavar="FILE.py",
                   help="also check your own backward pass: a NumPy file defining grads(params, "
                        "x, y) -> (E, grads) and optionally sgd_step(params, x, y, lr), "
                        "ACTIVATION and BIAS (see examples/learner_backprop.py)")
    p.add_argument("--example", metavar="FILE",
                   help="check a published worked example instead (TOML or JSON: network, "
                        "weights, data, and the values printed; see examples/): every "
                        "framework must reproduce it to the printed digits")
    p.add_argument("--steps", type=int, default=100, help="trajectory length (default: 100; a "
                   "block variant runs its block at least twice, then a remainder)")
    p.add_argument("--device", type=device, default="cpu", help="cpu or cuda (also: gpu)")
    p.add_argument("--threads", type=positive(int), help="threads for every framework, set as "
                   "run sets them (default: all usable cores)")
    p.add_argument("--workers", type=positive(int), metavar="N",
                   help="check the data-parallel variants on N workers instead: the gradient "
                        "each worker steps with against the full batch's, the trajectory, and "
                        "every worker's parameters equal (default network 4,16,16,4 tanh, "
                        "batch 8·N; use N >= 2: at N = 1 a missing all-reduce cannot show)")
    p.add_argument("--oversubscribe", action="store_true",
                   help="let more workers than cores share them (marked in the results)")
    add_check_timeout(p)


def run_args(p: Parser) -> None:
    add_networks(p, "default: 1-1-1 linear float64 batch 1, and 16-16-16 and 256-256-256 tanh "
                 "float32 batch 64; a 1-1-1 network defaults to float64 and batch 1, any other "
                 "to float32 and batch 64")
    add_selection(p, "every variant that can run each network on the device")
    add_timed(p, "run", 0.25, 1)
    p.add_argument("--measure", choices=("time", "instructions"), default="time",
                   help="time (default), or instructions: also count each case's "
                        "instructions per SGD step under Valgrind (Callgrind, one thread), "
                        "after the times, in one process per framework and round")
    p.add_argument("--count-target", type=positive(float), default=COUNT_TARGET,
                   metavar="N", help="with --measure instructions: instructions that one "
                   f"counted block of K steps reaches at least (default {COUNT_TARGET:g}; "
                   "fewer is faster)")


def sweep_args(p: Parser) -> None:

    p.add_argument("--sizes", type=ints, help="comma list of d (default: "
                   f"{','.join(map(str, SWEEP_SIZES))})")
    p.add_argument("--widths", type=ints, help=argparse.SUPPRESS)  # old name of --sizes
    p.add_argument("--depths", type=ints, default=(2,), help="comma list of weight layers "
                   "(default: 2, the [d, d, d] network)")
    p.add_argument("--batches", type=ints, default=(64,), help="comma list (default: 64)")
    p.add_argument("--dtype", type=csv, default=("float32",), help="comma list (default: "
                   "float32)")
    p.add_argument("--activation", default="tanh", help="hidden activation (default: tanh)")
    p.add_argument("--lr", help=LR_HELP)
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument("--budget", type=positive(float), metavar="SECONDS", help="shrink the time "
                   "per case, then the sizes, up front until the estimate fits, and say which")
    add_selection(p, "the variants each framework declares for sweeps on the device; the "
                  "limit loop on the worked example is always added as the serial ceiling")
    add_timed(p, "sweep", 1.0, 1)


def sweep_call(a) -> int:

    sizes = a.sizes
    if a.widths is not None:
        print("note: sweep --widths is now --sizes (the widths d of [d, d, d]); --widths still "
              "works", file=sys.stderr)
        sizes = a.widths if sizes is None else sizes
    if a.activation not in ACTIVATIONS:
        raise BenchError(f"unknown activation {a.activation!r}: choose from "
                         f"{', '.join(ACTIVATIONS)}")
    grid = Grid(SWEEP_SIZES if sizes is None else sizes, a.depths, a.batches, a.dtype,
                a.activation)
    return timed.sweep(grid, lr_of(a.lr), a.seed, a.budget, timed_of(a))


def scale_args(p: Parser) -> None:

    p.add_argument("--workers", type=ints, default=scale.DEFAULT_WORKERS, metavar="N,N",
                   help="comma list of worker counts, one core (CPU) or one GPU each "
                        f"(default: {','.join(map(str, scale.DEFAULT_WORKERS))})")
    p.add_argument("--sizes", type=ints, default=scale.DEFAULT_SIZES, metavar="D,D",
                   help="comma list of d of the [d, d, d] networks (default: "
                        f"{','.join(map(str, scale.DEFAULT_SIZES))})")
    p.add_argument("--batch", type=positive(int), default=scale.DEFAULT_BATCH,
                   help="the global batch of strong scaling, and each worker's batch of weak "
                        f"scaling (default: {scale.DEFAULT_BATCH})")
    p.add_argument("--scaling", type=csv, default=("strong", "weak"), metavar="MODE,MODE",
                   help="strong, weak or both (default: both)")
    p.add_argument("--dtype", default="float32", help="(default: float32)")
    p.add_argument("--activation", default="tanh", help="hidden activation (default: tanh)")
    p.add_argument("--lr", help=LR_HELP)
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument("--oversubscribe", action="store_true",
                   help="let more workers than cores share them (marked in the results)")
    p.add_argument("--no-allreduce", action="store_true",
                   help="skip timing the all-reduce alone (the model then has no "
                        "prediction)")
    add_selection(p, "every data-parallel variant")
    add_timed(p, "scale", 0.25, 1)


def scale_call(a) -> int:

    if a.activation not in ACTIVATIONS:
        raise BenchError(f"unknown activation {a.activation!r}: choose from "
                         f"{', '.join(ACTIVATIONS)}")
    if a.dtype not in DTYPES:
        raise BenchError(f"unknown dtype {a.dtype!r}: choose from {', '.join(DTYPES)}")
    options = scale.Options(a.sizes, a.workers, a.batch, a.scaling, a.dtype, a.activation,
                            lr_of(a.lr), a.seed, a.oversubscribe, not a.no_allreduce)
    return scale.command(options, timed_of(a))


def report_args(p: Parser) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help=f"results files or folders of them (default: {DEFAULT_DIR}/)")
    p.add_argument("--out", metavar="FILE", help=f"the Markdown file; plots go in plots/ "
                   f"beside it (default: {DEFAULT_DIR}/{DEFAULT_OUT})")
    p.add_argument("--force", action="store_true", help="overwrite files the report did not "
                   "write itself")
    p.add_argument("--readme", metavar="FILE", help="also rewrite the generated 'results at a "
                   "glance' block of this README (between its two markers)")


def compare_args(p: Parser) -> None:
    p.add_argument("a", metavar="A", help="the baseline results file")
    p.add_argument("b", metavar="B", help="the results file compared with it")
    p.add_argument("--fail-above", type=percent, metavar="PCT",
                   help="exit 1 if any case is significantly slower in B by more than PCT%% "
                        "(by the ratio alone with fewer than 2 samples), or was ok in A and "
                        "is failed, unavailable or missing in B; with --measure instructions: "
                        "if any case counts more instructions per step by more than PCT%% "
                        f"(default {COUNT_FAIL_ABOVE_PCT:g}%%), or was counted in A and is "
                        "not in B")
    p.add_argument("--format", choices=compare.FORMATS, default="text",
                   help="text (default), md (a pull-request comment) or json")
    p.add_argument("--measure", choices=("time", "instructions"), default="time",
                   help="compare the per-step times (default) or the instructions per step "
                        "counted under Valgrind (run --measure instructions)")


def export_args(p: Parser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="results files or folders of them")
    p.add_argument("--format", choices=export.FORMATS, default="pytest-benchmark",
                   help="pytest-benchmark JSON (default; per-step times, iterations = K) or "
                        "csv (one row per case)")
    p.add_argument("--out", default="-", metavar="FILE", help="where to write (default: -, "
                   "standard output); an existing file is never overwritten without --force")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")


def list_args(p: Parser) -> None:
    p.add_argument("--check", action="store_true", help="import every framework to say "
                   "whether it really starts (slower)")


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    description: str
    examples: tuple[str, ...]
    arguments: Callable[[Parser], None]
    call: Callable[[argparse.Namespace], int]


COMMANDS = (
    Command("demo", "replay the worked example in every framework, side by side",
            "Train the 1-1-1 worked example (w_ih = 0.15, w_ho = 0.3, X = 1 -> Y = -1) with "
            "each framework's own forward and sgd_step, and show the output, loss and weights "
            "at chosen epochs, then what the trained network predicts for 0.4 and -200; then "
            "the same training by every variant's own Trainer (nn.Module, Flax, Keras, "
            "compiled, fused), with the gradients it computes its own way.",
            ("demo", "demo --framework numpy,jax --epochs 20 --lr 0.05"), demo_args,
            lambda a: timed_check(a, lambda: demo.command(a.framework, a.epochs,
                                                          validate_lr(a.lr), a.variants))),
    Command("check", "verify gradients against finite differences, the closed form, each other "
            "and a training trajectory; exit 1 on any disagreement",
            "Check each framework's loss and gradients, and each variant's own, against "
            "float64 finite differences of an independent forward pass, an exact float64 "
            "chain rule and the worked example's closed form (1-1-1), then train every "
            "variant N steps against the float64 reference trajectory. Each is judged on its "
            "own evidence (the median of the others is shown beside it); a failure is named "
            "in one line when it fits a known bug class. --impl checks your own backward pass "
            "the same way, --example a published worked example.",
            ("check", "check --widths 4,16,16,4 --activation tanh --bias --batch 5 --dtype "
             "float32,float64", "check --impl examples/learner_backprop.py",
             "check --example examples/mazur-2015.toml", "check --all"),
            check_args, lambda a: timed_check(a, lambda: check.command(
                networks_of(a), a.framework, a.variants, a.steps, a.device, a.workers,
                a.oversubscribe, a.include_all, a.impl, a.example, a.threads))),
    Command("run", "time the SGD update loop of every variant, check it, and write one JSON "
            "file of results",
            "Time and check every variant. The default is the worked example (1-1-1, float64) "
            "with every variant, and 16-16-16 and 256-256-256 tanh float32 batch 64 without "
            "the variants declared for the worked example only; --widths, --variants or "
            "--framework run exactly what they name.",
            ("run", "run --widths 1,1,1 512,512,512 --variants numpy,torch,jax,jax-scan",
             "run --measure instructions --widths 1,1,1 --variants numpy,torch,jax,jax-scan"),
            run_args, lambda a: timed.run(networks_of(a), timed_of(a))),
    Command("sweep", "time a grid of [d]*(depth+1) networks for the scaling story; write one "
            "JSON file of results",
            "Time a grid of square networks, sizes × depths × batches × dtypes, for the "
            "chosen variants, with the matmul peaks and the serial limit measured in the same "
            "run; --budget fits the plan to a number of seconds up front.",
            ("sweep --budget 120", "sweep --sizes 16,256,1024 --variants numpy,jax --dtype "
             "float32,float64"), sweep_args, sweep_call),
    Command("scale", "time the data-parallel variants on N = 1, 2, ... workers (strong and "
            "weak scaling), with the all-reduce alone and its model; write one JSON file",
            "Time each data-parallel variant on [d, d, d] tanh float32 networks at each number "
            "of workers: strong scaling (the global batch fixed), weak scaling (each worker's "
            "batch fixed) and one worker on B/N rows (the model's compute term), checked as "
            "in run; then the all-reduce alone from 4 bytes to the gradient's size, fitted as "
            "alpha + bytes/beta, so that the report can set step(N) = compute(B/N) + "
            "allreduce(gradient) beside the measurement.",
            ("scale --workers 1,2", "scale --workers 1,2,4 --sizes 256,1024 --scaling strong "
             "--variants torch-ddp"), scale_args, scale_call),
    Command("report", "build results/REPORT.md and its plots from stored results files "
            "(nothing is re-measured)",
            "Build a Markdown report and PNG plots from results files (folders are searched "
            "for *.json), merging machines; unreadable files are named and left out.",
            ("report", "report results/ gpu-results/ --out /tmp/report/REPORT.md"),
            report_args, lambda a: commands.report(a.paths, a.out, a.force, a.readme)),
    Command("compare", "compare two results files case by case, with a noise-aware verdict "
            "(Mann–Whitney U)",
            "Compare the per-step medians of the cases two results files share, with a "
            "significance test per case; --fail-above makes the exit status fail on a "
            "regression, for CI.",
            ("compare results/run-a.json results/run-b.json",
             "compare base.json new.json --fail-above 10",
             "compare base.json new.json --measure instructions"),
            compare_args, lambda a: commands.compare(a.a, a.b, a.fail_above, a.format,
                                                     a.measure)),
    Command("export", "convert results files to pytest-benchmark JSON or CSV",
            "Convert results files (folders are searched for *.json) into pytest-benchmark's "
            "JSON, one benchmark per ok case with per-step times, so that `pytest-benchmark "
            "compare` reads them; or into CSV, one row per case with the columns of the "
            "Python API's records().",
            ("export results/run-a.json --out run-a.pytest-benchmark.json",
             "export results/ --format csv --out cases.csv"),
            export_args, lambda a: commands.export(a.paths, a.format, a.out, a.force)),
    Command("list", "list the variants and whether they can run here",
            "List every registered variant with its framework, kind, devices and whether it "
            "can run here, from the packages and devices present (no framework is imported "
            "unless --check asks for it).", ("list", "list --check"), list_args,
            lambda a: commands.list_variants(a.check)),
)


def build_parser() -> Parser:
    p = Parser(prog=PROG, description="Are this framework's gradients right, and what does one "
               "training step really cost? The backprop worked example and wider MLPs in every "
               "registered framework: " + ", ".join(f.label for f in registry.FRAMEWORKS.values())
               + ".")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for c in COMMANDS:
        examples = "\n".join(f"  {PROG} {e}" for e in c.examples)
        s = sub.add_parser(c.name, help=c.help, description=f"{textwrap.fill(c.description, 79)}"
                           f"\n\nexamples:\n{examples}")
        c.arguments(s)
        s.set_defaults(call=c.call)
    return p


def interrupt(signum, frame):
    """SIGTERM (from `timeout`, a scheduler) ends a run like Ctrl-C: finished cases are kept."""
    raise KeyboardInterrupt


ASCII = {"×": "x", "µ": "u", "–": "-", "—": "-", "−": "-", "≥": ">=", "≤": "<=", "²": "^2",
         "ᵀ": "^T", "·": "*", "…": "...", "‖": "||", "φ": "phi", "∂": "d", "η": "eta",
         "→": "->", "½": "1/2", "≈": "~", "’": "'", "“": '"', "”": '"'}


def degrade(error: UnicodeEncodeError) -> tuple[str, int]:
    """What a stream that cannot encode a character writes instead: x for ×, us for µs..."""
    text = error.object[error.start:error.end]
    return "".join(ASCII.get(c, "?") for c in text), error.end


codecs.register_error("backprop-bench", degrade)


def plain_streams() -> None:
    """Let stdout and stderr degrade to ASCII where their encoding lacks a character, rather
    than raise (PYTHONIOENCODING=ascii, LC_ALL=C)."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="backprop-bench")
            except (ValueError, OSError):
                pass


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, interrupt)
    plain_streams()
    for problem in registry.PROBLEMS:  # a framework file that could not be read: said once
        print(f"{PROG}: warning: {problem}", file=sys.stderr)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        check_environment()
        if not getattr(args, "call", None):
            parser.print_help()
            return 2
        return args.call(args)
    except BenchError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (OutputClosed, BrokenPipeError) as exc:
        return output_closed(getattr(exc, "where", ""))


def output_closed(where: str) -> int:
    """Our stdout was closed by its reader (``| head``): one line on stderr, no traceback,
    and nothing more written to the pipe (not even at exit, when Python flushes stdout)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    said = f": {where}" if where else ""
    print(f"{PROG}: error: stdout was closed before the output was written{said}",
          file=sys.stderr)
    return EXIT_OUTPUT_CLOSED


if __name__ == "__main__":
    sys.exit(main())
