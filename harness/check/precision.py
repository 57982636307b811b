"""Low precision: how right bfloat16 and float16 gradients can be, as an error model.

A float format with p bits of significand rounds to nearest with a relative error of at most
its unit roundoff u = 2^-p: float16 2^-11 ≈ 4.9e-4, bfloat16 2^-8 ≈ 3.9e-3 (float32 2^-24,
float64 2^-53). Every framework here promises what the hardware does: products and dot
products accumulate in float32 and their result is rounded once to the format; so there is
one rounding per operation's result, not one per term. The **model** treats each rounding
error as an independent random variable, uniform within its half unit (variance
v·value² with v = u²/3: the probabilistic analysis of Higham and Mary, "A new approach to
probabilistic rounding error analysis", SIAM J. Sci. Comput. 2019, in which a dot product of
n terms errs as √n u rather than the worst case's n u), and propagates the variances through
the network to first order:

    forward   var_h0 = v x²                                 (the data, rounded)
              var_al = var_h(l-1) W_l² + v a_l²             (a dot product, rounded once)
              var_hl = φ'(a_l)² var_al + v h_l²             (the activation, rounded)
    loss      var_r  = var_hL + v y² + v r²,  r = ŷ - y
    backward  var_d  = var_r / B² + v (r/B)²                (dE/dŷ)
              var_δl = var_dl s_l² + d_l² var_sl + v δ_l²   (δ = d ⊙ s, s = φ'(a) written from
              var_sl = (ds/dh)² var_hl + v s_l²              h: 1 - h² for tanh, h(1 - h) for
              var_gW = var_h(l-1)ᵀ δ_l² + h(l-1)²ᵀ var_δl     sigmoid)
                       + v g_W²
              var_gb = Σ_batch var_δl + v g_b²
              var_d(l-1) = var_δl (W_l²)ᵀ + v d(l-1)²

where every quantity is the float64 value at the parameters rounded to the format (the
reference's own point, so that the rounding of the starting point is no error). A tensor's
**bound** is SIGMAS = 6 standard deviations of its largest entry's error, normalised as the
check normalises errors (``max / max(max|g|, 1e-3 G)``, ``reference.normalised_errors``),
and E's is six of E's relative to |E|; the tolerance is the bound (``limits``). The lengths
of the dot products on a tensor's path (fan-ins forward, fan-outs backward, the batch) and
the depth enter through the sums of variances.

A framework that accumulates in the format itself rounds every partial sum: n - 1 roundings
of sums that grow to Σ|terms| (``gradient_bounds(low_sums=True)``), the bug the bound is
there to catch (``diagnosis``). Values below the format's smallest normal number lose their
precision (float16: 6.1e-5), below its smallest subnormal they flush to zero (6e-8): a
variant that scales its loss (``Variant.precision`` "mixed", float16) promises that none do;
a pure float16 variant does not, and its variances include a subnormal spacing's rounding.

The trajectory of a pure low-precision variant is checked against a float64 run that rounds
the parameters to the format after every update (``rounded_trajectory``); that of a mixed one
(float32 master weights, its compute copy rounded to the format) against the float32 master
trajectory (``mixed_trajectory``), each within the model summed over the steps
(``trajectory_bounds``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.check.reference import backward, dphi, layers
from harness.check.report import TOLERANCES
from implementations.problem import NetworkSpec, Params, Problem, flatten, numpy_dtype

LOW = ("bfloat16", "float16")
UNIT_ROUNDOFF = {"float64": 2.0 ** -53, "float32": 2.0 ** -24, "float16": 2.0 ** -11,
                 "bfloat16": 2.0 ** -8}
SMALLEST_SUBNORMAL = {"float16": 2.0 ** -24, "bfloat16": 2.0 ** -133, "float32": 2.0 ** -149,
                      "float64": 5e-324}
SIGMAS = 6.0  # a bound is this many standard deviations of the model's error
SAFETY = 1.0  # the tolerance over the bound (see the module docstring)
FLOOR = 1e-3  # as reference.normalised_errors: a tensor all but zero is judged at this scale


def is_low(dtype: str) -> bool:
    return dtype in LOW


def rounded(a: np.ndarray, dtype: str) -> np.ndarray:
    """a rounded to the format and back in float64."""
    return np.asarray(a, dtype=np.float64).astype(numpy_dtype(dtype)).astype(np.float64)


def slope_of_h(act: str, h: np.ndarray) -> np.ndarray:
    """|ds/dh| of φ' written from h: 2|h| for tanh, |1 - 2h| for sigmoid, 0 otherwise."""
    if act == "tanh":
        return 2.0 * np.abs(h)
    if act == "sigmoid":
        return np.abs(1.0 - 2.0 * h)
    return np.zeros_like(h)


