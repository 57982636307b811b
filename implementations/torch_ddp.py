"""PyTorch DistributedDataParallel: the idiomatic torch step, data-parallel over N workers.

Each worker (rank) is a process of its own, started by torch's elastic launcher (what
``torchrun`` runs) from ``implementations.launch``. It builds the idiomatic torch step,
``nn.Sequential`` of ``nn.Linear`` and activation modules, ``nn.MSELoss`` scaled to this
benchmark's loss, ``optim.SGD`` and ``zero_grad(set_to_none=True)`` / ``backward()`` /
``step()``, wraps the model in ``DistributedDataParallel`` and takes rows
[r·B/N, (r+1)·B/N) of the same global batch. DDP all-reduces the gradients during
``backward()`` and divides by N, so every rank steps with the mean of its shards' mean
gradients, which is the full-batch gradient (the shards are equal). Gloo carries the
all-reduce on the CPU (one core per rank), NCCL on CUDA (one GPU per rank).

The ``Trainer`` lives in the harness's worker process and drives its ranks through queues:
``run(K)`` makes every rank take K steps and then meet at a barrier, and returns when rank 0
says "done", so one timed block ends when every rank has finished it; only this process
times (ranks running their own adaptive timing could choose different K and deadlock).
``params()`` are rank 0's, ``rank_params()`` and ``rank_grads()`` every rank's. The ranks
set no process-wide state in this process; each turns TF32 off in its own.

Across machines, ``torchrun`` starts the same step from ``harness.procs.multinode`` on every node
(see the README, "Past one device").
"""

from __future__ import annotations

import contextlib
import datetime
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from implementations import launch
from implementations.contract import ALL_DEVICES, Framework, Unavailable, Variant
from implementations.problem import NetworkSpec, Params, Problem, cast_problem, make_problem

FRAMEWORK = Framework("torch-ddp", label="PyTorch DDP", packages=("torch",), order=45,
                      gradients=False, arrays=False, api=False)
VARIANTS = (
    Variant("torch-ddp", "idiomatic",
            "nn.Sequential, MSELoss and optim.SGD in DistributedDataParallel: the batch split "
            "over N worker processes (gloo on the CPU, NCCL on CUDA)",
            devices=ALL_DEVICES, distributed=True, replicates="torch"),
)

