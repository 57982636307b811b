"""Work in child processes: the runner and its workers, their protocol, the isolated and
data-parallel checks, the launch of ranks, the all-reduce timing, and what kills children.

Imports ``harness.record`` and ``harness.measure``, and ``implementations``.
"""
