"""A layer as a torch.autograd.Function whose backward you write, checked through autograd:
backprop-bench check --impl examples/learner_torch_function.py

``Dense.backward`` is the hand-written part: given dE/dh of the layer's output, it returns
dE/d(its input), dE/dW and dE/db. ``grads`` builds the loss from Dense layers and lets
autograd call those backward passes.
"""
import torch

FRAMEWORK = "torch"
ACTIVATION, BIAS = "tanh", True  # tanh hidden layers, a linear output, a bias on every layer


class Dense(torch.autograd.Function):
    """h = tanh(x W + b) (or x W + b on the linear output layer)."""

    @staticmethod
    def forward(ctx, x, W, b, linear):
        h = x @ W + b
        h = h if linear else torch.tanh(h)
        ctx.save_for_backward(x, W, h)
        ctx.linear = linear
        return h

    @staticmethod
    def backward(ctx, dh):
        x, W, h = ctx.saved_tensors
        da = dh if ctx.linear else dh * (1 - h * h)  # dE/da = dE/dh * tanh'(a)
        return da @ W.T, x.T @ da, da.sum(dim=0), None  # dE/dx, dE/dW, dE/db


def grads(params, x, y):
    """E = 1/2 * mean over the batch of ||y_hat - y||^2, and dE/d(W, b) for every layer."""
    leaves = [(W.clone().requires_grad_(), b.clone().requires_grad_()) for W, b in params]
    h = x
    for i, (W, b) in enumerate(leaves):
        h = Dense.apply(h, W, b, i == len(leaves) - 1)
    E = 0.5 * torch.sum((h - y) ** 2) / len(x)
    E.backward()  # autograd calls each Dense.backward, top layer first
    return E.detach(), [(W.grad, b.grad) for W, b in leaves]


def sgd_step(params, x, y, lr):
    _, g = grads(params, x, y)
    return [(W - lr * gW, b - lr * gb) for (W, b), (gW, gb) in zip(params, g)]
