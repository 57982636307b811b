"""A layer as a jax.custom_vjp whose backward you write, checked through jax.grad:
backprop-bench check --impl examples/learner_jax.py

``dense_backward`` is the hand-written part: given dE/dh of the layer's output, it returns
dE/d(its input, W, b). ``grads`` builds the loss from dense layers and lets jax.grad call
those backward passes.
"""
from functools import partial

import jax
import jax.numpy as jnp

FRAMEWORK = "jax"
ACTIVATION, BIAS = "tanh", True  # tanh hidden layers, a linear output, a bias on every layer


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def dense(x, W, b, linear):
    """h = tanh(x W + b) (or x W + b on the linear output layer)."""
    h = x @ W + b
    return h if linear else jnp.tanh(h)


def dense_forward(x, W, b, linear):
    h = dense(x, W, b, linear)
    return h, (x, W, h)


def dense_backward(linear, saved, dh):
    x, W, h = saved
    da = dh if linear else dh * (1 - h * h)  # dE/da = dE/dh * tanh'(a)
    return da @ W.T, x.T @ da, da.sum(axis=0)  # dE/dx, dE/dW, dE/db


dense.defvjp(dense_forward, dense_backward)


def loss(params, x, y):
    h = x
    for i, (W, b) in enumerate(params):
        h = dense(h, W, b, i == len(params) - 1)
    return 0.5 * jnp.sum((h - y) ** 2) / len(x)


def grads(params, x, y):
    """E = 1/2 * mean over the batch of ||y_hat - y||^2, and dE/d(W, b) for every layer."""
    E, g = jax.value_and_grad(loss)([tuple(p) for p in params], x, y)
    return E, [tuple(layer) for layer in g]


def sgd_step(params, x, y, lr):
    _, g = grads(params, x, y)
    return [(W - lr * gW, b - lr * gb) for (W, b), (gW, gb) in zip(params, g)]
