"""PyTorch: eager autograd, the way the tutorials write it.

``grads`` asks ``torch.autograd.grad`` for the gradients; ``sgd_step`` is the idiomatic loop
body: ``loss.backward()`` fills each leaf's ``.grad``, then the weights are updated in place
under ``torch.no_grad()``. Tensors live on the device they were made on ("cpu" or "cuda"),
and CUDA work is asynchronous, so ``sync`` waits for it. Importing this module switches TF32
off for the whole process, so that float32 matmuls on the GPU are true float32, as in the
other frameworks.

The ``Trainer`` is advanced by a loop strategy: ``StepLoop`` (the eager step, idiomatic), and
after it ``ManualLoop`` (the NumPy file's chain rule on tensors, no autograd) and
``OptimizerLoop`` (torch.optim.SGD). The idiomatic tier follows: an ``nn.Sequential``, a loss
module and ``torch.optim.SGD`` in a ``ModuleTrainer``, eager or compiled whole. The loops that
compile the functional step are in ``torch_compiled``, a framework of their own process.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from implementations import numpy_backprop
from implementations.contract import (
    ALL_DEVICES,
    SMALL,
    Framework,
    Unavailable,
    Variant,
)
from implementations.inductor_cache import (  # noqa: F401 (built: the contract)
    built,
    built_marker,
    inductor_cache_state,
    mark_built,
)
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
                      variables=("TORCH_", "TORCHINDUCTOR_", "NVIDIA_TF32_OVERRIDE"))
VARIANTS = (
    Variant("torch-manual", "optimised",
            "the NumPy chain rule on torch tensors under inference_mode: no autograd",
            loop="ManualLoop", devices=ALL_DEVICES, default_run=SMALL),
    Variant("torch", "idiomatic", "PyTorch eager autograd: backward(), no_grad update",
            devices=ALL_DEVICES, sweep_devices=ALL_DEVICES, below="torch-manual",
            zero_grad="p.grad = None after each update"),
    Variant("torch-optim", "idiomatic", "eager autograd with torch.optim.SGD: zero_grad, "
            "backward, step", loop="OptimizerLoop", devices=ALL_DEVICES, below="torch",
            default_run=SMALL, zero_grad="optimizer.zero_grad()"),
    Variant("torch-nn", "idiomatic", "nn.Sequential of nn.Linear, a loss module and "
            "torch.optim.SGD, as the tutorials write it", trainer="ModuleTrainer",
            devices=ALL_DEVICES, below="torch-optim", default_run=SMALL,
            zero_grad="optimizer.zero_grad()"),
    Variant("torch-nn-compile", "idiomatic", "the torch-nn train step passed whole to "
            "torch.compile, as the torch.compile tutorial does for training",
            trainer="ModuleTrainer", loop="CompiledModuleStep", devices=ALL_DEVICES,
            baseline="torch-nn", below="torch-nn", default_run=SMALL, build_s=25,
            zero_grad="optimizer.zero_grad()"),
)

ACTIVATIONS = {
    "linear": lambda a: a,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
}
# phi'(a), written with h = phi(a) where that is cheaper; None: phi' = 1 (for torch-manual)
DERIVATIVES = {
    "linear": None,
    "sigmoid": lambda a, h: h * (1.0 - h),
    "tanh": lambda a, h: 1.0 - h * h,
    "relu": lambda a, h: (a > 0).to(a.dtype),
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


def update(params: Params, g: Params, lr) -> Params:
    """params - lr * g, in place under no_grad: the leaves stay the tensors autograd tracks."""
    with torch.no_grad():
        for p, gp in zip(flatten(params), flatten(g)):
            p -= lr * gp
    return params


def sgd_step(net: NetworkSpec, params: Params, x: torch.Tensor, y: torch.Tensor, lr) -> Params:
    """params - lr * dE/dparams: backward() fills .grad, then the update, then .grad = None."""
    E = loss(net, params, x, y)
    E.backward()
    update(params, map_params(lambda p: p.grad, params), lr)
    for p in flatten(params):
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

    def phases(self, params: Params) -> dict:
        """The step's parts, each f(K) run K times: the loss, the gradients, the update."""
        net, x, y, lr = self.net, self.x, self.y, self.lr
        _, g = grads(net, params, x, y)
        return {"forward": lambda k: repeat(k, lambda: loss(net, params, x, y), params),
                "gradient": lambda k: repeat(k, lambda: grads(net, params, x, y), params),
                "update": lambda k: repeat(k, lambda: update(params, g, lr), params)}


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
        self.unroll = getattr(self._loop, "unroll", 1)

    def run(self, steps: int) -> None:
        """Advance by exactly ``steps`` SGD updates, then wait for the device."""
        self._params = self._loop(self._params, steps)
        sync(self._params)

    def params(self) -> Params:
        return map_params(to_numpy, self._params)

    def loss(self) -> float:
        with torch.no_grad():
            return float(loss(self.net, self._params, self.x, self.y))

    def phases(self) -> dict:
        """The step's parts, where the loop is the plain step (``StepLoop.phases``)."""
        return self._loop.phases(self._params) if hasattr(self._loop, "phases") else {}


