"""backprop-bench's harness: check, time, store and report the implementations' training steps.

The layers, each importing only those above it: ``schema`` and ``timing``; ``results`` (the
typed model) and ``store`` (files); ``check``, ``peak``, ``environment``, ``machine_state``,
``memory``; ``messages``, ``worker`` and ``runner``; ``summary``, ``model``, ``compare`` and
the ``report`` package; ``records`` (flat rows) and ``export``; ``api`` (the Python API,
imported as ``backprop_bench``); ``plans`` (the defaults) and ``commands``; ``cli`` last.
"""

__version__ = "0.2.0"
