"""One training step of a small network written out by hand, the worked example's way: the
learner's answer key (``backprop-bench explain``).

Every net input, output, delta, gradient and updated weight, each with its formula and the
numbers that go into it, from the chain rule of ``reference.backward`` (float64, independent
of every framework). The notation is ``harness.check.trace``'s: h₀ = x, a_l = h_l-1 W_l + b_l,
h_l = φ(a_l), ŷ = h_L, δ_l = ∂E/∂a_l; an index is written only where a tensor has more than
one entry ([sample, unit] for several samples). The loss is E = ½ · mean over the batch of
‖ŷ − y‖², or a published example's own (``Convention``): a constant factor on E, and so on
every delta and gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.check.reference import backward, dphi
from harness.check.trace import sub
from implementations.problem import BenchError, Problem, flatten

MAX_WIDTH, MAX_BATCH = 6, 4  # beyond these, a hand calculation is a wall of numbers


@dataclass(frozen=True)
class Convention:
    """How a publication writes its loss: ``scale`` = E_theirs / E_ours, and its words."""

    scale: float = 1.0
    text: str = "E = ½ · (1/B) Σ_batch ‖ŷ − y‖²"


def num(v: float) -> str:
    """A number as a hand calculation writes it: up to 10 significant digits."""
    return f"{float(v):.10g}".replace("-", "−")


def par(v: float) -> str:
    """The same, in parentheses when negative (inside a product or a difference)."""
    text = num(v)
    return f"({text})" if text.startswith("−") else text


class Names:
    """How a quantity of one network and batch is written: W₂[0, 1], h₁[2], δ₃[1, 0], x."""

    def __init__(self, problem: Problem):
        self.batch, self.widths = problem.batch, problem.spec.widths

    def unit(self, letter: str, l: int, s: int, j: int) -> str:
        base = "x" if letter == "h" and l == 0 else f"{letter}{sub(l)}"
        idx = ([str(s)] if self.batch > 1 else []) + ([str(j)] if self.widths[l] > 1 else [])
        return f"{base}[{', '.join(idx)}]" if idx else base

    def param(self, letter: str, l: int, idx: tuple) -> str:
        size = self.widths[l - 1] * self.widths[l] if letter == "W" else self.widths[l]
        at = f"[{', '.join(map(str, idx))}]" if size > 1 else ""
        return f"{letter}{sub(l)}{at}"


def check_size(problem: Problem) -> None:
    spec = problem.spec
    if max(spec.widths) > MAX_WIDTH or problem.batch > MAX_BATCH:
        raise BenchError(f"explain writes out every number: widths up to {MAX_WIDTH} and a "
                         f"batch of at most {MAX_BATCH}, not "
                         f"{'-'.join(map(str, spec.widths))} with batch {problem.batch}")


def layer_params(problem: Problem, flat: list, l: int) -> tuple[np.ndarray, np.ndarray | None]:
    per = 2 if problem.spec.bias else 1
    return flat[per * (l - 1)], flat[per * (l - 1) + 1] if problem.spec.bias else None


def explain(problem: Problem, convention: Convention = Convention(), shared: bool = False,
            frozen: tuple[str, ...] = ()) -> str:
    """The whole step: start, forward pass, loss, backward pass, update, and the loss after;
    ``shared``: one bias per layer (its gradient the sum over its units), ``frozen``: tensors
    the step leaves as they are (a published example's)."""
    check_size(problem)
    spec = problem.spec
    flat = [np.asarray(t, np.float64) for t in flatten(problem.params0)]
    trace = backward(spec, flat, problem.x, problem.y)
    c, names = convention.scale, Names(problem)
    steps = [np.full_like(g, g.sum()) if shared and n.startswith("b") else g
             for n, g in zip(spec.param_names(), trace.grads)]
    after = [t if n in frozen else t - problem.lr * c * g
             for n, t, g in zip(spec.param_names(), flat, steps)]
    again = backward(spec, after, problem.x, problem.y)
    return "\n".join([
        f"One SGD step of {spec.label()}, batch {problem.batch}, η = {num(problem.lr)}, by hand",
        f"  h₀ = x; a = h W{' + b' if spec.bias else ''} is a layer's net input, h = φ(a) its "
        f"output, ŷ = h{sub(spec.depth)}; δ = ∂E/∂a; {convention.text}",
        "", "Start", *start_lines(problem, flat),
        "", "Forward pass", *forward_lines(problem, flat, trace, names),
        "", "Loss", *loss_lines(problem, trace, convention),
        "", "Backward pass", *backward_lines(problem, flat, trace, c, names),
        "", f"Update (η = {num(problem.lr)})",
        *update_lines(problem, flat, steps, after, c, names, shared, frozen),
        "", f"After the step: E = {num(c * again.loss)} (it was {num(c * trace.loss)})"])


def start_lines(problem: Problem, flat: list) -> list[str]:
    names = [n[0] + sub(int(n[1:])) for n in problem.spec.param_names()]
    return ([f"  {n} = {matrix(t)}" for n, t in zip(names, flat)]
            + [f"  x = {matrix(problem.x)}", f"  y = {matrix(problem.y)}"])


def matrix(t: np.ndarray) -> str:
    t = np.asarray(t)
    if t.size == 1:
        return num(t.reshape(-1)[0])
    if t.ndim == 1:
        return "[" + ", ".join(num(v) for v in t) + "]"
    return "[" + "; ".join(", ".join(num(v) for v in row) for row in t) + "]"


def forward_lines(problem: Problem, flat: list, trace, names: Names) -> list[str]:
    spec, lines = problem.spec, []
    for l in range(1, spec.depth + 1):
        W, b = layer_params(problem, flat, l)
        act = spec.layer_activations()[l - 1]
        h_in, a, h = trace.hs[l - 1], trace.pre[l - 1], trace.hs[l]
        for s in range(problem.batch):
            for j in range(W.shape[1]):
                terms = [f"{names.unit('h', l - 1, s, i)} {names.param('W', l, (i, j))}"
                         for i in range(W.shape[0])]
                nums = [f"{par(h_in[s, i])} × {par(W[i, j])}" for i in range(W.shape[0])]
                if b is not None:
                    terms.append(names.param("b", l, (j,)))
                    nums.append(par(b[j]))
                an, hn = names.unit("a", l, s, j), names.unit("h", l, s, j)
                lines.append(f"  {an} = {' + '.join(terms)} = {' + '.join(nums)} = "
                             f"{num(a[s, j])}")
                out = "ŷ = " if l == spec.depth and W.shape[1] == 1 and problem.batch == 1 else ""
                shown = f"{act}({an})" if act != "linear" else an
                lines.append(f"  {out}{hn} = {shown} = {num(h[s, j])}")
    return lines


def loss_lines(problem: Problem, trace, convention: Convention) -> list[str]:
    y_hat, y, batch = trace.hs[-1], problem.y, problem.batch
    parts = [f"({num(y_hat[s, o])} − {par(y[s, o])})²" for s in range(batch)
             for o in range(y.shape[1])]
    mean = f"½ · (1/{batch}) · " if batch > 1 else "½ · "
    inside = " + ".join(parts) if len(parts) > 1 else parts[0]
    lines = [f"  E = {mean}{'[' + inside + ']' if len(parts) > 1 else inside} = "
             f"{num(trace.loss)}"]
    if convention.scale != 1.0:
        lines.append(f"  as the publication writes it ({convention.text}): "
                     f"{num(convention.scale)} × {num(trace.loss)} = "
                     f"{num(convention.scale * trace.loss)}")
    return lines


def backward_lines(problem: Problem, flat: list, trace, c: float, names: Names) -> list[str]:
    spec, L, lines = problem.spec, problem.spec.depth, []
    for l in range(L, 0, -1):
        act = spec.layer_activations()[l - 1]
        W, _ = layer_params(problem, flat, l)
        slope, d = dphi(act, trace.pre[l - 1]), c * trace.da[l - 1]
        times = "" if act == "linear" else f" · {act}′({names.unit('a', l, 0, 0)[:2]})"
        for s in range(problem.batch):
            for j in range(W.shape[1]):
                dn = names.unit("δ", l, s, j)
                dphi_text = "" if act == "linear" else f" × {num(slope[s, j])}"
                if l == L:
                    y_hat, y = trace.hs[-1][s, j], problem.y[s, j]
                    scale = f"{num(c)} · " if c != 1.0 else ""
                    over = f" / {problem.batch}" if problem.batch > 1 else ""
                    lines.append(f"  {dn} = {scale}(ŷ − y){over}{times} = {scale}({num(y_hat)} "
                                 f"− {par(y)}){over}{dphi_text} = {num(d[s, j])}")
                    continue
                W_up, _ = layer_params(problem, flat, l + 1)
                up = c * trace.da[l]
                terms = " + ".join(f"{names.unit('δ', l + 1, s, k)} "
                                   f"{names.param('W', l + 1, (j, k))}"
                                   for k in range(W_up.shape[1]))
                nums = " + ".join(f"{par(up[s, k])} × {par(W_up[j, k])}"
                                  for k in range(W_up.shape[1]))
                wrap = (lambda t: f"({t})") if times else (lambda t: t)
                lines.append(f"  {dn} = {wrap(terms)}{times} = {wrap(nums)}{dphi_text} = "
                             f"{num(d[s, j])}")
        lines += gradient_lines(problem, flat, trace, l, c, names)
    return lines


def gradient_lines(problem: Problem, flat: list, trace, l: int, c: float, names: Names
                   ) -> list[str]:
    h_in, d = trace.hs[l - 1], c * trace.da[l - 1]
    W, b = layer_params(problem, flat, l)
    batch, lines = problem.batch, []
    for i in range(W.shape[0]):
        for j in range(W.shape[1]):
            terms = " + ".join(f"{names.unit('h', l - 1, s, i)} {names.unit('δ', l, s, j)}"
                               for s in range(batch))
            nums = " + ".join(f"{par(h_in[s, i])} × {par(d[s, j])}" for s in range(batch))
            lines.append(f"  ∂E/∂{names.param('W', l, (i, j))} = {terms} = {nums} = "
                         f"{num(h_in[:, i] @ d[:, j])}")
    for j in range(W.shape[1]) if b is not None else ():
        terms = " + ".join(names.unit("δ", l, s, j) for s in range(batch))
        nums = " + ".join(par(d[s, j]) for s in range(batch))
        value = f" = {nums}" if batch > 1 else ""
        lines.append(f"  ∂E/∂{names.param('b', l, (j,))} = {terms}{value} = "
                     f"{num(d[:, j].sum())}")
    return lines


def update_lines(problem: Problem, flat: list, grads: list, after: list, c: float,
                 names: Names, shared: bool = False, frozen: tuple[str, ...] = ()) -> list[str]:
    lines = []
    for n, t, g, new in zip(problem.spec.param_names(), flat, grads, after):
        if n in frozen:
            lines.append(f"  {n[0]}{sub(int(n[1:]))} is frozen: the step leaves it as it is")
            continue
        if shared and n.startswith("b"):
            p = f"{n[0]}{sub(int(n[1:]))}"
            lines.append(f"  {p} (shared) ← {p} − η Σ_units ∂E/∂{p} = {num(t[0])} − "
                         f"{num(problem.lr)} × {par(c * g[0])} = {num(new[0])}")
            continue
        for idx in np.ndindex(t.shape):
            p = names.param(n[0], int(n[1:]), idx)
            lines.append(f"  {p} ← {p} − η ∂E/∂{p} = {num(t[idx])} − {num(problem.lr)} × "
                         f"{par(c * g[idx])} = {num(new[idx])}")
    return lines
