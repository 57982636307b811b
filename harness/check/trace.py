"""Where a learner's backward pass first goes wrong, said in the worked example's notation.

A learner's file may define ``trace(params, x, y)``, returning for each layer l = 1..L a dict
of any of ``a`` (its net input), ``h`` (its output), ``delta`` (dE/da) and ``dW``, ``db`` (its
gradients). They are compared with the chain rule's (``reference.backward``) in the order a
hand calculation makes them: a₁, h₁, a₂, h₂, ..., then δ_L, ∂E/∂W_L, ∂E/∂b_L, δ_L-1, ...;
the first that differs is named with its formula and both values, and with what was computed
instead where that fits a known mistake, from the learner's own values before it (which are
right, since they came first):

    δ₂ is right; ∂E/∂W₂ is not: the chain rule gives h₁ᵀ δ₂ (0.0312 at [1, 0]), you computed
    a₁ᵀ δ₂ (0.0457)

Without intermediates, ``first_wrong_layer`` says which layer's gradients are the first wrong
ones from the top, and the formulas to look at there.

The notation: h₀ = x; a_l = h_l-1 W_l + b_l; h_l = φ(a_l), ŷ = h_L; E = ½ · mean over the
batch of ‖ŷ − y‖²; δ_L = (ŷ − y)/B ⊙ φ′(a_L); δ_l = (δ_l+1 W_l+1ᵀ) ⊙ φ′(a_l);
∂E/∂W_l = h_l-1ᵀ δ_l; ∂E/∂b_l = Σ_batch δ_l.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from harness.check.diagnose import derivative_variants
from harness.check.reference import Trace, dphi, normalised_errors, phi
from harness.check.report import TOLERANCES
from implementations.problem import ACTIVATIONS, NetworkSpec, Problem

SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def sub(n: int) -> str:
    return str(n).translate(SUB)


def name(key: str, l: int) -> str:
    """How the worked example writes a quantity of layer l."""
    return {"a": f"a{sub(l)}", "h": f"h{sub(l)}", "delta": f"δ{sub(l)}",
            "dW": f"∂E/∂W{sub(l)}", "db": f"∂E/∂b{sub(l)}"}[key]


def formula(spec: NetworkSpec, key: str, l: int) -> str:
    """Its formula, in the same notation."""
    L, act = spec.depth, spec.layer_activations()[l - 1]
    if key == "a":
        return f"h{sub(l - 1)} W{sub(l)}" + (f" + b{sub(l)}" if spec.bias else "")
    if key == "h":
        return f"{act}(a{sub(l)})" if act != "linear" else f"a{sub(l)} (linear)"
    if key == "delta" and l == L:
        return "(ŷ − y)/B" + ("" if act == "linear" else f" ⊙ {act}′(a{sub(l)})")
    if key == "delta":
        return f"(δ{sub(l + 1)} W{sub(l + 1)}ᵀ) ⊙ {act}′(a{sub(l)})"
    if key == "dW":
        return f"h{sub(l - 1)}ᵀ δ{sub(l)}"
    return f"Σ_batch δ{sub(l)}"


def order(spec: NetworkSpec) -> list[tuple[str, int]]:
    """The quantities in the order a hand calculation makes them."""
    forward = [(k, l) for l in range(1, spec.depth + 1) for k in ("a", "h")]
    backward = [(k, l) for l in range(spec.depth, 0, -1)
                for k in ("delta", "dW", "db") if k != "db" or spec.bias]
    return forward + backward


def reference_value(trace: Trace, key: str, l: int) -> np.ndarray:
    return {"a": lambda: trace.pre[l - 1], "h": lambda: trace.hs[l],
            "delta": lambda: trace.da[l - 1], "dW": lambda: trace.hs[l - 1].T @ trace.da[l - 1],
            "db": lambda: trace.da[l - 1].sum(axis=0)}[key]()


# ---- with intermediates: the first quantity that differs ------------------------------------

def first_difference(problem: Problem, flat: list, trace: Trace, theirs: list[dict]
                     ) -> list[str]:
    """One line naming the first of the learner's intermediates that differs from the chain
    rule, or [] when every one given agrees (or none can be read)."""
    spec, tol = problem.spec, TOLERANCES[problem.spec.dtype].frameworks
    if len(theirs) != spec.depth:
        return [f"trace gives {len(theirs)} layers for the network's {spec.depth}; it is not "
                f"compared"]
    right: str | None = None
    for key, l in order(spec):
        got = theirs[l - 1].get(key)
        if got is None:
            continue
        want = reference_value(trace, key, l)
        if got.shape != want.shape and got.size == want.size:
            got = got.reshape(want.shape)
        if got.shape != want.shape:
            return [f"{lead(right)}{name(key, l)} has shape {got.shape}, the chain rule's "
                    f"{formula(spec, key, l)} is {want.shape}"]
        if normalised_errors([got], [want])[0] > tol:
            return [difference(problem, flat, theirs, key, l, got, want, right)]
        right = name(key, l)
    return []


def lead(right: str | None) -> str:
    return f"{right} is right; " if right else ""


def difference(problem: Problem, flat: list, theirs: list[dict], key: str, l: int,
               got: np.ndarray, want: np.ndarray, right: str | None) -> str:
    spec = problem.spec
    at = np.unravel_index(int(np.argmax(np.abs(got - want))), want.shape)
    where = f" at [{', '.join(map(str, at))}]" if want.size > 1 else ""
    instead = next((what for what, value in candidates(problem, flat, theirs, key, l)
                    if value is not None and value.shape == got.shape
                    and normalised_errors([got], [value])[0] <= 1e-3), None)
    if instead:
        shown, _, why = instead.partition("; ")
        computed = f"{shown} ({got[at]:.4g})" + (f": {why}" if why else "")
    else:
        computed = f"{got[at]:.4g}"
    head = f"{lead(right)}{name(key, l)} is not" if right else f"{name(key, l)} is not right"
    return (f"{head}: the chain rule gives {name(key, l)} = {formula(spec, key, l)} "
            f"({want[at]:.4g}{where}), you computed {computed}")


def candidates(problem: Problem, flat: list, theirs: list[dict], key: str, l: int
               ) -> list[tuple[str, np.ndarray | None]]:
    """Known wrong ways to make the quantity, from the learner's own earlier values: (what
    was computed, and after "; " why it is wrong, where that needs saying; its value)."""
    spec = problem.spec
    acts = spec.layer_activations()
    act, L = acts[l - 1], spec.depth

    def mine(k: str, layer: int) -> np.ndarray | None:
        if layer == 0 and k == "h":
            return problem.x
        return theirs[layer - 1].get(k) if 1 <= layer <= L else None

    def safe(fn: Callable[[], np.ndarray]) -> np.ndarray | None:
        try:
            with np.errstate(all="ignore"):
                return fn()
        except (TypeError, ValueError, AttributeError):
            return None

    W = [None, *flat[::2 if spec.bias else 1]]
    out: list[tuple[str, Callable[[], np.ndarray]]] = []
    if key == "a":
        out += [(f"h{sub(l - 1)} W{sub(l)}; b{sub(l)} is left out",
                 lambda: mine("h", l - 1) @ W[l]),
                (f"a{sub(l - 1)} W{sub(l)}" + (f" + b{sub(l)}" if spec.bias else "")
                 + "; the net input of the layer below where its output belongs",
                 lambda: mine("a", l - 1) @ W[l] + (flat[2 * l - 1] if spec.bias else 0.0))]
    elif key == "h":
        out += [(f"{other}(a{sub(l)}); the layer's activation is {act}",
                 lambda o=other: phi(o, mine("a", l))) for other in ACTIVATIONS if other != act]
    elif key == "delta":
        up = (lambda: (mine("h", L) - problem.y) / problem.batch) if l == L else (
            lambda: mine("delta", l + 1) @ W[l + 1].T)
        a, h = (lambda: mine("a", l)), (lambda: mine("h", l))
        above = "(ŷ − y)/B" if l == L else f"δ{sub(l + 1)} W{sub(l + 1)}ᵀ"
        out += [(f"{above} ⊙ φ′; {what}", lambda fn=fn: up() * fn(a(), h()))
                for what, fn in derivative_variants(act)]
        if l == L:
            slope = (lambda: 1.0) if act == "linear" else (lambda: dphi(act, a()))
            out += [("(ŷ − y) without the 1/B", lambda: up() * problem.batch * slope()),
                    ("(y − ŷ)/B; the sign is flipped", lambda: -up() * slope()),
                    ("2(ŷ − y)/B; the ½ of E is not cancelled", lambda: 2 * up() * slope())]
            if spec.activation != act:
                out += [(f"(ŷ − y)/B ⊙ {spec.activation}′(a{sub(l)}); the hidden layers' "
                         f"derivative is applied at the output layer too",
                         lambda: up() * dphi(spec.activation, a()))]
        else:
            out += [(f"(δ{sub(l + 1)} W{sub(l + 1)}) ⊙ {act}′(a{sub(l)}); W where Wᵀ belongs",
                     lambda: (mine("delta", l + 1) @ W[l + 1]) * dphi(act, a())),
                    (f"(δ{sub(l + 1)} W{sub(l + 1)}.reshape) ⊙ {act}′(a{sub(l)}); a reshape "
                     f"where the transpose belongs", lambda: (mine("delta", l + 1) @ W[
                         l + 1].reshape(W[l + 1].shape[::-1])) * dphi(act, a()))]
    elif key == "dW":
        d = lambda: mine("delta", l)  # noqa: E731 (read when tried)
        out += [(f"a{sub(l - 1)}ᵀ δ{sub(l)}; the net input where the output h{sub(l - 1)} "
                 f"belongs", lambda: mine("a", l - 1).T @ d()),
                (f"h{sub(l)}ᵀ δ{sub(l)}; this layer's output where its input belongs",
                 lambda: mine("h", l).T @ d()),
                (f"h{sub(l - 1)}ᵀ δ{sub(l)} × B; a sum where the mean belongs",
                 lambda: problem.batch * (mine("h", l - 1).T @ d()))]
    else:
        out += [(f"the mean of δ{sub(l)} over the batch; the sum belongs",
                 lambda: mine("delta", l).mean(axis=0)),
                (f"δ{sub(l)} of the first sample; the sum over the batch belongs",
                 lambda: mine("delta", l)[0])]
    return [(what, safe(fn)) for what, fn in out]


# ---- without intermediates: the first wrong layer from the top ------------------------------

def first_wrong_layer(problem: Problem, got: list, want: list) -> list[str]:
    """Which layer's gradients are the first wrong ones, from the output down, and what to
    look at there; [] if all are right or a tensor is missing."""
    spec, tol = problem.spec, TOLERANCES[problem.spec.dtype].exact
    if len(got) != len(want) or any(g is None or np.shape(g) != w.shape
                                    for g, w in zip(got, want)):
        return []
    errors = normalised_errors(got, want)
    names, per = spec.param_names(), 2 if spec.bias else 1
    for l in range(spec.depth, 0, -1):
        mine = range(per * (l - 1), per * l)
        if any(errors[i] > tol for i in mine):
            tensors = ", ".join(names[i] for i in mine)
            look = (f"look at δ{sub(l)} = {formula(spec, 'delta', l)} and ∂E/∂W{sub(l)} = "
                    f"{formula(spec, 'dW', l)}")
            if l == spec.depth:
                return [f"where: the output layer's gradients ({tensors}) are already wrong: "
                        f"{look}"]
            return [f"where: the layers above layer {l} are right; layer {l}'s gradients "
                    f"({tensors}) are the first wrong ones from the top: {look}"]
    return []
