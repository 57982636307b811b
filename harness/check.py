"""Are the gradients right? Every framework against independent references, and each other.

References, all float64 and computed from the problem's parameters *as rounded to the dtype
under test*, so that the rounding of the starting point is not counted as an error:

* **finite differences**: central differences of ``reference_loss``, a float64 forward pass
  written here, independent of every implementation's forward and backward pass;
* **closed form**: the worked example's formulas, for the linear 1-1-1 network;
* **the other frameworks**: every framework's gradients against every other's;
* **trajectory**: each variant's Trainer trained N steps, against the float64 NumPy
  trajectory from the same start (NumPy's gradients being themselves checked above).

Gradient errors are normalised per tensor: ``max|x - ref| / max(max|ref|, 1e-3 * G)``, where
G is the largest reference magnitude among the tensors compared, so that a tensor whose
gradient is all but zero is not judged on rounding noise. Trajectory errors are normalised by
how far the reference moved (``trajectory_errors``). Tolerances are set per dtype
(TOLERANCES).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from harness.tables import text_table
from implementations import numpy_backprop
from implementations.problem import (
    NetworkSpec,
    Params,
    Problem,
    cast_problem,
    flatten,
    map_params,
)


@dataclass(frozen=True)
class Tolerances:
    """Largest normalised error accepted against each reference."""

    finite_differences: float
    closed_form: float
    frameworks: float
    trajectory: float


TOLERANCES = {
    # float64: FD truncation and rounding error is ~1e-9 relative with the step used here.
    "float64": Tolerances(finite_differences=1e-6, closed_form=1e-12, frameworks=1e-10,
                          trajectory=1e-8),
    # float32: ~1e-7 per operation, grown by sums of up to a few thousand terms.
    "float32": Tolerances(finite_differences=1e-4, closed_form=1e-5, frameworks=1e-4,
                          trajectory=1e-3),
}
FD_MAX_ENTRIES = 48  # finite differences on at most this many seeded entries per tensor
RELATIVE_FLOOR = 1e-3
TRAJECTORY_NOISE_ULPS = 100
NOISE_FACTOR = 10


@dataclass
class Row:
    """One comparison: a tensor of one framework or variant against one reference."""

    subject: str  # framework or variant name
    dtype: str
    tensor: str
    reference: str  # "finite differences", "closed form", "frameworks", "trajectory"
    error: float
    tolerance: float
    detail: str = ""
    problem: str = ""  # the problem's label(), so that a check of several networks stays apart

    @property
    def passed(self) -> bool:
        return math.isfinite(self.error) and self.error <= self.tolerance

    def failure(self) -> str:
        detail = f" {self.detail}" if self.detail else ""
        return (
            f"{self.subject} {self.dtype} {self.tensor} vs {self.reference}: error "
            f"{self.error:.2e} > tolerance {self.tolerance:.0e}{detail}"
        )


@dataclass
class Report:
    """All rows of a check; passed only if every row passed."""

    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def failures(self) -> list[str]:
        return [r.failure() for r in self.rows if not r.passed]

    def as_dict(self) -> dict:
        return {
            "passed": self.passed,
            "rows": [{**asdict(r), "passed": r.passed} for r in self.rows],
            "notes": self.notes,
        }


def label(problem: Problem) -> str:
    return f"{problem.spec.label()} b{problem.batch}"


# ---- independent float64 references ---------------------------------------------------------

def _phi(name: str, a: np.ndarray) -> np.ndarray:
    if name == "linear":
        return a
    if name == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * a))  # an identity, not the implementations' formula
    if name == "tanh":
        return np.tanh(a)
    return np.where(a > 0.0, a, 0.0)  # relu


def reference_loss(spec: NetworkSpec, flat: Sequence[np.ndarray], x: np.ndarray,
                   y: np.ndarray) -> float:
    """E for flat float64 parameters, with einsum and explicit bias handling."""
    h, i = x, 0
    for act in spec.layer_activations():
        a = np.einsum("bi,io->bo", h, flat[i])
        i += 1
        if spec.bias:
            a = a + flat[i][None, :]
            i += 1
        h = _phi(act, a)
    return float(0.5 * np.mean(np.sum((h - y) ** 2, axis=1)))


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


def normalised_errors(values: Sequence[np.ndarray], refs: Sequence[np.ndarray]) -> list[float]:
    """Per tensor max|x - ref| / max(max|ref|, 1e-3 * largest max|ref|)."""
    scale = max((float(np.max(np.abs(r))) for r in refs if r.size), default=0.0)
    out = []
    for v, r in zip(values, refs):
        v = np.asarray(v, dtype=np.float64)
        if not np.all(np.isfinite(v)):
            out.append(math.inf)
            continue
        denom = max(float(np.max(np.abs(r))) if r.size else 0.0, RELATIVE_FLOOR * scale, 1e-300)
        out.append(float(np.max(np.abs(v - r))) / denom if r.size else 0.0)
    return out


def reference_trajectory(problem: Problem, start: Params, steps: int,
                         dtype: str = "float64") -> Params:
    """``steps`` SGD steps of the NumPy manual backprop from ``start``, in ``dtype``."""
    dt = np.dtype(dtype)
    params = map_params(lambda a: np.asarray(a, dtype=dt), start)
    x, y = problem.x.astype(dt), problem.y.astype(dt)
    for _ in range(steps):
        params = numpy_backprop.sgd_step(problem.spec, params, x, y, problem.lr)
    return params


def rounded_start(problem: Problem) -> Params:
    """The initial parameters rounded to the problem's dtype, back in float64."""
    _, _, params = cast_problem(problem)
    return map_params(lambda a: a.astype(np.float64), params)


