"""JAX, data-parallel: the jitted SGD step with the batch sharded over a mesh of N devices.

The step is ``jax_backprop.sgd_step`` unchanged, under ``jax.jit``; only its inputs change:
x and y are placed with ``NamedSharding(mesh, P("data", None))`` (rows split over the N
devices of a 1-D mesh) and the parameters with ``NamedSharding(mesh, P())`` (replicated).
The loss divides by the *global* batch, and XLA's partitioner inserts one all-reduce of the
gradients, so every device steps with the full-batch gradient. On a GPU the devices are the
visible GPUs; on the CPU they are XLA host devices, one per usable core of this process.

Importing this module sets the number of host devices (``jax_num_cpu_devices``, the config
form of ``XLA_FLAGS=--xla_force_host_platform_device_count=N``; unlike the flag it does not
leak into child processes) to the usable cores. Like the flag, it takes effect only before
JAX's backend starts, so the module belongs in a process of its own (the harness gives
every framework one). A Trainer pins the process's threads to one core per device, until
it is closed or collected.

``run(K)`` blocks after every step: on XLA:CPU, jitted steps with collectives dispatched
without waiting can deadlock (several executions in flight on too few threads). A
shard_map form would have to cast the replicated parameters to device-varying before
``jax.grad`` (``jax.lax.pcast(..., to="varying")``): the gradient with respect to
replicated parameters is already summed over devices, and a pmean of it is N times too
big. The jit form here has no such trap.
"""

from __future__ import annotations

import os
import time
import weakref

import jax
import numpy as np

from implementations import jax_backprop as jb
from implementations import launch
from implementations.contract import ALL_DEVICES, Framework, Unavailable, Variant
from implementations.problem import Params, Problem, cast_problem

FRAMEWORK = Framework("jax-sharded", label="JAX sharded", packages=("jax", "jaxlib"), order=55,
                      gradients=False, arrays=False, api=False)
VARIANTS = (
    Variant("jax-sharded", "idiomatic",
            "jax.jit of one step, batch sharded over a mesh of N devices, parameters "
            "replicated: XLA inserts the all-reduce", devices=ALL_DEVICES, distributed=True,
            replicates="jax"),
)

ALLOWED = sorted(os.sched_getaffinity(0))  # this process's cores when it imported the module
PER_CORE_OVERSUBSCRIBED = 8  # host devices per core when workers may share cores


def host_devices_wanted() -> int:
    """One host device per usable core; with BACKPROP_BENCH_OVERSUBSCRIBE=1 (--oversubscribe),
    PER_CORE_OVERSUBSCRIBED per core, so that more workers than cores can share them."""
    try:
        shared = launch.oversubscribe_allowed()
    except Exception:  # a bad setting is the CLI's one-line error, not this import's
        shared = False
    return len(ALLOWED) * (PER_CORE_OVERSUBSCRIBED if shared else 1)


def ask_for_host_devices() -> None:
    """host_devices_wanted() host devices, unless XLA_FLAGS already says how many, or JAX has
    started (then its devices stay as they are, and a case needing more is unavailable)."""
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    try:
        jax.config.update("jax_num_cpu_devices", host_devices_wanted())
    except RuntimeError:
        pass


ask_for_host_devices()


def check_device(device: str) -> None:
    jb.check_device(device)


def settings(threads: int) -> dict:
    return {**jb.settings(threads), "host_devices": len(jax.devices("cpu"))}


def devices_for(device: str, workers: int) -> list:
    """The first ``workers`` devices of a kind, or Unavailable saying why there are fewer."""
    jb.check_device(device)
    found = jax.devices({"cpu": "cpu", "cuda": "gpu"}[device])
    if len(found) < workers:
        why = ""
        if device == "cpu":
            why = (f" (one host device per usable core, {PER_CORE_OVERSUBSCRIBED} per core with "
                   f"--oversubscribe; the count is fixed when JAX starts)")
            if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
                why = " (XLA_FLAGS sets xla_force_host_platform_device_count)"
            elif len(found) != host_devices_wanted():
                why = (f" (JAX had started before this module asked for "
                       f"{host_devices_wanted()}: the count is fixed when JAX starts)")
        raise Unavailable(f"jax-sharded: {workers} workers need {workers} {device} devices, "
                          f"this process has {len(found)}{why}")
    return found[:workers]


def per_device(tree, devices: list) -> list[Params]:
    """Each device's own copy of a replicated pytree, as NumPy, in the order of ``devices``."""
    leaves, treedef = jax.tree.flatten(tree)
    return [jax.tree.unflatten(treedef, [np.asarray(
        next(s.data for s in leaf.addressable_shards if s.device == d)) for leaf in leaves])
        for d in devices]


class ShardedStep:
    """jax.jit of jax_backprop.sgd_step on sharded inputs; one blocking call per step."""

    autograd, block = True, 1

    def __init__(self, trainer: Trainer):
        self.net, self.x, self.y, self.lr = trainer.net, trainer.x, trainer.y, trainer.lr
        self.step = jax.jit(jb.sgd_step, static_argnums=0)
        self.grad = jax.jit(lambda p, x, y: jb.grads(self.net, p, x, y)[1])

    def __call__(self, params: Params, steps: int) -> Params:
        for _ in range(steps):  # block every step: see the module docstring
            params = jax.block_until_ready(self.step(self.net, params, self.x, self.y,
                                                     self.lr))
        return params

    def grads(self, params: Params) -> Params:
        return self.grad(params, self.x, self.y)


