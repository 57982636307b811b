"""A learner's backward pass written with torch tensors, no autograd:
backprop-bench check --impl examples/learner_torch.py

The check hands ``grads`` torch tensors (its own copies, in the network's dtype, without
requires_grad) and reads back tensors; everything else is as in learner_backprop.py.
"""
import torch

FRAMEWORK = "torch"
ACTIVATION, BIAS = "tanh", True  # tanh hidden layers, a linear output, a bias on every layer


def grads(params, x, y):
    """E = 1/2 * mean over the batch of ||y_hat - y||^2, and dE/d(W, b) for every layer."""
    hs = [x]  # the input of every layer, then y_hat
    for i, (W, b) in enumerate(params):
        a = hs[-1] @ W + b  # a = h W + b
        hs.append(torch.tanh(a) if i < len(params) - 1 else a)
    r = hs[-1] - y
    E = 0.5 * torch.sum(r * r) / len(x)
    d = r / len(x)  # dE/dy_hat, then dE/da layer by layer
    g = []
    for i in reversed(range(len(params))):
        if i < len(params) - 1:
            d = d * (1 - hs[i + 1] ** 2)  # dE/da = dE/dh * tanh'(a)
        g.insert(0, (hs[i].T @ d, d.sum(dim=0)))  # dE/dW = h^T dE/da, dE/db = sum of dE/da
        d = d @ params[i][0].T  # dE/dh of the layer below = dE/da W^T
    return E, g


def sgd_step(params, x, y, lr):
    _, g = grads(params, x, y)
    return [(W - lr * gW, b - lr * gb) for (W, b), (gW, gb) in zip(params, g)]
