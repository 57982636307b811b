"""Name a failure in one line when it fits a known class of backprop bug.

A failing subject's numbers are tested against the usual mistakes, in this order, and the
first class that fits is said with its evidence:

* **shapes**: a gradient missing, transposed, or shaped like another tensor;
* **a constant factor** on every gradient (or on some of them): 2 or 1/2 (the 1/2 of E),
  the batch (a sum where the mean belongs), 1/out width (a mean over the outputs too), -1
  (the sign), and their products;
* **a known wrong backward pass**, rebuilt with the reference's chain rule and compared: W
  where W^T belongs, the hidden activation's derivative missing or taken at h, phi where phi'
  belongs, another activation's formula;
* **per tensor**: a zero gradient, a transposed one, another tensor's gradient, the
  activations or dE/da of the wrong layer;
* **an activation derivative** that is wrong in no known way: the output layer is right and
  the hidden ones are off by a ratio that varies with the pre-activation;
* for trajectories (``harness.check.diagnose_trajectory``).

Where none fits, it says so; the caller prints the per-tensor errors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from harness.check.reference import (
    Trace,
    backward,
    dphi,
    normalised_errors,
)
from harness.check.report import TOLERANCES
from implementations.problem import Problem

FIT = {"float64": 1e-6, "float32": 1e-2}  # how close a candidate must come to count as fitting


def fits(got: np.ndarray, want: np.ndarray, dtype: str) -> bool:
    return normalised_errors([got], [want])[0] <= FIT[dtype]


def shape_text(shape: tuple) -> str:
    return "(" + ", ".join(map(str, shape)) + (",)" if len(shape) == 1 else ")")


# ---- constant factors ------------------------------------------------------------------------

def factors(batch: int, out: int) -> list[tuple[float, str, list[str]]]:
    """(value, '= ...', causes) for s * 2^i * batch^j * out^k, simplest first; where two
    products are the same number (a batch of 2), both readings are given."""
    terms = [(i, j, k) for i in (0, 1, -1) for j in (0, 1, -1) for k in (0, -1, 1)
             if not (j and batch == 1) and not (k and out == 1)]
    terms.sort(key=lambda t: (sum(map(abs, t)), t[0] == 0, t[1] == 0))  # 2, then batch, out
    by_value: dict[float, list] = {}
    for sign in (1, -1):
        for i, j, k in terms:
            if (sign, i, j, k) == (1, 0, 0, 0):
                continue
            value = sign * 2.0 ** i * batch ** j * out ** k
            if abs(value - 1.0) < 1e-12:  # 2 × 1/batch 2 is no factor at all
                continue
            by_value.setdefault(round(value, 12), []).append(
                (value, equals(sign, i, j, k, batch, out), causes(sign, i, j, k),
                 sum(map(abs, (i, j, k)))))
    table = []
    for readings in by_value.values():
        value, eq, why, parts = readings[0]
        for _, other_eq, other_why, other_parts in readings[1:2]:
            if other_parts == parts:  # as simple a reading: say both
                eq = f"{eq}, or {other_eq[2:]}"
                why = ["; ".join(why) + " (or " + "; ".join(other_why) + ")"]
        table.append((value, eq, why))
    return table


def equals(sign: int, i: int, j: int, k: int, batch: int, out: int) -> str:
    parts = [{1: "2", -1: "1/2"}.get(i), {1: f"batch {batch}", -1: f"1/batch {batch}"}.get(j),
             {1: f"out width {out}", -1: f"1/out width {out}"}.get(k)]
    text = " × ".join(p for p in parts if p) or "1"
    return "= " + ("-" if sign < 0 else "") + text


def causes(sign: int, i: int, j: int, k: int) -> list[str]:
    said = [{1: "the 1/2 of E is missing from the gradient (the square's 2 is not cancelled)",
             -1: "a 1/2 too many (the square's 2 cancelled twice)"}.get(i),
            {1: "the mean over the batch lacks its 1/batch (a sum over the batch)",
             -1: "the mean over the batch is divided by the batch once too often"}.get(j),
            {-1: "the loss is averaged over the outputs as well as the batch (a mean over "
                 "batch × out elements, like MSELoss's default)",
             1: "the gradient is multiplied by the out width"}.get(k),
            "the sign is flipped (the step climbs the loss)" if sign < 0 else None]
    return [s for s in said if s]


def name_factor(c: float, problem: Problem) -> tuple[str, str] | None:
    """('= batch 5', 'the mean over the batch lacks its 1/batch') for a known factor c."""
    if not math.isfinite(c) or c == 0:
        return None
    for value, eq, why in factors(problem.batch, problem.spec.widths[-1]):
        if abs(c - value) <= 1e-3 * abs(value):
            return eq, "; ".join(why)
    return None


def fitted_factor(got: Sequence[np.ndarray], want: Sequence[np.ndarray]) -> float:
    """The c that makes c * want closest to got, in the least-squares sense."""
    num = sum(float(np.vdot(g, w)) for g, w in zip(got, want))
    den = sum(float(np.vdot(w, w)) for w in want)
    return num / den if den > 0 else math.nan


def factor_line(tensors: list[str], c: float, problem: Problem, every: bool) -> str:
    named = name_factor(c, problem)
    which = "every gradient is" if every else f"{', '.join(tensors)} " + (
        "is" if len(tensors) == 1 else "are")
    if named is None:
        return f"{which} {c:.3g}× the reference (a constant factor of no known cause)"
    eq, why = named
    return f"{which} {c:.2f}× the reference ({eq}): {why}"


# ---- the gradient at the start ---------------------------------------------------------------

def gradient(problem: Problem, start: list[np.ndarray], trace: Trace, loss: float,
             got: list, terms: str = "", intermediates: list[dict] | None = None) -> list[str]:
    """The diagnosis of a subject's (E, flat gradients) at the start; [] if nothing fits."""
    names, want, dtype = problem.spec.param_names(), trace.grads, problem.spec.dtype
    shapes = shape_lines(names, got, want)
    if shapes:
        return [merged(shapes)]
    got = [np.asarray(g, dtype=np.float64) for g in got]
    bad = [n for n, g in zip(names, got) if not np.all(np.isfinite(g))]
    if bad:
        return [f"{', '.join(bad)}: the gradient is not finite (nan or inf)"]
    errors = normalised_errors(got, want)
    wrong = [i for i, e in enumerate(errors) if e > TOLERANCES[dtype].exact]
    if not wrong:
        return loss_line(problem, loss, trace.loss)
    lines = (whole_factor(problem, got, want, loss, trace.loss, len(wrong) == len(names))
             or wrong_backward(problem, start, got, trace)
             or per_tensor(problem, got, want, trace, wrong)
             or bad_derivative(problem, got, want, wrong))
    return [merged(lines)] if lines else []


