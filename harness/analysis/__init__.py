"""Models fitted to stored results: the cost model (time = overhead + FLOPs / throughput) and
the scaling model (compute plus all-reduce), with the published figures it predicts from.

Imports ``harness.record`` and ``harness.measure``, and ``implementations``.
"""
