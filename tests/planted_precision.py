"""Precision bugs, planted: a plugin framework (``BACKPROP_BENCH_FRAMEWORKS``) of NumPy
loops in bfloat16 and float16, one right and one per classic low-precision mistake, for
``tests/test_precision.py``. Each is one variant, so that one check judges them all.

* ``lowp-mixed``: mixed precision done right: float32 master weights, the forward and
  backward passes on a compute copy in the low format, float32 accumulation, and for float16
  the loss scaled by 2^16 (the gradients unscaled in float32);
* ``lowp-sums``: a pure low-precision step whose sums (each layer's products, the batch's
  sums, the loss) accumulate in the format itself, where float32 accumulation is promised;
* ``lowp-master``: mixed precision with the master weights kept in the format;
* ``lowp-unscaled``: mixed precision in float16 without loss scaling;
* ``lowp-stale``: mixed precision whose compute copy is cast after the step that should use
  it (each gradient is taken at the previous step's weights).
"""

from __future__ import annotations

import numpy as np

from implementations.contract import LOW_DTYPES, Framework, Unavailable, Variant
from implementations.problem import Problem, cast_problem, numpy_dtype

FRAMEWORK = Framework("planted-precision", label="Planted precision bugs", packages=("numpy",),
                      order=98, gradients=False, arrays=False, api=False)
VARIANTS = (
    Variant("lowp-mixed", "idiomatic", "NumPy mixed precision, done right", trainer="Mixed",
            dtypes=LOW_DTYPES, precision="mixed"),
    Variant("lowp-sums", "idiomatic", "NumPy in the low format, its sums accumulated in it",
            trainer="Sums", dtypes=LOW_DTYPES),
    Variant("lowp-master", "idiomatic", "mixed precision, master weights kept low",
            trainer="Master", dtypes=LOW_DTYPES, precision="mixed"),
    Variant("lowp-unscaled", "idiomatic", "mixed precision in float16, no loss scaling",
            trainer="Unscaled", dtypes=("float16",), precision="mixed"),
    Variant("lowp-stale", "idiomatic", "mixed precision, the compute copy cast a step late",
            trainer="Stale", dtypes=LOW_DTYPES, precision="mixed"),
)
SCALE = 2.0 ** 16


def check_device(device: str) -> None:
    if device != "cpu":
        raise Unavailable("the planted precision bugs run on the CPU only")


def settings(threads: int) -> dict:
    return {}


def tanh_only(problem: Problem) -> None:
    if problem.spec.layer_activations()[:-1] != ("tanh",) * (problem.spec.depth - 1) or (
            problem.spec.output_activation != "linear"):
        raise Unavailable("the planted precision bugs run tanh hidden layers and a linear "
                          "output only")


def matmul(a, b, dt, low_sums: bool):
    if not low_sums:
        return np.matmul(a.astype(np.float32), b.astype(np.float32)).astype(dt)
    out = np.zeros((a.shape[0], b.shape[1]), dtype=dt)
    for k in range(a.shape[1]):  # each of the n products added in the format, one at a time
        out = (out + (a[:, k:k + 1] * b[k:k + 1, :]).astype(dt)).astype(dt)
    return out


def batch_sum(a, dt, low_sums: bool):
    if not low_sums:
        return a.astype(np.float32).sum(axis=0).astype(dt)
    out = np.zeros(a.shape[1], dtype=dt)
    for row in a:
        out = (out + row).astype(dt)
    return out


def grads(params, x, y, dt, scale: float = 1.0, low_sums: bool = False, unscale_low=False):
    """(E, float32 gradients) of the compute copy ``params`` (in the format ``dt``), with
    the loss scaled by ``scale`` (the gradients unscaled in float32)."""
    hs = [x]
    for i, (W, b) in enumerate(params):
        a = matmul(hs[-1], W, dt, low_sums)
        a = a if b is None else (a + b).astype(dt)
        hs.append(np.tanh(a).astype(dt) if i < len(params) - 1 else a)
    r = (hs[-1] - y).astype(dt)
    if low_sums:  # the loss accumulated in the format too
        E = float(batch_sum((r * r).astype(dt), dt, True).astype(np.float32).sum()) / (2 * len(x))
    else:  # the loss in float32, as autocast computes it
        E = float(np.sum(r.astype(np.float32) ** 2)) / (2 * len(x))
    d = (r * dt.type(scale / len(x))).astype(dt)
    g = []
    for i in reversed(range(len(params))):
        if i < len(params) - 1:
            d = (d * (1 - hs[i + 1] * hs[i + 1]).astype(dt)).astype(dt)
        gW = matmul(hs[i].T, d, dt, low_sums)
        g.insert(0, (gW, None if params[i][1] is None else batch_sum(d, dt, low_sums)))
        d = matmul(d, params[i][0].T, dt, low_sums)
    if unscale_low:
        return E, [tuple(None if t is None else (t / dt.type(scale)).astype(np.float32)
                         for t in layer) for layer in g]
    return E, [tuple(None if t is None else t.astype(np.float32) / scale for t in layer)
               for layer in g]


class Mixed:
    """float32 master weights, a low compute copy, float32 updates; float16 scales its loss."""

    master_low = stale = low_sums = False
    scaled = True

    def __init__(self, problem: Problem, device: str = "cpu"):
        check_device(device)
        tanh_only(problem)
        self.dt = numpy_dtype(problem.spec.dtype)
        x, y, params = cast_problem(problem)
        self.x, self.y, self.lr = x, y, problem.lr
        keep = self.dt if self.master_low else np.float32
        self.master = [tuple(None if t is None else np.array(t, dtype=keep) for t in layer)
                       for layer in params]
        self.copy = self.compute_copy()
        self.scale = SCALE if self.scaled and problem.spec.dtype == "float16" else 1.0

    def compute_copy(self):
        return [tuple(None if t is None else t.astype(self.dt) for t in layer)
                for layer in self.master]

    def run(self, steps: int) -> None:
        for _ in range(steps):
            if not self.stale:
                self.copy = self.compute_copy()
            _, g = grads(self.copy, self.x, self.y, self.dt, self.scale, self.low_sums)
            if self.stale:
                self.copy = self.compute_copy()
            keep = self.master[0][0].dtype
            self.master = [tuple(None if t is None else (t - self.lr * gt).astype(keep)
                                 for t, gt in zip(layer, glayer))
                           for layer, glayer in zip(self.master, g)]

    def params(self):
        return [tuple(None if t is None else t.astype(np.float32) for t in layer)
                for layer in self.master]

    def loss(self) -> float:
        return grads(self.compute_copy(), self.x, self.y, self.dt)[0]

    def grads(self):
        return grads(self.compute_copy(), self.x, self.y, self.dt, self.scale, self.low_sums)


class Master(Mixed):
    master_low = True


class Unscaled(Mixed):
    scaled = False


class Stale(Mixed):
    stale = True


class Sums(Mixed):
    """A pure low-precision step (its weights in the format too) with low-precision sums."""

    master_low = low_sums = True

    def grads(self):
        E, g = grads(self.compute_copy(), self.x, self.y, self.dt, 1.0, True)
        return E, g