def merged(lines: list[str]) -> str:
    """Lines that give the same cause said once: "W1's gradient is W3's, b1's is b3's: ..."."""
    causes: dict[str, list[str]] = {}
    for line in lines:
        head, _, cause = line.rpartition(": ")
        causes.setdefault(cause if head else line, []).append(head)
    out = []
    for cause, heads in causes.items():
        heads = [h for h in heads if h]
        if not heads:
            out.append(cause)
            continue
        tail = [h.replace("'s gradient is ", "'s is ", 1) for h in heads[1:]]
        out.append(f"{', '.join([heads[0], *tail])}: {cause}")
    return "; ".join(out)


def shape_lines(names: list[str], got: list, want: list[np.ndarray]) -> list[str]:
    """What is wrong with gradients that are missing or misshapen (the values say which
    other tensor's gradient sits in the wrong place, when one does)."""
    out = []
    for name, g, w in zip(names, got, want):
        if g is None:
            out.append(f"{name}'s gradient is missing: None (requires_grad off, or the tensor "
                       f"left out of the graph: frozen)")
            continue
        shape = np.shape(g)
        if shape == w.shape:
            continue
        g = np.asarray(g, dtype=np.float64)
        same = [n for n, o in zip(names, want) if n != name and o.shape == shape
                and normalised_errors([g], [o])[0] <= FIT["float32"]]
        if same:
            out.append(f"{name}'s gradient is {same[0]}'s (shape {shape_text(shape)}): the "
                       f"gradient of another layer")
        elif len(w.shape) == 2 and shape == w.shape[::-1]:
            out.append(f"{name}'s gradient is transposed: shape {shape_text(shape)}, {name} is "
                       f"{shape_text(w.shape)}")
        else:
            out.append(f"{name}'s gradient has shape {shape_text(shape)}, {name} is "
                       f"{shape_text(w.shape)}")
    if len(got) != len(want):
        out.append(f"{len(got)} gradient tensors for the {len(want)} parameters "
                   f"({', '.join(names)})")
    return out


