"""What a `check` runs (step 1 of ``harness.commands.check``): the gradient modules, the
variants here and in processes of their own, the learner, and which slow builds are left out."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from types import ModuleType

from harness.check.learner import Learner
from harness.commands import plans
from implementations import registry
from implementations.contract import Unavailable, Variant
from implementations.problem import BenchError, Problem

SLOW_BUILD_S = 10.0  # a variant that compiles for longer on a cold cache is left out by default


def stderr(text: str) -> None:
    print(text, file=sys.stderr)


@dataclass
class Selection:
    """What a check runs: gradient modules here, variants (here or isolated), the learner."""

    modules: dict[str, ModuleType] = field(default_factory=dict)
    variants: list[Variant] = field(default_factory=list)
    learner: Learner | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def local(self) -> list[Variant]:
        return [v for v in self.variants if not registry.FRAMEWORKS[v.framework].isolated]

    @property
    def isolated(self) -> list[Variant]:
        return [v for v in self.variants if registry.FRAMEWORKS[v.framework].isolated]


def gradient_modules(frameworks: tuple[str, ...] | None, notes: list[str]) -> dict:
    """The gradient modules of the frameworks asked for (all by default). Asked-for but
    missing is an error; missing from the default set is a note."""
    if frameworks == ():
        raise BenchError("--framework is empty: name at least one framework")
    names = frameworks or [n for n, f in registry.FRAMEWORKS.items() if f.gradients]
    modules = {}
    for name in names:
        fw = registry.get_framework(name)
        if not fw.gradients:
            if frameworks and not registry.variants_of(name):
                raise BenchError(f"{name} declares no variant to check")
            continue
        try:
            modules[name] = registry.import_module(name)
        except Unavailable as exc:
            if frameworks:
                raise
            notes.append(str(exc))
    return modules


def select(frameworks: tuple[str, ...] | None, names: tuple[str, ...] | None,
           problems: list[Problem], device: str, include_all: bool = False,
           learner: Learner | None = None) -> Selection:
    """The subjects of a check (step 1 of the module docstring)."""
    sel = Selection(learner=learner)
    sel.modules = gradient_modules(frameworks, sel.notes)
    chosen = frameworks if frameworks else None
    default = [v for v in registry.VARIANTS.values() if not v.distributed and (
        v.framework in sel.modules or (chosen is None and not registry.FRAMEWORKS[
            v.framework].gradients) or (chosen is not None and v.framework in chosen))]
    variants, explicit = plans.variants(names, None, default)
    sel.notes += [f"{v.name} is data-parallel: 'check --workers N' checks it; skipped"
                  for v in variants if v.distributed]
    variants = [v for v in variants if not v.distributed]
    for v in variants if explicit else []:
        reasons = [v.why_not(p, device) for p in problems]
        if all(reasons):
            raise BenchError(f"variant {v.name} cannot run any case asked for: {reasons[0]}")
    if not (explicit or include_all):
        variants, slow = split_slow(variants, problems, device)
        if slow:
            sel.notes.append(left_out_note(slow))
    sel.variants = variants
    if not (sel.modules or sel.variants or learner):
        raise BenchError("no framework is available: " + "; ".join(sel.notes))
    return sel


def split_slow(variants: list[Variant], problems: list[Problem], device: str
               ) -> tuple[list[Variant], list[Variant]]:
    """(kept, left out): a slow-building variant is kept only if built for every problem."""
    kept, slow = [], []
    for v in variants:
        if v.build_s < SLOW_BUILD_S or all(built(v, p, device) for p in problems
                                           if not v.why_not(p, device)):
            kept.append(v)
        else:
            slow.append(v)
    return kept, slow


def built(v: Variant, problem: Problem, device: str) -> bool:
    """Whether the variant's module says its compiled code for this problem is cached."""
    try:
        module = registry.import_module(v.framework)
    except Unavailable:
        return True  # kept, to be reported unavailable with its reason
    ask = getattr(module, "built", None)
    return bool(ask and ask(v, problem, device))


def left_out_note(slow: list[Variant]) -> str:
    low, high = min(v.build_s for v in slow), max(v.build_s for v in slow)
    span = duration(low) if low == high else f"{duration(low)} to {duration(high)}"
    return (f"left out: {', '.join(v.name for v in slow)}: each compiles for about {span} "
            f"here on a cold cache and is not built for these networks yet; 'check --all' "
            f"includes them (or name them with --variants)")


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
