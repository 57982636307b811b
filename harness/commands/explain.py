"""`backprop-bench explain`: one training step of a small network, every number written out
with its formula, as the worked example does by hand (``harness.check.explain``): the
learner's answer key, and the reference that `check --impl` holds a learner's file to."""

from __future__ import annotations

import argparse

from harness.check import example_file
from harness.check.explain import explain
from harness.commands import plans
from harness.commands.base import Command
from harness.commands.options import add_networks, networks_of
from implementations.problem import BenchError


def command(networks: plans.Networks, example: str | None) -> int:
    if example is not None:
        given = [flag for field, flag in (("widths", "--widths"), ("activation", "--activation"),
                                          ("bias", "--bias"), ("batch", "--batch"),
                                          ("lr", "--lr"), ("dtypes", "--dtype"))
                 if getattr(networks, field) is not None]
        if given:
            raise BenchError(f"--example brings its own network, data and learning rate: "
                             f"{', '.join(given)} cannot be applied to it")
        ex = example_file.read_example(example)
        if ex.loss.of == "output":
            raise BenchError(f"{ex.path.name} differentiates the output itself: it takes no "
                             f"training step to explain")
        print(explain(ex.problem, ex.convention, ex.shared, ex.frozen))
        return 0
    if networks.dtypes not in (None, ("float64",)):
        raise BenchError("explain works in float64: the hand calculation is exact to its digits")
    widths = networks.widths or ((1, 1, 1),)
    if len(widths) > 1:
        raise BenchError("explain writes out one network: give one --widths")
    batch = networks.batch if networks.batch is not None else 1
    problem = plans.problem(widths[0], networks.activation or "linear",
                            networks.output_activation, bool(networks.bias), "float64", batch,
                            networks.lr, networks.seed)
    print(explain(problem))
    return 0


def explain_args(p: argparse.ArgumentParser) -> None:
    add_networks(p, "default: the worked example, 1-1-1 linear, X = 1 -> Y = -1, lr 0.1; "
                 "widths up to 6 and a batch up to 4 (batch 1 unless --batch)")
    p.add_argument("--example", metavar="FILE",
                   help="the network, start, data and learning rate of a published worked "
                        "example (TOML or JSON, as check --example reads it), in its own "
                        "loss convention")


COMMAND = Command(
    "explain", "write out one training step by hand: every net input, output, delta, "
    "gradient and updated weight, with its formula (the learner's answer key)",
    "One SGD step of a small network, the way the worked example does it by hand: the "
    "forward pass unit by unit (a = h W + b, h = phi(a)), the loss, the backward pass "
    "(delta = dE/da, dE/dW = h delta, dE/db = delta), and the update W - lr dE/dW, with the "
    "numbers that go into each, from the float64 chain rule that check holds every "
    "framework and learner to.",
    ("explain", "explain --widths 2,2,2 --activation sigmoid --bias",
     "explain --example examples/mazur-2015.toml"),
    explain_args, lambda a: command(networks_of(a), a.example))