SHAPE_WORDS = ("shape", "mismatch", "broadcast", "size of tensor", "dimension")


def crash(reason: str) -> list[str]:
    """A crash explained where its message says the shapes do not fit."""
    if any(w in reason.lower() for w in SHAPE_WORDS):
        return ["the shapes do not fit: a matrix is used where its transpose belongs, or the "
                "activations or gradient of another layer"]
    return []


def loss_line(problem: Problem, loss: float, want: float) -> list[str]:
    if math.isfinite(loss) and abs(loss - want) <= 1e-6 * max(abs(want), 1e-300):
        return []
    c = loss / want if want else math.nan
    named = name_factor(c, problem)
    if named is None:
        return [f"the gradients are right but E is {c:.3g}× the reference loss"]
    return [f"the gradients are right but E is {c:.2f}× the reference loss ({named[0]}): "
            f"{named[1]}"]


def whole_factor(problem: Problem, got: list, want: list, loss: float, want_loss: float,
                 every: bool) -> list[str]:
    """Every wrong tensor off by one constant factor (and the others right)."""
    names, dtype = problem.spec.param_names(), problem.spec.dtype
    errors = normalised_errors(got, want)
    wrong = [i for i, e in enumerate(errors) if e > TOLERANCES[dtype].exact]
    c = fitted_factor([got[i] for i in wrong], [want[i] for i in wrong])
    if not math.isfinite(c) or abs(c) < 1e-9 or not all(fits(got[i], c * want[i], dtype)
                                                        for i in wrong):
        return []  # zero is no factor: per_tensor names a zero gradient
    line = factor_line([names[i] for i in wrong], c, problem, every)
    if every and want_loss and abs(loss / want_loss - c) <= 1e-3 * abs(c):
        line = line.replace(" the reference (", " the reference, and so is E (", 1)
    return [line]


def derivative_variants(act: str) -> list[tuple[str, object]]:
    """(what is wrong, phi' as the bug computes it from (a, h)) for a hidden activation."""
    if act == "linear":
        return []
    right = act
    out = [(f"the derivative of {act} is missing from the backward pass (phi' taken as 1)",
            lambda a, h: np.ones_like(a)),
           (f"{act}' is evaluated at h = {act}(a) instead of at a",
            lambda a, h: dphi(right, h)),
           (f"{act}(a) is used where its derivative belongs", lambda a, h: h)]
    if act == "tanh":
        out += [("1 - h is used where tanh' = 1 - h² belongs", lambda a, h: 1.0 - h),
                ("sigmoid's derivative h(1 - h) is used for tanh", lambda a, h: h * (1.0 - h))]
    if act == "sigmoid":
        out += [("tanh's derivative 1 - h² is used for sigmoid", lambda a, h: 1.0 - h * h)]
    if act == "relu":
        out += [("relu' is taken as 1 everywhere (the a > 0 mask is missing)",
                 lambda a, h: np.ones_like(a))]
    return out


