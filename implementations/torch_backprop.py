"""PyTorch: eager autograd, the way the tutorials write it.

``grads`` asks ``torch.autograd.grad`` for the gradients; ``sgd_step`` is the idiomatic loop
body: ``loss.backward()`` fills each leaf's ``.grad``, then the weights are updated in place
under ``torch.no_grad()``. Tensors live on the device they were made on ("cpu" or "cuda"),
and CUDA work is asynchronous, so ``sync`` waits for it. Importing this module switches TF32
off for the whole process, so that float32 matmuls on the GPU are true float32, as in the
other frameworks.

The ``Trainer`` is advanced by a loop strategy: ``StepLoop`` (the eager step, idiomatic), and
after it ``CompiledStep`` (``torch.compile`` of one functional step written with
``torch.func.grad``), ``CompiledBlock`` (one compiled graph for a block of steps, to pay
Python and dispatch once per block) and ``CudaGraph`` (the whole step captured once as a CUDA
graph and replayed).
"""

from __future__ import annotations

import getpass
import os
import tempfile

import numpy as np
import torch

from implementations.contract import ALL_DEVICES, Framework, Unavailable, Variant
from implementations.problem import (
    NetworkSpec,
    Params,
    Problem,
    cast_problem,
    flatten,
    map_params,
    unflatten,
)

FRAMEWORK = Framework("torch", label="PyTorch", packages=("torch",), order=40,
                      import_effects="TF32 off for matmuls and cuDNN")
VARIANTS = (
    Variant("torch", "idiomatic", "PyTorch eager autograd: backward(), no_grad update",
            devices=ALL_DEVICES, sweep_devices=ALL_DEVICES),
    Variant("torch-compile", "optimised", "torch.compile of one functional step (torch.func)",
            loop="CompiledStep", devices=ALL_DEVICES, baseline="torch"),
    Variant("torch-block", "optimised",
            "torch.compile of a block of unrolled steps: dispatch paid once per block",
            loop="CompiledBlock", devices=ALL_DEVICES, baseline="torch",
            default_run="worked-example"),
    Variant("torch-cudagraph", "optimised",
            "whole step captured once as a CUDA graph and replayed", loop="CudaGraph",
            devices=("cuda",), baseline="torch", sweep_devices=("cuda",)),
    Variant("torch-cudagraph-block", "optimised",
            "a block of 16 steps captured as one CUDA graph: one launch per 16 steps",
            loop="CudaGraphBlock", devices=("cuda",), baseline="torch"),
    Variant("torch-block-graphs", "optimised",
            "torch.compile(mode='reduce-overhead') of the 16-step block: Inductor's CUDA graphs",
            loop="CompiledBlockGraphs", devices=("cuda",), baseline="torch"),
)

ACTIVATIONS = {
    "linear": lambda a: a,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
}
torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32 on the GPU too
torch.backends.cudnn.allow_tf32 = False


def to_framework(a: np.ndarray, device: str = "cpu", trainable: bool = False) -> torch.Tensor:
    """A copy of a NumPy array as a tensor on device, a leaf that autograd tracks if trainable."""
    check_device(device)
    return torch.tensor(a, device=device).requires_grad_(trainable)


def to_numpy(a: torch.Tensor) -> np.ndarray:
    """A NumPy copy (the Trainer keeps updating its tensors in place)."""
    return a.detach().cpu().numpy().copy()


