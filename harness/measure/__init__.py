"""What is measured, and how: the timing engine and its measurement type, memory,
the machine's state and environment, and the ceilings (matmul peaks, the C limit loop).

Imports only ``implementations`` and ``harness.tables``: the lowest layer of the harness.
"""
