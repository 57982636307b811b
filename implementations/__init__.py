"""Implementations of one network and its MSE/SGD loop, one module per framework.

The contract is written as code in ``implementations.contract``: the ``Framework`` and
``Variant`` declarations, and the ``FrameworkModule``, ``LoopModule`` and ``Trainer``
Protocols, with the copy, sync and device semantics every module keeps. ``registry`` finds
the modules and imports them lazily.

The array frameworks (``numpy_backprop``, ``torch_backprop``, ``jax_backprop``,
``autograd_backprop``, ``mlx_backprop``, ``tf_backprop``, ``tinygrad_backprop``,
``paddle_backprop``) define the same names, in the same order, with the same variable names,
so that a diff between two of them shows only the framework calls: the declarations,
``ACTIVATIONS``, ``to_framework``, ``to_numpy``, ``check_device``, ``sync``, ``settings``,
``forward``, ``loss``, ``grads``, ``update``, ``sgd_step``, ``StepLoop``, ``Trainer``, then the
helpers and other loops under one heading at the end. A ``Trainer`` holds the loop's state
(data and parameters on the device) and a *loop strategy* (``StepLoop``, ``CompiledBlock``,
``FusedLoop``, ...) that advances the parameters by K steps; a variant names its Trainer and
loop in the registry. ``python_scalar`` (the worked example in Python floats),
``micrograd_scalar`` (the same chain of scalars on micrograd's ``Value``, any small network)
and ``numba_limit`` (the compiled physical-limit loop, a ``LoopModule``) compute one scalar at
a time; ``python_scalar`` and ``numba_limit`` cover the 1-1-1 network with batch 1 only.

Every Trainer starts from ``problem.cast_problem(problem)``: the same float64 seeded numbers,
rounded once to the problem's dtype.

Three modules are helpers, not frameworks: ``floors`` (the call floor of a compiled call,
measured one way for every framework that has one), ``inductor_cache`` (torch.compile's disk
cache and the markers of what was built in it, for ``torch`` and ``torch-compiled``) and
``launch`` (the data-parallel variants' worker processes).

Adding a framework
------------------
A new framework is one file, plus the lines every package needs; a test says which one is
missing. In order:

1. ``implementations/<name>.py`` (or any path listed in the environment variable
   ``BACKPROP_BENCH_FRAMEWORKS``): the module docstring (how the framework is used, how it
   differs from the others, what it cannot do and why), then its imports, with the
   framework's own package imported at the top (a missing or broken package then makes its
   variants *unavailable, with the reason*);
2. ``FRAMEWORK = Framework("name", label=..., packages=(...), order=...)`` and
   ``VARIANTS = (Variant("name", "idiomatic", "what it does", ...), ...)``, literals only;
   each variant declares what it can run where that is less than everything: ``devices``,
   ``dtypes``, ``activations``, ``biases``, ``max_width``, ``max_layers``, ``max_batch``
   (``contract.Variant``). Every command and test reads them (``Variant.why_not``): raise
   ``Unavailable`` only for what no declaration can say (a package that fails to load, an
   absent device or compiler), from ``check_device``;
3. ``isolated=True`` where importing the framework changes process-wide state that another
   framework would read (the recursion limit, an environment variable, ...): then it runs
   in a process of its own, with ``gradients=False`` and Trainers that compute their own
   ``grads()``. ``tests/test_contract.py`` imports every framework that is not isolated and
   names any such state it changes;
4. the functions of ``contract.FrameworkModule`` in the order above, copying the NumPy file's
   shape, and a ``Trainer(problem, device="cpu", loop=StepLoop)``; an array framework's file
   joins ``PARALLEL`` in ``tests/test_contract.py``, which holds it to NumPy's names;
5. its extra in ``pyproject.toml`` (and in ``all``), and its exact version, with what it pulls
   in, in ``constraints.txt``; ``pip install --dry-run -c constraints.txt -e '.[all,test]'``
   must want nothing but this package (no pin moves);
6. the README's variants table, regenerated: ``python scripts/variants_table.py --write``
   (``tests/test_cli.py`` fails until it is);
7. tests: the generic ones take the new file as it is (``tests/test_implementations.py`` runs
   every framework's functions and Trainers on the worked example and on a wider network,
   in a process of its own for an isolated one, skipping with its reason whatever a
   variant declares it cannot run; ``tests/test_contract.py`` checks it against the
   Protocols); a test module of its own only for what is its own (a trap it works around, a
   missing compiler), and a bug its users write, planted in ``tests/planted_<name>.py`` and
   named in ``tests/test_planted.py``'s ``FRAMEWORK_BUGS``, that ``check`` must catch.

``backprop-bench list``, ``check``, ``run``, ``sweep`` and ``report`` then pick it up: no list
in the harness names the frameworks. ``tests/fake_framework.py`` is a complete example in pure
Python, with a variant of declared limits, and ``tests/test_one_file.py`` drops it into a copy
of this tree, where the suite's framework tests pass with no other edit.
"""