class Trainer:
    """The sharded step on ``workers`` devices of one process (see the module docstring)."""

    def __init__(self, problem: Problem, device: str = "cpu", loop: type = ShardedStep,
                 workers: int = 1):
        self.devices = devices_for(device, workers)
        if problem.batch % workers:
            raise Unavailable(f"jax-sharded: global batch {problem.batch} is not divisible by "
                              f"{workers} workers")
        cores, oversubscribed = launch.cores_for(workers, ALLOWED) if device == "cpu" else (
            [], False)
        self.cores = sorted({c for mine in cores for c in mine})
        # the pinning ends with the Trainer: a process running other work keeps its cores
        self._unpin = weakref.finalize(self, launch.pin_threads_to,
                                       sorted(os.sched_getaffinity(0)))
        self.pin()
        if problem.spec.dtype == "float64":
            jax.config.update("jax_enable_x64", True)
        from jax.sharding import (  # a framework, heavy: imported where it is used
            Mesh,
            NamedSharding,
            PartitionSpec,
        )

        x, y, params = cast_problem(problem)
        self.mesh = Mesh(np.array(self.devices), ("data",))
        rows = NamedSharding(self.mesh, PartitionSpec("data", None))
        replicated = NamedSharding(self.mesh, PartitionSpec())
        self.net = problem.spec
        self.x, self.y = jax.device_put(x, rows), jax.device_put(y, rows)
        self.lr = jax.device_put(np.asarray(problem.lr, dtype=x.dtype), replicated)
        self._params = jax.device_put(params, replicated)
        self._loop = loop(self)
        self.block, self.first_calls = 1, 1
        self.distributed = {"workers": workers, "backend": backend_of(device),
                            "cores": [[c] for c in self.cores] if cores else None,
                            "oversubscribed": oversubscribed,
                            "host_devices": len(jax.devices("cpu"))}

    def pin(self) -> None:
        """Keep every thread of this process on this case's cores (a no-op once there)."""
        if self.cores and sorted(os.sched_getaffinity(0)) != self.cores:
            launch.pin_threads_to(self.cores)

    def run(self, steps: int) -> None:
        """Advance by exactly ``steps`` SGD updates on every device, then return."""
        self.pin()
        self._params = jax.block_until_ready(self._loop(self._params, steps))

    def params(self) -> Params:
        return per_device(self._params, self.devices[:1])[0]

    def rank_params(self) -> list[Params]:
        return per_device(self._params, self.devices)

    def rank_grads(self) -> list[Params]:
        return per_device(self._loop.grads(self._params), self.devices)

    def loss(self) -> float:
        return float(jb.loss(self.net, self._params, self.x, self.y))

    def close(self) -> None:
        """Give this process's threads their cores back (the devices are the process's)."""
        self._unpin()


def backend_of(device: str) -> str:
    return "xla-cpu in-process" if device == "cpu" else "xla-gpu (nccl)"


# ---- the all-reduce alone, for the scaling model ------------------------------------------------

def psum_loop(mesh, workers: int):
    """A jitted call that runs ``calls`` psums in a row over the mesh, on device data."""
    from jax.sharding import PartitionSpec as P  # a framework, heavy: imported where it is used

    def body(v, calls):
        one = lambda _, u: jax.lax.psum(u, "data") * (1.0 / workers)  # noqa: E731
        return jax.lax.fori_loop(0, calls, one, v)

    return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(P("data"), P()),
                                 out_specs=P("data"), check_vma=False))


def psum_block(f, x, calls: int) -> float:
    """Seconds for one call of ``calls`` psums, waited for."""
    start = time.perf_counter()
    jax.block_until_ready(f(x, calls))
    return time.perf_counter() - start


def time_allreduce(workers: int, sizes: list[int], device: str = "cpu",
                   budget_s: float = 2.0) -> dict:
    """psum under jit over a mesh of ``workers`` devices, per message size (bytes per
    device, float32): the fields of ``harness.measure.ceilings.AllreduceCurve``. Each block is one
    call of K psums in a row (K grown until a block takes its share of ``budget_s``), so the
    dispatch is paid once per K; 5 blocks per size."""
    from jax.sharding import (  # a framework, heavy: imported where it is used
        Mesh,
        NamedSharding,
        PartitionSpec,
    )

    devices = devices_for(device, workers)
    if device == "cpu":
        launch.pin_threads_to(sorted({c for m in launch.cores_for(workers, ALLOWED)[0]
                                      for c in m}))
    mesh = Mesh(np.array(devices), ("data",))
    f, block_s, rows = psum_loop(mesh, workers), budget_s / (6 * max(1, len(sizes))), []
    for size in sizes:
        m = max(1, size // 4)
        x = jax.device_put(np.ones(workers * m, np.float32),
                           NamedSharding(mesh, PartitionSpec("data")))
        calls = 1
        psum_block(f, x, calls)  # compiles
        while psum_block(f, x, calls) < block_s and calls < 1 << 16:
            calls *= 2
        times = [psum_block(f, x, calls) / calls for _ in range(5)]
        rows.append((4 * m, calls, float(np.median(times)), float(min(times))))
    return {"backend": backend_of(device), "bytes": [r[0] for r in rows],
            "calls": [r[1] for r in rows], "median_s": [r[2] for r in rows],
            "min_s": [r[3] for r in rows]}
