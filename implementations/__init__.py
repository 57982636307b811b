"""Implementations of one network and its MSE/SGD loop, one module per framework.

The contract is written as code in ``implementations.contract``: the ``Framework`` and
``Variant`` declarations, and the ``FrameworkModule``, ``LoopModule`` and ``Trainer``
Protocols, with the copy, sync and device semantics every module keeps. ``registry`` finds
the modules and imports them lazily.

The array frameworks (``numpy_backprop``, ``torch_backprop``, ``jax_backprop``,
``autograd_backprop``, ``mlx_backprop``, ``tf_backprop``) define the same names, in the same
order, with the same variable names, so that a diff between two of them shows only the
framework calls: the declarations, ``ACTIVATIONS``, ``to_framework``,
``to_numpy``, ``check_device``, ``sync``, ``settings``, ``forward``, ``loss``, ``grads``,
``sgd_step``, ``StepLoop``, ``Trainer``, then the helpers and other loops under one heading
at the end. A ``Trainer`` holds the loop's state (data and parameters on the device) and a
*loop strategy* (``StepLoop``, ``CompiledBlock``, ``FusedLoop``, ...) that advances the
parameters by K steps; a variant names its Trainer and loop in the registry. ``python_scalar``
(the worked example in Python floats) and ``numba_limit`` (the compiled physical-limit loop,
a ``LoopModule``) cover the 1-1-1 network with batch 1 only.

Every Trainer starts from ``problem.cast_problem(problem)``: the same float64 seeded numbers,
rounded once to the problem's dtype.

Three modules are helpers, not frameworks: ``floors`` (the call floor of a compiled call,
measured one way for every framework that has one), ``inductor_cache`` (torch.compile's disk
cache and the markers of what was built in it, for ``torch`` and ``torch-compiled``) and
``launch`` (the data-parallel variants' worker processes).

Adding a framework
------------------
Write one file, ``implementations/<name>.py`` (or any path listed in the environment variable
``BACKPROP_BENCH_FRAMEWORKS``), and nothing else:

1. the module docstring: how the framework is used, and how it differs from the others;
2. imports, with the framework's own package imported at the top (a missing or broken
   package then makes its variants *unavailable, with the reason*);
3. ``FRAMEWORK = Framework("name", label=..., packages=(...), order=...)`` and
   ``VARIANTS = (Variant("name", "idiomatic", "what it does"), ...)``, literals only;
4. the functions of ``contract.FrameworkModule`` in the order above, copying the NumPy file's
   shape, and a ``Trainer(problem, device="cpu", loop=StepLoop)``.

``backprop-bench list``, ``check``, ``run``, ``sweep`` and ``report`` then pick it up: no list
in the harness names the frameworks. ``tests/test_contract.py`` checks every module against
the Protocols, and ``tests/fake_framework.py`` is a complete example in pure Python.
"""
