"""Run in a process of its own by tests/test_implementations.py, once per framework that is
``isolated``: the tests that test_implementations makes of the frameworks sharing its
process, made here of this one (``python tests/helpers_isolated.py FRAMEWORK``).

* its functional core (where it has one) on the worked example, in each dtype its main
  variant declares;
* every variant's Trainer on the worked example, with its own gradients where it has them,
  its parameters copies and snapshots, the problem left unchanged, and its trajectory on a
  wider network with a bias and the first curved activation it declares.

What a variant declares it cannot run is left out. Prints "ok: ..." (what ran) or "skip:
reason" where the framework is unavailable here (a package missing, no C compiler); exits
non-zero with the failing assertion on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).parent)]

import numpy as np  # noqa: E402
import test_implementations as t  # noqa: E402

from harness.check import check_trajectory  # noqa: E402
from harness.check.report import label  # noqa: E402
from implementations import registry  # noqa: E402
from implementations.contract import Unavailable  # noqa: E402
from implementations.problem import DTYPES, NetworkSpec, flatten, make_problem  # noqa: E402

SLOW_BUILD_S = 10.0  # as check leaves them out: a cold build of minutes is not a unit test


def functional_core(module, dtype: str) -> None:
    """forward, loss, grads and sgd_step of the worked example, as test_implementations asks
    of the in-process frameworks."""
    problem = make_problem(NetworkSpec(dtype=dtype))
    rel = t.REL[dtype]
    x, y, params = t.framework_problem(module, problem)
    net = problem.spec
    assert np.isclose(t.scalar(module, module.forward(net, params, x)), t.OUTPUT_0, rtol=rel)
    E, g = module.grads(net, params, x, y)
    assert np.isclose(t.scalar(module, E), t.LOSS_0, rtol=rel)
    assert np.allclose(t.weights(module, g), (t.GRAD_W_IH, t.GRAD_W_HO), rtol=rel)
    assert all(module.to_numpy(a).dtype == np.dtype(dtype) for a in flatten(g))
    params = module.sgd_step(net, params, x, y, 0.1)
    assert np.allclose(t.weights(module, params), (t.W_IH_1, t.W_HO_1), rtol=rel)
    for _ in range(99):
        params = module.sgd_step(net, params, x, y, 0.1)
    assert np.allclose(t.weights(module, params), (t.W_IH_100, t.W_HO_100), rtol=rel)


def own_gradients(trainer, dtype: str) -> None:
    E, g = trainer.grads()
    assert np.isclose(E, t.LOSS_0, rtol=t.REL[dtype])
    assert np.allclose([g[0][0].item(), g[1][0].item()], (t.GRAD_W_IH, t.GRAD_W_HO),
                       rtol=t.REL[dtype])


def copies_and_snapshots(variant) -> None:
    """params() are copies that writing does not reach, and a snapshot later steps keep."""
    trainer = variant.make(make_problem())
    first = trainer.params()
    W = first[0][0]
    if W.flags.writeable:
        W[...] = 42.0
    assert t.trainer_weights(trainer) == (0.15, 0.3)
    first = trainer.params()
    trainer.run(2)
    assert float(first[0][0].reshape(-1)[0]) == 0.15 and t.trainer_weights(trainer) != (0.15,
                                                                                         0.3)


def wider(variant, dtype: str) -> str | None:
    """The trajectory on 3-5-3 with a bias, as test_implementations' wider-network test;
    its label, or None where the variant declares it cannot run it."""
    problem = make_problem(NetworkSpec((3, 5, 3), t.curved(variant.name), bias=True,
                                       dtype=dtype), batch=4, lr=0.3, seed=1)
    if variant.why_not(problem, "cpu"):
        return None
    before = t.snapshot(problem)
    report = check_trajectory(problem, variant, 20)
    assert report.passed, report.failures()
    t.assert_unchanged(problem, before)
    return label(problem)


def variants_on_the_worked_example(name: str, dtype: str) -> list[str]:
    problem, ran = make_problem(NetworkSpec(dtype=dtype)), []
    for v in registry.variants_of(name):
        if "cpu" not in v.devices or v.build_s >= SLOW_BUILD_S or v.why_not(problem, "cpu"):
            continue
        trainer = v.make(problem, "cpu")
        if hasattr(trainer, "grads"):
            own_gradients(trainer, dtype)
        t.assert_trainer_follows_the_worked_example(trainer, dtype)
        if dtype == "float64":
            copies_and_snapshots(v)
        ran += [f"{v.name} {dtype}"] + [f"{v.name} {w}" for w in [wider(v, dtype)] if w]
    return ran


def main(name: str) -> int:
    try:
        module = registry.import_module(name)
        module.check_device("cpu")
    except Unavailable as exc:
        print(f"skip: {exc}")
        return 0
    module.settings(1)  # before its first op, as a worker applies it
    ran = []
    for dtype in DTYPES:
        problem = make_problem(NetworkSpec(dtype=dtype))
        if all(hasattr(module, f) for f in ("forward", "loss", "grads", "sgd_step")) and (
                registry.main_variant(name).why_not(problem, "cpu") is None):
            functional_core(module, dtype)
            ran.append(f"functions {dtype}")
        ran += variants_on_the_worked_example(name, dtype)
    print(f"ok: {'; '.join(ran) or 'nothing it declares runs here'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
