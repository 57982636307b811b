"""Are the gradients right? Every subject against independent references, each on its own.

Imports ``harness.measure`` and ``harness.tables``, and ``implementations``: the layer above
``measure``, below ``record``.

A *subject* is a framework's gradient functions, a variant's Trainer, or a learner's file
(``check --impl``). References, all float64 and computed from the problem's parameters as
rounded to the dtype under test:

* **finite differences** of an independent forward pass (``reference``);
* **exact**: the chain rule written once more in the harness, itself held to the finite
  differences on every problem;
* **closed form**: the worked example's formulas, for the linear 1-1-1 network;
* **trajectory**: each variant's Trainer trained N steps (a block variant more, so that its
  compiled block runs twice and then a remainder), against the exact SGD trajectory;
* **the others**: the median of the other subjects that passed, shown beside but deciding
  nothing: a subject fails on its own evidence only (``judge``).

A failing subject is diagnosed in one line when it fits a known bug class (``diagnose``, and
``diagnose_trajectory`` for a wrong trajectory).

The modules, each importing only those before it: ``deadline``; ``report`` (rows, the
verdict's data, crash lines); ``evidence`` (what a subject computed, before any judging, and
its JSON between processes); ``reference``; ``diagnose``; ``diagnose_trajectory``; ``judge``
(the one error policy, and evidence into rows); ``workers`` (the rules of ``check
--workers``); ``learner`` (a learner's file: its declarations read here, its code run in a
process of its own); ``trace`` (where a learner's backward pass first goes wrong, in the
worked example's notation); ``session`` (a whole check: select, settle, collect, judge);
``render``; ``explain`` (one step written out by hand: the answer key); ``example_file`` and
``example`` (a published worked example).
"""

from harness.check.judge import (
    check_gradients,
    check_trajectory,
    compare_to_reference,
    framework_loss_and_gradients,
    judge_evidence,
    judge_gradients,
    steps_for,
    trajectory_errors,
    trajectory_tolerances,
)
from harness.check.reference import (
    FD_MAX_ENTRIES,
    closed_form,
    exact_gradient,
    finite_differences,
    normalised_errors,
    reference_loss,
    reference_trajectory,
    rounded_start,
)
from harness.check.render import render
from harness.check.report import TOLERANCES, Report, Row, Tolerances, crash_reason, label

__all__ = [
    "FD_MAX_ENTRIES", "TOLERANCES", "Report", "Row", "Tolerances", "check_gradients",
    "check_trajectory", "closed_form", "compare_to_reference", "crash_reason", "exact_gradient",
    "finite_differences", "framework_loss_and_gradients", "judge_evidence", "judge_gradients",
    "label",
    "normalised_errors", "reference_loss", "reference_trajectory", "render", "rounded_start",
    "steps_for", "trajectory_errors", "trajectory_tolerances",
]
