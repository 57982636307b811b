"""In-process work for a framework that needs a process of its own: ``python -m
harness.isolated``.

Some frameworks set process-wide state when imported (Keras picks its backend once per
process; a sharded JAX needs its host devices forced before jax is imported), so ``check``
and ``demo`` cannot import them beside the others. For those (``Framework.isolated``), the
parent runs this module in a fresh interpreter with one request on stdin and reads one JSON
answer from stdout, after a marker line so that anything a framework prints cannot be taken
for it:

* ``{"do": "check", "problem": ..., "variants": [...], "steps": N, "device": ...}``: per
  variant ``{"loss": E, "grads": [...], "rows": [...]}``, its own gradients at the start (if
  its Trainer has ``grads()``) and its trajectory rows;
* ``{"do": "replay", "problem": ..., "variants": [...], "epochs": [...]}``: per variant
  ``{"snapshots": [[epoch, loss, params], ...], "grads": [...]}`` for ``demo``;
* ``{"do": "import", "variants": [...], "device": ...}``: per variant ``{"available": true}``
  for ``list --check``.

The answer is ``{variant: its answer}``; a variant that cannot run answers
``{"unavailable": reason}``. One process serves the variants of one framework.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from harness import schema
from harness.results import ProblemRecord
from implementations.contract import Unavailable
from implementations.problem import BenchError, flatten

MARKER = "--- backprop-bench isolated answer ---"
TIMEOUT_S = 600


def ask(request: dict) -> dict:
    """Run one request in a fresh interpreter: {variant: its answer}, or BenchError."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    try:
        done = subprocess.run([sys.executable, "-m", "harness.isolated"], input=json.dumps(request),
                              capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{', '.join(request['variants'])}: no answer within {TIMEOUT_S} s"
                         ) from None
    if MARKER not in done.stdout:
        last = (done.stderr.strip().splitlines() or ["it wrote nothing"])[-1]
        raise BenchError(f"{', '.join(request['variants'])}: its process failed "
                         f"({last[:200]})")
    return json.loads(done.stdout.split(MARKER, 1)[1])


class Gradients:
    """A variant's gradients computed in another process, in the shape ``check`` reads."""

    def __init__(self, loss: float, grads: list, net):
        import numpy as np

        from implementations.problem import unflatten

        self.value = (loss, unflatten(net, [np.asarray(g) for g in grads]))

    def grads(self):
        return self.value


def check(problem, variant, steps: int, device: str) -> dict:
    from harness import check as checks
    from implementations import registry

    answer = {"rows": [], "notes": []}
    cls = getattr(registry.import_module(variant.framework), variant.trainer)
    if hasattr(cls, "grads"):
        E, g = variant.make(problem, device).grads()
        answer.update(loss=float(E), grads=[t.tolist() for t in flatten(g)])
    report = checks.check_trajectory(problem, variant, steps, device)
    answer["rows"] = [schema.to_dict(r) for r in report.rows]
    return answer


def replay(problem, variant, epochs: list[int]) -> dict:
    """The variant's Trainer at the given epochs, and its own gradients at the start."""
    start = variant.make(problem)
    answer = {}
    if hasattr(start, "grads"):
        answer["grads"] = [t.tolist() for t in flatten(start.grads()[1])]
    trainer, done, snaps = variant.make(problem), 0, []
    for epoch in epochs:
        trainer.run(epoch - done)
        done = epoch
        snaps.append([epoch, trainer.loss(), [[W.tolist(), None if b is None else b.tolist()]
                                              for W, b in trainer.params()]])
    return {**answer, "snapshots": snaps}


def serve(request: dict, name: str) -> dict:
    from implementations import registry

    variant = registry.get(name)
    try:
        if request["do"] == "import":
            registry.import_module(variant.framework).check_device(request["device"])
            return {"available": True}
        problem = schema.from_dict(ProblemRecord, request["problem"], "problem").problem()
        if request["do"] == "check":
            return check(problem, variant, request["steps"], request["device"])
        return replay(problem, variant, request["epochs"])
    except Unavailable as exc:
        return {"unavailable": str(exc)}


def main() -> int:
    request = json.loads(sys.stdin.read())
    answer = {name: serve(request, name) for name in request["variants"]}
    print(MARKER)
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
