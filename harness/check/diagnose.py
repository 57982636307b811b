"""Name a failure in one line when it fits a known class of backprop bug.

A failing subject's numbers are tested against the usual mistakes, in this order, and the
first class that fits is said with its evidence:

* **shapes**: a gradient missing, transposed, or shaped like another tensor;
* **a known constant factor** on every gradient (or on some of them): 2 or 1/2 (the 1/2 of
  E), the batch (a sum where the mean belongs), 1/out width (a mean over the outputs too),
  the learning rate (a gradient already scaled by it), -1 (the sign), and their products
  (``factors``; the default networks of ``check`` make them all different numbers);
* **a known wrong backward pass** (``mutations``), rebuilt with the reference's chain rule
  and compared: W, or W.reshape(out, in), where W^T belongs; each layer's net input a where
  its output h = phi(a) belongs in dE/dW; the hidden activation's derivative missing, taken
  at h, replaced by phi, or another activation's; the hidden derivative applied at a linear
  output layer too, or the output's own derivative missing;
* **per tensor**: a zero gradient, a transposed one, another tensor's gradient, the
  activations, the net input or dE/da of the wrong layer;
* **a constant factor of no known cause** on several entries;
* **an activation derivative** that is wrong in no known way: the output layer is right and
  the hidden ones are off by a ratio that varies with the pre-activation;
* for trajectories (``harness.check.diagnose_trajectory``), and for a learner's own
  intermediates (``harness.check.trace``).

A crash is explained where its message says two shapes do not fit (``crash``). Where nothing
fits, it says so; the caller prints the per-tensor errors.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from harness.check import precision
from harness.check.reference import (
    Trace,
    backward,
    dphi,
    normalised_errors,
)
from harness.check.report import TOLERANCES
from implementations.problem import Problem

# how close a candidate must come to count as fitting (below float32: a few times what a
# right gradient is off by, in the error model of harness.check.precision)
FIT = {"float64": 1e-6, "float32": 1e-2, "float16": 2e-2, "bfloat16": 1e-1}
VAGUE = ("of no known cause", "off by a ratio that varies")  # diagnoses that name no cause


def fits(got: np.ndarray, want: np.ndarray, dtype: str) -> bool:
    return normalised_errors([got], [want])[0] <= FIT[dtype]


def shape_text(shape: tuple) -> str:
    return "(" + ", ".join(map(str, shape)) + (",)" if len(shape) == 1 else ")")


# ---- constant factors ------------------------------------------------------------------------

# the numbers a backprop bug multiplies by, and what each power of them means, in a gradient
# (at the start) and in a step (a trajectory): (name, ``value(problem)``, {power: (in a
# gradient, in a step)})
BASES = (
    ("2", lambda p: 2.0, {
        1: ("the 1/2 of E is missing from the gradient (the square's 2 is not cancelled)",
            "the 1/2 of E is missing from the gradient (the square's 2 is not cancelled)",
            "E lacks its 1/2 (the gradients have it)",
            "its E has no 1/2 (half = false in the file's [loss])"),
        -1: ("a 1/2 too many (the square's 2 cancelled twice)",) * 2 + (
            "E has a 1/2 too many", "its E has a 1/2 more than this suite's")}),
    ("batch", lambda p: float(p.batch), {
        1: ("the mean over the batch lacks its 1/batch (a sum over the batch)",) * 2 + (
            "E is a sum over the batch where the mean belongs",
            "its E sums over the batch (batch = \"sum\" in [loss])"),
        -1: ("the mean over the batch is divided by the batch once too often",) * 2 + (
            "E is divided by the batch once too often",
            "its E divides by the batch once more")}),
    ("out width", lambda p: float(p.spec.widths[-1]), {
        -1: ("the loss is averaged over the outputs as well as the batch (a mean over batch × "
             "out elements, like MSELoss's default)",) * 2 + (
            "E is averaged over the outputs as well as the batch",
            "its E averages over the outputs too (outputs = \"mean\" in [loss])"),
        1: ("the gradient is multiplied by the out width",) * 2 + (
            "E is multiplied by the out width", "its E is multiplied by the out width")}),
    ("lr", lambda p: float(p.lr), {
        1: ("the gradient is already multiplied by the learning rate",
            "the learning rate is applied twice (each step is lr² × the gradient)",
            "E is multiplied by the learning rate",
            "it is multiplied by the learning rate: an update printed as a gradient (what = "
            "\"update\")?"),
        -1: ("the gradient is divided by the learning rate",
             "the learning rate is left out of the update (each step is the whole gradient)",
             "E is divided by the learning rate", "it is divided by the learning rate")}),
)
SIGN = ("the sign is flipped (the step climbs the loss)",) * 2 + (
    "E has the wrong sign", "a sign convention (δ written as (y − ŷ)·φ′, or a step as −η ∂E/∂w)")
READINGS = ("gradient", "step", "loss", "published")  # what a factor multiplies: the index


def factors(problem: Problem, of: str = "gradient") -> list[tuple[float, str, list[str]]]:
    """(value, '= ...', causes) for ±2^i · batch^j · out^k · lr^l (each power -1, 0 or 1),
    simplest first, read as a factor ``of`` a gradient, a whole SGD step or E. Where two
    products are the same number, both readings are given (the default networks of ``check``
    are chosen so that none are)."""
    values = [(name, fn(problem), powers) for name, fn, powers in BASES]
    usable = [(n, v, w) for n, v, w in values if abs(v - 1.0) > 1e-12]
    terms = list(itertools.product((0, 1, -1), repeat=len(usable)))
    terms.sort(key=lambda t: (sum(map(abs, t)), [abs(e) == 0 for e in t]))
    by_value: dict[float, list] = {}
    for sign in (1, -1):
        for t in terms:
            if sign == 1 and not any(t):
                continue
            value = sign * math.prod(v ** e for (_, v, _), e in zip(usable, t))
            if abs(value - 1.0) < 1e-12:  # 2 × 1/batch 2 is no factor at all
                continue
            parts = [f"{'' if e > 0 else '1/'}{name}" + ("" if name == "2" else f" {v:g}")
                     for (name, v, _), e in zip(usable, t) if e]
            eq = "= " + ("-" if sign < 0 else "") + (" × ".join(parts) or "1")
            reading = READINGS.index(of)
            why = [w[e][reading] for (_, _, w), e in zip(usable, t) if e]
            why += [SIGN[reading]] if sign < 0 else []
            by_value.setdefault(round(value, 12), []).append((value, eq, why, sum(map(abs, t))))
    table = []
    for readings in by_value.values():
        value, eq, why, parts = readings[0]
        for _, other_eq, other_why, other_parts in readings[1:2]:
            if other_parts == parts:  # as simple a reading: say both
                eq = f"{eq}, or {other_eq[2:]}"
                why = ["; ".join(why) + " (or " + "; ".join(other_why) + ")"]
        table.append((value, eq, why))
    return table


def ratio(c: float) -> str:
    """c to two decimals (5.00, 0.33), or two significant digits below 0.1 (0.056), with
    more where that would round it to 1 (0.9995, not 1.00)."""
    if not math.isfinite(c):
        return str(c)
    digits = 2 if abs(c) >= 0.1 or c == 0 else 1 - math.floor(math.log10(abs(c)))
    text = f"{c:.{digits}f}"
    while float(text) == 1.0 and c != 1.0 and digits < 12:
        digits += 1
        text = f"{c:.{digits}f}"
    return text


def name_factor(c: float, problem: Problem, of: str = "gradient") -> tuple[str, str] | None:
    """('= batch 5', 'the mean over the batch lacks its 1/batch') for a known factor c."""
    if not math.isfinite(c) or c == 0:
        return None
    for value, eq, why in factors(problem, of):
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
        return f"{which} {ratio(c)}× the reference (a constant factor of no known cause)"
    eq, why = named
    return f"{which} {ratio(c)}× the reference ({eq}): {why}"


# ---- the gradient at the start ---------------------------------------------------------------

def gradient(problem: Problem, start: list[np.ndarray], trace: Trace, loss: float,
             got: list, tolerances: Sequence[float] | None = None) -> list[str]:
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
    tols = list(tolerances) if tolerances is not None else [TOLERANCES[dtype].exact] * len(names)
    wrong = [i for i, e in enumerate(errors) if e > tols[i]]
    if not wrong:
        return loss_line(problem, loss, trace.loss)
    every = len(wrong) == len(names)
    lines = (precision.diagnosis(problem, start, got, errors, tols, wrong)
             or whole_factor(problem, got, want, loss, trace.loss, every, named_only=True)
             or wrong_backward(problem, start, got, trace)
             or per_tensor(problem, got, want, trace, wrong)
             or whole_factor(problem, got, want, loss, trace.loss, every, named_only=False)
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


# a crash that says two shapes do not fit: the exception types that carry such messages, and
# the words of numpy, torch, JAX and TensorFlow for it
SHAPE_ERRORS = ("ValueError", "RuntimeError", "TypeError", "IndexError",
                "InvalidArgumentError")
SHAPE_WORDS = ("shapes", "shape mismatch", "mismatch in its core dimension", "broadcast",
               "size of tensor", "must match the size", "cannot be multiplied",
               "dimension", "incompatible shapes", "not aligned")


def crash(reason: str) -> list[str]:
    """A crash explained where its message says the shapes do not fit (a MemoryError that
    mentions a shape is not one)."""
    kind = reason.split(": ")[1] if reason.startswith("crashed: ") else ""
    if kind in SHAPE_ERRORS and any(w in reason.lower() for w in SHAPE_WORDS):
        return ["the shapes do not fit: a matrix is used where its transpose belongs, or the "
                "activations or gradient of another layer"]
    return []


def loss_line(problem: Problem, loss: float, want: float) -> list[str]:
    if math.isfinite(loss) and abs(loss - want) <= 1e-6 * max(abs(want), 1e-300):
        return []
    c = loss / want if want else math.nan
    named = name_factor(c, problem, of="loss")
    if named is None:
        return [f"the gradients are right but E is {ratio(c)}× the reference loss"]
    return [f"the gradients are right but E is {ratio(c)}× the reference loss ({named[0]}): "
            f"{named[1]}"]


def whole_factor(problem: Problem, got: list, want: list, loss: float, want_loss: float,
                 every: bool, named_only: bool = False) -> list[str]:
    """Every wrong tensor off by one constant factor (and the others right): a known factor
    (``named_only``), or any factor that fits several entries (one wrong number is off by
    some factor from any other, which says nothing)."""
    names, dtype = problem.spec.param_names(), problem.spec.dtype
    errors = normalised_errors(got, want)
    wrong = [i for i, e in enumerate(errors) if e > TOLERANCES[dtype].exact]
    c = fitted_factor([got[i] for i in wrong], [want[i] for i in wrong])
    if not math.isfinite(c) or abs(c) < 1e-9 or not all(fits(got[i], c * want[i], dtype)
                                                        for i in wrong):
        return []  # zero is no factor: per_tensor names a zero gradient
    if named_only and name_factor(c, problem) is None:
        return []
    if not named_only and sum(got[i].size for i in wrong) < 2:
        return []
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
    for what, kwargs in mutations(problem, start):
        mutant = backward(spec, start, problem.x, problem.y, **kwargs).grads
        if all(fits(g, m, dtype) for g, m in zip(got, mutant)):
            return [what]
    return []


def mutations(problem: Problem, start: list) -> list[tuple[str, dict]]:
    """(what is wrong, ``reference.backward``'s keywords that rebuild it), in the order they
    are tried: the matrix dE/dh is carried down through, the layer inputs of dE/dW, the
    hidden and the output derivatives."""
    spec = problem.spec
    out = carries(spec, start)
    if spec.depth > 1:
        out.append(("dE/dW uses each layer's net input a where its output h = phi(a) belongs "
                    "(the pre-activation taken as the next layer's input)",
                    dict(pre_as_input=True)))
        for what, fn in derivative_variants(spec.activation):
            out.append((what, dict(derivative=lambda act, a, h, fn=fn: fn(a, h))))
    out += output_derivatives(spec)
    return out


def carries(spec, start: list) -> list[tuple[str, dict]]:
    """W_l, or W_l.reshape(out, in), where W_l^T belongs, on every layer dE/dh passes
    through (the same line of code on each) or on one of them."""
    names = spec.param_names()
    through = list(range(1, spec.depth))  # dE/dh is carried down through layers 2..depth
    shape = {l: start[names.index(f"W{l + 1}")].shape for l in through}
    square = [l for l in through if shape[l][0] == shape[l][1] > 1]
    out = []
    for group in ([square] if len(square) > 1 else []) + [[l] for l in square]:
        which = ", ".join(f"W{l + 1}" for l in group)
        out.append((f"dE/dh is carried down through {which} where {which.replace(',', 'ᵀ,')}ᵀ "
                    f"belongs (a transposed matrix in the backward pass)",
                    dict(untransposed=frozenset(group))))
    if len(through) > 1 and square and len(square) < len(through):  # one line on every layer
        which = ", ".join(f"W{l + 1}" for l in through)
        out.append((f"dE/dh is carried down through W.reshape(fan_out, fan_in) where Wᵀ belongs "
                    f"({which}): a reshape keeps the entries in their order, a transpose swaps "
                    f"rows and columns (on a square W it changes nothing)",
                    dict(carried={l: lambda W: W.reshape(W.shape[::-1]) for l in through})))
    oblong = [l for l in through if shape[l][0] != shape[l][1] and min(shape[l]) > 1]
    for group in ([oblong] if len(oblong) > 1 else []) + [[l] for l in oblong]:
        which = ", ".join(f"W{l + 1}.reshape({shape[l][1]}, {shape[l][0]})" for l in group)
        out.append((f"dE/dh is carried down through {which} where the transpose belongs: a "
                    f"reshape keeps the entries in their order, a transpose swaps rows and "
                    f"columns", dict(carried={l: lambda W: W.reshape(W.shape[::-1])
                                              for l in group})))
    return out


def dphi_of_h(act: str, h: np.ndarray) -> np.ndarray:
    """phi' as code writes it from h = phi(a): 1 - h² for tanh, h(1 - h) for sigmoid."""
    if act == "tanh":
        return 1.0 - h * h
    if act == "sigmoid":
        return h * (1.0 - h)
    return (h > 0.0).astype(h.dtype) if act == "relu" else np.ones_like(h)


def output_derivatives(spec) -> list[tuple[str, dict]]:
    """The output layer's derivative: the hidden phi' applied at a different output too, or
    the output's own phi' wrong in one of the known ways (missing, taken at h, another's)."""
    out_act, hidden = spec.output_activation, spec.activation
    out = []
    if hidden != "linear" and out_act != hidden:
        slope = "φ′ = 1 there" if out_act == "linear" else f"its derivative is {out_act}'"
        said = (f"{hidden}' is also applied at the output layer, whose activation is {out_act} "
                f"({slope})")
        out.append((said, dict(output_derivative=lambda act, a, h: dphi(hidden, a))))
        out.append((f"{said}, written with the output ŷ as if it were {hidden}(a)",
                    dict(output_derivative=lambda act, a, h: dphi_of_h(hidden, h))))
    if out_act != "linear":
        out += [(f"at the output layer, {what}", dict(
            output_derivative=lambda act, a, h, fn=fn: fn(a, h)))
            for what, fn in derivative_variants(out_act)]
    return out


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
    """W_l's gradient built from another layer's input h or dE/da, or from its own input's
    net input a (the pre-activation) where h = phi(a) belongs."""
    if l >= 1 and trace.pre[l - 1].shape[1] == g.shape[0] and fits(
            g, trace.pre[l - 1].T @ trace.da[l], dtype):
        return (f"{name}'s gradient uses a{l}, the net input of layer {l}, where h{l} = "
                f"phi(a{l}), its output, belongs (the pre-activation taken as the input)")
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
