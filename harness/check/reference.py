"""The references every variant is judged against, in float64 and independent of all of them.

Nothing here imports an implementation: a bug planted in any framework's forward or backward
pass (NumPy's included) cannot leak into the references.

* ``reference_loss``: E = 1/2 * mean over the batch of ||y_hat - y||^2, a forward pass written
  with ``einsum`` and its own activation formulas;
* ``finite_differences``: central differences of ``reference_loss``, the reference that needs
  no backward pass at all;
* ``backward``: the chain rule written once more, here, with its own derivative formulas; it
  keeps every layer's input ``h``, pre-activation ``a`` and dE/da (a ``Trace``), which the
  diagnosis reads. ``exact_gradient`` is its gradient; ``check`` compares it with the finite
  differences on every problem, so a wrong reference could not pass unseen;
* ``closed_form``: the worked example's formulas for the linear 1-1-1 network;
* ``reference_trajectory``: N SGD steps with ``exact_gradient``, with the variations the
  diagnosis tries (``Variation``: a scaled learning rate, gradients that accumulate, frozen
  tensors).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from harness.check.report import TOLERANCES
from implementations.problem import NetworkSpec, Params, Problem, cast_problem, flatten, map_params

FD_MAX_ENTRIES = 48  # finite differences on at most this many seeded entries per tensor
TRAJECTORY_NOISE_ULPS = 100


def phi(name: str, a: np.ndarray) -> np.ndarray:
    """The activation, written apart from every implementation's table."""
    if name == "linear":
        return a
    if name == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * a))  # an identity, not the implementations' formula
    if name == "tanh":
        return np.tanh(a)
    return np.where(a > 0.0, a, 0.0)  # relu


def dphi(name: str, a: np.ndarray) -> np.ndarray:
    """phi'(a), from a alone (the implementations write it with h = phi(a))."""
    if name == "linear":
        return np.ones_like(a)
    if name == "sigmoid":
        return 0.25 / np.cosh(0.5 * a) ** 2
    if name == "tanh":
        return 1.0 / np.cosh(a) ** 2
    return (a > 0.0).astype(a.dtype)  # relu


def layers(spec: NetworkSpec, flat: Sequence[np.ndarray]) -> list[tuple[np.ndarray, object]]:
    """(W, b or None) per layer from the flat tensors of NetworkSpec.param_names()."""
    it = iter(flat)
    return [(next(it), next(it) if spec.bias else None) for _ in range(spec.depth)]


def reference_loss(spec: NetworkSpec, flat: Sequence[np.ndarray], x: np.ndarray,
                   y: np.ndarray) -> float:
    """E for flat float64 parameters, with einsum and explicit bias handling."""
    h = x
    for (W, b), act in zip(layers(spec, flat), spec.layer_activations()):
        a = np.einsum("bi,io->bo", h, W)
        if b is not None:
            a = a + b[None, :]
        h = phi(act, a)
    return float(0.5 * np.mean(np.sum((h - y) ** 2, axis=1)))


def reference_output(spec: NetworkSpec, flat: Sequence[np.ndarray], x: np.ndarray) -> np.ndarray:
    """y_hat for flat float64 parameters (the forward pass of ``reference_loss``)."""
    h = x
    for (W, b), act in zip(layers(spec, flat), spec.layer_activations()):
        a = np.einsum("bi,io->bo", h, W) + (0.0 if b is None else b[None, :])
        h = phi(act, a)
    return h