# ---- the checks ------------------------------------------------------------------------------

def framework_gradients(module, problem: Problem, device: str = "cpu") -> list[np.ndarray]:
    """A framework's gradients at the problem's starting point, as float64 NumPy arrays."""
    return framework_loss_and_gradients(module, problem, device)[1]


def framework_loss_and_gradients(module, problem: Problem,
                                 device: str = "cpu") -> tuple[float, list[np.ndarray]]:
    """A framework's (E, gradients) at the problem's starting point, as float64 NumPy."""
    x, y, params = cast_problem(problem)
    fx, fy = module.to_framework(x, device), module.to_framework(y, device)
    fparams = map_params(lambda a: module.to_framework(a, device, trainable=True), params)
    E, g = module.grads(problem.spec, fparams, fx, fy)
    grads = [np.asarray(module.to_numpy(t), dtype=np.float64).reshape(p.shape)
             for t, p in zip(flatten(g), flatten(params))]
    return float(np.asarray(module.to_numpy(E)).reshape(-1)[0]), grads


def trainer_loss_and_gradients(trainer) -> tuple[float, list[np.ndarray]]:
    """A variant's own (E, gradients) at its Trainer's current point, as float64 NumPy."""
    E, g = trainer.grads()
    return float(E), [np.asarray(t, dtype=np.float64) for t in flatten(g)]


def check_gradients(problem: Problem, modules: dict, device: str = "cpu",
                    report: Report | None = None, max_entries: int = FD_MAX_ENTRIES,
                    trainers: dict | None = None) -> Report:
    """Each framework's loss vs the reference forward pass, and its gradients vs finite
    differences (on at most ``max_entries`` entries per tensor), the closed form and each
    other. ``trainers`` adds variants whose Trainer computes its own gradients (``grads()``:
    nn.Module and optimizer, Flax, Keras), fresh from the problem's start, by variant name."""
    report = report or Report()
    spec, tol = problem.spec, TOLERANCES[problem.spec.dtype]
    names = spec.param_names()
    start = rounded_start(problem)
    flat = flatten(start)
    fd = finite_differences(problem, flat, max_entries)
    exact = closed_form(problem, start)
    results = {name: framework_loss_and_gradients(m, problem, device)
               for name, m in modules.items()}
    results.update({name: trainer_loss_and_gradients(t) for name, t in (trainers or {}).items()})
    got = {name: g for name, (_, g) in results.items()}
    E_ref = reference_loss(spec, flat, problem.x, problem.y)
    for name, (E, _) in results.items():
        e = abs(E - E_ref) / max(abs(E_ref), 1e-300) if math.isfinite(E) else math.inf
        report.rows.append(Row(name, spec.dtype, "E", "reference loss", e, tol.frameworks,
                               problem=label(problem)))
    sampled = [len(idx) for idx, _ in fd]
    if any(s < t.size for s, t in zip(sampled, flat)):
        report.notes.append(
            f"{spec.label()}: finite differences on {max_entries} seeded entries per tensor"
        )
    for name, g in got.items():
        fd_errs = normalised_errors([gi.reshape(-1)[idx] for gi, (idx, _) in zip(g, fd)],
                                    [vals for _, vals in fd])
        rows = [("finite differences", fd_errs, tol.finite_differences)]
        if exact is not None:
            rows.append(("closed form", normalised_errors(g, exact), tol.closed_form))
        others = [o for n, o in got.items() if n != name]
        if others:
            cross = np.max([normalised_errors(g, o) for o in others], axis=0)
            rows.append(("frameworks", list(cross), tol.frameworks))
        for reference, errs, t in rows:
            for tensor, e in zip(names, errs):
                report.rows.append(Row(name, spec.dtype, tensor, reference, e, t,
                                       problem=label(problem)))
    return report