# ---- helpers and the other variants ----------------------------------------------------------


def repeat(k: int, part, params: Params) -> None:
    """Run one part of the step k times, then wait for the device."""
    for _ in range(k):
        part()
    sync(params)


def device_memory(device: str) -> dict | None:
    """Bytes the CUDA caching allocator has in use, and its peak since the last reset."""
    if device != "cuda":
        return None
    return {"in_use": torch.cuda.memory_allocated(), "peak": torch.cuda.max_memory_allocated()}


def reset_device_memory_peak(device: str) -> bool:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    return True


class ManualLoop:
    """torch-manual: the NumPy file's chain rule (``numpy_backprop.backprop``) on torch
    tensors under torch.inference_mode(), no autograd: the rung below autograd."""

    autograd, block = False, 1

    def __init__(self, trainer: Trainer):
        self.net, self.x, self.y, self.lr = trainer.net, trainer.x, trainer.y, trainer.lr

    def __call__(self, params: Params, steps: int) -> Params:
        net, x, y, lr = self.net, self.x, self.y, self.lr
        with torch.inference_mode():
            for _ in range(steps):
                _, g = manual_grads(net, params, x, y)
                params = numpy_backprop.update(params, g, lr)  # out of place, as in NumPy
        return params

    def phases(self, params: Params) -> dict:
        net, x, y, lr = self.net, self.x, self.y, self.lr

        def part(fn):
            def run(k: int) -> None:
                with torch.inference_mode():
                    repeat(k, fn, params)
            return run

        with torch.inference_mode():
            _, g = manual_grads(net, params, x, y)
        return {"forward": part(lambda: forward(net, params, x)),
                "gradient": part(lambda: manual_grads(net, params, x, y)),
                "update": part(lambda: numpy_backprop.update(params, g, lr))}


def manual_grads(net: NetworkSpec, params: Params, x, y):
    """(E, dE/dparams) by numpy_backprop's chain rule with torch's activation tables."""
    return numpy_backprop.backprop(net, params, x, y, ACTIVATIONS, DERIVATIVES,
                                   lambda r, s: torch.sum(r * s))


class OptimizerLoop:
    """torch-optim: eager autograd with torch.optim.SGD over the parameter leaves:
    zero_grad(set_to_none=True), backward(), step()."""

    autograd, block = True, 1

    def __init__(self, trainer: Trainer):
        self.net, self.x, self.y = trainer.net, trainer.x, trainer.y
        self.optimizer = torch.optim.SGD(flatten(trainer._params), lr=trainer.lr)

    def __call__(self, params: Params, steps: int) -> Params:
        net, x, y, optimizer = self.net, self.x, self.y, self.optimizer
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss(net, params, x, y).backward()
            optimizer.step()
        return params

    def phases(self, params: Params) -> dict:
        net, x, y, optimizer = self.net, self.x, self.y, self.optimizer

        def gradient() -> None:
            optimizer.zero_grad(set_to_none=True)
            loss(net, params, x, y).backward()

        gradient()  # so that the update has gradients to apply
        return {"forward": lambda k: repeat(k, lambda: loss(net, params, x, y), params),
                "gradient": lambda k: repeat(k, gradient, params),
                "update": lambda k: repeat(k, optimizer.step, params)}


# ---- the idiomatic tier: nn.Module, a loss module, torch.optim -------------------------------

MODULES = {"linear": nn.Identity, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}


class ScaledMSELoss(nn.Module):
    """E = 1/2 * mean over the batch of ||y_hat - y||^2, from nn.MSELoss.

    nn.MSELoss(reduction="mean") averages over all batch * out elements, so
    E = (out / 2) * MSELoss: the factor scales the loss itself, so that backward() gives
    dE/dparams and torch.optim.SGD runs with the problem's learning rate.
    """

    def __init__(self, out_width: int):
        super().__init__()
        self.mse, self.scale = nn.MSELoss(), 0.5 * out_width

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.scale * self.mse(y_hat, y)


