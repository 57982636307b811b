"""Replay the worked example in every framework, side by side.

Each framework's own ``forward`` and ``sgd_step`` are called, epoch by epoch, on the 1-1-1
network (X = 1 -> Y = -1). At chosen epochs the table shows the output phi(a_o), the loss
and both weights before that epoch's update; at the end, what the trained network predicts
for 0.4 and -200 (it should have learned to invert its input).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np

from harness import PROG
from harness.check import session
from harness.check.evidence import problem_json
from harness.check.render import settings_line
from harness.commands import plans
from harness.commands.base import Command, note
from harness.commands.options import add_check_timeout, csv, with_check_timeout
from harness.measure.environment import apply_settings, default_threads
from harness.procs import isolated, messages
from harness.tables import text_table
from implementations import registry
from implementations.contract import Unavailable
from implementations.problem import (
    DEFAULT_LR,
    BenchError,
    NetworkSpec,
    Problem,
    cast_problem,
    make_problem,
    map_params,
    validate_lr,
)

PROBES = (0.4, -200.0)


@dataclass
class Snapshot:
    epoch: int
    output: float
    loss: float
    w_ih: float
    w_ho: float


def shown_epochs(epochs: int) -> list[int]:
    """0, 1, 2, 5, 10, 20, 50, ... up to and including ``epochs``."""
    shown, k = [0], 1
    while k < epochs:
        shown += [e for e in (k, 2 * k, 5 * k) if e < epochs]
        k *= 10
    return sorted(set(shown + [epochs]))


def replay(module, problem: Problem, epochs: int) -> tuple[list[Snapshot], list[float]]:
    """Train with the module's own functions; snapshots at shown epochs, then predictions."""
    net = problem.spec
    x, y, params = cast_problem(problem)
    fx, fy = module.to_framework(x), module.to_framework(y)
    p = map_params(lambda a: module.to_framework(a, trainable=True), params)
    show, snaps = set(shown_epochs(epochs)), []
    for epoch in range(epochs + 1):
        if epoch in show:
            snaps.append(snapshot(module, net, p, fx, fy, epoch))
        if epoch < epochs:
            p = module.sgd_step(net, p, fx, fy, problem.lr)
    probes = [scalar(module, module.forward(net, p, module.to_framework(np.full((1, 1), v,
                                                                               dtype=x.dtype))))
              for v in PROBES]
    return snaps, probes


def scalar(module, value) -> float:
    return float(np.asarray(module.to_numpy(value)).reshape(-1)[0])


def snapshot(module, net: NetworkSpec, params, x, y, epoch: int) -> Snapshot:
    (w_ih, _), (w_ho, _) = params
    return Snapshot(epoch, scalar(module, module.forward(net, params, x)),
                    scalar(module, module.loss(net, params, x, y)),
                    scalar(module, w_ih), scalar(module, w_ho))


def render(results: dict[str, tuple[list[Snapshot], list[float]]], lr: float) -> str:
    """The side-by-side tables for every framework that ran."""
    names = list(results)
    rows = []
    for i, snap in enumerate(results[names[0]][0]):
        for j, name in enumerate(names):
            s = results[name][0][i]
            rows.append([snap.epoch if j == 0 else "", name, f"{s.output:.10g}", f"{s.loss:.10g}",
                         f"{s.w_ih:.10g}", f"{s.w_ho:.10g}"])
    out = [f"The worked example: 1-1-1 linear network, X = 1 -> Y = -1, SGD with lr = {lr:g}",
           text_table(["epoch", "framework", "phi(a_o)", "E", "w_ih", "w_ho"], rows, "rllrrr")]
    probe_rows = [[name] + [f"{v:.8g}" for v in results[name][1]] for name in names]
    out.append("\nWhat the trained network predicts (it learns y = -x):")
    out.append(text_table(["framework"] + [f"x = {v:g}" for v in PROBES], probe_rows))
    with np.errstate(invalid="ignore"):
        spread = max_spread(results)
    out.append(f"\nLargest difference between frameworks at any shown value: {spread:.1e}")
    return "\n".join(out)


def diverged(results) -> list[str]:
    """The frameworks whose shown values or predictions are not finite."""
    return [name for name, (snaps, probes) in results.items()
            if not np.all(np.isfinite([[s.output, s.loss, s.w_ih, s.w_ho] for s in snaps]))
            or not np.all(np.isfinite(probes))]


def max_spread(results) -> float:
    table = np.array([[[s.output, s.loss, s.w_ih, s.w_ho] for s in snaps] + [probes + [0, 0]]
                      for snaps, probes in results.values()], dtype=float)
    return float(np.max(np.ptp(table, axis=0))) if len(results) > 1 else 0.0


# ---- every variant's Trainer on the worked example ----------------------------------------------

def replay_variants(variants: list, problem: Problem, epochs: list[int]) -> dict:
    """{variant: ([[epoch, E, params], ...] of its own Trainer at the given epochs, its own
    (dE/dw_ih, dE/dw_ho) at the start or None) or the reason it could not run}, for the
    variants of one framework: in a process of their own where the framework needs one."""

    names = [v.name for v in variants]
    request = messages.ReplayRequest(problem_json(problem), names, epochs)
    if registry.FRAMEWORKS[variants[0].framework].isolated:
        answers = isolated.ask(request)
    else:
        answers = {n: isolated.serve(request, n) for n in names}
    return {name: answer.get("unavailable") or answer.get("failed") or unpack(answer)
            for name, answer in answers.items()}


def unpack(answer: dict) -> tuple[list[list], tuple | None]:
    grads = answer.get("grads")
    snaps = [[e, E, [(np.array(W), None if b is None else np.array(b)) for W, b in p]]
             for e, E, p in answer["snapshots"]]
    return snaps, None if grads is None else tuple(float(np.ravel(g)[0]) for g in grads)