def check_trajectory(problem: Problem, variant, steps: int, device: str = "cpu",
                     report: Report | None = None) -> Report:
    """A variant's Trainer after ``steps`` steps vs the float64 reference trajectory."""
    report = report or Report()
    trainer = variant.make(problem, device)
    trainer.run(steps)
    subject = getattr(variant, "label", variant.name)  # with its workers, if several
    return compare_to_reference(problem, subject, trainer.params(), rounded_start(problem),
                                steps, report)


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
        if not np.all(np.isfinite(p)):
            out.append(math.inf)
            continue
        moved = float(np.max(np.abs(r - s))) if r.size else 0.0
        floor = TRAJECTORY_NOISE_ULPS * eps * float(np.max(np.abs(s), initial=0.0)) / tol
        out.append(float(np.max(np.abs(p - r), initial=0.0)) / max(moved, floor, 1e-300))
    return out


def compare_to_reference(problem: Problem, subject: str, params: Params, start: Params,
                         steps: int, report: Report | None = None) -> Report:
    """Rows for params vs the reference trajectory of ``steps`` steps from ``start``."""
    report = report or Report()
    dtype = problem.spec.dtype
    ref = reference_trajectory(problem, start, steps)
    errs = trajectory_errors(params, ref, start, dtype)
    tols = trajectory_tolerances(problem, start, steps, ref)
    for tensor, e, (tol, why) in zip(problem.spec.param_names(), errs, tols):
        report.rows.append(Row(subject, dtype, tensor, "trajectory", e, tol,
                               f"after {steps} steps{why}", label(problem)))
    return report


def trajectory_tolerances(problem: Problem, start: Params, steps: int,
                          ref: Params) -> list[tuple[float, str]]:
    """Per tensor (tolerance, note). Below float64, the tolerance is at least
    NOISE_FACTOR times the error of NumPy's own trajectory in the problem's dtype: long runs
    near convergence move less than float32 rounding adds up, and that is no one's bug."""
    dtype, tol = problem.spec.dtype, TOLERANCES[problem.spec.dtype].trajectory
    if dtype == "float64":
        return [(tol, "")] * len(flatten(start))
    own = trajectory_errors(reference_trajectory(problem, start, steps, dtype), ref, start, dtype)
    return [(tol, "") if NOISE_FACTOR * e <= tol else
            (NOISE_FACTOR * e, f" (tolerance {NOISE_FACTOR}× NumPy {dtype}'s own error)")
            for e in own]


# ---- the table `check` prints ----------------------------------------------------------------

def render(report: Report, problems: list[Problem]) -> str:
    """The tables `backprop-bench check` prints: per problem, gradients and trajectories."""
    out = []
    for problem in problems:
        d = problem.spec.dtype
        t = TOLERANCES[d]
        out.append(f"\n{problem.spec.label()}, batch {problem.batch}: tolerances "
                   f"FD {t.finite_differences:.0e}, closed form {t.closed_form:.0e}, "
                   f"frameworks {t.frameworks:.0e}, trajectory {t.trajectory:.0e}")
        rows = [r for r in report.rows if r.problem == label(problem)]
        losses = [r for r in rows if r.reference == "reference loss"]
        if losses:
            out.append("loss E vs the reference forward pass: " + ", ".join(
                f"{r.subject} {r.error:.1e}{'' if r.passed else ' FAIL'}" for r in losses))
        grad_rows = {}
        for r in rows:
            if r.reference not in ("trajectory", "reference loss"):
                grad_rows.setdefault((r.subject, r.tensor), {})[r.reference] = r
        table = []
        for (subject, tensor), refs in grad_rows.items():
            cells = [refs.get(k) for k in ("finite differences", "closed form", "frameworks")]
            ok = all(c.passed for c in cells if c)
            table.append([subject, tensor] + [f"{c.error:.1e}" if c else "n/a" for c in cells]
                         + ["ok" if ok else "FAIL"])
        if table:
            out.append(text_table(["framework", "tensor", "vs FD", "vs closed form",
                                   "vs others", "result"], table, "llrrrl"))
        traj = {}
        for r in rows:
            if r.reference == "trajectory":
                traj.setdefault(r.subject, []).append(r)
        if traj:
            trows = []
            for subject, rs in traj.items():
                worst = max(rs, key=lambda r: r.error)
                trows.append([subject, worst.detail.replace("after ", ""), worst.tensor,
                              f"{worst.error:.1e}", "ok" if all(r.passed for r in rs) else "FAIL"])
            out.append("")
            out.append(text_table(["trajectory of", "steps", "worst tensor", "error", "result"],
                                  trows, "lrlrl"))
    for note in dict.fromkeys(report.notes):
        out.append(f"note: {note}")
    failures = report.failures()
    if failures:
        out.append(f"\nFAILED: {len(failures)} comparison(s) out of tolerance")
        out += [f"  {f}" for f in failures]
    else:
        out.append(f"\nPASSED: all {len(report.rows)} comparisons within tolerance")
    return "\n".join(out)
