"""PyTorch, compiled: the ways torch offers to run many SGD steps per call, measured apart.

The same functional step (``functional_step``: ``torch.func.grad`` of ``torch_backprop.loss``,
then the update) advanced by loops that hand more and more of the work to compiled code:

* ``CompiledStep`` (torch-compile): ``torch.compile`` of one step, called once per step;
* ``CompiledBlock`` (torch-block, torch-block-64, torch-block-256): ``torch.compile`` of a
  block of 16, 64 or 256 unrolled steps, so that Python, guards and dispatch are paid once per
  block; the compile time grows with the block, the time per step falls;
* ``FusedLoop`` (torch-loop): the whole loop in generated C++: ``torch.export`` and
  AOTInductor of a ``torch.while_loop`` whose body runs 256 unrolled steps (then a second loop
  for the remainder), one call per ``run(steps)`` for any number of steps. It uses two
  *prototype* features (``torch.while_loop``, AOTInductor), a private Inductor setting
  (``max_fusion_size``), the loaded package's private ``loader.run`` and a private fix of an
  Inductor 2.13 bug applied while compiling (``subgraph_buffer_fix``). The compiled package is
  kept under ``TORCHINDUCTOR_CACHE_DIR/aoti_packages`` and reloaded by later processes;
* ``CudaGraph``, ``CudaGraphBlock`` and ``CompiledBlockGraphs`` on a GPU: the step, or a
  16-step block, captured as a CUDA graph and replayed (by hand, or by
  ``torch.compile(mode="reduce-overhead")``).

They run in a worker process of their own ("torch-compiled"), so that their compilers' start-up
and caches are counted apart from eager torch. The Trainer, ``check_device`` and ``settings``
are ``torch_backprop``'s.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import inspect
import os
import sys
import tempfile
from pathlib import Path

import torch
from torch.fx.experimental.proxy_tensor import make_fx

from implementations import floors, inductor_cache, torch_backprop
from implementations.contract import ALL_DEVICES, WORKED_EXAMPLE, Framework, Unavailable, Variant
from implementations.problem import NetworkSpec, Params, flatten, unflatten
from implementations.torch_backprop import Trainer, check_device, loss

FRAMEWORK = Framework("torch-compiled", label="PyTorch compiled", packages=("torch",), order=45,
                      gradients=False, arrays=False, api=False,
                      variables=("TORCH_", "TORCHINDUCTOR_", "NVIDIA_TF32_OVERRIDE"))
VARIANTS = (
    Variant("torch-compile", "optimised", "torch.compile of one functional step (torch.func)",
            loop="CompiledStep", devices=ALL_DEVICES, baseline="torch", build_s=20),
    Variant("torch-block", "optimised",
            "torch.compile of a block of 16 unrolled steps: dispatch paid once per block",
            loop="CompiledBlock", devices=ALL_DEVICES, baseline="torch",
            default_run=WORKED_EXAMPLE, build_s=60),
    Variant("torch-block-64", "optimised", "torch.compile of a block of 64 unrolled steps",
            loop="CompiledBlock64", devices=ALL_DEVICES, baseline="torch", default_run=(),
            build_s=120),
    Variant("torch-block-256", "optimised", "torch.compile of a block of 256 unrolled steps",
            loop="CompiledBlock256", devices=ALL_DEVICES, baseline="torch", default_run=(),
            build_s=180),
    Variant("torch-loop", "optimised", "the whole loop in C++: AOTInductor of a torch.while_loop "
            "over 256 unrolled steps (prototype APIs, a private fix)", loop="FusedLoop",
            baseline="torch", default_run=WORKED_EXAMPLE, build_s=120),
    Variant("torch-cudagraph", "optimised",
            "whole step captured once as a CUDA graph and replayed", loop="CudaGraph",
            devices=("cuda",), baseline="torch", sweep_devices=("cuda",)),
    Variant("torch-cudagraph-block", "optimised",
            "a block of 16 steps captured as one CUDA graph: one launch per 16 steps",
            loop="CudaGraphBlock", devices=("cuda",), baseline="torch"),
    Variant("torch-block-graphs", "optimised",
            "torch.compile(mode='reduce-overhead') of the 16-step block: Inductor's CUDA graphs",
            loop="CompiledBlockGraphs", devices=("cuda",), baseline="torch", build_s=60),
)
__all__ = ["Trainer", "check_device"]


def settings(threads: int) -> dict:
    """torch's settings, and whether torch-loop's compiled packages were already built."""
    folder = package_path(()).parent
    warm = folder.is_dir() and any(folder.glob("torch-loop-*.pt2"))
    return {**torch_backprop.settings(threads),
            "aoti_packages": {"dir": str(folder), "warm_at_start": warm}}


def built(variant, problem, device: str) -> bool:
    """Whether a variant's compiled code for this problem is cached here: torch-loop's
    package, or the marker a torch.compile loop leaves in the Inductor cache."""
    if variant.loop == "FusedLoop":
        return package_path(loop_key(problem.spec, problem.batch)).exists()
    return inductor_cache.built(variant, problem, device)


def marker_of(loop, trainer: Trainer) -> Path:
    return inductor_cache.built_marker(type(loop).__name__, trainer.net, trainer.x.shape[0],
                                       trainer.device)


def mark_built(marker: Path | None) -> None:
    """Leave the marker after the first compiled call (returns None: nothing left to mark)."""
    inductor_cache.mark_built(marker)


def functional_step(net: NetworkSpec, leaves: list, x, y, lr) -> list:
    """sgd_step with no side effects, for torch.compile: torch.func.grad of the loss."""
    g = torch.func.grad(lambda ps: loss(net, unflatten(net, ps), x, y))(leaves)
    return [p - lr * gp for p, gp in zip(leaves, g)]


def functional_block(net: NetworkSpec, leaves: list, x, y, lr, steps: int) -> list:
    """``steps`` functional steps, unrolled into one graph when compiled."""
    for _ in range(steps):
        leaves = functional_step(net, leaves, x, y, lr)
    return leaves


class CompiledStep:
    """torch-compile: torch.compile of one functional step, called once per step.

    The learning rate is a tensor argument, so the compiled graph cannot fold it in.
    """

    autograd, block = False, 1  # torch.func.grad needs no leaves that autograd tracks

    def __init__(self, trainer: Trainer):
        self.net, self.x, self.y = trainer.net, trainer.x, trainer.y
        self.lr = torch.tensor(trainer.lr, dtype=trainer.x.dtype, device=trainer.x.device)
        self.step = torch.compile(functional_step, dynamic=False)
        self.marker = marker_of(self, trainer)

    def __call__(self, params: Params, steps: int) -> Params:
        leaves = flatten(params)
        for _ in range(steps):
            leaves = self.step(self.net, leaves, self.x, self.y, self.lr)
        self.marker = mark_built(self.marker) if steps else self.marker
        return unflatten(self.net, leaves)


class CompiledBlock:
    """torch-block: one compiled graph runs ``block`` steps, so that the per-step Python and
    dispatch cost is paid once per block. run(steps) runs steps // block compiled blocks, then
    the remainder as eager functional steps."""

    autograd, block = False, 16

    def __init__(self, trainer: Trainer):
        self.net, self.x, self.y = trainer.net, trainer.x, trainer.y
        self.lr = torch.tensor(trainer.lr, dtype=trainer.x.dtype, device=trainer.x.device)
        self.steps = torch.compile(functional_block, dynamic=False)
        self.marker = marker_of(self, trainer)

    def __call__(self, params: Params, steps: int) -> Params:
        net, x, y, lr = self.net, self.x, self.y, self.lr
        leaves = flatten(params)
        full, rest = divmod(steps, self.block)
        for _ in range(full):
            leaves = self.steps(net, leaves, x, y, lr, self.block)
        self.marker = mark_built(self.marker) if full else self.marker
        for _ in range(rest):
            leaves = functional_step(net, leaves, x, y, lr)
        return unflatten(net, leaves)


class CudaGraph:
    """torch-cudagraph: the functional step captured once as a CUDA graph, then replayed.

    Capture happens on the first call, so it counts as first-call cost. The parameters are the
    graph's static tensors, which every replay updates in place. ``steps`` functional steps
    are captured per graph (1 here; CudaGraphBlock captures a block).
    """

    autograd, block = False, 1

    def __init__(self, trainer: Trainer):
        if trainer.device != "cuda":
            raise Unavailable(f"{type(self).__name__} needs a CUDA device")
        self.net, self.x, self.y = trainer.net, trainer.x, trainer.y
        self.lr = torch.tensor(trainer.lr, dtype=trainer.x.dtype, device=trainer.x.device)
        self.graph = None

    def capture(self, static: list) -> None:
        def step() -> None:
            new = functional_block(self.net, static, self.x, self.y, self.lr, self.block)
            for p, q in zip(static, new):
                p.copy_(q)

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm up outside the graph, as the docs ask
            snapshot = [p.clone() for p in static]
            for _ in range(3):
                step()
            for p, s in zip(static, snapshot):
                p.copy_(s)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, stream=side):  # the warm-up's stream and handles
            step()

    def __call__(self, params: Params, steps: int) -> Params:
        static = flatten(params)
        if self.graph is None:
            self.capture(static)
        full, rest = divmod(steps, self.block)
        for _ in range(full):
            self.graph.replay()
        for _ in range(rest):  # outside the graph, into the same static tensors
            for p, q in zip(static, functional_step(self.net, static, self.x, self.y, self.lr)):
                p.copy_(q)
        return params


class CudaGraphBlock:
    """torch-cudagraph-block: CudaGraph with 16 unrolled steps in one graph, so that one
    launch runs 16 serial steps (K is kept a multiple of 16)."""

    autograd, block = False, 16

    def __init__(self, trainer: Trainer):
        self.graph = CudaGraph(trainer)
        self.graph.block = self.block

    def __call__(self, params: Params, steps: int) -> Params:
        return self.graph(params, steps)


class CompiledBlockGraphs:
    """torch-block-graphs: the 16-step block under torch.compile(mode="reduce-overhead"),
    which records CUDA graphs of the compiled code (Inductor's "cudagraph trees"). The
    parameters are copied into the graph's own buffers on every call, as that mode asks."""

    autograd, block, first_calls = False, 16, 2  # the graph is recorded on the second call

    def __init__(self, trainer: Trainer):
        if trainer.device != "cuda":
            raise Unavailable("torch-block-graphs needs a CUDA device")
        self.net, self.x, self.y = trainer.net, trainer.x, trainer.y
        self.lr = torch.tensor(trainer.lr, dtype=trainer.x.dtype, device=trainer.x.device)
        self.steps = torch.compile(functional_block, mode="reduce-overhead", dynamic=False)

    def __call__(self, params: Params, steps: int) -> Params:
        net, x, y, lr = self.net, self.x, self.y, self.lr
        leaves = flatten(params)
        full, rest = divmod(steps, self.block)
        for _ in range(full):
            torch.compiler.cudagraph_mark_step_begin()
            leaves = [t.clone() for t in self.steps(net, leaves, x, y, lr, self.block)]
        for _ in range(rest):
            leaves = functional_step(net, leaves, x, y, lr)
        return unflatten(net, leaves)


def compiled_block(steps: int) -> type:
    """``CompiledBlock`` with ``steps`` unrolled steps per compiled call."""
    return type(f"CompiledBlock{steps}", (CompiledBlock,), {"block": steps})


CompiledBlock64, CompiledBlock256 = compiled_block(64), compiled_block(256)



# ---- torch-loop: the whole loop in C++, AOTInductor of a torch.while_loop ---------------------

FUSE = {"max_fusion_size": 4096}  # private Inductor config: one fused kernel per body


@contextlib.contextmanager
def subgraph_buffer_fix():
    """While active, Inductor drops the allocations of buffers that a subgraph's kernels fused
    away (a private patch of ``GraphLowering.codegen_subgraph``, torch 2.13).

    The memory planning of a subgraph inlined into C++ (a while_loop body in AOTInductor) runs
    with the parent graph as ``V.graph``, so it checks the parent's ``removed_buffers`` and
    misses the subgraph's own: every intermediate a fused kernel keeps in registers still gets
    an ``aoti_torch_empty_strided`` per iteration, about 1 µs a step whatever the unroll.
    """
    from torch._inductor.graph import GraphLowering  # a framework, heavy: imported where it is used

    original = GraphLowering.codegen_subgraph

    def codegen_subgraph(self, parent_graph):
        original(self, parent_graph)
        parent_graph.removed_buffers |= self.removed_buffers

    GraphLowering.codegen_subgraph = codegen_subgraph
    try:
        yield
    finally:
        GraphLowering.codegen_subgraph = original


def step_graph(net: NetworkSpec, example: list) -> torch.fx.GraphModule:
    """make_fx of one functional step, (*leaves, x, y, lr) -> new leaves, as aten ops
    (torch.export cannot trace torch.func.grad inside a while_loop body in torch 2.13);
    torch.func.grad runs at trace time, and x, y and lr stay inputs."""
    k = len(example) - 3

    def step(*args):
        return tuple(functional_step(net, list(args[:k]), *args[k:]))

    return make_fx(step)(*example)


class WhileModule(torch.nn.Module):
    """``nblk`` iterations of ``unroll`` unrolled steps, then ``nrem`` single steps, as two
    torch.while_loop (a prototype feature); state is (*leaves, x, y, lr)."""

    def __init__(self, step: torch.fx.GraphModule, k: int, unroll: int):
        super().__init__()
        self.step, self.k, self.unroll = step, k, unroll

    def forward(self, nblk, nrem, *state):
        leaves, data = tuple(state[:self.k]), tuple(state[self.k:])
        return self.loop(nrem, 1, self.loop(nblk, self.unroll, leaves, data), data)

    def loop(self, n, unroll: int, leaves: tuple, data: tuple) -> tuple:
        def cond(i, *ls):
            return i < n

        def body(i, *ls):
            for _ in range(unroll):
                ls = tuple(self.step(*ls, *data))
            return (i + 1, *ls)

        start = torch.zeros((), dtype=torch.int64)
        return tuple(torch.while_loop(cond, body, (start, *leaves))[1:])


def package_path(key: tuple) -> Path:
    """Where the compiled package for this key is kept: in the Inductor cache folder, named
    by the torch version, the key, FUSE and the source of everything the package is built
    from (so that a change to any of it builds a new one)."""

    root = os.environ.get("TORCHINDUCTOR_CACHE_DIR") or os.path.join(
        tempfile.gettempdir(), f"torchinductor_{getpass.getuser()}")
    parts = (torch_backprop.forward, torch_backprop.loss, functional_step, step_graph,
             WhileModule, build_package, subgraph_buffer_fix)
    source = "".join(inspect.getsource(f) for f in parts)
    digest = hashlib.sha256(repr((torch.__version__, key, FUSE, source)).encode()).hexdigest()
    return Path(root) / "aoti_packages" / f"torch-loop-{digest[:20]}.pt2"


def build_package(module, example: tuple, path: Path) -> None:
    """torch.export (non-strict), then AOTInductor with the buffer fix, written atomically."""
    program = torch.export.export(module, example, strict=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.pt2")
    with subgraph_buffer_fix():
        torch._inductor.aoti_compile_and_package(program, package_path=str(tmp),
                                                 inductor_configs=FUSE)
    os.replace(tmp, path)


def loop_key(net: NetworkSpec, batch: int) -> tuple:
    """What a torch-loop package is built for: the network, the unroll and the inputs' shapes
    and dtypes (*leaves, x, y, lr)."""
    dtype = str(getattr(torch, net.dtype))
    shapes = [(a, b) for a, b in zip(net.widths, net.widths[1:])]
    leaves = [s for a, b in shapes for s in ([(a, b), (b,)] if net.bias else [(a, b)])]
    example = [*leaves, (batch, net.widths[0]), (batch, net.widths[-1]), ()]
    return net.as_dict(), FusedLoop.unroll, [(s, dtype) for s in example]


class FusedLoop:
    """torch-loop: one C++ call of the compiled package per run(steps), for any steps. The
    first call builds the package (or loads it from the cache): the first call's cost."""

    autograd, block = False, 1
    unroll = 256

    def __init__(self, trainer: Trainer):
        if trainer.device != "cpu":
            raise Unavailable("torch-loop is built and checked on the CPU only")
        self.net, self.x, self.y = trainer.net, trainer.x, trainer.y
        self.lr = torch.tensor(trainer.lr, dtype=trainer.x.dtype)
        self.call = None

    def load(self, params: Params) -> None:
        example = [*flatten(params), self.x, self.y, self.lr]
        counts = (torch.tensor(1), torch.tensor(1))  # two objects: export keys inputs by id
        path = package_path(loop_key(self.net, self.x.shape[0]))
        if path.exists():
            try:
                self.call = torch._inductor.aoti_load_package(str(path)).loader.run  # private
                return
            except Exception as exc:  # truncated or garbled: built again, once
                broken = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                print(f"torch-loop: the package {path} cannot be loaded ({broken[:200]}); "
                      f"building it again", file=sys.stderr)
        module = WhileModule(step_graph(self.net, example), len(example) - 3, self.unroll)
        build_package(module, (*counts, *example), path)
        try:
            self.call = torch._inductor.aoti_load_package(str(path)).loader.run  # private call
        except Exception as exc:
            raise RuntimeError(f"torch-loop: the package {path}, just built, cannot be loaded "
                               f"({type(exc).__name__}: {exc})"[:400]) from None

    def __call__(self, params: Params, steps: int) -> Params:
        if self.call is None:
            self.load(params)
        nblk, nrem = divmod(steps, self.unroll)
        out = self.call([torch.tensor(nblk), torch.tensor(nrem), *flatten(params), self.x,
                         self.y, self.lr])
        return unflatten(self.net, list(out))


# ---- the floor: what one call costs when it does nothing ---------------------------------------

def call_floors(calls: int = 2000) -> dict[str, tuple[float, int]]:
    """{name: (seconds per call, calls)}: an empty torch.compile graph (x + 0, fullgraph) and
    one eager op, the overhead floor under every compiled call and every eager step."""

    x = torch.zeros(())
    empty = torch.compile(lambda t: t + 0, fullgraph=True, dynamic=False)
    return floors.measure((("torch.compile of x + 0, one call", empty),
                           ("eager x + 1, one op", lambda t: t + 1)), x, calls)