def finite_differences(problem: Problem, flat: list[np.ndarray], max_entries: int = FD_MAX_ENTRIES,
                       seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Central differences of reference_loss: per tensor, (flat indices, gradient values).

    At most ``max_entries`` entries per tensor are differentiated, chosen with a seeded RNG.
    """
    x, y = problem.x, problem.y
    rng = np.random.default_rng(seed)
    out = []
    for t, tensor in enumerate(flat):
        n = tensor.size
        idx = np.arange(n) if n <= max_entries else np.sort(rng.choice(n, max_entries, False))
        vals = np.empty(len(idx))
        for k, j in enumerate(idx):
            base = tensor.reshape(-1)[j]
            h = np.cbrt(np.finfo(np.float64).eps) * max(1.0, abs(base))
            probe = [p.copy() for p in flat]
            probe[t].reshape(-1)[j] = base + h
            up = reference_loss(problem.spec, probe, x, y)
            probe[t].reshape(-1)[j] = base - h
            down = reference_loss(problem.spec, probe, x, y)
            vals[k] = (up - down) / (2.0 * h)
        out.append((idx, vals))
    return out


# ---- the chain rule, kept apart --------------------------------------------------------------

Derivative = Callable[[str, np.ndarray, np.ndarray], np.ndarray]  # (activation, a, h) -> phi'


@dataclass
class Trace:
    """What the backward pass saw, per layer l = 0 .. depth-1: its input ``hs[l]`` (x for the
    first layer; ``hs[depth]`` is y_hat), its pre-activation ``pre[l]`` and dE/da_l ``da[l]``;
    ``grads`` is the flat gradient, in NetworkSpec.param_names() order."""

    loss: float
    hs: list[np.ndarray]
    pre: list[np.ndarray]
    da: list[np.ndarray]
    grads: list[np.ndarray] = field(default_factory=list)


def backward(spec: NetworkSpec, flat: Sequence[np.ndarray], x: np.ndarray, y: np.ndarray,
             derivative: Derivative | None = None, untransposed: frozenset = frozenset(),
             output_derivative: Derivative | None = None,
             carried: dict[int, Callable[[np.ndarray], np.ndarray]] | None = None,
             pre_as_input: bool = False) -> Trace:
    """The chain rule for E = 1/2 * mean_batch ||y_hat - y||^2, keeping a ``Trace``.

    The keywords let the diagnosis rebuild a known wrong backward pass: ``derivative``,
    another formula for the hidden activations' phi'; ``output_derivative``, one for the
    output layer's; ``untransposed``, layers through which dE/dh is carried down by W_l
    instead of W_l^T (square W_l only), and ``carried``, any other matrix in its place (by
    layer: W_l.reshape(out, in), say); ``pre_as_input``, each layer's pre-activation a_{l-1}
    used where its input h_{l-1} = phi(a_{l-1}) belongs in dE/dW_l.
    """
    params, acts = layers(spec, flat), spec.layer_activations()
    hs, pre = [x], []
    for (W, b), act in zip(params, acts):
        a = hs[-1] @ W + (0.0 if b is None else b[None, :])
        pre.append(a)
        hs.append(phi(act, a))
    r = hs[-1] - y
    batch = x.shape[0]
    dE_dh = r / batch  # E averages ||r||^2 / 2 over the batch
    das: list = [None] * spec.depth
    grads: list = []
    carried = {**dict.fromkeys(untransposed, lambda W: W), **(carried or {})}
    for l in reversed(range(spec.depth)):
        W, b = params[l]
        rule = derivative if l < spec.depth - 1 else output_derivative
        slope = rule(acts[l], pre[l], hs[l + 1]) if rule else dphi(acts[l], pre[l])
        das[l] = dE_dh * slope
        given = pre[l - 1] if pre_as_input and l else hs[l]
        layer = [given.T @ das[l]]
        if b is not None:
            layer.append(das[l].sum(axis=0))
        grads = layer + grads
        carry = carried[l](W) if l in carried else W.T
        dE_dh = das[l] @ carry
    return Trace(float(0.5 * np.sum(r * r) / batch), hs, pre, das, grads)


def exact_gradient(problem: Problem, flat: Sequence[np.ndarray]) -> list[np.ndarray]:
    """dE/dparams at flat float64 parameters by ``backward``."""
    return backward(problem.spec, flat, problem.x, problem.y).grads


def closed_form(problem: Problem, params: Params) -> list[np.ndarray] | None:
    """The worked example's gradients for the linear 1-1-1 network, else None.

    dE/dw_ih = (phi(a_o) - Y) * w_ho * X and dE/dw_ho = (phi(a_o) - Y) * phi(a_h), averaged
    over the batch; with bias, dE/db_h = (phi(a_o) - Y) * w_ho and dE/db_o = phi(a_o) - Y.
    """
    spec = problem.spec
    if not spec.is_worked_example or spec.layer_activations() != ("linear", "linear"):
        return None
    (w_ih, b_h), (w_ho, b_o) = map_params(lambda a: float(np.asarray(a).reshape(-1)[0]), params)
    X, Y = problem.x[:, 0], problem.y[:, 0]
    a_h = X * w_ih + (b_h or 0.0)
    err = a_h * w_ho + (b_o or 0.0) - Y  # phi(a_o) - Y
    g = [np.mean(err * w_ho * X), np.mean(err * a_h)]
    if spec.bias:
        g = [g[0], np.mean(err * w_ho), g[1], np.mean(err)]
    return [np.full_like(p, v) for p, v in zip(flatten(params), g)]


def rounded_start(problem: Problem) -> Params:
    """The initial parameters rounded to the problem's dtype, back in float64."""
    _, _, params = cast_problem(problem)
    return map_params(lambda a: a.astype(np.float64), params)


# ---- trajectories ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Variation:
    """A way an SGD loop can go wrong while each gradient is right, for the diagnosis:
    the step scaled by ``lr_factor``, gradients summed over the steps so far (``accumulate``:
    .grad never zeroed), tensors never updated (``frozen``, by flat index), each layer
    updated during the backward pass, so that dE/dh reaches the layer below through the new
    weights (``sequential``), or a known wrong backward pass (``mutation``: ``backward``'s
    keywords, as items), which may be right at the start and show only as training moves."""

    lr_factor: float = 1.0
    accumulate: bool = False
    frozen: frozenset = frozenset()
    sequential: bool = False
    mutation: tuple = ()


EXACT = Variation()


TRAJECTORIES: dict[str, Params] = {}  # the last few, by what they are made from
KEEP = 64


def reference_trajectory(problem: Problem, start: Params, steps: int, dtype: str = "float64",
                         variation: Variation = EXACT) -> Params:
    """``steps`` SGD steps with ``exact_gradient`` from ``start``, in ``dtype`` (the same
    trajectory asked for again, by every variant of a check, is computed once)."""
    digest = hashlib.sha256(repr((problem.spec, problem.lr, steps, dtype, variation)).encode())
    for a in (problem.x, problem.y, *flatten(start)):
        digest.update(np.ascontiguousarray(a).tobytes())
    key = digest.hexdigest()
    if key not in TRAJECTORIES:
        if len(TRAJECTORIES) >= KEEP:
            TRAJECTORIES.clear()
        TRAJECTORIES[key] = trajectory(problem, start, steps, dtype, variation)
    return [(W.copy(), None if b is None else b.copy()) for W, b in TRAJECTORIES[key]]


def trajectory(problem: Problem, start: Params, steps: int, dtype: str,
               variation: Variation) -> Params:
    dt = np.dtype(dtype)
    flat = [np.asarray(t, dtype=dt) for t in flatten(start)]
    x, y = problem.x.astype(dt), problem.y.astype(dt)
    lr = dt.type(problem.lr * variation.lr_factor)
    total = [np.zeros_like(t) for t in flat]
    for _ in range(steps):
        if variation.sequential:
            flat = sequential_step(problem.spec, flat, x, y, lr)
            continue
        g = backward(problem.spec, flat, x, y, **dict(variation.mutation)).grads
        if variation.accumulate:
            total = [s + gi for s, gi in zip(total, g)]
            g = total
        flat = [t if i in variation.frozen else (t - lr * gi).astype(dt)
                for i, (t, gi) in enumerate(zip(flat, g))]
    it = iter(flat)
    return [(next(it), next(it) if problem.spec.bias else None) for _ in range(problem.spec.depth)]


def sequential_step(spec: NetworkSpec, flat: list[np.ndarray], x: np.ndarray, y: np.ndarray,
                    lr) -> list[np.ndarray]:
    """One SGD step whose backward pass updates each layer as soon as its gradient is known,
    top layer first, and carries dE/dh down through the *updated* W_l (an in-place update
    inside the backward loop)."""
    params, acts = layers(spec, flat), spec.layer_activations()
    hs, pre = [x], []
    for (W, b), act in zip(params, acts):
        pre.append(hs[-1] @ W + (0.0 if b is None else b[None, :]))
        hs.append(phi(act, pre[-1]))
    dE_dh = (hs[-1] - y) / x.shape[0]
    new: list = []
    for l in reversed(range(spec.depth)):
        W, b = params[l]
        da = dE_dh * dphi(acts[l], pre[l])
        W = (W - lr * (hs[l].T @ da)).astype(W.dtype)
        layer = [W] if b is None else [W, (b - lr * da.sum(axis=0)).astype(b.dtype)]
        new = layer + new
        dE_dh = da @ W.T
    return new


def normalised_errors(values: Sequence[np.ndarray], refs: Sequence[np.ndarray],
                      floor: float = 1e-3) -> list[float]:
    """Per tensor max|x - ref| / max(max|ref|, floor * largest max|ref|)."""
    scale = max((float(np.max(np.abs(r))) for r in refs if r.size), default=0.0)
    out = []
    for v, r in zip(values, refs):
        v = np.asarray(v, dtype=np.float64)
        if not np.all(np.isfinite(v)):
            out.append(math.inf)
            continue
        denom = max(float(np.max(np.abs(r))) if r.size else 0.0, floor * scale, 1e-300)
        out.append(float(np.max(np.abs(v - r))) / denom if r.size else 0.0)
    return out


def trajectory_errors(params: Params, ref: Params, start: Params, dtype: str) -> list[float]:
    """Per tensor max|p - ref| / max(max|ref - start|, noise floor): the error relative to how
    far the reference moved, so that a Trainer that does nothing (or too little) scores ~1
    even when a few steps barely move wide networks' weights.

    The floor, TRAJECTORY_NOISE_ULPS rounding units of the starting values divided by the
    tolerance, keeps a converged trajectory (which hardly moves) from being judged on
    rounding noise: there a Trainer that stands still is as right as one that moves.
    """
    eps, tol = float(np.finfo(dtype).eps), TOLERANCES[dtype].trajectory
    out = []
    for p, r, s in zip(flatten(params), flatten(ref), flatten(start)):
        p = np.asarray(p, dtype=np.float64)
        if p.shape != r.shape and p.size == r.size and np.squeeze(p).shape == np.squeeze(r).shape:
            p = p.reshape(r.shape)  # (1, n) for (n,): the same numbers, kept by broadcasting
        if p.shape != r.shape or not np.all(np.isfinite(p)):
            out.append(math.inf)
            continue
        moved = float(np.max(np.abs(r - s))) if r.size else 0.0
        floor = TRAJECTORY_NOISE_ULPS * eps * float(np.max(np.abs(s), initial=0.0)) / tol
        out.append(float(np.max(np.abs(p - r), initial=0.0)) / max(moved, floor, 1e-300))
    return out
