"""`backprop-bench check`: are the gradients right? The command's part: its arguments, the
networks, the fan-out to processes of their own, and the printing. The check itself, from the
selection to the verdict, is ``harness.check.session``; a learner's file and the isolated
frameworks run in processes of their own (``harness.procs.isolated.elsewhere``).

``check --example`` reproduces a published worked example (``harness.commands.check_example``);
``check --workers`` checks the data-parallel variants (``harness.commands.check_workers``).
"""

from __future__ import annotations

import argparse

from harness.check import learner as learners
from harness.check import session
from harness.check.render import render
from harness.commands import check_workers, plans, scale
from harness.commands.base import Command, require_device
from harness.commands.check_example import example_command
from harness.commands.options import (
    add_check_timeout,
    add_networks,
    add_selection,
    device,
    networks_of,
    positive,
    with_check_timeout,
)
from harness.measure.environment import default_threads
from harness.procs import isolated
from implementations.problem import BenchError

DEFAULT_STEPS = 100


def command(networks: plans.Networks, frameworks: tuple[str, ...] | None,
            variant_names: tuple[str, ...] | None, steps: int | None, device: str,
            workers: int | None = None, oversubscribe: bool = False, include_all: bool = False,
            impl: str | None = None, example: str | None = None,
            threads: int | None = None) -> int:
    """`check`: 0 if every subject passed on its own evidence, 1 if one failed."""
    refuse_what_cannot_be_honoured(networks, steps, workers, impl, example)
    steps = DEFAULT_STEPS if steps is None else steps
    if steps <= 0:
        raise BenchError(f"--steps {steps} must be 1 or more")
    if example is not None:
        return example_command(example, frameworks, variant_names, device, include_all)
    if workers is not None:  # the data-parallel variants, each in a fresh process
        scale.allow_oversubscribe(oversubscribe)
        require_device(device)
        return check_workers.command(networks, frameworks, variant_names, steps, device, workers)
    learner = learners.read_learner(impl) if impl is not None else None
    problems = plans.check_problems(networks, learner and learner.activation,
                                    learner and learner.bias,
                                    learner and learner.output_activation)
    require_device(device)
    if learner is not None and device != "cpu":
        raise BenchError(f"--impl runs on the CPU only, not on {device}")
    selection = session.select(frameworks, variant_names, problems, device, include_all,
                               learner)
    usable = default_threads()
    if threads is not None and threads > usable:
        raise BenchError(f"--threads {threads}: only {usable} cores are usable here")
    report = session.check(problems, selection, steps, device, threads or usable,
                           elsewhere=isolated.elsewhere)
    print(render(report, problems, steps))
    return 0 if report.passed else 1


NETWORK_FLAGS = (("widths", "--widths"), ("activation", "--activation"), ("bias", "--bias"),
                 ("dtypes", "--dtype"), ("batch", "--batch"), ("lr", "--lr"))


def refuse_what_cannot_be_honoured(networks: plans.Networks, steps: int | None,
                                   workers: int | None, impl: str | None,
                                   example: str | None) -> None:
    """One line for an option the check asked for cannot honour, never a silent ignore."""
    if impl is not None and example is not None:
        raise BenchError("--impl and --example are two checks: give one of them")
    if impl is not None and workers is not None:
        raise BenchError("--impl checks a learner's file on one worker: --workers checks the "
                         "data-parallel variants; give one of them")
    if example is not None:
        given = [flag for field, flag in NETWORK_FLAGS if getattr(networks, field) is not None]
        given += ["--output-activation"] if networks.output_activation != "linear" else []
        given += ["--seed"] if networks.seed else []
        given += ["--steps"] if steps is not None else []
        given += ["--workers"] if workers is not None else []
        if given:
            raise BenchError(f"--example brings its own network, data, learning rate and "
                             f"steps: {', '.join(given)} cannot be applied to it")


# ---- the subcommand -------------------------------------------------------------------------

def check_args(p: argparse.ArgumentParser) -> None:
    add_networks(p, "default: the worked example (1-1-1 linear, batch 1, float64), 3-4-4-3 "
                 "tanh with bias, batch 5, float64 and float32, and 3-4-4-3 relu hidden layers "
                 "under a sigmoid output, with bias, batch 5, float64, lr 0.056: together they "
                 "catch the classic backprop bugs (a dropped 1/batch, a missing 1/2, W for "
                 "W^T, a wrong derivative, ...) and tell their factors apart; --activation, "
                 "--bias/--no-bias and --batch change all of them; --widths networks take "
                 "batch 5 (1-1-1: batch 1) unless --batch is given")
    add_selection(p, "every variant of the frameworks checked, but those whose cold build "
                  "takes minutes and is not cached yet (said in the output; --all includes "
                  "them); with --variants, those variants and their frameworks' gradient "
                  "functions")
    p.add_argument("--all", dest="include_all", action="store_true",
                   help="also the variants whose cold build takes minutes (torch-loop, the "
                        "torch.compile blocks), building them where they are not cached")
    p.add_argument("--impl", metavar="FILE.py",
                   help="also check your own backward pass: a file defining grads(params, x, "
                        "y) -> (E, grads) and optionally sgd_step(params, x, y, lr), trace("
                        "params, x, y) (each layer's intermediates: the first wrong one is "
                        "named), ACTIVATION, OUTPUT_ACTIVATION, BIAS and FRAMEWORK (numpy, "
                        "torch or jax arrays); it runs in a process of its own under --timeout "
                        "(see examples/learner_backprop.py)")
    p.add_argument("--example", metavar="FILE",
                   help="check a published worked example instead (TOML or JSON: network, "
                        "weights, data, and the values printed; see examples/): every "
                        "framework must reproduce it to the printed digits")
    p.add_argument("--steps", type=int, help=f"trajectory length (default: {DEFAULT_STEPS}; a "
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


COMMAND = Command(
    "check", "verify gradients against finite differences, the closed form, each other "
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
    check_args, lambda a: with_check_timeout(a, lambda: command(
        networks_of(a), a.framework, a.variants, a.steps, a.device, a.workers,
        a.oversubscribe, a.include_all, a.impl, a.example, a.threads)))