def make_model(net: NetworkSpec, params: Params, device: str) -> nn.Sequential:
    """nn.Sequential(nn.Linear, activation, ...) holding the given start point. nn.Linear
    stores its weight as (out, in) and computes x @ weight.T + bias: weight = W.T."""
    layers = []
    for (W, b), act in zip(params, net.layer_activations()):
        linear = nn.Linear(*W.shape, bias=b is not None, device=device,
                           dtype=getattr(torch, net.dtype))
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W.T.copy()))
            if b is not None:
                linear.bias.copy_(torch.from_numpy(b))
        layers += [linear, MODULES[act]()]
    return nn.Sequential(*layers)


def make_loss(net: NetworkSpec) -> nn.Module:
    return ScaledMSELoss(net.widths[-1])


def train_step(model: nn.Module, loss_fn: nn.Module, optimizer, x, y) -> torch.Tensor:
    """One SGD step as the tutorials write it."""
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss


class ModuleStep:
    """torch-nn: ``train_step`` called once per step, eagerly."""

    autograd, block = True, 1

    def __init__(self, trainer: ModuleTrainer):
        self.args = (trainer.model, trainer.loss_fn, trainer.optimizer, trainer.x, trainer.y)
        self.step = train_step

    def __call__(self, steps: int) -> None:
        step, args = self.step, self.args
        for _ in range(steps):
            step(*args)

    def phases(self) -> dict:
        model, loss_fn, optimizer, x, y = self.args
        params = [(p, None) for p in model.parameters()]

        def gradient() -> None:
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()

        gradient()  # so that the update has gradients to apply
        return {"forward": lambda k: repeat(k, lambda: loss_fn(model(x), y), params),
                "gradient": lambda k: repeat(k, gradient, params),
                "update": lambda k: repeat(k, optimizer.step, params)}


class CompiledModuleStep:
    """torch-nn-compile: ``train_step`` passed whole to torch.compile, as the torch.compile
    end-to-end tutorial does for training (the graph breaks at backward(); the forward and
    the optimizer step are compiled). Compiled code is guarded on the model's and the
    optimizer's identity, so every Trainer compiles anew; the recompile limit (8 by default,
    after which a function silently runs eagerly) is raised for that."""

    autograd, block = True, 1

    def __init__(self, trainer: ModuleTrainer):
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        self.args = (trainer.model, trainer.loss_fn, trainer.optimizer, trainer.x, trainer.y)
        self.step = torch.compile(train_step)
        self.marker = built_marker(type(self).__name__, trainer.net, trainer.x.shape[0],
                                   trainer.device)

    def __call__(self, steps: int) -> None:
        step, args = self.step, self.args
        for _ in range(steps):
            step(*args)
        if steps:
            mark_built(self.marker)
            self.marker = None


class ModuleTrainer:
    """The idiomatic state: an nn.Sequential, its loss module and torch.optim.SGD, advanced
    by a loop (``ModuleStep`` or ``CompiledModuleStep``)."""

    def __init__(self, problem: Problem, device: str = "cpu", loop: type = ModuleStep):
        check_device(device)
        x, y, params = cast_problem(problem)
        self.net, self.device = problem.spec, device
        self.model = make_model(self.net, params, device)
        self.loss_fn = make_loss(self.net)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=problem.lr)
        self.x, self.y = to_framework(x, device), to_framework(y, device)
        self._loop = loop(self)
        self.block, self.first_calls = self._loop.block, getattr(self._loop, "first_calls", 1)

    def run(self, steps: int) -> None:
        self._loop(steps)
        sync([(self.x, None)])

    def linears(self) -> list:
        return [m for m in self.model if isinstance(m, nn.Linear)]

    def params(self) -> Params:
        return [(to_numpy(m.weight).T.copy(), None if m.bias is None else to_numpy(m.bias))
                for m in self.linears()]

    def loss(self) -> float:
        with torch.no_grad():
            return float(self.loss_fn(self.model(self.x), self.y))

    def grads(self) -> tuple[float, Params]:
        """E and dE/dparams by backward() into fresh .grad; the parameters are unchanged."""
        self.model.zero_grad(set_to_none=True)
        E = self.loss_fn(self.model(self.x), self.y)
        E.backward()
        g = [(to_numpy(m.weight.grad).T.copy(), None if m.bias is None else to_numpy(m.bias.grad))
             for m in self.linears()]
        self.model.zero_grad(set_to_none=True)
        return float(E.detach()), g

    def phases(self) -> dict:
        return self._loop.phases() if hasattr(self._loop, "phases") else {}
