"""torch-ddp with planted bugs and faults, for the tests only (BACKPROP_BENCH_FRAMEWORKS).

Each variant runs ``implementations.torch_ddp``'s Trainer with a rank loop of its own:

- ``ddp-sum``: a DDP comm hook that all-reduces without dividing by the world size, so the
  gradient is summed over the workers instead of averaged (invisible on one worker);
- ``ddp-nosync-rank1``: rank 1 runs every backward under ``no_sync()``, skipping the
  all-reduce the other ranks wait for;
- ``ddp-nosync-all``: every rank skips it: local SGD, the workers drift apart;
- ``ddp-crash``: rank 1 exits with status 3 at its third step;
- ``ddp-hang``: rank 1 sleeps for ever at its third step.
"""

from __future__ import annotations

import os
import time

import torch

from implementations.contract import Framework, Variant
from implementations.torch_ddp import Trainer, check_device, gradient, settings, sgd_steps

FRAMEWORK = Framework("ddp-bugs", label="DDP with planted bugs", packages=("torch",),
                      order=96, gradients=False, arrays=False, api=False)
VARIANTS = (
    Variant("ddp-sum", "idiomatic", "gradients summed, not averaged", loop="SumHook",
            distributed=True),
    Variant("ddp-nosync-rank1", "idiomatic", "rank 1 skips the all-reduce", loop="NoSyncRank1",
            distributed=True),
    Variant("ddp-nosync-all", "idiomatic", "no rank all-reduces", loop="NoSyncAll",
            distributed=True),
    Variant("ddp-crash", "idiomatic", "rank 1 exits at step 3", loop="CrashRank1",
            distributed=True),
    Variant("ddp-hang", "idiomatic", "rank 1 hangs at step 3", loop="HangRank1",
            distributed=True),
)
__all__ = ["Trainer", "check_device", "settings"]


def summing_hook(group, bucket):
    """DDP's allreduce_hook without its division by the group's size: the planted bug."""
    work = torch.distributed.all_reduce(bucket.buffer(), group=group, async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


class SumHook:
    autograd, block = True, 1

    def __init__(self, replica):
        self.replica = replica
        replica.model.register_comm_hook(None, summing_hook)

    def __call__(self, steps: int) -> None:
        sgd_steps(self.replica, steps)

    def grads(self):
        return gradient(self.replica)


class NoSync:
    """Steps with ``no_sync()`` on the ranks ``skips(rank)`` names."""

    autograd, block = True, 1
    skips = staticmethod(lambda rank: True)

    def __init__(self, replica):
        self.replica, self.off = replica, self.skips(replica.rank)

    def __call__(self, steps: int) -> None:
        sgd_steps(self.replica, steps, no_sync=self.off)

    def grads(self):
        return gradient(self.replica, no_sync=self.off)


class NoSyncRank1(NoSync):
    skips = staticmethod(lambda rank: rank == 1)


class NoSyncAll(NoSync):
    skips = staticmethod(lambda rank: True)


class Fault:
    """Rank 1 meets ``fault()`` at its third step (none here); the other ranks step on."""

    autograd, block = True, 1
    fault = staticmethod(lambda: None)

    def __init__(self, replica):
        self.replica, self.done = replica, 0

    def __call__(self, steps: int) -> None:
        for _ in range(steps):
            if self.replica.rank == 1 and self.done == 3:
                self.fault()
            sgd_steps(self.replica, 1)
            self.done += 1

    def grads(self):
        return gradient(self.replica)


def sleep_for_ever() -> None:
    while True:
        time.sleep(3600)


class CrashRank1(Fault):
    fault = staticmethod(lambda: os._exit(3))


class HangRank1(Fault):
    fault = staticmethod(sleep_for_ever)