ACTIVATIONS = {"linear": None, "sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "ReLU"}


def check_device(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise Unavailable("torch-ddp: no CUDA device (torch.cuda.is_available() is False)")
    if device not in ("cpu", "cuda"):
        raise Unavailable(f"torch-ddp: unknown device {device!r}")


def settings(threads: int) -> dict:
    """What the results record: the backend per device, and how ranks are started."""
    return {"backend": {"cpu": "gloo", "cuda": "nccl"}, "threads_per_rank": 1,
            "launcher": "torch.distributed.launcher.api.elastic_launch (c10d, localhost)",
            "start_method": {"cpu": "fork", "cuda": "spawn"},
            "pg_timeout_s": launch.pg_timeout_s(), "cuda": torch.version.cuda}


# ---- inside a rank ----------------------------------------------------------------------------

@dataclass(frozen=True)
class RankJob:
    """What every rank needs: the problem's recipe, its loop, cores and the parent's pid."""

    spec: NetworkSpec
    batch: int
    lr: float
    seed: int
    loop: tuple[str, str]  # (module, class name) of the rank's loop strategy
    cores: tuple[tuple[int, ...], ...]  # per local rank
    device: str
    parent_pid: int
    pg_timeout_s: float


@dataclass
class Replica:
    """One rank's state: its model (plain and wrapped), loss, optimiser and shard."""

    rank: int
    world: int
    module: torch.nn.Sequential
    model: torch.nn.Module
    mse: torch.nn.MSELoss
    scale: float
    opt: torch.optim.Optimizer
    x: torch.Tensor
    y: torch.Tensor


def build_model(net: NetworkSpec, params: Params, device) -> torch.nn.Sequential:
    """nn.Sequential of nn.Linear and activation modules holding ``params`` (nn.Linear keeps
    W as fan_out × fan_in: the transpose of this benchmark's W)."""
    layers = []
    for (W, b), act in zip(params, net.layer_activations()):
        lin = torch.nn.Linear(W.shape[0], W.shape[1], bias=b is not None,
                              dtype=getattr(torch, net.dtype), device=device)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
            if b is not None:
                lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
        if ACTIVATIONS[act]:
            layers.append(getattr(torch.nn, ACTIVATIONS[act])())
    return torch.nn.Sequential(*layers)


def build_replica(problem: Problem, rank: int, world: int, device) -> Replica:
    """The rank's DDP model on rows [rank·B/N, (rank+1)·B/N) of the global batch."""
    from torch.nn.parallel import (
        DistributedDataParallel,  # a framework, heavy: imported where it is used
    )

    x, y, params = cast_problem(problem)
    rows = slice(rank * problem.batch // world, (rank + 1) * problem.batch // world)
    module = build_model(problem.spec, params, device)
    ids = [device] if torch.device(device).type == "cuda" else None
    model = DistributedDataParallel(module, device_ids=ids)
    # nn.MSELoss averages over batch × output elements; this benchmark's loss is
    # E = 1/2 · mean over the batch of ||y_hat - y||^2 = (output width / 2) · MSELoss
    scale = 0.5 * problem.spec.widths[-1]
    opt = torch.optim.SGD(model.parameters(), lr=problem.lr)
    shard = [torch.from_numpy(np.ascontiguousarray(a[rows])).to(device) for a in (x, y)]
    return Replica(rank, world, module, model, torch.nn.MSELoss(), scale, opt, *shard)


def sgd_steps(r: Replica, steps: int, no_sync: bool = False) -> None:
    """``steps`` idiomatic steps: zero_grad, loss, backward (DDP all-reduces), step."""
    for _ in range(steps):
        r.opt.zero_grad(set_to_none=True)
        with r.model.no_sync() if no_sync else contextlib.nullcontext():
            loss = r.scale * r.mse(r.model(r.x), r.y)
            loss.backward()
        r.opt.step()


def gradient(r: Replica, no_sync: bool = False) -> Params:
    """The gradient this rank steps with at its current parameters (after the all-reduce),
    without stepping."""
    r.opt.zero_grad(set_to_none=True)
    with r.model.no_sync() if no_sync else contextlib.nullcontext():
        (r.scale * r.mse(r.model(r.x), r.y)).backward()
    out = [(m.weight.grad.T.cpu().numpy().copy(),
            None if m.bias is None else m.bias.grad.cpu().numpy().copy())
           for m in linears(r)]
    r.opt.zero_grad(set_to_none=True)
    return out


def linears(r: Replica) -> list:
    return [m for m in r.module if isinstance(m, torch.nn.Linear)]


def params_of(r: Replica) -> Params:
    return [(m.weight.detach().T.cpu().numpy().copy(),
             None if m.bias is None else m.bias.detach().cpu().numpy().copy())
            for m in linears(r)]


class DDPLoop:
    """The idiomatic DDP step, every rank alike (the product's loop)."""

    autograd, block = True, 1

    def __init__(self, replica: Replica):
        self.replica = replica

    def __call__(self, steps: int) -> None:
        sgd_steps(self.replica, steps)

    def grads(self) -> Params:
        return gradient(self.replica)


def init_rank(job) -> tuple[int, int, str]:
    """Die with the parent, pin to this rank's cores, join the process group:
    (rank, world size, torch device)."""
    launch.die_with_parent(job.parent_pid)
    local = int(os.environ["LOCAL_RANK"])
    launch.pin_threads_to(list(job.cores[local]))
    torch.set_num_threads(len(job.cores[local]))
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32 here too
    torch.backends.cudnn.allow_tf32 = False
    device = "cpu"
    if job.device == "cuda":
        device = f"cuda:{local}"
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(
        "nccl" if job.device == "cuda" else "gloo",
        timeout=datetime.timedelta(seconds=job.pg_timeout_s))
    return torch.distributed.get_rank(), torch.distributed.get_world_size(), device


def rank_main(job: RankJob, commands, answers) -> None:
    """A rank: build the replica and its loop, then serve the Trainer's commands."""
    import torch.distributed as dist  # a framework, heavy: imported where it is used

    rank, world, device = init_rank(job)
    try:
        problem = make_problem(job.spec, job.batch, job.lr, job.seed)
        replica = build_replica(problem, rank, world, device)
        loop = launch.resolve(*job.loop)(replica)
        answers.put(("ready", rank, {"pid": os.getpid(), "cores": sorted(
            os.sched_getaffinity(0)), "backend": dist.get_backend(), "device": device}))
        mine = commands[int(os.environ["LOCAL_RANK"])]
        launch.serve(mine, answers, rank, lambda name, arg: handle(replica, loop, name, arg))
    finally:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def handle(r: Replica, loop, name: str, arg):
    """One command; the reply (None: no answer from this rank)."""
    import torch.distributed as dist  # a framework, heavy: imported where it is used

    if name == "run":
        loop(arg)
        if r.x.is_cuda:
            torch.cuda.synchronize()
        dist.barrier()  # the block ends when every rank has finished it
        return True if r.rank == 0 else None
    if name == "params":
        return params_of(r) if arg == "all" or r.rank == 0 else None
    if name == "grads":
        return loop.grads()
    if name == "loss":  # the mean of the shards' losses is the full batch's (equal shards)
        with torch.no_grad():
            e = r.scale * r.mse(r.module(r.x), r.y)
        dist.all_reduce(e)
        return float(e) / r.world if r.rank == 0 else None
    raise ValueError(f"unknown command {name!r}")


# ---- the Trainer, in the harness's worker process ----------------------------------------------

class Trainer:
    """Drives ``workers`` DDP ranks (see the module docstring); ``loop`` is the ranks' loop
    strategy class, built in each rank around its Replica."""

    def __init__(self, problem: Problem, device: str = "cpu", loop: type = DDPLoop,
                 workers: int = 1):
        check_device(device)
        if device == "cuda" and workers > torch.cuda.device_count():
            raise Unavailable(f"torch-ddp: {workers} workers need {workers} GPUs, "
                              f"{torch.cuda.device_count()} are visible")
        if problem.batch % workers:
            raise Unavailable(f"torch-ddp: global batch {problem.batch} is not divisible by "
                              f"{workers} workers")
        cores, oversubscribed = launch.cores_for(workers)
        job = RankJob(problem.spec, problem.batch, problem.lr, problem.seed,
                      (loop.__module__, loop.__name__), tuple(map(tuple, cores)), device,
                      os.getpid(), launch.pg_timeout_s())
        self.block, self.first_calls = 1, 1
        self._group = launch.RankGroup(workers, rank_main, job, device)
        self.distributed = {"workers": workers, "backend": self._group.info[0]["backend"],
                            "cores": [i["cores"] for i in self._group.info],
                            "oversubscribed": oversubscribed,
                            "pg_timeout_s": job.pg_timeout_s}

    def run(self, steps: int) -> None:
        """Every rank takes ``steps`` steps; returns when all have finished them."""
        self._group.ask("run", steps, answers=1)

    def params(self) -> Params:
        return self._group.ask("params", "first", answers=1)[0]

    def rank_params(self) -> list[Params]:
        return self._group.ask("params", "all")

    def rank_grads(self) -> list[Params]:
        return self._group.ask("grads")

    def loss(self) -> float:
        return self._group.ask("loss", answers=1)[0]

    def close(self) -> None:
        self._group.close()


# ---- the all-reduce alone, for the scaling model ------------------------------------------------

@dataclass(frozen=True)
class AllreduceJob:
    cores: tuple[tuple[int, ...], ...]
    device: str
    parent_pid: int
    pg_timeout_s: float


def allreduce_main(job: AllreduceJob, commands, answers) -> None:
    """A rank that times torch.distributed.all_reduce when asked ("time", (sizes, block_s))."""
    rank, _, device = init_rank(job)
    answers.put(("ready", rank, {"pid": os.getpid(), "backend":
                                 torch.distributed.get_backend()}))
    try:
        mine = commands[int(os.environ["LOCAL_RANK"])]
        launch.serve(mine, answers, rank, lambda name, arg: time_sizes(*arg, device, rank))
    finally:
        with contextlib.suppress(Exception):
            torch.distributed.destroy_process_group()


def time_sizes(sizes: list[int], block_s: float, device: str, rank: int) -> list | None:
    """Per size: back-to-back all_reduce calls of a float32 tensor, K calls per block (K
    chosen on rank 0 and broadcast, so that every rank makes the same calls), 5 blocks."""
    import torch.distributed as dist  # a framework, heavy: imported where it is used

    rows = []
    for size in sizes:
        x = torch.ones(max(1, size // 4), dtype=torch.float32, device=device)
        calls = torch.ones(1, dtype=torch.int64, device=device)
        while True:  # grow K until a block takes block_s on rank 0
            took = block(x, int(calls))
            done = torch.tensor([int(took >= block_s or int(calls) >= 1 << 16)],
                                device=device)
            dist.broadcast(done, 0)
            if bool(done):
                break
            calls *= 2
        times = [block(x, int(calls)) / int(calls) for _ in range(5)]
        rows.append((4 * x.numel(), int(calls), float(np.median(times)), float(min(times))))
    return rows if rank == 0 else None


def block(x: torch.Tensor, calls: int) -> float:
    torch.distributed.barrier()
    start = time.perf_counter()
    for _ in range(calls):
        torch.distributed.all_reduce(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def time_allreduce(workers: int, sizes: list[int], device: str = "cpu",
                   budget_s: float = 2.0) -> dict:
    """The all-reduce alone among ``workers`` ranks, pinned as the Trainer's are: the
    fields of ``harness.measure.ceilings.AllreduceCurve``."""
    check_device(device)
    cores, _ = launch.cores_for(workers)
    job = AllreduceJob(tuple(map(tuple, cores)), device, os.getpid(), launch.pg_timeout_s())
    group = launch.RankGroup(workers, allreduce_main, job, device)
    try:
        rows = group.ask("time", (sizes, budget_s / (6 * max(1, len(sizes)))), answers=1)[0]
    finally:
        group.close()
    return {"backend": group.info[0]["backend"], "bytes": [r[0] for r in rows],
            "calls": [r[1] for r in rows], "median_s": [r[2] for r in rows],
            "min_s": [r[3] for r in rows]}