def check_device(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise Unavailable("torch: no CUDA device (torch.cuda.is_available() is False)")
    if device not in ("cpu", "cuda"):
        raise Unavailable(f"torch: unknown device {device!r}")


def sync(params: Params) -> None:
    """Wait until the device has finished the work queued on these tensors."""
    if params[0][0].is_cuda:
        torch.cuda.synchronize()


def settings(threads: int) -> dict:
    """Set torch's intra-op threads; record them, the GPU precision and the compile cache."""
    torch.set_num_threads(threads)
    return {
        "torch_threads": torch.get_num_threads(),
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        "cuda": torch.version.cuda,
        "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "inductor_cache": inductor_cache_state(),
    }


def forward(net: NetworkSpec, params: Params, x: torch.Tensor) -> torch.Tensor:
    """y_hat = phi(... phi(x @ W1 + b1) ... @ Wn + bn), shape (batch, widths[-1])."""
    h = x
    for (W, b), act in zip(params, net.layer_activations()):
        a = h @ W if b is None else h @ W + b
        h = ACTIVATIONS[act](a)
    return h


def loss(net: NetworkSpec, params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """E = 1/2 * mean over the batch of ||y_hat - y||^2."""
    r = forward(net, params, x) - y
    return 0.5 * torch.sum(r * r) / x.shape[0]


def grads(net: NetworkSpec, params: Params, x: torch.Tensor, y: torch.Tensor):
    """(E, dE/dparams) by torch.autograd.grad; params must be leaves that require grad."""
    E = loss(net, params, x, y)
    g = torch.autograd.grad(E, flatten(params))
    return E.detach(), unflatten(net, g)


def sgd_step(net: NetworkSpec, params: Params, x: torch.Tensor, y: torch.Tensor, lr) -> Params:
    """params - lr * dE/dparams: backward() fills .grad, then an in-place no_grad update."""
    E = loss(net, params, x, y)
    E.backward()
    with torch.no_grad():
        for p in flatten(params):
            p -= lr * p.grad
            p.grad = None
    return params


class StepLoop:
    """One eager sgd_step after another, driven from Python (the idiomatic loop)."""

    autograd, block = True, 1  # the parameters are leaves that autograd tracks

    def __init__(self, trainer: Trainer):
        self.net, self.x, self.y, self.lr = trainer.net, trainer.x, trainer.y, trainer.lr

    def __call__(self, params: Params, steps: int) -> Params:
        net, x, y, lr = self.net, self.x, self.y, self.lr
        for _ in range(steps):
            params = sgd_step(net, params, x, y, lr)
        return params


class Trainer:
    """The loop's state (data, parameters on the device) and the loop that advances it."""

    def __init__(self, problem: Problem, device: str = "cpu", loop: type = StepLoop):
        check_device(device)
        x, y, params = cast_problem(problem)
        self.net, self.lr, self.device = problem.spec, problem.lr, device
        self.x, self.y = to_framework(x, device), to_framework(y, device)
        self._params = map_params(lambda a: to_framework(a, device, loop.autograd), params)
        self._loop = loop(self)
        self.block, self.first_calls = self._loop.block, getattr(self._loop, "first_calls", 1)

    def run(self, steps: int) -> None:
        """Advance by exactly ``steps`` SGD updates, then wait for the device."""
        self._params = self._loop(self._params, steps)
        sync(self._params)

    def params(self) -> Params:
        return map_params(to_numpy, self._params)

    def loss(self) -> float:
        with torch.no_grad():
            return float(loss(self.net, self._params, self.x, self.y))


# ---- helpers and the other variants ----------------------------------------------------------


def device_memory(device: str) -> dict | None:
    """Bytes the CUDA caching allocator has in use, and its peak since the last reset."""
    if device != "cuda":
        return None
    return {"in_use": torch.cuda.memory_allocated(), "peak": torch.cuda.max_memory_allocated()}


def reset_device_memory_peak(device: str) -> bool:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    return True


def inductor_cache_state() -> dict:
    """Where torch.compile keeps its disk cache, and whether it already held compiled graphs."""
    path = os.environ.get("TORCHINDUCTOR_CACHE_DIR") or os.path.join(
        tempfile.gettempdir(), f"torchinductor_{getpass.getuser()}"
    )
    graphs = os.path.join(path, "fxgraph")
    return {"dir": path, "warm_at_start": os.path.isdir(graphs) and any(os.scandir(graphs))}


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

    def __call__(self, params: Params, steps: int) -> Params:
        leaves = flatten(params)
        for _ in range(steps):
            leaves = self.step(self.net, leaves, self.x, self.y, self.lr)
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

    def __call__(self, params: Params, steps: int) -> Params:
        net, x, y, lr = self.net, self.x, self.y, self.lr
        leaves = flatten(params)
        full, rest = divmod(steps, self.block)
        for _ in range(full):
            leaves = self.steps(net, leaves, x, y, lr, self.block)
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
