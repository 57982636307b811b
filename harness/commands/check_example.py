"""`check --example FILE`: a published worked example reproduced by every selected framework
and variant (``harness.check.example`` reads, runs and renders it)."""

from __future__ import annotations

import numpy as np

from harness.check import example as examples
from harness.check import example_file
from harness.check.evidence import Evidence, problem_json
from harness.check.judge import attempt
from harness.check.session import Selection, select, stderr
from harness.procs import isolated, messages
from implementations import registry
from implementations.problem import BenchError


def run_example(example: example_file.Example, selection: Selection, say) -> examples.Outcome:
    """Every selected framework's functions and variant's Trainer on the example."""
    outcome = examples.Outcome(example)
    for name, module in selection.modules.items():
        why = registry.main_variant(name).why_not(example.problem, "cpu")
        if why:
            outcome.notes.append(f"gradients: {why}; skipped")
            continue
        outcome_of(outcome, name, lambda m=module: examples.module_values(m, example))
    for v in selection.local:
        why = v.why_not(example.problem, "cpu")
        if why:
            outcome.notes.append(f"trajectory: {why}; skipped")
            continue
        outcome_of(outcome, v.name, lambda v=v: examples.trainer_values(v, example))
    for framework in dict.fromkeys(v.framework for v in selection.isolated):
        mine = [v for v in selection.isolated if v.framework == framework
                and not v.why_not(example.problem, "cpu")]
        for name, got in (isolated_values(mine, example, say, outcome.notes) if mine
                          else {}).items():
            if isinstance(got, str):
                outcome.notes.append(f"{name}: {got}; skipped")
            else:
                outcome.got[name] = got
    return outcome


def outcome_of(outcome: examples.Outcome, name: str, fn) -> None:
    """fn()'s Values under name, under the check's one error policy (``judge.attempt``: a
    crash, an exit or a run past --timeout is that subject's failure, said with its cause).
    A variant named as its framework (numpy, torch, jax) is one subject with it: its Trainer
    gives the weights and losses, the functions the rest."""
    ev = Evidence(name, outcome.example.path.name)
    values = attempt(ev, "example", fn)
    outcome.notes += ev.notes
    if ev.crashes:
        outcome.notes += [f"{name}: {reason}" for _, reason in ev.crashes]
        outcome.got[name] = examples.Values(crashed=True)
        return
    if values is None:
        return
    before = outcome.got.get(name)
    if before is not None and not before.crashed:
        before.loss.update(values.loss)
        before.weights.update(values.weights)
        values = before
    outcome.got[name] = values


def isolated_values(variants: list, example: example_file.Example, say,
                    notes: list[str]) -> dict:
    """The Trainers of a framework that needs a process of its own, through ``demo``'s
    replay: {variant: Values, or the reason it could not run}; a variant that failed there
    (crashed, ran past --timeout) is Values(crashed) with its reason in ``notes``."""
    afters = sorted({q.after for q in example.published} | {0})
    names = [v.name for v in variants]
    say(f"example: {', '.join(names)}, in a process of its own")
    try:
        answers = isolated.ask(messages.ReplayRequest(problem_json(example.problem), names,
                                                      afters))
    except BenchError as exc:
        return dict.fromkeys(names, str(exc))
    out = {}
    for name, answer in answers.items():
        if "unavailable" in answer:
            out[name] = answer["unavailable"]
        elif "failed" in answer:
            notes.append(f"{name}: {answer['failed']}")
            out[name] = examples.Values(crashed=True)
        else:
            out[name] = replayed(example.problem.spec, answer)
    return out


def replayed(spec, answer: dict) -> examples.Values:
    values = examples.Values()
    if answer.get("grads") is not None:
        values.grads = dict(zip(spec.param_names(), map(np.asarray, answer["grads"])))
    for after, E, params in answer["snapshots"]:
        values.loss[after] = float(E)
        values.weights[after] = examples.named(spec, [(np.asarray(W), None if b is None else
                                              np.asarray(b)) for W, b in params])
    return values


def example_command(path: str, frameworks, names, device: str, include_all: bool) -> int:
    """`check --example FILE`: 0 if every value is reproduced by every subject."""
    if device != "cpu":
        raise BenchError("--example runs on the CPU only")
    example = example_file.read_example(path)
    selection = select(frameworks, names, [example.problem], "cpu", include_all)
    outcome = run_example(example, selection, stderr)
    outcome.notes = selection.notes + outcome.notes
    print(examples.render(outcome))
    return 0 if outcome.passed else 1