def wrong_backward(problem: Problem, start: list, got: list, trace: Trace) -> list[str]:
    """A known wrong backward pass, rebuilt and compared with what the subject computed."""
    spec, dtype = problem.spec, problem.spec.dtype
    candidates = []
    for l in range(1, spec.depth):  # dE/dh is carried down through layers 1..depth-1
        W = start[spec.param_names().index(f"W{l + 1}")]
        if W.shape[0] == W.shape[1]:
            candidates.append((f"dE/dh is carried down through W{l + 1} where W{l + 1}ᵀ "
                               f"belongs (a transposed matrix in the backward pass)",
                               dict(untransposed=frozenset({l}))))
    if spec.depth > 1:
        for what, fn in derivative_variants(spec.activation):
            candidates.append((what, dict(derivative=lambda act, a, h, fn=fn: fn(a, h))))
    for what, kwargs in candidates:
        mutant = backward(spec, start, problem.x, problem.y, **kwargs).grads
        if all(fits(g, m, dtype) for g, m in zip(got, mutant)):
            return [what]
    return []


def per_tensor(problem: Problem, got: list, want: list, trace: Trace, wrong: list[int]
               ) -> list[str]:
    """Each wrong tensor explained on its own (zero, transposed, another's, wrong layer), or
    nothing if one of them fits none of these."""
    names = problem.spec.param_names()
    lines = [one_tensor(problem, names, i, got[i], want, trace) for i in wrong]
    return [] if None in lines else lines


def one_tensor(problem: Problem, names: list[str], i: int, g: np.ndarray, want: list,
               trace: Trace) -> str | None:
    dtype, name = problem.spec.dtype, names[i]
    if not np.any(g):
        return (f"{name}'s gradient is zero (a frozen or detached tensor, or one the backward "
                f"pass leaves out)")
    if g.ndim == 2 and g.shape[0] == g.shape[1] and fits(g, want[i].T, dtype):
        return f"{name}'s gradient is transposed"
    for j, other in enumerate(want):
        if j != i and other.shape == g.shape and fits(g, other, dtype):
            return f"{name}'s gradient is {names[j]}'s: the gradient of another layer"
    if name.startswith("W"):
        return wrong_layer(int(name[1:]) - 1, name, g, trace, dtype)
    return None


def wrong_layer(l: int, name: str, g: np.ndarray, trace: Trace, dtype: str) -> str | None:
    """W_l's gradient built from another layer's input h or dE/da."""
    for k, h in enumerate(trace.hs[:-1]):
        if k != l and h.shape[1] == g.shape[0] and fits(g, h.T @ trace.da[l], dtype):
            return (f"{name}'s gradient uses h{k}, the input of layer {k + 1}, where h{l}, "
                    f"the input of layer {l + 1}, belongs (the activations of the wrong layer)")
    for k, da in enumerate(trace.da):
        if k != l and da.shape[1] == g.shape[1] and fits(g, trace.hs[l].T @ da, dtype):
            return (f"{name}'s gradient uses dE/da of layer {k + 1} where layer {l + 1}'s "
                    f"belongs (the wrong layer)")
    return None


def bad_derivative(problem: Problem, got: list, want: list, wrong: list[int]) -> list[str]:
    """The output layer right, hidden layers wrong by a ratio that varies: phi' is wrong."""
    spec = problem.spec
    names = spec.param_names()
    last = [i for i, n in enumerate(names) if n.endswith(str(spec.depth))]
    if spec.activation == "linear" or any(i in wrong for i in last):
        return []
    ratios = np.concatenate([(got[i] / np.where(want[i] == 0, np.nan, want[i])).reshape(-1)
                             for i in wrong])
    ratios = ratios[np.isfinite(ratios)]
    spread = f" ({np.min(ratios):.2g} to {np.max(ratios):.2g})" if ratios.size else ""
    return [f"the output layer's gradients are right and the hidden layers' "
            f"({', '.join(names[i] for i in wrong)}) are off by a ratio that varies from entry "
            f"to entry{spread}: the derivative of the hidden activation ({spec.activation}) is "
            f"wrong, or what dE/dh is multiplied by on the way down"]
