"""Implementations of one network and its MSE/SGD loop, one module per framework.

The contract
------------
Every framework module (``numpy_backprop``, ``torch_backprop``, ``jax_backprop``) defines the
same names, in the same order, with the same variable names, so that a diff between two of
them shows only the framework calls:

``to_framework(a, device, trainable=False)``
    A NumPy array as this framework's array on ``device`` ("cpu" or "cuda").
``to_numpy(a)``
    This framework's array as a NumPy array.
``check_device(device)``
    Raise ``registry.Unavailable`` with a reason if this framework cannot use ``device``.
``sync(params)``
    Return only when the device has finished the work on these arrays (no-op for NumPy).
``settings(threads)``
    Apply the framework's own thread setting where it has one, and return what the results
    file should record (threads, BLAS, precision, backend).
``forward(net, params, x) -> y_hat``
    ``net`` is a ``problem.NetworkSpec``; ``params`` a list of ``(W, b)`` pairs with ``W`` of
    shape (fan_in, fan_out) and ``b`` of shape (fan_out,) or ``None``; ``x`` has shape
    (batch, widths[0]) and ``y_hat`` (batch, widths[-1]).
``loss(net, params, x, y) -> E``
    E = 1/2 * mean over the batch of ||y_hat - y||^2, a scalar.
``grads(net, params, x, y) -> (E, dE/dparams)``
    The gradients have the structure of ``params`` (``None`` where there is no bias).
``sgd_step(net, params, x, y, lr) -> params``
    One SGD update, params - lr * dE/dparams.
``Trainer(problem, device="cpu")``
    Owns the update loop of one *variant*. ``run(steps)`` advances it by exactly ``steps``
    SGD updates and returns only when the device has finished them (the Trainer owns the
    sync). ``params()`` returns the current parameters as NumPy arrays in the problem's
    dtype, ``loss()`` the current loss as a float.

A module may define more Trainer classes after ``Trainer``, one per extra variant (for example
``ScanTrainer`` in ``jax_backprop``), with helpers, under one heading at the end.
``python_scalar`` (pure-Python floats; no ``sync``) and ``numba_limit`` (the compiled
physical-limit loop; only ``check_device``, ``settings`` and ``Trainer``) cover the 1-1-1
network with batch 1 only.

Every Trainer starts from ``problem.cast_problem(problem)``: the same float64 seeded numbers,
rounded once to the problem's dtype. The ``registry`` maps variant names to these classes and
imports them lazily, so a framework that is not installed is reported, never fatal.
"""
