"""What a run leaves behind: the typed results model and its schema, the results files, the
derived columns and flat rows, compare and export.

Imports ``harness.measure`` (the measurement types it stores) and ``implementations``.
"""
