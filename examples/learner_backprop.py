"""A learner's backward pass: backprop-bench check --impl examples/learner_backprop.py

``grads`` is all the check needs. ``sgd_step`` has its trajectory checked too, and ``trace``
(optional) gives every intermediate, so that a wrong backward pass is named where it first
goes wrong: "δ₂ is right; ∂E/∂W₂ is not: the chain rule gives h₁ᵀ δ₂ ...".
"""
import numpy as np

ACTIVATION, BIAS = "tanh", True  # tanh hidden layers, a linear output, a bias on every layer


def trace(params, x, y):
    """Per layer: its net input a, output h, delta = dE/da, and its gradients dW and db."""
    layers, h = [], x  # h: the input of each layer in turn (x for the first)
    for i, (W, b) in enumerate(params):
        a = h @ W + b  # a = h W + b
        h = np.tanh(a) if i < len(params) - 1 else a  # h = tanh(a); the output is linear
        layers.append({"a": a, "h": h})
    d = (h - y) / len(x)  # dE/dy_hat of E = 1/2 mean ||y_hat - y||^2 (the output's delta)
    for i in reversed(range(len(params))):
        if i < len(params) - 1:
            d = d * (1 - layers[i]["h"] ** 2)  # delta = dE/dh * tanh'(a)
        below = layers[i - 1]["h"] if i else x  # this layer's input
        layers[i].update(delta=d, dW=below.T @ d, db=d.sum(axis=0))  # dE/dW = h^T delta
        d = d @ params[i][0].T  # dE/dh of the layer below = delta W^T
    return layers


def grads(params, x, y):
    """E = 1/2 * mean over the batch of ||y_hat - y||^2, and dE/d(W, b) for every layer."""
    layers = trace(params, x, y)
    r = layers[-1]["h"] - y
    return 0.5 * np.sum(r * r) / len(x), [(layer["dW"], layer["db"]) for layer in layers]


def sgd_step(params, x, y, lr):
    _, g = grads(params, x, y)
    return [(W - lr * gW, b - lr * gb) for (W, b), (gW, gb) in zip(params, g)]