def gradient_bounds(problem: Problem, flat: Sequence[np.ndarray], dtype: str | None = None,
                    underflow: bool = False, low_sums: bool = False
                    ) -> tuple[float, list[float]]:
    """(E's relative bound, each gradient tensor's normalised bound) at float64 parameters
    ``flat`` (the rounded start) for the format ``dtype`` (the problem's by default), as
    SIGMAS standard deviations of the model's error (the module docstring); ``underflow``:
    each result also rounded to the format's subnormal spacing (a pure float16 variant,
    whose small values are not scaled away from it); ``low_sums``: every sum of n terms
    accumulated in the format itself, n - 1 roundings more (for the diagnosis)."""
    spec, dtype = problem.spec, dtype or problem.spec.dtype
    v = UNIT_ROUNDOFF[dtype] ** 2 / 3  # the variance of one rounding, relative
    floor = (SMALLEST_SUBNORMAL[dtype] ** 2 / 12) if underflow else 0.0

    def rnd(value: np.ndarray) -> np.ndarray:
        return v * value ** 2 + floor

    def summed(n: int, size: np.ndarray) -> np.ndarray:
        """The extra variance of a sum of n terms added one by one in the format: each of the
        n - 1 partial sums rounded, partial sums that grow to ``size`` (the sum of the terms'
        magnitudes): about n/3 of size² roundings' worth."""
        return v * (n - 1) * size ** 2 / 3 if low_sums else 0.0

    x, y = rounded(problem.x, dtype), rounded(problem.y, dtype)
    params, acts = layers(spec, flat), spec.layer_activations()
    trace = backward(spec, flat, x, y)
    var_h = [v * x ** 2]
    for l, (W, _) in enumerate(params):
        var_a = (var_h[-1] @ W ** 2 + rnd(trace.pre[l])
                 + summed(W.shape[0], np.abs(trace.hs[l]) @ np.abs(W)))
        var_h.append(dphi(acts[l], trace.pre[l]) ** 2 * var_a + rnd(trace.hs[l + 1]))
    batch = x.shape[0]
    r = trace.hs[-1] - y
    var_r = var_h[-1] + v * y ** 2 + rnd(r)
    var_E = float(np.sum(r ** 2 * var_r) / batch ** 2) + v * trace.loss ** 2 + floor + float(
        summed(r.size, np.array(trace.loss)))
    var_d = var_r / batch ** 2 + rnd(r / batch)
    variances: list = []
    for l in reversed(range(spec.depth)):
        W, b = params[l]
        h, s = trace.hs[l + 1], dphi(acts[l], trace.pre[l])
        d = trace.da[l] / np.where(s == 0, 1.0, s)  # dE/dh_l, from δ = dE/dh ⊙ φ'
        var_s = slope_of_h(acts[l], h) ** 2 * var_h[l + 1] + rnd(s)
        var_delta = var_d * s ** 2 + d ** 2 * var_s + rnd(trace.da[l])
        g_W = trace.hs[l].T @ trace.da[l]
        var_gW = (var_h[l].T @ trace.da[l] ** 2 + (trace.hs[l] ** 2).T @ var_delta + rnd(g_W)
                  + summed(batch, np.abs(trace.hs[l]).T @ np.abs(trace.da[l])))
        layer = [var_gW]
        if b is not None:
            layer.append(var_delta.sum(axis=0) + rnd(trace.da[l].sum(axis=0))
                         + summed(batch, np.abs(trace.da[l]).sum(axis=0)))
        variances = layer + variances
        var_d = (var_delta @ W.T ** 2 + rnd(trace.da[l] @ W.T)
                 + summed(W.shape[1], np.abs(trace.da[l]) @ np.abs(W).T))
    bounds = [SIGMAS * np.sqrt(var) for var in variances]
    return SIGMAS * math.sqrt(var_E) / max(trace.loss, 1e-300), normalised(bounds, trace.grads)


def normalised(bounds: list[np.ndarray], grads: list[np.ndarray]) -> list[float]:
    """Each tensor's bound in the check's normalisation: max bound over max(max|g|, floor)."""
    scale = max((float(np.max(np.abs(g))) for g in grads if g.size), default=0.0)
    return [float(np.max(e)) / max(float(np.max(np.abs(g))) if g.size else 0.0,
                                   FLOOR * scale, 1e-300) for e, g in zip(bounds, grads)]


@dataclass(frozen=True)
class Limits:
    """What one subject's numbers may be off by on one problem: E's relative error, and each
    gradient tensor's normalised error against each reference."""

    loss: float
    fd: list[float]
    exact: list[float]
    closed: list[float]
    others: list[float]


