"""Run in a process of its own by tests/test_tf_backprop.py: TensorFlow's functional core and
every TF and Keras-on-TF Trainer on the worked example, both dtypes, and its call floors.

TensorFlow is imported once here (it takes seconds) rather than in the test process. Exits
non-zero with the failing assertion on stderr.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["KERAS_BACKEND"] = "tensorflow"  # keras-tf's Trainers share this process
sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).parent)]

import numpy as np  # noqa: E402
import test_implementations as t  # noqa: E402

from implementations import registry  # noqa: E402
from implementations.problem import NetworkSpec, flatten, make_problem  # noqa: E402

VARIANTS = ("tf", "tf-function", "tf-xla", "keras-tf", "keras-tf-loop")


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


def trainers(dtype: str) -> None:
    problem = make_problem(NetworkSpec(dtype=dtype))
    for name in VARIANTS:
        trainer = registry.get(name).make(problem)
        E, g = trainer.grads()
        assert np.isclose(E, t.LOSS_0, rtol=t.REL[dtype]), name
        assert np.allclose([g[0][0].item(), g[1][0].item()], (t.GRAD_W_IH, t.GRAD_W_HO),
                           rtol=t.REL[dtype]), name
        t.assert_trainer_follows_the_worked_example(trainer, dtype)


def main() -> int:
    tf_module = registry.import_module("tf")
    settings = tf_module.settings(1)  # before TF's first op, as the worker calls it
    assert (settings["intra_op_threads"], settings["inter_op_threads"]) == (1, 1), settings
    assert "threads_note" not in settings and settings["onednn"] in (True, False)
    for dtype in ("float64", "float32"):
        functional_core(tf_module, dtype)
        trainers(dtype)
    late = tf_module.settings(2)  # TF has started: the pools stay, and the record says so
    assert late["intra_op_threads"] == 1 and "cannot be modified" in late["threads_note"]
    floors = tf_module.call_floors(calls=20)
    assert len(floors) == 3 and all(s > 0 and n == 20 for s, n in floors.values()), floors
    print("ok", settings["tensorflow"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