def trainer_rows(name: str, snapshots: list[list], gradients) -> list[list]:
    rows = []
    for i, (epoch, E, params) in enumerate(snapshots):
        (w_ih, _), (w_ho, _) = params
        grads = (f"{gradients[0]:.10g}, {gradients[1]:.10g}"
                 if gradients is not None and i == 0 else "")
        rows.append([name if i == 0 else "", epoch, f"{float(E):.10g}",
                     f"{float(np.asarray(w_ih).reshape(-1)[0]):.15g}",
                     f"{float(np.asarray(w_ho).reshape(-1)[0]):.15g}", grads])
    return rows


def render_trainers(table: dict[str, tuple[list[list], tuple | None]]) -> str:
    """Every variant's Trainer: E and the weights at the first, second and last epochs, and
    its own gradients at the start where it computes them its own way."""
    rows = [row for name, (snaps, grads) in table.items() for row in trainer_rows(name, snaps,
                                                                                    grads)]
    return ("\nThe same training run by every variant's own Trainer (nn.Module, Flax, Keras, "
            "compiled, fused, ...):\n"
            + text_table(["variant", "epoch", "E", "w_ih", "w_ho", "own dE/dw_ih, dE/dw_ho"],
                         rows, "lrrrrl"))


# ---- the command ----------------------------------------------------------------------------

def command(frameworks: tuple[str, ...] | None, epochs: int, lr: float,
         variant_names: tuple[str, ...] | None = None) -> int:
    if epochs < 0:
        raise BenchError(f"--epochs {epochs} must be 0 or more")
    problem = make_problem(lr=lr)
    notes: list[str] = []
    modules = session.gradient_modules(frameworks, notes, asked=frameworks is not None)
    settings, failed = apply_settings(modules, default_threads())
    for text in notes + failed:
        note(text)
    with np.errstate(all="ignore"):  # a diverging lr is reported below, not as warnings
        results = {name: replay(m, problem, epochs) for name, m in modules.items()}
        if results:
            print(render(results, lr))
        trainers = demo_trainers(problem, epochs, frameworks, variant_names, settings)
    if not (results or trainers):
        raise BenchError("no framework is available: " + "; ".join(notes))
    if trainers:
        print(render_trainers(trainers))
    print(f"\n{settings_line(settings)}")
    bad = diverged(results) + [n for n, (snaps, _) in trainers.items()
                               if not np.isfinite(float(snaps[-1][1]))]
    if bad:
        print(f"{PROG}: error: training diverged (non-finite loss or weights) with lr {lr:g} "
              f"in {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


def demo_trainers(problem, epochs: int, frameworks, variant_names,
                  settings: dict | None = None) -> dict:
    """{variant: (snapshots at 0, 1 and the last epoch, its own gradients or None)} for every
    variant that runs the worked example here (a variant asked for by name must). A variant
    whose cold build takes minutes joins only if it is built already, or asked for by name;
    each framework run here gets its settings first (into ``settings``)."""
    default = [v for v in registry.VARIANTS.values()
               if frameworks is None or v.framework in frameworks]
    variants, explicit = plans.variants(variant_names, None, default)
    for v in variants:
        if explicit and v.why_not(problem, "cpu"):
            raise BenchError(f"{v.name}: {v.why_not(problem, 'cpu')}")
    runnable = [v for v in variants if not v.why_not(problem, "cpu")]
    if not explicit:
        runnable, slow = session.split_slow(runnable, [problem], "cpu")
        if slow:
            note(session.left_out_note(slow).replace("'check --all' includes them (or name "
                                                     "them with --variants)",
                                                     "name them with --variants"))
    out = {}
    for framework in dict.fromkeys(v.framework for v in runnable):
        mine = [v for v in runnable if v.framework == framework]
        if settings is not None and not registry.FRAMEWORKS[framework].isolated:
            applied, notes = apply_settings([framework], default_threads())
            settings.update({k: v for k, v in applied.items() if k != "pinning"})
            for text in notes:
                note(text)
        print(f"demo: {', '.join(v.name for v in mine)}", file=sys.stderr)
        for name, got in replay_variants(mine, problem,
                                                sorted({0, min(1, epochs), epochs})).items():
            if isinstance(got, str):  # the reason it could not run
                if explicit:
                    raise Unavailable(got)
                note(got)
            else:
                out[name] = got
    return out


# ---- the subcommand -------------------------------------------------------------------------

def demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--framework", type=csv, metavar="F,F",
                   help="comma list (default: every available one)")
    p.add_argument("--variants", type=csv, metavar="V,V", help="comma list of variants whose "
                   "Trainers replay it too (default: every variant of the frameworks shown)")
    p.add_argument("--epochs", type=int, default=100, help="SGD steps (default: 100)")
    p.add_argument("--lr", default=str(DEFAULT_LR), help=f"learning rate (default: {DEFAULT_LR})")
    add_check_timeout(p)


COMMAND = Command(
    "demo", "replay the worked example in every framework, side by side",
    "Train the 1-1-1 worked example (w_ih = 0.15, w_ho = 0.3, X = 1 -> Y = -1) with "
    "each framework's own forward and sgd_step, and show the output, loss and weights "
    "at chosen epochs, then what the trained network predicts for 0.4 and -200; then "
    "the same training by every variant's own Trainer (nn.Module, Flax, Keras, "
    "compiled, fused), with the gradients it computes its own way.",
    ("demo", "demo --framework numpy,jax --epochs 20 --lr 0.05"), demo_args,
    lambda a: with_check_timeout(a, lambda: command(a.framework, a.epochs,
                                                  validate_lr(a.lr), a.variants)))