def limits(problem: Problem, flat: Sequence[np.ndarray], underflow: bool = False) -> Limits:
    """The limits of a subject: the constant tolerances of float64 and float32 (``TOLERANCES``),
    or SAFETY times the error model's bounds in a low precision (``underflow``: a pure float16
    subject, whose smallest values are its own to lose)."""
    dtype, n = problem.spec.dtype, len(problem.spec.param_names())
    if not is_low(dtype):
        t = TOLERANCES[dtype]
        return Limits(t.frameworks, [t.finite_differences] * n, [t.exact] * n,
                      [t.closed_form] * n, [t.frameworks] * n)
    loss, tensors = gradient_bounds(problem, flat, underflow=underflow)
    tensors = [SAFETY * b for b in tensors]
    return Limits(SAFETY * loss, tensors, tensors, tensors, [2 * b for b in tensors])


# ---- what a low-precision failure is ------------------------------------------------------

def diagnosis(problem: Problem, flat: Sequence[np.ndarray], got: list, errors: list[float],
              tolerances: list[float], wrong: list[int]) -> list[str]:
    """A low-precision subject's wrong gradients named when they fit a precision bug: small
    values lost to float16's range (no loss scaling), or sums accumulated in the format."""
    if not is_low(problem.spec.dtype):
        return []
    return underflowed(problem, flat, got, tolerances) or accumulated(problem, flat, errors,
                                                                        wrong)


SMALLEST_NORMAL = {"float16": 2.0 ** -14, "bfloat16": 2.0 ** -126}


def underflowed(problem: Problem, flat: Sequence[np.ndarray], got: list,
                tolerances: list[float]) -> list[str]:
    """Entries below the format's smallest normal number lost (zero, or off by their own
    size) while every larger entry is within its bound."""
    dtype = problem.spec.dtype
    tiny = SMALLEST_NORMAL[dtype]
    want = backward(problem.spec, list(flat), problem.x, problem.y).grads
    scale = max(float(np.max(np.abs(w), initial=0.0)) for w in want)
    lost, small = 0, 0
    for g, w, tol in zip(got, want, tolerances):
        below = np.abs(w) < tiny
        small += int(np.sum(below & (w != 0)))
        lost += int(np.sum(below & (w != 0) & (np.abs(g - w) > 0.5 * np.abs(w))))
        big = ~below
        if np.any(big) and float(np.max(np.abs(g - w)[big])) > tol * max(
                float(np.max(np.abs(w))), FLOOR * scale):
            return []  # wrong where the range is no excuse: not this class
    if not lost:
        return []
    return [f"{lost} of the {small} gradient entries below {dtype}'s smallest normal number "
            f"({tiny:.2g}) are lost (flushed to zero or off by their own size) while every "
            f"larger one is right: {dtype} without loss scaling, or the loss scale undone in "
            f"{dtype} before the cast to float32 that should come first"]


def accumulated(problem: Problem, flat: Sequence[np.ndarray], errors: list[float],
                wrong: list[int]) -> list[str]:
    """Errors past the bound of float32 accumulation that sums in the format itself explain."""
    dtype = problem.spec.dtype
    _, low = gradient_bounds(problem, flat, low_sums=True)
    if not all(errors[i] <= SAFETY * low[i] for i in wrong):
        return []
    names = problem.spec.param_names()
    return [f"the gradients of {', '.join(names[i] for i in wrong)} are off by up to "
            f"{max(errors[i] for i in wrong):.2g}, what sums accumulated in {dtype} give "
            f"(each of n terms rounded, not once): they are accumulated in {dtype} where "
            f"float32 accumulation belongs"]


# ---- trajectories ----------------------------------------------------------------------------

def rounded_trajectory(problem: Problem, start: Params, steps: int) -> Params:
    """A pure low-precision variant's reference: exact float64 gradients, the update in
    float64, the parameters rounded to the format after every one."""
    dtype, spec = problem.spec.dtype, problem.spec
    flat = [rounded(t, dtype) for t in flatten(start)]
    x, y = rounded(problem.x, dtype), rounded(problem.y, dtype)
    for _ in range(steps):
        g = backward(spec, flat, x, y).grads
        flat = [rounded(t - problem.lr * gi, dtype) for t, gi in zip(flat, g)]
    return unflat(spec, flat)


