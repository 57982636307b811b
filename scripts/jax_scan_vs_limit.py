"""Why jax-fori (jax-scan when this was written) stands at ~1.3x the limit on the worked
example: the loop or the arithmetic?

Times, in one process, the numba `limit` loop and three fused JAX loops of the 1-1-1 SGD step
(lax.scan, unroll=8, inputs as arguments, nothing folded):

* the suite's step (jax_backprop.sgd_step on (1, 1) arrays: matmuls and a reduction);
* the hand-written step on 0-d scalars;
* jax.grad of the loss on 0-d scalars.

Run from the repository root: PYTHONPATH=. python scripts/jax_scan_vs_limit.py
"""

from __future__ import annotations

import time
from functools import partial

import jax
import jax.numpy as jnp

from implementations import jax_backprop as jb
from implementations.numba_limit import kernel
from implementations.problem import make_problem

jax.config.update("jax_enable_x64", True)
STEPS, REPS = 20_000_000, 7


def median_ns(fn) -> float:
    fn(STEPS)
    times = []
    for _ in range(REPS):
        t0 = time.perf_counter()
        fn(STEPS)
        times.append(time.perf_counter() - t0)
    return sorted(times)[REPS // 2] / STEPS * 1e9


def manual(w, x, y, lr):
    w_ih, w_ho = w
    a_h = x * w_ih
    r = a_h * w_ho - y
    return w_ih - lr * (r * w_ho * x), w_ho - lr * (r * a_h)


def autodiff(w, x, y, lr):
    g = jax.grad(lambda w: 0.5 * (x * w[0] * w[1] - y) ** 2)(w)
    return w[0] - lr * g[0], w[1] - lr * g[1]


def scalar_loop(step):
    @partial(jax.jit, static_argnums=4)
    def run(w, x, y, lr, n):
        return jax.lax.scan(lambda w, _: (step(w, x, y, lr), None), w, None, length=n,
                            unroll=8)[0]

    args = [jnp.float64(v) for v in (1.0, -1.0, 0.1)]
    w = (jnp.float64(0.15), jnp.float64(0.3))
    return lambda n: jax.block_until_ready(run(w, *args, n))


def suite_loop():
    t = jb.Trainer(make_problem(), loop=jb.FusedLoop)
    L = t._loop
    return lambda n: jax.block_until_ready(
        jb.fused_steps(L.net, t._params, L.x, L.y, L.lr, L.unroll, n))


def main() -> None:
    loop = kernel("linear", "linear", False)
    limit = median_ns(lambda n: loop(0.15, 0.0, 0.3, 0.0, 1.0, -1.0, 0.1, n))
    print(f"limit (numba): {limit:.2f} ns/step")
    for name, fn in (("jax-fori, the suite's step on (1, 1) arrays", suite_loop()),
                     ("the hand-written step on 0-d scalars", scalar_loop(manual)),
                     ("jax.grad of the loss on 0-d scalars", scalar_loop(autodiff))):
        ns = median_ns(fn)
        print(f"{name}: {ns:.2f} ns/step, {ns / limit:.2f}x the limit")


if __name__ == "__main__":
    main()
