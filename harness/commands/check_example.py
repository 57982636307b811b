"""`check --example FILE`: a published worked example reproduced by every selected framework
and variant (``harness.check.example`` reads, runs and renders it)."""

from __future__ import annotations

from dataclasses import replace

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
    if not example.standard:
        outcome.notes.append("the Trainers update every bias of every unit on its own, so the "
                             "publication's shared or frozen tensors are followed by the "
                             "frameworks' functions only, the Trainers giving the start")
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
    if before is not None:
        if before.crashed:
            return  # its functions crashed: the subject failed, whatever its Trainer gives
        before.got.update(values.got)  # the Trainer's weights and losses beside the functions'
        values = before
    outcome.got[name] = values
    for what, why in values.unable.items():
        outcome.notes.append(f"{name} gives no {what.replace('_', ' ')} values ({why}); left "
                             f"to the others")


def isolated_values(variants: list, example: example_file.Example, say,
                    notes: list[str]) -> dict:
    """The Trainers of a framework that needs a process of its own, through ``demo``'s
    replay: {variant: Values, or the reason it could not run}; a variant that failed there
    (crashed, ran past --timeout) is Values(crashed) with its reason in ``notes``."""
    afters = sorted({q.after for q in example.published} | {0})
    names = [v.name for v in variants]
    say(f"example: {', '.join(names)}, in a process of its own")
    try:
        scaled = replace(example.problem, lr=example.problem.lr * example.scale)
        answers = isolated.ask(messages.ReplayRequest(problem_json(scaled), names, afters))
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
            out[name] = replayed(example, answer)
    return out


def replayed(example: example_file.Example, answer: dict) -> examples.Values:
    """A Trainer's replay from its process (its losses and weights at each step, its own
    gradients at the start) as the values it gives; like ``examples.trainer_values``, for a
    standard example only."""
    spec, values = example.problem.spec, examples.Values()
    if example.loss.of == "output":
        return values  # a Trainer's gradients are of its loss, not of the output itself
    grads = (dict(zip(spec.param_names(), map(np.asarray, answer["grads"])))
             if answer.get("grads") is not None else None)
    snapshots = {after: (float(E), examples.named(spec, [
        (np.asarray(W), None if b is None else np.asarray(b)) for W, b in params]))
        for after, E, params in answer["snapshots"]}
    for p in example.published:
        if p.after not in snapshots or p.sample is not None or (
                p.after and not example.standard):
            continue
        E, weights = snapshots[p.after]
        if p.what == "loss":
            values.put(p, example.scale * E)
        elif p.what == "weight":
            values.put(p, examples.as_published(example, weights)[p.tensor])
        elif p.what in ("gradient", "update") and p.after == 0 and grads is not None:
            g = examples.as_published(example, examples.shared_gradient(example, grads))
            lr = example.problem.lr if p.what == "update" else 1.0
            values.put(p, example.scale * lr * np.asarray(g[p.tensor]))
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
