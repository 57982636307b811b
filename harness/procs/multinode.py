"""The data-parallel step across machines, started by each framework's own launcher.

torch: ``torchrun`` starts this module on every node (``-m harness.procs.multinode torchrun ...``)
and sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; each process builds
``torch_ddp``'s replica (DDP over gloo on the CPU, NCCL on a GPU), trains ``--steps`` steps
and times them; rank 0 gathers every rank's parameters and writes ``--out``.

JAX: run one process per node with ``jax-distributed ... --coordinator HOST:PORT
--num-processes N --process-id I``; each joins with ``jax.distributed.initialize`` (gloo
across processes on the CPU), feeds its own rows of the global batch
(``make_array_from_process_local_data``) and runs ``jax_backprop.sgd_step`` under
``jax.jit``, which all-reduces across processes; process 0 writes ``--out``.

``--out`` holds the world size, the time per step, how far apart the ranks' parameters are
(0.0: bitwise equal) and the largest trajectory error against the float64 reference, with
``passed``. The exit status is 0 when the ranks agree and the trajectory is within tolerance.
The README ("Past one device") has the exact commands.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

import numpy as np

from harness import check
from implementations import launch
from implementations.problem import (
    NetworkSpec,
    Problem,
    cast_problem,
    flatten,
    make_problem,
    parse_widths,
)


def outcome(problem: Problem, rank_params: list, steps: int, elapsed_s: float,
            world: int, backend: str) -> dict:
    """The summary rank 0 writes: spread between ranks, trajectory error, time per step."""

    report = check.compare_to_reference(problem, "rank 0", rank_params[0],
                                        check.rounded_start(problem), steps)
    first = [np.asarray(t, np.float64) for t in flatten(rank_params[0])]
    spread = max(float(np.max(np.abs(np.asarray(t, np.float64) - f)))
                 for r in rank_params for t, f in zip(flatten(r), first))
    return {"world": world, "backend": backend, "steps": steps,
            "per_step_s": elapsed_s / max(1, steps - WARMUP), "rank_spread": spread,
            "trajectory_error": max(r.error for r in report.rows),
            "passed": report.passed and spread == 0.0}


WARMUP = 3


def run_torch(problem: Problem, steps: int, device: str, timeout_s: float) -> dict | None:
    """One torchrun rank: DDP steps, then rank 0's summary (None on the other ranks)."""

    import torch  # a framework, heavy: imported where it is used
    import torch.distributed as dist  # a framework, heavy: imported where it is used

    from implementations import torch_ddp  # a framework, heavy: imported where it is used

    launch.die_with_parent(os.getppid())  # a SIGKILLed torchrun must not leave ranks behind
    local, local_world = int(os.environ["LOCAL_RANK"]), int(os.environ["LOCAL_WORLD_SIZE"])
    if local_world > 1:  # several ranks on this node: one core each, as the Trainer pins
        cores, _ = launch.cores_for(local_world)
        launch.pin_threads_to(cores[local])
        torch.set_num_threads(len(cores[local]))
    where = f"cuda:{local}" if device == "cuda" else "cpu"
    if device == "cuda":
        torch.cuda.set_device(where)
    dist.init_process_group("nccl" if device == "cuda" else "gloo",
                            timeout=datetime.timedelta(seconds=timeout_s))
    rank, world = dist.get_rank(), dist.get_world_size()
    replica = torch_ddp.build_replica(problem, rank, world, where)
    torch_ddp.sgd_steps(replica, WARMUP)
    dist.barrier()
    start = time.perf_counter()
    torch_ddp.sgd_steps(replica, steps - WARMUP)
    dist.barrier()
    elapsed = time.perf_counter() - start
    gathered = [None] * world
    dist.all_gather_object(gathered, torch_ddp.params_of(replica))
    backend = dist.get_backend()
    dist.destroy_process_group()
    return outcome(problem, gathered, steps, elapsed, world, backend) if rank == 0 else None