def mixed_trajectory(problem: Problem, start: Params, steps: int, master: str = "float32",
                     stale: bool = False) -> Params:
    """A mixed-precision variant's reference: float32 master weights; each step's gradient
    exact at the master weights rounded to the format (the compute copy); the update in the
    master precision. Two bugs, for the diagnosis: ``master`` = the format itself (master
    weights kept low), ``stale``: the compute copy cast after the step that should use it
    (each gradient taken at the previous step's weights)."""
    dtype, spec = problem.spec.dtype, problem.spec
    flat = [rounded(t, master) for t in flatten(start)]
    x, y = rounded(problem.x, dtype), rounded(problem.y, dtype)
    copy = [rounded(t, dtype) for t in flat]
    for _ in range(steps):
        if not stale:
            copy = [rounded(t, dtype) for t in flat]
        g = backward(spec, copy, x, y).grads
        if stale:
            copy = [rounded(t, dtype) for t in flat]
        flat = [rounded(t - problem.lr * gi, master) for t, gi in zip(flat, g)]
    return unflat(spec, flat)


def unflat(spec: NetworkSpec, flat: list) -> Params:
    it = iter(flat)
    return [(next(it), next(it) if spec.bias else None) for _ in range(spec.depth)]


def trajectory_bounds(problem: Problem, start: Params, steps: int, ref: Params,
                      mixed: bool) -> list[float]:
    """Per tensor, the tolerance on a low-precision trajectory, normalised as
    ``reference.trajectory_errors`` (by how far the reference moved): each step's update may
    be off by the gradient's bound times lr, and, for a pure variant, its rounding may land
    one unit in the last place apart once the two runs differ; rounding errors of steps at
    different weights are independent, so these add up as the square root of the steps
    (a systematic error, such as a gradient taken a step late, adds up as the steps)."""
    dtype = problem.spec.dtype
    u = UNIT_ROUNDOFF[dtype]
    flat0 = [np.asarray(t, np.float64) for t in flatten(start)]
    _, per_tensor = gradient_bounds(problem, [rounded(t, dtype) for t in flat0])
    grads = backward(problem.spec, [rounded(t, dtype) for t in flat0], rounded(problem.x, dtype),
                     rounded(problem.y, dtype)).grads
    out = []
    for t0, r, g, bound in zip(flat0, flatten(ref), grads, per_tensor):
        moved = float(np.max(np.abs(r - t0), initial=0.0))
        size = float(np.max(np.abs(r), initial=0.0))
        drift = math.sqrt(steps) * problem.lr * bound * float(np.max(np.abs(g), initial=0.0))
        ulps = 0.0 if mixed else math.sqrt(steps) * 2.0 * u * size
        floor = 2.0 * u * size / SAFETY  # a run that hardly moves is judged on its rounding
        out.append(SAFETY * (drift + ulps) / max(moved, floor, 1e-300))
    return out


def trajectory_diagnosis(problem: Problem, start: Params, steps: int, params: Params,
                         mixed: bool) -> list[str]:
    """A low-precision trajectory named when it fits a precision bug of a mixed-precision
    loop: master weights kept in the format, or the compute copy cast after its step."""
    if not (mixed and is_low(problem.spec.dtype)):
        return []
    dtype = problem.spec.dtype
    off = trajectory_error(params, mixed_trajectory(problem, start, steps), start)
    for ref, rounds, what in (
            (mixed_trajectory(problem, start, steps, master=dtype), True,
             f"the master weights are kept in {dtype}: an update smaller than half a unit in "
             f"the last place of a weight vanishes, and training stalls"),
            (mixed_trajectory(problem, start, steps, stale=True), False,
             f"the {dtype} compute copy is cast after the step that should use it: each "
             f"gradient is taken at the previous step's weights")):
        tols = trajectory_bounds(problem, start, steps, ref, mixed=not rounds)
        near = trajectory_error(params, ref, start)
        if all(n <= t for n, t in zip(near, tols)) and max(near) < max(off) / 3:
            return [what]
    return []


def near_variation(problem: Problem, start: Params, n: int, params: Params, ref: Params
                   ) -> bool:
    """Whether a low-precision run of n steps fits a float64 variation's trajectory within
    the pure model's bounds (the diagnosis's classes, in a low precision)."""
    tols = trajectory_bounds(problem, start, n, ref, mixed=False)
    return all(e <= t for e, t in zip(trajectory_error(params, ref, start), tols))


def trajectory_error(params: Params, ref: Params, start: Params) -> list[float]:
    """Per tensor max|p - ref| / max|ref - start|, as ``reference.trajectory_errors`` but
    without its float32 noise floor (the bound carries its own)."""
    out = []
    for p, r, s in zip(flatten(params), flatten(ref), flatten(start)):
        p = np.asarray(p, np.float64)
        if p.shape != r.shape and p.size == r.size:
            p = p.reshape(r.shape)
        if p.shape != r.shape or not np.all(np.isfinite(p)):
            out.append(math.inf)
            continue
        moved = float(np.max(np.abs(r - np.asarray(s, np.float64)), initial=0.0))
        out.append(float(np.max(np.abs(p - r), initial=0.0)) / max(moved, 1e-300))
    return out
