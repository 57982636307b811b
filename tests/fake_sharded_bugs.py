"""jax-sharded with planted bugs, for the tests only (BACKPROP_BENCH_FRAMEWORKS).

Both write the data-parallel step out with ``jax.shard_map`` over the mesh's "data" axis
(the replicated parameters cast to device-varying first, so that ``jax.grad`` gives each
device its own shard's gradient) and then reduce it wrongly:

- ``sharded-psum``: psum instead of pmean, the gradient summed over the devices;
- ``sharded-nopsum``: no reduction at all (``check_vma=False`` lets the devices' different
  values pass as replicated), so each device trains on its own shard.
"""

from __future__ import annotations

import jax
from jax.sharding import PartitionSpec as P

from implementations import jax_backprop as jb
from implementations.contract import Framework, Variant
from implementations.jax_sharded import Trainer, check_device, settings

FRAMEWORK = Framework("sharded-bugs", label="sharded JAX with planted bugs",
                      packages=("jax", "jaxlib"), order=97, gradients=False, arrays=False,
                      api=False)
VARIANTS = (
    Variant("sharded-psum", "idiomatic", "psum of the gradients, not pmean", loop="Psum",
            distributed=True),
    Variant("sharded-nopsum", "idiomatic", "no all-reduce of the gradients", loop="NoPsum",
            distributed=True),
)
__all__ = ["Trainer", "check_device", "settings"]


class Planted:
    """A shard_map step whose gradient is ``reduce``d over the "data" axis."""

    autograd, block = True, 1
    reduce = staticmethod(lambda g: g)

    def __init__(self, trainer):
        net, mesh, reduce = trainer.net, trainer.mesh, self.reduce

        def grads(ps, x, y):
            ps = jax.tree.map(lambda a: jax.lax.pcast(a, "data", to="varying"), ps)
            return reduce(jax.grad(jb.loss, argnums=1)(net, ps, x, y))

        def step(ps, x, y, lr):
            return jax.tree.map(lambda p, g: p - lr * g, ps, grads(ps, x, y))

        specs = (P(), P("data"), P("data"))
        self.grad = jax.jit(jax.shard_map(grads, mesh=mesh, in_specs=specs, out_specs=P(),
                                          check_vma=False))
        self.step = jax.jit(jax.shard_map(step, mesh=mesh, in_specs=(*specs, P()),
                                          out_specs=P(), check_vma=False))
        self.x, self.y, self.lr = trainer.x, trainer.y, trainer.lr

    def __call__(self, params, steps: int):
        for _ in range(steps):
            params = jax.block_until_ready(self.step(params, self.x, self.y, self.lr))
        return params

    def grads(self, params):
        return self.grad(params, self.x, self.y)


class Psum(Planted):
    reduce = staticmethod(lambda g: jax.lax.psum(g, "data"))


class NoPsum(Planted):
    reduce = staticmethod(lambda g: g)