def run_jax(problem: Problem, steps: int, coordinator: str, processes: int, process: int,
            timeout_s: float) -> dict | None:
    """One process of a JAX job across processes (machines); process 0's summary."""
    import jax  # a framework, heavy: imported where it is used
    from jax.experimental import multihost_utils  # a framework, heavy: imported where it is used
    from jax.sharding import (  # a framework, heavy: imported where it is used
        NamedSharding,
        PartitionSpec,
    )

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=processes,
                               process_id=process, initialization_timeout=int(timeout_s))
    if problem.spec.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    from implementations import jax_backprop as jb  # a framework, heavy: where it is used

    x, y, params = cast_problem(problem)
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    rows, rep = NamedSharding(mesh, PartitionSpec("data")), NamedSharding(mesh, PartitionSpec())
    mine = slice(process * problem.batch // processes, (process + 1) * problem.batch // processes)
    local = lambda a, s: jax.make_array_from_process_local_data(s, a, a.shape)  # noqa: E731
    xs, ys = (jax.make_array_from_process_local_data(rows, a[mine], a.shape) for a in (x, y))
    ps = jax.tree.map(lambda a: local(a, rep), params)
    lr = local(np.asarray(problem.lr, dtype=x.dtype), rep)
    step = jax.jit(jb.sgd_step, static_argnums=0)
    for i in range(steps):  # block every step: collectives left in flight can deadlock
        if i == WARMUP:
            start = time.perf_counter()
        ps = jax.block_until_ready(step(problem.spec, ps, xs, ys, lr))
    elapsed = time.perf_counter() - start
    own = [(np.asarray(W.addressable_shards[0].data),
            None if b is None else np.asarray(b.addressable_shards[0].data)) for W, b in ps]
    every = multihost_utils.process_allgather(np.concatenate([t.ravel() for t in flatten(own)]))
    per_rank = [unflat(own, np.asarray(r)) for r in np.asarray(every).reshape(processes, -1)]
    jax.distributed.shutdown()
    return outcome(problem, per_rank, steps, elapsed, processes, "gloo (jax.distributed)") \
        if process == 0 else None


def unflat(like: list, flat: np.ndarray) -> list:
    """A flat vector back into ``like``'s (W, b) shapes."""
    out, i = [], 0
    for W, b in like:
        w = flat[i:i + W.size].reshape(W.shape)
        i += W.size
        bb = None if b is None else flat[i:i + b.size].reshape(b.shape)
        i += 0 if b is None else b.size
        out.append((w, bb))
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.procs.multinode", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("launcher", choices=("torchrun", "jax-distributed"),
                   help="who started this process: torchrun (DDP), or you, once per node, "
                        "for jax.distributed")
    p.add_argument("--widths", type=parse_widths, default=(16, 16, 16))
    p.add_argument("--activation", default="tanh")
    p.add_argument("--bias", action="store_true")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--batch", type=int, default=64, help="the global batch")
    p.add_argument("--steps", type=int, default=100, help="(the first 3 are not timed)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds a collective (torch) or the start-up (JAX) may wait")
    p.add_argument("--coordinator", help="JAX: HOST:PORT of process 0")
    p.add_argument("--num-processes", type=int, help="JAX: how many processes in all")
    p.add_argument("--process-id", type=int, help="JAX: this process's number, from 0")
    p.add_argument("--out", required=True, help="rank 0's JSON summary")
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    problem = make_problem(NetworkSpec(a.widths, a.activation, "linear", a.bias, a.dtype),
                           a.batch)
    if a.steps <= WARMUP:
        raise SystemExit(f"--steps must be more than {WARMUP}")
    if a.launcher == "torchrun":
        summary = run_torch(problem, a.steps, a.device, a.timeout)
    else:
        summary = run_jax(problem, a.steps, a.coordinator, a.num_processes, a.process_id,
                          a.timeout)
    if summary is None:
        return 0
    with open(a.out, "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary))
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The rank's work is done and --out is closed. Interpreter shutdown (the threads of gloo and
    # of an imported JAX) can hang on a loaded host, and a rank that never exits holds every
    # torchrun agent in its exit barrier for 300 s: end the process now.
    os._exit(code)
